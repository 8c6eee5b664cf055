//! Input limits of the contract, one function per kind of input, and the
//! text rules every kind of text shares:
//!
//! - **Refused characters** ([`refused`]): control characters (C0 other
//!   than tab, line feed and carriage return, DEL, C1), the bidirectional
//!   embeddings, overrides and isolates U+202A–U+202E and U+2066–U+2069
//!   (they reorder what a reader sees; "Trojan Source", CVE-2021-42574),
//!   and noncharacters (U+FDD0–U+FDEF and every U+xFFFE/U+xFFFF). Names,
//!   ids and URLs also refuse tab and line breaks.
//! - **Blank** ([`is_blank`]): nothing but Unicode white space and
//!   default-ignorable code points (zero-width spaces and joiners, the BOM,
//!   soft hyphens, variation selectors…: Unicode's
//!   `Default_Ignorable_Code_Point`). Blank text counts as empty.
//!
//! A refused character is an `invalid_input` of its field, so no input
//! reaches a store unchecked (PostgreSQL cannot store NUL at all).

use super::DomainError;

pub const MAX_TEXT_CHARS: usize = 2000;
/// Attachments per comment (contract §14).
pub const MAX_ATTACHMENTS: usize = 4;
/// Most users one comment may mention (contract §13).
pub const MAX_MENTIONS: usize = 10;
pub const MAX_URL_ID_BYTES: usize = 1024;

/// Unicode's `Default_Ignorable_Code_Point` (DerivedCoreProperties.txt,
/// Unicode 15.1): code points that render as nothing.
pub fn is_default_ignorable(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F..=0x1160 | 0x17B4..=0x17B5
        | 0x180B..=0x180F | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F
        | 0x3164 | 0xFE00..=0xFE0F | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFF8
        | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0000..=0xE0FFF)
}

/// True when `s` holds nothing but white space and default-ignorable code
/// points (the empty string included).
pub fn is_blank(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_whitespace() || is_default_ignorable(c))
}

/// Whether a character is refused in text; `breaks` allows tab, line feed
/// and carriage return (comments), otherwise they are refused too.
pub fn refused(c: char, breaks: bool) -> bool {
    let n = c as u32;
    (c.is_control() && !(breaks && matches!(c, '\t' | '\n' | '\r')))
        || matches!(n, 0x202A..=0x202E | 0x2066..=0x2069 | 0xFDD0..=0xFDEF)
        || n & 0xFFFE == 0xFFFE
}

/// The first refused character of `s`, described for an error message.
fn first_refused(s: &str, breaks: bool) -> Option<String> {
    s.chars()
        .find(|c| refused(*c, breaks))
        .map(|c| format!("U+{:04X}", c as u32))
}

/// A name or id: trimmed of white space, refused characters (line breaks
/// included) refused, not blank, then 1..=`max` scalar values. `None` when
/// it is not acceptable.
pub fn name(raw: &str, max: usize) -> Option<String> {
    let t = raw.trim();
    if is_blank(t) || first_refused(t, false).is_some() || t.chars().count() > max {
        return None;
    }
    Some(t.to_owned())
}

/// A plain setting (secret, origin): no refused characters, line breaks
/// included.
pub fn plain(field: &'static str, raw: &str) -> Result<(), DomainError> {
    match first_refused(raw, false) {
        Some(c) => Err(DomainError::invalid(
            field,
            format!("{field} must not contain {c}"),
        )),
        None => Ok(()),
    }
}

