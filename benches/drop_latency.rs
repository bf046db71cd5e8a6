//! Drop-to-response latency of a running `ecertd serve` (bench/run.sh,
//! figure "latency").
//!
//! Generates small AE files (one batch, one entry summary of broker ABC
//! claiming 1 to `--max-lines` certificates of the population), then drops
//! them one at a time into `<root>/inbound/abi/` at `--rate` files per
//! second on an open-loop schedule (file i at t0 + i/rate, whatever the
//! daemon is doing): written as `.lat-NNNNNN.txt`, then renamed to
//! `lat-NNNNNN.txt`. Watches `<root>/outbound/` (and `rejected/`) with
//! inotify (the `notify` crate); the latency of a file is from its rename to
//! the first event naming a response whose name ends with `lat-NNNNNN.txt.resp`
//! (the final name: the daemon's dot-named temporary files are ignored, so
//! the clock stops when the response is renamed into place, after its sync).
//! Responses that the watcher missed are found by a final directory scan and
//! timed by their modification time. The first `--warmup` files (sender
//! authentication, daemon start-up) are dropped one at a time, each after
//! the previous response: they are not in the percentiles, but give the
//! idle service time (`idle_p50_ms`). `served_per_s` is the timed files
//! over the time from the first drop to the last response: below `--rate`,
//! the daemon did not keep up and latency grows with the run's length.
//!
//! ```text
//! cargo bench --bench drop_latency -- --root SPOOL --certificates 1000000 --per-ior 1000 --count 3000 --rate 100
//! ```
//! prints `files=N responses=N missing=N rejected=N p50_ms=… p90_ms=… p99_ms=… max_ms=… mean_ms=…
//! rate_per_s=… served_per_s=… idle_p50_ms=… late_drops=N timed_by_scan=N`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use ecertd::gen::{self, EntryMix, Population, Rng};
use notify::{RecursiveMode, Watcher};

#[derive(Parser)]
struct Args {
    /// The daemon's spool root
    #[arg(long)]
    root: PathBuf,
    #[arg(long)]
    certificates: u64,
    #[arg(long, default_value_t = 1000)]
    per_ior: u64,
    /// Timed files
    #[arg(long, default_value_t = 1000)]
    count: u64,
    /// Files dropped first, one at a time, each awaited: the daemon's
    /// start-up, and its service time when idle (`idle_p50_ms`, first excluded)
    #[arg(long, default_value_t = 20)]
    warmup: u64,
    /// Files per second
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    #[arg(long, default_value_t = 10)]
    max_lines: u64,
    #[arg(long, default_value_t = 11)]
    seed: u64,
    /// Seconds to wait for the last responses
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Write every timed latency (ms), one a line, here
    #[arg(long)]
    samples: Option<PathBuf>,
}

