//! Which peer addresses an upstream fetch may connect to: the server-side request
//! forgery guard.
//!
//! A trust's discovery document names the URL Legate fetches keys from. Whoever
//! controls that document (or the issuer's DNS) could point it at Legate's own
//! network: a cloud metadata service (`169.254.169.254`), an admin port on
//! loopback, an internal service. Unless the trust sets `allow_private_network`,
//! every fetch for it may only reach public addresses.
//!
//! SECURITY: the check is made on the addresses a name *resolves to*, by the DNS
//! resolver the HTTP client connects with ([`PublicOnlyResolver`]), so a name that
//! resolves to a public address when checked and to a private one when connecting
//! (DNS rebinding) cannot slip through: the client connects only to the addresses
//! the resolver returned. The client does not call a resolver for IP-literal hosts,
//! so [`refuse_non_public_host`] checks those before the request.
//!
//! What counts as non-public: see [`non_public_range`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use legate_core::text::escape_untrusted;

/// The most addresses named in one refusal message.
const MAX_NAMED: usize = 4;

/// Which addresses a trust's fetches may connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkAccess {
    /// Public (globally routable unicast) addresses only: the default.
    PublicOnly,
    /// Any address, loopback and private networks included (issuers on the local
    /// network, tests). Set by `allow_private_network = true`.
    PrivateAllowed,
}

/// The special-purpose IPv4 ranges a fetch never reaches, with what they are.
/// (IANA IPv4 Special-Purpose Address Registry, RFC 6890 and successors.)
const V4_RANGES: [(Ipv4Addr, u8, &str); 15] = [
    (
        Ipv4Addr::new(0, 0, 0, 0),
        8,
        "unspecified (\"this network\")",
    ),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "private (RFC 1918)"),
    (Ipv4Addr::new(100, 64, 0, 0), 10, "shared (CGNAT, RFC 6598)"),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback"),
    (
        Ipv4Addr::new(169, 254, 0, 0),
        16,
        "link-local (cloud metadata)",
    ),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "private (RFC 1918)"),
    (Ipv4Addr::new(192, 0, 0, 0), 24, "IETF protocol assignment"),
    (Ipv4Addr::new(192, 0, 2, 0), 24, "documentation"),
    (Ipv4Addr::new(192, 88, 99, 0), 24, "6to4 relay anycast"),
    (Ipv4Addr::new(192, 168, 0, 0), 16, "private (RFC 1918)"),
    (Ipv4Addr::new(198, 18, 0, 0), 15, "benchmarking"),
    (Ipv4Addr::new(198, 51, 100, 0), 24, "documentation"),
    (Ipv4Addr::new(203, 0, 113, 0), 24, "documentation"),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast"),
    // Includes the limited broadcast address 255.255.255.255.
    (Ipv4Addr::new(240, 0, 0, 0), 4, "reserved or broadcast"),
];

/// The special-purpose IPv6 ranges a fetch never reaches (after the forms that
/// embed an IPv4 address have been reduced to it; see [`non_public_range`]).
/// (IANA IPv6 Special-Purpose Address Registry.)
const V6_RANGES: [(Ipv6Addr, u8, &str); 9] = [
    (
        Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        "local-use NAT64",
    ),
    (
        Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
        64,
        "discard-only",
    ),
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        23,
        "IETF protocol assignment",
    ),
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        "documentation",
    ),
    (
        Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        "documentation",
    ),
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        "unique local (private)",
    ),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "link-local"),
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, "site-local"),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "multicast"),
];

/// What kind of non-public address `ip` is, or `None` when it is public.
///
/// IPv6 forms that carry an IPv4 address are judged by that address, so a private
/// IPv4 address cannot be reached through them: IPv4-mapped (`::ffff:0:0/96`),
/// IPv4-translated (`::ffff:0:0:0/96`), IPv4-compatible (`::/96`; `::` and `::1` are
/// named unspecified and loopback), NAT64 (`64:ff9b::/96`) and 6to4 (`2002::/16`).
pub fn non_public_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_range(v4),
        IpAddr::V6(v6) if v6.is_loopback() => Some("loopback"),
        IpAddr::V6(v6) if v6.is_unspecified() => Some("unspecified"),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => v4_range(v4),
            None => V6_RANGES
                .iter()
                .find(|(net, len, _)| in_prefix(u128::from(v6), u128::from(*net), *len))
                .map(|(_, _, what)| *what),
        },
    }
}