/// Trims Unicode white space and checks 1..=2000 scalar values, no refused
/// characters, not blank.
pub fn text(field: &'static str, raw: &str) -> Result<String, DomainError> {
    let t = raw.trim();
    if let Some(c) = first_refused(t, true) {
        return Err(DomainError::invalid(
            field,
            format!("{field} must not contain {c} (control or bidirectional-override characters)"),
        ));
    }
    if is_blank(t) {
        return Err(DomainError::invalid(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if t.chars().count() > MAX_TEXT_CHARS {
        return Err(DomainError::invalid(
            field,
            format!("{field} must be at most {MAX_TEXT_CHARS} characters"),
        ));
    }
    Ok(t.to_owned())
}

/// 1..=1024 UTF-8 bytes, no control characters.
pub fn url_id(raw: &str) -> Result<(), DomainError> {
    if raw.is_empty() || raw.len() > MAX_URL_ID_BYTES {
        return Err(DomainError::invalid(
            "urlId",
            format!("urlId must be 1..={MAX_URL_ID_BYTES} bytes"),
        ));
    }
    if raw.chars().any(|c| refused(c, false)) {
        return Err(DomainError::invalid(
            "urlId",
            "urlId must not contain control or bidirectional-override characters",
        ));
    }
    if is_blank(raw) {
        return Err(DomainError::invalid("urlId", "urlId must not be blank"));
    }
    Ok(())
}

/// A percentage coordinate in the closed range [0, 100].
pub fn coordinate(field: &'static str, v: f64) -> Result<f64, DomainError> {
    if v.is_finite() && (0.0..=100.0).contains(&v) {
        // -0.0 is 0.0: one point, one way to write it.
        Ok(v + 0.0)
    } else {
        Err(DomainError::invalid(
            field,
            format!("{field} must be within 0..=100"),
        ))
    }
}

/// Longest `imageUrl` / `pageUrl`, in bytes.
pub const MAX_WEB_URL_BYTES: usize = 2048;

/// An absolute http(s) URL of at most 2048 bytes with a host, that the
/// WHATWG URL parser (`url` crate) reads, holding no white space, no refused
/// characters (see the module's text rules) and none of `<>"` `` ` `` `{}|^\\`
/// (contract §10 `imageUrl`, `pageUrl`; SSO avatars).
pub fn web_url(field: &'static str, raw: &str) -> Result<(), DomainError> {
    let bad = |why: &str| Err(DomainError::invalid(field, format!("{field} {why}")));
    if raw.len() > MAX_WEB_URL_BYTES {
        return bad(&format!("must be at most {MAX_WEB_URL_BYTES} bytes"));
    }
    if raw
        .chars()
        .any(|c| c.is_whitespace() || refused(c, false) || "<>\"`{}|^\\".contains(c))
    {
        return bad("must not contain spaces, control characters or any of <>\"`{}|^\\");
    }
    // The WHATWG parser forgives `https:///x` (host `x`); a URL here names
    // its host right after `//`, as written.
    let after_scheme = raw.split_once("://").map(|(_, rest)| rest);
    if after_scheme.is_none_or(|r| r.is_empty() || r.starts_with(['/', '?', '#'])) {
        return bad("must be an absolute http or https URL");
    }
    match url::Url::parse(raw) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => bad("must be an absolute http or https URL"),
    }
}

/// `^[A-Za-z0-9_-]{1,64}$`
pub fn broadcast_id(raw: &str) -> Result<(), DomainError> {
    let ok = (1..=64).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid(
            "broadcastId",
            "broadcastId must match ^[A-Za-z0-9_-]{1,64}$",
        ))
    }
}

