//! `ecertd serve` and `ecertd status`.
//!
//! Threads: the store thread ([`crate::worker`]) owns the SQLite store; the
//! spool thread (this module) picks up, processes and publishes files, one
//! at a time in claim order; a tokio runtime runs the TCP endpoint
//! ([`crate::net`]), the metrics endpoint ([`crate::metrics`]) and the
//! signal handling.
//!
//! The life of a drop file `inbound/CHANNEL/NAME`:
//!
//! 1. found by a scan (at start, on every inotify event, every
//!    `poll_interval_ms`); dot-names are never looked at; anything but a
//!    regular file with one link, an accepted name and an accepted size is
//!    moved to `rejected/` with a `.why` note (never opened, never followed),
//!    or left alone when it cannot be moved;
//! 2. claimed: renamed to `work/SEQ-CHANNEL-NAME` and the folders synced;
//! 3. processed: its batches go to the engine in groups, each group one
//!    store transaction holding the batches' effects and responses and the
//!    input's progress; the last one also marks the input complete;
//! 4. published: the stored responses are written to a temporary name,
//!    synced and renamed to `outbound/SENDER/SEQ-NAME.resp` (or
//!    `rejected/NAME.resp` when the first batch did not authenticate, see
//!    [`crate::spool`]);
//!    the journal lines are appended; the store marks the input published;
//! 5. filed: the input moves to `archive/SEQ-CHANNEL-NAME` (or, when it did
//!    not authenticate, to `rejected/NAME` with a `.why` note).
//!
//! A stop at any point is repaired at start-up from `work/` and the store:
//! nothing committed is applied again, and the stored responses are
//! published. Failures of the store or the disk leave the input in `work/`
//! and it is retried with a growing delay.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, BufReader, Read};
use std::ops::Bound::{Excluded, Unbounded};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context as _, Result};

use crate::config::{LogFormat, Settings};
use crate::engine::{Ahead, BatchResult, Engine, EngineError, Session};
use crate::envelope::Channel;
use crate::fault::Faults;
use crate::journal::{self, Journal, Line};
use crate::metrics::Metrics;
use crate::record::{BatchReader, RawBatch};
use crate::spool::{self, Claim, Found, Layout, Refusal, SeqGen, CHANNELS};
use crate::store::Store;
use crate::types::Date;
use crate::worker::{StoreHandle, StoreWorker};

/// Files claimed per scan at most (then processed before the next scan).
/// A scan lists (and `lstat`s) every waiting name, so a flood of N files
/// costs N²/CLAIM_ROUND `lstat`s in all; a claim waiting costs a few
/// hundred bytes.
const CLAIM_ROUND: usize = 1024;
/// Records per transaction at most, whatever `group_batches` says.
const GROUP_RECORDS: usize = 100_000;
/// Records from which a group reads its certificates ahead on a second
/// connection and thread (setting `lookahead`).
const LOOKAHEAD_RECORDS: usize = 2_000;

/// The business date of a batch processed now.
pub fn business_date(fixed: Option<Date>) -> Date {
    fixed.unwrap_or_else(Date::today_utc)
}

/// Set once when the daemon is asked to stop.
#[derive(Default)]
pub struct Stop {
    flag: AtomicBool,
    /// After this instant, a file being processed is left (resumable) in `work/`.
    deadline: OnceLock<Instant>,
}

impl Stop {
    pub fn request(&self, grace: Duration) {
        let _ = self.deadline.set(Instant::now() + grace);
        self.flag.store(true, Ordering::SeqCst);
    }

    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    fn past_deadline(&self) -> bool {
        self.requested() && self.deadline.get().map(|d| Instant::now() >= *d).unwrap_or(false)
    }
}

/// Why the processing of a claim did not finish.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// `blocking`: a condition of the whole store (locked, full, read-only,
    /// or a damaged file); later claims wait behind this one meanwhile.
    #[error("store: {msg}")]
    Store { msg: String, blocking: bool },
    #[error("{0}")]
    Io(String),
    #[error("stopped at the shutdown deadline; resumes at the next start")]
    Interrupted,
}

impl Failure {
    fn store(msg: String) -> Failure {
        Failure::Store { msg, blocking: false }
    }
}

impl From<crate::worker::WorkerGone> for Failure {
    fn from(e: crate::worker::WorkerGone) -> Self {
        Failure::store(e.to_string())
    }
}

impl From<crate::store::StoreError> for Failure {
    fn from(e: crate::store::StoreError) -> Self {
        Failure::Store {
            blocking: e.is_transient() || e.is_corrupt(),
            msg: e.to_string(),
        }
    }
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Store(s) => s.into(),
            EngineError::Read(e) => Failure::Io(format!("reading input: {e}")),
        }
    }
}

