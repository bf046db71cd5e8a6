//! The SQLite store. The only module that touches rusqlite.
//!
//! Durability: WAL with `synchronous=FULL`, so a committed batch and its
//! response survive a power cut. Writes run under `BEGIN IMMEDIATE`, so the
//! balance check and the debit of a claim happen in one serialised
//! transaction; the `CHECK (used BETWEEN 0 AND certified)` constraint backs
//! the rules, and usage events are append-only (triggers refuse change).

use rustc_hash::FxHashMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use subtle::ConstantTimeEq;

use crate::envelope::SenderKind;
use crate::model::{Certificate, CertificateTerms, Claim, EntryState, Sender, UsageEvent, UsageKind};
use crate::types::{
    CertificateNumber, Country, Date, EntryNumber, FilerCode, HtsCoverage, Hundredths, IorNumber, Program, Unit,
};

/// Operational errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database holds a value this version cannot read: {0}")]
    Corrupt(String),
    #[error("sender {0} is already registered")]
    SenderExists(String),
    #[error("invalid sender registration: {0}")]
    InvalidSender(String),
    #[error("database schema version {0} is newer than this program")]
    TooNew(i64),
}

impl StoreError {
    /// Whether retrying later may succeed (lock contention, full or read-only disk).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::ReadOnly
                    | rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::SystemIoFailure
            ),
            _ => false,
        }
    }

    /// Whether the database file is damaged (`SQLITE_CORRUPT`, `SQLITE_NOTADB`).
    pub fn is_corrupt(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
            ),
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Schema migrations, applied in order; `PRAGMA user_version` counts them.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE senders (
    id       TEXT PRIMARY KEY,
    kind     TEXT NOT NULL CHECK (kind IN ('broker', 'country')),
    country  TEXT,
    salt     BLOB NOT NULL,
    hash     BLOB NOT NULL,
    rounds   INTEGER NOT NULL,
    CHECK ((kind = 'country') = (country IS NOT NULL))
);
CREATE TABLE sender_filers (
    sender   TEXT NOT NULL REFERENCES senders(id) ON DELETE CASCADE,
    filer    TEXT NOT NULL,
    PRIMARY KEY (sender, filer)
) WITHOUT ROWID;
CREATE TABLE query_rights (
    filer    TEXT NOT NULL,
    ior      TEXT NOT NULL,
    granted  INTEGER NOT NULL,
    PRIMARY KEY (filer, ior)
) WITHOUT ROWID;
CREATE TABLE certificates (
    id          INTEGER PRIMARY KEY,
    country     TEXT NOT NULL,
    number      TEXT NOT NULL,
    program     TEXT NOT NULL,
    hts         TEXT NOT NULL,
    unit        TEXT NOT NULL,
    certified   INTEGER NOT NULL CHECK (certified > 0),
    used        INTEGER NOT NULL DEFAULT 0,
    issued      INTEGER NOT NULL,
    expires     INTEGER NOT NULL,
    quota_year  INTEGER NOT NULL,
    ior         TEXT NOT NULL,
    exporter    TEXT NOT NULL,
    cancelled   INTEGER NOT NULL DEFAULT 0,
    events      INTEGER NOT NULL DEFAULT 0,
    UNIQUE (country, number),
    CHECK (used >= 0 AND used <= certified)
);
CREATE INDEX certificates_by_ior ON certificates (ior, country, number);
CREATE INDEX certificates_by_number ON certificates (number);
CREATE TABLE entries (
    filer    TEXT NOT NULL,
    number   TEXT NOT NULL,
    version  INTEGER NOT NULL,
    deleted  INTEGER NOT NULL DEFAULT 0,
    ior      TEXT,
    -- The claims in force, packed (see `pack_claims`): one row per entry
    -- instead of one per line keeps a claim to two b-tree writes.
    claims   BLOB NOT NULL,
    PRIMARY KEY (filer, number)
) WITHOUT ROWID;
-- Clustered by certificate: a certificate's history is one range scan, and
-- an event is one b-tree insert. `seq` counts the certificate's events.
CREATE TABLE usage_events (
    certificate  INTEGER NOT NULL REFERENCES certificates(id),
    seq          INTEGER NOT NULL,
    filer        TEXT NOT NULL,
    number       TEXT NOT NULL,
    line         INTEGER NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('D', 'C')),
    quantity     INTEGER NOT NULL CHECK (quantity > 0),
    date         INTEGER NOT NULL,
    version      INTEGER NOT NULL,
    PRIMARY KEY (certificate, seq)
) WITHOUT ROWID;
CREATE TRIGGER usage_events_append_only_u BEFORE UPDATE ON usage_events
BEGIN SELECT RAISE(ABORT, 'usage events are append-only'); END;
CREATE TRIGGER usage_events_append_only_d BEFORE DELETE ON usage_events
BEGIN SELECT RAISE(ABORT, 'usage events are append-only'); END;
CREATE TABLE batches (
    sender     TEXT NOT NULL,
    reference  TEXT NOT NULL,
    digest     BLOB NOT NULL,
    response   BLOB NOT NULL,
    PRIMARY KEY (sender, reference)
) WITHOUT ROWID;
CREATE TABLE inputs (
    claim        TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    channel      TEXT NOT NULL,
    sender       TEXT,
    destination  TEXT,
    batches_done INTEGER NOT NULL DEFAULT 0,
    complete     INTEGER NOT NULL DEFAULT 0,
    published    INTEGER NOT NULL DEFAULT 0,
    -- Where the response is published, relative to the root; chosen once,
    -- before the first write, so that a republish reuses it.
    response     TEXT UNIQUE,
    accepted     INTEGER NOT NULL DEFAULT 0,
    rejected     INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE input_batches (
    claim      TEXT NOT NULL,
    idx        INTEGER NOT NULL,
    app        TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    accepted   INTEGER NOT NULL,
    rejected   INTEGER NOT NULL,
    response   BLOB NOT NULL,
    PRIMARY KEY (claim, idx)
) WITHOUT ROWID;
"#,
    // 2: certificates are clustered by their key, so that a claim's look-up
    // is one b-tree descent; balances move to a narrow table of their own, so
    // that a group of claims dirties (and syncs) few pages. Rebuilt by the
    // steps of SQLite's "making other kinds of table schema changes", with
    // foreign keys off (see `Store::migrate`).
    r#"
CREATE TABLE certificates_v2 (
    country     TEXT NOT NULL,
    number      TEXT NOT NULL,
    id          INTEGER NOT NULL UNIQUE,
    program     TEXT NOT NULL,
    hts         TEXT NOT NULL,
    unit        TEXT NOT NULL,
    certified   INTEGER NOT NULL CHECK (certified > 0),
    issued      INTEGER NOT NULL,
    expires     INTEGER NOT NULL,
    quota_year  INTEGER NOT NULL,
    ior         TEXT NOT NULL,
    exporter    TEXT NOT NULL,
    cancelled   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (country, number)
) WITHOUT ROWID;
-- The ledger: `used` never leaves 0..=certified, whatever the program does.
CREATE TABLE balances (
    certificate  INTEGER PRIMARY KEY REFERENCES certificates(id),
    certified    INTEGER NOT NULL,
    used         INTEGER NOT NULL DEFAULT 0,
    -- Usage events on file: the next event's `seq` is events + 1.
    events       INTEGER NOT NULL DEFAULT 0,
    CHECK (used >= 0 AND used <= certified)
);
INSERT INTO certificates_v2 (country, number, id, program, hts, unit, certified, issued, expires, quota_year, ior,
    exporter, cancelled)
    SELECT country, number, id, program, hts, unit, certified, issued, expires, quota_year, ior, exporter, cancelled
    FROM certificates;
INSERT INTO balances (certificate, certified, used, events) SELECT id, certified, used, events FROM certificates;
DROP TABLE certificates;
ALTER TABLE certificates_v2 RENAME TO certificates;
-- By importer in answer order, covering: an importer's usage answer reads
-- its certificates as one range of this index, not one look-up each.
CREATE INDEX certificates_by_ior ON certificates (ior, country, number, id, program, hts, unit, certified, issued,
    expires, quota_year, exporter, cancelled);
CREATE INDEX certificates_by_number ON certificates (number);
"#,
    // 3: the ledger is the event log alone. Each usage event carries the
    // certificate's balance after it and its quantity then, under a `CHECK`;
    // the latest event holds the balance, so a claim costs one b-tree insert
    // and no balance row is rewritten. Events booked before this version get
    // their running total, and the certificate's quantity now (or the
    // running total, where a later replacement lowered the quantity).
    r#"
CREATE TABLE usage_events_v3 (
    certificate  INTEGER NOT NULL REFERENCES certificates(id),
    seq          INTEGER NOT NULL,
    filer        TEXT NOT NULL,
    number       TEXT NOT NULL,
    line         INTEGER NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('D', 'C')),
    quantity     INTEGER NOT NULL CHECK (quantity > 0),
    date         INTEGER NOT NULL,
    version      INTEGER NOT NULL,
    used         INTEGER NOT NULL,
    certified    INTEGER NOT NULL,
    CHECK (used >= 0 AND used <= certified),
    PRIMARY KEY (certificate, seq)
) WITHOUT ROWID;
INSERT INTO usage_events_v3 (certificate, seq, filer, number, line, kind, quantity, date, version, used, certified)
    SELECT r.certificate, r.seq, r.filer, r.number, r.line, r.kind, r.quantity, r.date, r.version, r.used,
        max(coalesce(b.certified, 0), r.used)
    FROM (SELECT u.*, sum(CASE u.kind WHEN 'D' THEN u.quantity ELSE -u.quantity END)
              OVER (PARTITION BY u.certificate ORDER BY u.seq) AS used
          FROM usage_events u) r
    LEFT JOIN balances b ON b.certificate = r.certificate;
