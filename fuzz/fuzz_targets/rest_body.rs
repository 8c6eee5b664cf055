//! REST bodies as the server reads them: every request type's field rules,
//! shapes, and the text rules they apply.
#![no_main]

use imagechat::http::extract::{Fields, FromJson};
use imagechat::protocol::{
    CommentRequest, CreateChatRequest, CreateTenantRequest, UpdateChatRequest,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let _ = imagechat::domain::shape::parse(&value);
    if let Value::Object(map) = &value {
        let f = Fields(map);
        if let Ok(c) = CreateChatRequest::from_json(&f) {
            // What is accepted holds to the rules.
            assert!(!c.text.trim().is_empty());
            assert!((0.0..=100.0).contains(&c.x) && (0.0..=100.0).contains(&c.y));
        }
        let _ = UpdateChatRequest::from_json(&f);
        let _ = CommentRequest::from_json(&f);
        let _ = CreateTenantRequest::from_json(&f);
    }
});
