//! Floods, through the real binary: many tiny files dropped at once, many
//! concurrent TCP connections (and more than the limit), a client dripping
//! one byte at a time, a batch that never ends. Each must be served completely, other clients must
//! be served meanwhile, and the daemon's memory must stay bounded
//! (`VmHWM`, the peak resident set, from /proc/PID/status).
//!
//! Sizes: 2,000 files and 200 connections by default; 100,000 files and
//! 1,000 connections with `ECERTD_LONG_TESTS=1`.

mod daemon_support;
mod hardening_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use daemon_support::*;
use hardening_support::*;

/// An importer query of ABC (blank reference, so any number may be sent).
fn query() -> String {
    batch("ABC", "PWABC1", "EC", "", "ABC", &[format!("C1I{IOR}")])
}

/// A query with its own reference (so its journal line names it).
fn query_ref(reference: &str) -> String {
    batch("ABC", "PWABC1", "EC", reference, "ABC", &[format!("C1I{IOR}")])
}

fn connect(addr: SocketAddr) -> TcpStream {
    let c = TcpStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    c
}

/// One query over a new connection; its answer and how long it took.
fn probe(addr: SocketAddr, want: &[u8]) -> Duration {
    let start = Instant::now();
    let mut c = connect(addr);
    c.write_all(query().as_bytes()).unwrap();
    let got = read_batches(&mut c, 1).expect("probe answer");
    assert_eq!(got, want, "probe answer");
    start.elapsed()
}

