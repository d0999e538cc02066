//! The adapter: opens a model's log, runs its fold task, and serves state, writes, waits,
//! watches and snapshots.

use std::collections::VecDeque;
use std::fmt;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_core::Stream;
use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;

use crate::redex::{ChannelName, Redex, RedexError, RedexEvent, RedexFileConfig};

use super::error::{CortexError, FoldError, FoldErrorKind, SnapshotError};
use super::event_meta::{EventMeta, SeqOrTs};
use super::log::{CortexLog, LogBackend, LogTail, OpenedLog};
use super::model::{CortexEvent, CortexModel, EventContext};
use super::snapshot::{self, SnapshotInfo};
use super::table::{Table, Touched};
use super::watch::{Registry, Watch, WatchStream};

/// Where a fold's tail starts, once resolved.
#[derive(Debug, Clone, Copy)]
enum StartFrom {
    /// The first event still in the log, when the fold first reads.
    Head,
    /// This sequence number.
    Seq(u64),
}

/// Where a fold starts reading its log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StartAt {
    /// From the first event still in the log: the usual replay.
    #[default]
    Beginning,
    /// From this sequence number (earlier events are not folded).
    Seq(u64),
    /// From the next event appended after opening (the state starts empty).
    Live,
}

/// What the fold does with an event it cannot apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FoldErrorPolicy {
    /// Stop folding: the state stays at the last good event, `wait_for_seq` past it returns
    /// [`CortexError::FoldStopped`]. Appends still succeed.
    #[default]
    Stop,
    /// Skip the event (its changes undone), count it in
    /// [`fold_errors`](CortexAdapter::fold_errors), and go on.
    LogAndContinue,
}

/// What `open_from_snapshot` does when the snapshot cannot be restored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SnapshotFallback {
    /// Return the [`SnapshotError`].
    #[default]
    Fail,
    /// Log a warning and rebuild the state by replaying the log from the beginning.
    Replay,
}

/// How an adapter opens: see [`CortexAdapter::open_with_config`].
#[derive(Debug, Clone, PartialEq)]
pub struct CortexConfig {
    start: StartAt,
    policy: FoldErrorPolicy,
    file: Option<RedexFileConfig>,
    fallback: SnapshotFallback,
    max_batch: usize,
}

impl Default for CortexConfig {
    fn default() -> Self {
        CortexConfig {
            start: StartAt::Beginning,
            policy: FoldErrorPolicy::Stop,
            file: None,
            fallback: SnapshotFallback::Fail,
            max_batch: 1024,
        }
    }
}

impl CortexConfig {
    /// Where the fold starts (ignored when restoring a snapshot: it starts after it).
    pub fn with_start(mut self, start: StartAt) -> Self {
        self.start = start;
        self
    }

    /// What the fold does with an event it cannot apply.
    pub fn with_fold_error_policy(mut self, policy: FoldErrorPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The config the model's RedEX file is opened with. Without one, the file is
    /// persistent when the [`Redex`] has a persistent directory, in memory otherwise. On a
    /// JetStream backend only its retention limits apply (as stream limits, where the
    /// stream's own config leaves them unset).
    pub fn with_file_config(mut self, file: RedexFileConfig) -> Self {
        self.file = Some(file);
        self
    }

    /// What happens when a snapshot cannot be restored.
    pub fn with_snapshot_fallback(mut self, fallback: SnapshotFallback) -> Self {
        self.fallback = fallback;
        self
    }

    /// The most events the fold applies under one write lock when it is behind (default
    /// 1024; at least 1).
    pub fn with_max_batch(mut self, events: usize) -> Self {
        self.max_batch = events.max(1);
        self
    }

    /// The RedEX file config, if one was set.
    pub fn file_config(&self) -> Option<&RedexFileConfig> {
        self.file.as_ref()
    }

    /// The file config to open the model's channel in `redex` with.
    pub(crate) fn file_config_for(&self, redex: &Redex) -> RedexFileConfig {
        self.file.clone().unwrap_or_else(|| {
            RedexFileConfig::default().with_persistent(redex.persistent_dir().is_some())
        })
    }

    /// The snapshot fallback.
    pub fn snapshot_fallback(&self) -> SnapshotFallback {
        self.fallback
    }
}

/// How the adapter's state was initialised.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestoreOutcome {
    /// Opened without a snapshot.
    Fresh,
    /// Restored from a snapshot, then folded the events after it.
    Snapshot(SnapshotInfo),
    /// The snapshot could not be restored ([`SnapshotFallback::Replay`]): replayed the log.
    Replayed {
        /// Why the snapshot was not used.
        reason: String,
    },
}

/// The fold's error record: see [`CortexAdapter::fold_errors`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FoldErrors {
    /// Events skipped under [`FoldErrorPolicy::LogAndContinue`].
    pub skipped: u64,
    /// The most recent errors (up to 32), oldest first.
    pub recent: Vec<FoldError>,
    /// The error that stopped the fold, if it stopped.
    pub stopped: Option<FoldError>,
}

