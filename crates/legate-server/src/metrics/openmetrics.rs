//! OpenMetrics 1.0 for scrapers that ask for it: the `Accept` negotiation
//! ([`Format::negotiate`]) and an encoder of the registry's metric families ([`encode`]),
//! which the `prometheus` crate does not have.
//!
//! The encoder follows the OpenMetrics 1.0 text format: a counter family is named
//! without its `_total` suffix and its sample carries it; `# UNIT` is written for
//! families whose name ends in `_seconds` or `_bytes`; histogram `le` values are
//! canonical floats (`1.0`, `+Inf`); label values and help text escape `\`, `"` and
//! newlines; the exposition ends with `# EOF`. No `_created` samples, no exemplars, no
//! timestamps (Legate's metrics carry none); untyped families are left out (the crate
//! deprecates them, and Legate registers none).

use std::fmt::Write as _;

use prometheus::proto::{LabelPair, Metric, MetricFamily, MetricType};

/// The `Content-Type` of OpenMetrics 1.0 text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The most media ranges of `Accept` considered; the rest are ignored (a scraper sends
/// four or five).
const MAX_MEDIA_RANGES: usize = 32;

/// What `GET /metrics` answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4 (the default).
    Text,
    /// OpenMetrics 1.0.0.
    OpenMetrics,
}

/// How well one media range matches an offered format: more specific ranges decide
/// (RFC 9110 §12.5.1: `type/subtype;version=…` over `type/subtype` over `type/*` over
/// `*/*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Specificity {
    Any,
    Type,
    Exact,
    ExactVersion,
}

/// The offered format's media type and version.
struct Offer {
    kind: &'static str,
    subtype: &'static str,
    version: &'static str,
}

const TEXT: Offer = Offer {
    kind: "text",
    subtype: "plain",
    version: "0.0.4",
};
const OPENMETRICS: Offer = Offer {
    kind: "application",
    subtype: "openmetrics-text",
    version: "1.0.0",
};

impl Format {
    /// The format the `Accept` header values ask for: OpenMetrics 1.0 when its quality
    /// is above zero and above the text format's, or equal to it while named more
    /// specifically (`application/openmetrics-text` against `*/*`); the text format
    /// otherwise — also when neither is acceptable, since a scraper that can read
    /// nothing Legate writes is better served the default than a 406.
    ///
    /// Each format's quality is the `q` of the most specific media range that matches
    /// it (a `version` parameter must then equal the format's: `0.0.4`, `1.0.0`). A
    /// range with a malformed `q` is ignored; so are ranges after the first
    /// [`MAX_MEDIA_RANGES`].
    pub fn negotiate<'a>(accept: impl IntoIterator<Item = &'a str>) -> Self {
        let ranges: Vec<MediaRange<'a>> = accept
            .into_iter()
            .flat_map(|v| v.split(','))
            .take(MAX_MEDIA_RANGES)
            .filter_map(MediaRange::parse)
            .collect();
        let (om_q, om_spec) = quality(&ranges, &OPENMETRICS);
        let (text_q, text_spec) = quality(&ranges, &TEXT);
        if om_q > 0 && (om_q > text_q || (om_q == text_q && om_spec > text_spec)) {
            Self::OpenMetrics
        } else {
            Self::Text
        }
    }

    /// The `Content-Type` of this format.
    pub const fn content_type(self) -> &'static str {
        match self {
            Self::Text => super::CONTENT_TYPE,
            Self::OpenMetrics => CONTENT_TYPE,
        }
    }
}

/// One media range of `Accept`: type, subtype, the `version` parameter, and `q` in
/// thousandths.
#[derive(Debug)]
struct MediaRange<'a> {
    kind: &'a str,
    subtype: &'a str,
    version: Option<&'a str>,
    q: u16,
}

