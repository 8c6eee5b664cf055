//! Query strings, decoded as the server decodes them, into every query
//! type; and the same bytes as `X-Forwarded-For` values.
#![no_main]

use imagechat::http::annotations::{Export, Import};
use imagechat::http::chats::{Position, UrlId};
use imagechat::http::extract::{FromQuery, QueryMap};
use imagechat::app::limits::client_address;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let q: QueryMap = form_urlencoded::parse(data).into_owned().collect();
    let _ = UrlId::from_query(&q);
    let _ = Position::from_query(&q);
    let _ = Export::from_query(&q);
    let _ = Import::from_query(&q);
    if let Ok(text) = std::str::from_utf8(data) {
        let peer = Some(std::net::IpAddr::from([192, 0, 2, 1]));
        for trusted in 0..4 {
            let got = client_address(peer, text.split('\n'), trusted);
            assert!(got.is_some(), "with a peer there is always an address");
            if trusted == 0 {
                assert_eq!(got, peer, "without trusted proxies the header is ignored");
            }
        }
    }
});