/// `^[a-z0-9][a-z0-9-]{0,62}$`
pub fn tenant_id(raw: &str) -> Result<(), DomainError> {
    let b = raw.as_bytes();
    let ok = (1..=63).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid(
            "tenantId",
            "tenantId must match ^[a-z0-9][a-z0-9-]{0,62}$",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_counts_scalar_values_after_trimming() {
        assert_eq!(text("text", "  hi \n").unwrap(), "hi");
        assert!(text("text", " \t\n ").is_err());
        assert!(text("text", &"é".repeat(2000)).is_ok());
        assert!(text("text", &"😀".repeat(2000)).is_ok());
        assert!(text("text", &"😀".repeat(2001)).is_err());
        assert!(text("text", &format!("  {}\n", "a".repeat(2000))).is_ok());
    }

    #[test]
    fn blank_and_refused_characters_apply_to_every_kind_of_text() {
        for blank in [
            "\u{200B}\u{200B}",
            "\u{FEFF}",
            " \u{3000}\u{00A0} ",
            "\u{2060}\u{180E}\u{FE0F}",
        ] {
            assert!(text("text", blank).is_err(), "{blank:?}");
            assert!(url_id(blank).is_err(), "{blank:?}");
            assert_eq!(name(blank, 100), None, "{blank:?}");
        }
        for bad in [
            "a\u{0}b",
            "a\u{7}",
            "x\u{85}y",
            "\u{202E}gnp.exe",
            "a\u{2066}b",
            "\u{FFFF}",
            "\u{10FFFE}",
            "\u{FDD0}",
        ] {
            assert!(text("text", bad).is_err(), "{bad:?}");
            assert!(url_id(bad).is_err(), "{bad:?}");
            assert_eq!(name(bad, 100), None, "{bad:?}");
            assert!(plain("secret", bad).is_err(), "{bad:?}");
        }
        // Comments keep their line breaks and tabs; names do not.
        assert_eq!(text("text", " a\r\n\tb ").unwrap(), "a\r\n\tb");
        assert_eq!(name("a\nb", 100), None);
        // Right-to-left text itself, and the marks, are fine.
        assert_eq!(text("text", "שלום \u{200F}!").unwrap(), "שלום \u{200F}!");
        assert_eq!(name("  عائشة  ", 100).as_deref(), Some("عائشة"));
        // Trimmed first, then counted.
        assert_eq!(
            name(&format!("  {}  ", "a".repeat(100)), 100).map(|n| n.len()),
            Some(100)
        );
        assert_eq!(name(&"a".repeat(101), 100), None);
    }

    #[test]
    fn url_ids_count_bytes_and_refuse_controls() {
        assert!(url_id(&"é".repeat(512)).is_ok());
        assert!(url_id(&"é".repeat(513)).is_err());
        assert!(url_id("").is_err());
        assert!(url_id("a\u{0}b").is_err());
        assert!(url_id("a\u{7f}b").is_err());
    }

    #[test]
    fn coordinates_and_ids() {
        assert!(coordinate("x", 0.0).is_ok() && coordinate("x", 100.0).is_ok());
        assert!(coordinate("x", -0.01).is_err() && coordinate("x", f64::NAN).is_err());
        assert!(broadcast_id("a-b_C9").is_ok() && broadcast_id("a b").is_err());
        assert!(broadcast_id(&"a".repeat(65)).is_err());
        assert!(
            tenant_id("acme-1").is_ok() && tenant_id("-a").is_err() && tenant_id("Bad_Id").is_err()
        );
        assert!(tenant_id(&"a".repeat(64)).is_err());
    }

    #[test]
    fn web_urls_are_absolute_http_and_bounded() {
        for ok in [
            "https://a.example/x.png",
            "HTTP://a:8080/?q=1",
            "http://1.2.3.4",
        ] {
            assert!(web_url("imageUrl", ok).is_ok(), "{ok}");
        }
        let long = format!("https://a.example/{}", "a".repeat(MAX_WEB_URL_BYTES));
        for bad in [
            "",
            "/x.png",
            "data:image/png;base64,AAAA",
            "javascript:alert(1)",
            "https://",
            "https:///x",
            "ftp://a/x",
            "https://a/b c",
            "https://a/\u{0}",
            "https://example.com/\u{202e}",
            "https://a/\u{fffe}",
            "https://exa<mple.com/",
            "https://example.com/a\"><script>",
            "https://example.com:99999/a",
            "é",
            long.as_str(),
        ] {
            assert!(web_url("imageUrl", bad).is_err(), "{bad}");
        }
    }
}
