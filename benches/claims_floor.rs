//! The floor under bench/run.sh's claims figure (`common/floor.rs`): only the
//! SQLite work that ecertd's ledger does for an AE file, with nothing around
//! it. Not part of the product (it may use rusqlite directly; `ecertd`
//! itself never does outside `store`).
//!
//! The entry summaries are read (`common/naive_ae.rs`) into memory before the
//! clock starts: no parsing, no rules beyond the IOR and balance checks, no
//! rendering, no entry rows, no stored responses are timed. The sum of the
//! phases is what one thread pays at least for the store's part of this
//! workload; the larger of "read" and "write + commit" is what two threads pay
//! at least when reading runs beside writing, as ecertd's look-ahead does.
//!
//! ```text
//! cargo bench --bench claims_floor -- --db COPY.db --input ae-0001.txt [--unordered-events]
//! ```
//! prints one line: `claims_accepted=N ... seconds=S claims_per_s=R two_threads_claims_per_s=R`.

#[path = "common/floor.rs"]
mod floor;
#[path = "common/naive_ae.rs"]
mod naive_ae;

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(about = "Floor: the store's statements of the claims workload, timed alone")]
struct Args {
    /// A copy of an ecertd store holding the certificates (modified!)
    #[arg(long)]
    db: PathBuf,
    /// The AE file
    #[arg(long)]
    input: PathBuf,
    /// Records per transaction (as `ecertd process`: `engine::GROUP_RECORDS`)
    #[arg(long, default_value_t = ecertd::engine::GROUP_RECORDS)]
    group_records: usize,
    /// Date of the usage events, CCYYMMDD
    #[arg(long, default_value_t = 20260315)]
    date: u32,
    /// Append the events to `floor_events` (rowid order, no index) instead
    /// of ecertd's `usage_events` (rowid order under a unique index)
    #[arg(long)]
    unordered_events: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; ignore it.
    let args = Args::parse_from(std::env::args().filter(|a| a != "--bench"));
    let mut entries = Vec::new();
    naive_ae::for_each_entry(
        BufReader::with_capacity(1 << 20, File::open(&args.input)?),
        |e| -> std::io::Result<()> {
            entries.push(e);
            Ok(())
        },
    )?;
    let t = floor::run(&args.db, &entries, args.group_records, args.unordered_events, args.date)?;
    println!(
        "claims_accepted={} claims_refused={} events={} certificates={} groups={} read_s={:.3} write_s={:.3} \
         commit_s={:.3} seconds={:.3} claims_per_s={:.0} two_threads_claims_per_s={:.0}",
        t.accepted,
        t.refused,
        t.events,
        t.certificates,
        t.groups,
        t.read.as_secs_f64(),
        t.write.as_secs_f64(),
        t.commit.as_secs_f64(),
        t.seconds(),
        t.accepted as f64 / t.seconds(),
        t.accepted as f64 / t.two_threads_seconds(),
    );
    Ok(())
}
