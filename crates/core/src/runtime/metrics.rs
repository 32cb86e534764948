//! The Prometheus registry and the process-level metrics.
//!
//! One [`Metrics`] value is built at start-up and shared; call sites use its methods rather
//! than touching registry details. Later components (prober, watcher, responder) register
//! their families here too, so `/metrics` is one registry rendered in one pass.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The content type of the OpenMetrics text format.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of the Prometheus text format 0.0.4.
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Which exposition format a scraper asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text (what Prometheus asks for first).
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4.
    PrometheusText,
}

impl Format {
    /// Chooses the format from an `Accept` header: OpenMetrics only when asked for.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::PrometheusText,
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Self::PrometheusText => PROMETHEUS_TEXT_CONTENT_TYPE,
        }
    }
}

/// Labels of `backstop_build_info`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    sandbox: String,
}

/// Labels of `backstop_http_requests_total`. `handler` is the route template, never the raw
/// path, so cardinality stays bounded whatever clients send.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The matched route, or `unmatched`.
    pub handler: String,
    /// The response status code.
    pub code: u16,
}

/// Every metric Backstop exports.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    last_size: AtomicUsize,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Builds the registry with the process-level metrics.
    pub fn new() -> Self {
        let mut registry = Registry::default();

        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                sandbox: cfg!(feature = "sandbox").to_string(),
            })
            .set(1);
        registry.register(
            "backstop_build_info",
            "Backstop's version; always 1",
            build_info,
        );

        let start_time = Gauge::<i64>::default();
        start_time.set(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        );
        registry.register(
            "backstop_start_time_seconds",
            "When this Backstop process started, as a Unix timestamp",
            start_time,
        );

        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "backstop_http_requests",
            "HTTP requests served, by route and status code",
            http_requests.clone(),
        );

        Self {
            registry,
            http_requests,
            last_size: AtomicUsize::new(0),
        }
    }

    /// Counts one HTTP request.
    pub fn count_http_request(&self, handler: &str, code: u16) {
        self.http_requests
            .get_or_create(&HttpLabels {
                handler: handler.to_owned(),
                code,
            })
            .inc();
    }

    /// Mutable access for components that register their own metric families at start-up.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Renders every metric in `format`.
    pub fn render(&self, format: Format) -> Result<String, std::fmt::Error> {
        // Sized like the last render: a large exposition is not grown (and copied) a dozen
        // times on every scrape.
        let mut out = String::with_capacity(self.last_size.load(Ordering::Relaxed).max(4096));
        match format {
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)?
            }
            Format::PrometheusText => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
            }
        }
        if out.is_empty() {
            writeln!(out)?;
        }
        self.last_size.store(out.len(), Ordering::Relaxed);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_ends_with_eof_and_text_does_not() {
        let m = Metrics::new();
        let om = m.render(Format::OpenMetrics).unwrap();
        assert!(om.trim_end().ends_with("# EOF"), "{om}");
        let text = m.render(Format::PrometheusText).unwrap();
        assert!(!text.contains("# EOF"), "{text}");
        assert!(text.contains("backstop_build_info{"), "{text}");
    }

    #[test]
    fn accept_header_selects_format() {
        assert_eq!(Format::from_accept(None), Format::PrometheusText);
        assert_eq!(
            Format::from_accept(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::from_accept(Some("text/plain")),
            Format::PrometheusText
        );
    }

    #[test]
    fn http_requests_are_counted_per_handler_and_code() {
        let m = Metrics::new();
        m.count_http_request("/metrics", 200);
        m.count_http_request("/metrics", 200);
        let text = m.render(Format::PrometheusText).unwrap();
        assert!(
            text.contains("backstop_http_requests_total{handler=\"/metrics\",code=\"200\"} 2"),
            "{text}"
        );
    }
}
