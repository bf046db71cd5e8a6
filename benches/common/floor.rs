//! The floor under the claims figure: only the SQLite work that ecertd's
//! ledger does for an AE stream, with nothing around it (`claims_floor`, and
//! `cargo bench`'s `pipeline`).
//!
//! Per group of entries of `group_records` records (ecertd's own commit
//! group), in one `BEGIN IMMEDIATE` transaction on a copy of an ecertd store:
//!
//! 1. read: the group's certificates in key order, terms then balances (each
//!    certificate's latest usage event), with the statement shapes ecertd
//!    uses (`IN rarray(?)`: one per country, then one over the ids);
//! 2. decide, untimed: an entry is taken or refused whole (certificate on
//!    file, naming the entry's IOR, enough left);
//! 3. write: the usage events, each with the balance it leaves, in key
//!    order, 64 rows per statement, into ecertd's own table (appended, under
//!    its unique index on certificate and seq);
//! 4. commit (WAL, `synchronous=FULL`, ecertd's page cache size).
//!
//! With `unordered_events` the events go to a table of their own in arrival
//! order, with no index, and the balances are carried from group to group in
//! memory instead of read: not a usable ledger (a query reads a certificate's
//! events in order, a restart forgets the balances), but the floor of any
//! SQLite ledger that writes a row per event.

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rusqlite::types::Value;
use rusqlite::Connection;

use super::naive_ae::Entry;

/// Rows per INSERT statement, as ecertd's flush.
const ROWS: usize = 64;

/// A certificate of the group: terms read, balance as the group leaves it.
struct Held {
    id: i64,
    ior: String,
    certified: i64,
    used: i64,
    events: i64,
}

struct Event<'a> {
    certificate: i64,
    seq: i64,
    entry: &'a Entry,
    line: u16,
    quantity: i64,
    /// The certificate's balance after the event, and its quantity.
    used: i64,
    certified: i64,
}

#[derive(Default)]
pub struct Totals {
    pub read: Duration,
    pub write: Duration,
    pub commit: Duration,
    pub accepted: u64,
    pub refused: u64,
    pub events: u64,
    pub certificates: u64,
    pub groups: u64,
}

/// Balances carried in memory between groups (`unordered_events`): per
/// certificate id, `(used, events)`.
type Carried = HashMap<i64, (i64, i64)>;

fn group(
    conn: &Connection,
    entries: &[Entry],
    carried: Option<&mut Carried>,
    date: u32,
    t: &mut Totals,
) -> rusqlite::Result<()> {
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
                },
            );
        }
    }
    let mut by_id: Vec<(i64, (&str, &str))> = held.iter().map(|(k, h)| (h.id, *k)).collect();
    by_id.sort_unstable();
    if let Some(carried) = carried.as_deref() {
        for h in held.values_mut() {
            (h.used, h.events) = carried.get(&h.id).copied().unwrap_or((0, 0));
        }
    } else {
        let ids = Rc::new(by_id.iter().map(|(id, _)| Value::Integer(*id)).collect::<Vec<_>>());
        let mut balances = conn.prepare_cached(
            "SELECT u.certificate, u.seq, u.used FROM rarray(?1) a, usage_events u
             WHERE u.rowid = (SELECT v.rowid FROM usage_events v WHERE v.certificate = a.value
                              ORDER BY v.seq DESC LIMIT 1)",
        )?;
        let mut rows = balances.query([ids])?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            if let Ok(at) = by_id.binary_search_by_key(&id, |(id, _)| *id) {
                if let Some(h) = held.get_mut(&by_id[at].1) {
                    h.events = r.get(1)?;
                    h.used = r.get(2)?;
                }
            }
        }
    }
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
            events.push(Event {
                certificate: h.id,
                seq: h.events,
                entry: e,
                line: *line,
                quantity: *q,
                used: h.used,
                certified: h.certified,
            });
        }
        t.accepted += e.claims.len() as u64;
    }
    events.sort_unstable_by_key(|e| (e.certificate, e.seq));

    let start = Instant::now();
    let table = if carried.is_some() {
        "floor_events"
    } else {
        "usage_events"
    };
    let insert_sql = |rows| {
        format!(
            "INSERT INTO {table} (certificate, seq, filer, number, line, kind, quantity, date, version, used, \
             certified) VALUES {}",
            vec!["(?,?,?,?,?,'D',?,?,1,?,?)"; rows].join(",")
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
            insert.raw_bind_parameter(at + 6, date)?;
            insert.raw_bind_parameter(at + 7, e.used)?;
            insert.raw_bind_parameter(at + 8, e.certified)?;
            at += 9;
        }
        insert.raw_execute()?;
    }
    t.write += start.elapsed();
    if let Some(carried) = carried {
        for h in held.values() {
            carried.insert(h.id, (h.used, h.events));
        }
    }

    let start = Instant::now();
    conn.execute_batch("COMMIT")?;
    t.commit += start.elapsed();
    t.events += events.len() as u64;
    t.certificates += held.len() as u64;
    t.groups += 1;
    Ok(())
}

/// Runs the floor over `entries` on the store at `db` (modified), one
/// transaction per `group_records` records.
pub fn run(
    db: &Path,
    entries: &[Entry],
    group_records: usize,
    unordered_events: bool,
    date: u32,
) -> rusqlite::Result<Totals> {
    let conn = Connection::open(db)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -32_768)?;
    conn.set_prepared_statement_cache_capacity(64);
    rusqlite::vtab::array::load_module(&conn)?;
    if unordered_events {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS floor_events (certificate INTEGER NOT NULL, seq INTEGER NOT NULL,
                 filer TEXT NOT NULL, number TEXT NOT NULL, line INTEGER NOT NULL, kind TEXT NOT NULL,
                 quantity INTEGER NOT NULL, date INTEGER NOT NULL, version INTEGER NOT NULL, used INTEGER NOT NULL,
                 certified INTEGER NOT NULL, CHECK (used >= 0 AND used <= certified))",
        )?;
    }
    let mut carried = unordered_events.then(Carried::new);
    let mut t = Totals::default();
    let mut from = 0;
    let mut records = 0;
    for (i, e) in entries.iter().enumerate() {
        records += e.records;
        if records >= group_records || i + 1 == entries.len() {
            group(&conn, &entries[from..=i], carried.as_mut(), date, &mut t)?;
            from = i + 1;
            records = 0;
        }
    }
    Ok(t)
}

impl Totals {
    /// Seconds of SQLite work on one thread.
    pub fn seconds(&self) -> f64 {
        (self.read + self.write + self.commit).as_secs_f64()
    }

    /// Seconds with the reads on a second thread beside write + commit.
    pub fn two_threads_seconds(&self) -> f64 {
        self.read.max(self.write + self.commit).as_secs_f64()
    }
}
