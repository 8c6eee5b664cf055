//! The WebSocket frame reader on arbitrary bytes, with the product's two
//! limits (1 KiB before hello, 16 KiB after): it may refuse, never panic,
//! and never allocate beyond its limit.
#![no_main]

use imagechat::ws::frame::Reader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        for limit in [imagechat::ws::MAX_HELLO, imagechat::ws::MAX_INBOUND] {
            let mut reader = Reader::new(limit);
            let mut input = data;
            // Every message until the input ends or the reader refuses.
            while reader.read(&mut input).await.is_ok() {}
        }
    });
});
