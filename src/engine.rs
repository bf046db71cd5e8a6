//! The pipeline from a batch to its committed response:
//! frame → authenticate → (duplicate check, rules, effects, response) in one
//! store transaction. Responses are returned only after their commit.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::apps::{self, certificates, entries, queries, Transactions};
use crate::codes::Code;
use crate::envelope::{self, App, Channel, Header, Problem, ResponseWriter, SenderKind};
use crate::layout;
use crate::lookahead::{GroupAnswer, Key, Lookahead};
use crate::model::{Certificate, Sender, UsageEvent};
use crate::record::{BatchReader, RawBatch};
use crate::store::{InputBatch, Store, StoreError, Tx};
use crate::types::{Country, Date, FilerCode};

/// At most this many records go into one group commit of [`Engine::process_stream`]:
/// a larger group syncs each touched page once for more claims and walks the
/// certificate index once for more look-ups, but holds its batches, their
/// claims' certificates and their responses in memory until the commit
/// (about 0.8 KiB per record), and with the look-ahead the next group's
/// batches and certificates as well: 150,000 records stay near 220 MiB of
/// peak RSS (200,000 reached 257-279 MiB).
pub const GROUP_RECORDS: usize = 150_000;

/// Operational errors of the pipeline (rejections are data, not errors).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading input: {0}")]
    Read(#[from] std::io::Error),
}

/// How a batch ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Processed; its transactions were accepted or refused one by one.
    Processed,
    /// Refused as a whole (X codes).
    Rejected,
    /// A repeat of an earlier batch: its stored response, nothing applied.
    Duplicate,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Processed => "processed",
            Outcome::Rejected => "rejected",
            Outcome::Duplicate => "duplicate",
        }
    }
}

/// The committed result of one batch.
#[derive(Clone, Debug)]
pub struct BatchResult {
    pub response: Vec<u8>,
    pub app: Option<App>,
    pub outcome: Outcome,
    pub accepted: u32,
    pub rejected: u32,
    /// The sender named by the batch, when readable.
    pub sender: String,
    /// The batch-level problems (for logs and the journal).
    pub problems: Vec<Problem>,
    pub claims_applied: u32,
}

/// Where the responses of an input go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// `outbound/<sender>/`: the first A record authenticated.
    Outbound(String),
    /// `rejected/`: it did not.
    Rejected,
}

/// What is known about the input a batch belongs to.
pub struct Session {
    pub channel: Channel,
    first_sender: Option<Option<[u8; 3]>>,
    destination: Option<Destination>,
    credentials: HashMap<([u8; 3], [u8; 6]), Option<Sender>>,
}

impl Session {
    pub fn new(channel: Channel) -> Session {
        Session {
            channel,
            first_sender: None,
            destination: None,
            credentials: HashMap::new(),
        }
    }

    /// Decided by the input's first A record; `None` while none was read
    /// (an input with no A record at all answers in `rejected/`).
    pub fn destination(&self) -> Option<&Destination> {
        self.destination.as_ref()
    }
}

/// Records an input file's progress in the same transaction as its batches.
pub struct InputKey<'a> {
    pub claim: &'a str,
    pub name: &'a str,
    /// Index of the batch within the file.
    pub index: u64,
}

/// Batches `first..` of an input file, and whether they end it.
struct InputGroup<'a> {
    claim: &'a str,
    name: &'a str,
    first: u64,
    last: bool,
}

/// A batch framed and authenticated, ready for its transaction.
struct Prepared<'a> {
    raw: &'a RawBatch,
    header: Header,
    blocks: Vec<(envelope::Block, Transactions)>,
    /// The entry summaries of each block, read (for the look-ahead of
    /// [`Engine::commit`]) before the transaction evaluates them.
    entries: Vec<Vec<entries::Parsed>>,
    problems: Vec<Problem>,
    sender: Option<Sender>,
    /// See [`Split::digest`].
    digest: Option<Vec<u8>>,
}

pub struct Engine<'s> {
    store: &'s mut Store,
    business_date: Date,
    lookahead: Option<Lookahead>,
    /// Batches whose certificates the look-ahead read.
    read_ahead: u64,
    /// Groups whose certificates the look-ahead read in one sweep.
    groups_swept: u64,
    /// Chunks of those sweeps the writer read itself.
    sweep_chunks_read_by_writer: u64,
    /// The certificates of the next group of [`Engine::process_stream`],
    /// being read in one sweep since the previous group's transaction.
    next_group: Option<NextGroup>,
}

