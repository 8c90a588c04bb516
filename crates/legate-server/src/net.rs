//! The client address, with `X-Forwarded-For` honoured only from trusted proxies.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The address policy sees as `context.source_ip`.
///
/// SECURITY: `X-Forwarded-For` is attacker-writable. It is read only when the TCP peer
/// is a trusted proxy, and then from the right: each hop appended by a trusted proxy is
/// skipped, and the first untrusted address is the client. A malformed entry stops the
/// walk at the last address we could trust. Without trusted proxies, the peer is the
/// client.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = canonical(peer);
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = canonical(ip);
                if !is_trusted(&client) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_str(xff).unwrap());
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_from_an_untrusted_peer_is_ignored() {
        // An attacker spoofing the header to look like an allowed network.
        let got = client_ip(
            ip("203.0.113.9"),
            &headers("10.1.2.3"),
            &["10.0.0.0/8".parse().unwrap()],
        );
        assert_eq!(got, ip("203.0.113.9"));
    }

    #[test]
    fn rightmost_untrusted_hop_is_the_client() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        // The client prepended a spoofed entry; the proxy appended the real one.
        let got = client_ip(
            ip("10.0.0.1"),
            &headers("192.0.2.66, 198.51.100.7, 10.0.0.2"),
            &trusted,
        );
        assert_eq!(got, ip("198.51.100.7"));
    }

    #[test]
    fn malformed_hop_stops_at_the_last_trusted_address() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        let got = client_ip(ip("10.0.0.1"), &headers("nonsense"), &trusted);
        assert_eq!(got, ip("10.0.0.1"));
    }

    #[test]
    fn ipv4_mapped_ipv6_peers_are_normalised() {
        let got = client_ip(ip("::ffff:192.0.2.1"), &HeaderMap::new(), &[]);
        assert_eq!(got, ip("192.0.2.1"));
    }
}
