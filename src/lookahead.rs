//! Reads the certificates of a group's claims on a second connection and a
//! thread of its own while the writer evaluates the group, so that the
//! look-ups (the largest part of a claim's cost) run on the other core.
//!
//! The writer starts a read only once it holds its write transaction (see
//! [`CertificateReader`] for why that makes the reader's snapshot exact), and
//! takes the answer batch by batch, in order, before evaluating each batch.
//!
//! It can also read the certificates of the *next* group in one sweep in key
//! order while the current group runs ([`Lookahead::read_group`]): a batch's
//! few hundred certificates lie on as many leaf pages, which later batches
//! read again, where a group's sweep reads each page once. Their terms are
//! read during the current group, their balances on a second snapshot once
//! the current group has committed (while the writer hands out its responses
//! and prepares the next group). The writer takes that answer in the next
//! group's transaction only if no other connection has committed in between
//! (see [`crate::engine`]).

use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

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
    /// One answer for all the certificates the claims of a group of batches
    /// name, read in one sweep; their balances once `committed` says the
    /// group before has committed (nothing if it never does).
    Group {
        raws: Arc<Vec<RawBatch>>,
        channel: Channel,
        committed: mpsc::Receiver<()>,
        answers: mpsc::SyncSender<Result<Fetched, StoreError>>,
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
                                    let answer = snap.certificates(keys, true);
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
                        Job::Group {
                            raws,
                            channel,
                            committed,
                            answers,
                        } => {
                            let keys: Vec<Key> = raws
                                .iter()
                                .flat_map(|raw| crate::engine::claim_keys(raw, channel))
                                .collect();
                            let answer = reader.snapshot(|snap| snap.certificates(keys, false)).and_then(|a| a);
                            let answer = match answer {
                                Ok(mut fetched) => {
                                    if committed.recv().is_err() {
                                        // The group before did not commit: no one wants it.
                                        continue;
                                    }
                                    reader
                                        .snapshot(|snap| snap.balances(&mut fetched))
                                        .and_then(|a| a)
                                        .map(|()| fetched)
                                }
                                Err(e) => Err(e),
                            };
                            let _ = answers.send(answer);
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

    /// Starts reading the certificates the claims of `raws` (a group to be
    /// processed next) name, in one sweep, after the reads already asked
    /// for; one answer, which waits for [`Committed::signal`]. Call only
    /// while holding a write transaction: the terms' snapshot then starts no
    /// earlier than that transaction, and the balances' after its commit.
    pub fn read_group(&self, raws: Arc<Vec<RawBatch>>, channel: Channel) -> Option<(Answers, Committed)> {
        let (answers, rx) = mpsc::sync_channel(1);
        let (committed, wait) = mpsc::channel();
        self.jobs
            .as_ref()?
            .send(Job::Group {
                raws,
                channel,
                committed: wait,
                answers,
            })
            .ok()?;
        Some((Answers { rx }, Committed(committed)))
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

/// Tells a [`Lookahead::read_group`] that the transaction it was started in
/// has committed; dropped unsignalled, the read is abandoned.
pub struct Committed(mpsc::Sender<()>);

impl Committed {
    pub fn signal(&self) {
        let _ = self.0.send(());
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