/// Samples the daemon's resident set every 50 ms until stopped; the highest seen.
struct Sampler {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(pid: i32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicU64::new(0));
        let (s, m) = (stop.clone(), max.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                m.fetch_max(memory_kib(pid).1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Sampler {
            stop,
            max,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.max.load(Ordering::Relaxed)
    }
}

/// A spool where ABC may query IOR (the flood's queries are answered, not refused).
fn spool() -> Spool {
    let s = Spool::new();
    s.ok(&["grant", "--filer", "ABC", "--ior", IOR]);
    s
}

/// The answer to `query()` on an empty ledger, as a TCP client reads it.
fn want_answer(s: &Spool) -> Vec<u8> {
    let p = s.dir.path().join("q.txt");
    std::fs::write(&p, query()).unwrap();
    to_crlf(s.ok(&["process", p.to_str().unwrap(), "--channel", "abi"]).as_bytes())
}

/// Many tiny files dropped at once (renamed into inbound/abi in one burst
/// while the daemon runs): one in ten a broker's query (authenticated, to
/// outbound/ABC), the others a line of junk (answered X03 in rejected/,
/// never authenticated: a password check costs 2.5 ms in release, 70 ms in
/// a debug build). Every one is answered once and filed; a TCP client
/// asking every 100 ms meanwhile is answered throughout; memory stays
/// bounded.
#[test]
fn flood_of_tiny_files() {
    let n = size(2_000, 100_000);
    let s = spool();
    let want = want_answer(&s);
    let staging = s.dir.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    let valid = query();
    let name = |i: usize| format!("q{i:06}.txt");
    for i in 0..n {
        let bytes = if i % 10 == 0 {
            valid.clone()
        } else {
            format!("junk {i}\n")
        };
        std::fs::write(staging.join(name(i)), bytes).unwrap();
    }
    let mut d = s.start(&["--listen", "127.0.0.1:0"], &[]);
    let addr = d.addr("TCP endpoint listening");
    let sampler = Sampler::start(d.pid());
    // The client served meanwhile: one session, a query every 100 ms.
    let mut client = connect(addr);
    client.write_all(valid.as_bytes()).unwrap();
    assert_eq!(read_batches(&mut client, 1).unwrap(), want);
    let inbound = s.inbound("abi");
    let started = Instant::now();
    for i in 0..n {
        std::fs::rename(staging.join(name(i)), inbound.join(name(i))).unwrap();
    }
    let dropped = started.elapsed();
    let mut latencies = Vec::new();
    let filed = || s.entries("archive").len() + s.entries("rejected").len() / 3;
    let took = loop {
        let t = Instant::now();
        client.write_all(valid.as_bytes()).unwrap();
        assert_eq!(read_batches(&mut client, 1).unwrap(), want, "client answer");
        latencies.push(t.elapsed());
        // Listing the folders is not free (100,000 names): once a second.
        if latencies.len() % 10 == 0 && s.idle() && filed() == n {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(7200) {
            panic!("flood not processed: {} of {n} filed", filed());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(client);
    let peak_sampled = sampler.finish();
    let (hwm, rss) = memory_kib(d.pid());
    let valid_n = n.div_ceil(10);
    assert_eq!(s.entries("outbound/ABC").len(), valid_n, "responses in outbound/ABC");
    assert_eq!(s.entries("archive").len(), valid_n);
    assert_eq!(
        s.entries("rejected").len(),
        3 * (n - valid_n),
        "rejected/: input, .resp, .why"
    );
    // Exactly one response per input, in the right place (names listed once:
    // reading every response per input would be quadratic).
    let mut answered: std::collections::HashMap<String, Vec<std::path::PathBuf>> = Default::default();
    for f in s.entries("outbound/ABC") {
        let input = f[21..].strip_suffix(".resp").unwrap().to_string();
        answered
            .entry(input)
            .or_default()
            .push(s.root.join("outbound/ABC").join(&f));
    }
    for f in s.entries("rejected") {
        if let Some(input) = f.strip_suffix(".resp") {
            answered
                .entry(input.to_string())
                .or_default()
                .push(s.root.join("rejected").join(&f));
        }
    }
    assert_eq!(answered.len(), n, "inputs answered");
    for i in 0..n {
        let v = answered
            .get(&name(i))
            .unwrap_or_else(|| panic!("no response to {}", name(i)));
        assert_eq!(v.len(), 1, "{}: {v:?}", name(i));
        assert_eq!(
            v[0].starts_with(s.root.join("outbound")),
            i % 10 == 0,
            "{}: {v:?}",
            name(i)
        );
        if i % (n / 200).max(1) == 0 || i % (n / 200).max(1) == 1 {
            let text = String::from_utf8_lossy(&std::fs::read(&v[0]).unwrap()).into_owned();
            if i % 10 == 0 {
                assert_eq!(to_crlf(text.as_bytes()), want, "{}", name(i));
            } else {
                assert!(text.contains("X03"), "{}: {text}", name(i));
            }
        }
    }
    let journal = s.journal();
    let file_lines = journal.iter().filter(|l| !l.contains(" claim=tcp-")).count();
    assert_eq!(file_lines, n, "journal lines of the files");
    let mut sorted = latencies.clone();
    let p50 = percentile(&mut sorted, 50);
    let p99 = percentile(&mut sorted, 99);
    let worst = *sorted.last().unwrap();
    eprintln!(
        "file flood: {n} files ({valid_n} queries, {} junk) renamed into inbound/abi in {dropped:.2?}, all answered \
         and filed in {took:.2?} ({:.0} files/s); a TCP client meanwhile: {} answers, p50 {p50:.2?}, p99 {p99:.2?}, \
         max {worst:.2?}; daemon VmHWM {} MiB, VmRSS {} MiB (sampled max {} MiB)",
        n - valid_n,
        n as f64 / took.as_secs_f64(),
        latencies.len(),
        hwm / 1024,
        rss / 1024,
        peak_sampled / 1024
    );
    // Served meanwhile: no answer waited anything like the whole flood.
    assert!(
        worst < Duration::from_secs(2) && worst < took / 4,
        "the client waited {worst:?} during a flood of {took:?}"
    );
    // Bounded: the flood is not held in memory (a few hundred bytes per waiting name at most).
    let bound_mib = 96 + (n as u64 * 400) / (1 << 20);
    assert!(hwm / 1024 < bound_mib, "VmHWM {} MiB over {bound_mib} MiB", hwm / 1024);
    assert!(d.terminate(Duration::from_secs(60)).success());
}

/// Many connections at once, each with a batch in flight, plus connections
/// past `max_connections`: the extra ones are closed at once and logged,
/// the others each get exactly their answer, a probe is served meanwhile,
/// and memory stays bounded.
#[test]
fn flood_of_concurrent_connections() {
    let n = size(200, 1_000);
    let spare = 4;
    let extra = 20;
    let limit = raise_nofile(2 * (n + spare + extra) as u64 + 256);
    assert!(
        limit >= (n + spare + extra) as u64 + 128,
        "descriptor limit {limit} too low for {n} connections"
    );
    let s = spool();
    let want = want_answer(&s);
    let mut d = s.start(
        &["--listen", "127.0.0.1:0"],
        &[("ECERTD_MAX_CONNECTIONS", &(n + spare).to_string())],
    );
    let addr = d.addr("TCP endpoint listening");
    let sampler = Sampler::start(d.pid());
    // A burst: 8 threads connecting at once. Each connection is complete
    // when the kernel has it in the listen queue; a queue shorter than the
    // burst drops SYNs, and the client retries only after a second.
    let started = Instant::now();
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let burst: Vec<_> = (0..8)
        .map(|t| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                (t..n)
                    .step_by(8)
                    .map(|i| {
                        let at = Instant::now();
                        let c = connect(addr);
                        (i, c, at.elapsed())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<(usize, TcpStream, Duration)> = burst.into_iter().flat_map(|t| t.join().unwrap()).collect();
    all.sort_by_key(|(i, _, _)| *i);
    let connected = started.elapsed();
    let slowest_connect = all.iter().map(|(_, _, t)| *t).max().unwrap();
    assert!(
        slowest_connect < Duration::from_millis(900),
        "a connect took {slowest_connect:?}: SYNs dropped (listen backlog shorter than max_connections?)"
    );
    let mut conns: Vec<TcpStream> = all.into_iter().map(|(_, c, _)| c).collect();
    // The daemon holds them all (accepted and counted).
    wait_until(Duration::from_secs(30), "connections accepted", || {
        open_fds(d.pid()) >= n
    });
    // Served meanwhile.
    let probe_took = probe(addr, &want);
    // Fill the spare slots (once the probe's is given back), then go past the limit.
    std::thread::sleep(Duration::from_millis(500));
    let mut held: Vec<TcpStream> = (0..spare).map(|_| connect(addr)).collect();
    for c in held.iter_mut() {
        assert!(
            !closed_within(c, Duration::from_millis(200)),
            "a connection within the limit was closed"
        );
    }
    let mut refused = 0;
    for _ in 0..extra {
        let mut c = connect(addr);
        if closed_within(&mut c, Duration::from_secs(5)) {
            refused += 1;
        }
    }
    assert_eq!(refused, extra, "connections past the limit not closed");
    let logged = wait_logs(
        &d,
        "TCP connection refused: too many connections",
        extra,
        Duration::from_secs(10),
        |_| true,
    );
    assert_eq!(logged.len(), extra);
    assert_eq!(logged[0]["level"], "WARN");
    // Every held connection sends its batch at once, then reads its answer.
    let sent = Instant::now();
    for (i, c) in conns.iter_mut().enumerate() {
        c.write_all(query_ref(&format!("FLOOD-{i}")).as_bytes()).unwrap();
    }
    let mut answered = 0;
    for (i, c) in conns.iter_mut().enumerate() {
        let got = read_batches(c, 1).unwrap_or_else(|e| panic!("connection {i}: {e}"));
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("A1001ABC      031526     EZ"),
            "connection {i}: {text}"
        );
        assert!(
            text.contains(&format!("FLOOD-{i} ")),
            "connection {i} got another's answer: {text}"
        );
        answered += 1;
    }
    let all_answered = sent.elapsed();
    let peak_sampled = sampler.finish();
    let (hwm, rss) = memory_kib(d.pid());
    assert_eq!(answered, n);
    // Nothing more comes on any connection (exactly one answer each).
    for (i, c) in conns.iter_mut().enumerate().step_by((n / 20).max(1)) {
        c.set_nonblocking(true).unwrap();
        let mut b = [0u8; 16];
        match c.read(&mut b) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("connection {i}: unexpected {other:?}"),
        }
    }
    wait_until(Duration::from_secs(30), "journal lines", || {
        s.journal().iter().filter(|l| l.contains(" claim=tcp-")).count() == n + 1
    });
    drop(conns);
    drop(held);
    // The slots come back.
    std::thread::sleep(Duration::from_millis(300));
    probe(addr, &want);
    eprintln!(
        "TCP flood: {n} connections opened in {connected:.2?} (slowest connect {slowest_connect:.2?}; +{spare} spare, {extra} past the limit refused); \
         probe meanwhile {probe_took:.2?}; {n} batches answered in {all_answered:.2?}; daemon VmHWM {} MiB, \
         VmRSS {} MiB (sampled max {} MiB)",
        hwm / 1024,
        rss / 1024,
        peak_sampled / 1024
    );
    let bound_mib = 64 + (n as u64 * 96) / 1024;
    assert!(hwm / 1024 < bound_mib, "VmHWM {} MiB over {bound_mib} MiB", hwm / 1024);
    assert!(d.terminate(Duration::from_secs(60)).success());
}

/// A client dripping its batch one byte at a time gets its answer; clients
/// meanwhile are served at full speed; a drip slower than a line per
/// `idle_timeout_ms` is closed; memory stays small.
#[test]
fn slow_drip_client_does_not_hold_others_up() {
    let s = spool();
    let want = want_answer(&s);
    let mut d = s.start(&["--listen", "127.0.0.1:0"], &[("ECERTD_IDLE_TIMEOUT_MS", "3000")]);
    let addr = d.addr("TCP endpoint listening");
    let bytes = query().into_bytes();
    let drip = {
        let (bytes, want) = (bytes.clone(), want.clone());
        std::thread::spawn(move || {
            let mut c = connect(addr);
            let start = Instant::now();
            for b in &bytes {
                c.write_all(std::slice::from_ref(b)).unwrap();
                std::thread::sleep(Duration::from_millis(8));
            }
            let got = read_batches(&mut c, 1).expect("drip answer");
            assert_eq!(got, want, "drip answer");
            start.elapsed()
        })
    };
    // A drip too slow: one byte per 100 ms never completes a line within 3 s.
    let too_slow = std::thread::spawn(move || {
        let mut c = connect(addr);
        let start = Instant::now();
        for b in b"A1001ABCPWABC1031526     EC".iter().cycle().take(80) {
            if c.write_all(std::slice::from_ref(b)).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            if start.elapsed() > Duration::from_secs(6) {
                break;
            }
        }
        let closed = closed_within(&mut c, Duration::from_secs(3));
        (closed, start.elapsed())
    });
    let start = Instant::now();
    let mut fast = Vec::new();
    while start.elapsed() < Duration::from_secs(3) {
        fast.push(probe(addr, &want));
    }
    let drip_took = drip.join().unwrap();
    let (closed, slow_took) = too_slow.join().unwrap();
    assert!(closed, "a drip slower than a line per idle timeout was not closed");
    let mut sorted = fast.clone();
    let worst = *sorted.iter().max().unwrap();
    let p50 = percentile(&mut sorted, 50);
    let (hwm, _) = memory_kib(d.pid());
    eprintln!(
        "slow drip: {} bytes one at a time answered after {drip_took:.2?}; {} other clients served meanwhile \
         (p50 {p50:.2?}, max {worst:.2?}); a drip of 1 byte/100 ms closed after {slow_took:.2?}; VmHWM {} MiB",
        bytes.len(),
        fast.len(),
        hwm / 1024
    );
    assert!(drip_took >= Duration::from_millis(8 * bytes.len() as u64));
    assert!(fast.len() >= 10, "only {} clients served during the drip", fast.len());
    assert!(
        worst < Duration::from_secs(2),
        "a client waited {worst:?} behind the drip"
    );
    let closed_line = wait_logs(&d, "TCP connection closed", 1, Duration::from_secs(10), |v| {
        v["fields"]["reason"] == "idle_timeout"
    });
    assert_eq!(closed_line[0]["level"], "WARN");
    assert!(hwm / 1024 < 64, "VmHWM {} MiB", hwm / 1024);
    assert!(d.terminate(Duration::from_secs(20)).success());
}

/// A client that sends a record every 200 ms, each well inside the idle
/// timeout, but never its batch's Z record, is closed at the batch deadline
/// (`batch_timeout_ms`) instead of holding its connection slot for ever. A
/// batch of the same connection answered in time before does not count
/// against the next, and other clients are served meanwhile.
#[test]
fn endless_batch_is_closed_at_the_batch_deadline() {
    let s = spool();
    let want = want_answer(&s);
    let mut d = s.start(
        &["--listen", "127.0.0.1:0"],
        &[("ECERTD_IDLE_TIMEOUT_MS", "3000"), ("ECERTD_BATCH_TIMEOUT_MS", "1500")],
    );
    let addr = d.addr("TCP endpoint listening");
    let lines: Vec<String> = query().split_inclusive('\n').map(str::to_string).collect();
    let mut c = connect(addr);
    // A batch whose records come 200 ms apart, its Z within the deadline.
    for l in &lines {
        c.write_all(l.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(read_batches(&mut c, 1).expect("answer in time"), want);
    // Then records 200 ms apart for ever, never the Z.
    let start = Instant::now();
    let mut served = 0;
    let closed_after = loop {
        let l = &lines[served % (lines.len() - 1)];
        if c.write_all(l.as_bytes()).is_err() || closed_within(&mut c, Duration::from_millis(200)) {
            break start.elapsed();
        }
        let waited = probe(addr, &want);
        assert!(
            waited < Duration::from_secs(1),
            "a client waited {waited:?} behind the endless batch"
        );
        served += 1;
        assert!(
            start.elapsed() < Duration::from_secs(6),
            "an endless batch was not closed"
        );
    };
    eprintln!(
        "endless batch: closed {closed_after:.2?} after its first record; {served} other clients served meanwhile"
    );
    assert!(
        closed_after >= Duration::from_millis(1400),
        "closed after {closed_after:?}"
    );
    assert!(
        closed_after < Duration::from_millis(2900),
        "closed after {closed_after:?}"
    );
    let closed = wait_logs(&d, "TCP connection closed", 1, Duration::from_secs(10), |v| {
        v["fields"]["reason"] == "batch_timeout"
    });
    assert_eq!(closed[0]["level"], "WARN");
    assert_eq!(closed[0]["fields"]["batches"], 1);
    assert!(d.terminate(Duration::from_secs(20)).success());
}
