//! What the server counts, and the Prometheus text it serves on
//! `--metrics ADDR` (`GET /metrics`) from a thread of its own; the chat
//! port never speaks HTTP.
//!
//! Counters are atomics bumped where things happen (the reactor, the
//! connections, the writer); nothing here locks.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;

use crate::job::{Job, Task};
use crate::presence::Presence;
use crate::protocol::{ErrorCode, Kind};

/// Upper bounds of the latency histograms' buckets, in seconds.
const BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A Prometheus histogram of durations.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// One server's counters.
pub struct Metrics {
    pub connections_open: AtomicI64,
    pub connections_total: AtomicU64,
    requests: Vec<AtomicU64>,
    errors: Vec<AtomicU64>,
    pub messages_stored: AtomicU64,
    pub pushes_delivered: AtomicU64,
    pub outbound_bytes: AtomicU64,
    pub slow_consumer_disconnects: AtomicU64,
    /// From a request's arrival to its answer being queued.
    pub request_latency: Histogram,
    /// Of each of the writer's commits (one fsync each).
    pub commit_latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let counters = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect();
        Metrics {
            connections_open: AtomicI64::new(0),
            connections_total: AtomicU64::new(0),
            requests: counters(Kind::ALL.len()),
            errors: counters(ErrorCode::ALL.len()),
            messages_stored: AtomicU64::new(0),
            pushes_delivered: AtomicU64::new(0),
            outbound_bytes: AtomicU64::new(0),
            slow_consumer_disconnects: AtomicU64::new(0),
            request_latency: Histogram::default(),
            commit_latency: Histogram::default(),
        }
    }
}

fn index_of<T: PartialEq>(all: &[T], value: &T) -> Option<usize> {
    all.iter().position(|v| v == value)
}

impl Metrics {
    pub fn count_request(&self, kind: Kind) {
        if let Some(i) = index_of(Kind::ALL, &kind) {
            self.requests[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn count_error(&self, code: ErrorCode) {
        if let Some(i) = index_of(ErrorCode::ALL, &code) {
            self.errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus text exposition of everything, with the gauges read now.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let mut line = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        line(
            "parley_connections_open",
            "gauge",
            "Connections open now.",
            self.connections_open.load(Ordering::Relaxed).to_string(),
        );
        line(
            "parley_connections_total",
            "counter",
            "Connections accepted since start.",
            load(&self.connections_total),
        );
        line(
            "parley_logged_in_users",
            "gauge",
            "Users with at least one logged-in connection.",
            gauges.presence.online_users().to_string(),
        );
        line(
            "parley_messages_stored_total",
            "counter",
            "Messages (text and files) committed.",
            load(&self.messages_stored),
        );
        line(
            "parley_pushes_delivered_total",
            "counter",
            "Pushes queued to connections.",
            load(&self.pushes_delivered),
        );
        line(
            "parley_outbound_bytes_total",
            "counter",
            "Bytes written to clients (before TLS).",
            load(&self.outbound_bytes),
        );
        line(
            "parley_slow_consumer_disconnects_total",
            "counter",
            "Clients cut off for not reading their pushes.",
            load(&self.slow_consumer_disconnects),
        );
        line(
            "parley_read_queue_depth",
            "gauge",
            "Reads waiting for a worker.",
            gauges.reads.len().to_string(),
        );
        line(
            "parley_write_queue_depth",
            "gauge",
            "Clients' writes waiting for the writer.",
            gauges.writes.len().to_string(),
        );
        let _ = writeln!(
            out,
            "# HELP parley_requests_total Requests received, by type.\n# TYPE parley_requests_total counter"
        );
        for (kind, n) in Kind::ALL.iter().zip(&self.requests) {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                let _ = writeln!(out, "parley_requests_total{{type=\"{}\"}} {n}", kind.name());
            }
        }
        let _ = writeln!(
            out,
            "# HELP parley_errors_total Error replies, by code.\n# TYPE parley_errors_total counter"
        );
        for (code, n) in ErrorCode::ALL.iter().zip(&self.errors) {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                let _ = writeln!(out, "parley_errors_total{{code=\"{}\"}} {n}", code.name());
            }
        }
        self.request_latency.render(
            &mut out,
            "parley_request_duration_seconds",
            "From a request's arrival to its answer.",
        );
        self.commit_latency.render(
            &mut out,
            "parley_commit_duration_seconds",
            "Of each database commit of the writer (one fsync each).",
        );
        out
    }
}

/// What the metrics read at the moment of a scrape. The queues are watched
/// through receivers: a sender kept here would keep them open at shutdown.
pub struct Gauges {
    pub presence: Arc<Presence>,
    pub reads: Receiver<Job>,
    pub writes: Receiver<Task>,
}

/// The metrics listener's thread; stops serving when dropped.
pub struct MetricsServer(Arc<tiny_http::Server>);

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.0.unblock();
    }
}

/// Serves `GET /metrics` on `listener` (bound at start-up, so a taken port
/// fails it) from a thread of its own, until the returned handle is dropped.
pub fn serve(
    listener: std::net::TcpListener,
    metrics: Arc<Metrics>,
    gauges: Gauges,
) -> anyhow::Result<MetricsServer> {
    let server = Arc::new(
        tiny_http::Server::from_listener(listener, None)
            .map_err(|e| anyhow::anyhow!("cannot serve metrics: {e}"))?,
    );
    let serving = server.clone();
    let content_type = tiny_http::Header::from_bytes("Content-Type", "text/plain; version=0.0.4")
        .map_err(|()| anyhow::anyhow!("a bad header"))?;
    std::thread::Builder::new()
        .name("parley-metrics".into())
        .spawn(move || {
            for request in serving.incoming_requests() {
                let response = if request.url() == "/metrics" && *request.method() == tiny_http::Method::Get {
                    tiny_http::Response::from_string(metrics.render(&gauges))
                        .with_header(content_type.clone())
                } else {
                    tiny_http::Response::from_string("not found: try /metrics\n").with_status_code(404)
                };
                if let Err(e) = request.respond(response) {
                    log::debug!("answering a metrics request failed: {e}");
                }
            }
        })?;
    Ok(MetricsServer(server))
}
