//! Prometheus metrics: requests by route and status, latency, requests
//! refused by the rate limit, sessions by status.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use wagate_domain::SessionStatus;

/// The gateway's metrics, in their own registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    rate_limited: IntCounterVec,
    sessions: IntGaugeVec,
}

impl Metrics {
    /// Registers every metric.
    ///
    /// # Errors
    ///
    /// A `prometheus::Error` if a metric is defined twice (a bug).
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "wagate_http_requests_total",
                "HTTP requests by route pattern, method and status.",
            ),
            &["route", "method", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "wagate_http_request_duration_seconds",
                "HTTP request latency by route pattern and method.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["route", "method"],
        )?;
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "wagate_http_rate_limited_total",
                "Requests refused with 429 by the per-credential rate limit, by credential kind (api_key, user).",
            ),
            &["kind"],
        )?;
        let sessions = IntGaugeVec::new(
            Opts::new("wagate_sessions", "Sessions by status."),
            &["status"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(sessions.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            rate_limited,
            sessions,
        })
    }

    /// Counts one request.
    pub fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let mut buf = itoa_buf();
        let status = fmt_status(status, &mut buf);
        self.requests
            .with_label_values(&[route, method, status])
            .inc();
        self.latency
            .with_label_values(&[route, method])
            .observe(seconds);
    }

    /// Counts one request refused by the rate limit; `kind` is `api_key` or
    /// `user`.
    pub fn rate_limited(&self, kind: &'static str) {
        self.rate_limited.with_label_values(&[kind]).inc();
    }

    /// Sets the sessions-by-status gauge.
    pub fn set_sessions(&self, counts: &[(SessionStatus, u64)]) {
        for (status, n) in counts {
            self.sessions
                .with_label_values(&[status.as_str()])
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
    }

    /// The text exposition of every metric.
    ///
    /// # Errors
    ///
    /// A `prometheus::Error` when encoding fails.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

fn itoa_buf() -> [u8; 3] {
    [b'0'; 3]
}

/// Formats a 3-digit status without allocating.
fn fmt_status(status: u16, buf: &mut [u8; 3]) -> &str {
    let s = status.min(999);
    buf[0] = b'0' + u8::try_from(s / 100).unwrap_or(0);
    buf[1] = b'0' + u8::try_from((s / 10) % 10).unwrap_or(0);
    buf[2] = b'0' + u8::try_from(s % 10).unwrap_or(0);
    std::str::from_utf8(buf).unwrap_or("000")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_gauges() {
        let m = Metrics::new().unwrap();
        m.observe("/api/v1/sessions", "GET", 200, 0.001);
        m.rate_limited("api_key");
        m.set_sessions(&[(SessionStatus::Connected, 3)]);
        let text = m.render().unwrap();
        assert!(text.contains(r#"wagate_http_requests_total{method="GET",route="/api/v1/sessions",status="200"} 1"#), "{text}");
        assert!(text.contains(r#"wagate_sessions{status="connected"} 3"#));
        assert!(text.contains("wagate_http_request_duration_seconds_bucket"));
        assert!(text.contains(r#"wagate_http_rate_limited_total{kind="api_key"} 1"#));
    }
}
