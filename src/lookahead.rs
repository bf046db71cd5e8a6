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
//! takes the answer only if nothing else has committed in between, on its
//! own connection or another (see [`crate::engine`]).
//!
//! The sweep is shared ([`Sweep`]): the parsed group goes to the writer as
//! soon as it is ready, and the reader then reads the group's keys chunk by
//! chunk from the front. A writer that arrives at the group before the
//! reader has finished reads the remaining chunks from the back itself, on
//! its own transaction, and then takes the reader's part. So neither thread
//! idles while the other still has the group's reading to do: above all at
//! the first group, which nothing overlaps, and whenever the machine slows
//! one of them down.

use std::sync::{mpsc, Arc, Condvar, Mutex};
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
    pub fn start(reader: CertificateReader) -> std::io::Result<Lookahead> {
        Lookahead::spawn(reader, CHUNK_KEYS, usize::MAX)
    }

    /// A look-ahead whose sweeps have chunks of `chunk_keys` keys, of which
    /// the reader reads at most `reader_chunks` and leaves the rest to the
    /// writer: the writer's share made certain, for tests.
    #[cfg(test)]
    pub(crate) fn start_sharing(
        reader: CertificateReader,
        chunk_keys: usize,
        reader_chunks: usize,
    ) -> std::io::Result<Lookahead> {
        Lookahead::spawn(reader, chunk_keys, reader_chunks)
    }

    fn spawn(mut reader: CertificateReader, chunk_keys: usize, reader_chunks: usize) -> std::io::Result<Lookahead> {
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
                            keys.sort_unstable();
                            keys.dedup();
                            let sweep = Arc::new(Sweep::new(keys, chunk_keys));
                            // The writer may start on the group (and on the
                            // sweep's last chunks) as soon as it is parsed.
                            let _ = answer.send(GroupRead {
                                splits,
                                sweep: sweep.clone(),
                            });
                            let part = ReaderPart(&sweep);
                            let read = reader.snapshot(|snap| {
                                let mut fetched = Fetched::with_capacity(sweep.keys.len());
                                for _ in 0..reader_chunks {
                                    let Some(chunk) = sweep.claim_front() else { break };
                                    snap.read_into(chunk, &mut fetched)?;
                                }
                                Ok(fetched)
                            });
                            match read.and_then(|r| r) {
                                Ok(fetched) => part.finish(Some(fetched)),
                                Err(e) => {
                                    tracing::warn!(error = %e, "reading a group's certificates ahead failed; the writer reads them");
                                    part.finish(None);
                                }
                            }
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

/// The reader's side of a [`Sweep`]: finished, failed if it is dropped
/// before (the reading thread unwinding), so the writer never waits for a
/// part that will not come.
struct ReaderPart<'a>(&'a Sweep);

impl ReaderPart<'_> {
    fn finish(self, read: Option<Fetched>) {
        self.0.finish(read);
        std::mem::forget(self);
    }
}

impl Drop for ReaderPart<'_> {
    fn drop(&mut self) {
        self.0.finish(None);
    }
}

/// What [`Lookahead::read_group`] made of a group.
pub struct GroupRead {
    /// Each batch split and parsed, in order.
    pub splits: Vec<Split>,
    /// The certificates their claims name, being read.
    pub sweep: Arc<Sweep>,
}

/// The answer of one [`Lookahead::read_group`].
pub struct GroupAnswer {
    rx: mpsc::Receiver<GroupRead>,
}

impl GroupAnswer {
    /// Waits for the group to be parsed (its sweep may still be under way);
    /// `None` when the reader stopped.
    pub fn take(self) -> Option<GroupRead> {
        self.rx.recv().ok()
    }
}

/// Keys per chunk of a [`Sweep`]: a few milliseconds of reading, the most
/// the writer waits for the reader's last chunk.
const CHUNK_KEYS: usize = 1024;

/// A group's sweep, shared by the reading thread and the writer: the
/// group's certificate keys in key order, cut into chunks. The reader reads
/// chunks from the front on its snapshot; the writer, once it holds the
/// group's write transaction, takes what is left from the back and reads it
/// itself, so that neither thread waits while the other still has a group's
/// reading to do (the first group's above all, which nothing overlaps).
/// Each chunk is read once, by one of them.
pub struct Sweep {
    keys: Vec<Key>,
    chunk_keys: usize,
    state: Mutex<SweepState>,
    finished: Condvar,
}

