//! The broker's rules, each driven through the router as an SDK (or an attacker) would.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: failing loudly is the point"
)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::{Method, Request};
use tower::ServiceExt as _;

use super::*;
use crate::ManualClock;
use crate::fetch::{BoxFuture, FetchError};

const LOCAL: &str = "127.0.0.1:8123";
const AWS: &str = "aws-deploy";
const GCP: &str = "gcp-deploy";
const AZURE: &str = "azure-deploy";
const ECS_TOKEN: &str = "ecs-secret-value";
const IDENTITY_HEADER: &str = "identity-secret-value";
const SA: &str = "deployer@proj.iam.gserviceaccount.com";
const RESOURCE: &str = "https://management.azure.com";
const NOW: i64 = 1_800_000_000;

/// Answers AWS credentials for [`AWS`], access tokens otherwise; fails when told.
#[derive(Debug, Default)]
struct Stub {
    calls: AtomicUsize,
    fail: AtomicBool,
}

impl CredentialFetcher for Stub {
    fn fetch<'a>(
        &'a self,
        target: &'a str,
        now: i64,
    ) -> BoxFuture<'a, Result<Fetched, FetchError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                return Err(FetchError::Refused {
                    target: target.to_owned(),
                    status: 403,
                    error: "access_denied".into(),
                    request_id: "req-1".into(),
                });
            }
            Ok(if target == AWS {
                Fetched::Aws {
                    access_key_id: "ASIASTUB".into(),
                    secret_access_key: Secret::new("stub-secret".into()),
                    session_token: Secret::new("stub-session".into()),
                    expires_at: now + 3600,
                }
            } else {
                Fetched::AccessToken {
                    token: Secret::new(format!("token-for-{target}")),
                    expires_at: now + 3600,
                }
            })
        })
    }
}

fn full_config() -> BrokerConfig {
    BrokerConfig {
        aws: Some(AwsShape {
            target: AWS.into(),
            role_name: "legate".into(),
            ecs_auth_token: Some(Secret::new(ECS_TOKEN.into())),
        }),
        gcp: Some(GcpShape {
            target: GCP.into(),
            service_account: Some(SA.into()),
            project_id: Some("proj".into()),
            scopes: vec![DEFAULT_GCP_SCOPE.into()],
        }),
        azure: Some(AzureShape {
            target: AZURE.into(),
            resource: RESOURCE.into(),
            client_id: Some("cid-1".into()),
            identity_header: Some(Secret::new(IDENTITY_HEADER.into())),
        }),
    }
}

struct Fixture {
    broker: Arc<Broker>,
    clock: Arc<ManualClock>,
    stub: Arc<Stub>,
}

impl Fixture {
    fn new(config: BrokerConfig) -> Self {
        let clock = Arc::new(ManualClock::new(NOW));
        let stub = Arc::new(Stub::default());
        let broker =
            Broker::new(config, LOCAL.parse().unwrap(), stub.clone(), clock.clone()).unwrap();
        Self {
            broker,
            clock,
            stub,
        }
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, HeaderMap, String) {
        let resp = router(self.broker.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
        self.send(request(Method::GET, path, headers)).await
    }

    async fn imds_session(&self, ttl: &str) -> String {
        let (status, headers, token) = self
            .send(request(
                Method::PUT,
                "/latest/api/token",
                &[(IMDS_TTL_HEADER, ttl)],
            ))
            .await;
        assert_eq!(status, 200, "{token}");
        assert_eq!(headers[IMDS_TTL_HEADER], ttl);
        token
    }
}

/// A request with `Host: LOCAL` unless `headers` names another host.
fn request(method: Method, path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        b = b.header("host", LOCAL);
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::empty()).unwrap()
}

const CREDS: &str = "/latest/meta-data/iam/security-credentials/";
const GCE_TOKEN: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
const FLAVOR: (&str, &str) = ("metadata-flavor", "Google");

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap()
}

// ------------------------------------------------------------------ IMDSv2

