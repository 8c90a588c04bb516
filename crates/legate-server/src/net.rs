//! The client address, with `X-Forwarded-For` honoured only from trusted proxies.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The address policy sees as `context.source_ip`, or `None` when it is unknown.
///
/// SECURITY: `X-Forwarded-For` is attacker-writable. It is read only when the TCP peer
/// is a trusted proxy, and then from the right: each hop appended by a trusted proxy is
/// skipped, and the first untrusted address is the client. Every header line is read as
/// bytes and split per entry, so one odd byte cannot hide the whole header; an entry
/// `IP:port` (or `[IPv6]:port`, `[IPv6]`) is read as its IP. Any other entry that the
/// walk reaches — empty, a name, `unknown`, non-ASCII — makes the client address
/// *unknown* (`None`): the walk never stops at the proxy and calls the proxy the client,
/// which would let a malformed header pass an "internal addresses only" rule. Without
/// trusted proxies, the peer is the client.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = peer.to_canonical();
    if !is_trusted(&peer) {
        return Some(peer);
    }
    // Header lines in order; within a line, entries left to right (RFC 9110 §5.3: the
    // lines are one comma-separated list). Walk it from the right.
    let lines: Vec<&[u8]> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(axum::http::HeaderValue::as_bytes)
        .collect();
    let mut client = peer;
    for line in lines.iter().rev() {
        for entry in line.rsplit(|b| *b == b',') {
            let ip = parse_hop(entry)?;
            client = ip;
            if !is_trusted(&client) {
                return Some(client);
            }
        }
    }
    Some(client)
}

/// One `X-Forwarded-For` entry: an IP address, `IPv4:port`, `[IPv6]` or `[IPv6]:port`.
fn parse_hop(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim_matches([' ', '\t']);
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    let v6 = text.strip_prefix('[')?.strip_suffix(']')?;
    v6.parse::<std::net::Ipv6Addr>()
        .ok()
        .map(|ip| IpAddr::V6(ip).to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(lines: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for line in lines {
            h.append("x-forwarded-for", HeaderValue::from_bytes(line).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted() -> [IpNet; 1] {
        ["10.0.0.0/8".parse().unwrap()]
    }

    /// Stops header spoofing by a direct client: an attacker sets the header to look
    /// like an allowed network.
    #[test]
    fn forwarded_for_from_an_untrusted_peer_is_ignored() {
        let got = client_ip(ip("203.0.113.9"), &headers(&[b"10.1.2.3"]), &trusted());
        assert_eq!(got, Some(ip("203.0.113.9")));
    }

    #[test]
    fn rightmost_untrusted_hop_is_the_client() {
        // The client prepended a spoofed entry; the proxy appended the real one.
        let got = client_ip(
            ip("10.0.0.1"),
            &headers(&[b"192.0.2.66, 198.51.100.7, 10.0.0.2"]),
            &trusted(),
        );
        assert_eq!(got, Some(ip("198.51.100.7")));
    }

    /// Stops the fail-open walk: a malformed hop used to end the walk at the trusted
    /// proxy, so the client looked like the proxy and passed an "internal only" rule.
    #[test]
    fn malformed_hop_makes_the_client_unknown_not_the_proxy() {
        for bad in [
            &b"nonsense"[..],
            b"",
            b"unknown",
            b"10.0.0.5:99999",
            b"[::1",
        ] {
            let got = client_ip(ip("10.0.0.1"), &headers(&[bad]), &trusted());
            assert_eq!(got, None, "{:?}", String::from_utf8_lossy(bad));
        }
        let got = client_ip(
            ip("10.0.0.1"),
            &headers(&[b"198.51.100.7,,10.0.0.2"]),
            &trusted(),
        );
        assert_eq!(got, None, "an empty entry reached by the walk");
    }

    /// Stops the one-byte bypass: a non-ASCII byte anywhere in the header used to make
    /// the whole value unreadable, and the client then looked like the proxy.
    #[test]
    fn one_non_ascii_byte_does_not_hide_the_real_client() {
        // The non-ASCII entry is left of the real client: never reached.
        let got = client_ip(
            ip("10.0.0.1"),
            &headers(&[b"caf\xc3\xa9, 198.51.100.7"]),
            &trusted(),
        );
        assert_eq!(got, Some(ip("198.51.100.7")));
        // Reached: unknown, never the proxy.
        let got = client_ip(
            ip("10.0.0.1"),
            &headers(&[b"198.51.100.7, \xff"]),
            &trusted(),
        );
        assert_eq!(got, None);
    }

    #[test]
    fn ip_and_port_entries_are_read_as_their_ip() {
        let got = client_ip(
            ip("10.0.0.1"),
            &headers(&[b"198.51.100.7:4711"]),
            &trusted(),
        );
        assert_eq!(got, Some(ip("198.51.100.7")));
        let got = client_ip(
            ip("10.0.0.1"),
            &headers(&[b"[2001:db8::7]:443"]),
            &trusted(),
        );
        assert_eq!(got, Some(ip("2001:db8::7")));
        let got = client_ip(ip("10.0.0.1"), &headers(&[b"[2001:db8::8]"]), &trusted());
        assert_eq!(got, Some(ip("2001:db8::8")));
    }

    #[test]
    fn several_header_lines_form_one_list() {
        // The proxy appended its own line after the client's.
        let got = client_ip(
            ip("10.0.0.1"),
            &headers(&[b"192.0.2.66", b"198.51.100.7, 10.0.0.2"]),
            &trusted(),
        );
        assert_eq!(got, Some(ip("198.51.100.7")));
        let got = client_ip(
            ip("10.0.0.1"),
            &headers(&[b"198.51.100.9", b"10.0.0.2"]),
            &trusted(),
        );
        assert_eq!(got, Some(ip("198.51.100.9")));
    }

    #[test]
    fn a_trusted_peer_without_the_header_is_the_client() {
        let got = client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted());
        assert_eq!(got, Some(ip("10.0.0.1")));
    }

    #[test]
    fn ipv4_mapped_ipv6_peers_are_normalised() {
        let got = client_ip(ip("::ffff:192.0.2.1"), &HeaderMap::new(), &[]);
        assert_eq!(got, Some(ip("192.0.2.1")));
    }
}