fn io_failure(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> Failure {
    move |e| Failure::Io(format!("{what}: {e}"))
}

/// A claim waiting to be (re)processed.
struct Pending {
    claim: Claim,
    attempts: u32,
    not_before: Instant,
    claimed_at: Instant,
    /// The claim's rename is not known to be on disk yet.
    unsynced: bool,
}

/// The spool thread's state.
pub struct SpoolLoop {
    layout: Layout,
    settings: Settings,
    store: StoreHandle,
    journal: Arc<Journal>,
    metrics: Arc<Metrics>,
    stop: Arc<Stop>,
    wake: mpsc::Receiver<()>,
    seq: SeqGen,
    queue: BTreeMap<String, Pending>,
    /// Batches already journaled, for claims resumed after a stop.
    journaled: HashMap<String, HashSet<u64>>,
    /// Entries that could not be moved, not to be tried (and logged) again.
    left_alone: HashSet<(Channel, Vec<u8>, u64)>,
    scan_errors: HashSet<String>,
    /// The fault-injection seam ([`crate::fault`]; inert unless enabled).
    faults: Faults,
    /// After a store failure of the whole store (locked, full, read-only,
    /// damaged; see [`Failure::Store`]), no claim
    /// is processed before this instant, when the failed one is retried
    /// first: claims are applied in claim order, and a later input must not
    /// overtake one that the store could not take yet (it would see a
    /// ledger without the earlier input's effects).
    blocked_until: Option<Instant>,
}

impl SpoolLoop {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        layout: Layout,
        settings: Settings,
        store: StoreHandle,
        journal: Arc<Journal>,
        metrics: Arc<Metrics>,
        stop: Arc<Stop>,
        wake: mpsc::Receiver<()>,
        faults: Faults,
    ) -> SpoolLoop {
        SpoolLoop {
            layout,
            settings,
            store,
            journal,
            metrics,
            stop,
            wake,
            seq: SeqGen::default(),
            queue: BTreeMap::new(),
            journaled: HashMap::new(),
            left_alone: HashSet::new(),
            scan_errors: HashSet::new(),
            faults,
            blocked_until: None,
        }
    }

    /// Start-up repair: temporary files, the journal's last line, and the
    /// claims found in `work/`.
    pub fn recover(&mut self) -> Result<()> {
        let n = spool::remove_temps(&self.layout).context("removing temporary files")?;
        if n > 0 {
            tracing::info!(files = n, "removed temporary files left by an earlier stop");
        }
        self.journal.repair().context("repairing the journal")?;
        let last = self
            .store
            .call_blocking(|s| s.read(|tx| tx.last_claim()))
            .map_err(|e| anyhow!("{e}"))?
            .context("reading the store")?;
        if let Some(c) = last {
            if let Some(seq) = c.get(..spool::SEQ_LEN) {
                self.seq.observe(seq);
            }
        }
        // Names in rejected/ carry sequences too (refused entries are not in the store).
        if let Ok(rd) = std::fs::read_dir(self.layout.rejected()) {
            for e in rd.flatten() {
                if let Some(seq) = e.file_name().to_str().and_then(|n| n.get(..spool::SEQ_LEN)) {
                    self.seq.observe(seq);
                }
            }
        }
        let work = self.layout.work();
        let now = Instant::now();
        for e in std::fs::read_dir(&work).with_context(|| format!("listing {}", work.display()))? {
            let e = e?;
            let name = e.file_name();
            let Some(claim) = name.to_str().and_then(Claim::parse) else {
                if !name.to_string_lossy().starts_with('.') {
                    tracing::warn!(entry = %spool::escape_os(&name), "work/ holds an entry this daemon did not claim; left alone");
                }
                continue;
            };
            self.seq.observe(&claim.seq);
            self.queue.insert(
                claim.id.clone(),
                Pending {
                    claim,
                    attempts: 0,
                    not_before: now,
                    claimed_at: now,
                    unsynced: false,
                },
            );
        }
        if !self.queue.is_empty() {
            let ids: HashSet<String> = self.queue.keys().cloned().collect();
            self.journaled = self.journal.journaled(&ids).context("reading the journal")?;
            tracing::info!(claims = self.queue.len(), "resuming files left in work/");
        }
        Ok(())
    }

    /// Runs until a stop is requested; the file in progress is finished first.
    pub fn run(mut self) {
        loop {
            if self.stop.requested() {
                break;
            }
            while self.wake.try_recv().is_ok() {}
            self.scan_and_claim();
            self.process_due();
            if self.stop.requested() {
                break;
            }
            let mut wait = self.settings.poll_interval;
            if let Some(p) = self.queue.values().map(|p| p.not_before).min() {
                let p = self.blocked_until.map_or(p, |b| p.max(b));
                wait = wait.min(p.saturating_duration_since(Instant::now()));
            }
            match self.wake.recv_timeout(wait) {
                Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
            }
        }
        if !self.queue.is_empty() {
            tracing::info!(
                claims = self.queue.len(),
                "stopping with files in work/; they resume at the next start"
            );
        }
    }

    fn scan_and_claim(&mut self) {
        if self.stop.requested() {
            return;
        }
        let max = self.settings.max_file_bytes;
        let mut ready = Vec::new();
        for ch in CHANNELS {
            let dir = self.layout.inbound(ch);
            // The drop folder itself must be a folder, not a link to one elsewhere.
            if !std::fs::symlink_metadata(&dir).map(|m| m.is_dir()).unwrap_or(false) {
                if self.scan_errors.insert(ch.name().to_string()) {
                    tracing::error!(folder = %dir.display(), "drop folder is missing or not a real folder (a link?); not scanned");
                }
                continue;
            }
            match spool::scan(&dir, max) {
                Ok(found) => {
                    self.scan_errors.remove(ch.name());
                    for f in found {
                        match f {
                            Found::Ready { name, mtime, .. } => ready.push((mtime, name, ch.name())),
                            Found::Refused { raw, refusal, ino } => self.refuse_entry(ch, raw, refusal, ino),
                        }
                    }
                }
                Err(e) => {
                    if self.scan_errors.insert(ch.name().to_string()) {
                        tracing::error!(folder = %dir.display(), error = %e, "cannot list drop folder");
                    }
                }
            }
        }
        ready.sort();
        let mut claimed = Vec::new();
        let mut touched = HashSet::new();
        for (_, name, ch) in ready.into_iter().take(CLAIM_ROUND) {
            let Some(ch) = spool::channel_by_name(ch) else { continue };
            let from = self.layout.inbound(ch).join(&name);
            loop {
                let claim = Claim::new(&self.seq.next_seq(), ch, &name);
                match spool::rename_noreplace(&from, &self.layout.work().join(&claim.id)) {
                    Ok(()) => {
                        touched.insert(ch);
                        claimed.push(claim);
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        if self.scan_errors.insert(format!("claim {}/{name}", ch.name())) {
                            tracing::warn!(file = %name, channel = ch.name(), error = %e, "cannot claim file; will retry");
                        }
                        self.metrics.failure("io");
                    }
                }
                break;
            }
        }
        if claimed.is_empty() {
            return;
        }
        // The claims must be on disk before anything is committed under their names.
        let synced = self.sync_claims(touched.into_iter().collect());
        let now = Instant::now();
        for claim in claimed {
            tracing::debug!(claim = %claim.id, "claimed");
            self.queue.insert(
                claim.id.clone(),
                Pending {
                    claim,
                    attempts: 0,
                    not_before: now,
                    claimed_at: now,
                    unsynced: !synced,
                },
            );
        }
    }

    /// Syncs `work/` and the drop folders claims were renamed from.
    fn sync_claims(&self, from: Vec<Channel>) -> bool {
        let mut result = spool::sync_dir(&self.layout.work());
        for ch in from {
            result = result.and(spool::sync_dir(&self.layout.inbound(ch)));
        }
        match result {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "cannot sync spool folders after claiming; processing waits");
                self.metrics.failure("io");
                false
            }
        }
    }

    fn process_due(&mut self) {
        let ids: Vec<String> = self.queue.keys().cloned().collect();
        for id in ids {
            if self.stop.requested() {
                return;
            }
            if self.blocked_until.is_some_and(|t| Instant::now() < t) {
                return;
            }
            let due = self
                .queue
                .get(&id)
                .map(|p| p.not_before <= Instant::now())
                .unwrap_or(false);
            if !due {
                continue;
            }
            let Some(mut pending) = self.queue.remove(&id) else {
                continue;
            };
            if pending.unsynced {
                if self.sync_claims(CHANNELS.to_vec()) {
                    pending.unsynced = false;
                } else {
                    pending.attempts += 1;
                    pending.not_before = Instant::now() + backoff(pending.attempts, self.settings.retry_max);
                    self.queue.insert(id, pending);
                    continue;
                }
            }
            match self.handle(&pending.claim, pending.claimed_at) {
                Ok(()) => {
                    self.journaled.remove(&id);
                    self.blocked_until = None;
                }
                Err(Failure::Interrupted) => {
                    tracing::warn!(claim = %id, "stopped between transactions at the shutdown deadline; resumes at the next start");
                    self.queue.insert(id, pending);
                    return;
                }
                Err(f) => {
                    let attempts = pending.attempts + 1;
                    let delay = backoff(attempts, self.settings.retry_max);
                    let kind = match f {
                        Failure::Store { .. } => "store",
                        _ => "io",
                    };
                    let blocking = matches!(f, Failure::Store { blocking: true, .. });
                    self.metrics.failure(kind);
                    tracing::error!(
                        claim = %id,
                        attempt = attempts,
                        retry_in_ms = delay.as_millis() as u64,
                        held_back = if blocking {
                            self.queue.range::<String, _>((Excluded(&id), Unbounded)).count()
                        } else {
                            0
                        },
                        error = %f,
                        "processing failed; the file stays in work/ and is retried"
                    );
                    let not_before = Instant::now() + delay;
                    self.queue.insert(
                        id,
                        Pending {
                            attempts,
                            not_before,
                            ..pending
                        },
                    );
                    if blocking {
                        // The claims after this one wait for its retry.
                        self.blocked_until = Some(not_before);
                        return;
                    }
                }
            }
        }
    }

    /// Moves a hostile drop-folder entry to `rejected/` with a `.why` note,
    /// or leaves it alone when it cannot be moved.
    fn refuse_entry(&mut self, ch: Channel, raw: Vec<u8>, refusal: Refusal, ino: u64) {
        let key = (ch, raw.clone(), ino);
        if self.left_alone.contains(&key) {
            return;
        }
        use std::os::unix::ffi::OsStrExt;
        let from = self.layout.inbound(ch).join(std::ffi::OsStr::from_bytes(&raw));
        let shown = crate::diagnose::escape(&raw);
        let rejected = self.layout.rejected();
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            let target = format!("{}-{}", self.seq.next_seq(), spool::safe_name(&raw));
            let note = format!(
                "ecertd refused this entry of inbound/{}.\nname: {shown}\nreason: {refusal}\ntime: {}\nmoved to: rejected/{target}\n",
                ch.name(),
                journal::format_time(SystemTime::now()),
            );
            let why = format!("{target}.why");
            if let Err(e) = spool::write_atomic(&rejected, &why, note.as_bytes()) {
                break Err(e);
            }
            match spool::rename_noreplace(&from, &rejected.join(&target)) {
                Ok(()) => break spool::sync_dir(&rejected).map(|_| target),
                Err(e) => {
                    let _ = std::fs::remove_file(rejected.join(&why));
                    if e.kind() == io::ErrorKind::AlreadyExists && attempt < 5 {
                        continue;
                    }
                    break Err(e);
                }
            }
        };
        match result {
            Ok(target) => {
                self.metrics.refused(refusal.label());
                tracing::warn!(entry = %shown, channel = ch.name(), reason = %refusal, moved_to = %format!("rejected/{target}"), "refused a drop-folder entry");
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                self.left_alone.insert(key);
                self.metrics.refused("left_alone");
                tracing::warn!(entry = %shown, channel = ch.name(), reason = %refusal, error = %e, "cannot move a refused entry safely; left alone");
            }
        }
    }

    /// A claimed file turned out hostile (swapped after the scan): to `rejected/`.
    fn refuse_claimed(&mut self, claim: &Claim, refusal: Refusal) -> Result<(), Failure> {
        let rejected = self.layout.rejected();
        let target = claim.rejected_name();
        let note = format!(
            "ecertd refused this input of inbound/{}.\nname: {}\nreason: {refusal}\ntime: {}\n",
            claim.channel.name(),
            claim.name,
            journal::format_time(SystemTime::now()),
        );
        spool::write_atomic(&rejected, &format!("{target}.why"), note.as_bytes())
            .map_err(io_failure("writing note"))?;
        spool::rename_noreplace(&self.layout.work().join(&claim.id), &rejected.join(&target))
            .map_err(io_failure("moving refused input"))?;
        spool::sync_dir(&rejected).map_err(io_failure("syncing rejected/"))?;
        self.metrics.refused(refusal.label());
        tracing::warn!(claim = %claim.id, reason = %refusal, "refused a claimed file");
        Ok(())
    }

    fn date(&self) -> Date {
        business_date(self.settings.business_date)
    }

    /// Takes one claim as far as it goes: process what is not committed,
    /// publish, journal, file the input. Idempotent: safe after any stop.
    fn handle(&mut self, claim: &Claim, claimed_at: Instant) -> Result<(), Failure> {
        let id = claim.id.clone();
        let rec = self.store.call_blocking(move |s| s.read(|tx| tx.input(&id)))??;
        let (complete, published, done) = match &rec {
            Some(r) => (r.complete, r.published, r.batches_done),
            None => (false, false, 0),
        };
        if !complete {
            let path = self.layout.work().join(&claim.id);
            let file = match spool::open_claimed(&path, self.settings.max_file_bytes) {
                Ok(Ok(f)) => f,
                Ok(Err(refusal)) if rec.is_none() => return self.refuse_claimed(claim, refusal),
                Ok(Err(refusal)) => {
                    return Err(Failure::Io(format!(
                        "{} changed after batches were committed: {refusal}",
                        path.display()
                    )))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && rec.is_none() => {
                    tracing::warn!(claim = %claim.id, "claimed file vanished from work/");
                    return Ok(());
                }
                Err(e) => return Err(Failure::Io(format!("opening {}: {e}", path.display()))),
            };
            self.apply(claim, file, done)?;
        }
        self.publish(claim, published, claimed_at)
    }

    /// Feeds the batches after the first `skip` to the engine, group by group.
    fn apply(&mut self, claim: &Claim, file: std::fs::File, skip: u64) -> Result<(), Failure> {
        let input = BufReader::with_capacity(128 << 10, file.take(self.settings.max_file_bytes));
        let mut reader = BatchReader::new(input);
        let mut session = Session::new(claim.channel);
        let mut index = 0u64;
        let read = |r: &mut BatchReader<_>| r.next_batch().map_err(io_failure(format!("reading {}", claim.id)));
        if skip > 0 {
            if let Some(first) = read(&mut reader)? {
                let date = self.date();
                session = self.store.call_blocking(move |s| -> Result<Session, EngineError> {
                    Engine::new(s, date).prime(&mut session, &first)?;
                    Ok(session)
                })??;
                index = 1;
            }
            while index < skip {
                if read(&mut reader)?.is_none() {
                    break;
                }
                index += 1;
            }
            tracing::info!(claim = %claim.id, skipped = index, "resuming a partly processed file");
        }
        let mut next = read(&mut reader)?;
        if next.is_none() {
            let (id, name, ch) = (claim.id.clone(), claim.name.clone(), claim.channel.name());
            self.store
                .call_blocking(move |s| s.write(|tx| tx.complete_input(&id, &name, ch)))??;
            return Ok(());
        }
        let group_max = self.settings.group_batches.max(1);
        // Up to `group_max` batches, and no more once GROUP_RECORDS records
        // are reached, with their record count; `next` is left holding the
        // batch after the group.
        let mut take_group = |next: &mut Option<RawBatch>| -> Result<(Arc<Vec<RawBatch>>, usize), Failure> {
            let mut group = Vec::new();
            let mut records = 0;
            while let Some(b) = next.take() {
                records += b.len();
                group.push(b);
                *next = read(&mut reader)?;
                if group.len() >= group_max || records >= GROUP_RECORDS {
                    break;
                }
            }
            Ok((Arc::new(group), records))
        };
        let (mut group, mut records) = take_group(&mut next)?;
        // A small group (the usual file of one batch) is not worth a
        // hand-off to another thread. Once a file has a group large enough,
        // every later group of it uses the look-ahead too: the group after
        // the current one is read from the file before the current one
        // commits, and its certificates are swept meanwhile (as `ecertd
        // process` does).
        let mut ahead: Option<Ahead> = None;
        let mut reading_ahead = false;
        loop {
            reading_ahead |= self.settings.lookahead && records >= LOOKAHEAD_RECORDS;
            let following = match next.is_some() && reading_ahead {
                true => Some(take_group(&mut next)?),
                false => None,
            };
            let last = next.is_none() && following.is_none();
            let (id, name, date, first) = (claim.id.clone(), claim.name.clone(), self.date(), index);
            let (current, carried) = (group.clone(), ahead.take());
            let sweep_next = following.as_ref().map(|(g, _)| g.clone());
            let (s, results, left) = self.store.call_blocking(move |s| {
                let mut engine = Engine::new(s, date);
                if reading_ahead {
                    engine = engine.with_ahead(carried);
                }
                let r =
                    engine.process_input_group(&mut session, &current, &id, &name, first, last, sweep_next.as_ref());
                let counts = (engine.batches_read_ahead(), engine.groups_swept());
                (session, r.map(|r| (r, counts)), engine.into_ahead())
            })?;
            session = s;
            ahead = left;
            let (results, (batches_read_ahead, groups_swept)) = results?;
            if batches_read_ahead > 0 {
                tracing::debug!(
                    claim = %claim.id,
                    batches = batches_read_ahead,
                    swept = groups_swept,
                    "certificates read ahead"
                );
            }
            index += results.len() as u64;
            for r in &results {
                self.count(r);
                let codes = access_refusals(&r.response);
                if !codes.is_empty() {
                    tracing::warn!(
                        claim = %claim.id,
                        sender = %crate::diagnose::escape(r.sender.as_bytes()),
                        app = r.app.map(|a| a.id()).unwrap_or("-"),
                        codes = %codes.join(","),
                        "access refused"
                    );
                }
            }
            if last {
                return Ok(());
            }
            if self.stop.past_deadline() {
                return Err(Failure::Interrupted);
            }
            (group, records) = match following {
                Some(f) => f,
                None => take_group(&mut next)?,
            };
        }
    }

    fn count(&self, r: &BatchResult) {
        let app = r.app.map(|a| a.id()).unwrap_or("-");
        self.metrics
            .batch("file", app, r.outcome.name(), r.accepted, r.rejected, r.claims_applied);
    }

    /// Publishes the stored response, journals, marks published, files the input.
    fn publish(&mut self, claim: &Claim, already: bool, claimed_at: Instant) -> Result<(), Failure> {
        let id = claim.id.clone();
        let (rec, batches) = self.store.call_blocking(move |s| {
            s.read(|tx| Ok::<_, crate::store::StoreError>((tx.input(&id)?, tx.input_batches(&id)?)))
        })??;
        let rec = rec.ok_or_else(|| Failure::store(format!("input {} has no record after processing", claim.id)))?;
        let outbound_sender = match (rec.destination.as_deref(), rec.sender.as_deref()) {
            (Some("outbound"), Some(s)) if spool::valid_name(s.as_bytes()) && !s.starts_with('.') => {
                Some(s.to_string())
            }
            (Some("outbound"), s) => {
                return Err(Failure::store(format!(
                    "input {} has an unusable sender {:?}",
                    claim.id,
                    s.map(|s| crate::diagnose::escape(s.as_bytes()))
                )))
            }
            _ => None,
        };
        // Outbound: `SEQ-NAME.resp`, unique by construction. Rejected: the
        // spec's `rejected/NAME.resp` beside the input, unless another input
        // of that name holds it (then `SEQ-NAME`); chosen once, in the store.
        let rejected_base = match &outbound_sender {
            Some(_) => None,
            None => {
                let dir = self.layout.rejected();
                let free = !dir.join(&claim.name).exists() && !dir.join(format!("{}.resp", claim.name)).exists();
                let fallback = format!("rejected/{}.resp", claim.rejected_name());
                let want = if free {
                    format!("rejected/{}.resp", claim.name)
                } else {
                    fallback.clone()
                };
                let id = claim.id.clone();
                let path = self
                    .store
                    .call_blocking(move |s| s.write(|tx| tx.reserve_response_path(&id, &want, &fallback)))??;
                let base = path
                    .strip_prefix("rejected/")
                    .and_then(|p| p.strip_suffix(".resp"))
                    .filter(|b| spool::valid_name(b.as_bytes()))
                    .ok_or_else(|| Failure::store(format!("input {} has an unusable response path", claim.id)))?;
                Some(base.to_string())
            }
        };
        let response_name = match &rejected_base {
            Some(base) => format!("{base}.resp"),
            None => claim.response_name(),
        };
        let (dir, shown) = match &outbound_sender {
            Some(s) => (self.layout.outbound().join(s), format!("outbound/{s}/{response_name}")),
            None => (self.layout.rejected(), format!("rejected/{response_name}")),
        };
        if !already && !rec.published {
            if outbound_sender.is_some() && self.faults.active().outbound_unwritable {
                return Err(Failure::Io(format!("publishing {shown}: {}", Faults::outbound_error())));
            }
            if outbound_sender.is_some() && !dir.is_dir() {
                std::fs::create_dir_all(&dir).map_err(io_failure(format!("creating {}", dir.display())))?;
                spool::sync_dir(&self.layout.outbound()).map_err(io_failure("syncing outbound/"))?;
            }
            let mut bytes = Vec::with_capacity(batches.iter().map(|b| b.response.len()).sum());
            for b in &batches {
                bytes.extend_from_slice(&b.response);
            }
            spool::write_atomic(&dir, &response_name, &bytes).map_err(io_failure(format!("publishing {shown}")))?;
            let done = self.journaled.entry(claim.id.clone()).or_default();
            let total = batches.len() as u64;
            let sender = outbound_sender.clone().unwrap_or_else(|| "-".into());
            let lines: Vec<Line> = batches
                .iter()
                .enumerate()
                .filter(|(i, _)| !done.contains(&(*i as u64)))
                .map(|(i, b)| Line {
                    input: claim.name.clone(),
                    claim: claim.id.clone(),
                    batch: i as u64,
                    batches: Some(total),
                    channel: claim.channel.name().into(),
                    sender: sender.clone(),
                    app: if b.app.is_empty() { "-".into() } else { b.app.clone() },
                    outcome: b.outcome.clone(),
                    accepted: b.accepted,
                    rejected: b.rejected,
                    response: shown.clone(),
                })
                .collect();
            self.journal
                .append(&lines)
                .map_err(io_failure("appending to the journal"))?;
            done.extend(0..total);
            let id = claim.id.clone();
            self.store
                .call_blocking(move |s| s.write(|tx| tx.mark_published(&id)))??;
        }
        // File the input.
        let from = self.layout.work().join(&claim.id);
        let outcome = match outbound_sender {
            Some(_) => {
                match spool::rename_noreplace(&from, &self.layout.archive().join(&claim.id)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Failure::Io(format!("archiving {}: {e}", claim.id))),
                }
                "published"
            }
            None => {
                let rejected = self.layout.rejected();
                let target = rejected_base.clone().unwrap_or_else(|| claim.rejected_name());
                let note = format!(
                    "ecertd could not authenticate the first batch of this input (unreadable A record, unknown sender or wrong password); no outbound folder got its response.\nname: {}\nchannel: {}\nresponse: {shown}\n",
                    claim.name,
                    claim.channel.name()
                );
                spool::write_atomic(&rejected, &format!("{target}.why"), note.as_bytes())
                    .map_err(io_failure("writing note"))?;
                match spool::rename_noreplace(&from, &rejected.join(&target)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Failure::Io(format!("moving {} to rejected/: {e}", claim.id))),
                }
                "unauthenticated"
            }
        };
        self.metrics
            .file_done(claim.channel.name(), outcome, Some(claimed_at.elapsed()));
        tracing::info!(
            claim = %claim.id,
            batches = batches.len(),
            accepted = rec_sum(&batches, |b| b.accepted),
            rejected = rec_sum(&batches, |b| b.rejected),
            response = %shown,
            "published"
        );
        Ok(())
    }
}