#[tokio::test]
async fn imds_serves_the_role_and_its_credential_document_to_a_session() {
    let f = Fixture::new(full_config());
    let token = f.imds_session("21600").await;
    let (status, _, roles) = f.get(CREDS, &[(IMDS_TOKEN_HEADER, &token)]).await;
    assert_eq!((status, roles.as_str()), (StatusCode::OK, "legate"));
    let (status, headers, body) = f
        .get(&format!("{CREDS}legate"), &[(IMDS_TOKEN_HEADER, &token)])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    let doc = json(&body);
    assert_eq!(doc["Code"], "Success");
    assert_eq!(doc["Type"], "AWS-HMAC");
    assert_eq!(doc["AccessKeyId"], "ASIASTUB");
    assert_eq!(doc["SecretAccessKey"], "stub-secret");
    assert_eq!(doc["Token"], "stub-session");
    assert_eq!(doc["Expiration"], rfc3339(NOW + 3600));
    assert_eq!(doc["LastUpdated"], rfc3339(NOW));
    let (status, _, _) = f
        .get(&format!("{CREDS}admin"), &[(IMDS_TOKEN_HEADER, &token)])
        .await;
    assert_eq!(status, 404, "only the configured role is served");
}

/// Stops IMDSv1-style reads: SSRF through a web app can usually make a GET but not
/// the PUT with a custom header that a session token takes.
#[tokio::test]
async fn imds_reads_without_a_live_session_token_get_401() {
    let f = Fixture::new(full_config());
    for path in [CREDS.to_owned(), format!("{CREDS}legate")] {
        let (status, _, body) = f.get(&path, &[]).await;
        assert_eq!(status, 401, "{path}");
        assert!(!body.contains("stub-secret"));
        let (status, _, _) = f.get(&path, &[(IMDS_TOKEN_HEADER, "made-up-token")]).await;
        assert_eq!(status, 401, "{path}");
    }
    assert_eq!(f.stub.calls.load(Ordering::SeqCst), 0);
}

/// Stops a leaked session token from working past the TTL its client asked for.
#[tokio::test]
async fn imds_session_tokens_expire_after_their_ttl() {
    let f = Fixture::new(full_config());
    let token = f.imds_session("60").await;
    f.clock.advance(59);
    assert_eq!(f.get(CREDS, &[(IMDS_TOKEN_HEADER, &token)]).await.0, 200);
    f.clock.advance(1);
    assert_eq!(f.get(CREDS, &[(IMDS_TOKEN_HEADER, &token)]).await.0, 401);
}

#[tokio::test]
async fn imds_ttl_outside_1_to_21600_or_missing_is_400() {
    let f = Fixture::new(full_config());
    for ttl in ["0", "21601", "-1", "abc", "", "99999999999"] {
        let (status, _, _) = f
            .send(request(
                Method::PUT,
                "/latest/api/token",
                &[(IMDS_TTL_HEADER, ttl)],
            ))
            .await;
        assert_eq!(status, 400, "ttl {ttl:?}");
    }
    let (status, _, _) = f.send(request(Method::PUT, "/latest/api/token", &[])).await;
    assert_eq!(status, 400, "no ttl header");
    f.imds_session("1").await;
    f.imds_session("21600").await;
}

/// Stops an SSRF relay (a proxy that adds X-Forwarded-For) from opening a session, as
/// the real IMDSv2 does.
#[tokio::test]
async fn imds_token_put_with_x_forwarded_for_is_403() {
    let f = Fixture::new(full_config());
    let (status, _, body) = f
        .send(request(
            Method::PUT,
            "/latest/api/token",
            &[
                (IMDS_TTL_HEADER, "21600"),
                ("x-forwarded-for", "203.0.113.9"),
            ],
        ))
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(f.broker.session_count(), 0);
}