/// A read of the next group's certificates, with the `PRAGMA data_version`
/// of the transaction it started in and the store's change count once that
/// transaction committed: the answer is the next transaction's state only
/// if nothing else has committed in between, on any connection.
struct NextGroup {
    data_version: i64,
    /// The store's count of rows changed once the transaction it started in
    /// has committed: a commit on the writer's own connection in between
    /// (a TCP batch between two groups of a file) leaves `data_version`
    /// as it was, but not this.
    changes: Option<u64>,
    answer: GroupAnswer,
}

impl NextGroup {
    /// Asks `lookahead` to sweep `raws`. Call only while holding the write
    /// transaction whose `PRAGMA data_version` is `data_version`: the
    /// sweep then reads the state that transaction started from.
    fn start(lookahead: &Lookahead, raws: &Arc<Vec<RawBatch>>, channel: Channel, data_version: i64) -> Option<Self> {
        let answer = lookahead.read_group(raws.clone(), channel)?;
        Some(NextGroup {
            data_version,
            changes: None,
            answer,
        })
    }

    /// Marks the transaction it started in as committed, leaving the store
    /// with `changes` rows changed.
    fn committed(self, changes: u64) -> Self {
        NextGroup {
            changes: Some(changes),
            ..self
        }
    }
}

/// The look-ahead of an input processed one group per call (the daemon
/// hands its store thread one group at a time): the reading thread, and the
/// sweep of the group to come, carried from one [`Engine`] to the next.
pub struct Ahead {
    lookahead: Lookahead,
    next_group: Option<NextGroup>,
}

impl<'s> Engine<'s> {
    pub fn new(store: &'s mut Store, business_date: Date) -> Self {
        Engine {
            store,
            business_date,
            lookahead: None,
            read_ahead: 0,
            groups_swept: 0,
            sweep_chunks_read_by_writer: 0,
            next_group: None,
        }
    }

    /// Takes up the look-ahead an earlier engine left ([`Engine::into_ahead`]);
    /// without one, starts one ([`Engine::with_lookahead`]). The pending
    /// sweep is used only if nothing was committed since it started.
    pub fn with_ahead(mut self, ahead: Option<Ahead>) -> Self {
        match ahead {
            Some(a) => {
                self.lookahead = Some(a.lookahead);
                self.next_group = a.next_group;
                self
            }
            None => self.with_lookahead(),
        }
    }

    /// The look-ahead and the sweep of the group to come, for the engine
    /// that commits that group.
    pub fn into_ahead(self) -> Option<Ahead> {
        let next_group = self.next_group;
        self.lookahead.map(|lookahead| Ahead { lookahead, next_group })
    }

    /// How many batches had their certificates read by the look-ahead.
    pub fn batches_read_ahead(&self) -> u64 {
        self.read_ahead
    }

    /// How many groups had their certificates read by the look-ahead in one
    /// sweep, while the group before them ran.
    pub fn groups_swept(&self) -> u64 {
        self.groups_swept
    }

    /// How many chunks of those sweeps the writer read itself, having found
    /// the reader still at them ([`crate::lookahead::Sweep`]).
    pub fn sweep_chunks_read_by_writer(&self) -> u64 {
        self.sweep_chunks_read_by_writer
    }

    /// Reads the certificates of each group's claims on a second connection
    /// and thread while the group is evaluated ([`crate::lookahead`]). Worth
    /// it for large groups; a store without a file has no second connection.
    /// Speed only: when the reader cannot start, the writer reads alone.
    pub fn with_lookahead(mut self) -> Self {
        let started = self
            .store
            .certificate_reader()
            .map_err(|e| e.to_string())
            .and_then(|r| r.map(Lookahead::start).transpose().map_err(|e| e.to_string()));
        match started {
            Ok(lookahead) => self.lookahead = lookahead,
            Err(e) => tracing::warn!(error = %e, "certificate look-ahead not started; the writer reads alone"),
        }
        self
    }

    pub fn store(&mut self) -> &mut Store {
        self.store
    }

