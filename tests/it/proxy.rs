//! `X-Forwarded-For` over HTTP: which address policy sees as the caller.
//!
//! Every test connects from 127.0.0.1. The policy set adds a network guardrail to the
//! standard policy: exchanges are forbidden unless the caller is inside 10.0.0.0/8.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "integration tests: failing loudly is the point"
)]

use legate_server::audit::{AuditEvent, Outcome};
use serde_json::json;

use crate::harness::{Fixture, GRANT_TYPE, Reply, TARGET, TOKEN_TYPE_JWT};

const NETWORK_GUARDRAIL: &str = r#"
@id("ci-network-only")
forbid (principal, action, resource)
unless { context.source_ip.isInRange(ip("10.0.0.0/8")) };
"#;

async fn start(trusted_proxies: &[&str]) -> Fixture {
    Fixture::start_with(|s| {
        s.policies
            .push(("network.cedar".to_owned(), NETWORK_GUARDRAIL.to_owned()));
        s.trusted_proxies = trusted_proxies.iter().map(|p| (*p).to_owned()).collect();
    })
    .await
}

/// Exchanges a fresh token of the standard workload with `X-Forwarded-For: xff`.
async fn exchange_forwarded_for(f: &Fixture, xff: &str) -> (Reply, AuditEvent) {
    let token = f.token(&json!({}));
    let reply = f
        .legate
        .client
        .post_form_with_headers(
            &[
                ("grant_type", GRANT_TYPE),
                ("subject_token", &token),
                ("subject_token_type", TOKEN_TYPE_JWT),
                ("audience", TARGET),
            ],
            &[("x-forwarded-for", xff)],
        )
        .await;
    let event = if reply.status == 200 {
        let minted = reply.json["access_token"].as_str().unwrap();
        f.legate.event_of_minted(minted)
    } else {
        f.legate.event_by_id(reply.request_id())
    };
    (reply, event)
}

/// Stops a caller from choosing its own source address: without trusted proxies,
/// an `X-Forwarded-For` naming an allowed network is ignored; policy sees the TCP
/// peer, and the guardrail denies.
#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let f = start(&[]).await;
    let (reply, event) = exchange_forwarded_for(&f, "10.1.2.3").await;
    f.legate
        .assert_rejected(reply.status, &reply.json, "forbidden");
    assert_eq!(event.source_ip, "127.0.0.1", "{event:#?}");
    assert_eq!(event.policy_ids, vec!["ci-network-only".to_owned()]);
}

/// Behind a trusted proxy the client is the rightmost address the proxy did not
/// add: an entry the client wrote itself (on the left) is not believed.
#[tokio::test]
async fn forwarded_for_from_a_trusted_proxy_names_the_rightmost_untrusted_hop() {
    let f = start(&["127.0.0.1/32"]).await;

    // The proxy appended the real client, 10.1.2.3.
    let (reply, event) = exchange_forwarded_for(&f, "10.1.2.3").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(event.decision, Outcome::Allow);
    assert_eq!(event.source_ip, "10.1.2.3");

    // The client (198.51.100.7) sent its own header claiming 10.9.9.9; the proxy
    // appended the address it saw.
    let (reply, event) = exchange_forwarded_for(&f, "10.9.9.9, 198.51.100.7").await;
    f.legate
        .assert_rejected(reply.status, &reply.json, "forbidden");
    assert_eq!(event.source_ip, "198.51.100.7");
}

/// Stops the fail-open walk: a malformed hop used to end the walk at the trusted
/// proxy, so the client looked like the proxy. Here the proxy is inside the allowed
/// network, so the old code let the exchange through. Now the client address is
/// unknown, and a request whose applicable policies read `context.source_ip` is
/// refused rather than evaluated (Cedar would skip the erring `forbid`).
#[tokio::test]
async fn malformed_forwarded_for_entry_makes_the_client_unknown() {
    let f = start(&["127.0.0.1/32"]).await;
    for xff in ["10.1.2.3, not-an-address", "10.1.2.3, ", "unknown"] {
        let (reply, event) = exchange_forwarded_for(&f, xff).await;
        f.legate
            .assert_rejected(reply.status, &reply.json, "client_address_unknown");
        assert_eq!(event.source_ip, "unknown", "{xff}: {event:#?}");
    }
}

/// Stops the one-byte bypass: a non-ASCII byte made the whole header unreadable and
/// the client looked like the proxy. Entries are read as bytes, one by one: a bad
/// entry left of the real client is never reached.
#[tokio::test]
async fn a_non_ascii_byte_in_forwarded_for_does_not_hide_the_client() {
    let f = start(&["127.0.0.1/32"]).await;
    let token = f.token(&json!({}));
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "x-forwarded-for",
        reqwest::header::HeaderValue::from_bytes(b"caf\xc3\xa9, 198.51.100.7").unwrap(),
    );
    let reply = crate::harness::plain_http_client(std::time::Duration::from_secs(20))
        .post(format!("{}/token", f.legate.url))
        .headers(headers)
        .form(&[
            ("grant_type", GRANT_TYPE),
            ("subject_token", token.as_str()),
            ("subject_token_type", TOKEN_TYPE_JWT),
            ("audience", TARGET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 400);
    let body: serde_json::Value = reply.json().await.unwrap();
    let event = f.legate.event_of(&body);
    assert_eq!(event.reason, "forbidden", "{event:#?}");
    assert_eq!(event.source_ip, "198.51.100.7");
}