fn v4_range(ip: Ipv4Addr) -> Option<&'static str> {
    V4_RANGES
        .iter()
        .find(|(net, len, _)| {
            in_prefix(
                u128::from(u32::from(ip)) << 96,
                u128::from(u32::from(*net)) << 96,
                *len,
            )
        })
        .map(|(_, _, what)| *what)
}

/// The IPv4 address an IPv6 address stands for, in the forms listed on
/// [`non_public_range`].
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    // The low 32 bits; the truncation is the point.
    let low = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    let mapped = u128::from(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0));
    let translated = u128::from(Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, 0, 0));
    let nat64 = u128::from(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0));
    if in_prefix(bits, mapped, 96)
        || in_prefix(bits, translated, 96)
        || in_prefix(bits, 0, 96)
        || in_prefix(bits, nat64, 96)
    {
        return Some(low);
    }
    let six_to_four = u128::from(Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0));
    if in_prefix(bits, six_to_four, 16) {
        // 2002:AABB:CCDD::/48 carries AA.BB.CC.DD in bits 16..48.
        return Some(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32));
    }
    None
}

/// Whether the top `len` bits of `addr` and `net` agree (128-bit values).
fn in_prefix(addr: u128, net: u128, len: u8) -> bool {
    let mask = u128::MAX
        .checked_shl(128u32.saturating_sub(u32::from(len)))
        .unwrap_or(0);
    addr & mask == net & mask
}

/// Why a host may not be fetched from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NonPublicHost(pub String);

/// Refuses a URL whose host is a non-public IP literal (`https://127.0.0.1/`,
/// `https://[::ffff:10.0.0.1]/`, `https://2130706433/`). Names are left to
/// [`PublicOnlyResolver`]; a URL that does not parse is left to the client, which
/// fails on it.
pub fn refuse_non_public_host(url: &str) -> Result<(), NonPublicHost> {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Ok(());
    };
    // The URL parser reads every dotted, short or numeric IPv4 form as an address
    // and writes it back as dotted decimal (`2130706433` -> `127.0.0.1`); IPv6
    // literals come back in brackets. A name does not parse as an address.
    let Some(host) = parsed.host_str() else {
        return Ok(());
    };
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let Ok(ip) = bare.parse::<IpAddr>() else {
        return Ok(());
    };
    match non_public_range(ip) {
        Some(what) => Err(NonPublicHost(format!("`{ip}` is a {what} address"))),
        None => Ok(()),
    }
}

/// A DNS resolver that drops every non-public address and fails when none is
/// left. The HTTP client connects only to the addresses it returns.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicOnlyResolver;