    /// Authenticates `raw` and completes its preparation: `split` is `raw`
    /// split and parsed already (by the look-ahead), or `None`.
    fn prepare<'a>(
        &mut self,
        session: &mut Session,
        raw: &'a RawBatch,
        split: Option<Split>,
    ) -> Result<Prepared<'a>, EngineError> {
        let Split {
            header,
            blocks,
            mut problems,
            mut entries,
            digest,
        } = split.unwrap_or_else(|| Split::of(raw, session.channel));
        // Authentication: the input speaks for the sender of its first batch.
        let mut sender = None;
        if raw.kind == crate::record::BatchKind::Enveloped {
            let a = raw.record(0);
            let la = layout::get("A");
            let named = header.sender_readable.then_some(header.sender);
            let first = *session.first_sender.get_or_insert(named);
            if named.is_some() && named == first {
                let key = (header.sender, header.password);
                if let std::collections::hash_map::Entry::Vacant(e) = session.credentials.entry(key) {
                    let found = self.store.authenticate(header.sender_str(), &header.password)?;
                    e.insert(found);
                }
                sender = session.credentials.get(&key).cloned().flatten();
            }
            if sender.is_none() {
                problems.push(Problem::at_field(0, &a, la.field("sender"), Code::X08));
            }
            if session.destination.is_none() {
                session.destination = Some(match &sender {
                    Some(s) => Destination::Outbound(s.id.clone()),
                    None => Destination::Rejected,
                });
            }
            if let (Some(s), Some(app)) = (&sender, header.app) {
                if s.kind != app.sender_kind() {
                    problems.push(Problem::at_field(0, &a, la.field("app"), Code::X07));
                }
                let lb = layout::get("B");
                for (blk, _) in &blocks {
                    let allowed = match s.kind {
                        SenderKind::Broker => s.filers.iter().any(|f| f.as_bytes() == &blk.filer),
                        SenderKind::Country => s.id.as_bytes() == blk.filer,
                    };
                    if !allowed {
                        let b = raw.record(blk.b);
                        problems.push(Problem::at_field(blk.b, &b, lb.field("filer"), Code::X09));
                    }
                }
            }
        }
        // Entry summaries are evaluated only for a clean, authenticated batch.
        if !problems.is_empty() || sender.is_none() {
            entries.iter_mut().for_each(Vec::clear);
        }
        Ok(Prepared {
            raw,
            header,
            blocks,
            entries,
            problems,
            sender,
            digest,
        })
    }

    /// Processes one batch in its own transaction.
    pub fn process_batch(
        &mut self,
        session: &mut Session,
        raw: &RawBatch,
        input: Option<InputKey<'_>>,
    ) -> Result<BatchResult, EngineError> {
        let input = input.map(|k| InputGroup {
            claim: k.claim,
            name: k.name,
            first: k.index,
            last: false,
        });
        let mut out = self.commit(session, std::slice::from_ref(raw), input, None)?;
        out.pop()
            .ok_or_else(|| StoreError::Corrupt("a batch without result".into()).into())
    }

    /// Processes a group of batches in one transaction (group commit).
    pub fn process_group(
        &mut self,
        session: &mut Session,
        raws: &[RawBatch],
        input: Option<(&str, &str, u64)>,
    ) -> Result<Vec<BatchResult>, EngineError> {
        let input = input.map(|(claim, name, first)| InputGroup {
            claim,
            name,
            first,
            last: false,
        });
        self.commit(session, raws, input, None)
    }

    /// Re-reads the first batch of a partly processed input so that the
    /// session knows the input's sender again; applies and records nothing.
    pub fn prime(&mut self, session: &mut Session, first: &RawBatch) -> Result<(), EngineError> {
        self.prepare(session, first, None).map(|_| ())
    }

    /// Processes batches `first..` of the input file `claim` in one
    /// transaction, recording each response; when `last`, the input is also
    /// marked complete in that same transaction. With the look-ahead, this
    /// group is swept first unless a sweep of it is pending, and `next`
    /// (the group to be committed next) is swept meanwhile.
    #[allow(clippy::too_many_arguments)]
    pub fn process_input_group(
        &mut self,
        session: &mut Session,
        raws: &Arc<Vec<RawBatch>>,
        claim: &str,
        name: &str,
        first: u64,
        last: bool,
        next: Option<&Arc<Vec<RawBatch>>>,
    ) -> Result<Vec<BatchResult>, EngineError> {
        if self.next_group.is_none() {
            self.sweep_first(raws, session.channel)?;
        }
        let input = InputGroup {
            claim,
            name,
            first,
            last,
        };
        self.commit(session, raws, Some(input), next)
    }

    /// Frames and authenticates `raws`, then runs them in one store
    /// transaction, recording each response against the input when given.
    /// With the look-ahead, the certificates of `next` (the group to be
    /// committed next) are read meanwhile.
    fn commit(
        &mut self,
        session: &mut Session,
        raws: &[RawBatch],
        input: Option<InputGroup<'_>>,
        next: Option<&Arc<Vec<RawBatch>>>,
    ) -> Result<Vec<BatchResult>, EngineError> {
        // This group split, parsed and its certificates read while the group
        // before ran (`process_stream`).
        let changes = self.store.total_changes();
        let mut swept = self.next_group.take().and_then(|g| {
            let read = g.answer.take()?;
            // Nothing but the transaction it started in may have changed the
            // store on this connection since.
            if read.splits.len() != raws.len() || g.changes != Some(changes) {
                read.sweep.abandon();
                return None;
            }
            Some((g.data_version, read))
        });
        let mut splits = swept
            .as_mut()
            .map(|(_, read)| std::mem::take(&mut read.splits).into_iter());
        let mut prepared = Vec::with_capacity(raws.len());
        for raw in raws {
            let split = splits.as_mut().and_then(Iterator::next);
            prepared.push(self.prepare(session, raw, split)?);
        }
        // What the group before moved, to bring the sweep's balances (read
        // on the state before it) up to date.
        let moved = swept.as_ref().and_then(|_| self.store.take_moved());
        let date = self.business_date;
        let destination = session.destination.clone();
        let channel = session.channel;
        // The certificates each batch's claims name.
        let chunks: Vec<Vec<Key>> = prepared
            .iter()
            .map(|p| {
                p.entries
                    .iter()
                    .flatten()
                    .flat_map(|parsed| parsed.certificates())
                    .collect()
            })
            .collect();
        // A group that changes certificate terms reads them only through
        // its own transaction.
        let changes_terms = prepared
            .iter()
            .any(|p| p.blocks.iter().any(|(_, t)| matches!(t, Transactions::Certificates(_))));
        let claims = chunks.iter().any(|c| !c.is_empty());
        let reader = self.lookahead.as_ref().filter(|_| !changes_terms);
        let lookahead = reader.filter(|_| claims);
        let mut next_group = None;
        let mut read_ahead = 0;
        let mut held_sweep = false;
        let mut chunks_read_here = 0;
        let out = self.store.write(|tx| -> Result<Vec<BatchResult>, EngineError> {
            // Needed only to take a sweep, or to start one for `next`.
            let data_version = if swept.is_some() || (reader.is_some() && next.is_some()) {
                Some(tx.data_version()?)
            } else {
                None
            };
            // This group's certificates read in one sweep while the previous
            // group ran, on the state before it, plus what it moved: the
            // state this transaction started from, unless another connection
            // has committed since (this one's own commits were checked
            // above), or the previous group changed terms (it then started
            // no sweep).
            if let Some((v, read)) = swept {
                match moved
                    .as_ref()
                    .filter(|_| lookahead.is_some() && Some(v) == data_version)
                {
                    Some(moved) => {
                        // The chunks the reader has not reached are read
                        // here, on this transaction's own state.
                        while let Some(chunk) = read.sweep.steal() {
                            tx.prefetch_certificates(&mut chunk.to_vec())?;
                            chunks_read_here += 1;
                        }
                        if let Some(mut f) = read.sweep.reader_part() {
                            f.advance(moved);
                            held_sweep = tx.hold_fetched(f)?;
                        }
                    }
                    None => read.sweep.abandon(),
                }
            }
            // Started only now that the write transaction is held.
            let mut answers = if held_sweep {
                read_ahead += prepared.len() as u64;
                None
            } else {
                lookahead.and_then(|l| l.read(chunks.clone()))
            };
            if !held_sweep && answers.is_none() {
                // In key order first: one forward walk of the index instead
                // of a random probe per claim.
                tx.prefetch_certificates(&mut chunks.concat())?;
            }
            // The next group's sweep, queued behind this group's reads.
            if let (Some(l), Some(next), Some(v)) = (reader, next, data_version) {
                next_group = NextGroup::start(l, next, channel, v);
            }
            let mut out = Vec::with_capacity(prepared.len());
            for (i, p) in prepared.into_iter().enumerate() {
                if let Some(a) = &answers {
                    let held = match a.next() {
                        Some(f) => tx.hold_fetched(f)?,
                        None => false,
                    };
                    if held {
                        read_ahead += 1;
                    } else {
                        // The reader failed (or this transaction changed
                        // terms): the writer reads the rest itself.
                        answers = None;
                        tx.prefetch_certificates(&mut chunks[i..].concat())?;
                    }
                }
                let result = run(tx, p, date)?;
                if let Some(g) = &input {
                    let key = InputKey {
                        claim: g.claim,
                        name: g.name,
                        index: g.first + i as u64,
                    };
                    record(tx, &key, channel, destination.as_ref(), &result)?;
                }
                out.push(result);
            }
            if let Some(g) = input.as_ref().filter(|g| g.last) {
                tx.complete_input(g.claim, g.name, channel.name())?;
            }
            Ok(out)
        })?;
        self.read_ahead += read_ahead;
        self.groups_swept += u64::from(held_sweep);
        self.sweep_chunks_read_by_writer += chunks_read_here;
        let changes = self.store.total_changes();
        self.next_group = next_group.map(|g| g.committed(changes));
        Ok(out)
    }

    /// Starts the sweep of the first group of [`Engine::process_stream`] as
    /// every later group's is started: from within a write transaction (one
    /// that changes nothing), so that it reads the state the first group's
    /// transaction starts from unless another connection commits in
    /// between, which `PRAGMA data_version` then shows. Without it, the
    /// first group would be read batch by batch, each batch waiting for its
    /// answer and reading again the leaf pages of the batches before.
    fn sweep_first(&mut self, first: &Arc<Vec<RawBatch>>, channel: Channel) -> Result<(), EngineError> {
        let Engine { store, lookahead, .. } = self;
        let Some(l) = lookahead.as_ref() else { return Ok(()) };
        let next_group = store.write(|tx| -> Result<Option<NextGroup>, EngineError> {
            Ok(NextGroup::start(l, first, channel, tx.data_version()?))
        })?;
        self.next_group = next_group.map(|g| g.committed(store.total_changes()));
        Ok(())
    }

    /// Processes a whole stream, handing each committed response to `out`.
    pub fn process_stream<R: std::io::BufRead>(
        &mut self,
        session: &mut Session,
        input: R,
        group: usize,
        mut out: impl FnMut(&BatchResult) -> std::io::Result<()>,
    ) -> Result<u64, EngineError> {
        let mut reader = BatchReader::new(input);
        // With the look-ahead, the next group is read from the input before
        // this one commits, so that its certificates are read meanwhile.
        let ahead = self.lookahead.is_some();
        let mut count = 0u64;
        let mut current = read_group(&mut reader, group)?.map(Arc::new);
        if let Some(first) = current.as_ref().filter(|_| ahead) {
            self.sweep_first(first, session.channel)?;
        }
        while let Some(batches) = current {
            let next = if ahead {
                read_group(&mut reader, group)?.map(Arc::new)
            } else {
                None
            };
            for r in self.commit(session, &batches, None, next.as_ref())? {
                out(&r)?;
                count += 1;
            }
            // Freed before the next group is read: at most two in memory.
            // Its buffers take the group after next (the look-ahead holds
            // none of it by now: the sweep was taken before the commit).
            if let Ok(batches) = Arc::try_unwrap(batches) {
                reader.recycle_all(batches);
            }
            current = if ahead {
                next
            } else {
                read_group(&mut reader, group)?.map(Arc::new)
            };
        }
        self.next_group = None;
        Ok(count)
    }
}