DROP TABLE usage_events;
ALTER TABLE usage_events_v3 RENAME TO usage_events;
CREATE TRIGGER usage_events_append_only_u BEFORE UPDATE ON usage_events
BEGIN SELECT RAISE(ABORT, 'usage events are append-only'); END;
CREATE TRIGGER usage_events_append_only_d BEFORE DELETE ON usage_events
BEGIN SELECT RAISE(ABORT, 'usage events are append-only'); END;
DROP TABLE balances;
"#,
    // 4: usage events in the order they are booked, under a narrow unique
    // index on the ledger's key (certificate, seq). Clustered by certificate,
    // a group of claims on scattered certificates dirtied (and synced) most
    // of the table's pages at every commit; appended, it dirties the new
    // pages and the index's, several times narrower. The certificate is no
    // longer a foreign key: enforced, it cost a look-up of the certificate's
    // id per event (about a tenth of `ecertd process`), for a fact the
    // writer holds by construction (it books events only on certificates it
    // read in the same transaction, and certificates are never deleted) and
    // the audit checks (`Tx::ledger_mismatches`).
    r#"
CREATE TABLE usage_events_v4 (
    certificate  INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    filer        TEXT NOT NULL,
    number       TEXT NOT NULL,
    line         INTEGER NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('D', 'C')),
    quantity     INTEGER NOT NULL CHECK (quantity > 0),
    date         INTEGER NOT NULL,
    version      INTEGER NOT NULL,
    used         INTEGER NOT NULL,
    certified    INTEGER NOT NULL,
    CHECK (used >= 0 AND used <= certified)
);
-- The index first, the events copied in its order: each index entry is
-- appended, where building it afterwards would sort every event in memory.
CREATE UNIQUE INDEX usage_events_by_certificate ON usage_events_v4 (certificate, seq);
INSERT INTO usage_events_v4 (certificate, seq, filer, number, line, kind, quantity, date, version, used, certified)
    SELECT certificate, seq, filer, number, line, kind, quantity, date, version, used, certified
    FROM usage_events ORDER BY certificate, seq;
DROP TABLE usage_events;
ALTER TABLE usage_events_v4 RENAME TO usage_events;
CREATE TRIGGER usage_events_append_only_u BEFORE UPDATE ON usage_events
BEGIN SELECT RAISE(ABORT, 'usage events are append-only'); END;
CREATE TRIGGER usage_events_append_only_d BEFORE DELETE ON usage_events
BEGIN SELECT RAISE(ABORT, 'usage events are append-only'); END;
"#,
];

/// PBKDF2 rounds of a new password hash. Each hash records its own rounds,
/// so the cost can be raised later without invalidating passwords.
pub const PBKDF2_ROUNDS: u32 = 10_000;

/// How long a write waits for another process's lock unless told otherwise.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a [`CertificateReader`] waits for a lock.
const READER_BUSY_TIMEOUT: Duration = Duration::from_millis(500);

/// A connection to the store.
pub struct Store {
    conn: Connection,
    password_rounds: u32,
    /// The last write transaction's ledger, emptied: the next one reuses its
    /// tables instead of growing (and faulting in) new ones.
    spare_ledger: Ledger,
    /// The database file; `None` for a private in-memory store.
    path: Option<std::path::PathBuf>,
    /// The balances the last write transaction committed moved, until taken.
    last_moved: Option<Moved>,
}

/// WAL bytes after which a commit copies the WAL into the database itself
/// (SQLite's automatic checkpoint, here a backstop): the daemon's
/// [`Checkpointer`] does it on its own connection, so no batch waits for one.
/// SQLite counts it in pages of the store's own size.
const WAL_AUTOCHECKPOINT_BYTES: i64 = 64 << 20;

/// Page size of a store this version creates. A group's certificates are
/// read in key order: on 16 KiB pages four times as many share a leaf, so
/// a group's sweep reads a quarter of the pages (and syscalls), and a
/// commit writes fewer, fuller pages. `ecertd process` on the claims
/// benchmark took 11 % less time and 13 % less CPU than on 4 KiB pages (32
/// KiB measured the same as 16); a small daemon commit writes larger
/// frames, which cost its drop-to-response time about half a millisecond.
/// A store keeps the page size it was created with (see the README to
/// convert one).
pub const NEW_STORE_PAGE_SIZE: i64 = 16_384;

/// A second connection that copies the WAL into the database
/// (`PRAGMA wal_checkpoint(PASSIVE)`: it waits for no reader or writer),
/// from its own thread, so that the writer's commits never do it.
pub struct Checkpointer {
    conn: Connection,
}

impl Checkpointer {
    pub fn open(path: &Path) -> Result<Checkpointer> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_millis(100))?;
        // The database file is synced once the WAL's frames are copied.
        conn.pragma_update(None, "synchronous", "FULL")?;
        Ok(Checkpointer { conn })
    }

    /// Copies what it can; returns the WAL's frames and how many of them are
    /// now in the database. Nothing new in the WAL costs no write and no sync.
    pub fn checkpoint(&self) -> Result<(i64, i64)> {
        Ok(self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(1)?, r.get(2)?)))?)
    }
}

/// Durability of commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sync {
    /// `synchronous=FULL`: a commit survives a power cut.
    Full,
    /// `synchronous=NORMAL`: survives a crash of the process, not of the machine.
    Normal,
}

