//! The guard against webhook requests into private networks (contract
//! §12, the SSRF rule): only globally routable addresses may be reached.
//! A literal address is checked when the endpoint is registered and at
//! each attempt; a name is resolved at each attempt by [`Resolver`], which
//! refuses it when any of its addresses is not global, so the address
//! checked is the address connected to (no second lookup to rebind).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why a webhook URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the URL must be an absolute http or https URL with a host")]
    NotWeb,
    #[error("the URL must not carry a user name or password")]
    Credentials,
    #[error("{0} is not a globally routable address")]
    Private(IpAddr),
    /// A name that resolves to such an address (which is not said: a
    /// tenant must not learn the inside of the network this way).
    #[error("the host resolves to an address that is not globally routable")]
    PrivateName,
    #[error("the URL must not hold control characters or spaces")]
    Unprintable,
    #[error("the URL's port must not be 0")]
    PortZero,
    #[error("the URL is longer than 2048 bytes")]
    TooLong,
}

/// Whether an IPv4 address is globally routable: not in 0.0.0.0/8
/// ("this network"), 10/8, 172.16/12, 192.168/16 (RFC 1918), 100.64/10
/// (CGNAT, RFC 6598), 127/8, 169.254/16 (link-local), 192.0.0/24 (IETF
/// protocol assignments), 192.0.2/24, 198.51.100/24, 203.0.113/24
/// (documentation), 198.18/15 (benchmarking), 224/4 (multicast) or
/// 240/4 (reserved, broadcast included).
pub fn is_global_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0
        || a == 10
        || (a == 172 && (16..=31).contains(&b))
        || (a == 192 && b == 168)
        || (a == 100 && (64..=127).contains(&b))
        || a == 127
        || (a == 169 && b == 254)
        || (a == 192 && b == 0 && c == 0)
        || (a == 192 && b == 0 && c == 2)
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 224)
}

/// Whether an IPv6 address is globally routable: an IPv4-mapped address
/// (`::ffff:0:0/96`) is judged by its IPv4 address; otherwise only global
/// unicast (`2000::/3`) passes, less the IETF protocol assignments
/// `2001::/23` (Teredo, benchmarking, ORCHID and the like), documentation
/// (`2001:db8::/32`, `3fff::/20`) and 6to4 (`2002::/16`) wrapping an IPv4
/// address that does not pass. So `::`, `::1`, IPv4-compatible and
/// -translated forms, NAT64 (`64:ff9b::/96`, `64:ff9b:1::/48`), discard
/// (`100::/64`), unique-local, site-local, link-local and multicast
/// addresses are all refused.
pub fn is_global_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if s[..5] == [0; 5] && s[5] == 0xffff {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return is_global_v4(v4);
    }
    if (s[0] & 0xe000) != 0x2000 {
        return false;
    }
    if s[0] == 0x2001 && s[1] < 0x0200 {
        return false;
    }
    if (s[0] == 0x2001 && s[1] == 0x0db8) || (s[0] & 0xfff0) == 0x3ff0 {
        return false;
    }
    if s[0] == 0x2002 {
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return is_global_v4(v4);
    }
    true
}

pub fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => is_global_v6(v6),
    }
}

/// Checks an endpoint URL: absolute http(s) with a host, no credentials,
/// at most 2048 bytes, and, when its host is a literal address, a global
/// one (unless `allow_private`).
pub fn check_url(raw: &str, allow_private: bool) -> Result<url::Url, Refused> {
    if raw.len() > 2048 {
        return Err(Refused::TooLong);
    }
    if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Refused::Unprintable);
    }
    let url = url::Url::parse(raw).map_err(|_| Refused::NotWeb)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Refused::NotWeb);
    }
    // An `@` in the authority is credentials, even empty ones.
    let authority = raw.split_once("://").map_or("", |(_, rest)| {
        rest.split(['/', '?', '#']).next().unwrap_or("")
    });
    if !url.username().is_empty() || url.password().is_some() || authority.contains('@') {
        return Err(Refused::Credentials);
    }
    if url.port() == Some(0) {
        return Err(Refused::PortZero);
    }
    let ip = match url.host() {
        None => return Err(Refused::NotWeb),
        Some(url::Host::Domain(_)) => None,
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
    };
    match ip {
        Some(ip) if !allow_private && !is_global(ip) => Err(Refused::Private(ip)),
        _ => Ok(url),
    }
}