/// The access refusals a committed response carries: the condition codes
/// of authentication and authorisation (`X07`, `X08`, `X09` in `X1`;
/// `R03`, `R05` in `C9`; `G06` in `S1`), each once, for the log.
pub fn access_refusals(response: &[u8]) -> Vec<&'static str> {
    const CODES: [&str; 6] = ["X07", "X08", "X09", "R03", "R05", "G06"];
    let mut out = Vec::new();
    for rec in response.split(|&b| b == b'\n') {
        let code = match rec.get(..2) {
            Some(b"X1") | Some(b"C9") => rec.get(4..7),
            Some(b"S1") => rec.get(17..20),
            _ => None,
        };
        if let Some(c) = code.and_then(|c| CODES.iter().find(|k| k.as_bytes() == c)) {
            if !out.contains(c) {
                out.push(*c);
            }
        }
    }
    out
}

fn rec_sum(batches: &[crate::store::InputBatch], f: impl Fn(&crate::store::InputBatch) -> u32) -> u64 {
    batches.iter().map(|b| u64::from(f(b))).sum()
}

/// 0.5 s, 1 s, 2 s, … up to `max`.
fn backoff(attempts: u32, max: Duration) -> Duration {
    let ms = 500u64.saturating_mul(1u64 << attempts.saturating_sub(1).min(20));
    Duration::from_millis(ms).min(max)
}