/// The file index in a response name (`…lat-NNNNNN.txt.resp`). Dot-names
/// are the daemon's files being written (`.ecertd-tmp-…`), not yet responses:
/// a response counts once it is renamed into place.
fn index_of(path: &Path) -> Option<usize> {
    let name = path.file_name()?.to_str()?;
    if name.starts_with('.') {
        return None;
    }
    let name = name.strip_suffix(".resp")?;
    let at = name.rfind("lat-")?;
    name[at + 4..].strip_suffix(".txt")?.parse().ok()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Seen {
    /// Instant of the first event naming the response of file i.
    at: Vec<Option<Instant>>,
    rejected: Vec<bool>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse_from(std::env::args().filter(|a| a != "--bench"));
    let pop = Population {
        certificates: args.certificates,
        per_ior: args.per_ior,
        certified: 100_000_000_000,
    };
    let total = (args.warmup + args.count) as usize;
    let mut rng = Rng::new(args.seed);
    let files: Vec<Vec<u8>> = (0..total)
        .map(|i| {
            let mut buf = Vec::new();
            let mix = EntryMix {
                entries: 1,
                entries_per_batch: 1,
                max_lines: args.max_lines.max(1),
                refused_share: 0.0,
                claim: 100,
                first_number: 5_000_001 + i as u64,
            };
            gen::write_ae(&mut buf, &pop, &mix, &mut rng, &format!("LAT{}-{i}", args.seed)).map(|_| buf)
        })
        .collect::<Result<_, _>>()?;
    let inbound = args.root.join("inbound/abi");
    let outbound = args.root.join("outbound");
    let rejected = args.root.join("rejected");
    std::fs::create_dir_all(&outbound)?;
    if !inbound.is_dir() {
        return Err(format!("{} is not a directory (ecertd init?)", inbound.display()).into());
    }

    let seen = Arc::new(Mutex::new(Seen {
        at: vec![None; total],
        rejected: vec![false; total],
    }));
    let seen_w = Arc::clone(&seen);
    let rejected_w = rejected.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let now = Instant::now();
        let Ok(ev) = res else { return };
        let mut s = seen_w.lock().unwrap_or_else(|e| e.into_inner());
        for p in &ev.paths {
            if let Some(i) = index_of(p) {
                if i < s.at.len() && s.at[i].is_none() {
                    s.at[i] = Some(now);
                    if p.starts_with(&rejected_w) {
                        s.rejected[i] = true;
                    }
                }
            }
        }
    })?;
    watcher.watch(&outbound, RecursiveMode::Recursive)?;
    if rejected.is_dir() {
        watcher.watch(&rejected, RecursiveMode::NonRecursive)?;
    }

    let mut dropped_at: Vec<(Instant, SystemTime)> = Vec::with_capacity(total);
    let drop_file = |i: usize| -> std::io::Result<(Instant, SystemTime)> {
        let name = format!("lat-{i:06}.txt");
        let tmp = inbound.join(format!(".{name}"));
        std::fs::write(&tmp, &files[i])?;
        std::fs::rename(&tmp, inbound.join(&name))?;
        Ok((Instant::now(), SystemTime::now()))
    };
    let wait_for = |i: usize, limit: Duration| -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if seen.lock().unwrap_or_else(|e| e.into_inner()).at[i].is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    };
    // Warm-up: one at a time, each awaited (the first waits for the daemon).
    for i in 0..args.warmup as usize {
        dropped_at.push(drop_file(i)?);
        if !wait_for(i, Duration::from_secs(args.timeout)) {
            return Err(format!("no response to warm-up file {i} within {} s", args.timeout).into());
        }
    }
    // Timed: open loop at the given rate.
    let period = Duration::from_secs_f64(1.0 / args.rate.max(0.001));
    let t0 = Instant::now();
    let mut late = 0u64;
    for (k, i) in (args.warmup as usize..total).enumerate() {
        let due = t0 + period * k as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        } else if now - due > period {
            late += 1;
        }
        dropped_at.push(drop_file(i)?);
    }
    let drop_secs = t0.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    while Instant::now() < deadline {
        if seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .at
            .iter()
            .all(Option::is_some)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(watcher);

    // Anything the watcher missed: scan, and time by modification time.
    let mut by_scan = 0u64;
    let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
    let mut scanned: Vec<(usize, SystemTime, bool)> = Vec::new();
    let mut scan = |dir: &Path, is_rejected: bool| {
        let mut dirs = vec![dir.to_path_buf()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if let Some(i) = index_of(&p) {
                    if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
                        scanned.push((i, m, is_rejected));
                    }
                }
            }
        }
    };
    scan(&outbound, false);
    scan(&rejected, true);
    let mut latencies = Vec::with_capacity(args.count as usize);
    for (i, m, is_rejected) in scanned {
        if i < total && s.at[i].is_none() {
            let lat = m.duration_since(dropped_at[i].1).unwrap_or_default();
            s.at[i] = Some(dropped_at[i].0 + lat);
            s.rejected[i] = is_rejected;
            by_scan += 1;
        }
    }
    let mut missing = 0u64;
    let mut rejected_n = 0u64;
    for i in args.warmup as usize..total {
        match s.at[i] {
            Some(t) => latencies.push(t.saturating_duration_since(dropped_at[i].0).as_secs_f64() * 1e3),
            None => missing += 1,
        }
        if s.rejected[i] {
            rejected_n += 1;
        }
    }
    if let Some(p) = &args.samples {
        std::fs::write(p, latencies.iter().map(|l| format!("{l:.3}\n")).collect::<String>())?;
    }
    let mut idle: Vec<f64> = (1..args.warmup as usize)
        .filter_map(|i| s.at[i].map(|t| t.saturating_duration_since(dropped_at[i].0).as_secs_f64() * 1e3))
        .collect();
    idle.sort_by(|a, b| a.total_cmp(b));
    let last_response = (args.warmup as usize..total).filter_map(|i| s.at[i]).max();
    let served = last_response.map(|t| args.count as f64 / t.saturating_duration_since(t0).as_secs_f64());
    let mean = latencies.iter().sum::<f64>() / latencies.len().max(1) as f64;
    latencies.sort_by(|a, b| a.total_cmp(b));
    println!(
        "files={} responses={} missing={missing} rejected={rejected_n} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2} mean_ms={:.2} rate_per_s={:.1} served_per_s={:.1} idle_p50_ms={:.2} late_drops={late} timed_by_scan={by_scan}",
        args.count,
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 90.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN),
        mean,
        args.count as f64 / drop_secs,
        served.unwrap_or(f64::NAN),
        percentile(&idle, 50.0),
    );
    Ok(())
}