/// Resolves names with the system's resolver and refuses any name with
/// an address that is not global (unless `allow_private`).
pub struct Resolver {
    pub allow_private: bool,
}

impl Resolve for Resolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.iter().any(|a| !allow_private && !is_global(a.ip())) {
                return Err(Box::new(Refused::PrivateName) as Box<_>);
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_globally_routable_addresses_pass() {
        for (ip, global) in [
            ("8.8.8.8", true),
            ("93.184.216.34", true),
            ("0.0.0.0", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("172.31.255.255", false),
            ("172.32.0.1", true),
            ("192.168.1.1", false),
            ("100.64.0.1", false),
            ("100.128.0.1", true),
            ("127.0.0.1", false),
            ("169.254.169.254", false),
            ("224.0.0.1", false),
            ("255.255.255.255", false),
            ("::", false),
            ("::1", false),
            ("fe80::1", false),
            ("fd00::1", false),
            ("fc00::1", false),
            ("ff02::1", false),
            ("::ffff:127.0.0.1", false),
            ("::ffff:10.0.0.1", false),
            ("::ffff:8.8.8.8", true),
            ("::127.0.0.1", false),
            ("::8.8.8.8", false),
            ("::ffff:0:7f00:1", false),
            ("64:ff9b::a00:1", false),
            ("64:ff9b:1::7f00:1", false),
            ("100::1", false),
            ("2001::1", false),
            ("2001:2::1", false),
            ("2001:10::1", false),
            ("fec0::1", false),
            ("5f00::1", false),
            ("3fff::1", false),
            ("3fff:fff::1", false),
            ("2002:a00:1::", false),
            ("2002:808:808::", true),
            ("2001:db8::1", false),
            ("2606:4700:4700::1111", true),
            ("2a00:1450:4001::1", true),
        ] {
            let parsed: IpAddr = ip.parse().unwrap();
            assert_eq!(is_global(parsed), global, "{ip}");
        }
    }

    #[test]
    fn urls_are_checked_for_scheme_credentials_and_literal_addresses() {
        assert!(check_url("https://hooks.example.com/x", false).is_ok());
        assert_eq!(check_url("ftp://example.com/", false), Err(Refused::NotWeb));
        assert_eq!(check_url("/relative", false), Err(Refused::NotWeb));
        assert_eq!(
            check_url("https://u:p@example.com/", false),
            Err(Refused::Credentials)
        );
        assert!(matches!(
            check_url("http://127.0.0.1:8080/", false),
            Err(Refused::Private(_))
        ));
        assert!(matches!(
            check_url("http://[::ffff:192.168.0.1]/", false),
            Err(Refused::Private(_))
        ));
        // The URL parser reads the other spellings of an IPv4 address.
        assert!(matches!(
            check_url("http://2130706433/", false),
            Err(Refused::Private(_))
        ));
        assert!(matches!(
            check_url("http://0x7f.1/", false),
            Err(Refused::Private(_))
        ));
        assert!(check_url("http://127.0.0.1:8080/", true).is_ok());
        for bad in [
            "http://e.com/a\r\nX-Injected: 1",
            "http://e.com/a b",
            "http://e.com/\ta",
        ] {
            assert_eq!(check_url(bad, false), Err(Refused::Unprintable), "{bad:?}");
        }
        assert_eq!(
            check_url("http://:@example.com/", false),
            Err(Refused::Credentials)
        );
        assert_eq!(
            check_url("http://example.com:0/", false),
            Err(Refused::PortZero)
        );
        assert_eq!(
            check_url(&format!("https://e.com/{}", "a".repeat(2048)), false),
            Err(Refused::TooLong)
        );
    }

    #[tokio::test]
    async fn names_that_resolve_to_private_addresses_are_refused() {
        let r = Resolver {
            allow_private: false,
        };
        let name: Name = "localhost".parse().unwrap();
        assert!(r.resolve(name).await.is_err());
        let open = Resolver {
            allow_private: true,
        };
        let name: Name = "localhost".parse().unwrap();
        assert!(open.resolve(name).await.is_ok());
    }
}
