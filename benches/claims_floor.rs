//! The floor under bench/run.sh's claims figure: only the SQLite work that
//! ecertd's ledger does for an AE file, with nothing around it. Not part of
//! the product (it may use rusqlite directly; `ecertd` itself never does
//! outside `store`).
//!
//! The entry summaries are read (`common/naive_ae.rs`) into memory before the
//! clock starts: no parsing, no rules beyond the IOR and balance checks, no
//! rendering, no entry rows, no stored responses are timed. Then, per group of
//! entries of `--group-records` records (ecertd's own commit group), in one
//! `BEGIN IMMEDIATE` transaction on a copy of an ecertd store:
//!
//! 1. read: the group's certificates in key order, terms then balances, with
//!    the statement shapes ecertd uses (`IN rarray(?)`, one per country);
//! 2. decide, untimed: an entry is taken or refused whole (certificate on
//!    file, naming the entry's IOR, enough left);
//! 3. write: the usage events in key order, 64 rows per statement, then the
//!    changed balances, into ecertd's own tables;
//! 4. commit (WAL, `synchronous=FULL`, ecertd's page cache size).
//!
//! The sum of the phases is what one thread pays at least for the store's
//! part of this workload; the larger of "read" and "write + commit" is what
//! two threads pay at least when reading runs beside writing, as ecertd's
//! look-ahead does.
//!
//! `--unordered-events` appends the events to a table of their own in arrival
//! order, with no index: not a usable ledger (a query reads a certificate's
//! events in order), but the floor of any SQLite ledger that writes a row per
//! event.
//!
//! ```text
//! cargo bench --bench claims_floor -- --db COPY.db --input ae-0001.txt
//! ```
//! prints one line: `claims_accepted=N ... seconds=S claims_per_s=R two_threads_claims_per_s=R`.

#[path = "common/naive_ae.rs"]
mod naive_ae;

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;
use naive_ae::Entry;
use rusqlite::types::Value;
use rusqlite::Connection;

#[derive(Parser)]
#[command(about = "Floor: the store's statements of the claims workload, timed alone")]
struct Args {
    /// A copy of an ecertd store holding the certificates (modified!)
    #[arg(long)]
    db: PathBuf,
    /// The AE file
    #[arg(long)]
    input: PathBuf,
    /// Records per transaction (ecertd's `process` commits every 200,000)
    #[arg(long, default_value_t = 200_000)]
    group_records: usize,
    /// Date of the usage events, CCYYMMDD
    #[arg(long, default_value_t = 20260315)]
    date: u32,
    /// Append the events to `floor_events` (rowid order, no index) instead
    /// of ecertd's `usage_events` (clustered by certificate)
    #[arg(long)]
    unordered_events: bool,
}

/// Rows per INSERT statement, as ecertd's flush.
const ROWS: usize = 64;

/// A certificate of the group: terms read, balance as the group leaves it.
struct Held {
    id: i64,
    ior: String,
    certified: i64,
    used: i64,
    events: i64,
    changed: bool,
}

struct Event<'a> {
    certificate: i64,
    seq: i64,
    entry: &'a Entry,
    line: u16,
    quantity: i64,
}

#[derive(Default)]
struct Totals {
    read: Duration,
    write: Duration,
    commit: Duration,
    accepted: u64,
    refused: u64,
    events: u64,
    certificates: u64,
    groups: u64,
}