struct SweepState {
    /// Chunks `front..back` are not yet taken.
    front: usize,
    back: usize,
    /// The reader's part, once it has read its last chunk (`None` inside:
    /// it failed).
    read: Option<Option<Fetched>>,
}

impl Sweep {
    fn new(keys: Vec<Key>, chunk_keys: usize) -> Sweep {
        let chunk_keys = chunk_keys.max(1);
        let chunks = keys.len().div_ceil(chunk_keys);
        Sweep {
            keys,
            chunk_keys,
            state: Mutex::new(SweepState {
                front: 0,
                back: chunks,
                read: None,
            }),
            finished: Condvar::new(),
        }
    }

    fn chunk(&self, i: usize) -> &[Key] {
        let start = i * self.chunk_keys;
        &self.keys[start..(start + self.chunk_keys).min(self.keys.len())]
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SweepState> {
        // No code panics holding the lock; a poisoned one is as good.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The reader's next chunk.
    fn claim_front(&self) -> Option<&[Key]> {
        let mut s = self.state();
        (s.front < s.back).then(|| {
            s.front += 1;
            self.chunk(s.front - 1)
        })
    }

    fn finish(&self, read: Option<Fetched>) {
        self.state().read = Some(read);
        self.finished.notify_all();
    }

    /// The writer's next chunk, from the back; `None` once every chunk is
    /// taken.
    pub fn steal(&self) -> Option<&[Key]> {
        let mut s = self.state();
        (s.front < s.back).then(|| {
            s.back -= 1;
            self.chunk(s.back)
        })
    }

    /// Takes every chunk still left, so that the reader stops after the one
    /// it is reading: for a sweep the writer will not use.
    pub fn abandon(&self) {
        let mut s = self.state();
        s.back = s.front;
    }

    /// Waits for the reader's part: every chunk it took, on its snapshot.
    /// `None` when it failed, or stopped (the writer then reads those
    /// certificates itself). Once per sweep: the part is handed over whole.
    pub fn reader_part(&self) -> Option<Fetched> {
        let mut s = self.state();
        loop {
            if let Some(read) = s.read.take() {
                return read;
            }
            s = self.finished.wait(s).unwrap_or_else(|e| e.into_inner());
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<Key> {
        let au = Country::from_stored("AU").unwrap();
        (0..n)
            .map(|i| (au, CertificateNumber::from_stored(&format!("C{i:05}")).unwrap()))
            .collect()
    }

    /// Every chunk is taken once, by one side: the reader from the front,
    /// the writer from the back, until they meet.
    #[test]
    fn each_chunk_is_taken_once_from_either_end() {
        let all = keys(10);
        let sweep = Sweep::new(all.clone(), 4);
        assert_eq!(sweep.claim_front(), Some(&all[0..4]));
        assert_eq!(sweep.steal(), Some(&all[8..10]), "the last chunk is short");
        assert_eq!(sweep.steal(), Some(&all[4..8]));
        assert_eq!(sweep.claim_front(), None);
        assert_eq!(sweep.steal(), None);

        let sweep = Sweep::new(all.clone(), 4);
        assert_eq!(sweep.claim_front(), Some(&all[0..4]));
        sweep.abandon();
        assert_eq!(sweep.claim_front(), None, "abandoned: the reader stops");
        assert_eq!(sweep.steal(), None);

        assert_eq!(Sweep::new(Vec::new(), 4).claim_front(), None, "no keys, no chunk");
    }

    /// The writer waits for the reader's part, and is not left waiting by a
    /// reader that drops its side unfinished.
    #[test]
    fn the_writer_gets_the_readers_part_or_none() {
        let sweep = Arc::new(Sweep::new(keys(3), 4));
        let reader = sweep.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            ReaderPart(&reader).finish(Some(Fetched::with_capacity(0)));
        });
        assert!(sweep.reader_part().is_some());
        t.join().unwrap();

        let sweep = Arc::new(Sweep::new(keys(3), 4));
        let reader = sweep.clone();
        let t = std::thread::spawn(move || {
            let _unfinished = ReaderPart(&reader);
        });
        assert!(sweep.reader_part().is_none());
        t.join().unwrap();
    }
}