impl Store {
    /// Opens (creating if needed) the store at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Store> {
        Store::open_with(path, Sync::Full)
    }

    pub fn open_with(path: &Path, sync: Sync) -> Result<Store> {
        let conn = Connection::open(path)?;
        Store::setup(conn, sync, DEFAULT_BUSY_TIMEOUT, Some(path))
    }

    /// Opens the store waiting at most `busy_timeout` for another process's
    /// lock, from the first statement (the migration) on.
    pub fn open_waiting(path: &Path, busy_timeout: Duration) -> Result<Store> {
        let conn = Connection::open(path)?;
        Store::setup(conn, Sync::Full, busy_timeout, Some(path))
    }

    /// A private in-memory store, for tests and `ecertd check`-like tools.
    pub fn open_in_memory() -> Result<Store> {
        Store::setup(Connection::open_in_memory()?, Sync::Full, DEFAULT_BUSY_TIMEOUT, None)
    }

    fn setup(conn: Connection, sync: Sync, busy_timeout: Duration, path: Option<&Path>) -> Result<Store> {
        conn.busy_timeout(busy_timeout)?;
        // Only a store without content takes it: before the first write,
        // which switching to WAL is.
        conn.pragma_update(None, "page_size", NEW_STORE_PAGE_SIZE)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        conn.pragma_update(
            None,
            "synchronous",
            match sync {
                Sync::Full => "FULL",
                Sync::Normal => "NORMAL",
            },
        )?;
        // 16 MiB of page cache holds a group's new event pages and the
        // index leaves it touches on the claims benchmark. 32 MiB measured
        // no faster for `ecertd process` (certificate rows are read about
        // once per group anyway) and cost 20 MiB of peak RSS, which the
        // input buffers recycled from group to group now use; EC answers on
        // the 10,000,000-certificate store stay near 5 ms at p50.
        conn.pragma_update(None, "cache_size", -16_384)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.pragma_update(
            None,
            "wal_autocheckpoint",
            WAL_AUTOCHECKPOINT_BYTES / page_size.max(512),
        )?;
        // A WAL that grew under load is cut back to this size once checkpointed.
        conn.pragma_update(None, "journal_size_limit", 64i64 << 20)?;
        conn.set_prepared_statement_cache_capacity(64);
        rusqlite::vtab::array::load_module(&conn)?;
        let mut store = Store {
            conn,
            password_rounds: PBKDF2_ROUNDS,
            spare_ledger: Ledger::default(),
            path: path.map(Path::to_path_buf),
            last_moved: None,
        };
        store.migrate()?;
        Ok(store)
    }

    /// Applies the migrations this store lacks in one transaction. Foreign
    /// keys are off meanwhile (a table rebuild drops a referenced table) and
    /// checked before the commit.
    fn migrate(&mut self) -> Result<()> {
        self.conn.pragma_update(None, "foreign_keys", "OFF")?;
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > MIGRATIONS.len() as i64 {
            return Err(StoreError::TooNew(version));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        }
        if version < MIGRATIONS.len() as i64 {
            let broken: Option<String> = tx.query_row("PRAGMA foreign_key_check", [], |r| r.get(0)).optional()?;
            if let Some(table) = broken {
                return Err(StoreError::Corrupt(format!(
                    "migration left a dangling reference in {table}"
                )));
            }
        }
        tx.commit()?;
        self.conn.pragma_update(None, "foreign_keys", "ON")?;
        Ok(())
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction, committed when `f`
    /// returns `Ok`, rolled back otherwise.
    pub fn write<T, E>(&mut self, f: impl FnOnce(&Tx<'_>) -> std::result::Result<T, E>) -> std::result::Result<T, E>
    where
        E: From<StoreError>,
    {
        let ledger = std::mem::take(&mut self.spare_ledger);
        self.last_moved = None;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let t = Tx::new(&tx, ledger);
        let out = f(&t)?;
        t.flush()?;
        let mut ledger = t.ledger.into_inner();
        tx.commit().map_err(StoreError::from)?;
        self.last_moved = Moved::of(&ledger);
        ledger.clear();
        self.spare_ledger = ledger;
        Ok(out)
    }

    /// Rows inserted, changed or deleted through this connection since it
    /// opened (SQLite's `total_changes`): unchanged between two points, no
    /// statement of this connection changed the store in between.
    pub fn total_changes(&self) -> u64 {
        self.conn.total_changes()
    }

    /// The balances that the last write transaction moved, as it committed
    /// them; `None` once taken, after a failed write, or when the ledger
    /// lost track of one (it forgot, or read afresh, a certificate it had
    /// moved).
    pub fn take_moved(&mut self) -> Option<Moved> {
        self.last_moved.take()
    }

    /// A second connection to this store's file for reading certificates
    /// ahead of the writer; `None` for an in-memory store.
    pub fn certificate_reader(&self) -> Result<Option<CertificateReader>> {
        self.path.as_deref().map(CertificateReader::open).transpose()
    }

    /// Runs `f` in a read transaction (a consistent snapshot).
    pub fn read<T, E>(&mut self, f: impl FnOnce(&Tx<'_>) -> std::result::Result<T, E>) -> std::result::Result<T, E>
    where
        E: From<StoreError>,
    {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(StoreError::from)?;
        let out = f(&Tx::new(&tx, Ledger::default()))?;
        tx.commit().map_err(StoreError::from)?;
        Ok(out)
    }

    /// Sets the PBKDF2 rounds of passwords registered from now on (and of
    /// the decoy hash for unknown senders). Tests and the fuzz harness use a
    /// low cost; production keeps [`PBKDF2_ROUNDS`].
    pub fn with_password_rounds(mut self, rounds: u32) -> Store {
        self.password_rounds = rounds.max(1);
        self
    }

    /// Registers a sender. The password is kept only as a salted PBKDF2 hash.
    pub fn add_sender(&mut self, sender: &Sender, password: &str) -> Result<()> {
        if sender.id.len() != 3 || FilerCode::parse(sender.id.as_bytes()).is_none() {
            return Err(StoreError::InvalidSender(format!(
                "sender ID {:?} must be 3 characters of A-Z and 0-9",
                sender.id
            )));
        }
        if password.is_empty() || password.len() > 6 || !password.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(StoreError::InvalidSender(
                "password must be 1 to 6 printable characters without spaces".into(),
            ));
        }
        match (sender.kind, sender.country) {
            (SenderKind::Country, None) => {
                return Err(StoreError::InvalidSender("a country sender needs --country".into()))
            }
            (SenderKind::Broker, Some(_)) => {
                return Err(StoreError::InvalidSender("a broker sender has no country".into()))
            }
            _ => {}
        }
        let mut salt = [0u8; 16];
        getrandom::getrandom(&mut salt).map_err(|e| StoreError::Corrupt(format!("no randomness: {e}")))?;
        let rounds = self.password_rounds;
        let hash = hash_password(password, &salt, rounds);
        self.write(|tx| {
            let exists: bool = tx
                .tx
                .query_row("SELECT 1 FROM senders WHERE id = ?1", [&sender.id], |_| Ok(true))
                .optional()?
                .unwrap_or(false);
            if exists {
                return Err(StoreError::SenderExists(sender.id.clone()));
            }
            tx.tx.execute(
                "INSERT INTO senders (id, kind, country, salt, hash, rounds) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    sender.id,
                    sender.kind.name(),
                    sender.country.map(|c| c.as_str().to_string()),
                    &salt[..],
                    &hash[..],
                    rounds
                ],
            )?;
            let filers: Vec<FilerCode> = if sender.kind == SenderKind::Broker && sender.filers.is_empty() {
                FilerCode::from_stored(&sender.id).into_iter().collect()
            } else {
                sender.filers.clone()
            };
            for f in filers {
                tx.tx.execute(
                    "INSERT OR IGNORE INTO sender_filers (sender, filer) VALUES (?1, ?2)",
                    params![sender.id, f.as_str()],
                )?;
            }
            Ok(())
        })
    }

    /// Removes a sender; `false` when there was none.
    pub fn remove_sender(&mut self, id: &str) -> Result<bool> {
        self.write(|tx| {
            tx.tx.execute("DELETE FROM sender_filers WHERE sender = ?1", [id])?;
            Ok(tx.tx.execute("DELETE FROM senders WHERE id = ?1", [id])? > 0)
        })
    }

    pub fn list_senders(&mut self) -> Result<Vec<Sender>> {
        self.read(|tx| {
            let ids: Vec<String> = tx
                .tx
                .prepare("SELECT id FROM senders ORDER BY id")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            ids.iter().filter_map(|id| tx.sender(id).transpose()).collect()
        })
    }

    /// Lets `filer` query `ior`.
    pub fn grant(&mut self, filer: FilerCode, ior: IorNumber) -> Result<()> {
        self.write(|tx| {
            tx.tx.execute(
                "INSERT INTO query_rights (filer, ior, granted) VALUES (?1, ?2, 1)
                 ON CONFLICT (filer, ior) DO UPDATE SET granted = 1",
                params![filer.as_str(), ior_key(&ior)],
            )?;
            Ok(())
        })
    }

    /// Checks a sender's password in constant time. An unknown sender and a
    /// wrong password give the same answer and cost the same work.
    pub fn authenticate(&mut self, id: &str, password: &[u8]) -> Result<Option<Sender>> {
        let decoy_rounds = self.password_rounds;
        self.read(|tx| {
            let row: Option<(Vec<u8>, Vec<u8>, u32)> = tx
                .tx
                .prepare_cached("SELECT salt, hash, rounds FROM senders WHERE id = ?1")?
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            let pw = std::str::from_utf8(password).unwrap_or("").trim_end();
            let (salt, stored, rounds, known) = match row {
                Some((s, h, n)) => (s, h, n, true),
                None => (vec![0u8; 16], vec![0u8; 32], decoy_rounds, false),
            };
            let computed = hash_password(pw, &salt, rounds);
            let equal: bool = computed[..].ct_eq(&stored[..]).into();
            if known && equal {
                tx.sender(id)
            } else {
                Ok(None)
            }
        })
    }

    /// Direct access for the store's own tests and for fault injection.
    #[doc(hidden)]
    pub fn execute_raw(&mut self, sql: &str) -> Result<()> {
        self.conn.execute_batch(sql)?;
        Ok(())
    }

    /// Fault injection ([`crate::fault`]): `true` caps the database at its
    /// current page count, so that a write needing a new page fails with
    /// `SQLITE_FULL` as on a full disk; `false` lifts the cap. Per connection.
    pub fn inject_full(&mut self, on: bool) -> Result<()> {
        let limit: i64 = if on {
            // Free pages (a migration's dropped table) would absorb writes
            // without growing the file: compact them away first.
            let free: i64 = self.conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
            if free > 0 {
                self.conn.execute_batch("VACUUM")?;
            }
            self.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?
        } else {
            i64::from(u32::MAX)
        };
        self.conn
            .query_row(&format!("PRAGMA max_page_count = {limit}"), [], |_| Ok(()))?;
        Ok(())
    }

    /// Fault injection ([`crate::fault`]): `PRAGMA query_only`, so that every
    /// write fails with `SQLITE_READONLY`. Per connection.
    pub fn inject_readonly(&mut self, on: bool) -> Result<()> {
        self.conn.pragma_update(None, "query_only", on)?;
        Ok(())
    }

    /// Bulk-loads the synthetic ledger of `spec` (benchmarks, `ecertd-gen
    /// load`): its certificates through the same writes as a GT add, then
    /// its usage events through the same writes as accepted entry
    /// summaries, `spec.per_commit` at a time, with `synchronous=OFF` and a
    /// larger page cache (both restored after); then checkpoints the WAL so
    /// that the database file stands alone. `progress(what, done, total)`
    /// follows every commit.
    pub fn load_synthetic(
        &mut self,
        spec: &crate::gen::SyntheticSpec,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<()> {
        let sync: i64 = self.conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
        let cache: i64 = self.conn.query_row("PRAGMA cache_size", [], |r| r.get(0))?;
        self.conn.pragma_update(None, "synchronous", "OFF")?;
        self.conn
            .pragma_update(None, "cache_size", -(spec.cache_mib.max(1) as i64 * 1024))?;
        let loaded = (|| -> Result<()> {
            let n = spec.population.certificates;
            let step = spec.per_commit.max(1);
            let mut ids: Vec<i64> = Vec::with_capacity(n as usize);
            while (ids.len() as u64) < n {
                let from = ids.len() as u64;
                let to = (from + step).min(n);
                self.write(|tx| -> Result<()> {
                    for i in from..to {
                        ids.push(tx.insert_certificate(&spec.certificate(i))?);
                    }
                    Ok(())
                })?;
                progress("certificates", to, n);
            }
            let mut entries = spec.entries();
            let mut events = 0u64;
            loop {
                let done = self.write(|tx| -> Result<bool> {
                    for _ in 0..step {
                        match entries.next_entry(|i| ids[i as usize]) {
                            None => return Ok(true),
                            Some(Err(e)) => return Err(StoreError::Corrupt(format!("synthetic load: {e}"))),
                            Some(Ok(change)) => {
                                tx.apply_entry(&change)?;
                                events += change.debits.len() as u64;
                            }
                        }
                    }
                    Ok(false)
                })?;
                progress("usage events", events, spec.usage_events);
                if done {
                    return Ok(());
                }
            }
        })();
        self.conn.pragma_update(None, "synchronous", sync)?;
        self.conn.pragma_update(None, "cache_size", cache)?;
        loaded?;
        self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}

fn hash_password(password: &str, salt: &[u8], rounds: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), salt, rounds.max(1), &mut out);
    out
}

/// IOR numbers are stored with their trailing space (the SSN form) so that
/// equality is byte equality of the 12-byte field.
fn ior_key(ior: &IorNumber) -> String {
    String::from_utf8_lossy(ior.as_bytes()).into_owned()
}

/// A claim being applied or given back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimChange {
    pub line: u16,
    pub certificate: i64,
    pub quantity: Hundredths,
    /// For a debit: the new version; for a credit: the version given back.
    pub version: u32,
}

/// The effect of an accepted entry summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryChange {
    pub entry: EntryNumber,
    /// The entry's version after the change.
    pub version: u32,
    pub deleted: bool,
    pub ior: Option<IorNumber>,
    pub credits: Vec<ClaimChange>,
    pub debits: Vec<ClaimChange>,
    pub date: Date,
}