fn group(conn: &Connection, entries: &[Entry], args: &Args, t: &mut Totals) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;

    let start = Instant::now();
    let mut keys: Vec<(&str, &str)> = entries
        .iter()
        .flat_map(|e| e.claims.iter().map(|(_, c, n, _)| (c.as_str(), n.as_str())))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut held: HashMap<(&str, &str), Held> = HashMap::with_capacity(keys.len());
    let mut terms = conn.prepare_cached(
        "SELECT c.number, c.id, c.ior, c.certified FROM certificates c
         WHERE c.country = ?1 AND c.number IN rarray(?2)",
    )?;
    for run in keys.chunk_by(|a, b| a.0 == b.0) {
        let numbers = Rc::new(run.iter().map(|k| Value::Text(k.1.to_string())).collect::<Vec<_>>());
        let mut rows = terms.query(rusqlite::params![run[0].0, numbers])?;
        while let Some(r) = rows.next()? {
            let number: String = r.get(0)?;
            let Ok(at) = run.binary_search_by(|k| k.1.cmp(number.as_str())) else {
                continue;
            };
            held.insert(
                run[at],
                Held {
                    id: r.get(1)?,
                    ior: r.get(2)?,
                    certified: r.get(3)?,
                    used: 0,
                    events: 0,
                    changed: false,
                },
            );
        }
    }
    let mut by_id: Vec<(i64, (&str, &str))> = held.iter().map(|(k, h)| (h.id, *k)).collect();
    by_id.sort_unstable();
    let ids = Rc::new(by_id.iter().map(|(id, _)| Value::Integer(*id)).collect::<Vec<_>>());
    let mut balances =
        conn.prepare_cached("SELECT certificate, used, events FROM balances WHERE certificate IN rarray(?1)")?;
    let mut rows = balances.query([ids])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        if let Ok(at) = by_id.binary_search_by_key(&id, |(id, _)| *id) {
            if let Some(h) = held.get_mut(&by_id[at].1) {
                h.used = r.get(1)?;
                h.events = r.get(2)?;
            }
        }
    }
    drop(rows);
    t.read += start.elapsed();

    let mut events = Vec::new();
    for e in entries {
        let mut taking: HashMap<(&str, &str), i64> = HashMap::new();
        let ok = e
            .claims
            .iter()
            .all(|(_, c, n, q)| match held.get(&(c.as_str(), n.as_str())) {
                Some(h) if h.ior == e.ior => {
                    let total = taking.entry((c, n)).or_insert(0);
                    *total += q;
                    h.used + *total <= h.certified
                }
                _ => false,
            });
        if !ok {
            t.refused += e.claims.len() as u64;
            continue;
        }
        for (line, c, n, q) in &e.claims {
            let h = held.get_mut(&(c.as_str(), n.as_str())).expect("checked above");
            h.used += q;
            h.events += 1;
            h.changed = true;
            events.push(Event {
                certificate: h.id,
                seq: h.events,
                entry: e,
                line: *line,
                quantity: *q,
            });
        }
        t.accepted += e.claims.len() as u64;
    }
    events.sort_unstable_by_key(|e| (e.certificate, e.seq));

    let start = Instant::now();
    let table = if args.unordered_events {
        "floor_events"
    } else {
        "usage_events"
    };
    let insert_sql = |rows| {
        format!(
            "INSERT INTO {table} (certificate, seq, filer, number, line, kind, quantity, date, version) VALUES {}",
            vec!["(?,?,?,?,?,'D',?,?,1)"; rows].join(",")
        )
    };
    let (many, one) = (insert_sql(ROWS), insert_sql(1));
    let (full, rest) = events.split_at(events.len() - events.len() % ROWS);
    for chunk in full.chunks(ROWS).chain(rest.chunks(1)) {
        let mut insert = conn.prepare_cached(if chunk.len() == ROWS { &many } else { &one })?;
        let mut at = 1;
        for e in chunk {
            insert.raw_bind_parameter(at, e.certificate)?;
            insert.raw_bind_parameter(at + 1, e.seq)?;
            insert.raw_bind_parameter(at + 2, e.entry.filer.as_str())?;
            insert.raw_bind_parameter(at + 3, e.entry.number.as_str())?;
            insert.raw_bind_parameter(at + 4, e.line)?;
            insert.raw_bind_parameter(at + 5, e.quantity)?;
            insert.raw_bind_parameter(at + 6, args.date)?;
            at += 7;
        }
        insert.raw_execute()?;
    }
    let mut update = conn.prepare_cached("UPDATE balances SET used = ?2, events = ?3 WHERE certificate = ?1")?;
    for (_, key) in &by_id {
        let h = &held[key];
        if h.changed {
            update.execute(rusqlite::params![h.id, h.used, h.events])?;
        }
    }
    t.write += start.elapsed();

    let start = Instant::now();
    conn.execute_batch("COMMIT")?;
    t.commit += start.elapsed();
    t.events += events.len() as u64;
    t.certificates += held.len() as u64;
    t.groups += 1;
    Ok(())
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

    let conn = Connection::open(&args.db)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -49_152)?;
    conn.set_prepared_statement_cache_capacity(64);
    rusqlite::vtab::array::load_module(&conn)?;
    if args.unordered_events {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS floor_events (certificate INTEGER NOT NULL, seq INTEGER NOT NULL,
                 filer TEXT NOT NULL, number TEXT NOT NULL, line INTEGER NOT NULL, kind TEXT NOT NULL,
                 quantity INTEGER NOT NULL, date INTEGER NOT NULL, version INTEGER NOT NULL)",
        )?;
    }

    let mut t = Totals::default();
    let mut from = 0;
    let mut records = 0;
    for (i, e) in entries.iter().enumerate() {
        records += e.records;
        if records >= args.group_records || i + 1 == entries.len() {
            group(&conn, &entries[from..=i], &args, &mut t)?;
            from = i + 1;
            records = 0;
        }
    }

    let secs = (t.read + t.write + t.commit).as_secs_f64();
    let two = t.read.max(t.write + t.commit).as_secs_f64();
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
        secs,
        t.accepted as f64 / secs,
        t.accepted as f64 / two,
    );
    Ok(())
}
