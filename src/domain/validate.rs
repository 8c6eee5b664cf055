//! Input limits of the contract, one function per kind of input.

use super::DomainError;

pub const MAX_TEXT_CHARS: usize = 2000;
pub const MAX_URL_ID_BYTES: usize = 1024;

/// Trims Unicode white space and checks 1..=2000 scalar values.
pub fn text(field: &'static str, raw: &str) -> Result<String, DomainError> {
    let t = raw.trim();
    if t.is_empty() {
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
    if raw.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            "urlId",
            "urlId must not contain control characters",
        ));
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

/// An absolute http(s) URL of at most 2048 bytes with a host, and no
/// white space or control characters (contract §10 `imageUrl`, `pageUrl`).
pub fn web_url(field: &'static str, raw: &str) -> Result<(), DomainError> {
    let lower = raw.get(..8).unwrap_or(raw).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        raw.get(8..)
    } else if lower.starts_with("http://") {
        raw.get(7..)
    } else {
        None
    };
    let host_present = rest.is_some_and(|r| !r.is_empty() && !r.starts_with(['/', '?', '#']));
    if !host_present {
        return Err(DomainError::invalid(
            field,
            format!("{field} must be an absolute http or https URL"),
        ));
    }
    if raw.len() > MAX_WEB_URL_BYTES {
        return Err(DomainError::invalid(
            field,
            format!("{field} must be at most {MAX_WEB_URL_BYTES} bytes"),
        ));
    }
    if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(DomainError::invalid(
            field,
            format!("{field} must not contain spaces or control characters"),
        ));
    }
    Ok(())
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
            "é",
            long.as_str(),
        ] {
            assert!(web_url("imageUrl", bad).is_err(), "{bad}");
        }
    }
}