/// Sets up the logs on stderr.
pub fn init_logging(settings: &Settings) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_target(false);
    let _ = match settings.log_format {
        LogFormat::Text => builder.with_ansi(io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
    };
}

/// `ecertd serve`: runs until SIGINT or SIGTERM, then drains.
pub fn serve(settings: Settings) -> Result<ExitCode> {
    use tokio::signal::unix::{signal, SignalKind};
    init_logging(&settings);
    // Signals first: a SIGTERM during the start-up repair is a request to
    // stop once it is done, never an abrupt end.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ecertd-rt")
        .build()
        .context("starting the runtime")?;
    let signals = {
        let _in_runtime = rt.enter();
        Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        }
    };
    let layout = Layout::new(&settings.root);
    layout.create()?;
    let _lock = spool::lock(&layout.root)
        .with_context(|| format!("locking {}", layout.root.display()))?
        .ok_or_else(|| anyhow!("another ecertd is already serving {}", layout.root.display()))?;
    // Listeners first: a bad address stops the start before anything is processed.
    let bind = |a: std::net::SocketAddr, what: &str, backlog: usize| -> Result<std::net::TcpListener> {
        use std::os::unix::io::AsRawFd;
        let l = std::net::TcpListener::bind(a).with_context(|| format!("{what} on {a}"))?;
        // std listens with a backlog of 128: a burst of connections beyond it
        // loses SYNs, and those clients wait 1 s, 3 s... to retry. A second
        // listen() on the socket only changes the backlog (the kernel caps it
        // at net.core.somaxconn).
        // SAFETY: listen on a socket this function owns, already bound.
        if unsafe { libc::listen(l.as_raw_fd(), backlog.clamp(128, 4096) as libc::c_int) } != 0 {
            tracing::warn!(addr = %a, error = %io::Error::last_os_error(), "cannot raise the listen backlog");
        }
        l.set_nonblocking(true)?;
        Ok(l)
    };
    let tcp = settings
        .listen
        .map(|a| bind(a, "listening", settings.max_connections))
        .transpose()?;
    let http = settings.metrics.map(|a| bind(a, "serving metrics", 128)).transpose()?;
    let metrics = Arc::new(Metrics::new());
    let faults = Faults::from_env();
    if let Some(f) = faults.file() {
        tracing::warn!(file = %f.display(), "fault injection enabled ({}); for tests only", crate::fault::ENV);
    }
    let worker = StoreWorker::start(
        settings.db.clone(),
        metrics.clone(),
        settings.store_busy_timeout,
        faults.clone(),
    )?;
    let journal = Arc::new(Journal::new(layout.journal()));
    let stop = Arc::new(Stop::default());
    let (wake_tx, wake_rx) = mpsc::channel::<()>();
    // Start-up repair, before any new file is claimed.
    let mut spool_loop = SpoolLoop::new(
        layout.clone(),
        settings.clone(),
        worker.handle(),
        journal.clone(),
        metrics.clone(),
        stop.clone(),
        wake_rx,
        faults,
    );
    spool_loop.recover().context("start-up recovery")?;
    let parts = Parts {
        signals,
        settings,
        layout,
        store: worker.handle(),
        metrics,
        journal,
        stop,
        spool_loop,
        wake_tx,
        tcp,
        http,
    };
    let outcome = rt.block_on(run(parts));
    rt.shutdown_timeout(Duration::from_secs(2));
    match outcome {
        Ok(true) => {
            worker.join();
            tracing::info!("stopped");
            Ok(ExitCode::SUCCESS)
        }
        Ok(false) => Ok(ExitCode::from(1)),
        Err(e) => Err(e),
    }
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