/// The next group of `reader`'s batches: up to `group` batches, and no more
/// once [`GROUP_RECORDS`] records are reached; `None` at the end.
fn read_group<R: std::io::BufRead>(
    reader: &mut BatchReader<R>,
    group: usize,
) -> Result<Option<Vec<RawBatch>>, EngineError> {
    let mut batches = Vec::new();
    let mut records = 0usize;
    while batches.len() < group.max(1) && records < GROUP_RECORDS {
        let Some(b) = reader.next_batch()? else { break };
        records += b.len();
        batches.push(b);
    }
    Ok((!batches.is_empty()).then_some(batches))
}

/// A batch framed, its blocks split into transactions and its entry
/// summaries parsed: all of [`Engine::prepare`] but authentication. Pure,
/// so that the look-ahead can do it for the next group.
pub struct Split {
    header: Header,
    blocks: Vec<(envelope::Block, Transactions)>,
    problems: Vec<Problem>,
    /// Per block, its entry summaries (none for a batch with problems).
    entries: Vec<Vec<entries::Parsed>>,
    /// The batch's digest, when it has a reference to be remembered by.
    digest: Option<Vec<u8>>,
}

impl Split {
    pub fn of(raw: &RawBatch, channel: Channel) -> Split {
        let env = envelope::frame(raw, Some(channel));
        let mut problems = env.problems;
        let mut blocks = Vec::new();
        if let Some(app) = env.header.app {
            for blk in env.blocks {
                let txns = apps::split(app, raw, &blk, &mut problems);
                blocks.push((blk, txns));
            }
        }
        let entries = blocks
            .iter()
            .map(|(blk, txns)| match txns {
                Transactions::Entries(v) if problems.is_empty() => {
                    v.iter().map(|t| entries::parse(raw, t, &blk.filer)).collect()
                }
                _ => Vec::new(),
            })
            .collect();
        // Hashed here, off the writer when the look-ahead splits the batch.
        let digest = (!env.header.reference_is_blank()).then(|| digest(raw));
        Split {
            header: env.header,
            blocks,
            problems,
            entries,
            digest,
        }
    }

