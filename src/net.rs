//! The TCP endpoint (spec README, "TCP endpoint"): `serve --listen ADDR`.
//!
//! One task per connection, one engine [`Session`] per connection (so the
//! connection speaks for the sender of its first batch, and a later batch
//! naming another sender is refused with `X08`). A client sends records,
//! each followed by LF or CRLF; after each record beginning with `Z` the
//! records received since the previous answer are framed as in a file
//! (stray records and a batch lacking its Z give their own refused batches)
//! and answered, records followed by CRLF. The batches' effects and
//! responses are committed before the answer is written; the journal line
//! follows the answer.
//!
//! Limits (configuration): `max_connections` (more are closed at once),
//! `max_batch_bytes` (a batch growing past it closes the connection),
//! `idle_timeout_ms` (a line not completed, or an answer not taken, within
//! it closes the connection), `batch_timeout_ms` (a batch whose Z record has
//! not arrived that long after its first record closes the connection: a
//! client that trickles records just inside the idle timeout cannot hold a
//! connection slot for days). A line over 1024 bytes or holding a NUL byte
//! is garbage and closes the connection. A half-received batch is dropped,
//! never processed. None of this touches other connections.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::engine::{Destination, Engine, Session};
use crate::envelope::Channel;
use crate::journal::{Journal, Line};
use crate::metrics::Metrics;
use crate::record::BatchReader;
use crate::types::Date;
use crate::worker::StoreHandle;

/// Longest acceptable line (records are 80 bytes).
pub const MAX_LINE: usize = 1024;

/// What the TCP endpoint needs.
pub struct NetCtx {
    pub store: StoreHandle,
    pub journal: Arc<Journal>,
    pub metrics: Arc<Metrics>,
    pub business_date: Option<Date>,
    pub channel: Channel,
    pub max_batch_bytes: usize,
    pub idle_timeout: Duration,
    pub batch_timeout: Duration,
    pub max_connections: usize,
}

/// Accepts connections until `shutdown`, then waits for the open ones to
/// finish their batch in progress.
pub async fn serve(listener: TcpListener, ctx: Arc<NetCtx>, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(ctx.max_connections));
    let mut tasks = JoinSet::new();
    let mut next_id = 0u64;
    let watch_rx = shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match slots.clone().try_acquire_owned() {
                    Ok(permit) => {
                        next_id += 1;
                        let ctx = ctx.clone();
                        let rx = watch_rx.clone();
                        tasks.spawn(async move {
                            connection(stream, peer, next_id, ctx, rx).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        ctx.metrics.tcp_closed("connection_limit");
                        tracing::warn!(peer = %peer, limit = ctx.max_connections, "TCP connection refused: too many connections");
                        drop(stream);
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stopped(&mut shutdown) => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

async fn connection(stream: TcpStream, peer: SocketAddr, id: u64, ctx: Arc<NetCtx>, shutdown: watch::Receiver<bool>) {
    ctx.metrics.tcp_accepted.fetch_add(1, Ordering::Relaxed);
    ctx.metrics.tcp_open.fetch_add(1, Ordering::Relaxed);
    let _ = stream.set_nodelay(true);
    tracing::debug!(peer = %peer, conn = id, "TCP connection opened");
    let (reason, batches) = match converse(stream, peer, id, &ctx, shutdown).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(peer = %peer, conn = id, error = %e, "TCP connection error");
            ("io_error", 0)
        }
    };
    ctx.metrics.tcp_closed(reason);
    ctx.metrics.tcp_open.fetch_sub(1, Ordering::Relaxed);
    match reason {
        "closed_by_peer" | "shutdown" => {
            tracing::debug!(peer = %peer, conn = id, batches, reason, "TCP connection closed")
        }
        _ => tracing::warn!(peer = %peer, conn = id, batches, reason, "TCP connection closed"),
    }
}

/// Resolves once the shutdown flag is set (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

enum LineRead {
    Line,
    Eof,
    Garbage,
}

/// Reads one line (with its line end) into `out`, never keeping more than
/// [`MAX_LINE`] bytes.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, out: &mut Vec<u8>) -> io::Result<LineRead> {
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            // A last line without its line end still counts.
            return Ok(if out.is_empty() { LineRead::Eof } else { LineRead::Line });
        }
        let (chunk, end) = match buf.iter().position(|&b| b == b'\n') {
            Some(p) => (&buf[..=p], true),
            None => (buf, false),
        };
        let n = chunk.len();
        let bad = chunk.contains(&0) || out.len() + n > MAX_LINE + 2;
        if !bad {
            out.extend_from_slice(chunk);
        }
        r.consume(n);
        if bad {
            return Ok(LineRead::Garbage);
        }
        if end {
            return Ok(LineRead::Line);
        }
    }
}

