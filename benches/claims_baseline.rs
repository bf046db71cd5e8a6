//! The "obvious approach" to applying certificate claims, as the baseline of
//! bench/run.sh's claims figure. Not part of the product (it may use rusqlite
//! directly; `ecertd` itself never does outside `store`).
//!
//! Reads an AE file naively (`common/naive_ae.rs`) and, against a copy
//! of an ecertd store, per claim: SELECTs the certificate by country and
//! number, then, when every claim of the entry can be honoured (certificate
//! on file, naming the entry's IOR, enough left), per claim UPDATEs the
//! certificate's `used` and INSERTs a usage row; COMMIT every 1,000 claims.
//! An entry with a claim that cannot be honoured is refused whole, as ecertd
//! does, so the accepted-claim counts of both are comparable.
//!
//! The store is opened the way an obvious program would: WAL and
//! `synchronous=FULL` (the same durability as ecertd), everything else left
//! at SQLite's defaults. The usage rows go to a table of the obvious shape
//! (`bench_usage`, rowid table plus an index by certificate), created in
//! the copy if missing, so the baseline does not depend on how ecertd lays
//! out its own usage events.
//!
//! ```text
//! cargo bench --bench claims_baseline -- --db COPY.db --input ae-0001.txt
//! ```
//! prints one line: `claims_accepted=N claims_refused=N entries=N ... seconds=S claims_per_s=R`.

#[path = "common/naive_ae.rs"]
mod naive_ae;

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use naive_ae::Entry;
use rusqlite::{params, Connection, OptionalExtension};

#[derive(Parser)]
#[command(about = "Baseline: per-claim SELECT, UPDATE, INSERT with a commit every N claims")]
struct Args {
    /// A copy of an ecertd store holding the certificates (modified!)
    #[arg(long)]
    db: PathBuf,
    /// The AE file
    #[arg(long)]
    input: PathBuf,
    /// Claims per transaction
    #[arg(long, default_value_t = 1000)]
    commit_every: u64,
    /// Date of the usage rows, CCYYMMDD
    #[arg(long, default_value_t = 20260315)]
    date: u32,
}

struct Counts {
    entries: u64,
    accepted_entries: u64,
    claims_accepted: u64,
    claims_refused: u64,
    commits: u64,
    since_commit: u64,
}

fn apply(conn: &Connection, e: &Entry, args: &Args, c: &mut Counts) -> rusqlite::Result<()> {
    c.entries += 1;
    // Per claim: SELECT the certificate.
    let mut found = Vec::with_capacity(e.claims.len());
    let mut pending: HashMap<i64, i64> = HashMap::new();
    let mut ok = true;
    for (_, country, number, q) in &e.claims {
        let row: Option<(i64, i64, i64, String)> = conn
            .prepare_cached(
                "SELECT c.id, b.certified, b.used, c.ior FROM certificates c JOIN balances b ON b.certificate = c.id
                 WHERE c.country = ?1 AND c.number = ?2",
            )?
            .query_row(params![country, number], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        match row {
            Some((id, certified, used, ior)) if ior == e.ior => {
                let p = pending.entry(id).or_insert(0);
                *p += q;
                if used + *p > certified {
                    ok = false;
                }
                found.push(id);
            }
            _ => ok = false,
        }
    }
    if !ok {
        c.claims_refused += e.claims.len() as u64;
        return Ok(());
    }
    // Per claim: UPDATE the certificate, INSERT a usage row.
    for ((line, _, _, q), id) in e.claims.iter().zip(found) {
        conn.prepare_cached("UPDATE balances SET used = used + ?2 WHERE certificate = ?1")?
            .execute(params![id, q])?;
        conn.prepare_cached(
            "INSERT INTO bench_usage (certificate, filer, number, line, kind, quantity, date, version)
             VALUES (?1, ?2, ?3, ?4, 'D', ?5, ?6, 1)",
        )?
        .execute(params![id, e.filer, e.number, line, q, args.date])?;
        c.claims_accepted += 1;
        c.since_commit += 1;
    }
    c.accepted_entries += 1;
    if c.since_commit >= args.commit_every {
        conn.execute_batch("COMMIT; BEGIN")?;
        c.commits += 1;
        c.since_commit = 0;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; ignore it.
    let args = Args::parse_from(std::env::args().filter(|a| a != "--bench"));
    let start = Instant::now();
    let conn = Connection::open(&args.db)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS bench_usage (
             seq INTEGER PRIMARY KEY, certificate INTEGER NOT NULL, filer TEXT NOT NULL, number TEXT NOT NULL,
             line INTEGER NOT NULL, kind TEXT NOT NULL, quantity INTEGER NOT NULL, date INTEGER NOT NULL,
             version INTEGER NOT NULL);
         CREATE INDEX IF NOT EXISTS bench_usage_by_certificate ON bench_usage (certificate, seq);",
    )?;
    let mut counts = Counts {
        entries: 0,
        accepted_entries: 0,
        claims_accepted: 0,
        claims_refused: 0,
        commits: 0,
        since_commit: 0,
    };
    let input = BufReader::with_capacity(1 << 20, File::open(&args.input)?);
    conn.execute_batch("BEGIN")?;
    naive_ae::for_each_entry(input, |entry| -> Result<(), Box<dyn std::error::Error>> {
        Ok(apply(&conn, &entry, &args, &mut counts)?)
    })?;
    conn.execute_batch("COMMIT")?;
    counts.commits += 1;
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
