//! `legate inventory`: the credential inventory of a running gateway, from the admin
//! endpoint `GET /admin/inventory` on its operator listener.
//!
//! The admin token comes from a token source, as `legate exchange` takes them
//! (`--token-source`, or detected), asked for `--audience` (the `[admin] audience`);
//! it is sent as `Authorization: Bearer` and never printed. The default output is a
//! table per list (issuers, targets, subjects, refresh paths) with counts, cache hits and
//! first/last seen; `--json` prints the server's document as received.
//!
//! Exit status: 0 done; 1 Legate refused the admin token (401, 403); 2 usage (a bad URL,
//! CA file or filter); 3 the token source failed; 4 Legate unreachable, unavailable or
//! its answer unreadable. Strings from the server are escaped before they reach the
//! terminal.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use legate_client::{Environment, Source, TokenSource};
use legate_core::text::escape_untrusted_within;
use serde_json::Value;

/// Exit status: Legate refused the admin token.
const EXIT_REFUSED: u8 = 1;
/// Exit status: usage.
const EXIT_USAGE: u8 = 2;
/// Exit status: the token source failed.
const EXIT_SOURCE: u8 = 3;
/// Exit status: Legate unavailable, unreachable, or its answer unreadable.
const EXIT_UNAVAILABLE: u8 = 4;

/// The longest server string shown in a table cell, in bytes of input.
const MAX_CELL_BYTES: usize = 1024;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The operator listener's base URL (where `/admin/` is served).
    #[arg(long, env = "LEGATE_OPERATOR_URL")]
    url: String,
    /// Where the admin token comes from: github-actions, gitlab:VAR, file:PATH, env:VAR,
    /// exec:CMD, gce-metadata, azure-imds or aws-sts (as `legate exchange`). Detected
    /// when absent.
    #[arg(long, env = "LEGATE_TOKEN_SOURCE")]
    token_source: Option<String>,
    /// The audience to ask the token source for (sources that take one): the
    /// `[admin] audience`; the URL when absent.
    #[arg(long, env = "LEGATE_ADMIN_AUDIENCE")]
    audience: Option<String>,
    /// A PEM file of extra CA certificates for the operator listener's certificate.
    #[arg(long, env = "LEGATE_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// Only this trust.
    #[arg(long)]
    trust: Option<String>,
    /// Only this upstream subject.
    #[arg(long)]
    subject: Option<String>,
    /// Only this target.
    #[arg(long)]
    target: Option<String>,
    /// Only targets of this kind (jwt, aws, gcp, azure).
    #[arg(long)]
    kind: Option<String>,
    /// Only rows seen at or after this time (unix seconds or RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// At most this many rows per list (the server's default: 1000).
    #[arg(long)]
    limit: Option<usize>,
    /// Print the JSON document as received.
    #[arg(long)]
    json: bool,
}