/// Outcome of a processed input batch, as remembered for an input file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputBatch {
    pub app: String,
    pub outcome: String,
    pub accepted: u32,
    pub rejected: u32,
    pub response: Vec<u8>,
}

/// What the store knows of a claimed input file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputRecord {
    pub claim: String,
    pub name: String,
    pub channel: String,
    pub sender: Option<String>,
    pub destination: Option<String>,
    pub batches_done: u64,
    pub complete: bool,
    pub published: bool,
}

/// Filter of a country's `S` query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageCondition {
    Matched,
    Unmatched,
    Cancelled,
}

/// A transaction on the store.
pub struct Tx<'c> {
    tx: &'c rusqlite::Transaction<'c>,
    /// Query rights already written in this transaction.
    rights_known: std::cell::RefCell<std::collections::HashSet<(String, String)>>,
    ledger: std::cell::RefCell<Ledger>,
    /// Whether this transaction added, replaced or cancelled a certificate.
    terms_changed: std::cell::Cell<bool>,
}

impl<'c> Tx<'c> {
    fn new(tx: &'c rusqlite::Transaction<'c>, ledger: Ledger) -> Self {
        Tx {
            tx,
            rights_known: Default::default(),
            ledger: std::cell::RefCell::new(ledger),
            terms_changed: Default::default(),
        }
    }
}

/// The certificates a write transaction has read, with the balances its
/// claims moved. The writer holds the store's only write lock for the whole
/// transaction, so this view is the truth until commit: each claim is checked
/// against it and debited in memory, and [`Tx::flush`] appends the usage
/// events, each carrying the balance it leaves, sorted by certificate, inside
/// the same transaction, where the `CHECK` on an event's balance still backs
/// every move.
#[derive(Default)]
struct Ledger {
    /// Certificates looked up by key; `None` when not on file.
    by_key: FxHashMap<(Country, CertificateNumber), Option<i64>>,
    held: FxHashMap<i64, Held>,
    /// Usage events not yet written, in the order they happened.
    pending: Vec<PendingEvent>,
    /// Whether a certificate with usage events booked in this transaction
    /// was forgotten ([`Tx::invalidate`]) or read afresh ([`Tx::hold`]):
    /// [`Moved`] then cannot say what the transaction moved.
    forgot_moved: bool,
}

impl Ledger {
    /// Empties it, keeping its tables' capacity. (Destructured, so that a
    /// new field cannot be forgotten here and outlive its transaction.)
    fn clear(&mut self) {
        let Ledger {
            by_key,
            held,
            pending,
            forgot_moved,
        } = self;
        by_key.clear();
        held.clear();
        pending.clear();
        *forgot_moved = false;
    }
}

#[derive(Debug)]
struct Held {
    cert: Certificate,
    /// Usage events on file or pending: the next event's `seq` follows it.
    events: i64,
    /// Whether this transaction booked usage events on it.
    moved: bool,
}

struct PendingEvent {
    certificate: i64,
    seq: i64,
    entry: EntryNumber,
    line: u16,
    kind: UsageKind,
    quantity: i64,
    date: u32,
    version: u32,
    /// The certificate's balance after this event, and its quantity then.
    used: i64,
    certified: i64,
}

/// Stored responses are LZ4-compressed: fixed-width records compress about
/// tenfold, and a large query answer is then a small write to sync.
fn pack_response(response: &[u8]) -> Vec<u8> {
    lz4_flex::compress_prepend_size(response)
}

fn unpack_response(packed: &[u8]) -> Result<Vec<u8>> {
    lz4_flex::decompress_size_prepended(packed).map_err(|e| StoreError::Corrupt(format!("stored response: {e}")))
}

const CLAIM_BYTES: usize = 22;

/// Claims in force as bytes: per claim line (u16), certificate (i64),
/// quantity (u64) and version (u32), little-endian.
fn pack_claims(claims: &[Claim]) -> Vec<u8> {
    let mut out = Vec::with_capacity(claims.len() * CLAIM_BYTES);
    for c in claims {
        out.extend_from_slice(&c.line.to_le_bytes());
        out.extend_from_slice(&c.certificate.to_le_bytes());
        out.extend_from_slice(&c.quantity.get().to_le_bytes());
        out.extend_from_slice(&c.version.to_le_bytes());
    }
    out
}

fn unpack_claims(bytes: &[u8]) -> Option<Vec<Claim>> {
    if !bytes.len().is_multiple_of(CLAIM_BYTES) {
        return None;
    }
    bytes
        .chunks_exact(CLAIM_BYTES)
        .map(|c| {
            Some(Claim {
                line: u16::from_le_bytes(c[0..2].try_into().ok()?),
                certificate: i64::from_le_bytes(c[2..10].try_into().ok()?),
                quantity: Hundredths::new(u64::from_le_bytes(c[10..18].try_into().ok()?)),
                version: u32::from_le_bytes(c[18..22].try_into().ok()?),
            })
        })
        .collect()
}

fn certificate_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<std::result::Result<Certificate, String>> {
    // Fixed-width text is read in place; only the exporter name is owned.
    let text = |i: usize| -> rusqlite::Result<&str> { r.get_ref(i)?.as_str().map_err(Into::into) };
    let id: i64 = r.get(0)?;
    let certified: i64 = r.get(6)?;
    let used: i64 = r.get(7)?;
    let issued: u32 = r.get(8)?;
    let expires: u32 = r.get(9)?;
    let quota_year: u16 = r.get(10)?;
    let exporter: String = r.get(12)?;
    let cancelled: bool = r.get(13)?;
    let bad = |what: &str| format!("certificate {id}: {what}");
    let (country, number, program, hts, unit, ior) = (text(1)?, text(2)?, text(3)?, text(4)?, text(5)?, text(11)?);
    Ok((|| {
        Ok(Certificate {
            id,
            terms: CertificateTerms {
                country: Country::from_stored(country).ok_or_else(|| bad("country"))?,
                number: CertificateNumber::from_stored(number).ok_or_else(|| bad("number"))?,
                program: program
                    .bytes()
                    .next()
                    .and_then(Program::parse)
                    .ok_or_else(|| bad("program"))?,
                hts: HtsCoverage::from_stored(hts).ok_or_else(|| bad("hts"))?,
                certified: Hundredths::new(u64::try_from(certified).map_err(|_| bad("certified"))?),
                unit: Unit::from_stored(unit).ok_or_else(|| bad("unit"))?,
                issued: Date::from_ccyymmdd(issued).ok_or_else(|| bad("issued"))?,
                expires: Date::from_ccyymmdd(expires).ok_or_else(|| bad("expires"))?,
                quota_year,
                ior: IorNumber::parse(ior.as_bytes()).ok_or_else(|| bad("ior"))?,
                exporter,
            },
            used: Hundredths::new(u64::try_from(used).map_err(|_| bad("used"))?),
            cancelled,
        })
    })())
}

/// A usage event read from columns `at..at + 7` (filer, number, line, kind,
/// quantity, date, version); `None` when they are NULL (an outer join).
fn event_from_row(r: &rusqlite::Row<'_>, at: usize, certificate: i64) -> Result<Option<UsageEvent>> {
    let bad = || StoreError::Corrupt(format!("usage event of certificate {certificate}"));
    // Read in place: a large answer reads thousands of events.
    let filer = match r.get_ref(at)? {
        rusqlite::types::ValueRef::Null => return Ok(None),
        v => FilerCode::from_stored(v.as_str().map_err(|_| bad())?).ok_or_else(bad)?,
    };
    let entry = EntryNumber::parse(filer, r.get_ref(at + 1)?.as_bytes().map_err(|_| bad())?).ok_or_else(bad)?;
    let kind = match r.get_ref(at + 3)?.as_bytes().map_err(|_| bad())? {
        b"D" => UsageKind::Debit,
        b"C" => UsageKind::Credit,
        _ => return Err(bad()),
    };
    let q: i64 = r.get(at + 4)?;
    let date: u32 = r.get(at + 5)?;
    Ok(Some(UsageEvent {
        certificate,
        entry,
        line: r.get(at + 2)?,
        kind,
        quantity: Hundredths::new(u64::try_from(q).map_err(|_| bad())?),
        date: Date::from_ccyymmdd(date).ok_or_else(bad)?,
        version: r.get(at + 6)?,
    }))
}

/// The balance of certificate `c`: the one its latest usage event leaves
/// (none: nothing used).
macro_rules! balance {
    () => {
        "coalesce((SELECT u.used FROM usage_events u WHERE u.certificate = c.id ORDER BY u.seq DESC LIMIT 1), 0)"
    };
}

