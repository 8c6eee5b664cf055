//! The client message parser (hello, subscribe, unsubscribe, ping).
#![no_main]

use imagechat::protocol::ClientMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ClientMessage::parse(text);
    }
});
