//! Prometheus metrics: requests by route and status, latency, requests
//! refused by the rate limit, sessions by status, live calls between
//! gateways; with several gateways on one database, the live nodes (as
//! `wagate cluster status` shows them) and this node's fenced writes and
//! self-fences.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use wagate_app::ClusterFigures;
use wagate_domain::SessionStatus;

/// The gateway's metrics, in their own registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    rate_limited: IntCounterVec,
    sessions: IntGaugeVec,
    between_nodes: IntCounterVec,
    cluster: ClusterMetrics,
}

/// The cluster's figures.
#[derive(Debug, Clone)]
struct ClusterMetrics {
    nodes: IntGauge,
    node_sessions: IntGaugeVec,
    node_draining: IntGaugeVec,
    node_started: IntGaugeVec,
    node_heartbeat: IntGaugeVec,
    held: IntGauge,
    fenced_writes: IntCounter,
    self_fences: IntCounter,
}

impl ClusterMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let per_node = |name: &str, help: &str| {
            IntGaugeVec::new(Opts::new(name, help), &["node", "advertise_url"])
        };
        let m = Self {
            nodes: IntGauge::new(
                "wagate_cluster_nodes",
                "Live gateway nodes sharing the database.",
            )?,
            node_sessions: per_node(
                "wagate_cluster_node_sessions",
                "Sessions each live node owns.",
            )?,
            node_draining: per_node(
                "wagate_cluster_node_draining",
                "1 while a live node drains (stopping).",
            )?,
            node_started: per_node(
                "wagate_cluster_node_started_timestamp_seconds",
                "When each live node started (Unix time).",
            )?,
            node_heartbeat: per_node(
                "wagate_cluster_node_heartbeat_timestamp_seconds",
                "Each live node's last heartbeat (Unix time, the database's clock).",
            )?,
            held: IntGauge::new(
                "wagate_cluster_held_sessions",
                "Sessions this node holds a claim of.",
            )?,
            fenced_writes: IntCounter::new(
                "wagate_fenced_writes_total",
                "Writes of this node refused because another node had claimed their session (its client was stopped).",
            )?,
            self_fences: IntCounter::new(
                "wagate_self_fences_total",
                "Times this node stopped every client because it could not renew its lease in time.",
            )?,
        };
        registry.register(Box::new(m.nodes.clone()))?;
        registry.register(Box::new(m.node_sessions.clone()))?;
        registry.register(Box::new(m.node_draining.clone()))?;
        registry.register(Box::new(m.node_started.clone()))?;
        registry.register(Box::new(m.node_heartbeat.clone()))?;
        registry.register(Box::new(m.held.clone()))?;
        registry.register(Box::new(m.fenced_writes.clone()))?;
        registry.register(Box::new(m.self_fences.clone()))?;
        Ok(m)
    }

    fn set(&self, figures: &ClusterFigures) {
        self.nodes
            .set(i64::try_from(figures.nodes.len()).unwrap_or(i64::MAX));
        // Nodes that left are no longer shown.
        for vec in [
            &self.node_sessions,
            &self.node_draining,
            &self.node_started,
            &self.node_heartbeat,
        ] {
            vec.reset();
        }
        for n in &figures.nodes {
            let id = n.id.to_string();
            let labels = [id.as_str(), n.advertise_url.as_str()];
            self.node_sessions
                .with_label_values(&labels)
                .set(i64::try_from(n.sessions).unwrap_or(i64::MAX));
            self.node_draining
                .with_label_values(&labels)
                .set(i64::from(n.draining));
            self.node_started
                .with_label_values(&labels)
                .set(n.started_at.unix_timestamp());
            self.node_heartbeat
                .with_label_values(&labels)
                .set(n.heartbeat_at.unix_timestamp());
        }
        self.held
            .set(i64::try_from(figures.held).unwrap_or(i64::MAX));
        self.fenced_writes.inc_by(
            figures
                .fenced_writes
                .saturating_sub(self.fenced_writes.get()),
        );
        self.self_fences
            .inc_by(figures.self_fences.saturating_sub(self.self_fences.get()));
    }
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
        let between_nodes = IntCounterVec::new(
            Opts::new(
                "wagate_forwarded_calls_total",
                "Live calls between gateways: forwarded (sent to the session's owner), \
                 admitted (received from another gateway), refused (a forwarded request \
                 that did not verify), unavailable (no gateway could serve the session, \
                 or its owner could not be reached).",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(sessions.clone()))?;
        registry.register(Box::new(between_nodes.clone()))?;
        let cluster = ClusterMetrics::new(&registry)?;
        Ok(Self {
            registry,
            requests,
            latency,
            rate_limited,
            sessions,
            between_nodes,
            cluster,
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

    /// Counts one live call between gateways: `forwarded`, `admitted`,
    /// `refused` or `unavailable`.
    pub fn between_nodes(&self, outcome: &'static str) {
        self.between_nodes.with_label_values(&[outcome]).inc();
    }

    /// Sets the sessions-by-status gauge.
    pub fn set_sessions(&self, counts: &[(SessionStatus, u64)]) {
        for (status, n) in counts {
            self.sessions
                .with_label_values(&[status.as_str()])
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
    }

    /// Sets the cluster's figures (several gateways on one database).
    pub fn set_cluster(&self, figures: &ClusterFigures) {
        self.cluster.set(figures);
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
        m.between_nodes("forwarded");
        m.set_sessions(&[(SessionStatus::Connected, 3)]);
        let text = m.render().unwrap();
        assert!(text.contains(r#"wagate_http_requests_total{method="GET",route="/api/v1/sessions",status="200"} 1"#), "{text}");
        assert!(text.contains(r#"wagate_sessions{status="connected"} 3"#));
        assert!(text.contains("wagate_http_request_duration_seconds_bucket"));
        assert!(text.contains(r#"wagate_http_rate_limited_total{kind="api_key"} 1"#));
        assert!(text.contains(r#"wagate_forwarded_calls_total{outcome="forwarded"} 1"#));
    }
}

#[cfg(test)]
mod cluster_tests {
    use time::OffsetDateTime;
    use ulid::Ulid;
    use wagate_app::NodeStatus;
    use wagate_domain::NodeId;

    use super::*;

    fn node(sessions: u64, draining: bool) -> NodeStatus {
        NodeStatus {
            id: NodeId::from_ulid(Ulid::new()),
            advertise_url: "http://127.0.0.1:8081".into(),
            started_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            heartbeat_at: OffsetDateTime::from_unix_timestamp(1_700_000_060).unwrap(),
            draining,
            sessions,
        }
    }

    #[test]
    fn shows_the_live_nodes_and_forgets_those_that_left() {
        let m = Metrics::new().unwrap();
        let (a, b) = (node(7, false), node(2, true));
        let mut figures = ClusterFigures {
            nodes: vec![a.clone(), b.clone()],
            fenced_writes: 3,
            self_fences: 1,
            held: 7,
        };
        m.set_cluster(&figures);
        let text = m.render().unwrap();
        let label =
            |n: &NodeStatus| format!(r#"advertise_url="{}",node="{}""#, n.advertise_url, n.id);
        assert!(text.contains("wagate_cluster_nodes 2"), "{text}");
        assert!(
            text.contains(&format!("wagate_cluster_node_sessions{{{}}} 7", label(&a))),
            "{text}"
        );
        assert!(
            text.contains(&format!("wagate_cluster_node_draining{{{}}} 1", label(&b))),
            "{text}"
        );
        assert!(text.contains(&format!(
            "wagate_cluster_node_heartbeat_timestamp_seconds{{{}}} 1700000060",
            label(&a)
        )));
        assert!(text.contains("wagate_fenced_writes_total 3"));
        assert!(text.contains("wagate_self_fences_total 1"));
        figures.nodes = vec![a.clone()];
        figures.fenced_writes = 5;
        m.set_cluster(&figures);
        let text = m.render().unwrap();
        assert!(!text.contains(&b.id.to_string()), "{text}");
        assert!(text.contains("wagate_fenced_writes_total 5"));
    }
}