    /// The certificates the claims name, before authentication (for the
    /// look-ahead: a batch refused later has only cost it a few look-ups).
    pub fn claim_keys(&self) -> impl Iterator<Item = Key> + '_ {
        self.entries.iter().flatten().flat_map(|parsed| parsed.certificates())
    }
}

fn record(
    tx: &Tx<'_>,
    input: &InputKey<'_>,
    channel: Channel,
    destination: Option<&Destination>,
    result: &BatchResult,
) -> Result<(), EngineError> {
    // Undecided until the input's first A record has been read.
    let dest = match destination {
        Some(Destination::Outbound(s)) => Some((s.as_str(), "outbound")),
        Some(Destination::Rejected) => Some(("", "rejected")),
        None => None,
    };
    tx.record_input_batch(
        input.claim,
        input.name,
        channel.name(),
        input.index,
        dest,
        &InputBatch {
            app: result.app.map(|a| a.id().to_string()).unwrap_or_default(),
            outcome: result.outcome.name().to_string(),
            accepted: result.accepted,
            rejected: result.rejected,
            response: result.response.clone(),
        },
    )?;
    Ok(())
}

fn digest(raw: &RawBatch) -> Vec<u8> {
    let mut hasher = Sha256::new();
    raw.normalized(|piece| hasher.update(piece));
    hasher.finalize().to_vec()
}