/// The columns `certificate_from_row` reads; `$used` is the balance column
/// (`balance!()`, or `"0"` for the terms alone).
macro_rules! cert_columns {
    ($used:expr) => {
        concat!(
            "c.id, c.country, c.number, c.program, c.hts, c.unit, c.certified, ",
            $used,
            ", c.issued, c.expires, c.quota_year, c.ior, c.exporter, c.cancelled"
        )
    };
}

/// A certificate with its balance and event count (column 14) `WHERE …`.
macro_rules! cert_where {
    ($filter:expr) => {
        concat!(
            "SELECT ",
            cert_columns!(balance!()),
            ", coalesce((SELECT max(u.seq) FROM usage_events u WHERE u.certificate = c.id), 0)",
            " FROM certificates c WHERE ",
            $filter
        )
    };
}
/// The certificates of one country whose numbers are in an array.
macro_rules! by_numbers {
    () => {
        "c.country = ?1 AND c.number IN rarray(?2)"
    };
}
const CERT_BY_KEY: &str = cert_where!("c.country = ?1 AND c.number = ?2");
const CERT_BY_ID: &str = cert_where!("c.id = ?1");
/// The terms alone, in the columns of `certificate_from_row` (balance and
/// event count 0), of one country's certificates whose numbers are in an
/// array.
const TERMS_BY_NUMBERS: &str = concat!(
    "SELECT ",
    cert_columns!("0"),
    ", 0 FROM certificates c WHERE ",
    by_numbers!()
);

/// Reads the terms of the certificates of `keys` (sorted, without repeats)
/// that are on file, sorted by id, with balances and event counts 0 (see
/// [`read_balances`]): one statement per country walks the key index front
/// to back, instead of one statement per claim.
fn read_terms(conn: &Connection, keys: &[(Country, CertificateNumber)]) -> Result<Vec<(Certificate, i64)>> {
    let mut found = Vec::with_capacity(keys.len());
    let mut stmt = conn.prepare_cached(TERMS_BY_NUMBERS)?;
    for run in keys.chunk_by(|a, b| a.0 == b.0) {
        let numbers: rusqlite::vtab::array::Array = std::rc::Rc::new(
            run.iter()
                .map(|(_, n)| rusqlite::types::Value::Text(n.as_str().to_string()))
                .collect(),
        );
        let mut rows = stmt.query(params![run[0].0.as_str(), numbers])?;
        while let Some(r) = rows.next()? {
            found.push((certificate_from_row(r)?.map_err(StoreError::Corrupt)?, 0));
        }
    }
    found.sort_unstable_by_key(|(c, _)| c.id);
    Ok(found)
}

/// Sets the balance and event count of each of `certs` (sorted by id) from
/// its latest usage event: per certificate, one seek to the end of its run
/// in the ledger's index, then its row.
fn read_balances(conn: &Connection, certs: &mut [(Certificate, i64)]) -> Result<()> {
    let ids: rusqlite::vtab::array::Array = std::rc::Rc::new(
        certs
            .iter()
            .map(|(c, _)| rusqlite::types::Value::Integer(c.id))
            .collect(),
    );
    let mut stmt = conn.prepare_cached(LATEST_EVENTS)?;
    let mut rows = stmt.query([ids])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let bad = || StoreError::Corrupt(format!("balance of certificate {id}"));
        let at = certs.binary_search_by_key(&id, |(c, _)| c.id).map_err(|_| bad())?;
        let (cert, events) = &mut certs[at];
        *events = r.get(1)?;
        cert.used = Hundredths::new(u64::try_from(r.get::<_, i64>(2)?).map_err(|_| bad())?);
    }
    Ok(())
}

/// The latest usage event of each certificate whose id is in an array:
/// certificate, seq, balance (none for a certificate without events).
const LATEST_EVENTS: &str = "SELECT u.certificate, u.seq, u.used FROM rarray(?1) a, usage_events u
     WHERE u.rowid = (SELECT v.rowid FROM usage_events v WHERE v.certificate = a.value ORDER BY v.seq DESC LIMIT 1)";

/// The balances one write transaction moved, as it committed them: per
/// certificate id, its event count and balance.
#[derive(Debug)]
pub struct Moved(Vec<(i64, i64, Hundredths)>);

impl Moved {
    fn of(ledger: &Ledger) -> Option<Moved> {
        (!ledger.forgot_moved).then(|| {
            // Sized for all held (most are moved): no regrowth.
            let mut moved = Vec::with_capacity(ledger.held.len());
            moved.extend(
                ledger
                    .held
                    .iter()
                    .filter(|(_, h)| h.moved)
                    .map(|(id, h)| (*id, h.events, h.cert.used)),
            );
            Moved(moved)
        })
    }
}

/// Certificates read by a [`CertificateReader`], in the tables of a
/// transaction's ledger: built on the reading thread, they become the
/// ledger's own when it holds nothing yet ([`Tx::hold_fetched`]).
#[derive(Debug)]
pub struct Fetched {
    /// Every key asked for: its id when on file.
    by_key: FxHashMap<(Country, CertificateNumber), Option<i64>>,
    /// Those on file, with their balances and event counts.
    held: FxHashMap<i64, Held>,
}

/// A second, read-only connection that reads the certificates of a group's
/// claims on another thread while the writer evaluates the group.
///
/// Its snapshot must begin while the writer holds the write transaction it
/// reads for: no one else can commit then, and the writer's own changes are
/// not visible, so it reads exactly the state that transaction started from.
/// The writer's ledger overrides it for every certificate the writer has
/// itself read or moved ([`Tx::hold_fetched`]).
pub struct CertificateReader {
    conn: Connection,
}

impl CertificateReader {
    /// A reader of the database at `path`, which must be the writer's.
    pub(crate) fn open(path: &Path) -> Result<CertificateReader> {
        let conn = Connection::open(path)?;
        // The writer waits for this reader's answers: a reader kept waiting
        // (a WAL recovery by another process) gives up soon, and the writer
        // then reads the certificates itself.
        conn.busy_timeout(READER_BUSY_TIMEOUT)?;
        conn.pragma_update(None, "query_only", true)?;
        conn.pragma_update(None, "cache_size", -8_192)?;
        conn.set_prepared_statement_cache_capacity(8);
        rusqlite::vtab::array::load_module(&conn)?;
        Ok(CertificateReader { conn })
    }

    /// Runs `f` on one snapshot, taken before `f` runs.
    pub fn snapshot<T>(&mut self, f: impl FnOnce(&ReaderSnapshot<'_>) -> T) -> Result<T> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        // A WAL read transaction takes its snapshot at its first read.
        tx.query_row("SELECT count(*) FROM (SELECT 1 FROM certificates LIMIT 1)", [], |_| {
            Ok(())
        })?;
        let out = f(&ReaderSnapshot { tx: &tx });
        tx.commit()?;
        Ok(out)
    }
}

/// One snapshot of a [`CertificateReader`].
pub struct ReaderSnapshot<'c> {
    tx: &'c rusqlite::Transaction<'c>,
}

impl ReaderSnapshot<'_> {
    /// The certificates of `keys` on file in this snapshot, with their
    /// balances.
    pub fn certificates(&self, mut keys: Vec<(Country, CertificateNumber)>) -> Result<Fetched> {
        keys.sort_unstable();
        keys.dedup();
        let mut fetched = Fetched::with_capacity(keys.len());
        self.read_into(&keys, &mut fetched)?;
        Ok(fetched)
    }

    /// Adds the certificates of `keys` (sorted, without repeats) to
    /// `fetched`, as [`ReaderSnapshot::certificates`] reads them.
    pub fn read_into(&self, keys: &[(Country, CertificateNumber)], fetched: &mut Fetched) -> Result<()> {
        let mut found = read_terms(self.tx, keys)?;
        read_balances(self.tx, &mut found)?;
        let Fetched { by_key, held } = fetched;
        for (cert, events) in found {
            by_key.insert((cert.terms.country, cert.terms.number), Some(cert.id));
            let held_cert = Held {
                cert,
                events,
                moved: false,
            };
            held.insert(held_cert.cert.id, held_cert);
        }
        for key in keys {
            by_key.entry(*key).or_insert(None);
        }
        Ok(())
    }
}

impl Fetched {
    /// Empty, with room for `keys` certificates.
    pub fn with_capacity(keys: usize) -> Fetched {
        Fetched {
            by_key: FxHashMap::with_capacity_and_hasher(keys, Default::default()),
            held: FxHashMap::with_capacity_and_hasher(keys, Default::default()),
        }
    }

    /// Brings balances read on a snapshot of the state before a write
    /// transaction to the state after it, given what it `moved` (and
    /// nothing else committed in between: the caller checks).
    pub fn advance(&mut self, moved: &Moved) {
        for (id, events, used) in &moved.0 {
            if let Some(h) = self.held.get_mut(id) {
                (h.cert.used, h.events) = (*used, *events);
            }
        }
    }
}

/// Rows per statement of [`Tx::flush`].
const FLUSH_ROWS: usize = 64;

/// Chunks of [`FLUSH_ROWS`] rows, then single rows: two statement shapes
/// per table, so the statement cache keeps both.
fn flush_chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let (full, rest) = rows.split_at(rows.len() - rows.len() % FLUSH_ROWS);
    full.chunks(FLUSH_ROWS).chain(rest.chunks(1))
}

/// Columns of a usage event row, in the order [`Tx::flush`] binds them.
const EVENT_COLUMNS: usize = 11;