impl PublicOnlyResolver {
    /// Resolves `host` and keeps its public addresses.
    pub async fn resolve_public(host: &str) -> Result<Vec<SocketAddr>, ResolveError> {
        let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
            .await
            .map_err(|e| ResolveError::Lookup(e.to_string()))?
            .collect();
        let (public, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = resolved
            .into_iter()
            .partition(|a| non_public_range(a.ip()).is_none());
        if public.is_empty() {
            if refused.is_empty() {
                return Err(ResolveError::Lookup(format!(
                    "`{}` has no address",
                    escape_untrusted(host)
                )));
            }
            let named: Vec<String> = refused
                .iter()
                .take(MAX_NAMED)
                .map(|a| {
                    let what = non_public_range(a.ip()).unwrap_or("non-public");
                    format!("`{}` {what}", a.ip())
                })
                .collect();
            let more = refused.len().saturating_sub(MAX_NAMED);
            let more = if more > 0 {
                format!(", and {more} more")
            } else {
                String::new()
            };
            return Err(ResolveError::NonPublic(NonPublicHost(format!(
                "`{}` resolves only to non-public addresses ({}{more})",
                escape_untrusted(host),
                named.join(", ")
            ))));
        }
        if !refused.is_empty() {
            tracing::warn!(
                host = %escape_untrusted(host),
                refused = refused.len(),
                "non-public addresses of an upstream host were dropped"
            );
        }
        Ok(public)
    }
}

/// Why [`PublicOnlyResolver`] returned no address.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The name did not resolve.
    #[error("dns lookup failed: {0}")]
    Lookup(String),
    /// Every address it resolved to is non-public.
    #[error(transparent)]
    NonPublic(NonPublicHost),
}

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = Self::resolve_public(&host).await?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::panic,
        reason = "tests: failing loudly is the point"
    )]

    use super::*;

    fn range(ip: &str) -> Option<&'static str> {
        non_public_range(ip.parse().unwrap())
    }

    /// Stops SSRF to each IPv4 special-purpose range: the first and last address of
    /// every range are refused, and the addresses just outside are public.
    #[test]
    fn every_special_ipv4_range_is_non_public_at_both_ends() {
        let cases = [
            ("0.0.0.0", "0.255.255.255", None, Some("1.0.0.0")),
            (
                "10.0.0.0",
                "10.255.255.255",
                Some("9.255.255.255"),
                Some("11.0.0.0"),
            ),
            (
                "100.64.0.0",
                "100.127.255.255",
                Some("100.63.255.255"),
                Some("100.128.0.0"),
            ),
            (
                "127.0.0.0",
                "127.255.255.255",
                Some("126.255.255.255"),
                Some("128.0.0.0"),
            ),
            (
                "169.254.0.0",
                "169.254.255.255",
                Some("169.253.255.255"),
                Some("169.255.0.0"),
            ),
            (
                "172.16.0.0",
                "172.31.255.255",
                Some("172.15.255.255"),
                Some("172.32.0.0"),
            ),
            (
                "192.0.0.0",
                "192.0.0.255",
                Some("191.255.255.255"),
                Some("192.0.1.0"),
            ),
            (
                "192.0.2.0",
                "192.0.2.255",
                Some("192.0.1.255"),
                Some("192.0.3.0"),
            ),
            (
                "192.88.99.0",
                "192.88.99.255",
                Some("192.88.98.255"),
                Some("192.88.100.0"),
            ),
            (
                "192.168.0.0",
                "192.168.255.255",
                Some("192.167.255.255"),
                Some("192.169.0.0"),
            ),
            (
                "198.18.0.0",
                "198.19.255.255",
                Some("198.17.255.255"),
                Some("198.20.0.0"),
            ),
            (
                "198.51.100.0",
                "198.51.100.255",
                Some("198.51.99.255"),
                Some("198.51.101.0"),
            ),
            (
                "203.0.113.0",
                "203.0.113.255",
                Some("203.0.112.255"),
                Some("203.0.114.0"),
            ),
            (
                "224.0.0.0",
                "239.255.255.255",
                Some("223.255.255.255"),
                None,
            ),
            ("240.0.0.0", "255.255.255.255", None, None),
        ];
        for (first, last, below, above) in cases {
            assert!(range(first).is_some(), "{first}");
            assert!(range(last).is_some(), "{last}");
            for outside in [below, above].into_iter().flatten() {
                assert_eq!(range(outside), None, "{outside}");
            }
        }
    }

    /// Each range is named for what it is, so the refusal says why.
    #[test]
    fn ranges_are_named() {
        assert_eq!(range("127.0.0.1"), Some("loopback"));
        assert_eq!(
            range("169.254.169.254"),
            Some("link-local (cloud metadata)")
        );
        assert_eq!(range("10.1.2.3"), Some("private (RFC 1918)"));
        assert_eq!(range("100.100.100.200"), Some("shared (CGNAT, RFC 6598)"));
        assert_eq!(range("255.255.255.255"), Some("reserved or broadcast"));
        assert_eq!(range("0.0.0.0"), Some("unspecified (\"this network\")"));
        assert_eq!(range("fe80::1"), Some("link-local"));
        assert_eq!(range("fd00:ec2::254"), Some("unique local (private)"));
        assert_eq!(range("::1"), Some("loopback"));
        assert_eq!(range("::"), Some("unspecified"));
    }

    #[test]
    fn public_addresses_are_public() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "140.82.112.3",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450:4001:80b::200e",
        ] {
            assert_eq!(range(ip), None, "{ip}");
        }
    }

    /// Stops SSRF to IPv6 special-purpose ranges, the cloud metadata address of
    /// EC2 over IPv6 (`fd00:ec2::254`) among them.
    #[test]
    fn every_special_ipv6_range_is_non_public() {
        for ip in [
            "::",
            "::1",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:1ff:ffff::1",
            "2001:db8::1",
            "3fff::1",
            "fc00::1",
            "fdff:ffff::1",
            "fd00:ec2::254",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
        ] {
            assert!(range(ip).is_some(), "{ip}");
        }
        // Just outside fc00::/7, fe80::/10 and 2001::/23.
        for ip in ["fbff::1", "2001:200::1", "fe00::1"] {
            assert_eq!(range(ip), None, "{ip}");
        }
    }

    /// Stops reaching a private IPv4 address through an IPv6 form that embeds it:
    /// mapped, translated, compatible, NAT64 and 6to4. The same forms around a
    /// public IPv4 address stay public.
    #[test]
    fn ipv6_forms_embedding_ipv4_are_judged_by_the_ipv4_address() {
        for ip in [
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0:10.0.0.1",
            "::10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::127.0.0.1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::",
            "2002:c0a8:0101::1",
        ] {
            assert!(range(ip).is_some(), "{ip}");
        }
        for ip in ["::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"] {
            assert_eq!(range(ip), None, "{ip}");
        }
        assert_eq!(range("::ffff:127.0.0.1"), Some("loopback"));
        assert_eq!(
            range("2002:a9fe:a9fe::1"),
            Some("link-local (cloud metadata)")
        );
    }

    /// Stops SSRF through an IP literal in a URL, which the HTTP client connects
    /// to without asking a resolver, in every spelling the URL parser accepts.
    #[test]
    fn non_public_ip_literal_hosts_are_refused() {
        for url in [
            "https://127.0.0.1/jwks",
            "https://127.0.0.1:8443/jwks",
            "https://127.1/jwks",
            "https://2130706433/jwks",
            "https://0x7f.0.0.1/jwks",
            "https://0177.0.0.1/jwks",
            "https://127.0.0.1./jwks",
            "https://[::1]/jwks",
            "https://[::ffff:7f00:1]/jwks",
            "https://[::ffff:169.254.169.254]/latest",
            "https://169.254.169.254/latest/meta-data",
            "https://[fd00:ec2::254]/latest",
            "https://10.0.0.1/jwks",
            "https://0.0.0.0/jwks",
        ] {
            let e = refuse_non_public_host(url).unwrap_err();
            assert!(e.0.contains("address"), "{url}: {e}");
        }
        for url in [
            "https://8.8.8.8/jwks",
            "https://[2606:4700:4700::1111]/jwks",
            "https://issuer.example.com/jwks",
            "https://localhost/jwks",
            "not a url",
        ] {
            assert_eq!(refuse_non_public_host(url), Ok(()), "{url}");
        }
    }

    /// Stops SSRF through a name: `localhost` resolves to loopback addresses only,
    /// so the resolver returns nothing to connect to and says why.
    #[tokio::test]
    async fn resolver_refuses_a_name_with_only_non_public_addresses() {
        let e = PublicOnlyResolver::resolve_public("localhost")
            .await
            .unwrap_err();
        let ResolveError::NonPublic(NonPublicHost(text)) = &e else {
            panic!("expected a non-public refusal, got {e}");
        };
        assert!(text.contains("`localhost` resolves only to"), "{text}");
        assert!(text.contains("loopback"), "{text}");
    }

    /// An IP written as a name (how some callers pass literals) is judged like a
    /// resolved one: a public literal passes through, a private one is refused.
    #[tokio::test]
    async fn resolver_judges_literals_passed_as_names() {
        let public = PublicOnlyResolver::resolve_public("8.8.8.8").await.unwrap();
        assert_eq!(public.len(), 1);
        assert!(matches!(
            PublicOnlyResolver::resolve_public("10.0.0.1").await,
            Err(ResolveError::NonPublic(_))
        ));
    }
}