/// Stops a flood of session PUTs from growing memory without bound or locking SDKs
/// out: at the limit expired sessions go first, then the one expiring soonest.
#[tokio::test]
async fn imds_sessions_are_bounded_and_the_soonest_expiring_is_evicted_at_the_limit() {
    let f = Fixture::new(full_config());
    let long = f.broker.open_session(21_600);
    let short: Vec<String> = (1..MAX_IMDS_SESSIONS)
        .map(|_| f.broker.open_session(100))
        .collect();
    assert_eq!(f.broker.session_count(), MAX_IMDS_SESSIONS);
    f.clock.advance(1);
    let newest = f.broker.open_session(50);
    assert_eq!(f.broker.session_count(), MAX_IMDS_SESSIONS, "bounded");
    assert!(f.broker.session_is_live(&long), "the long session survives");
    assert!(f.broker.session_is_live(&newest), "the new session works");
    let live_short = short.iter().filter(|t| f.broker.session_is_live(t)).count();
    assert_eq!(
        live_short,
        MAX_IMDS_SESSIONS - 2,
        "exactly one short session was evicted"
    );
    // Once the short ones expire, a new session makes room by dropping all of them.
    f.clock.advance(100);
    f.broker.open_session(10);
    assert!(
        f.broker.session_count() <= 3,
        "{}",
        f.broker.session_count()
    );
}

// ------------------------------------------------------------------ every shape

/// Stops relayed requests (proxies, SSRF through a local web app) on every shape.
#[tokio::test]
async fn x_forwarded_for_is_refused_on_every_shape() {
    let f = Fixture::new(full_config());
    let xff = ("x-forwarded-for", "127.0.0.1");
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/v2/credentials", vec![("authorization", ECS_TOKEN), xff]),
        (GCE_TOKEN, vec![FLAVOR, xff]),
        (
            "/msi/token?api-version=2019-08-01&resource=https://management.azure.com",
            vec![("x-identity-header", IDENTITY_HEADER), xff],
        ),
        (
            "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com",
            vec![("metadata", "true"), xff],
        ),
        (CREDS, vec![xff]),
    ];
    for (path, headers) in cases {
        assert_eq!(f.get(path, &headers).await.0, 403, "{path}");
    }
    assert_eq!(f.stub.calls.load(Ordering::SeqCst), 0);
}

/// Stops DNS rebinding: a browser page whose host name now resolves to 127.0.0.1 still
/// sends its own name in `Host`.
#[tokio::test]
async fn host_must_name_the_listen_address() {
    let f = Fixture::new(full_config());
    let ecs = |host: &'static str| [("authorization", ECS_TOKEN), ("host", host)];
    for good in ["127.0.0.1:8123", "localhost:8123", "LOCALHOST:8123"] {
        assert_eq!(f.get("/v2/credentials", &ecs(good)).await.0, 200, "{good}");
    }
    for bad in [
        "evil.example:8123",
        "evil.example",
        "127.0.0.1:9999",
        "127.0.0.1",
        "127.0.0.2:8123",
        "localhost.evil.example:8123",
    ] {
        assert_eq!(f.get("/v2/credentials", &ecs(bad)).await.0, 403, "{bad}");
    }
    let no_host = Request::builder()
        .uri("/v2/credentials")
        .header("authorization", ECS_TOKEN)
        .body(Body::empty())
        .unwrap();
    assert_eq!(f.send(no_host).await.0, 400);
}

#[test]
fn allowed_hosts_follow_the_address_family_and_port() {
    let v6 = allowed_hosts("[::1]:80".parse().unwrap());
    assert!(v6.contains("[::1]:80") && v6.contains("[::1]") && v6.contains("localhost:80"));
    let lan = allowed_hosts("192.0.2.7:9000".parse().unwrap());
    assert_eq!(
        lan.into_iter().collect::<Vec<_>>(),
        vec!["192.0.2.7:9000".to_owned()]
    );
}