const RECENT_ERRORS: usize = 32;

/// A batch the fold applied, as [`CortexAdapter::changes`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change<Id> {
    /// Events through `through_seq` were folded; `ids` are the rows they changed (sorted).
    Applied {
        /// The last folded sequence number.
        through_seq: u64,
        /// The ids of the rows that changed.
        ids: Arc<[Id]>,
    },
    /// This receiver fell behind and missed `batches` batches: re-read the state.
    Lagged {
        /// How many batches were missed.
        batches: u64,
    },
}

/// The model's state: read it with [`read`](Self::read). Only the fold writes it.
pub struct SharedState<M: CortexModel> {
    pub(crate) lock: RwLock<Table<M>>,
}

impl<M: CortexModel> fmt::Debug for SharedState<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.lock.try_read() {
            Some(t) => t.fmt(f),
            None => f.write_str("SharedState(<locked>)"),
        }
    }
}

impl<M: CortexModel> SharedState<M> {
    /// Takes the read lock. Hold it briefly: the fold waits for it.
    pub fn read(&self) -> RwLockReadGuard<'_, Table<M>> {
        self.lock.read()
    }
}

/// What the adapter handles, the fold task and watch streams share.
pub(crate) struct Shared<M: CortexModel> {
    pub(crate) state: Arc<SharedState<M>>,
    pub(crate) watches: Mutex<Registry<M>>,
    /// Registered watchers, readable without the registry lock.
    pub(crate) watchers: AtomicUsize,
    log: Arc<dyn CortexLog>,
    origin_hash: u64,
    policy: FoldErrorPolicy,
    /// Last folded seq + 1; 0 when nothing is folded.
    folded: AtomicU64,
    stopped: OnceLock<FoldError>,
    closed: AtomicBool,
    notify: Notify,
    changes: Mutex<Option<broadcast::Sender<Change<M::Id>>>>,
    errors: Mutex<(u64, VecDeque<FoldError>)>,
    driver: Mutex<Driver<M>>,
    max_batch: usize,
    /// The rows a batch changed, reused from batch to batch.
    touched_buf: Mutex<Vec<Touched<M>>>,
    /// The fold starts at the log's head and has not read yet: a head that moved before the
    /// first read is not a gap.
    from_head: AtomicBool,
    /// The first seq the fold read (or will read): earlier events are not in the state.
    start_seq: AtomicU64,
}

/// An event read by the fold: its seq, and the decoded event or why it is not one.
type Decoded<M> = (
    u64,
    Result<(EventContext, <M as CortexModel>::Event), FoldErrorKind>,
);

impl<M: CortexModel> Shared<M> {
    fn check(&self, seq: u64) -> Option<Result<(), CortexError>> {
        if self.folded.load(Ordering::Acquire) > seq {
            return Some(Ok(()));
        }
        if let Some(error) = self.stopped.get() {
            return Some(Err(CortexError::FoldStopped {
                channel: M::CHANNEL,
                error: error.clone(),
            }));
        }
        if self.closed.load(Ordering::Acquire) {
            return Some(Err(CortexError::Closed {
                channel: M::CHANNEL,
            }));
        }
        None
    }

    fn folded_through(&self) -> Option<u64> {
        self.folded.load(Ordering::Acquire).checked_sub(1)
    }

    /// Marks the fold finished (closed or stopped): wakes waiters, ends watches and change
    /// streams.
    fn finish(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_waiters();
        let wakers = self.watches.lock().close();
        wakers.into_iter().for_each(Waker::wake);
        self.changes.lock().take();
    }

    fn record_error(&self, error: FoldError) {
        tracing::warn!(channel = M::CHANNEL, %error, "skipping an event the fold cannot apply");
        let mut e = self.errors.lock();
        e.0 += 1;
        if e.1.len() == RECENT_ERRORS {
            e.1.pop_front();
        }
        e.1.push_back(error);
    }

    fn stop(&self, error: FoldError) {
        tracing::error!(channel = M::CHANNEL, %error, "the fold stopped");
        let _ = self.stopped.set(error);
        self.finish();
    }

    /// Decodes an event outside the state lock.
    fn decode(ev: &RedexEvent) -> Result<(EventContext, M::Event), FoldErrorKind> {
        let (meta, body) = EventMeta::decode(&ev.payload).map_err(FoldErrorKind::Header)?;
        if meta.schema_version > M::SCHEMA.version {
            return Err(FoldErrorKind::NewerSchema {
                found: meta.schema_version,
                current: M::SCHEMA.version,
            });
        }
        let event = M::Event::decode_body(meta.dispatch, meta.schema_version, body)
            .map_err(FoldErrorKind::Decode)?;
        let ctx = EventContext {
            seq: ev.seq,
            log_timestamp_ns: ev.timestamp_ns,
            meta,
        };
        Ok((ctx, event))
    }