struct Parts {
    signals: Signals,
    settings: Settings,
    layout: Layout,
    store: StoreHandle,
    metrics: Arc<Metrics>,
    journal: Arc<Journal>,
    stop: Arc<Stop>,
    spool_loop: SpoolLoop,
    wake_tx: mpsc::Sender<()>,
    tcp: Option<std::net::TcpListener>,
    http: Option<std::net::TcpListener>,
}

/// The daemon proper; `Ok(true)` when everything drained in time.
async fn run(p: Parts) -> Result<bool> {
    let Parts {
        signals,
        settings,
        layout,
        store,
        metrics,
        journal,
        stop,
        spool_loop,
        wake_tx,
        tcp,
        http,
    } = p;
    let Signals { mut term, mut int } = signals;
    let _watcher = watch_inbound(&layout, wake_tx.clone());
    let (spool_done_tx, mut spool_done) = tokio::sync::oneshot::channel::<()>();
    let spool_metrics = metrics.clone();
    std::thread::Builder::new()
        .name("ecertd-spool".into())
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| spool_loop.run()));
            if r.is_err() {
                tracing::error!("the spool loop panicked");
            }
            spool_metrics.spool_alive.store(false, Ordering::Relaxed);
            let _ = spool_done_tx.send(());
        })
        .context("starting the spool thread")?;

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut tcp_task = None;
    if let Some(l) = tcp {
        let listener = tokio::net::TcpListener::from_std(l)?;
        let addr = listener.local_addr()?;
        tracing::info!(addr = %addr, channel = settings.listen_channel.name(), "TCP endpoint listening");
        let ctx = Arc::new(crate::net::NetCtx {
            store: store.clone(),
            journal: journal.clone(),
            metrics: metrics.clone(),
            business_date: settings.business_date,
            channel: settings.listen_channel,
            max_batch_bytes: settings.max_batch_bytes,
            idle_timeout: settings.idle_timeout,
            batch_timeout: settings.batch_timeout,
            max_connections: settings.max_connections,
        });
        tcp_task = Some(tokio::spawn(crate::net::serve(listener, ctx, shutdown_rx.clone())));
    }
    let mut http_task = None;
    if let Some(l) = http {
        let listener = tokio::net::TcpListener::from_std(l)?;
        let addr = listener.local_addr()?;
        tracing::info!(addr = %addr, "metrics endpoint listening");
        http_task = Some(tokio::spawn(crate::metrics::serve(
            listener,
            metrics.clone(),
            layout.clone(),
            shutdown_rx.clone(),
        )));
    }
    drop(store);
    tracing::info!(root = %layout.root.display(), "ecertd serving");

    let mut healthy = true;
    let mut spool_finished = false;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
        _ = &mut spool_done => {
            tracing::error!("the spool loop ended unexpectedly: stopping");
            healthy = false;
            spool_finished = true;
        }
    }
    let grace = settings.shutdown_timeout;
    let deadline = tokio::time::Instant::now() + grace;
    // Files: stop claiming; a file in progress may run until 3/4 of the grace period.
    stop.request(grace.mul_f32(0.75));
    let _ = wake_tx.send(());
    let _ = shutdown_tx.send(true);
    let drain = async {
        if let Some(t) = tcp_task {
            let _ = t.await;
        }
        if let Some(t) = http_task {
            let _ = t.await;
        }
        if !spool_finished {
            let _ = (&mut spool_done).await;
        }
    };
    let drained = tokio::select! {
        r = tokio::time::timeout_at(deadline, drain) => r.is_ok(),
        _ = term.recv() => false,
        _ = int.recv() => false,
    };
    if !drained {
        tracing::error!(
            grace_ms = grace.as_millis() as u64,
            "could not drain in time; exiting (unfinished work resumes at the next start)"
        );
    }
    Ok(drained && healthy)
}