/// The insert of [`Tx::flush`] for `rows` rows (1 or [`FLUSH_ROWS`]), built
/// once per process. `OR FAIL`: a row the `CHECK` or the index refuses
/// fails the statement without undoing the rows before it, which the
/// transaction's rollback does anyway (every error of a write transaction
/// ends it); so SQLite keeps no statement journal, where it copied every
/// page a statement touched (16 KiB each) to undo that statement alone:
/// `ecertd process` on the claims benchmark used 9 % less CPU time.
fn flush_sql(rows: usize) -> &'static str {
    static SQL: std::sync::OnceLock<[String; 2]> = std::sync::OnceLock::new();
    let sql = SQL.get_or_init(|| {
        let insert = |n| {
            let group = format!("({})", ["?"; EVENT_COLUMNS].join(","));
            format!(
                "INSERT OR FAIL INTO usage_events (certificate, seq, filer, number, line, kind, quantity, date, version, used, \
                 certified) VALUES {}",
                vec![group; n].join(",")
            )
        };
        [insert(1), insert(FLUSH_ROWS)]
    });
    &sql[usize::from(rows != 1)]
}

fn to_i64(q: Hundredths) -> Result<i64> {
    i64::try_from(q.get()).map_err(|_| StoreError::Corrupt(format!("quantity {q} out of range")))
}