#[tokio::test]
async fn requests_with_a_body_or_a_huge_uri_are_refused() {
    let f = Fixture::new(full_config());
    let put = Request::builder()
        .method(Method::PUT)
        .uri("/latest/api/token")
        .header("host", LOCAL)
        .header(IMDS_TTL_HEADER, "60")
        .header("content-length", "5")
        .body(Body::from("hello"))
        .unwrap();
    assert_eq!(f.send(put).await.0, 413);
    let long = format!("{GCE_TOKEN}?scopes={}", "a".repeat(MAX_URI_BYTES));
    assert_eq!(f.get(&long, &[FLAVOR]).await.0, 414);
}

/// Stops a broker from answering for clouds it was not given (a GCE probe must not
/// find a metadata server that then fails oddly; it finds none).
#[tokio::test]
async fn shapes_without_a_target_are_not_served() {
    let f = Fixture::new(BrokerConfig {
        aws: Some(AwsShape {
            target: AWS.into(),
            role_name: "legate".into(),
            ecs_auth_token: None,
        }),
        ..BrokerConfig::default()
    });
    for (path, headers) in [
        (GCE_TOKEN, vec![FLAVOR]),
        ("/computeMetadata/v1/project/project-id", vec![FLAVOR]),
        (
            "/msi/token?api-version=2019-08-01&resource=x",
            vec![("x-identity-header", IDENTITY_HEADER)],
        ),
        (
            "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=x",
            vec![("metadata", "true")],
        ),
        ("/v2/credentials", vec![("authorization", ECS_TOKEN)]),
    ] {
        assert_eq!(f.get(path, &headers).await.0, 404, "{path}");
    }
}

#[tokio::test]
async fn a_refused_exchange_is_a_502_naming_the_error_and_request_id() {
    let f = Fixture::new(full_config());
    f.stub.fail.store(true, Ordering::SeqCst);
    let (status, _, body) = f
        .get("/v2/credentials", &[("authorization", ECS_TOKEN)])
        .await;
    assert_eq!(status, 502);
    assert!(
        body.contains("access_denied") && body.contains("req-1"),
        "{body}"
    );
}

// ------------------------------------------------------------------ ECS

/// Stops any other local process (or a browser) from reading the container
/// credentials: the authorization value is a secret only the workload was given.
#[tokio::test]
async fn ecs_needs_the_authorization_token_from_the_file() {
    let f = Fixture::new(full_config());
    assert_eq!(f.get("/v2/credentials", &[]).await.0, 401);
    assert_eq!(
        f.get("/v2/credentials", &[("authorization", "guess")])
            .await
            .0,
        401
    );
    assert_eq!(
        f.get("/v2/credentials", &[("authorization", "ecs-secret-valuf")])
            .await
            .0,
        401
    );
    let (status, _, body) = f
        .get("/v2/credentials", &[("authorization", ECS_TOKEN)])
        .await;
    assert_eq!(status, 200, "{body}");
    let doc = json(&body);
    assert_eq!(doc["AccessKeyId"], "ASIASTUB");
    assert_eq!(doc["SecretAccessKey"], "stub-secret");
    assert_eq!(doc["Token"], "stub-session");
    assert_eq!(doc["Expiration"], rfc3339(NOW + 3600));
}

// ------------------------------------------------------------------ GCE

/// Stops requests that are not from a metadata client (a browser cannot set
/// `Metadata-Flavor` on a simple request), as the real metadata server does.
#[tokio::test]
async fn gce_requires_metadata_flavor_google_and_answers_with_it() {
    let f = Fixture::new(full_config());
    let (status, headers, _) = f.get(GCE_TOKEN, &[]).await;
    assert_eq!(status, 403);
    assert_eq!(headers["metadata-flavor"], "Google");
    let (status, headers, _) = f.get(GCE_TOKEN, &[("metadata-flavor", "google-ish")]).await;
    assert_eq!(status, 403);
    assert_eq!(headers["metadata-flavor"], "Google");
    let (status, headers, body) = f.get(GCE_TOKEN, &[FLAVOR]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["metadata-flavor"], "Google");
    let doc = json(&body);
    assert_eq!(doc["access_token"], "token-for-gcp-deploy");
    assert_eq!(doc["expires_in"], 3600);
    assert_eq!(doc["token_type"], "Bearer");
}

