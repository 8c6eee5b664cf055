//! Identity: tenants, sessions (signed tokens), FastComments-compatible secure
//! SSO, anonymous users and who may do what.

use crate::ids::TenantId;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::protocol::User;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnonymousPolicy {
    None,
    Read,
    Write,
}

impl AnonymousPolicy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Read => "read",
            Self::Write => "write",
        }
    }
}

/// One customer site.
#[derive(Clone, PartialEq)]
pub struct Tenant {
    pub id: TenantId,
    /// Signs SSO payloads and authenticates the tenant's own API calls.
    pub secret: String,
    /// Browser origins allowed to use the tenant; empty allows any.
    pub origins: Vec<String>,
    pub anonymous: AnonymousPolicy,
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field("origins", &self.origins)
            .field("anonymous", &self.anonymous)
            .finish()
    }
}

impl Tenant {
    /// Requests without an Origin (servers, tools) are not origin-checked.
    pub fn allows_origin(&self, origin: Option<&str>) -> bool {
        match origin {
            None => true,
            Some(o) => self.origins.is_empty() || self.origins.iter().any(|a| a == o),
        }
    }

    /// Compares a presented secret in constant time.
    pub fn secret_matches(&self, presented: &str) -> bool {
        constant_time_eq(self.secret.as_bytes(), presented.as_bytes())
    }
}

/// The user behind a request, as proven by a session token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Actor {
    #[serde(rename = "t")]
    pub tenant_id: TenantId,
    #[serde(rename = "u")]
    pub user: User,
    #[serde(rename = "m")]
    pub moderator: bool,
    /// Expiry, ms since the epoch.
    #[serde(rename = "e")]
    pub expires_at: i64,
}

impl Actor {
    pub fn can_read(&self, tenant: &Tenant) -> bool {
        !self.user.anonymous || tenant.anonymous != AnonymousPolicy::None
    }
    pub fn can_write(&self, tenant: &Tenant) -> bool {
        !self.user.anonymous || tenant.anonymous == AnonymousPolicy::Write
    }
    /// Edit or delete a comment; move or delete a chat.
    pub fn owns_or_moderates(&self, author_id: &str) -> bool {
        self.moderator || self.user.id == author_id
    }
}

// ------------------------------------------------------------- tokens ----

/// Signs and checks session tokens: `base64url(json) "." base64url(hmac)`.
/// Stateless, so any node holding the key can check a token without a lookup.
/// Holds the HMAC already keyed (RFC 2104's inner and outer pads hashed
/// once), so a check hashes only the token.
#[derive(Clone)]
pub struct TokenKey(HmacSha256);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    pub fn new(key: Vec<u8>) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        TokenKey(<HmacSha256 as Mac>::new_from_slice(&key).unwrap_or_else(|_| unreachable!()))
    }

    fn mac(&self, data: &[u8]) -> Vec<u8> {
        let mut m = self.0.clone();
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }

    /// Whether `sig` is the MAC of `data`, compared in constant time.
    fn mac_matches(&self, data: &[u8], sig: &[u8]) -> bool {
        let mut m = self.0.clone();
        m.update(data);
        m.verify_slice(sig).is_ok()
    }

    pub fn sign(&self, actor: &Actor) -> String {
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(actor).unwrap_or_default());
        let sig = URL_SAFE_NO_PAD.encode(self.mac(body.as_bytes()));
        format!("{body}.{sig}")
    }

    /// The actor of a valid, unexpired token.
    pub fn verify(&self, token: &str, now: i64) -> Option<Actor> {
        let (body, sig) = token.split_once('.')?;
        let mut raw = [0u8; 32];
        match URL_SAFE_NO_PAD.decode_slice(sig, &mut raw) {
            Ok(32) if self.mac_matches(body.as_bytes(), &raw) => {}
            _ => return None,
        }
        let actor: Actor = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
        (actor.expires_at > now).then_some(actor)
    }
}

