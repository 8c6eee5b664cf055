//! Query strings, decoded as the server decodes them, into every query type.
#![no_main]

use imagechat::http::annotations::{Export, Import};
use imagechat::http::chats::{Position, UrlId};
use imagechat::http::extract::{FromQuery, QueryMap};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let q: QueryMap = form_urlencoded::parse(data).into_owned().collect();
    let _ = UrlId::from_query(&q);
    let _ = Position::from_query(&q);
    let _ = Export::from_query(&q);
    let _ = Import::from_query(&q);
});