/// The part of a batch that runs inside the store transaction.
fn run(tx: &Tx<'_>, p: Prepared<'_>, date: Date) -> Result<BatchResult, EngineError> {
    let Prepared {
        raw,
        header,
        blocks,
        entries: mut parsed_entries,
        mut problems,
        sender,
        digest,
    } = p;
    let sender_name = header.sender_str().to_string();
    let reference = String::from_utf8_lossy(&header.reference).trim_end().to_string();
    let remembered = sender.is_some() && !header.reference_is_blank();
    let digest = digest.filter(|_| remembered).unwrap_or_default();
    let mut reused = false;
    if remembered {
        if let Some((old_digest, old_response)) = tx.batch_seen(&sender_name, &reference)? {
            if old_digest == digest {
                return Ok(BatchResult {
                    response: old_response,
                    app: header.app,
                    outcome: Outcome::Duplicate,
                    accepted: 0,
                    rejected: 0,
                    sender: sender_name,
                    problems: Vec::new(),
                    claims_applied: 0,
                });
            }
            reused = true;
            let a = raw.record(0);
            problems.push(Problem::at_field(0, &a, layout::get("A").field("reference"), Code::X13));
        }
    }
    let sender = match sender {
        Some(s) if problems.is_empty() => s,
        _ => {
            envelope::finish_problems(&mut problems);
            let response = envelope::render_rejection(&header, &problems, date);
            if remembered && !reused {
                tx.remember_batch(&sender_name, &reference, &digest, &response)?;
            }
            return Ok(BatchResult {
                response,
                app: header.app,
                outcome: Outcome::Rejected,
                accepted: 0,
                rejected: 0,
                sender: sender_name,
                problems,
                claims_applied: 0,
            });
        }
    };
    let app = header
        .app
        .ok_or_else(|| StoreError::Corrupt("batch without application passed the envelope".into()))?;
    // An entry summary's or a certificate's answer is no larger than its
    // records as read (the claims benchmark's: two thirds of them).
    let mut w = ResponseWriter::with_capacity(raw.len() * (crate::record::RECORD_LEN + 1));
    w.header(&header, Some(app), date);
    let mut tally = Tally::default();
    for (b, (blk, txns)) in blocks.iter().enumerate() {
        w.block_header(blk, app);
        match txns {
            Transactions::Certificates(v) => {
                let country = sender
                    .country
                    .ok_or_else(|| StoreError::Corrupt(format!("country sender {} without country", sender.id)))?;
                for t in v {
                    gt(tx, raw, t, country, &mut w, &mut tally)?;
                }
            }
            Transactions::Entries(v) => {
                let parsed = std::mem::take(&mut parsed_entries[b]);
                if parsed.len() != v.len() {
                    return Err(StoreError::Corrupt("entry summaries not read before their transaction".into()).into());
                }
                for (t, parsed) in v.iter().zip(parsed) {
                    ae(tx, raw, t, parsed, date, &mut w, &mut tally)?;
                }
            }
            Transactions::ImporterQueries(v) => {
                let filer = FilerCode::parse(&blk.filer)
                    .ok_or_else(|| StoreError::Corrupt("authorised block without filer code".into()))?;
                for &i in v {
                    ec(tx, raw.record(i).bytes, filer, date, &mut w, &mut tally)?;
                }
            }
            Transactions::CountryQueries(v) => {
                let country = sender
                    .country
                    .ok_or_else(|| StoreError::Corrupt(format!("country sender {} without country", sender.id)))?;
                for &i in v {
                    gq(tx, raw.record(i).bytes, country, date, &mut w, &mut tally)?;
                }
            }
        }
        w.block_trailer(blk, app);
    }
    w.trailer(&header, date);
    let response = w.into_bytes();
    if remembered {
        tx.remember_batch(&sender_name, &reference, &digest, &response)?;
    }
    Ok(BatchResult {
        response,
        app: Some(app),
        outcome: Outcome::Processed,
        accepted: tally.accepted,
        rejected: tally.rejected,
        sender: sender_name,
        problems: Vec::new(),
        claims_applied: tally.claims,
    })
}

