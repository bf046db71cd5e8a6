//! `cargo bench`: the parse and claims figures of bench/run.sh at small
//! sizes, self-contained. The workload is generated (ecertd's `gen`, fixed
//! seeds) into a temporary directory; every figure is the median of `RUNS`
//! runs, next to its baseline measured in the same run. The full sizes,
//! the latency, query and memory figures, and the README's reference numbers
//! come from `bash bench/run.sh`.
//!
//! - parse: `diagnose::check_stream` (what `ecertd check` runs) over an AE
//!   stream in memory, against counting its newlines with `memchr` (the
//!   in-process `wc -l`).
//! - claims: `Engine::process_stream` (what `ecertd process` runs) against a
//!   store of `CERTIFICATES` certificates filed through the pipeline, with
//!   and without the look-ahead, against the obvious approach
//!   (`common/baseline.rs`) and the store's floor (`common/floor.rs`) on
//!   copies of the same store. Every run starts from the same store file.
//!
//! It fails (exit 1) when the programs disagree on what they accept, or the
//! look-ahead changes a byte of the responses.

#[path = "common/baseline.rs"]
mod baseline;
#[path = "common/floor.rs"]
mod floor;
#[path = "common/naive_ae.rs"]
mod naive_ae;

use std::path::{Path, PathBuf};
use std::time::Instant;

/// The allocator of the `ecertd` binary (src/main.rs), so that the figures
/// are `ecertd`'s, allocator included.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use ecertd::diagnose;
use ecertd::engine::{Engine, Session, GROUP_RECORDS};
use ecertd::envelope::{Channel, SenderKind};
use ecertd::gen::{self, EntryMix, Population, Rng, COUNTRIES};
use ecertd::model::Sender;
use ecertd::store::Store;
use ecertd::types::{Country, Date};

const RUNS: usize = 5;
const CERTIFICATES: u64 = 100_000;
const CLAIM_ENTRIES: u64 = 5_000;
const PARSE_BYTES: u64 = 64 << 20;
/// Business date of the generated workload, as `ecertd-gen` and bench/run.sh.
const DATE: u32 = 20260315;

type Error = Box<dyn std::error::Error>;

fn business_date() -> Date {
    Date::new(2026, 3, 15).expect("a valid date")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) / 2]
}

/// The median seconds of `RUNS` runs of `f`, after `setup` (untimed) each.
fn time<T>(
    mut setup: impl FnMut() -> Result<(), Error>,
    mut f: impl FnMut() -> Result<T, Error>,
) -> Result<(f64, T), Error> {
    let mut secs = Vec::with_capacity(RUNS);
    let mut last = None;
    for _ in 0..RUNS {
        setup()?;
        let start = Instant::now();
        let out = f()?;
        secs.push(start.elapsed().as_secs_f64());
        last = Some(out);
    }
    Ok((median(secs), last.expect("RUNS > 0")))
}

fn population() -> Population {
    Population {
        certificates: CERTIFICATES,
        per_ior: 1000,
        certified: 100_000_000_000,
    }
}

fn ae(entries: u64, seed: u64, tag: &str) -> Result<Vec<u8>, Error> {
    let mix = EntryMix {
        entries,
        entries_per_batch: 100,
        max_lines: 10,
        refused_share: 0.05,
        claim: 100,
        first_number: 1,
    };
    let mut out = Vec::new();
    gen::write_ae(&mut out, &population(), &mix, &mut Rng::new(seed), tag)?;
    Ok(out)
}

/// A store file holding the generated certificates, filed as GT batches
/// through the engine, with the generated senders; closed, so the file
/// alone is the whole store.
fn claims_store(path: &Path) -> Result<(), Error> {
    let mut store = Store::open(path)?;
    let countries = COUNTRIES.iter().map(|&(c, id)| (id, SenderKind::Country, Some(c)));
    for (id, kind, country) in countries.chain([("ABC", SenderKind::Broker, None)]) {
        let sender = Sender {
            id: id.to_string(),
            kind,
            country: country.and_then(|c| Country::parse(c.as_bytes())),
            filers: Vec::new(),
        };
        store.add_sender(&sender, &gen::password(id))?;
    }
    let mut engine = Engine::new(&mut store, business_date());
    for c in 0..COUNTRIES.len() {
        let mut gt = Vec::new();
        gen::write_gt(&mut gt, &population(), c, 1000, "PIPE")?;
        engine.process_stream(&mut Session::new(Channel::Ecert), &gt[..], 256, |_| Ok(()))?;
    }
    Ok(())
}