/// Signs a value with a purpose-bound key derived from the token key, for
/// cookies and other server-issued strings that are not session tokens.
pub fn sign_value(key: &TokenKey, purpose: &str, value: &str) -> String {
    let sig = URL_SAFE_NO_PAD.encode(key.mac(format!("{purpose}\n{value}").as_bytes()));
    format!("{}.{sig}", URL_SAFE_NO_PAD.encode(value))
}

pub fn verify_value(key: &TokenKey, purpose: &str, signed: &str) -> Option<String> {
    let (v, sig) = signed.split_once('.')?;
    let value = String::from_utf8(URL_SAFE_NO_PAD.decode(v).ok()?).ok()?;
    let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
    key.mac_matches(format!("{purpose}\n{value}").as_bytes(), &sig)
        .then_some(value)
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ---------------------------------------------------------------- SSO ----

/// The `sso` object of `POST /api/v1/sessions`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SsoPayload {
    #[serde(rename = "userDataJSONBase64")]
    pub user_data_json_base64: String,
    pub verification_hash: String,
    pub timestamp: serde_json::Number,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SsoUserData {
    id: Option<String>,
    username: Option<String>,
    avatar: Option<serde_json::Value>,
    #[serde(default)]
    is_admin: Option<serde_json::Value>,
    #[serde(default)]
    is_moderator: Option<serde_json::Value>,
    #[serde(default)]
    email: Option<serde_json::Value>,
    #[serde(default)]
    display_name: Option<serde_json::Value>,
    #[serde(default)]
    opted_in_notifications: Option<serde_json::Value>,
    #[serde(default)]
    locale: Option<serde_json::Value>,
}

/// What a verified SSO payload says of its user (contract §3, §13).
#[derive(Debug, Clone, PartialEq)]
pub struct SsoUser {
    /// `name` is `displayName` when the payload has a usable one, else
    /// `username`.
    pub user: User,
    pub moderator: bool,
    /// A plausible address (at most 254 characters, one `@`), never
    /// shown to other users; `None` when absent or unusable.
    pub email: Option<String>,
    /// `ja` when the payload's `locale` is Japanese, else `en`.
    pub locale: &'static str,
    /// `false` when the payload says `optedInNotifications: false`.
    pub mail_ok: bool,
}

/// An e-mail address worth trying: at most 254 characters, one `@` with
/// something on each side, no spaces or control characters. (Whether it
/// is deliverable is the mail server's to say.)
fn plausible_email(v: Option<serde_json::Value>) -> Option<String> {
    let serde_json::Value::String(e) = v? else {
        return None;
    };
    let e = e.trim();
    let (local, domain) = e.split_once('@')?;
    let ok = e.chars().count() <= 254
        && !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !e
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>');
    ok.then(|| e.to_owned())
}

const SSO_MAX_AGE_MS: i64 = 2 * 24 * 3600 * 1000;
const SSO_MAX_SKEW_MS: i64 = 5 * 60 * 1000;

/// The secure-SSO signature of a payload, as a tenant's backend makes it
/// (contract §3): `hex(HMAC-SHA256(secret, decimal(timestamp) + payload))`.
pub fn sso_hash(secret: &str, timestamp: i64, payload_b64: &str) -> String {
    let Ok(mut m) = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    m.update(timestamp.to_string().as_bytes());
    m.update(payload_b64.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// Checks a secure-SSO payload against the tenant secret; what it says of
/// its user. `None` for anything that does not verify.
pub fn verify_sso(secret: &str, sso: &SsoPayload, now: i64) -> Option<SsoUser> {
    let ts = sso.timestamp.as_i64().or_else(|| {
        sso.timestamp
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
            .map(|f| f as i64)
    })?;
    if ts < now - SSO_MAX_AGE_MS || ts > now + SSO_MAX_SKEW_MS {
        return None;
    }
    let presented = hex::decode(sso.verification_hash.to_ascii_lowercase()).ok()?;
    let mut m = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes()).ok()?;
    m.update(ts.to_string().as_bytes());
    m.update(sso.user_data_json_base64.as_bytes());
    m.verify_slice(&presented).ok()?;
    let raw = STANDARD.decode(sso.user_data_json_base64.trim()).ok()?;
    let data: SsoUserData = serde_json::from_slice(&raw).ok()?;
    // Trimmed, then counted; blank or with refused characters is refused
    // (see `validate`), so nobody signs in as an invisible author.
    let id = super::validate::name(&data.id?, 256)?;
    let username = super::validate::name(&data.username?, 100)?;
    // FastComments' optional display name: shown instead when usable.
    let name = match data.display_name {
        Some(serde_json::Value::String(d)) => super::validate::name(&d, 100).unwrap_or(username),
        _ => username,
    };
    if id.starts_with("anon:") {
        return None;
    }
    let avatar = match data.avatar {
        Some(serde_json::Value::String(a)) if super::validate::web_url("avatar", &a).is_ok() => {
            Some(a)
        }
        _ => None,
    };
    let truthy = |v: &Option<serde_json::Value>| matches!(v, Some(serde_json::Value::Bool(true)));
    let moderator = truthy(&data.is_admin) || truthy(&data.is_moderator);
    let locale = match &data.locale {
        Some(serde_json::Value::String(l)) if l.to_ascii_lowercase().starts_with("ja") => "ja",
        _ => "en",
    };
    Some(SsoUser {
        user: User {
            id,
            name,
            avatar,
            anonymous: false,
        },
        moderator,
        email: plausible_email(data.email),
        locale,
        // Absent (or null) or `true`: yes. Anything else (`false`,
        // "false", 0) is no: a payload that tried to say no is never mailed.
        mail_ok: matches!(
            data.opted_in_notifications,
            None | Some(serde_json::Value::Bool(true))
        ),
    })
}

/// A fresh anonymous user with a friendly generated name.
pub fn anonymous_user() -> User {
    // Short words keep events small: a name is at most 9 characters.
    const ADJ: [&str; 16] = [
        "Amber", "Blue", "Coral", "Fern", "Gold", "Iris", "Jade", "Lime", "Mint", "Plum", "Rose",
        "Ruby", "Sage", "Sky", "Teal", "Ivory",
    ];
    const ANIMAL: [&str; 16] = [
        "Owl", "Fox", "Elk", "Yak", "Lynx", "Ibis", "Wren", "Koi", "Jay", "Crow", "Seal", "Hare",
        "Mole", "Newt", "Puma", "Orca",
    ];
    let mut b = [0u8; 2];
    super::fill_random(&mut b);
    User {
        // 72 random bits: an id is what authorship checks compare.
        id: format!("anon:{}", super::short_id(12)),
        name: format!(
            "{} {}",
            ADJ[(b[0] & 15) as usize],
            ANIMAL[(b[1] & 15) as usize]
        ),
        avatar: None,
        anonymous: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sso_for(secret: &str, user: &str, ts: i64) -> SsoPayload {
        let b = STANDARD.encode(user);
        let mut m = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes()).unwrap();
        m.update(format!("{ts}{b}").as_bytes());
        SsoPayload {
            user_data_json_base64: b,
            verification_hash: hex::encode(m.finalize().into_bytes()),
            timestamp: ts.into(),
        }
    }

    #[test]
    fn sso_accepts_a_valid_payload_and_rejects_tampering() {
        let now = 1_700_000_000_000;
        let p = sso_for(
            "s3cret",
            r#"{"id":"u1","username":"Ann","isModerator":true,"avatar":"ftp://x"}"#,
            now,
        );
        let got = verify_sso("s3cret", &p, now).unwrap();
        let (u, m) = (got.user, got.moderator);
        assert_eq!(
            (u.id.as_str(), u.name.as_str(), m, u.avatar),
            ("u1", "Ann", true, None)
        );
        assert_eq!((got.email, got.locale, got.mail_ok), (None, "en", true));
        assert!(verify_sso("other", &p, now).is_none());
        assert!(verify_sso("s3cret", &p, now + SSO_MAX_AGE_MS + 1).is_none());
        assert!(verify_sso("s3cret", &p, now - SSO_MAX_SKEW_MS - 1).is_none());
        // Trimmed, then counted; blank ids and names are refused.
        for (user, ok) in [
            (r#"{"id":"  u2  ","username":"  Bo  "}"#.to_owned(), true),
            (
                format!(r#"{{"id":"u3","username":"  {}  "}}"#, "b".repeat(100)),
                true,
            ),
            (r#"{"id":"   ","username":"Bo"}"#.to_owned(), false),
            (
                r#"{"id":"u4","username":"\u3000\u00a0 "}"#.to_owned(),
                false,
            ),
            (r#"{"id":"u4","username":"\u200b"}"#.to_owned(), false),
            (r#"{"id":"u4","username":"B\u0000o"}"#.to_owned(), false),
        ] {
            let got = verify_sso("s", &sso_for("s", &user, now), now);
            assert_eq!(got.is_some(), ok, "{user}");
            if let Some(SsoUser { user: u, .. }) = got {
                assert_eq!(u.id, u.id.trim());
                assert_eq!(u.name, u.name.trim());
            }
        }
        let anon = sso_for("s", r#"{"id":"anon:1","username":"A"}"#, now);
        assert!(verify_sso("s", &anon, now).is_none());
    }

    /// FastComments' optional fields: displayName, email,
    /// optedInNotifications, locale.
    #[test]
    fn sso_reads_the_optional_profile_fields() {
        let now = 1_700_000_000_000;
        let full = sso_for(
            "s",
            r#"{"id":"u1","username":"ann","displayName":"  Ann Lee ","email":"ann@example.com","optedInNotifications":false,"locale":"ja_JP"}"#,
            now,
        );
        let got = verify_sso("s", &full, now).unwrap();
        assert_eq!(got.user.name, "Ann Lee");
        assert_eq!(got.email.as_deref(), Some("ann@example.com"));
        assert_eq!((got.locale, got.mail_ok), ("ja", false));
        for (extra, name, email) in [
            (r#""displayName":"   ""#, "ann", None),
            (r#""displayName":7"#, "ann", None),
            (r#""email":"not an address""#, "ann", None),
            (r#""email":"a@b@c""#, "ann", None),
            (r#""email":"x@example.com""#, "ann", Some("x@example.com")),
        ] {
            let p = sso_for(
                "s",
                &format!(r#"{{"id":"u1","username":"ann",{extra}}}"#),
                now,
            );
            let got = verify_sso("s", &p, now).unwrap();
            assert_eq!(
                (got.user.name.as_str(), got.email.as_deref()),
                (name, email),
                "{extra}"
            );
        }
        let long = format!(
            r#"{{"id":"u1","username":"ann","email":"{}@e.com"}}"#,
            "a".repeat(250)
        );
        assert_eq!(
            verify_sso("s", &sso_for("s", &long, now), now)
                .unwrap()
                .email,
            None
        );
        // Only absent or `true` lets mail through.
        for (opt, ok) in [
            ("", true),
            (r#","optedInNotifications":true"#, true),
            (r#","optedInNotifications":"false""#, false),
            (r#","optedInNotifications":0"#, false),
            // null is absent, as everywhere in the payload.
            (r#","optedInNotifications":null"#, true),
        ] {
            let p = format!(r#"{{"id":"u1","username":"ann"{opt}}}"#);
            let got = verify_sso("s", &sso_for("s", &p, now), now).unwrap();
            assert_eq!(got.mail_ok, ok, "{opt}");
        }
    }

    #[test]
    fn tokens_round_trip_and_expire() {
        let key = TokenKey::new(b"k".to_vec());
        let a = Actor {
            tenant_id: "t".into(),
            user: anonymous_user(),
            moderator: false,
            expires_at: 100,
        };
        let t = key.sign(&a);
        assert_eq!(key.verify(&t, 99), Some(a));
        assert_eq!(key.verify(&t, 100), None);
        assert_eq!(TokenKey::new(b"other".to_vec()).verify(&t, 0), None);
        let mut forged = t.clone();
        forged.insert(1, 'x');
        assert_eq!(key.verify(&forged, 0), None);
        let c = sign_value(&key, "cookie", "acme");
        assert_eq!(verify_value(&key, "cookie", &c).as_deref(), Some("acme"));
        assert_eq!(verify_value(&key, "other", &c), None);
    }
}
