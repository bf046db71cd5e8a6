//! In-process latency of EC usage queries (bench/run.sh, figure "queries").
//!
//! Opens the store as `ecertd` does (WAL, synchronous=FULL), and times
//! `Engine::process_batch` on one EC batch of one C1 "I" query per
//! iteration: an IOR drawn at random (deterministic seed) from the
//! population `ecertd-gen load` wrote, so with `--per-ior 1000` every answer
//! lists 1,000 certificates with their usage events. Process start-up and
//! password hashing are not counted: the session authenticates broker ABC
//! during the warm-up iterations and keeps its credentials. Each batch has
//! its own reference, so none is answered from the duplicate store; the
//! batch is remembered in the same committed transaction, as in production.
//!
//! ```text
//! cargo bench --bench query_latency -- --db FILE --certificates 10000000 --per-ior 1000 --queries 200
//! ```
//! prints `queries=N p50_ms=… p90_ms=… p99_ms=… max_ms=… mean_ms=… certificates_per_answer=… records_per_answer=…`.

use std::path::PathBuf;
use std::time::Instant;

/// The allocator of the `ecertd` binary (src/main.rs), so that the figure is
/// the daemon's, allocator included.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use ecertd::engine::{Engine, Outcome, Session};
use ecertd::envelope::Channel;
use ecertd::gen::{self, Population, Rng};
use ecertd::record::BatchReader;
use ecertd::store::Store;
use ecertd::types::Date;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    db: PathBuf,
    /// Population of the store (as given to `ecertd-gen load`)
    #[arg(long)]
    certificates: u64,
    #[arg(long, default_value_t = 1000)]
    per_ior: u64,
    /// Timed queries
    #[arg(long, default_value_t = 200)]
    queries: u64,
    /// Untimed queries first (authentication, cache warm-up)
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[arg(long, default_value = "2026-03-15")]
    business_date: String,
    /// Write every timed latency (ms), one a line, here
    #[arg(long)]
    samples: Option<PathBuf>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse_from(std::env::args().filter(|a| a != "--bench"));
    let date = Date::parse_iso(&args.business_date).ok_or("--business-date: YYYY-MM-DD")?;
    let pop = Population {
        certificates: args.certificates,
        per_ior: args.per_ior,
        certified: 100_000_000_000,
    };
    let mut store = Store::open(&args.db)?;
    let mut engine = Engine::new(&mut store, date);
    let mut session = Session::new(Channel::Abi);
    let mut rng = Rng::new(args.seed);
    let tag = format!("QL{}-{}", args.seed, std::process::id() % 100_000);
    let mut samples = Vec::with_capacity(args.queries as usize);
    let (mut certs, mut records) = (0u64, 0u64);
    for i in 0..args.warmup + args.queries {
        let mut input = Vec::new();
        gen::write_ec(&mut input, &pop, 1, &mut rng, &format!("{tag}-{i}"))?;
        let raw = BatchReader::new(&input[..]).next_batch()?.ok_or("no batch generated")?;
        let t = Instant::now();
        let r = engine.process_batch(&mut session, &raw, None)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if r.outcome != Outcome::Processed || r.accepted != 1 {
            return Err(format!(
                "query {i} was not answered: {:?}\n{}",
                r.outcome,
                String::from_utf8_lossy(&r.response[..r.response.len().min(800)])
            )
            .into());
        }
        if i >= args.warmup {
            samples.push(ms);
            certs += r
                .response
                .split(|&b| b == b'\n')
                .filter(|l| l.starts_with(b"C2"))
                .count() as u64;
            records += r.response.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count() as u64;
        }
    }
    if let Some(p) = &args.samples {
        std::fs::write(p, samples.iter().map(|s| format!("{s:.3}\n")).collect::<String>())?;
    }
    let n = samples.len().max(1) as f64;
    let mean = samples.iter().sum::<f64>() / n;
    samples.sort_by(|a, b| a.total_cmp(b));
    println!(
        "queries={} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2} mean_ms={:.2} certificates_per_answer={:.0} records_per_answer={:.0}",
        samples.len(),
        percentile(&samples, 50.0),
        percentile(&samples, 90.0),
        percentile(&samples, 99.0),
        samples.last().copied().unwrap_or(f64::NAN),
        mean,
        certs as f64 / n,
        records as f64 / n
    );
    Ok(())
}
