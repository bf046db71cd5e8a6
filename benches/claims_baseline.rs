//! The "obvious approach" to applying certificate claims (`common/baseline.rs`),
//! as the baseline of bench/run.sh's claims figure. Not part of the product
//! (it may use rusqlite directly; `ecertd` itself never does outside `store`).
//! Reads the AE file naively (`common/naive_ae.rs`).
//!
//! ```text
//! cargo bench --bench claims_baseline -- --db STORE.db --prepare
//! cargo bench --bench claims_baseline -- --db COPY.db --input ae-0001.txt
//! ```
//! The first adds the baseline's own tables to a store (once, untimed;
//! `--page-size 4096` also rebuilds the store on pages of that size, the
//! obvious approach's own, where ecertd creates its stores on 16 KiB); the
//! second prints one line: `claims_accepted=N claims_refused=N entries=N ...
//! seconds=S claims_per_s=R`.

#[path = "common/baseline.rs"]
mod baseline;
#[path = "common/naive_ae.rs"]
mod naive_ae;

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;

#[derive(Parser)]
#[command(about = "Baseline: per-claim SELECT, UPDATE, INSERT with a commit every N claims")]
struct Args {
    /// A copy of an ecertd store holding the certificates (modified!)
    #[arg(long)]
    db: PathBuf,
    /// The AE file
    #[arg(long, required_unless_present = "prepare")]
    input: Option<PathBuf>,
    /// Only add the baseline's tables to the store, then exit
    #[arg(long)]
    prepare: bool,
    /// With --prepare: rebuild the store on pages of this size (VACUUM)
    #[arg(long, requires = "prepare")]
    page_size: Option<u32>,
    /// Claims per transaction
    #[arg(long, default_value_t = 1000)]
    commit_every: u64,
    /// Date of the usage rows, CCYYMMDD
    #[arg(long, default_value_t = 20260315)]
    date: u32,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; ignore it.
    let args = Args::parse_from(std::env::args().filter(|a| a != "--bench"));
    let Some(input) = args.input.filter(|_| !args.prepare) else {
        baseline::prepare(&args.db)?;
        if let Some(size) = args.page_size {
            let conn = rusqlite::Connection::open(&args.db)?;
            // A WAL database keeps its page size: out of WAL for the rebuild.
            conn.execute_batch(&format!(
                "PRAGMA journal_mode = DELETE; PRAGMA page_size = {size}; VACUUM; PRAGMA journal_mode = WAL;"
            ))?;
            let got: u32 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            if got != size {
                return Err(format!("page size {got} after the rebuild, not {size}").into());
            }
        }
        return Ok(());
    };
    let start = Instant::now();
    let input = BufReader::with_capacity(1 << 20, File::open(input)?);
    let counts = baseline::run(&args.db, input, args.commit_every, args.date)?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "claims_accepted={} claims_refused={} entries={} entries_accepted={} commits={} seconds={:.3} claims_per_s={:.0}",
        counts.claims_accepted,
        counts.claims_refused,
        counts.entries,
        counts.accepted_entries,
        counts.commits,
        secs,
        counts.claims_accepted as f64 / secs
    );
    Ok(())
}
