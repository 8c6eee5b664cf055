//! Domain rules: validation, permissions, identities and what each mutation
//! means as events. No axum, no sqlx: everything here is plain data in, plain
//! data out, so the rules are tested without a server.

pub mod auth;
pub mod chat;
pub mod shape;
pub mod validate;

pub use crate::ids::{ChatId, ImageKey, Seq, TenantId};
pub use auth::{Actor, AnonymousPolicy, Tenant};
pub use chat::{fold, plan, Mutation};

/// Why a request was refused by the rules. Transports map each variant to
/// their own status or close code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DomainError {
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Forbidden(&'static str),
}

impl DomainError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        DomainError::Invalid {
            field,
            message: message.into(),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A random id of `n` bytes of entropy, URL-safe base64 without padding.
/// Short ids keep events small: 9 bytes (72 bits) make 12 characters.
pub fn random_id(n: usize) -> String {
    use base64::Engine;
    let mut buf = vec![0u8; n];
    fill_random(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// A random id of `chars` URL-safe characters (6 bits each). Chat and
/// comment ids use 10 (60 bits): unique enough per tenant, and small, since
/// every event carries them.
pub fn short_id(chars: usize) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut buf = vec![0u8; chars];
    fill_random(&mut buf);
    buf.iter()
        .map(|b| ALPHABET[(b & 63) as usize] as char)
        .collect()
}

/// Fills `buf` from the operating system's generator. Without one the process
/// cannot issue safe ids or secrets at all, so it stops.
pub fn fill_random(buf: &mut [u8]) {
    if let Err(e) = getrandom::getrandom(buf) {
        panic!("the operating system's random generator failed: {e}");
    }
}
