//! Credentials: SSO payloads (signed here with the test secret, so the
//! fuzzer reaches the decoding behind the signature check, and unsigned),
//! session tokens and signed cookie values.
#![no_main]

use imagechat::domain::auth::{sign_value, verify_sso, verify_value, SsoPayload, TokenKey};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "fuzz-secret";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let now = 1_800_000_000_000;
    let (b64, hash) = text.split_once('|').unwrap_or((text, ""));
    let signed = imagechat::domain::auth::sso_hash(SECRET, now, b64);
    for h in [signed.as_str(), hash] {
        let p = SsoPayload {
            user_data_json_base64: b64.to_owned(),
            verification_hash: h.to_owned(),
            timestamp: now.into(),
        };
        if let Some(u) = verify_sso(SECRET, &p, now) {
            // A user that signs in has a real id and name.
            let user = &u.user;
            assert!(!user.id.trim().is_empty() && !user.name.trim().is_empty());
            assert!(!user.id.starts_with("anon:"));
            // An address kept is one worth trying: short, one `@`, no
            // spaces or controls (it goes into an e-mail header).
            if let Some(e) = &u.email {
                assert!(e.chars().count() <= 254 && e.matches('@').count() == 1);
                assert!(!e.chars().any(|c| c.is_whitespace() || c.is_control()));
            }
            assert!(u.locale == "en" || u.locale == "ja");
        }
    }
    let key = TokenKey::new(b"fuzz-key-fuzz-key-fuzz-key-32byt".to_vec());
    let _ = key.verify(text, now);
    let _ = verify_value(&key, "tenant-dashboard", text);
    let round = sign_value(&key, "p", text);
    assert_eq!(verify_value(&key, "p", &round).as_deref(), Some(text));
});