    /// Decodes an event read from the tail (outside the state lock) into `batch`, or
    /// records the log failure that ends the batch. Returns `false` once reading must stop.
    fn read_item(
        batch: &mut Vec<Decoded<M>>,
        failure: &mut Option<Option<RedexError>>,
        item: Result<RedexEvent, RedexError>,
    ) -> bool {
        match item {
            Ok(ev) => {
                // Generated decoding is model code: a panic in it is this event's error.
                let d = catch_unwind(AssertUnwindSafe(|| Self::decode(&ev)))
                    .unwrap_or_else(|p| Err(FoldErrorKind::Panicked(panic_message(&*p))));
                batch.push((ev.seq, d));
                true
            }
            Err(RedexError::Evicted {
                requested,
                first_available,
                ..
            }) => {
                batch.push((
                    requested,
                    Err(FoldErrorKind::Evicted {
                        head: first_available,
                    }),
                ));
                true
            }
            Err(RedexError::Closed { .. }) => {
                *failure = Some(None);
                false
            }
            Err(e) => {
                *failure = Some(Some(e));
                false
            }
        }
    }

    /// Applies a batch of decoded events, then acts on the log failure that ended it, if
    /// any (`Some(None)`: the log closed). Returns `false` when the fold must end.
    fn apply_batch(
        &self,
        decoded: &mut Vec<Decoded<M>>,
        log_failure: Option<Option<RedexError>>,
    ) -> bool {
        let mut stop = None;
        let mut skipped = Vec::new();
        let mut touched_buf = self.touched_buf.lock();
        let touched = &mut *touched_buf;
        touched.clear();
        let through = {
            let mut t = self.state.lock.write();
            if self.closed.load(Ordering::Acquire) {
                return false;
            }
            // Decided under the write lock: a watcher registers while holding a read lock,
            // so it either saw this batch applied or is counted here.
            let track = self.watchers.load(Ordering::Acquire) > 0
                || self
                    .changes
                    .lock()
                    .as_ref()
                    .is_some_and(|tx| tx.receiver_count() > 0);
            t.set_tracking(track);
            // Only the very first item the fold reads can be "the head moved before we
            // started"; any later eviction is a real gap.
            let mut first_read = self.from_head.swap(false, Ordering::AcqRel);
            for (seq, item) in decoded.drain(..) {
                let first = std::mem::take(&mut first_read);
                let outcome = match item {
                    Ok((ctx, event)) => {
                        let mut tm = t.begin();
                        let r = catch_unwind(AssertUnwindSafe(|| event.apply(&mut tm, &ctx)));
                        let fault = t.take_fault();
                        match (r, fault) {
                            (Ok(Ok(())), None) => {
                                t.commit();
                                Ok(())
                            }
                            (Ok(Err(e)), _) => Err(FoldErrorKind::Rejected(e.to_string())),
                            (Ok(Ok(())), Some(f)) => Err(FoldErrorKind::Misuse(f)),
                            (Err(panic), _) => Err(FoldErrorKind::Panicked(panic_message(&*panic))),
                        }
                    }
                    Err(kind) => Err(kind),
                };
                // Started from the log's head and retention moved it before the first
                // read: the new head is where "the beginning" now is.
                if first && let Err(FoldErrorKind::Evicted { head }) = outcome {
                    self.start_seq.store(head, Ordering::Release);
                    t.set_folded_through(head.checked_sub(1));
                    continue;
                }
                let folded_seq = match &outcome {
                    // A gap is folded through the event before the new head.
                    Err(FoldErrorKind::Evicted { head }) => head.saturating_sub(1),
                    _ => seq,
                };
                if let Err(kind) = outcome {
                    t.rollback();
                    let error = FoldError { seq, kind };
                    if self.policy == FoldErrorPolicy::Stop {
                        stop = Some(error);
                        break;
                    }
                    skipped.push(error);
                }
                t.set_folded_through(Some(folded_seq));
            }
            t.drain_touched_into(touched);
            t.folded_through_seq()
        };
        for e in skipped {
            self.record_error(e);
        }
        if !touched.is_empty() {
            let mut watches = self.watches.lock();
            let mut wakers = Vec::new();
            if watches.collect_affected(touched) {
                // Recursive: a reader holding a guard may be waiting for the registry, and a
                // plain read would queue behind a `close()` waiting for the write lock.
                watches.reevaluate(&self.state.lock.read_recursive(), &mut wakers);
            }
            drop(watches);
            wakers.into_iter().for_each(Waker::wake);
            if let (Some(tx), Some(through_seq)) = (self.changes.lock().as_ref(), through)
                && tx.receiver_count() > 0
            {
                let mut ids: Vec<M::Id> = touched.iter().map(|(id, _)| id.clone()).collect();
                ids.sort_unstable();
                ids.dedup();
                let _ = tx.send(Change::Applied {
                    through_seq,
                    ids: ids.into(),
                });
            }
        }
        touched.clear();
        drop(touched_buf);
        // Progress is published after the watchers saw the batch: once `wait_for_seq`
        // returns, every watch stream already holds a result that includes it.
        self.folded
            .store(through.map_or(0, |s| s + 1), Ordering::Release);
        self.notify.notify_waiters();
        if let Some(error) = stop {
            self.stop(error);
            return false;
        }
        match log_failure {
            None => true,
            Some(None) => {
                self.finish();
                false
            }
            Some(Some(e)) => {
                let seq = self.folded_through().map_or(0, |s| s + 1);
                self.stop(FoldError {
                    seq,
                    kind: FoldErrorKind::Log(e.to_string()),
                });
                false
            }
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

/// Ends the fold's bookkeeping however the task exits (end of log, stop, abort).
struct ExitGuard<M: CortexModel>(Arc<Shared<M>>);

impl<M: CortexModel> Drop for ExitGuard<M> {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// The fold's reading side: the tail and what was read from it. Whoever holds it folds:
/// the fold task, or a `wait_for_seq` caller that finds it free (which saves the caller a
/// wake-up on another thread).
struct Driver<M: CortexModel> {
    tail: LogTail,
    /// The events read for the next batch, decoded as they are read (outside the state
    /// lock); the buffer is reused from batch to batch.
    batch: Vec<Decoded<M>>,
    /// A log failure that ended the batch being read (`Some(None)`: the log closed).
    failure: Option<Option<RedexError>>,
    /// The fold task's waker: a helper polls the tail with it, so the task still hears of
    /// events that arrive after the helper leaves.
    task_waker: Option<Waker>,
    ended: bool,
}

impl<M: CortexModel> Shared<M> {
    /// Reads what the tail has ready and applies it, at most `budget` batches. `Ready`: the
    /// fold has ended. `Pending`: nothing more is ready (the tail holds `cx`'s waker), or
    /// the budget ran out (`cx`'s waker was woken to continue).
    fn drive(&self, d: &mut Driver<M>, cx: &mut Context<'_>, budget: usize) -> Poll<()> {
        for _ in 0..budget {
            if d.ended {
                return Poll::Ready(());
            }
            let mut waiting = false;
            let mut end_of_log = false;
            while d.batch.len() < self.max_batch {
                match d.tail.as_mut().poll_next(cx) {
                    Poll::Ready(Some(item)) => {
                        if !Self::read_item(&mut d.batch, &mut d.failure, item) {
                            break;
                        }
                    }
                    Poll::Ready(None) => {
                        end_of_log = true;
                        break;
                    }
                    Poll::Pending => {
                        waiting = true;
                        break;
                    }
                }
            }
            if !d.batch.is_empty() || d.failure.is_some() {
                // `apply` runs under its own catch; this catches the rest of the model's
                // code (filters, routes, orderings, index keys) and stops the fold cleanly.
                let failure = d.failure.take();
                let applied =
                    catch_unwind(AssertUnwindSafe(|| self.apply_batch(&mut d.batch, failure)));
                match applied {
                    Ok(true) => {}
                    Ok(false) => d.ended = true,
                    Err(panic) => {
                        d.batch.clear();
                        self.touched_buf.lock().clear();
                        // The table may be ahead of the published progress: publish it, so
                        // the stop names the first event the state does not hold.
                        let through = self.state.lock.read_recursive().folded_through_seq();
                        self.folded
                            .store(through.map_or(0, |s| s + 1), Ordering::Release);
                        let seq = through.map_or(0, |s| s + 1);
                        self.stop(FoldError {
                            seq,
                            kind: FoldErrorKind::Panicked(format!(
                                "outside apply (a filter, route, ordering or index key): {}",
                                panic_message(&*panic)
                            )),
                        });
                        d.ended = true;
                    }
                }
            }
            if end_of_log {
                d.ended = true;
                self.finish();
            }
            if d.ended {
                return Poll::Ready(());
            }
            if waiting {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Folds what is ready on the calling thread, if no one else is folding.
    fn help(&self) {
        let Some(mut d) = self.driver.try_lock() else {
            return;
        };
        // Never block this thread on the state lock: if it holds a read guard itself
        // (across an await, which the docs advise against), waiting would never end.
        if self.state.lock.try_write().is_none() {
            return;
        }
        if let Some(waker) = d.task_waker.clone() {
            let _ = self.drive(&mut d, &mut Context::from_waker(&waker), 4);
        }
    }
}

/// The fold task. `guard` is created before the task is spawned, so the fold's end is
/// recorded even if the task is aborted before its first poll.
async fn fold_task<M: CortexModel>(guard: ExitGuard<M>) {
    let shared = &guard.0;
    std::future::poll_fn(|cx| {
        let mut d = shared.driver.lock();
        if !d
            .task_waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            d.task_waker = Some(cx.waker().clone());
        }
        // A few batches per poll, then yield to other tasks.
        shared.drive(&mut d, cx, 8)
    })
    .await;
}

struct Handle<M: CortexModel> {
    shared: Arc<Shared<M>>,
    task: Mutex<Option<JoinHandle<()>>>,
    restore: RestoreOutcome,
    close_started: AtomicBool,
    log_closed: AtomicBool,
}

impl<M: CortexModel> Drop for Handle<M> {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().take() {
            task.abort();
        }
    }
}

/// Names the model of an adapter type: lets generated code (and aliases such as
/// `type TasksAdapter = CortexAdapter<Task>`) go from an adapter type to its model.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a model adapter",
    label = "a `#[derive(NetDb)]` field must be a `CortexAdapter<M>` (or an alias of one)"
)]
pub trait ModelAdapter: Sized {
    /// The model.
    type Model: CortexModel;

    /// This model's adapter in `db`.
    fn from_netdb(db: &crate::netdb::NetDb) -> Result<Self, CortexError>;

    /// The untyped adapter underneath.
    fn cortex(&self) -> &CortexAdapter<Self::Model>;

    /// The adapter as a bundle member (what `#[derive(NetDb)]` snapshots and catches up).
    fn as_bundle_model(&self) -> &dyn crate::netdb::BundleModel {
        self.cortex()
    }

    /// [`CortexAdapter::close`].
    fn close_adapter(&self) -> Result<(), CortexError> {
        self.cortex().close()
    }
}

impl<M: CortexModel> ModelAdapter for CortexAdapter<M> {
    type Model = M;

    fn from_netdb(db: &crate::netdb::NetDb) -> Result<Self, CortexError> {
        db.adapter::<M>().cloned()
    }

    fn cortex(&self) -> &CortexAdapter<M> {
        self
    }
}

/// A model's live state over its log: the fold, queries, writes, watches and snapshots.
///
/// Cloning gives another handle to the same adapter. When every handle is dropped the fold
/// stops (the log stays open in its [`Redex`]); [`close`](Self::close) also closes the log.
pub struct CortexAdapter<M: CortexModel> {
    inner: Arc<Handle<M>>,
}

impl<M: CortexModel> Clone for CortexAdapter<M> {
    fn clone(&self) -> Self {
        CortexAdapter {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<M: CortexModel> fmt::Debug for CortexAdapter<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.inner.shared;
        f.debug_struct("CortexAdapter")
            .field("channel", &M::CHANNEL)
            .field("folded_through", &s.folded_through())
            .field("stopped", &s.stopped.get())
            .field("closed", &s.closed.load(Ordering::Relaxed))
            .finish()
    }
}

fn channel_of<M: CortexModel>() -> Result<ChannelName, CortexError> {
    ChannelName::new(M::CHANNEL).map_err(|source| CortexError::Channel {
        channel: M::CHANNEL,
        source,
    })
}

impl<M: CortexModel> CortexAdapter<M> {
    /// Opens the model's channel in `backend` with the default config and replays it from
    /// the start. On a [`Redex`] the file is on disk if the manager has a persistent
    /// directory; on a `JetStream` (feature `jetstream`) it is the channel's
    /// stream. `origin_hash` identifies this writer in the events it appends.
    pub fn open<B: LogBackend + ?Sized>(
        backend: &B,
        origin_hash: u64,
    ) -> Result<Self, CortexError> {
        Self::open_with_config(backend, origin_hash, CortexConfig::default())
    }

    /// Opens the model's channel with `config`.
    pub fn open_with_config<B: LogBackend + ?Sized>(
        backend: &B,
        origin_hash: u64,
        config: CortexConfig,
    ) -> Result<Self, CortexError> {
        let opened = Self::open_log(backend, &config)?;
        let result = Self::open_on_log(opened.log.clone(), origin_hash, config);
        Self::close_on_error(result, &opened)
    }

    /// Opens the model's log after checking for a runtime (so a failure to start leaves no
    /// log open).
    pub(crate) fn open_log<B: LogBackend + ?Sized>(
        backend: &B,
        config: &CortexConfig,
    ) -> Result<OpenedLog, CortexError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(CortexError::NoRuntime {
                channel: M::CHANNEL,
            });
        }
        backend.open_model_log(&channel_of::<M>()?, config)
    }

    /// Closes the log again if opening the adapter failed and this call had opened it.
    pub(crate) fn close_on_error(
        result: Result<Self, CortexError>,
        opened: &OpenedLog,
    ) -> Result<Self, CortexError> {
        if result.is_err() && opened.opened_here {
            let _ = opened.log.close();
        }
        result
    }

    /// Opens over a log already open: any [`CortexLog`] (the RedEX file config in
    /// `config` is not used). Prefer [`open`](Self::open) on a [`LogBackend`], which also
    /// closes a log it opened when the open fails.
    pub fn open_on_log(
        log: Arc<dyn CortexLog>,
        origin_hash: u64,
        config: CortexConfig,
    ) -> Result<Self, CortexError> {
        let from = match config.start {
            StartAt::Beginning => StartFrom::Head,
            StartAt::Seq(s) => StartFrom::Seq(s),
            StartAt::Live => StartFrom::Seq(log.next_seq()),
        };
        Self::start(
            log,
            origin_hash,
            &config,
            Table::default(),
            from,
            RestoreOutcome::Fresh,
        )
    }

    /// Restores the state from `bytes` (a [`snapshot`](Self::snapshot)) and folds the events
    /// after `last_seq`.
    pub fn open_from_snapshot<B: LogBackend + ?Sized>(
        backend: &B,
        origin_hash: u64,
        bytes: &[u8],
        last_seq: Option<u64>,
    ) -> Result<Self, CortexError> {
        Self::open_from_snapshot_with_config(
            backend,
            origin_hash,
            bytes,
            last_seq,
            CortexConfig::default(),
        )
    }

    /// [`open_from_snapshot`](Self::open_from_snapshot) with a config; its
    /// [`SnapshotFallback`] decides what a snapshot that cannot be restored does.
    pub fn open_from_snapshot_with_config<B: LogBackend + ?Sized>(
        backend: &B,
        origin_hash: u64,
        bytes: &[u8],
        last_seq: Option<u64>,
        config: CortexConfig,
    ) -> Result<Self, CortexError> {
        let opened = Self::open_log(backend, &config)?;
        let result = Self::open_from_snapshot_on_log(
            opened.log.clone(),
            origin_hash,
            bytes,
            last_seq,
            config,
        );
        Self::close_on_error(result, &opened)
    }

    /// [`open_from_snapshot_with_config`](Self::open_from_snapshot_with_config) over any
    /// [`CortexLog`].
    pub fn open_from_snapshot_on_log(
        log: Arc<dyn CortexLog>,
        origin_hash: u64,
        bytes: &[u8],
        last_seq: Option<u64>,
        config: CortexConfig,
    ) -> Result<Self, CortexError> {
        let restored = snapshot::decode::<M>(bytes).and_then(|(info, rows)| {
            if info.last_seq != last_seq {
                return Err(SnapshotError::SeqMismatch {
                    given: last_seq,
                    recorded: info.last_seq,
                });
            }
            let log_next = log.next_seq();
            let from = match last_seq {
                None => StartFrom::Head,
                Some(s) if s >= log_next => {
                    return Err(SnapshotError::AheadOfLog {
                        channel: M::CHANNEL.to_owned(),
                        last_seq: s,
                        log_next,
                    });
                }
                Some(s) => StartFrom::Seq(s + 1),
            };
            Ok((info, rows, from))
        });
        match restored {
            Ok((info, rows, from)) => {
                let table = Table::from_rows(rows, info.last_seq);
                let outcome = RestoreOutcome::Snapshot(info);
                Self::start(log, origin_hash, &config, table, from, outcome)
            }
            Err(e) if config.fallback == SnapshotFallback::Replay => {
                tracing::warn!(
                    channel = M::CHANNEL,
                    error = %e,
                    "snapshot not restored; replaying the log instead"
                );
                let outcome = RestoreOutcome::Replayed {
                    reason: e.to_string(),
                };
                Self::start(
                    log,
                    origin_hash,
                    &config,
                    Table::default(),
                    StartFrom::Head,
                    outcome,
                )
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Opens over `log` with a full replay, recording `reason` as why no snapshot was used.
    pub(crate) fn open_replaying_on_log(
        log: Arc<dyn CortexLog>,
        origin_hash: u64,
        config: CortexConfig,
        reason: String,
    ) -> Result<Self, CortexError> {
        let outcome = RestoreOutcome::Replayed { reason };
        Self::start(
            log,
            origin_hash,
            &config,
            Table::default(),
            StartFrom::Head,
            outcome,
        )
    }

    fn start(
        log: Arc<dyn CortexLog>,
        origin_hash: u64,
        config: &CortexConfig,
        table: Table<M>,
        from: StartFrom,
        restore: RestoreOutcome,
    ) -> Result<Self, CortexError> {
        let (from_head, from) = match from {
            StartFrom::Head => (true, log.first_seq()),
            StartFrom::Seq(s) => (false, s),
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return Err(CortexError::NoRuntime {
                channel: M::CHANNEL,
            });
        };
        let mut table = table;
        if table.folded_through_seq().is_none() && from > 0 {
            // Events before the start are deliberately not folded: the fold is past them.
            table.set_folded_through(Some(from - 1));
        }
        let folded = table.folded_through_seq().map_or(0, |s| s + 1);
        let (tx, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            state: Arc::new(SharedState {
                lock: RwLock::new(table),
            }),
            watches: Mutex::new(Registry::default()),
            watchers: AtomicUsize::new(0),
            log: Arc::clone(&log),
            origin_hash,
            policy: config.policy,
            folded: AtomicU64::new(folded),
            stopped: OnceLock::new(),
            closed: AtomicBool::new(false),
            notify: Notify::new(),
            changes: Mutex::new(Some(tx)),
            errors: Mutex::new((0, VecDeque::new())),
            driver: Mutex::new(Driver {
                tail: log.tail(from),
                batch: Vec::new(),
                failure: None,
                task_waker: None,
                ended: false,
            }),
            max_batch: config.max_batch,
            touched_buf: Mutex::new(Vec::new()),
            from_head: AtomicBool::new(from_head),
            start_seq: AtomicU64::new(from),
        });
        let guard = ExitGuard(Arc::clone(&shared));
        let task = rt.spawn(fold_task(guard));
        Ok(CortexAdapter {
            inner: Arc::new(Handle {
                shared,
                task: Mutex::new(Some(task)),
                restore,
                close_started: AtomicBool::new(false),
                log_closed: AtomicBool::new(false),
            }),
        })
    }

    fn shared(&self) -> &Arc<Shared<M>> {
        &self.inner.shared
    }

    /// The state the fold maintains. Queries take its read lock:
    /// `adapter.state().read().find_unique(&id)`.
    pub fn state(&self) -> Arc<SharedState<M>> {
        Arc::clone(&self.shared().state)
    }

    /// The log the adapter folds.
    pub fn log(&self) -> &Arc<dyn CortexLog> {
        &self.shared().log
    }

    /// How the state was initialised.
    pub fn restore_outcome(&self) -> &RestoreOutcome {
        &self.inner.restore
    }

    /// The last sequence number folded into the state (`None`: none yet).
    pub fn folded_through_seq(&self) -> Option<u64> {
        self.shared().folded_through()
    }

    /// Appends an event; returns its sequence number. The state reflects it once the fold
    /// has applied it: await [`wait_for_seq`](Self::wait_for_seq) to read your write.
    ///
    /// Appends succeed while the fold is stopped: the log is the source of truth.
    pub fn append(&self, event: &M::Event) -> Result<u64, CortexError> {
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let fresh = || {
            let mut buf = Vec::new();
            self.encode(event, &mut buf)?;
            Ok(self.shared().log.append(&buf)?)
        };
        // The log copies the bytes: one buffer per thread serves every append (a fresh one
        // when the thread's is in use or already destroyed).
        BUF.try_with(|cell| {
            let Ok(mut buf) = cell.try_borrow_mut() else {
                return fresh();
            };
            buf.clear();
            self.encode(event, &mut buf)?;
            let seq = self.shared().log.append(&buf)?;
            if buf.capacity() > 64 << 10 {
                *buf = Vec::new(); // do not keep one huge event's buffer for ever
            }
            Ok(seq)
        })
        .unwrap_or_else(|_| fresh())
    }

    /// Appends events all or nothing; returns their sequence numbers.
    pub fn append_batch(&self, events: &[M::Event]) -> Result<Range<u64>, CortexError> {
        let mut bufs = Vec::with_capacity(events.len());
        for e in events {
            let mut buf = Vec::with_capacity(128);
            self.encode(e, &mut buf)?;
            bufs.push(buf);
        }
        let refs: Vec<&[u8]> = bufs.iter().map(Vec::as_slice).collect();
        Ok(self.shared().log.append_batch(&refs)?)
    }

    /// Appends an event and waits until the fold has applied it. Under
    /// [`FoldErrorPolicy::LogAndContinue`], an event the fold skipped is
    /// [`CortexError::Skipped`] (found among the 32 most recent fold errors).
    pub async fn append_and_wait(&self, event: &M::Event) -> Result<u64, CortexError> {
        let seq = self.append(event)?;
        self.wait_for_seq(seq).await?;
        let shared = self.shared();
        let start = shared.start_seq.load(Ordering::Acquire);
        if seq < start {
            // Retention removed it before the fold's first read.
            return Err(CortexError::Skipped {
                channel: M::CHANNEL,
                error: FoldError {
                    seq,
                    kind: FoldErrorKind::Evicted { head: start },
                },
            });
        }
        let errors = shared.errors.lock();
        let skipped = errors.1.iter().find(|e| match e.kind {
            FoldErrorKind::Evicted { head } => e.seq <= seq && seq < head,
            _ => e.seq == seq,
        });
        if let Some(error) = skipped {
            return Err(CortexError::Skipped {
                channel: M::CHANNEL,
                error: error.clone(),
            });
        }
        Ok(seq)
    }

    fn encode(&self, event: &M::Event, buf: &mut Vec<u8>) -> Result<(), CortexError> {
        buf.resize(EventMeta::LEN, 0);
        event
            .encode_body(buf)
            .map_err(|source| CortexError::Encode {
                channel: M::CHANNEL,
                source,
            })?;
        EventMeta {
            dispatch: event.dispatch(),
            schema_version: M::SCHEMA.version,
            origin_hash: self.shared().origin_hash,
            seq_or_ts: SeqOrTs::TimestampNs(crate::redex::clock_now_ns()),
        }
        .write_header(buf);
        Ok(())
    }

    /// Returns once the fold has applied event `seq`. Returns an error at once if the fold
    /// has stopped before it ([`CortexError::FoldStopped`]) or the adapter is closed
    /// ([`CortexError::Closed`]).
    pub async fn wait_for_seq(&self, seq: u64) -> Result<(), CortexError> {
        let shared = self.shared();
        if let Some(r) = shared.check(seq) {
            return r;
        }
        let mut helped = false;
        loop {
            let mut notified = pin!(shared.notify.notified());
            notified.as_mut().enable();
            if let Some(r) = shared.check(seq) {
                return r;
            }
            // The event may be ready and the fold task not yet running: fold a little here,
            // once. A long backlog is left to the fold task, so this call yields (and a
            // timeout around it can fire) like any other wait.
            if !std::mem::replace(&mut helped, true) {
                shared.help();
                if let Some(r) = shared.check(seq) {
                    return r;
                }
            }
            notified.await;
        }
    }

    /// Returns once the fold has applied every event the log held when this was called: after
    /// [`open`](Self::open), the replay of what earlier runs wrote. Errors as
    /// [`wait_for_seq`](Self::wait_for_seq) does.
    pub async fn catch_up(&self) -> Result<(), CortexError> {
        match self.log().next_seq() {
            0 => Ok(()),
            next => self.wait_for_seq(next - 1).await,
        }
    }

    /// [`wait_for_seq`](Self::wait_for_seq) giving up after `timeout` with
    /// [`CortexError::Timeout`].
    pub async fn wait_for_seq_timeout(
        &self,
        seq: u64,
        timeout: Duration,
    ) -> Result<(), CortexError> {
        match tokio::time::timeout(timeout, self.wait_for_seq(seq)).await {
            Ok(r) => r,
            Err(_) => Err(CortexError::Timeout {
                channel: M::CHANNEL,
                seq,
                folded: self.folded_through_seq(),
                waited: timeout,
            }),
        }
    }

    /// What the fold could not apply: skipped events, recent errors, and the stop error.
    pub fn fold_errors(&self) -> FoldErrors {
        let s = self.shared();
        let e = s.errors.lock();
        FoldErrors {
            skipped: e.0,
            recent: e.1.iter().cloned().collect(),
            stopped: s.stopped.get().cloned(),
        }
    }

    /// Whether the fold is still running.
    pub fn is_folding(&self) -> bool {
        !self.shared().closed.load(Ordering::Acquire)
    }

    /// A stream of the batches the fold applies. A receiver that falls more than 1024
    /// batches behind gets [`Change::Lagged`]. It ends when the fold ends.
    pub fn changes(&self) -> impl Stream<Item = Change<M::Id>> + Send + Unpin + 'static {
        let rx = self
            .shared()
            .changes
            .lock()
            .as_ref()
            .map(|tx| tx.subscribe());
        Box::pin(futures_util::stream::unfold(rx, |rx| async move {
            let mut rx = rx?;
            match rx.recv().await {
                Ok(c) => Some((c, Some(rx))),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    Some((Change::Lagged { batches: n }, Some(rx)))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        }))
    }

    /// A watch builder: chain filters, order and limit, then `.stream()`.
    pub fn watch(&self) -> M::Watch {
        Watch::new(Arc::clone(self.shared())).into()
    }

    /// The current result of `watcher` and a stream of its later results, with no repeat of
    /// the current one.
    pub fn snapshot_and_watch(&self, watcher: impl Into<Watch<M>>) -> (Vec<M>, WatchStream<M>) {
        watcher.into().snapshot_and_stream()
    }

    /// The state as snapshot bytes, and the last sequence number folded into it. Restore
    /// with [`open_from_snapshot`](Self::open_from_snapshot).
    pub fn snapshot(&self) -> Result<(Vec<u8>, Option<u64>), CortexError> {
        self.with_snapshot_state(|t| {
            let bytes = snapshot::encode(t).map_err(|source| CortexError::Encode {
                channel: M::CHANNEL,
                source,
            })?;
            Ok((bytes, t.folded_through_seq()))
        })
    }

    /// Calls `f` with the state, read-locked the way a snapshot reads it.
    pub(crate) fn with_snapshot_state<R>(&self, f: impl FnOnce(&Table<M>) -> R) -> R {
        // Recursive: a caller already holding a read guard must not deadlock behind the fold.
        let t = self.shared().state.lock.read_recursive();
        f(&t)
    }

    /// Stops the fold and closes the log (which fsyncs it). The state stays readable; waits
    /// and watches end. Calling it again stops nothing more, but retries closing the log if
    /// that failed.
    pub fn close(&self) -> Result<(), CortexError> {
        let shared = self.shared();
        if !self.inner.close_started.swap(true, Ordering::AcqRel) {
            {
                // Under the write lock: no batch is half applied, and none starts after this.
                let _t = shared.state.lock.write();
                shared.closed.store(true, Ordering::Release);
            }
            if let Some(task) = self.inner.task.lock().take() {
                task.abort();
            }
            shared.finish();
        }
        // Until the log has closed once, every call tries again: a failed close keeps events
        // only a retry writes.
        if !self.inner.log_closed.load(Ordering::Acquire) {
            shared.log.close()?;
            self.inner.log_closed.store(true, Ordering::Release);
        }
        Ok(())
    }
}
