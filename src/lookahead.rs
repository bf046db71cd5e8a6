//! Reads the certificates of a group's claims on a second connection and a
//! thread of its own while the writer evaluates the group, so that the
//! look-ups (the largest part of a claim's cost) run on the other core.
//!
//! The writer starts a read only once it holds its write transaction (see
//! [`CertificateReader`] for why that makes the reader's snapshot exact), and
//! takes the answer batch by batch, in order, before evaluating each batch.
//!
//! It can also take the *next* group while the current group runs
//! ([`Lookahead::read_group`]): it frames, splits and parses its batches
//! (everything of the writer's preparation but authentication) and reads
//! their certificates in one sweep in key order (a batch's few hundred
//! certificates lie on as many leaf pages, which later batches read again,
//! where a group's sweep reads each page once). Its snapshot is the state
//! before the current group; the writer brings the balances up to date with
//! what the current group moved ([`crate::store::Fetched::advance`]), and
//! takes the answer only if no other connection has committed in between
//! (see [`crate::engine`]).

use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use crate::engine::Split;
use crate::envelope::Channel;
use crate::record::RawBatch;
use crate::store::{CertificateReader, Fetched, StoreError};
use crate::types::{CertificateNumber, Country};

pub type Key = (Country, CertificateNumber);

/// How many answers the reader may be ahead of the writer.
const AHEAD: usize = 4;

enum Job {
    /// One answer per chunk (a batch's keys), in order, on one snapshot.
    Batches {
        chunks: Vec<Vec<Key>>,
        answers: mpsc::SyncSender<Result<Fetched, StoreError>>,
    },
    /// A group of batches split and parsed, and the certificates their
    /// claims name, read in one sweep.
    Group {
        raws: Arc<Vec<RawBatch>>,
        channel: Channel,
        answer: mpsc::SyncSender<GroupRead>,
    },
}

/// The reading thread; it stops when this is dropped.
pub struct Lookahead {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Lookahead {
    pub fn start(mut reader: CertificateReader) -> std::io::Result<Lookahead> {
        let (jobs, incoming) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("ecertd-lookahead".into())
            .spawn(move || {
                while let Ok(job) = incoming.recv() {
                    match job {
                        Job::Batches { chunks, answers } => {
                            let read = reader.snapshot(|snap| {
                                for keys in chunks {
                                    let answer = snap.certificates(keys);
                                    let failed = answer.is_err();
                                    // A writer that has gone no longer wants the rest.
                                    if answers.send(answer).is_err() || failed {
                                        break;
                                    }
                                }
                            });
                            if let Err(e) = read {
                                let _ = answers.send(Err(e));
                            }
                        }
                        Job::Group { raws, channel, answer } => {
                            let splits: Vec<Split> = raws.iter().map(|raw| Split::of(raw, channel)).collect();
                            // Counted first: a group's keys, grown by doubling,
                            // would be copied a dozen times.
                            let mut keys = Vec::with_capacity(splits.iter().map(|s| s.claim_keys().count()).sum());
                            keys.extend(splits.iter().flat_map(Split::claim_keys));
                            let fetched = match reader.snapshot(|snap| snap.certificates(keys)).and_then(|a| a) {
                                Ok(f) => Some(f),
                                Err(e) => {
                                    tracing::warn!(error = %e, "reading a group's certificates ahead failed; the writer reads them");
                                    None
                                }
                            };
                            let _ = answer.send(GroupRead { splits, fetched });
                        }
                    }
                }
            })?;
        Ok(Lookahead {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Starts reading the certificates of `chunks` (one per batch) on one
    /// snapshot; the answers arrive in order. Call only while holding the
    /// write transaction they are for. `None` when the thread is gone.
    pub fn read(&self, chunks: Vec<Vec<Key>>) -> Option<Answers> {
        let (answers, rx) = mpsc::sync_channel(AHEAD);
        self.jobs.as_ref()?.send(Job::Batches { chunks, answers }).ok()?;
        Some(Answers { rx })
    }

    /// Starts splitting and parsing `raws` (the group to be processed
    /// next) and reading the certificates their claims name in one sweep,
    /// after the reads already asked for. Call only while holding a write
    /// transaction: the snapshot then starts no earlier than that
    /// transaction, and is the state it started from.
    pub fn read_group(&self, raws: Arc<Vec<RawBatch>>, channel: Channel) -> Option<GroupAnswer> {
        let (answer, rx) = mpsc::sync_channel(1);
        self.jobs.as_ref()?.send(Job::Group { raws, channel, answer }).ok()?;
        Some(GroupAnswer { rx })
    }
}

impl Drop for Lookahead {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What [`Lookahead::read_group`] read of a group.
pub struct GroupRead {
    /// Each batch split and parsed, in order.
    pub splits: Vec<Split>,
    /// The certificates, on the snapshot of the transaction the read was
    /// started in; `None` when reading failed.
    pub fetched: Option<Fetched>,
}

/// The answer of one [`Lookahead::read_group`].
pub struct GroupAnswer {
    rx: mpsc::Receiver<GroupRead>,
}

impl GroupAnswer {
    /// Waits for it; `None` when the reader stopped.
    pub fn take(self) -> Option<GroupRead> {
        self.rx.recv().ok()
    }
}

/// The answers of one [`Lookahead::read`], batch by batch.
pub struct Answers {
    rx: mpsc::Receiver<Result<Fetched, StoreError>>,
}

impl Answers {
    /// The next batch's certificates; `None` when the reader failed or
    /// stopped (the writer then reads them itself).
    pub fn next(&self) -> Option<Fetched> {
        match self.rx.recv() {
            Ok(Ok(f)) => Some(f),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "reading certificates ahead failed; the writer reads them");
                None
            }
            Err(_) => None,
        }
    }
}