#[tokio::test]
async fn gce_describes_the_one_service_account_and_the_project() {
    let f = Fixture::new(full_config());
    let sa = "/computeMetadata/v1/instance/service-accounts";
    let (_, _, body) = f
        .get(&format!("{sa}/default/?recursive=true"), &[FLAVOR])
        .await;
    let doc = json(&body);
    assert_eq!(doc["email"], SA);
    assert_eq!(doc["scopes"], serde_json::json!([DEFAULT_GCP_SCOPE]));
    assert_eq!(f.get(&format!("{sa}/default/email"), &[FLAVOR]).await.2, SA);
    assert_eq!(
        f.get(&format!("{sa}/{SA}/token"), &[FLAVOR]).await.0,
        200,
        "by email"
    );
    assert_eq!(
        f.get(
            &format!("{sa}/other@x.iam.gserviceaccount.com/token"),
            &[FLAVOR]
        )
        .await
        .0,
        404
    );
    assert_eq!(
        f.get(&format!("{sa}/default/scopes"), &[FLAVOR]).await.2,
        format!("{DEFAULT_GCP_SCOPE}\n")
    );
    assert_eq!(
        f.get("/computeMetadata/v1/project/project-id", &[FLAVOR])
            .await
            .2,
        "proj"
    );
}

/// Stops a client from believing it holds a token with scopes the target never
/// grants: the broker cannot mint other scopes, so it says so.
#[tokio::test]
async fn gce_scopes_other_than_the_targets_are_400() {
    let f = Fixture::new(full_config());
    let ok = format!("{GCE_TOKEN}?scopes={DEFAULT_GCP_SCOPE}");
    assert_eq!(f.get(&ok, &[FLAVOR]).await.0, 200);
    let other =
        format!("{GCE_TOKEN}?scopes={DEFAULT_GCP_SCOPE},https://www.googleapis.com/auth/admin");
    assert_eq!(f.get(&other, &[FLAVOR]).await.0, 400);
}

// ------------------------------------------------------------------ Azure

const MSI: &str = "/msi/token?api-version=2019-08-01&resource=https://management.azure.com";

/// Stops other local processes from taking the managed identity's token: App Service
/// gives the header value only to the workload.
#[tokio::test]
async fn app_service_needs_the_identity_header_from_the_file() {
    let f = Fixture::new(full_config());
    assert_eq!(f.get(MSI, &[]).await.0, 401);
    assert_eq!(f.get(MSI, &[("x-identity-header", "guess")]).await.0, 401);
    let (status, _, body) = f.get(MSI, &[("x-identity-header", IDENTITY_HEADER)]).await;
    assert_eq!(status, 200, "{body}");
    let doc = json(&body);
    assert_eq!(doc["access_token"], "token-for-azure-deploy");
    assert_eq!(doc["expires_on"], (NOW + 3600).to_string());
    assert_eq!(doc["resource"], RESOURCE);
    assert_eq!(doc["token_type"], "Bearer");
}

#[tokio::test]
async fn azure_resources_and_identities_other_than_the_targets_are_400() {
    let f = Fixture::new(full_config());
    let h = [("x-identity-header", IDENTITY_HEADER)];
    let base = "/msi/token?api-version=2019-08-01";
    assert_eq!(
        f.get(
            &format!("{base}&resource=https://management.azure.com/"),
            &h
        )
        .await
        .0,
        200
    );
    assert_eq!(
        f.get(
            &format!("{base}&resource=https://management.azure.com&client_id=cid-1"),
            &h
        )
        .await
        .0,
        200
    );
    for bad in [
        "&resource=https://vault.azure.net",
        "&resource=https://management.azure.com/.default",
        "",
        "&resource=https://management.azure.com&client_id=someone-else",
        "&resource=https://management.azure.com&object_id=x",
        "&resource=https://management.azure.com&mi_res_id=x",
    ] {
        assert_eq!(f.get(&format!("{base}{bad}"), &h).await.0, 400, "{bad}");
    }
    let old = "/msi/token?api-version=2017-09-01&resource=https://management.azure.com";
    assert_eq!(
        f.get(old, &h).await.0,
        400,
        "old api versions answer another shape"
    );
}