/// inotify on the drop folders: events only wake the spool loop up.
fn watch_inbound(layout: &Layout, wake: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let mut w = match notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
        let _ = wake.send(());
    }) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "no file-system notifications; relying on the poll timer");
            return None;
        }
    };
    for ch in CHANNELS {
        let dir = layout.inbound(ch);
        if let Err(e) = w.watch(&dir, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(folder = %dir.display(), error = %e, "cannot watch folder; relying on the poll timer");
        }
    }
    Some(w)
}

/// `ecertd status`.
pub fn status(settings: &Settings, json: bool) -> Result<ExitCode> {
    let layout = Layout::new(&settings.root);
    if !layout.exists() {
        bail!("no spool at {} (run `ecertd init`)", layout.root.display());
    }
    if !settings.db.exists() {
        bail!("no store at {} (run `ecertd init`)", settings.db.display());
    }
    let q = spool::queue_stats(&layout);
    let running = spool::is_locked(&layout.root);
    let mut store = Store::open(&settings.db).with_context(|| format!("opening store {}", settings.db.display()))?;
    let counts = store.read(|tx| tx.counts())?;
    let last = Journal::new(layout.journal()).last_line()?;
    let last_time = last.as_deref().and_then(|l| l.split(' ').next()).map(str::to_string);
    if json {
        let v = serde_json::json!({
            "root": layout.root.display().to_string(),
            "db": settings.db.display().to_string(),
            "daemon_running": running,
            "queues": q.folders.iter().map(|(f, n)| (f.clone(), serde_json::json!(n))).collect::<serde_json::Map<_, _>>(),
            "outbound": q.outbound.iter().map(|(f, n)| (f.clone(), serde_json::json!(n))).collect::<serde_json::Map<_, _>>(),
            "oldest_waiting": q.oldest.as_ref().map(|(f, d)| serde_json::json!({"file": f, "age_seconds": d.as_secs()})),
            "counts": counts.iter().map(|(k, n)| (k.to_string(), serde_json::json!(n))).collect::<serde_json::Map<_, _>>(),
            "last_activity": last_time,
            "last_journal_line": last,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("spool    {}", layout.root.display());
    println!("store    {}", settings.db.display());
    println!("daemon   {}", if running { "running" } else { "not running" });
    println!("queues");
    for (f, n) in &q.folders {
        println!("  {f:<14} {n:>8}");
    }
    for (s, n) in &q.outbound {
        println!("  {:<14} {n:>8}", format!("outbound/{s}"));
    }
    match &q.oldest {
        Some((f, d)) => println!("oldest waiting file: {f} ({}s)", d.as_secs()),
        None => println!("oldest waiting file: none"),
    }
    println!("store counts");
    for (k, n) in &counts {
        println!("  {k:<20} {n:>8}");
    }
    match &last {
        Some(l) => println!("last activity: {l}"),
        None => println!("last activity: none"),
    }
    Ok(ExitCode::SUCCESS)
}
