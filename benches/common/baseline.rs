//! The "obvious approach" to applying certificate claims: the baseline of the
//! claims figure (`claims_baseline`, and `cargo bench`'s `pipeline`).
//!
//! Against a copy of an ecertd store, per claim: SELECT the certificate by
//! country and number; then, when every claim of the entry can be honoured
//! (certificate on file, naming the entry's IOR, enough left), per claim
//! UPDATE its `used` and INSERT a usage row; COMMIT every `commit_every`
//! claims. An entry with a claim that cannot be honoured is refused whole,
//! as ecertd does, so the accepted-claim counts of both are comparable.
//!
//! The store is opened the way an obvious program would: WAL and
//! `synchronous=FULL` (the same durability as ecertd), everything else left
//! at SQLite's defaults. The balances and usage rows go to tables of the
//! obvious shape, so the baseline does not depend on how ecertd lays out its
//! own ledger: `bench_balances` (one narrow row per certificate, `used`
//! under a `CHECK`) and `bench_usage` (rowid table plus an index by
//! certificate). [`prepare`] adds them to a store, outside the timed run.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use super::naive_ae::{self, Entry};

#[derive(Default)]
pub struct Counts {
    pub entries: u64,
    pub accepted_entries: u64,
    pub claims_accepted: u64,
    pub claims_refused: u64,
    pub commits: u64,
    since_commit: u64,
}

/// Adds the baseline's tables to the ecertd store at `db`, every
/// certificate's balance at 0 (a fresh store: ecertd's holds no events).
pub fn prepare(db: &Path) -> rusqlite::Result<()> {
    let conn = Connection::open(db)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.execute_batch(
        "BEGIN;
         CREATE TABLE IF NOT EXISTS bench_balances (
             certificate INTEGER PRIMARY KEY, certified INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0,
             CHECK (used >= 0 AND used <= certified));
         INSERT INTO bench_balances (certificate, certified)
             SELECT id, certified FROM certificates WHERE NOT EXISTS (SELECT 1 FROM bench_balances) ORDER BY id;
         CREATE TABLE IF NOT EXISTS bench_usage (
             seq INTEGER PRIMARY KEY, certificate INTEGER NOT NULL, filer TEXT NOT NULL, number TEXT NOT NULL,
             line INTEGER NOT NULL, kind TEXT NOT NULL, quantity INTEGER NOT NULL, date INTEGER NOT NULL,
             version INTEGER NOT NULL);
         CREATE INDEX IF NOT EXISTS bench_usage_by_certificate ON bench_usage (certificate, seq);
         COMMIT;
         PRAGMA wal_checkpoint(TRUNCATE);",
    )
}

/// Applies the claims of the AE stream `input` to the store at `db`, which
/// [`prepare`] has readied.
pub fn run(db: &Path, input: impl BufRead, commit_every: u64, date: u32) -> Result<Counts, Box<dyn std::error::Error>> {
    let conn = Connection::open(db)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    let prepared: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE name = 'bench_balances'",
        [],
        |r| r.get(0),
    )?;
    if prepared == 0 {
        return Err(format!("{}: no baseline tables (run with --prepare first)", db.display()).into());
    }
    let mut counts = Counts::default();
    conn.execute_batch("BEGIN")?;
    naive_ae::for_each_entry(input, |entry| -> Result<(), Box<dyn std::error::Error>> {
        Ok(apply(&conn, &entry, commit_every, date, &mut counts)?)
    })?;
    conn.execute_batch("COMMIT")?;
    counts.commits += 1;
    Ok(counts)
}

fn apply(conn: &Connection, e: &Entry, commit_every: u64, date: u32, c: &mut Counts) -> rusqlite::Result<()> {
    c.entries += 1;
    // Per claim: SELECT the certificate.
    let mut found = Vec::with_capacity(e.claims.len());
    let mut pending: HashMap<i64, i64> = HashMap::new();
    let mut ok = true;
    for (_, country, number, q) in &e.claims {
        let row: Option<(i64, i64, i64, String)> = conn
            .prepare_cached(
                "SELECT c.id, b.certified, b.used, c.ior FROM certificates c JOIN bench_balances b ON b.certificate = c.id
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
        conn.prepare_cached("UPDATE bench_balances SET used = used + ?2 WHERE certificate = ?1")?
            .execute(params![id, q])?;
        conn.prepare_cached(
            "INSERT INTO bench_usage (certificate, filer, number, line, kind, quantity, date, version)
             VALUES (?1, ?2, ?3, ?4, 'D', ?5, ?6, 1)",
        )?
        .execute(params![id, e.filer, e.number, line, q, date])?;
        c.claims_accepted += 1;
        c.since_commit += 1;
    }
    c.accepted_entries += 1;
    if c.since_commit >= commit_every {
        conn.execute_batch("COMMIT; BEGIN")?;
        c.commits += 1;
        c.since_commit = 0;
    }
    Ok(())
}
