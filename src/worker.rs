//! The store's own thread. SQLite calls block, so the daemon never makes
//! them on the async runtime: every store operation is a job sent to one
//! dedicated thread that owns the [`Store`], run one at a time in arrival
//! order (which also serialises the batches of files and connections).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::fault::{Active, Faults};
use crate::metrics::Metrics;
use crate::store::{Checkpointer, Store, StoreError};

type Job = Box<dyn FnOnce(&mut Store) + Send>;

/// The store thread has stopped (or a job panicked): nothing was committed
/// for that job, or at least nothing was reported.
#[derive(Debug, thiserror::Error)]
#[error("the store worker is not running")]
pub struct WorkerGone;

/// A cheap, cloneable way to run jobs on the store thread.
#[derive(Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<Job>,
}

impl StoreHandle {
    /// Runs `f` on the store thread and waits for it (for plain threads).
    pub fn call_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> T + Send + 'static,
    ) -> Result<T, WorkerGone> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.tx
            .send(Box::new(move |s| {
                let _ = tx.send(f(s));
            }))
            .map_err(|_| WorkerGone)?;
        rx.recv().map_err(|_| WorkerGone)
    }

    /// Runs `f` on the store thread (for async tasks; never blocks the runtime).
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> T + Send + 'static,
    ) -> Result<T, WorkerGone> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(Box::new(move |s| {
                let _ = tx.send(f(s));
            }))
            .map_err(|_| WorkerGone)?;
        rx.await.map_err(|_| WorkerGone)
    }
}

/// The store thread.
pub struct StoreWorker {
    handle: StoreHandle,
    thread: JoinHandle<()>,
}

impl StoreWorker {
    /// Opens the store on a new thread; fails when the store cannot be opened.
    /// `busy_timeout` bounds the wait for a lock held by another process;
    /// `faults` is the fault-injection seam (inert unless enabled), read
    /// again before every job.
    pub fn start(
        db: PathBuf,
        metrics: Arc<Metrics>,
        busy_timeout: Duration,
        faults: Faults,
    ) -> Result<StoreWorker, anyhow::Error> {
        let shown = db.display().to_string();
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), StoreError>>(1);
        let thread = std::thread::Builder::new().name("ecertd-store".into()).spawn(move || {
            let opened = Store::open_waiting(&db, busy_timeout);
            let mut store = match opened {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    metrics.store_alive.store(false, Ordering::Relaxed);
                    return;
                }
            };
            let mut injected = Active::default();
            // The WAL is copied into the database by a thread of its own, on
            // its own connection, so that no commit here waits for it.
            let (stop_checkpoints, stopped) = mpsc::channel::<()>();
            let checkpoints = std::thread::Builder::new()
                .name("ecertd-checkpoint".into())
                .spawn(move || checkpoint_loop(&db, stopped));
            while let Ok(job) = rx.recv() {
                if faults.file().is_some() {
                    inject(&mut store, &faults, &mut injected);
                }
                if catch_unwind(AssertUnwindSafe(|| job(&mut store))).is_err() {
                    tracing::error!("a store job panicked; its transaction was rolled back");
                    metrics.failure("panic");
                }
            }
            drop(stop_checkpoints);
            match checkpoints {
                Ok(t) => {
                    let _ = t.join();
                }
                Err(e) => tracing::warn!(error = %e, "cannot start the checkpoint thread; commits checkpoint instead"),
            }
            metrics.store_alive.store(false, Ordering::Relaxed);
        })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(StoreWorker {
                handle: StoreHandle { tx },
                thread,
            }),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context(format!("opening store {shown}"))),
            Err(_) => Err(anyhow::anyhow!("the store thread ended while opening the store")),
        }
    }

    pub fn handle(&self) -> StoreHandle {
        self.handle.clone()
    }

    /// Waits for the thread once every other handle is gone.
    pub fn join(self) {
        drop(self.handle);
        let _ = self.thread.join();
    }
}

/// How often the checkpoint thread copies the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Checkpoints every [`CHECKPOINT_EVERY`] until `stop` is dropped. A failure
/// is logged once, then again only after a success.
fn checkpoint_loop(db: &std::path::Path, stop: mpsc::Receiver<()>) {
    let checkpointer = match Checkpointer::open(db) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot open the checkpoint connection; commits checkpoint instead");
            return;
        }
    };
    let mut failing = false;
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        match checkpointer.checkpoint() {
            Ok(_) => failing = false,
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "checkpoint of the store's WAL failed; retried");
            }
            Err(_) => {}
        }
    }
}

/// Applies the store faults of the fault file ([`crate::fault`]) when they changed.
fn inject(store: &mut Store, faults: &Faults, injected: &mut Active) {
    let want = faults.active();
    if (want.store_full, want.store_readonly) == (injected.store_full, injected.store_readonly) {
        return;
    }
    let applied = store
        .inject_full(want.store_full)
        .and_then(|_| store.inject_readonly(want.store_readonly));
    match applied {
        Ok(()) => {
            *injected = want;
            tracing::warn!(faults = ?want.names(), "fault injection: store faults changed");
        }
        Err(e) => tracing::error!(error = %e, "fault injection: cannot apply store faults"),
    }
}