fn restore(snapshot: &Path, work: &Path) -> Result<(), Error> {
    std::fs::copy(snapshot, work)?;
    for ext in ["-wal", "-shm"] {
        let mut p = work.as_os_str().to_owned();
        p.push(ext);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    Ok(())
}

/// Responses of `ecertd process` on `input` against the store at `db`.
fn process(db: &Path, input: &[u8], lookahead: bool) -> Result<Vec<u8>, Error> {
    let mut store = Store::open(db)?;
    let mut engine = Engine::new(&mut store, business_date());
    if lookahead {
        engine = engine.with_lookahead();
    }
    let mut out = Vec::new();
    engine.process_stream(&mut Session::new(Channel::Abi), input, 256, |r| {
        out.extend_from_slice(&r.response);
        Ok(())
    })?;
    Ok(out)
}

fn accepted_claims(responses: &[u8]) -> u64 {
    responses
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"E1 IC00"))
        .count() as u64
}

struct Table(Vec<String>);

impl Table {
    fn row(&mut self, figure: &str, value: String, baseline: String, ratio: f64) {
        self.0.push(format!("| {figure} | {value} | {baseline} | {ratio:.2} |"));
    }
}

fn main() -> Result<(), Error> {
    let mut table = Table(Vec::new());

    // Parse: entries enough for PARSE_BYTES (about 3 records per line and 2
    // per entry, 81 bytes each, as `ecertd-gen ae --bytes` estimates).
    let big = ae(PARSE_BYTES / (81 * (2 + 3 * 11 / 2)) + 1, 2, "BIG")?;
    let mb = big.len() as f64 / 1e6;
    let (check_s, _) = time(|| Ok(()), || Ok(diagnose::check_stream(&big[..], |_| Ok(()))?))?;
    let (wc_s, lines) = time(|| Ok(()), || Ok(memchr::memchr_iter(b'\n', &big).count()))?;
    table.row(
        &format!("parse: `check_stream`, {mb:.0} MB AE in memory, {lines} records"),
        format!("{:.0} MB/s", mb / check_s),
        format!("{:.0} MB/s (`memchr` newline count)", mb / wc_s),
        wc_s / check_s,
    );

    // Claims.
    let dir = tempfile::tempdir()?;
    let snapshot = dir.path().join("claims.db");
    let work = dir.path().join("work.db");
    claims_store(&snapshot)?;
    baseline::prepare(&snapshot)?;
    let input = ae(CLAIM_ENTRIES, 1, "CLM")?;
    let restore_work = || restore(&snapshot, &work);
    let (ours_s, ours) = time(restore_work, || process(&work, &input, true))?;
    let (one_s, one) = time(restore_work, || process(&work, &input, false))?;
    let (base_s, base) = time(restore_work, || baseline::run(&work, &input[..], 1000, DATE))?;
    let mut entries = Vec::new();
    naive_ae::for_each_entry(&input[..], |e| -> std::io::Result<()> {
        entries.push(e);
        Ok(())
    })?;
    let mut floors = Vec::new();
    for _ in 0..RUNS {
        restore_work()?;
        floors.push(floor::run(&work, &entries, GROUP_RECORDS, false, DATE)?);
    }
    let claims = accepted_claims(&ours);
    if ours != one {
        return Err("the look-ahead changed the responses".into());
    }
    if base.claims_accepted != claims || floors.iter().any(|f| f.accepted != claims) {
        return Err(format!(
            "accepted claims differ: ecertd {claims}, baseline {}, floor {}",
            base.claims_accepted, floors[0].accepted
        )
        .into());
    }
    let rate = |s: f64| claims as f64 / s;
    let base_rate = rate(base_s);
    table.row(
        &format!("claims: `process_stream`, {claims} claims, {CERTIFICATES} certificates, sync=FULL"),
        format!("{:.0} claims/s", rate(ours_s)),
        format!("{base_rate:.0} claims/s (obvious approach)"),
        base_s / ours_s,
    );
    table.row(
        "claims, one thread (no look-ahead)",
        format!("{:.0} claims/s", rate(one_s)),
        format!("{base_rate:.0} claims/s (obvious approach)"),
        base_s / one_s,
    );
    let floor_one = median(floors.iter().map(|f| f.seconds()).collect());
    let floor_two = median(floors.iter().map(|f| f.two_threads_seconds()).collect());
    table.row(
        "claims floor: the store's statements alone, one thread (ratio: ecertd / floor)",
        format!("{:.0} claims/s", rate(floor_one)),
        format!("{:.0} claims/s (ecertd)", rate(ours_s)),
        floor_one / ours_s,
    );
    table.row(
        "claims floor, reads beside write + commit (ratio: ecertd / floor)",
        format!("{:.0} claims/s", rate(floor_two)),
        format!("{:.0} claims/s (ecertd)", rate(ours_s)),
        floor_two / ours_s,
    );

    println!("ecertd pipeline bench: medians of {RUNS} runs, baselines from the same run\n");
    println!("| figure | value | baseline | ratio |\n|---|---|---|---|");
    for r in &table.0 {
        println!("{r}");
    }
    Ok(())
}