/// Stops browser-style requests to the IMDS shape: they cannot set `Metadata: true`.
#[tokio::test]
async fn azure_imds_needs_metadata_true() {
    let f = Fixture::new(full_config());
    let path = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com";
    assert_eq!(f.get(path, &[]).await.0, 400);
    let (status, _, body) = f.get(path, &[("metadata", "true")]).await;
    assert_eq!(status, 200, "{body}");
    let doc = json(&body);
    assert_eq!(doc["expires_in"], "3600");
    assert_eq!(doc["expires_on"], (NOW + 3600).to_string());
    assert_eq!(doc["client_id"], "cid-1");
    let wrong = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://graph.microsoft.com";
    assert_eq!(f.get(wrong, &[("metadata", "true")]).await.0, 400);
}

// ------------------------------------------------------------------ bind, config

/// Stops the broker from handing credentials to the network by accident.
#[tokio::test]
async fn non_loopback_listen_addresses_are_refused_without_the_flag() {
    for addr in ["10.0.0.1:80", "192.0.2.1:8080", "[2001:db8::1]:80"] {
        let addr: SocketAddr = addr.parse().unwrap();
        assert!(
            matches!(check_listen(addr, false), Err(BindError::NotLoopback(_))),
            "{addr}"
        );
        assert!(check_listen(addr, true).is_ok(), "{addr}");
        assert!(
            matches!(bind(addr, false).await, Err(BindError::NotLoopback(_))),
            "{addr}"
        );
    }
    for addr in ["0.0.0.0:80", "[::]:80"] {
        let addr: SocketAddr = addr.parse().unwrap();
        assert!(
            matches!(check_listen(addr, true), Err(BindError::Unspecified(_))),
            "{addr}"
        );
    }
    for addr in [
        "127.0.0.1:0",
        "[::1]:0",
        "127.8.0.1:0",
        "[::ffff:127.0.0.1]:0",
    ] {
        assert!(check_listen(addr.parse().unwrap(), false).is_ok(), "{addr}");
    }
    assert!(bind("127.0.0.1:0".parse().unwrap(), false).await.is_ok());
}

#[test]
fn configs_are_checked_before_serving() {
    assert_eq!(
        BrokerConfig::default().validate(),
        Err(ConfigError::NoTarget)
    );
    let mut c = full_config();
    c.aws.as_mut().unwrap().role_name = "../etc".into();
    assert!(c.validate().is_err());
    let mut c = full_config();
    c.azure.as_mut().unwrap().resource = "https://management.azure.com/.default".into();
    assert!(c.validate().is_err());
    let mut c = full_config();
    c.aws.as_mut().unwrap().ecs_auth_token = Some(Secret::new("two words".into()));
    let err = c.validate().unwrap_err().to_string();
    assert!(!err.contains("two words"), "{err}");
    assert!(full_config().validate().is_ok());
}

/// Stops a local process from exhausting the broker's memory and file descriptors with
/// open connections: the listener accepts the next one only after one closes.
#[tokio::test]
async fn the_listener_holds_at_most_its_limit_of_connections() {
    use axum::serve::Listener as _;
    let inner = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = inner.local_addr().unwrap();
    let mut listener = BoundedListener::new(inner, 2);
    let _c1 = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _c2 = tokio::net::TcpStream::connect(addr).await.unwrap();
    let c3 = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (first, _) = listener.accept().await;
    let (_second, _) = listener.accept().await;
    let third = tokio::spawn(async move { listener.accept().await });
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(
        !third.is_finished(),
        "a third connection was accepted over the limit of 2"
    );
    drop(first);
    let (stream, _) = third.await.unwrap();
    assert_eq!(
        stream.stream.peer_addr().unwrap(),
        c3.local_addr().unwrap(),
        "the waiting connection is accepted once a slot frees"
    );
}