#[derive(Default)]
struct Tally {
    accepted: u32,
    rejected: u32,
    claims: u32,
}

impl Tally {
    fn count(&mut self, ok: bool) {
        if ok {
            self.accepted += 1;
        } else {
            self.rejected += 1;
        }
    }
}

fn gt(
    tx: &Tx<'_>,
    raw: &RawBatch,
    t: &certificates::Transaction,
    country: Country,
    w: &mut ResponseWriter,
    tally: &mut Tally,
) -> Result<(), EngineError> {
    let existing = match certificates::key(raw, t) {
        Some((c, n)) if c == country => tx.certificate(c, n)?,
        _ => None,
    };
    let d = certificates::evaluate(raw, t, country, existing.as_ref());
    match &d.effect {
        Some(certificates::Effect::Add(terms)) => {
            tx.insert_certificate(terms)?;
        }
        Some(certificates::Effect::Replace { id, terms }) => tx.replace_certificate(*id, terms)?,
        Some(certificates::Effect::Cancel { id }) => tx.cancel_certificate(*id)?,
        None => {}
    }
    tally.count(d.problems.is_empty());
    certificates::render(raw, t, &d, w);
    Ok(())
}

fn ae(
    tx: &Tx<'_>,
    raw: &RawBatch,
    t: &entries::Transaction,
    parsed: entries::Parsed,
    date: Date,
    w: &mut ResponseWriter,
    tally: &mut Tally,
) -> Result<(), EngineError> {
    let (state, old) = match &parsed.entry {
        Some(e) => {
            let (state, old) = tx.entry_with_claims(e)?.unzip();
            (state, old.unwrap_or_default())
        }
        None => (None, Vec::new()),
    };
    let mut keys: smallvec::SmallVec<[Key; 8]> = parsed.certificates().collect();
    keys.sort_unstable();
    keys.dedup();
    let d = tx.with_certificates(&keys, |found| -> Result<entries::Decision, StoreError> {
        // Small keys from one entry summary: a fast hash, not a keyed one.
        let mut certs = rustc_hash::FxHashMap::with_capacity_and_hasher(keys.len(), Default::default());
        for (key, cert) in keys.iter().zip(found) {
            let lookup = match cert {
                Some(c) => entries::CertLookup::Found(c),
                None if tx.number_on_file_elsewhere(key.0, key.1)? => entries::CertLookup::OtherCountry,
                None => entries::CertLookup::Missing,
            };
            certs.insert(*key, lookup);
        }
        Ok(entries::evaluate(t, parsed, state.as_ref(), &old, &certs, date))
    })??;
    if let Some(change) = &d.change {
        tx.apply_entry(change)?;
        tally.claims += change.debits.len() as u32;
    }
    tally.count(d.change.is_some());
    entries::render(raw, t, &d, w);
    Ok(())
}