impl Tx<'_> {
    /// The sender `id` with its filer codes.
    pub fn sender(&self, id: &str) -> Result<Option<Sender>> {
        let row: Option<(String, Option<String>)> = self
            .tx
            .prepare_cached("SELECT kind, country FROM senders WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((kind, country)) = row else { return Ok(None) };
        let kind = SenderKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("sender kind {kind:?}")))?;
        let country = match country {
            Some(c) => Some(Country::from_stored(&c).ok_or_else(|| StoreError::Corrupt(format!("country {c:?}")))?),
            None => None,
        };
        let filers = self
            .tx
            .prepare_cached("SELECT filer FROM sender_filers WHERE sender = ?1 ORDER BY filer")?
            .query_map([id], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?
            .into_iter()
            .filter_map(|f| FilerCode::from_stored(&f))
            .collect();
        Ok(Some(Sender {
            id: id.to_string(),
            kind,
            country,
            filers,
        }))
    }

    /// A certificate read from the table with its event count; `sql` is one
    /// of the `CERT_BY_*` statements.
    fn certificate_where(&self, sql: &str, p: impl rusqlite::Params) -> Result<Option<(Certificate, i64)>> {
        let row = self
            .tx
            .prepare_cached(sql)?
            .query_row(p, |r| Ok((certificate_from_row(r)?, r.get::<_, i64>(14)?)))
            .optional()?;
        match row {
            None => Ok(None),
            Some((c, events)) => Ok(Some((c.map_err(StoreError::Corrupt)?, events))),
        }
    }

    /// Keeps a certificate read from the table in the transaction's ledger.
    fn hold(ledger: &mut Ledger, found: Option<(Certificate, i64)>) -> Option<i64> {
        let (cert, events) = found?;
        let id = cert.id;
        ledger.by_key.insert((cert.terms.country, cert.terms.number), Some(id));
        let held = Held {
            cert,
            events,
            moved: false,
        };
        // Read afresh over a certificate this transaction moved: what it
        // moved is no longer known here.
        if ledger.held.insert(id, held).is_some_and(|old| old.moved) {
            ledger.forgot_moved = true;
        }
        Some(id)
    }

    /// Makes sure the ledger knows certificate `number` of `country`; its id
    /// when on file.
    fn load(&self, country: Country, number: CertificateNumber) -> Result<Option<i64>> {
        if let Some(known) = self.ledger.borrow().by_key.get(&(country, number)) {
            return Ok(*known);
        }
        let found = self.certificate_where(CERT_BY_KEY, params![country.as_str(), number.as_str()])?;
        let mut ledger = self.ledger.borrow_mut();
        if found.is_none() {
            ledger.by_key.insert((country, number), None);
        }
        Ok(Tx::hold(&mut ledger, found))
    }

    /// SQLite's `PRAGMA data_version`: it changes when another connection
    /// commits, and only then.
    pub fn data_version(&self) -> Result<i64> {
        Ok(self.tx.query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }

    /// The certificate `number` of `country`, with the balance this
    /// transaction has left it.
    pub fn certificate(&self, country: Country, number: CertificateNumber) -> Result<Option<Certificate>> {
        let Some(id) = self.load(country, number)? else {
            return Ok(None);
        };
        Ok(self.ledger.borrow().held.get(&id).map(|h| h.cert.clone()))
    }

    /// Runs `f` on the certificates `keys` name (`None`: not on file), as
    /// this transaction holds them: lent, not copied. `f` must not change
    /// the ledger (it may read the store).
    pub fn with_certificates<T>(
        &self,
        keys: &[(Country, CertificateNumber)],
        f: impl FnOnce(&[Option<&Certificate>]) -> T,
    ) -> Result<T> {
        let mut ids: smallvec::SmallVec<[Option<i64>; 8]> = smallvec::SmallVec::with_capacity(keys.len());
        for &(country, number) in keys {
            ids.push(self.load(country, number)?);
        }
        let ledger = self.ledger.borrow();
        let certs: smallvec::SmallVec<[Option<&Certificate>; 8]> = ids
            .iter()
            .map(|id| id.and_then(|id| ledger.held.get(&id)).map(|h| &h.cert))
            .collect();
        Ok(f(&certs))
    }

    pub fn certificate_by_id(&self, id: i64) -> Result<Option<Certificate>> {
        if let Some(h) = self.ledger.borrow().held.get(&id) {
            return Ok(Some(h.cert.clone()));
        }
        let found = self.certificate_where(CERT_BY_ID, params![id])?;
        let mut ledger = self.ledger.borrow_mut();
        Ok(Tx::hold(&mut ledger, found).and_then(|id| ledger.held.get(&id).map(|h| h.cert.clone())))
    }

    /// Reads the certificates of `keys` into the transaction's ledger: one
    /// statement per country walks the key index front to back, instead of
    /// one statement per claim.
    pub fn prefetch_certificates(&self, keys: &mut Vec<(Country, CertificateNumber)>) -> Result<()> {
        let mut ledger = self.ledger.borrow_mut();
        keys.retain(|k| !ledger.by_key.contains_key(k));
        keys.sort_unstable();
        keys.dedup();
        ledger.by_key.reserve(keys.len());
        ledger.held.reserve(keys.len());
        let mut found = read_terms(self.tx, keys)?;
        read_balances(self.tx, &mut found)?;
        for found in found {
            Tx::hold(&mut ledger, Some(found));
        }
        for key in keys.iter() {
            ledger.by_key.entry(*key).or_insert(None);
        }
        Ok(())
    }

    /// Takes certificates read on another connection into the ledger. What
    /// was read there is the state this transaction started from (see
    /// [`CertificateReader`] and [`Fetched::advance`]); the ledger's own view
    /// of a certificate, once it has one, wins (a certificate the ledger does
    /// not hold has not moved in this transaction). Refused (`false`, nothing
    /// taken) once this transaction has changed certificate terms, which the
    /// other connection cannot see.
    pub fn hold_fetched(&self, fetched: Fetched) -> Result<bool> {
        if self.terms_changed.get() {
            return Ok(false);
        }
        let mut ledger = self.ledger.borrow_mut();
        let Fetched { mut by_key, mut held } = fetched;
        if held.len() > ledger.held.len() {
            // The smaller merged into the larger (a group's sweep, of which
            // the writer read a few chunks itself): the fetched tables
            // become the ledger's, and what the ledger knew goes in over them.
            std::mem::swap(&mut ledger.by_key, &mut by_key);
            std::mem::swap(&mut ledger.held, &mut held);
            for (key, id) in by_key {
                if let Some(Some(fetched_id)) = ledger.by_key.insert(key, id) {
                    // The ledger's view of this key wins, and with it its
                    // certificate, re-inserted below if it held one.
                    ledger.held.remove(&fetched_id);
                }
            }
            ledger.held.extend(held);
            return Ok(true);
        }
        for (id, h) in held {
            if !ledger.by_key.contains_key(&(h.cert.terms.country, h.cert.terms.number))
                && !ledger.held.contains_key(&id)
            {
                Tx::hold(&mut ledger, Some((h.cert, h.events)));
            }
        }
        for (key, _) in by_key {
            ledger.by_key.entry(key).or_insert(None);
        }
        Ok(true)
    }

    /// Appends the ledger's pending usage events, sorted by certificate
    /// (each certificate's are already in `seq` order).
    pub fn flush(&self) -> Result<()> {
        let mut ledger = self.ledger.borrow_mut();
        if ledger.pending.is_empty() {
            return Ok(());
        }
        let mut pending = std::mem::take(&mut ledger.pending);
        pending.sort_by_key(|e| (e.certificate, e.seq));
        // Many rows per statement: the per-statement cost, not the b-tree
        // insert, is most of a small insert's time.
        for rows in flush_chunks(&pending) {
            let mut insert = self.tx.prepare_cached(flush_sql(rows.len()))?;
            let mut at = 1;
            for e in rows {
                insert.raw_bind_parameter(at, e.certificate)?;
                insert.raw_bind_parameter(at + 1, e.seq)?;
                insert.raw_bind_parameter(at + 2, e.entry.filer.as_str())?;
                insert.raw_bind_parameter(at + 3, e.entry.digits_str())?;
                insert.raw_bind_parameter(at + 4, e.line)?;
                insert.raw_bind_parameter(at + 5, if e.kind == UsageKind::Debit { "D" } else { "C" })?;
                insert.raw_bind_parameter(at + 6, e.quantity)?;
                insert.raw_bind_parameter(at + 7, e.date)?;
                insert.raw_bind_parameter(at + 8, e.version)?;
                insert.raw_bind_parameter(at + 9, e.used)?;
                insert.raw_bind_parameter(at + 10, e.certified)?;
                at += EVENT_COLUMNS;
            }
            insert.raw_execute()?;
        }
        // Keep the vector's capacity for the next group.
        pending.clear();
        ledger.pending = pending;
        Ok(())
    }

    /// Writes what is pending and forgets certificate `id` (or key), before a
    /// statement that changes certificate rows behind the ledger's back.
    fn invalidate(&self, id: Option<i64>, key: Option<(Country, CertificateNumber)>) -> Result<()> {
        self.terms_changed.set(true);
        self.flush()?;
        let mut ledger = self.ledger.borrow_mut();
        if let Some(id) = id {
            if let Some(h) = ledger.held.remove(&id) {
                ledger.by_key.remove(&(h.cert.terms.country, h.cert.terms.number));
                ledger.forgot_moved |= h.moved;
            }
        }
        if let Some(key) = key {
            ledger.by_key.remove(&key);
        }
        Ok(())
    }

    /// Whether `number` is on file for a country other than `country`.
    pub fn number_on_file_elsewhere(&self, country: Country, number: CertificateNumber) -> Result<bool> {
        Ok(self
            .tx
            .prepare_cached("SELECT 1 FROM certificates WHERE number = ?1 AND country <> ?2 LIMIT 1")?
            .query_row(params![number.as_str(), country.as_str()], |_| Ok(()))
            .optional()?
            .is_some())
    }

    pub fn insert_certificate(&self, t: &CertificateTerms) -> Result<i64> {
        self.invalidate(None, Some((t.country, t.number)))?;
        let id: i64 = self
            .tx
            .prepare_cached("SELECT coalesce(max(id), 0) + 1 FROM certificates")?
            .query_row([], |r| r.get(0))?;
        self.tx
            .prepare_cached(
                "INSERT INTO certificates (id, country, number, program, hts, unit, certified, issued, expires,
                 quota_year, ior, exporter) VALUES (?12, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                t.country.as_str(),
                t.number.as_str(),
                (t.program.code() as char).to_string(),
                t.hts.as_str(),
                t.unit.as_str(),
                to_i64(t.certified)?,
                t.issued.ccyymmdd(),
                t.expires.ccyymmdd(),
                t.quota_year,
                ior_key(&t.ior),
                t.exporter,
                id,
            ])?;
        Ok(id)
    }

    pub fn replace_certificate(&self, id: i64, t: &CertificateTerms) -> Result<()> {
        self.invalidate(Some(id), None)?;
        self.tx
            .prepare_cached(
                "UPDATE certificates SET program = ?2, hts = ?3, unit = ?4, certified = ?5, issued = ?6,
                 expires = ?7, quota_year = ?8, ior = ?9, exporter = ?10 WHERE id = ?1",
            )?
            .execute(params![
                id,
                (t.program.code() as char).to_string(),
                t.hts.as_str(),
                t.unit.as_str(),
                to_i64(t.certified)?,
                t.issued.ccyymmdd(),
                t.expires.ccyymmdd(),
                t.quota_year,
                ior_key(&t.ior),
                t.exporter,
            ])?;
        Ok(())
    }

    pub fn cancel_certificate(&self, id: i64) -> Result<()> {
        self.invalidate(Some(id), None)?;
        self.tx
            .prepare_cached("UPDATE certificates SET cancelled = 1 WHERE id = ?1")?
            .execute([id])?;
        Ok(())
    }

    pub fn entry(&self, entry: &EntryNumber) -> Result<Option<EntryState>> {
        Ok(self.entry_with_claims(entry)?.map(|(state, _)| state))
    }

    /// The entry on file with its claims in force, by line, in one read.
    pub fn entry_with_claims(&self, entry: &EntryNumber) -> Result<Option<(EntryState, Vec<Claim>)>> {
        let row: Option<(EntryState, Vec<u8>)> = self
            .tx
            .prepare_cached("SELECT version, deleted, claims FROM entries WHERE filer = ?1 AND number = ?2")?
            .query_row(params![entry.filer.as_str(), entry.digits_str()], |r| {
                Ok((
                    EntryState {
                        version: r.get(0)?,
                        deleted: r.get(1)?,
                    },
                    r.get(2)?,
                ))
            })
            .optional()?;
        row.map(|(state, packed)| {
            let claims =
                unpack_claims(&packed).ok_or_else(|| StoreError::Corrupt(format!("claims of entry {entry}")))?;
            Ok((state, claims))
        })
        .transpose()
    }

    /// Moves a certificate's balance in the ledger and queues its event.
    /// Refuses (as corruption: the rules never ask for it) a balance that
    /// would leave `0..=certified`.
    fn usage(&self, kind: UsageKind, entry: &EntryNumber, c: &ClaimChange, date: Date) -> Result<()> {
        let held = self.ledger.borrow().held.contains_key(&c.certificate);
        if !held && self.certificate_by_id(c.certificate)?.is_none() {
            return Err(StoreError::Corrupt(format!(
                "claim on certificate {} not on file",
                c.certificate
            )));
        }
        let mut ledger = self.ledger.borrow_mut();
        let Ledger { held, pending, .. } = &mut *ledger;
        let h = held
            .get_mut(&c.certificate)
            .ok_or_else(|| StoreError::Corrupt(format!("certificate {} not held", c.certificate)))?;
        let used = match kind {
            UsageKind::Debit => h.cert.used.checked_add(c.quantity),
            UsageKind::Credit => h.cert.used.checked_sub(c.quantity),
        }
        .filter(|u| *u <= h.cert.terms.certified)
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "certificate {}: {:?} of {} would leave 0..={}",
                c.certificate, kind, c.quantity, h.cert.terms.certified
            ))
        })?;
        h.cert.used = used;
        h.events += 1;
        h.moved = true;
        pending.push(PendingEvent {
            certificate: c.certificate,
            seq: h.events,
            entry: *entry,
            line: c.line,
            kind,
            quantity: to_i64(c.quantity)?,
            date: date.ccyymmdd(),
            version: c.version,
            used: to_i64(used)?,
            certified: to_i64(h.cert.terms.certified)?,
        });
        Ok(())
    }

    /// Applies an accepted entry summary: credits first, then debits, each a
    /// usage event; the entry row with its claims in force follows.
    pub fn apply_entry(&self, ch: &EntryChange) -> Result<()> {
        for c in &ch.credits {
            self.usage(UsageKind::Credit, &ch.entry, c, ch.date)?;
        }
        for d in &ch.debits {
            self.usage(UsageKind::Debit, &ch.entry, d, ch.date)?;
        }
        let (filer, number) = (ch.entry.filer.as_str(), ch.entry.digits_str());
        let claims: Vec<Claim> = ch
            .debits
            .iter()
            .map(|d| Claim {
                line: d.line,
                certificate: d.certificate,
                quantity: d.quantity,
                version: d.version,
            })
            .collect();
        let ior = ch.ior.as_ref().map(ior_key);
        self.tx
            .prepare_cached(
                "INSERT INTO entries (filer, number, version, deleted, ior, claims) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (filer, number) DO UPDATE SET version = ?3, deleted = ?4, ior = coalesce(?5, ior),
                 claims = ?6",
            )?
            .execute(params![
                filer,
                number,
                ch.version,
                ch.deleted,
                ior,
                pack_claims(&claims)
            ])?;
        if let Some(ior) = ior {
            let mut known = self.rights_known.borrow_mut();
            if known.insert((filer.to_string(), ior.clone())) {
                self.tx
                    .prepare_cached("INSERT OR IGNORE INTO query_rights (filer, ior, granted) VALUES (?1, ?2, 0)")?
                    .execute(params![filer, ior])?;
            }
        }
        Ok(())
    }

    /// Whether `filer` may query `ior`: it filed an accepted entry for it, or was granted.
    pub fn may_query(&self, filer: FilerCode, ior: &IorNumber) -> Result<bool> {
        Ok(self
            .tx
            .prepare_cached("SELECT 1 FROM query_rights WHERE filer = ?1 AND ior = ?2")?
            .query_row(params![filer.as_str(), ior_key(ior)], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Certificates with their usage events: `filter` selects certificates
    /// (alias `c`) and `order` orders them; the events of all of them come
    /// from one range scan per certificate, grouped by certificate, and the
    /// last one read gives the certificate's balance.
    fn usage_query(
        &self,
        filter: &str,
        order: &str,
        p: &[&dyn rusqlite::ToSql],
        out: &mut dyn FnMut(Certificate, Vec<UsageEvent>) -> Result<()>,
    ) -> Result<()> {
        self.flush()?;
        // Per certificate: its events, oldest first, and its balance.
        let mut events: FxHashMap<i64, (Vec<UsageEvent>, i64)> = FxHashMap::default();
        {
            let mut stmt = self.tx.prepare_cached(&format!(
                "SELECT u.filer, u.number, u.line, u.kind, u.quantity, u.date, u.version, u.certificate, u.used
                 FROM usage_events u WHERE u.certificate IN (SELECT c.id FROM certificates c WHERE {filter})
                 ORDER BY u.certificate, u.seq"
            ))?;
            let mut rows = stmt.query(p)?;
            while let Some(r) = rows.next()? {
                let id: i64 = r.get(7)?;
                if let Some(e) = event_from_row(r, 0, id)? {
                    let (list, used) = events.entry(id).or_default();
                    list.push(e);
                    *used = r.get(8)?;
                }
            }
        }
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {} FROM certificates c WHERE {filter} ORDER BY {order}",
            cert_columns!("0")
        ))?;
        let mut rows = stmt.query(p)?;
        while let Some(r) = rows.next()? {
            let mut c = certificate_from_row(r)?.map_err(StoreError::Corrupt)?;
            let (e, used) = events.remove(&c.id).unwrap_or_default();
            c.used = Hundredths::new(
                u64::try_from(used).map_err(|_| StoreError::Corrupt(format!("balance of certificate {}", c.id)))?,
            );
            out(c, e)?;
        }
        Ok(())
    }

    /// Certificates naming `ior` with their usage events, by country then
    /// number, events oldest first, streamed to `out`.
    pub fn usage_for_ior(
        &self,
        ior: &IorNumber,
        quota_year: Option<u16>,
        out: &mut dyn FnMut(Certificate, Vec<UsageEvent>) -> Result<()>,
    ) -> Result<()> {
        let ior = ior_key(ior);
        match quota_year {
            Some(y) => self.usage_query(
                "c.ior = ?1 AND c.quota_year = ?2",
                "c.country, c.number",
                &[&ior, &y],
                out,
            ),
            None => self.usage_query("c.ior = ?1", "c.country, c.number", &[&ior], out),
        }
    }

    /// A country's certificates in a condition with their usage events, by
    /// number, events oldest first, streamed to `out`.
    pub fn usage_of_country(
        &self,
        country: Country,
        condition: UsageCondition,
        issued_from: Option<Date>,
        issued_to: Option<Date>,
        out: &mut dyn FnMut(Certificate, Vec<UsageEvent>) -> Result<()>,
    ) -> Result<()> {
        let cond = match condition {
            UsageCondition::Matched => concat!("c.cancelled = 0 AND ", balance!(), " > 0"),
            UsageCondition::Unmatched => concat!("c.cancelled = 0 AND ", balance!(), " = 0"),
            UsageCondition::Cancelled => "c.cancelled = 1",
        };
        let from = issued_from.map(Date::ccyymmdd).unwrap_or(0);
        let to = issued_to.map(Date::ccyymmdd).unwrap_or(99_999_999);
        self.usage_query(
            &format!("c.country = ?1 AND {cond} AND c.issued BETWEEN ?2 AND ?3"),
            "c.number",
            &[&country.as_str(), &from, &to],
            out,
        )
    }

    /// The usage events of a certificate, oldest first.
    pub fn usage_events(&self, certificate: i64) -> Result<Vec<UsageEvent>> {
        self.flush()?;
        let mut stmt = self.tx.prepare_cached(
            "SELECT filer, number, line, kind, quantity, date, version FROM usage_events
             WHERE certificate = ?1 ORDER BY seq",
        )?;
        let mut rows = stmt.query([certificate])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.extend(event_from_row(r, 0, certificate)?);
        }
        Ok(out)
    }

    /// The digest and response of an earlier batch with this reference.
    pub fn batch_seen(&self, sender: &str, reference: &str) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let row: Option<(Vec<u8>, Vec<u8>)> = self
            .tx
            .prepare_cached("SELECT digest, response FROM batches WHERE sender = ?1 AND reference = ?2")?
            .query_row(params![sender, reference], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        row.map(|(digest, packed)| Ok((digest, unpack_response(&packed)?)))
            .transpose()
    }

    pub fn remember_batch(&self, sender: &str, reference: &str, digest: &[u8], response: &[u8]) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT OR IGNORE INTO batches (sender, reference, digest, response) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![sender, reference, digest, pack_response(response)])?;
        Ok(())
    }

    /// The store's record of a claimed input file.
    pub fn input(&self, claim: &str) -> Result<Option<InputRecord>> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT claim, name, channel, sender, destination, batches_done, complete, published
                 FROM inputs WHERE claim = ?1",
            )?
            .query_row([claim], |r| {
                Ok(InputRecord {
                    claim: r.get(0)?,
                    name: r.get(1)?,
                    channel: r.get(2)?,
                    sender: r.get(3)?,
                    destination: r.get(4)?,
                    batches_done: r.get(5)?,
                    complete: r.get(6)?,
                    published: r.get(7)?,
                })
            })
            .optional()?)
    }

    /// Records the outcome of batch `idx` of an input file; called in the
    /// same transaction as the batch's effects.
    pub fn record_input_batch(
        &self,
        claim: &str,
        name: &str,
        channel: &str,
        idx: u64,
        destination: Option<(&str, &str)>,
        batch: &InputBatch,
    ) -> Result<()> {
        self.tx
            .prepare_cached("INSERT OR IGNORE INTO inputs (claim, name, channel) VALUES (?1, ?2, ?3)")?
            .execute(params![claim, name, channel])?;
        if let Some((sender, dest)) = destination {
            self.tx
                .prepare_cached(
                    "UPDATE inputs SET sender = ?2, destination = ?3 WHERE claim = ?1 AND destination IS NULL",
                )?
                .execute(params![claim, sender, dest])?;
        }
        self.tx
            .prepare_cached(
                "INSERT INTO input_batches (claim, idx, app, outcome, accepted, rejected, response)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                claim,
                idx,
                batch.app,
                batch.outcome,
                batch.accepted,
                batch.rejected,
                pack_response(&batch.response)
            ])?;
        self.tx
            .prepare_cached(
                "UPDATE inputs SET batches_done = ?2, accepted = accepted + ?3, rejected = rejected + ?4 WHERE claim = ?1",
            )?
            .execute(params![claim, idx + 1, batch.accepted, batch.rejected])?;
        Ok(())
    }

    pub fn complete_input(&self, claim: &str, name: &str, channel: &str) -> Result<()> {
        self.tx
            .prepare_cached("INSERT OR IGNORE INTO inputs (claim, name, channel) VALUES (?1, ?2, ?3)")?
            .execute(params![claim, name, channel])?;
        self.tx
            .prepare_cached("UPDATE inputs SET complete = 1 WHERE claim = ?1")?
            .execute([claim])?;
        Ok(())
    }

    /// The path (relative to the spool root) the response of `claim` is
    /// published under: the one chosen before, else `preferred` when no other
    /// input holds it, else `fallback`.
    pub fn reserve_response_path(&self, claim: &str, preferred: &str, fallback: &str) -> Result<String> {
        let chosen: Option<Option<String>> = self
            .tx
            .prepare_cached("SELECT response FROM inputs WHERE claim = ?1")?
            .query_row([claim], |r| r.get(0))
            .optional()?;
        if let Some(Some(path)) = chosen {
            return Ok(path);
        }
        let taken: bool = self
            .tx
            .prepare_cached("SELECT 1 FROM inputs WHERE response = ?1")?
            .query_row([preferred], |_| Ok(()))
            .optional()?
            .is_some();
        let path = if taken { fallback } else { preferred };
        self.tx
            .prepare_cached("UPDATE inputs SET response = ?2 WHERE claim = ?1")?
            .execute(params![claim, path])?;
        Ok(path.to_string())
    }

    pub fn mark_published(&self, claim: &str) -> Result<()> {
        self.tx
            .prepare_cached("UPDATE inputs SET published = 1 WHERE claim = ?1")?
            .execute([claim])?;
        Ok(())
    }

    /// The stored batches of an input file, in order.
    pub fn input_batches(&self, claim: &str) -> Result<Vec<InputBatch>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT app, outcome, accepted, rejected, response FROM input_batches WHERE claim = ?1 ORDER BY idx",
        )?;
        let rows = stmt
            .query_map([claim], |r| {
                Ok(InputBatch {
                    app: r.get(0)?,
                    outcome: r.get(1)?,
                    accepted: r.get(2)?,
                    rejected: r.get(3)?,
                    response: r.get::<_, Vec<u8>>(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|mut b| {
                b.response = unpack_response(&b.response)?;
                Ok(b)
            })
            .collect()
    }

    /// The greatest claim name of any input file recorded (claim names
    /// begin with a fixed-width sequence, so this is the latest claim).
    pub fn last_claim(&self) -> Result<Option<String>> {
        Ok(self
            .tx
            .query_row("SELECT max(claim) FROM inputs", [], |r| r.get::<_, Option<String>>(0))?)
    }

    /// Every usage event's balance next to the replay of its certificate's
    /// events up to it: `(certificate, used, replayed)` for each event where
    /// they differ, whose `seq` leaves a gap (a lost event), or whose
    /// certificate is not on file.
    pub fn ledger_mismatches(&self) -> Result<Vec<(i64, i64, i64)>> {
        self.flush()?;
        let mut stmt = self.tx.prepare(
            "SELECT certificate, used, replayed FROM (
                 SELECT certificate, seq, used,
                     sum(CASE kind WHEN 'D' THEN quantity ELSE -quantity END) OVER w AS replayed,
                     row_number() OVER w AS n
                 FROM usage_events WINDOW w AS (PARTITION BY certificate ORDER BY seq)) e
             WHERE used <> replayed OR seq <> n
                 OR NOT EXISTS (SELECT 1 FROM certificates c WHERE c.id = e.certificate)
             ORDER BY certificate, seq",
        )?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Counts for `ecertd status`: certificates, entries, usage events, inputs.
    pub fn counts(&self) -> Result<Vec<(&'static str, i64)>> {
        self.flush()?;
        let mut out = Vec::new();
        for (name, sql) in [
            ("certificates", "SELECT count(*) FROM certificates"),
            ("entries", "SELECT count(*) FROM entries"),
            ("usage_events", "SELECT count(*) FROM usage_events"),
            ("inputs_processed", "SELECT count(*) FROM inputs WHERE complete = 1"),
            ("batches_remembered", "SELECT count(*) FROM batches"),
        ] {
            out.push((name, self.tx.query_row(sql, [], |r| r.get(0))?));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
