//! Counters of the daemon and the small HTTP/1.1 endpoint that serves them
//! (`serve --metrics ADDR`): `GET /healthz` answers `ok` (503 when the store
//! worker or the spool loop has stopped), `GET /metrics` the Prometheus text
//! format. Queue depths and the oldest waiting file are read from the spool
//! at each scrape.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::spool::{self, Layout, QueueStats};

/// Upper bounds (seconds) of the latency histogram buckets.
pub const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Clone, Debug, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        for (c, b) in self.counts.iter_mut().zip(BUCKETS) {
            if secs <= *b {
                *c += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }
}

#[derive(Default)]
struct Inner {
    /// (channel, outcome) → files finished.
    files: BTreeMap<(String, String), u64>,
    /// (source, app, outcome) → batches.
    batches: BTreeMap<(String, String, String), u64>,
    /// (app, result) → transactions.
    transactions: BTreeMap<(String, &'static str), u64>,
    /// reason → drop-folder entries refused.
    refused: BTreeMap<String, u64>,
    /// kind → failures that were retried.
    failures: BTreeMap<String, u64>,
    /// reason → TCP connections closed.
    tcp_closed: BTreeMap<String, u64>,
    /// source → processing latency.
    latency: BTreeMap<String, Histogram>,
    last_activity: Option<SystemTime>,
}

/// The daemon's counters, shared by the spool loop, the TCP endpoint and the
/// HTTP endpoint.
pub struct Metrics {
    inner: Mutex<Inner>,
    pub claims_applied: AtomicU64,
    pub tcp_accepted: AtomicU64,
    pub tcp_open: AtomicU64,
    pub store_alive: AtomicBool,
    pub spool_alive: AtomicBool,
    started: SystemTime,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            inner: Mutex::new(Inner::default()),
            claims_applied: AtomicU64::new(0),
            tcp_accepted: AtomicU64::new(0),
            tcp_open: AtomicU64::new(0),
            store_alive: AtomicBool::new(true),
            spool_alive: AtomicBool::new(true),
            started: SystemTime::now(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// An input file finished: `outcome` is `published`, `unauthenticated` or `refused`.
    pub fn file_done(&self, channel: &str, outcome: &str, latency: Option<Duration>) {
        self.with(|i| {
            *i.files.entry((channel.into(), outcome.into())).or_default() += 1;
            if let Some(l) = latency {
                i.latency.entry("file".into()).or_default().observe(l.as_secs_f64());
            }
            i.last_activity = Some(SystemTime::now());
        });
    }

    /// A batch committed.
    pub fn batch(&self, source: &str, app: &str, outcome: &str, accepted: u32, rejected: u32, claims: u32) {
        self.claims_applied.fetch_add(u64::from(claims), Ordering::Relaxed);
        self.with(|i| {
            *i.batches
                .entry((source.into(), app.into(), outcome.into()))
                .or_default() += 1;
            if accepted > 0 {
                *i.transactions.entry((app.into(), "accepted")).or_default() += u64::from(accepted);
            }
            if rejected > 0 {
                *i.transactions.entry((app.into(), "rejected")).or_default() += u64::from(rejected);
            }
            i.last_activity = Some(SystemTime::now());
        });
    }

    /// Latency of one TCP batch, from its Z record to its response written.
    pub fn tcp_latency(&self, d: Duration) {
        self.with(|i| i.latency.entry("tcp".into()).or_default().observe(d.as_secs_f64()));
    }

    pub fn refused(&self, reason: &str) {
        self.with(|i| {
            *i.refused.entry(reason.into()).or_default() += 1;
            i.last_activity = Some(SystemTime::now());
        });
    }

    pub fn failure(&self, kind: &str) {
        self.with(|i| *i.failures.entry(kind.into()).or_default() += 1);
    }

    pub fn tcp_closed(&self, reason: &str) {
        self.with(|i| *i.tcp_closed.entry(reason.into()).or_default() += 1);
    }

    pub fn healthy(&self) -> bool {
        self.store_alive.load(Ordering::Relaxed) && self.spool_alive.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self, q: &QueueStats) -> String {
        let mut o = String::new();
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let head = |o: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        self.with(|i| {
            head(
                &mut o,
                "ecertd_files_total",
                "counter",
                "Input files finished, by channel and outcome.",
            );
            for ((c, out), n) in &i.files {
                let _ = writeln!(
                    o,
                    "ecertd_files_total{{channel=\"{}\",outcome=\"{}\"}} {n}",
                    esc(c),
                    esc(out)
                );
            }
            head(
                &mut o,
                "ecertd_batches_total",
                "counter",
                "Batches committed, by source, application and outcome.",
            );
            for ((s, a, out), n) in &i.batches {
                let _ = writeln!(
                    o,
                    "ecertd_batches_total{{source=\"{}\",app=\"{}\",outcome=\"{}\"}} {n}",
                    esc(s),
                    esc(a),
                    esc(out)
                );
            }
            head(
                &mut o,
                "ecertd_transactions_total",
                "counter",
                "Transactions of processed batches, by application and result.",
            );
            for ((a, r), n) in &i.transactions {
                let _ = writeln!(o, "ecertd_transactions_total{{app=\"{}\",result=\"{r}\"}} {n}", esc(a));
            }
            head(
                &mut o,
                "ecertd_claims_applied_total",
                "counter",
                "Certificate claims (debits) applied by accepted entry summaries.",
            );
            let _ = writeln!(
                o,
                "ecertd_claims_applied_total {}",
                self.claims_applied.load(Ordering::Relaxed)
            );
            head(
                &mut o,
                "ecertd_refused_entries_total",
                "counter",
                "Drop-folder entries refused as a whole, by reason.",
            );
            for (r, n) in &i.refused {
                let _ = writeln!(o, "ecertd_refused_entries_total{{reason=\"{}\"}} {n}", esc(r));
            }
            head(
                &mut o,
                "ecertd_failures_total",
                "counter",
                "Store or I/O failures (the work was kept for retry).",
            );
            for (k, n) in &i.failures {
                let _ = writeln!(o, "ecertd_failures_total{{kind=\"{}\"}} {n}", esc(k));
            }
            head(
                &mut o,
                "ecertd_tcp_connections_total",
                "counter",
                "TCP connections accepted.",
            );
            let _ = writeln!(
                o,
                "ecertd_tcp_connections_total {}",
                self.tcp_accepted.load(Ordering::Relaxed)
            );
            head(&mut o, "ecertd_tcp_connections_open", "gauge", "TCP connections open.");
            let _ = writeln!(
                o,
                "ecertd_tcp_connections_open {}",
                self.tcp_open.load(Ordering::Relaxed)
            );
            head(
                &mut o,
                "ecertd_tcp_closed_total",
                "counter",
                "TCP connections closed, by reason.",
            );
            for (r, n) in &i.tcp_closed {
                let _ = writeln!(o, "ecertd_tcp_closed_total{{reason=\"{}\"}} {n}", esc(r));
            }
            head(
                &mut o,
                "ecertd_processing_seconds",
                "histogram",
                "Processing latency: a file from claim to archive, a TCP batch from Z to response.",
            );
            for (src, h) in &i.latency {
                for (b, c) in BUCKETS.iter().zip(&h.counts) {
                    let _ = writeln!(
                        o,
                        "ecertd_processing_seconds_bucket{{source=\"{}\",le=\"{b}\"}} {c}",
                        esc(src)
                    );
                }
                let _ = writeln!(
                    o,
                    "ecertd_processing_seconds_bucket{{source=\"{}\",le=\"+Inf\"}} {}",
                    esc(src),
                    h.count
                );
                let _ = writeln!(o, "ecertd_processing_seconds_sum{{source=\"{}\"}} {}", esc(src), h.sum);
                let _ = writeln!(
                    o,
                    "ecertd_processing_seconds_count{{source=\"{}\"}} {}",
                    esc(src),
                    h.count
                );
            }
            head(
                &mut o,
                "ecertd_last_activity_timestamp_seconds",
                "gauge",
                "Unix time of the last file or batch finished (0: none yet).",
            );
            let last = i
                .last_activity
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            let _ = writeln!(o, "ecertd_last_activity_timestamp_seconds {last}");
        });
        head(&mut o, "ecertd_queue_depth", "gauge", "Entries in a spool folder.");
        for (f, n) in &q.folders {
            let _ = writeln!(o, "ecertd_queue_depth{{folder=\"{}\"}} {n}", esc(f));
        }
        head(
            &mut o,
            "ecertd_outbound_files",
            "gauge",
            "Response files per sender folder.",
        );
        for (s, n) in &q.outbound {
            let _ = writeln!(o, "ecertd_outbound_files{{sender=\"{}\"}} {n}", esc(s));
        }
        head(
            &mut o,
            "ecertd_oldest_waiting_seconds",
            "gauge",
            "Age of the oldest file waiting in the drop folders or work/ (0: none).",
        );
        let _ = writeln!(
            o,
            "ecertd_oldest_waiting_seconds {}",
            q.oldest.as_ref().map(|(_, d)| d.as_secs_f64()).unwrap_or(0.0)
        );
        head(
            &mut o,
            "ecertd_up",
            "gauge",
            "1 while the store worker and the spool loop run.",
        );
        let _ = writeln!(o, "ecertd_up {}", u8::from(self.healthy()));
        head(
            &mut o,
            "ecertd_start_time_seconds",
            "gauge",
            "Unix time the daemon started.",
        );
        let _ = writeln!(
            o,
            "ecertd_start_time_seconds {}",
            self.started
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        );
        o
    }
}

/// Serves `/healthz` and `/metrics` until `shutdown` turns true.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, layout: Layout, mut shutdown: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                let m = metrics.clone();
                let l = layout.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(10), answer(stream, m, l)).await;
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(mut stream: TcpStream, metrics: Arc<Metrics>, layout: Layout) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 8192 {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"too large\n",
                true,
            )
            .await;
        }
    }
    let line = buf.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("");
    let path = target.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            b"GET only\n",
            !head_only,
        )
        .await;
    }
    match path {
        "/healthz" => {
            if metrics.healthy() {
                respond(&mut stream, "200 OK", "text/plain", b"ok\n", !head_only).await
            } else {
                respond(
                    &mut stream,
                    "503 Service Unavailable",
                    "text/plain",
                    b"unhealthy\n",
                    !head_only,
                )
                .await
            }
        }
        "/metrics" => {
            let l = layout.clone();
            let q = tokio::task::spawn_blocking(move || spool::queue_stats(&l))
                .await
                .unwrap_or_default();
            let body = metrics.render(&q);
            respond(
                &mut stream,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                body.as_bytes(),
                !head_only,
            )
            .await
        }
        _ => respond(&mut stream, "404 Not Found", "text/plain", b"not found\n", !head_only).await,
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    ctype: &str,
    body: &[u8],
    with_body: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if with_body {
        stream.write_all(body).await?;
    }
    stream.shutdown().await
}