fn ec(
    tx: &Tx<'_>,
    rec: &[u8],
    filer: FilerCode,
    date: Date,
    w: &mut ResponseWriter,
    tally: &mut Tally,
) -> Result<(), EngineError> {
    let mut failure: Option<StoreError> = None;
    let checked = {
        let failure1 = std::cell::RefCell::new(&mut failure);
        let mut may = |ior: &crate::types::IorNumber| match tx.may_query(filer, ior) {
            Ok(b) => b,
            Err(e) => {
                **failure1.borrow_mut() = Some(e);
                false
            }
        };
        let mut names = |c, n, ior: &crate::types::IorNumber| match tx.certificate(c, n) {
            Ok(found) => found.is_some_and(|cert| cert.terms.ior == *ior),
            Err(e) => {
                **failure1.borrow_mut() = Some(e);
                false
            }
        };
        queries::check_importer(rec, &mut may, &mut names)
    };
    if let Some(e) = failure {
        return Err(e.into());
    }
    match checked {
        Err(refusal) => {
            queries::render_reference(rec, true, 0, w);
            queries::render_refusal(&refusal, w);
            tally.count(false);
        }
        Ok(q) => {
            let mut found = Vec::new();
            match q {
                queries::ImporterQuery::ByIor { ior, quota_year } => {
                    tx.usage_for_ior(&ior, quota_year, &mut |c, events| {
                        found.push((c, events));
                        Ok(())
                    })?;
                }
                queries::ImporterQuery::One { country, number, .. } => one(tx, country, number, &mut found)?,
            }
            answer(rec, true, &found, date, w);
            tally.count(true);
        }
    }
    Ok(())
}

/// One certificate with its events, when on file.
fn one(
    tx: &Tx<'_>,
    country: Country,
    number: crate::types::CertificateNumber,
    found: &mut Vec<(Certificate, Vec<UsageEvent>)>,
) -> Result<(), EngineError> {
    if let Some(c) = tx.certificate(country, number)? {
        let events = tx.usage_events(c.id)?;
        found.push((c, events));
    }
    Ok(())
}

fn gq(
    tx: &Tx<'_>,
    rec: &[u8],
    country: Country,
    date: Date,
    w: &mut ResponseWriter,
    tally: &mut Tally,
) -> Result<(), EngineError> {
    let mut failure: Option<StoreError> = None;
    let checked = queries::check_country(rec, country, &mut |c, n| match tx.certificate(c, n) {
        Ok(found) => found.is_some(),
        Err(e) => {
            failure = Some(e);
            false
        }
    });
    if let Some(e) = failure {
        return Err(e.into());
    }
    match checked {
        Err(refusal) => {
            queries::render_reference(rec, false, 0, w);
            queries::render_refusal(&refusal, w);
            tally.count(false);
        }
        Ok(q) => {
            let mut found = Vec::new();
            match q {
                queries::CountryQuery::One { country, number } => one(tx, country, number, &mut found)?,
                queries::CountryQuery::ByCondition {
                    country,
                    condition,
                    issued_from,
                    issued_to,
                } => tx.usage_of_country(country, condition, issued_from, issued_to, &mut |c, events| {
                    found.push((c, events));
                    Ok(())
                })?,
            }
            answer(rec, false, &found, date, w);
            tally.count(true);
        }
    }
    Ok(())
}

/// The C0 with its count, then each certificate's C2, C4 and C3 records.
fn answer(rec: &[u8], importer: bool, found: &[(Certificate, Vec<UsageEvent>)], date: Date, w: &mut ResponseWriter) {
    queries::render_reference(rec, importer, found.len() as u64, w);
    for (cert, events) in found {
        queries::render_certificate(cert, events, date, w);
    }
}

#[cfg(test)]
mod tests;