impl<'a> MediaRange<'a> {
    fn parse(text: &'a str) -> Option<Self> {
        let mut parts = text.split(';');
        let (kind, subtype) = parts.next()?.trim().split_once('/')?;
        let (kind, subtype) = (kind.trim(), subtype.trim());
        if kind.is_empty() || subtype.is_empty() || (kind == "*" && subtype != "*") {
            return None;
        }
        let mut version = None;
        let mut q = 1000;
        for param in parts {
            let (name, value) = param.split_once('=')?;
            let value = value.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "q" => {
                    q = parse_q(value)?;
                    // RFC 9110 §12.4.2: what follows `q` are accept extensions.
                    break;
                }
                "version" => version = Some(value),
                _ => {}
            }
        }
        Some(Self {
            kind,
            subtype,
            version,
            q,
        })
    }

    fn matches(&self, offer: &Offer) -> Option<Specificity> {
        if self.kind == "*" {
            return Some(Specificity::Any);
        }
        if !self.kind.eq_ignore_ascii_case(offer.kind) {
            return None;
        }
        if self.subtype == "*" {
            return Some(Specificity::Type);
        }
        if !self.subtype.eq_ignore_ascii_case(offer.subtype) {
            return None;
        }
        match self.version {
            None => Some(Specificity::Exact),
            Some(v) if v == offer.version => Some(Specificity::ExactVersion),
            Some(_) => None,
        }
    }
}

/// `q` in thousandths: `0`, `1`, `0.d{1,3}` or `1.0{1,3}` (RFC 9110 §12.4.2).
fn parse_q(value: &str) -> Option<u16> {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The `q` of the most specific range matching `offer` (the first of equals), with its
/// specificity; `(0, Any)` when none matches.
fn quality(ranges: &[MediaRange<'_>], offer: &Offer) -> (u16, Specificity) {
    let mut best: Option<(Specificity, u16)> = None;
    for range in ranges {
        if let Some(spec) = range.matches(offer)
            && best.is_none_or(|(s, _)| spec > s)
        {
            best = Some((spec, range.q));
        }
    }
    best.map_or((0, Specificity::Any), |(spec, q)| (q, spec))
}

/// Encodes `families` as OpenMetrics 1.0 text, `# EOF` included.
pub fn encode(families: &[MetricFamily]) -> String {
    let mut out = String::new();
    for family in families {
        // Untyped metrics are deprecated by the crate and Legate registers none.
        if family.get_metric().is_empty() || family.get_field_type() == MetricType::UNTYPED {
            continue;
        }
        let kind = family.get_field_type();
        let full = family.name();
        let name = match kind {
            MetricType::COUNTER => full.strip_suffix("_total").unwrap_or(full),
            _ => full,
        };
        let type_name = match kind {
            MetricType::COUNTER => "counter",
            MetricType::GAUGE => "gauge",
            MetricType::HISTOGRAM => "histogram",
            MetricType::SUMMARY => "summary",
            MetricType::UNTYPED => "unknown",
        };
        let _ = writeln!(out, "# TYPE {name} {type_name}");
        if let Some(unit) = ["seconds", "bytes"]
            .into_iter()
            .find(|u| name.ends_with(&format!("_{u}")))
        {
            let _ = writeln!(out, "# UNIT {name} {unit}");
        }
        if !family.help().is_empty() {
            let _ = writeln!(out, "# HELP {name} {}", escape(family.help()));
        }
        for metric in family.get_metric() {
            match kind {
                MetricType::COUNTER => {
                    let value = metric.get_counter().get_value();
                    sample(&mut out, name, "_total", metric, None, value);
                }
                MetricType::GAUGE => {
                    let value = metric.get_gauge().get_value();
                    sample(&mut out, name, "", metric, None, value);
                }
                MetricType::UNTYPED => {}
                MetricType::HISTOGRAM => histogram(&mut out, name, metric),
                MetricType::SUMMARY => {
                    let s = metric.get_summary();
                    for q in s.get_quantile() {
                        let label = ("quantile", canonical(q.quantile()));
                        sample(&mut out, name, "", metric, Some(label), q.value());
                    }
                    sample(&mut out, name, "_sum", metric, None, s.sample_sum());
                    #[expect(
                        clippy::cast_precision_loss,
                        reason = "a count is exact in an f64 below 2^53"
                    )]
                    let count = s.sample_count() as f64;
                    sample(&mut out, name, "_count", metric, None, count);
                }
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

#[expect(
    clippy::cast_precision_loss,
    reason = "bucket counts are exact in an f64 below 2^53"
)]
fn histogram(out: &mut String, name: &str, metric: &Metric) {
    let h = metric.get_histogram();
    let mut inf_seen = false;
    for bucket in h.get_bucket() {
        let bound = bucket.upper_bound();
        inf_seen |= bound == f64::INFINITY;
        let label = ("le", canonical(bound));
        let count = bucket.cumulative_count() as f64;
        sample(out, name, "_bucket", metric, Some(label), count);
    }
    let count = h.get_sample_count() as f64;
    if !inf_seen {
        sample(
            out,
            name,
            "_bucket",
            metric,
            Some(("le", "+Inf".into())),
            count,
        );
    }
    sample(out, name, "_count", metric, None, count);
    sample(out, name, "_sum", metric, None, h.get_sample_sum());
}

fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    metric: &Metric,
    extra: Option<(&str, String)>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    labels(out, metric.get_label(), extra);
    out.push(' ');
    out.push_str(&number(value));
    out.push('\n');
}

fn labels(out: &mut String, pairs: &[LabelPair], extra: Option<(&str, String)>) {
    if pairs.is_empty() && extra.is_none() {
        return;
    }
    let mut sep = '{';
    let extra = extra.as_ref().map(|(n, v)| (*n, v.as_str()));
    for (n, v) in pairs.iter().map(|p| (p.name(), p.value())).chain(extra) {
        out.push(sep);
        let _ = write!(out, "{n}=\"{}\"", escape(v));
        sep = ',';
    }
    out.push('}');
}

/// A sample value: `NaN`, `+Inf`, `-Inf` or the shortest decimal that reads back.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        v.to_string()
    }
}