/// A failure with its exit status.
struct Failure {
    code: u8,
    message: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match fetch(&args) {
        Ok(document) => {
            if args.json {
                println!("{document}");
            } else {
                print!("{}", render(&document));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            eprintln!("legate: {}", failure.message);
            Ok(ExitCode::from(failure.code))
        }
    }
}

/// The filters as query pairs.
fn query(args: &Args) -> Vec<(&'static str, String)> {
    [
        ("trust", args.trust.clone()),
        ("subject", args.subject.clone()),
        ("target", args.target.clone()),
        ("kind", args.kind.clone()),
        ("since", args.since.clone()),
        ("limit", args.limit.map(|n| n.to_string())),
    ]
    .into_iter()
    .filter_map(|(key, value)| Some((key, value?)))
    .collect()
}

/// Fetches the admin token and the inventory.
fn fetch(args: &Args) -> Result<Value, Failure> {
    let usage = |message: String| Failure {
        code: EXIT_USAGE,
        message,
    };
    let source_failure = |e: legate_client::SourceError| Failure {
        code: EXIT_SOURCE,
        message: e.to_string(),
    };
    let base = reqwest::Url::parse(&args.url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .ok_or_else(|| {
            usage(format!(
                "--url `{}` is not an http(s) URL with a host",
                escape_untrusted_within(&args.url, MAX_CELL_BYTES)
            ))
        })?;
    let kind = args
        .token_source
        .as_deref()
        .map(str::parse::<TokenSource>)
        .transpose()
        .map_err(source_failure)?;
    let audience = args.audience.clone().unwrap_or_else(|| args.url.clone());
    let source = Source::new_or_detect(kind, audience, Environment::from_process())
        .map_err(source_failure)?;
    let ca = match &args.ca_file {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| usage(format!("cannot read --ca-file `{}`: {e}", path.display())))?,
        ),
        None => None,
    };
    let http = legate_client::source::http_client(
        ca.as_deref(),
        Duration::from_secs(10),
        Duration::from_secs(30),
    )
    .map_err(usage)?;
    let mut url = base;
    url.set_path(&format!(
        "{}/admin/inventory",
        url.path().trim_end_matches('/')
    ));
    url.set_query(None);
    let query = query(args);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure {
            code: EXIT_UNAVAILABLE,
            message: format!("starting the async runtime: {e}"),
        })?;
    runtime.block_on(async {
        let token = source.fetch().await.map_err(source_failure)?;
        let unavailable = |message: String| Failure {
            code: EXIT_UNAVAILABLE,
            message,
        };
        let response = http
            .get(url.clone())
            .query(&query)
            .bearer_auth(token.expose())
            .send()
            .await
            .map_err(|e| {
                unavailable(format!(
                    "cannot reach {url}: {e} (is the operator listener there, with `[admin] enabled = true`?)"
                ))
            })?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let said = |key: &str| {
            body.get(key)
                .and_then(Value::as_str)
                .map(|s| escape_untrusted_within(s, MAX_CELL_BYTES))
        };
        let detail = [said("error"), said("error_description")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ");
        match status {
            200 if body.is_object() => Ok(body),
            200 => Err(unavailable(format!("{url} did not answer a JSON object"))),
            401 | 403 => Err(Failure {
                code: EXIT_REFUSED,
                message: format!("Legate refused the admin token (HTTP {status}: {detail})"),
            }),
            400 => Err(usage(format!("Legate refused the query: {detail}"))),
            404 => Err(unavailable(format!(
                "{url} answered 404: the admin endpoints are off (`[admin] enabled = true`) or this is not the operator listener"
            ))),
            _ => Err(unavailable(format!("{url} answered HTTP {status}: {detail}"))),
        }
    })
}

/// `value[key]`, `Null` when absent.
fn at<'v>(value: &'v Value, key: &str) -> &'v Value {
    value.get(key).unwrap_or(&Value::Null)
}

/// A server string for the terminal: escaped, bounded.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => escape_untrusted_within(s, MAX_CELL_BYTES),
        Value::Number(n) => n.to_string(),
        _ => "?".to_owned(),
    }
}

