//! Typed ids. Each names one kind of thing, so a tenant's id can never be
//! passed where a chat's was meant, and an image is always named with its
//! tenant. All are opaque to clients (protocol §20).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A tenant's id (`^[a-z0-9][a-z0-9-]{0,62}$` when created).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = String)]
pub struct TenantId(Arc<str>);

/// A chat's id.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = String)]
pub struct ChatId(Arc<str>);

macro_rules! string_id {
    ($t:ident) => {
        impl $t {
            pub fn new(s: impl Into<Arc<str>>) -> Self {
                $t(s.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl std::ops::Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::borrow::Borrow<str> for $t {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
        impl From<&str> for $t {
            fn from(s: &str) -> Self {
                $t(s.into())
            }
        }
        impl From<String> for $t {
            fn from(s: String) -> Self {
                $t(s.into())
            }
        }
    };
}

string_id!(TenantId);
string_id!(ChatId);

/// One image's discussion: its tenant and its urlId. The key of an image's
/// event log, its hub entry and its bus topic. A urlId never holds a
/// control character, so a newline separates the two unambiguously.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageKey(Arc<str>);

impl ImageKey {
    pub fn new(tenant: &str, url_id: &str) -> Self {
        ImageKey(format!("{tenant}\n{url_id}").into())
    }
    pub fn tenant(&self) -> &str {
        self.0.split_once('\n').map_or("", |(t, _)| t)
    }
    pub fn url_id(&self) -> &str {
        self.0.split_once('\n').map_or("", |(_, u)| u)
    }
    /// Tenant and urlId joined by a newline, as one string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A position in an image's event log: the seq of its last event (0 for an
/// image never written). Gap-free per image.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = u64)]
pub struct Seq(pub u64);

impl Seq {
    pub const ZERO: Seq = Seq(0);

    pub fn get(self) -> u64 {
        self.0
    }

    /// The next position (saturating: 2^64 events are not reachable).
    pub fn next(self) -> Seq {
        Seq(self.0.saturating_add(1))
    }

    /// Events between `earlier` and this position (0 when not later).
    pub fn since(self, earlier: Seq) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// For SQL, whose integers are signed: positions beyond `i64::MAX`
    /// are clamped (they cannot be stored, so they match nothing).
    pub fn to_sql(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }

    /// From SQL; a negative value (never written) reads as 0.
    pub fn from_sql(v: i64) -> Seq {
        Seq(u64::try_from(v).unwrap_or(0))
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_key_keeps_its_two_parts() {
        let k = ImageKey::new("acme", "https://x.example/p#a.png");
        assert_eq!(
            (k.tenant(), k.url_id()),
            ("acme", "https://x.example/p#a.png")
        );
    }

    #[test]
    fn seq_arithmetic_never_wraps() {
        assert_eq!(Seq(u64::MAX).next(), Seq(u64::MAX));
        assert_eq!(Seq(3).since(Seq(5)), 0);
        assert_eq!(Seq(5).since(Seq(3)), 2);
        assert_eq!(Seq(u64::MAX).to_sql(), i64::MAX);
        assert_eq!(Seq::from_sql(-1), Seq::ZERO);
        assert_eq!(serde_json::to_string(&Seq(7)).unwrap(), "7");
    }
}