/// LF-terminated response records to CRLF.
fn crlf(response: &[u8], out: &mut Vec<u8>) {
    for &b in response {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
}

async fn converse(
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    ctx: &NetCtx,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<(&'static str, u64)> {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(1 << 16, rd);
    let mut session = Some(Session::new(ctx.channel));
    let mut pending: Vec<u8> = Vec::new();
    let mut line = Vec::with_capacity(128);
    let mut batches = 0u64;
    // When the batch being received must have its Z record: set by its
    // first record, cleared by the answer.
    let mut batch_deadline: Option<tokio::time::Instant> = None;
    let input = format!("tcp:{peer}");
    let conn = format!("tcp-{id}");
    loop {
        if *shutdown.borrow() {
            return Ok(("shutdown", batches));
        }
        line.clear();
        let idle_deadline = tokio::time::Instant::now() + ctx.idle_timeout;
        let deadline = batch_deadline.map_or(idle_deadline, |b| b.min(idle_deadline));
        let read = tokio::select! {
            r = tokio::time::timeout_at(deadline, read_line(&mut rd, &mut line)) => r,
            _ = stopped(&mut shutdown) => return Ok(("shutdown", batches)),
        };
        match read {
            Err(_) if batch_deadline.is_some_and(|b| b <= idle_deadline) => return Ok(("batch_timeout", batches)),
            Err(_) => return Ok(("idle_timeout", batches)),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(LineRead::Eof)) => return Ok(("closed_by_peer", batches)),
            Ok(Ok(LineRead::Garbage)) => return Ok(("garbage", batches)),
            Ok(Ok(LineRead::Line)) => {}
        }
        if pending.len() + line.len() > ctx.max_batch_bytes {
            return Ok(("batch_too_large", batches));
        }
        pending.extend_from_slice(&line);
        if line.first() != Some(&b'Z') {
            batch_deadline.get_or_insert_with(|| tokio::time::Instant::now() + ctx.batch_timeout);
            continue;
        }
        batch_deadline = None;
        // A Z record: frame and answer everything received since the last answer.
        let started = Instant::now();
        let bytes = std::mem::take(&mut pending);
        let mut raws = Vec::new();
        let mut reader = BatchReader::new(&bytes[..]);
        while let Some(b) = reader.next_batch()? {
            raws.push(b);
        }
        let Some(mut s) = session.take() else {
            return Ok(("internal", batches));
        };
        let date = crate::daemon::business_date(ctx.business_date);
        let reply = ctx
            .store
            .call(move |store| {
                let r = Engine::new(store, date).process_group(&mut s, &raws, None);
                (s, r)
            })
            .await;
        let (s, results) = match reply {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(peer = %peer, conn = id, error = %e, "TCP batch not processed");
                ctx.metrics.failure("store");
                return Ok(("store_error", batches));
            }
        };
        let sender = match s.destination() {
            Some(Destination::Outbound(s)) => s.clone(),
            _ => "-".to_string(),
        };
        session = Some(s);
        let results = match results {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(peer = %peer, conn = id, error = %e, "TCP batch not processed (nothing committed)");
                ctx.metrics.failure("store");
                return Ok(("store_error", batches));
            }
        };
        let mut out = Vec::with_capacity(bytes.len() + 256);
        for r in &results {
            crlf(&r.response, &mut out);
        }
        // Committed: counted, timed (and access refusals logged) before the
        // client can read the answer, so that /metrics never lags an answer seen.
        for r in &results {
            let app = r.app.map(|a| a.id()).unwrap_or("-");
            ctx.metrics
                .batch("tcp", app, r.outcome.name(), r.accepted, r.rejected, r.claims_applied);
            let codes = crate::daemon::access_refusals(&r.response);
            if !codes.is_empty() {
                tracing::warn!(
                    peer = %peer,
                    conn = id,
                    sender = %crate::diagnose::escape(r.sender.as_bytes()),
                    app,
                    codes = %codes.join(","),
                    "access refused"
                );
            }
        }
        ctx.metrics.tcp_latency(started.elapsed());
        match tokio::time::timeout(ctx.idle_timeout, wr.write_all(&out)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(("write_timeout", batches)),
        }
        let mut lines = Vec::with_capacity(results.len());
        for r in &results {
            lines.push(Line {
                input: input.clone(),
                claim: conn.clone(),
                batch: batches,
                batches: None,
                channel: ctx.channel.name().into(),
                sender: sender.clone(),
                app: r.app.map(|a| a.id()).unwrap_or("-").into(),
                outcome: r.outcome.name().into(),
                accepted: r.accepted,
                rejected: r.rejected,
                response: "tcp".into(),
            });
            batches += 1;
        }
        let journal = ctx.journal.clone();
        match tokio::task::spawn_blocking(move || journal.append(&lines)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot append to the journal"),
            Err(e) => tracing::error!(error = %e, "journal task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_conversion() {
        let mut out = Vec::new();
        crlf(b"A\nB\n", &mut out);
        assert_eq!(out, b"A\r\nB\r\n");
    }

    #[tokio::test]
    async fn lines_and_garbage() {
        let mut r = BufReader::new(&b"ab\r\ncd"[..]);
        let mut l = Vec::new();
        assert!(matches!(read_line(&mut r, &mut l).await.unwrap(), LineRead::Line));
        assert_eq!(l, b"ab\r\n");
        l.clear();
        assert!(matches!(read_line(&mut r, &mut l).await.unwrap(), LineRead::Line));
        assert_eq!(l, b"cd");
        l.clear();
        assert!(matches!(read_line(&mut r, &mut l).await.unwrap(), LineRead::Eof));
        let long = vec![b'x'; 5000];
        let mut r = BufReader::new(&long[..]);
        l.clear();
        assert!(matches!(read_line(&mut r, &mut l).await.unwrap(), LineRead::Garbage));
        let mut r = BufReader::new(&b"a\0b\n"[..]);
        l.clear();
        assert!(matches!(read_line(&mut r, &mut l).await.unwrap(), LineRead::Garbage));
    }
}
