//! Annotation imports (W3C and IIIF) and the SVG of their selectors.
#![no_main]

use imagechat::annotation::{self, svg, Options};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = svg::read(text);
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        for o in [
            Options::default(),
            Options {
                width: Some(800.0),
                height: Some(600.0),
            },
        ] {
            let _ = annotation::read(&value, &o);
        }
    }
});