/// A label value that is a number, in canonical form (OpenMetrics 1.0 "Canonical
/// numbers"): integral values keep one decimal (`1.0`), infinities are `+Inf`/`-Inf`.
fn canonical(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        number(v)
    }
}

/// `\`, `"` and line feeds escaped (label values and help text).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use prometheus::{
        Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    };

    use super::*;

    /// What Prometheus 2.x sends when OpenMetrics is enabled (the default).
    const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

    fn negotiate(accept: &[&str]) -> Format {
        Format::negotiate(accept.iter().copied())
    }

    #[test]
    fn openmetrics_is_served_only_when_the_scraper_prefers_it() {
        use Format::{OpenMetrics, Text};
        for (accept, want) in [
            (&[][..], Text),
            (&["*/*"][..], Text),
            (&[PROMETHEUS_ACCEPT][..], OpenMetrics),
            (&["application/openmetrics-text"][..], OpenMetrics),
            (
                &["Application/OpenMetrics-Text; Version=1.0.0"][..],
                OpenMetrics,
            ),
            (
                &["application/openmetrics-text; version=\"1.0.0\""][..],
                OpenMetrics,
            ),
            (&["application/*"][..], OpenMetrics),
            (&["application/openmetrics-text, */*"][..], OpenMetrics),
            (
                &["text/plain", "application/openmetrics-text;q=0.9"][..],
                Text,
            ),
            (
                &["text/plain;q=0.5, application/openmetrics-text;q=0.6"][..],
                OpenMetrics,
            ),
            (
                &["text/plain;q=0.5", "application/openmetrics-text;q=0.6"][..],
                OpenMetrics,
            ),
            // Equal quality, both named: the default.
            (&["application/openmetrics-text, text/plain"][..], Text),
            (&["text/plain;version=0.0.4"][..], Text),
            // An explicit refusal beats a wildcard's acceptance.
            (&["application/openmetrics-text;q=0, */*"][..], Text),
            (&["*/*, application/openmetrics-text;q=0"][..], Text),
            (&["application/openmetrics-text;q=0.000"][..], Text),
            // Only an older OpenMetrics version: not what Legate writes.
            (&["application/openmetrics-text;version=0.0.1"][..], Text),
            // Nothing acceptable: the default rather than a 406.
            (&["application/json"][..], Text),
            (
                &["text/plain;q=0, application/openmetrics-text;q=0"][..],
                Text,
            ),
            // Malformed q values make the range count for nothing.
            (&["application/openmetrics-text;q=2"][..], Text),
            (&["application/openmetrics-text;q=0.5x"][..], Text),
            (&["application/openmetrics-text;q=1.5"][..], Text),
            (&["application/openmetrics-text;q="][..], Text),
            (&["application/openmetrics-text;q=0.1234"][..], Text),
            (&["application/openmetrics-text;q=1.000"][..], OpenMetrics),
            // Garbage is ignored, not fatal.
            (
                &["garbage, ;;;, /, */x, application/openmetrics-text"][..],
                OpenMetrics,
            ),
            // Parameters after q are extensions, not the media type's.
            (
                &["application/openmetrics-text;q=0.9;version=0.0.1"][..],
                OpenMetrics,
            ),
        ] {
            assert_eq!(negotiate(accept), want, "{accept:?}");
        }
    }

    #[test]
    fn q_values_parse_as_rfc_9110_writes_them() {
        assert_eq!(parse_q("0"), Some(0));
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("0.5"), Some(500));
        assert_eq!(parse_q("0.05"), Some(50));
        assert_eq!(parse_q("0.001"), Some(1));
        assert_eq!(parse_q("1.0"), Some(1000));
        for bad in [
            "", "2", "1.001", "0.0001", "-0", ".5", "0.-1", "0.+1", "0x1",
        ] {
            assert_eq!(parse_q(bad), None, "{bad:?}");
        }
    }

    /// Stops an `Accept` header of thousands of ranges from costing more than a short
    /// one: ranges past the bound are not read.
    #[test]
    fn only_the_first_media_ranges_are_read() {
        let mut accept = vec!["text/html"; MAX_MEDIA_RANGES].join(",");
        accept.push_str(",application/openmetrics-text");
        assert_eq!(negotiate(&[&accept]), Format::Text);
    }

    fn registry() -> Registry {
        let r = Registry::new();
        let c = IntCounterVec::new(
            Opts::new(
                "app_requests_total",
                "Requests \"served\"\nby path \\ kind.",
            ),
            &["path"],
        )
        .unwrap();
        c.with_label_values(&["/a\"b\\c\nd"]).inc_by(3);
        r.register(Box::new(c)).unwrap();
        let g = IntGauge::new("app_queue_depth", "Depth.").unwrap();
        g.set(7);
        r.register(Box::new(g)).unwrap();
        let h = HistogramVec::new(
            HistogramOpts::new("app_latency_seconds", "Latency.").buckets(vec![0.5, 1.0, 10.0]),
            &["step"],
        )
        .unwrap();
        let one: Histogram = h.with_label_values(&["x"]);
        one.observe(0.25);
        one.observe(2.0);
        r.register(Box::new(h)).unwrap();
        r
    }

    #[test]
    fn encodes_counters_gauges_and_histograms_as_openmetrics_1_0() {
        let text = encode(&registry().gather());
        let want = "\
# TYPE app_latency_seconds histogram
# UNIT app_latency_seconds seconds
# HELP app_latency_seconds Latency.
app_latency_seconds_bucket{step=\"x\",le=\"0.5\"} 1
app_latency_seconds_bucket{step=\"x\",le=\"1.0\"} 1
app_latency_seconds_bucket{step=\"x\",le=\"10.0\"} 2
app_latency_seconds_bucket{step=\"x\",le=\"+Inf\"} 2
app_latency_seconds_count{step=\"x\"} 2
app_latency_seconds_sum{step=\"x\"} 2.25
# TYPE app_queue_depth gauge
# HELP app_queue_depth Depth.
app_queue_depth 7
# TYPE app_requests counter
# HELP app_requests Requests \\\"served\\\"\\nby path \\\\ kind.
app_requests_total{path=\"/a\\\"b\\\\c\\nd\"} 3
# EOF
";
        assert_eq!(text, want);
    }

    #[test]
    fn numbers_are_written_canonically() {
        assert_eq!(canonical(1.0), "1.0");
        assert_eq!(canonical(0.0001), "0.0001");
        assert_eq!(canonical(2.5), "2.5");
        assert_eq!(canonical(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(3.0), "3");
    }

    #[test]
    fn an_empty_registry_is_just_eof() {
        assert_eq!(encode(&Registry::new().gather()), "# EOF\n");
    }
}