/// How long before `now` unix second `at` was, shortly: `42s`, `5m`, `3h`, `2d`.
fn ago(at: &Value, now: i64) -> String {
    let Some(at) = at.as_i64() else {
        return "?".to_owned();
    };
    let secs = now.saturating_sub(at).max(0);
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3_600 => format!("{}m ago", secs / 60),
        3_600..86_400 => format!("{}h ago", secs / 3_600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

/// Rows as aligned columns under `headers`.
fn table(out: &mut String, title: &str, headers: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "{title} ({})", rows.len());
    if rows.is_empty() {
        return;
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (cell, w) in cells.zip(&widths) {
            let _ = write!(s, "  {cell:<w$}");
        }
        s.trim_end().to_owned()
    };
    let _ = writeln!(out, "{}", line(&mut headers.iter().copied()));
    for row in rows {
        let _ = writeln!(out, "{}", line(&mut row.iter().map(String::as_str)));
    }
}

/// The inventory document as tables.
fn render(doc: &Value) -> String {
    let now = at(doc, "generated_at").as_i64().unwrap_or(0);
    let list = |key: &str| at(doc, key).as_array().map_or(&[][..], Vec::as_slice);
    let counts = |row: &Value| {
        vec![
            text(at(row, "count")),
            text(at(row, "served_from_cache")),
            ago(at(row, "first_seen"), now),
            ago(at(row, "last_seen"), now),
        ]
    };
    let mut out = String::new();
    let header: [&'static str; 4] = ["COUNT", "CACHED", "FIRST SEEN", "LAST SEEN"];
    let rows = |key: &str, names: &dyn Fn(&Value) -> Vec<String>| -> Vec<Vec<String>> {
        list(key)
            .iter()
            .map(|row| {
                let mut cells = names(row);
                cells.extend(counts(row));
                cells
            })
            .collect()
    };
    let with = |names: &[&'static str]| -> Vec<&'static str> {
        names.iter().chain(&header).copied().collect()
    };
    table(
        &mut out,
        "issuers",
        &with(&["TRUST", "ISSUER"]),
        &rows("issuers", &|r| {
            vec![text(at(r, "trust")), text(at(r, "issuer"))]
        }),
    );
    table(
        &mut out,
        "targets",
        &with(&["TARGET", "KIND"]),
        &rows("targets", &|r| {
            vec![text(at(r, "target")), text(at(r, "kind"))]
        }),
    );
    table(
        &mut out,
        "subjects",
        &with(&["TRUST", "SUBJECT", "TARGETS"]),
        &rows("subjects", &|r| {
            let targets: Vec<String> = at(r, "targets")
                .as_array()
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .map(text)
                .collect();
            vec![
                text(at(r, "trust")),
                text(at(r, "subject")),
                targets.join(","),
            ]
        }),
    );
    table(
        &mut out,
        "refresh paths",
        &with(&["TRUST", "SUBJECT", "TARGET"]),
        &rows("paths", &|r| {
            vec![
                text(at(r, "trust")),
                text(at(r, "subject")),
                text(at(r, "target")),
            ]
        }),
    );
    let evicted = at(doc, "evicted");
    let dropped: u64 = ["entries", "issuers", "subjects", "targets", "paths"]
        .iter()
        .filter_map(|k| at(evicted, k).as_u64())
        .sum();
    let _ = writeln!(
        out,
        "retention {}s{}{}",
        text(at(doc, "retention_secs")),
        if at(doc, "truncated").as_bool() == Some(true) {
            "; lists cut at the limit (use --limit or a filter)"
        } else {
            ""
        },
        if dropped > 0 {
            "; some history was evicted at the ledger's bounds (see --json `evicted`)"
        } else {
            ""
        },
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn document() -> Value {
        json!({
            "generated_at": 10_000,
            "retention_secs": 604_800,
            "truncated": false,
            "evicted": {"entries": 0, "issuers": 0, "subjects": 0, "targets": 0, "paths": 0},
            "issuers": [{"trust": "ci", "issuer": "https://ci.example", "first_seen": 9_000,
                         "last_seen": 9_990, "count": 3, "served_from_cache": 1, "valid_until": 10_900}],
            "targets": [{"target": "aws-deploy", "kind": "aws", "first_seen": 9_000,
                         "last_seen": 9_990, "count": 3, "served_from_cache": 1, "valid_until": 10_900}],
            "subjects": [{"trust": "ci", "subject": "repo:a\u{1b}[2J", "targets": ["aws-deploy"],
                          "first_seen": 1_000, "last_seen": 9_990, "count": 3,
                          "served_from_cache": 1, "valid_until": 10_900}],
            "paths": [{"trust": "ci", "subject": "repo:a", "target": "aws-deploy",
                       "first_seen": 9_000, "last_seen": 9_990, "count": 3,
                       "served_from_cache": 1, "valid_until": 10_900}],
        })
    }

    #[test]
    fn render_shows_each_list_with_counts_and_ages() {
        let text = render(&document());
        for expected in [
            "issuers (1)",
            "ci     https://ci.example  3      1       16m ago     10s ago",
            "targets (1)",
            "aws-deploy  aws   3",
            "subjects (1)",
            "2h ago",
            "refresh paths (1)",
            "retention 604800s",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert!(!text.contains("evicted"), "{text}");
    }

    /// Stops a hostile upstream `sub` (echoed by the server) from driving the operator's
    /// terminal with escape sequences.
    #[test]
    fn render_escapes_server_strings() {
        let text = render(&document());
        assert!(!text.contains('\u{1b}'), "{text:?}");
        assert!(text.contains("repo:a\\u{1b}[2J"), "{text}");
    }

    #[test]
    fn render_says_when_history_is_incomplete() {
        let mut doc = document();
        doc["truncated"] = json!(true);
        doc["evicted"]["subjects"] = json!(4);
        let text = render(&doc);
        assert!(text.contains("cut at the limit"), "{text}");
        assert!(text.contains("evicted"), "{text}");
    }
}
