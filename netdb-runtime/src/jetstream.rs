//! The same models on NATS JetStream: a [`CortexLog`] backed by a JetStream stream, so
//! several processes (or machines) share one replicated log. Feature `jetstream`.
//!
//! A [`JetStream`] connection is a [`LogBackend`], like a [`Redex`](crate::redex::Redex):
//! adapters, generated adapters and `NetDb`s open on it unchanged.
//!
//! ```no_run
//! use netdb_runtime::jetstream::{JetStream, JetStreamOptions};
//! use netdb_runtime::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
//! #[cortex(channel = "app/tasks")]
//! pub struct Task {
//!     pub id: u64,
//!     #[cortex(filter, index)]
//!     pub done: bool,
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let js = JetStream::connect(JetStreamOptions::new(["nats://127.0.0.1:4222"]))?;
//! let tasks = TasksAdapter::open(&js, 1)?; // stream NETDB_app~tasks, replayed
//! let seq = tasks.insert(Task { id: 1, done: false })?;
//! tasks.wait_for_seq(seq).await?;
//! assert_eq!(tasks.state().read().query().where_done(false).count(), 1);
//! # Ok(()) }
//! ```
//!
//! A log also opens on its own, for raw events:
//!
//! ```no_run
//! use netdb_runtime::cortex::CortexLog;
//! use netdb_runtime::jetstream::{JetStream, JetStreamLogConfig, JetStreamOptions};
//!
//! let js = JetStream::connect(JetStreamOptions::new(["nats://127.0.0.1:4222"]))?;
//! let log = js.open_log(&"cortex/events".parse()?, JetStreamLogConfig::default())?;
//! let seq = log.append(b"hello")?;
//! assert_eq!(log.read_range(seq, seq + 1)?[0].payload, &b"hello"[..]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Opening models and NetDb
//!
//! Opening a model on a [`JetStream`] opens the model's channel as a stream with the
//! connection's [`JetStreamLogConfig`] for it: the one
//! [`JetStreamOptions::with_channel_log_config`] names for that channel, else
//! [`JetStreamOptions::with_log_config`]'s, else the default (one replica, single writer, no
//! limits). Retention limits that config leaves unset come from the model's own RedEX file
//! config ([`CortexConfig::with_file_config`]), so a model keeps its retention on either
//! backend; the file config's other settings (persistence, fsync policy, segment sizes)
//! are RedEX's and do not apply. Each open is a new handle on the stream: two adapters in
//! two processes (or in one) on the same channel read the same events.
//!
//! # Streams and subjects
//!
//! A channel is one JetStream stream holding one subject:
//!
//! | Channel | Stream | Subject |
//! |---|---|---|
//! | `cortex/tasks` | `NETDB_cortex~tasks` | `netdb.cortex.tasks` |
//!
//! The stream name is `NETDB_` followed by the channel name with each `/` written as `~`
//! (stream names cannot hold `/`, `.`, `*`, `>` or whitespace; channel names never hold
//! `~`, so the mapping is one to one). The subject is `netdb.` followed by the channel's
//! segments joined by `.`. [`JetStreamLogConfig::with_stream_name`] overrides the stream
//! name; [`stream_name`] and [`subject`] compute the defaults.
//!
//! # Sequence numbers
//!
//! RedEX numbers events from 0; JetStream numbers stream messages from 1. A log's seqs are
//! RedEX seqs everywhere in netdb: **event `seq` is stream message `seq + 1`**. So
//! `next_seq()` is the stream's last sequence, `first_seq()` its first sequence minus one,
//! and a snapshot's `last_seq` means the same on either backend.
//!
//! # Writers
//!
//! Every append carries a message id (`Nats-Msg-Id`), so a retry after a lost
//! acknowledgement (a leader change, a reconnect) is stored once, not twice, within the
//! stream's duplicate window (two minutes by default).
//!
//! * [`WriterMode::Single`] (the default): each append is published with
//!   `Nats-Expected-Last-Sequence` set to the end of the log as this handle last knew it:
//!   at open, after each of its own appends, and after each event its tails and reads
//!   delivered. For a model, that is the end its fold has read: a writer that folded
//!   another writer's events appends after them. If another writer appended something this
//!   handle has not seen, the server refuses the append and it fails with
//!   [`RedexError::Conflict`], writing nothing; the handle then knows the new end, so the
//!   caller can catch up (`wait_for_seq`), re-check and append again. This is optimistic
//!   concurrency: several processes may share a channel, and none appends on a view it
//!   has not seen; a writer that raced another is told, never silently interleaved.
//! * [`WriterMode::Multi`]: single appends carry no expectation; the server orders
//!   concurrent writers' events and each append returns the seq it got. Use it when events
//!   from several writers commute (each writer's fold decides on what it folded).
//!
//! # Batches
//!
//! JetStream 2.9 has no atomic multi-message publish, so `append_batch` is **not** all or
//! nothing here. Its events are pipelined: published back to back on the connection (up to
//! [`JetStreamOptions::with_max_in_flight`], 256 by default, before the first is
//! acknowledged), then their acknowledgements awaited in order, so a batch costs about one
//! round trip rather than one per event. Each event after the first expects the previous
//! one as the stream's last message, by sequence (`Nats-Expected-Last-Sequence`) and by
//! message id (`Nats-Expected-Last-Msg-Id`); the first expects the end this handle knows
//! (single writer) or nothing (multi-writer: its sequence is awaited before the others are
//! sent). So the appended events are always contiguous and never interleaved with another
//! writer's, and once an event is refused (another writer's event came first, it is too
//! large, the server refused it), every later one of the batch is refused too, as its
//! predecessor never became the last message.
//!
//! If an event fails after others were stored, the batch fails with
//! [`RedexError::PartialBatch`] naming exactly the seqs that were appended (and, as
//! `source`, why the next one was not); if the first one fails, with that event's error and
//! nothing appended. An event with no answer (a leader change, a reconnect) is published
//! again with the same message id, as are the ones sent after it, until the append
//! timeout, so none is stored twice; if the timeout passes, the batch fails with
//! [`RedexError::Unavailable`] (`outcome_unknown`), inside a `PartialBatch` naming the
//! events known to be stored if there are any: events after those may still be stored,
//! contiguously after them.
//!
//! # Durability and `FsyncPolicy`
//!
//! An append returns once the stream acknowledged it: with one replica, once the server
//! stored it (written to its files, not necessarily fsynced); with three, once a majority
//! of the replicas stored it, so it survives losing any one server. When the server fsyncs
//! is the server's `sync_interval` (two minutes by default on 2.9; 2.10 and later also
//! accept `always`), not the client's: [`FsyncPolicy`](crate::redex::FsyncPolicy) does not
//! apply to a JetStream log. Every policy means the same thing — "acknowledged by the
//! stream" — and [`CortexLog::sync`] has nothing left to wait for (each append already
//! waited for its acknowledgement); it cannot make the server fsync. For machine-crash
//! safety run three replicas on separate machines.
//!
//! # Retention and replicas
//!
//! [`JetStreamLogConfig`]'s retention becomes the stream's limits, discarding the oldest
//! messages: `max_events` is `max_msgs`, `max_age` is `max_age`, and `max_bytes` is
//! `max_bytes` (which JetStream counts over whole messages, subject and headers included,
//! not payloads alone). Replicas are 1 or 3. A stream that already exists is used as it is
//! if its subject, limits and replicas match the config; otherwise opening fails with
//! [`RedexError::Backend`] saying what differs.
//!
//! # Connection loss
//!
//! The client reconnects by itself. While the server is away, appends and reads fail after
//! their timeout with [`RedexError::Unavailable`]; tails wait and resume where they
//! stopped, with no gap and no duplicate, once the server is back.
//!
//! An append that failed this way has an unknown outcome: the client keeps what it could
//! not send and sends it when it reconnects, so the event may still be stored later. In
//! single-writer mode the handle's next append then fails with [`RedexError::Conflict`]
//! (the log moved without it), which is the signal to catch up and look before appending
//! again.
//!
//! # Threads
//!
//! [`CortexLog`] is synchronous and the NATS client is async, so a [`JetStream`] runs the
//! client on its own small tokio runtime (one worker thread). Synchronous calls hand their
//! request to it and block the calling thread until the answer, which is safe from inside
//! another tokio runtime (as a blocking file write is). The runtime stops when the last
//! handle (the [`JetStream`], its logs) is dropped.

use std::collections::VecDeque;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::context::{Context, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config as StreamConfig, DiscardPolicy, Stream};
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::cortex::{CortexConfig, CortexError, CortexLog, LogBackend, LogTail, OpenedLog};
use crate::redex::{ChannelName, RedexError, RedexEvent};

/// The stream name of `channel`: `NETDB_` and the channel name with `/` written as `~`.
///
/// ```
/// # use netdb_runtime::jetstream::stream_name;
/// assert_eq!(stream_name(&"cortex/tasks".parse()?), "NETDB_cortex~tasks");
/// # Ok::<(), netdb_runtime::redex::ChannelNameError>(())
/// ```
pub fn stream_name(channel: &ChannelName) -> String {
    format!("NETDB_{}", channel.as_str().replace('/', "~"))
}

/// The subject of `channel`: `netdb.` and its segments joined by `.`.
///
/// ```
/// # use netdb_runtime::jetstream::subject;
/// assert_eq!(subject(&"cortex/tasks".parse()?), "netdb.cortex.tasks");
/// # Ok::<(), netdb_runtime::redex::ChannelNameError>(())
/// ```
pub fn subject(channel: &ChannelName) -> String {
    let mut s = String::from("netdb");
    for segment in channel.segments() {
        s.push('.');
        s.push_str(segment);
    }
    s
}

/// Events of a batch in flight at once, unless [`JetStreamOptions::with_max_in_flight`]
/// says otherwise.
const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// How to reach the NATS servers.
#[derive(Debug, Clone)]
pub struct JetStreamOptions {
    servers: Vec<String>,
    request_timeout: Duration,
    append_timeout: Duration,
    max_in_flight: usize,
    client_name: Option<String>,
    log_config: JetStreamLogConfig,
    channel_log_configs: Vec<(String, JetStreamLogConfig)>,
}

impl JetStreamOptions {
    /// Connects to any of `servers` (`nats://host:port` or `host:port`); the client learns
    /// the rest of a cluster from the one it reaches.
    pub fn new<S: Into<String>>(servers: impl IntoIterator<Item = S>) -> Self {
        JetStreamOptions {
            servers: servers.into_iter().map(Into::into).collect(),
            request_timeout: Duration::from_secs(5),
            append_timeout: Duration::from_secs(10),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            client_name: None,
            log_config: JetStreamLogConfig::default(),
            channel_log_configs: Vec::new(),
        }
    }

    /// How long a read, an open or one publish attempt waits for the server (default 5 s).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long an append keeps retrying (same message id, so never stored twice) through a
    /// leader change or a reconnect before it fails with [`RedexError::Unavailable`]
    /// (default 10 s).
    pub fn with_append_timeout(mut self, timeout: Duration) -> Self {
        self.append_timeout = timeout;
        self
    }

    /// How many events of a batch are published before the first of them is acknowledged
    /// (default 256; at least 1). See [Batches](self#batches): 1 publishes each event after
    /// the previous one's acknowledgement, a round trip per event.
    pub fn with_max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// The client name the servers show in their connection lists.
    pub fn with_client_name(mut self, name: impl Into<String>) -> Self {
        self.client_name = Some(name.into());
        self
    }

    /// The config models' streams open with when this connection is their backend
    /// (default: [`JetStreamLogConfig::default`]). See
    /// [Opening models](self#opening-models-and-netdb).
    pub fn with_log_config(mut self, config: JetStreamLogConfig) -> Self {
        self.log_config = config;
        self
    }

    /// The config the model on `channel` opens its stream with, instead of
    /// [`with_log_config`](Self::with_log_config)'s.
    pub fn with_channel_log_config(
        mut self,
        channel: impl Into<String>,
        config: JetStreamLogConfig,
    ) -> Self {
        let channel = channel.into();
        self.channel_log_configs.retain(|(c, _)| *c != channel);
        self.channel_log_configs.push((channel, config));
        self
    }

    /// The stream config of the model on `channel`: its own, or the default one; limits
    /// it leaves unset come from the model's RedEX file config.
    fn model_log_config(&self, channel: &ChannelName, model: &CortexConfig) -> JetStreamLogConfig {
        let mut config = self
            .channel_log_configs
            .iter()
            .find(|(c, _)| c == channel.as_str())
            .map_or_else(|| self.log_config.clone(), |(_, c)| c.clone());
        if let Some(file) = model.file_config() {
            config.max_events = config.max_events.or(file.retention_max_events());
            config.max_bytes = config.max_bytes.or(file.retention_max_bytes());
            config.max_age = config.max_age.or(file.retention_max_age());
        }
        config
    }
}

/// Whether a log expects to be the only writer of its stream. See the
/// [module docs](self#writers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum WriterMode {
    /// One writer: an append after another writer's fails with [`RedexError::Conflict`].
    #[default]
    Single,
    /// Several writers: the server orders their appends.
    Multi,
}

/// How a channel's stream is set up. See the [module docs](self#retention-and-replicas).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamLogConfig {
    replicas: usize,
    max_events: Option<u64>,
    max_bytes: Option<u64>,
    max_age: Option<Duration>,
    writer: WriterMode,
    stream_name: Option<String>,
}

impl Default for JetStreamLogConfig {
    fn default() -> Self {
        JetStreamLogConfig {
            replicas: 1,
            max_events: None,
            max_bytes: None,
            max_age: None,
            writer: WriterMode::Single,
            stream_name: None,
        }
    }
}

impl JetStreamLogConfig {
    /// Replicas of the stream: 1 (default) or 3 (needs a cluster of at least three servers).
    pub fn with_replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }
    /// Keeps at most `max` events (the stream's `max_msgs`).
    pub fn with_retention_max_events(mut self, max: u64) -> Self {
        self.max_events = Some(max);
        self
    }
    /// Keeps at most `max` bytes (the stream's `max_bytes`, counted over whole messages).
    pub fn with_retention_max_bytes(mut self, max: u64) -> Self {
        self.max_bytes = Some(max);
        self
    }
    /// Keeps events for at most `max` (the stream's `max_age`).
    pub fn with_retention_max_age(mut self, max: Duration) -> Self {
        self.max_age = Some(max);
        self
    }
    /// Single (default) or multiple writers.
    pub fn with_writer_mode(mut self, mode: WriterMode) -> Self {
        self.writer = mode;
        self
    }
    /// Uses stream `name` instead of [`stream_name`]`(channel)`.
    pub fn with_stream_name(mut self, name: impl Into<String>) -> Self {
        self.stream_name = Some(name.into());
        self
    }
    /// The writer mode.
    pub fn writer_mode(&self) -> WriterMode {
        self.writer
    }
    /// The number of replicas.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    fn stream_config(&self, channel: &ChannelName) -> StreamConfig {
        let limit = |v: Option<u64>| v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
        StreamConfig {
            name: self
                .stream_name
                .clone()
                .unwrap_or_else(|| stream_name(channel)),
            subjects: vec![subject(channel)],
            max_messages: limit(self.max_events),
            max_bytes: limit(self.max_bytes),
            max_age: self.max_age.unwrap_or_default(),
            num_replicas: self.replicas,
            discard: DiscardPolicy::Old,
            ..Default::default()
        }
    }
}

/// Connecting to NATS failed.
#[derive(Debug, thiserror::Error)]
#[error(
    "could not connect to NATS at {servers:?}: {reason}; check that a server runs there \
     with JetStream enabled (`nats-server -js`)"
)]
pub struct JetStreamConnectError {
    /// The servers tried.
    pub servers: Vec<String>,
    /// What failed.
    pub reason: String,
}

/// A connection to NATS JetStream, on which channels open as [`JetStreamLog`]s. Cheap to
/// clone; the connection closes when the last clone and log are dropped.
#[derive(Debug, Clone)]
pub struct JetStream {
    conn: Arc<Conn>,
}

#[derive(Debug)]
struct Conn {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    client: async_nats::Client,
    context: Context,
    options: JetStreamOptions,
    /// Counts (re)connections: a tail recreates its consumer after each, as the server may
    /// have lost it.
    connections: Arc<watch::Sender<u64>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // May run inside a caller's runtime, where a blocking shutdown would panic.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Conn {
    /// Runs `fut` on the connection's runtime and blocks until it is done; `None` if the
    /// runtime is shutting down.
    fn run<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().ok()
    }

    fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

impl JetStream {
    /// Connects to one of `options`' servers.
    pub fn connect(options: JetStreamOptions) -> Result<JetStream, JetStreamConnectError> {
        let fail = |reason: String| JetStreamConnectError {
            servers: options.servers.clone(),
            reason,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("netdb-jetstream")
            .enable_all()
            .build()
            .map_err(|e| fail(format!("could not start its runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let mut addrs = Vec::with_capacity(options.servers.len());
        for s in &options.servers {
            addrs.push(
                s.parse::<async_nats::ServerAddr>()
                    .map_err(|e| fail(format!("bad server address `{s}`: {e}")))?,
            );
        }
        let mut connect = async_nats::ConnectOptions::new()
            .connection_timeout(options.request_timeout)
            .request_timeout(Some(options.request_timeout))
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((attempts as u64 * 100).min(1000))
            });
        if let Some(name) = &options.client_name {
            connect = connect.name(name);
        }
        let connections = Arc::new(watch::channel(0u64).0);
        let on_event = Arc::clone(&connections);
        connect = connect.event_callback(move |event| {
            if matches!(event, async_nats::Event::Connected) {
                on_event.send_modify(|n| *n += 1);
            }
            std::future::ready(())
        });
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        handle.spawn(async move {
            let _ = tx.send(connect.connect(addrs).await);
        });
        let client = rx
            .recv()
            .map_err(|_| fail("its runtime stopped".into()))?
            .map_err(|e| fail(e.to_string()))?;
        // Building a context spawns its acker task (which takes over publish acknowledgements
        // nobody awaits any more): on the connection's runtime, not the caller's, which may
        // not exist (a plain `fn main`) or stop before the connection does.
        let context = {
            let _runtime = handle.enter();
            jetstream::ContextBuilder::new()
                .timeout(options.request_timeout)
                .build(client.clone())
        };
        Ok(JetStream {
            conn: Arc::new(Conn {
                runtime: Some(runtime),
                handle,
                client,
                context,
                options,
                connections,
            }),
        })
    }

    /// Opens `channel`'s stream, creating it with `config` if it does not exist.
    pub fn open_log(
        &self,
        channel: &ChannelName,
        config: JetStreamLogConfig,
    ) -> Result<JetStreamLog, RedexError> {
        if config.replicas != 1 && config.replicas != 3 {
            return Err(RedexError::InvalidConfig {
                channel: channel.clone(),
                reason: "JetStream replicas must be 1 or 3",
            });
        }
        let wanted = config.stream_config(channel);
        let context = self.conn.context.clone();
        let timeout = self.conn.options.request_timeout;
        let request = wanted.clone();
        let opened = self.conn.run(async move {
            tokio::time::timeout(timeout, context.get_or_create_stream(request)).await
        });
        let unavailable = |reason: String| RedexError::Unavailable {
            channel: channel.clone(),
            op: "open",
            reason,
            outcome_unknown: false,
        };
        let stream = match opened {
            None => return Err(unavailable("the client runtime stopped".into())),
            Some(Err(_)) => return Err(unavailable(format!("no answer within {timeout:?}"))),
            Some(Ok(Err(e))) => {
                return Err(RedexError::Backend {
                    channel: channel.clone(),
                    op: "open",
                    reason: format!("creating stream `{}`: {e}", wanted.name),
                });
            }
            Some(Ok(Ok(stream))) => stream,
        };
        let found = &stream.cached_info().config;
        if let Some(what) = differs(&wanted, found) {
            return Err(RedexError::Backend {
                channel: channel.clone(),
                op: "open",
                reason: format!(
                    "stream `{}` exists with {what}; open it with the config it has, or \
                     change the stream (`nats stream edit`) first",
                    wanted.name
                ),
            });
        }
        let state = &stream.cached_info().state;
        let (first, next) = seqs_of(state.messages, state.first_sequence, state.last_sequence);
        let (end_tx, _) = watch::channel(None);
        Ok(JetStreamLog {
            inner: Arc::new(LogInner {
                conn: Arc::clone(&self.conn),
                channel: channel.clone(),
                subject: wanted.subjects[0].clone(),
                stream,
                writer: config.writer,
                first: AtomicU64::new(first),
                next: AtomicU64::new(next),
                write: Mutex::new(WriteState {
                    expected_next: next,
                    counter: 0,
                }),
                writer_id: writer_id(),
                seen: Arc::new(AtomicU64::new(next)),
                closed: AtomicBool::new(false),
                end_tx,
            }),
        })
    }
}

/// What about `found` differs from `wanted`, if anything.
fn differs(wanted: &StreamConfig, found: &StreamConfig) -> Option<String> {
    let mut what = Vec::new();
    if found.subjects != wanted.subjects {
        what.push(format!(
            "subjects {:?} (this channel needs {:?})",
            found.subjects, wanted.subjects
        ));
    }
    if found.num_replicas.max(1) != wanted.num_replicas {
        what.push(format!(
            "{} replicas (asked for {})",
            found.num_replicas, wanted.num_replicas
        ));
    }
    if found.max_messages != wanted.max_messages {
        what.push(format!(
            "max_msgs {} (asked for {})",
            found.max_messages, wanted.max_messages
        ));
    }
    if found.max_bytes != wanted.max_bytes {
        what.push(format!(
            "max_bytes {} (asked for {})",
            found.max_bytes, wanted.max_bytes
        ));
    }
    if found.max_age != wanted.max_age {
        what.push(format!(
            "max_age {:?} (asked for {:?})",
            found.max_age, wanted.max_age
        ));
    }
    (!what.is_empty()).then(|| what.join(", "))
}

/// RedEX `(first_seq, next_seq)` of a stream's state.
fn seqs_of(messages: u64, first_sequence: u64, last_sequence: u64) -> (u64, u64) {
    let next = last_sequence;
    if messages == 0 {
        (next, next)
    } else {
        (first_sequence.saturating_sub(1), next)
    }
}

/// A process-unique prefix for this log's message ids.
fn writer_id() -> String {
    static LOGS: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "netdb-{:x}-{:x}-{}",
        std::process::id(),
        nanos,
        LOGS.fetch_add(1, Ordering::Relaxed)
    )
}

/// A channel on JetStream: a [`CortexLog`], so models open on it with
/// [`CortexAdapter::open_on_log`](crate::cortex::CortexAdapter::open_on_log). Cheap to clone.
#[derive(Debug, Clone)]
pub struct JetStreamLog {
    inner: Arc<LogInner>,
}

#[derive(Debug)]
struct LogInner {
    conn: Arc<Conn>,
    channel: ChannelName,
    subject: String,
    stream: Stream,
    writer: WriterMode,
    /// RedEX first / next seqs as last seen.
    first: AtomicU64,
    next: AtomicU64,
    /// Held for the whole of an append: one append at a time per handle.
    write: Mutex<WriteState>,
    /// The RedEX next seq after the last event this handle's tails and reads delivered:
    /// a single writer that has seen another writer's events expects to append after them.
    seen: Arc<AtomicU64>,
    writer_id: String,
    closed: AtomicBool,
    /// `Some(n)` once closed: tails end after stream message `n`.
    end_tx: watch::Sender<Option<u64>>,
}

#[derive(Debug)]
struct WriteState {
    /// Where this writer expects its next append to land (single-writer mode).
    expected_next: u64,
    counter: u64,
}

/// Why a publish run stopped.
enum PubFail {
    Conflict,
    Unavailable(String),
    TooLarge(usize),
    Backend(String),
}

impl JetStreamLog {
    /// The channel.
    pub fn channel(&self) -> &ChannelName {
        &self.inner.channel
    }

    /// The stream's name.
    pub fn stream_name(&self) -> &str {
        &self.inner.stream.cached_info().config.name
    }

    /// The stream's subject.
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }

    /// Whether [`close`](CortexLog::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    fn closed_error(&self) -> RedexError {
        RedexError::Closed {
            channel: self.inner.channel.clone(),
        }
    }

    fn unavailable(&self, op: &'static str, reason: String, outcome_unknown: bool) -> RedexError {
        RedexError::Unavailable {
            channel: self.inner.channel.clone(),
            op,
            reason,
            outcome_unknown,
        }
    }

    /// The name of the server leading the stream (the one appends go through), or `None`
    /// while it has no leader or runs on a single server outside a cluster.
    pub fn leader(&self) -> Result<Option<String>, RedexError> {
        Ok(self.info()?.cluster.and_then(|c| c.leader))
    }

    /// The stream's info, fresh from the server.
    fn info(&self) -> Result<jetstream::stream::Info, RedexError> {
        let mut stream = self.inner.stream.clone();
        let timeout = self.inner.conn.options.request_timeout;
        self.inner
            .conn
            .run(async move {
                match tokio::time::timeout(timeout, stream.info()).await {
                    Ok(Ok(info)) => Ok(info.clone()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {timeout:?}")),
                }
            })
            .unwrap_or_else(|| Err("the client runtime stopped".into()))
            .map_err(|reason| self.unavailable("stream info", reason, false))
    }

    /// Asks the server for the stream's first and next seqs; updates the cache.
    fn refresh(&self) -> Result<(u64, u64), RedexError> {
        let state = self.info()?.state;
        let (first, next) = seqs_of(state.messages, state.first_sequence, state.last_sequence);
        self.inner.first.store(first, Ordering::Release);
        self.inner.next.fetch_max(next, Ordering::AcqRel);
        Ok((first, next))
    }

    /// First and next seqs: fresh from the server when connected, else as last seen.
    fn seqs(&self) -> (u64, u64) {
        if self.inner.conn.connected()
            && let Ok(s) = self.refresh()
        {
            return s;
        }
        (
            self.inner.first.load(Ordering::Acquire),
            self.inner.next.load(Ordering::Acquire),
        )
    }

    fn append_run(&self, payloads: &[&[u8]]) -> Result<Range<u64>, RedexError> {
        if self.is_closed() {
            return Err(self.closed_error());
        }
        let mut write = self.inner.write.lock();
        let mut msgs = Vec::with_capacity(payloads.len());
        for p in payloads {
            write.counter += 1;
            let id = format!("{}-{}", self.inner.writer_id, write.counter);
            msgs.push((id, Bytes::copy_from_slice(p)));
        }
        // A single writer expects the end it knows: after its own appends, or after the
        // events its tails and reads delivered if those went further.
        let seen = self.inner.seen.load(Ordering::Acquire);
        write.expected_next = write.expected_next.max(seen);
        let expected = match self.inner.writer {
            WriterMode::Single => Some(write.expected_next),
            WriterMode::Multi => None,
        };
        let context = self.inner.conn.context.clone();
        let stream = self.inner.stream.clone();
        let subject = self.inner.subject.clone();
        let append_timeout = self.inner.conn.options.append_timeout;
        let max_in_flight = self.inner.conn.options.max_in_flight;
        let (acked, fail) = self
            .inner
            .conn
            .run(publish_run(
                context,
                stream,
                subject,
                msgs,
                expected,
                append_timeout,
                max_in_flight,
            ))
            .unwrap_or_else(|| {
                (
                    Vec::new(),
                    Some(PubFail::Unavailable("the client runtime stopped".into())),
                )
            });
        // Stream message `n` is event `n - 1`: the log's next seq after it is `n`.
        let appended = match (acked.first(), acked.last()) {
            (Some(&first), Some(&last)) => {
                write.expected_next = last;
                self.inner.next.fetch_max(last, Ordering::AcqRel);
                first - 1..last
            }
            _ => write.expected_next..write.expected_next,
        };
        let Some(fail) = fail else {
            return Ok(appended);
        };
        let error = match fail {
            PubFail::Conflict => {
                let expected = write.expected_next;
                let found = self.refresh().map_or(expected, |(_, next)| next);
                // The caller learns of the other writer once; its next append goes after it.
                write.expected_next = found;
                RedexError::Conflict {
                    channel: self.inner.channel.clone(),
                    expected,
                    found,
                }
            }
            PubFail::Unavailable(reason) => self.unavailable("append", reason, true),
            PubFail::TooLarge(len) => RedexError::PayloadTooLarge {
                len,
                max: self.inner.conn.client.server_info().max_payload,
            },
            PubFail::Backend(reason) => RedexError::Backend {
                channel: self.inner.channel.clone(),
                op: "append",
                reason,
            },
        };
        if appended.is_empty() {
            Err(error)
        } else {
            Err(RedexError::PartialBatch {
                channel: self.inner.channel.clone(),
                appended,
                requested: payloads.len(),
                source: Box::new(error),
            })
        }
    }
}

/// Publishes `msgs` in order, pipelined: up to `max_in_flight` are sent back to back before
/// their acknowledgements are awaited, in order. The first expects stream message
/// `expected` as the last (if given; without it, it goes alone and the others wait for its
/// sequence); each later one expects its predecessor both as the last sequence and as the
/// last message id, so none is stored unless its predecessor is the stream's last message:
/// after a message is refused, every later one is refused too. Retries from the first
/// message whose outcome is unknown (no answer, no stream leader), with the same message
/// ids, until `append_timeout`. Returns the stream sequences of the messages stored and
/// why it stopped early.
async fn publish_run(
    context: Context,
    stream: Stream,
    subject: String,
    msgs: Vec<(String, Bytes)>,
    expected: Option<u64>,
    append_timeout: Duration,
    max_in_flight: usize,
) -> (Vec<u64>, Option<PubFail>) {
    let mut run = Run {
        context,
        stream,
        subject,
        msgs,
        expected,
        deadline: Instant::now() + append_timeout,
        max_in_flight: max_in_flight.max(1),
        acked: Vec::new(),
        sent: 0,
    };
    run.acked.reserve_exact(run.msgs.len());
    let mut backoff = Duration::from_millis(20);
    loop {
        let before = run.acked.len();
        let pass = tokio::time::timeout_at(run.deadline, run.pass()).await;
        let Ok(stop) = pass else {
            let reason = format!("no acknowledgement within {append_timeout:?}");
            return (run.acked, Some(PubFail::Unavailable(reason)));
        };
        let reason = match stop {
            Stop::Done => return (run.acked, None),
            Stop::Failed(fail) => return (run.acked, Some(fail)),
            Stop::Retry(reason) => reason,
        };
        tracing::debug!(
            subject = %run.subject,
            acknowledged = run.acked.len(),
            error = %reason,
            "append: publishing again from the first unacknowledged event"
        );
        if run.acked.len() > before {
            backoff = Duration::from_millis(20);
        }
        if Instant::now() + backoff >= run.deadline {
            return (run.acked, Some(PubFail::Unavailable(reason)));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

/// A batch being published.
struct Run {
    context: Context,
    stream: Stream,
    subject: String,
    msgs: Vec<(String, Bytes)>,
    /// The stream sequence the first message expects as the last, if any.
    expected: Option<u64>,
    deadline: Instant,
    max_in_flight: usize,
    /// The stream sequences of the messages stored so far: the first `acked.len()`.
    acked: Vec<u64>,
    /// Messages before this index were sent at least once, so an earlier attempt of theirs
    /// may be stored even if a later one is refused.
    sent: usize,
}

/// Why a pass stopped.
enum Stop {
    /// Every message is stored.
    Done,
    /// A message was refused; none after it is stored.
    Failed(PubFail),
    /// A message's outcome is unknown: publish again from it.
    Retry(String),
}

impl Run {
    /// The stream sequence message `acked.len()` expects as the last.
    fn last(&self) -> Option<u64> {
        self.acked.last().copied().or(self.expected)
    }

    /// Publishes from the first message not known to be stored, keeping up to
    /// `max_in_flight` in flight, until every message is stored or one is not.
    async fn pass(&mut self) -> Stop {
        let retried = self.sent;
        let mut inflight = VecDeque::with_capacity(self.max_in_flight.min(self.msgs.len()));
        let mut next = self.acked.len();
        // What message `next` expects as the last sequence; `None` while the sequence of
        // the message before it (the first, published without expectation) is unknown.
        let mut next_expects = self.last();
        // Set once a message could not be sent: none after it is.
        let mut stalled = false;
        loop {
            while !stalled
                && next < self.msgs.len()
                && inflight.len() < self.max_in_flight
                && (next_expects.is_some() || inflight.is_empty())
            {
                let (id, payload) = &self.msgs[next];
                let mut msg = PublishMessage::build()
                    .payload(payload.clone())
                    .message_id(id);
                if let Some(e) = next_expects {
                    msg = msg.expected_last_sequence(e);
                }
                if next > 0 {
                    msg = msg.expected_last_message_id(&self.msgs[next - 1].0);
                }
                let sent = self.context.send_publish(self.subject.clone(), msg).await;
                stalled = sent.is_err();
                if !stalled {
                    self.sent = self.sent.max(next + 1);
                }
                inflight.push_back(sent);
                next_expects = next_expects.map(|e| e + 1);
                next += 1;
            }
            let Some(sent) = inflight.pop_front() else {
                return Stop::Done;
            };
            let i = self.acked.len();
            let want = self.last().map(|last| last + 1);
            let outcome = match sent {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            let stored = match outcome {
                Ok(ack) => match want {
                    Some(want) if ack.sequence != want => {
                        // Only a duplicate can be acknowledged elsewhere than expected (a
                        // cluster may answer one still being replicated with sequence 0):
                        // believe the stream.
                        if !ack.duplicate {
                            return Stop::Failed(PubFail::Backend(format!(
                                "stream message {want} was acknowledged as {}",
                                ack.sequence
                            )));
                        }
                        if !stored_with_id(&self.stream, want, &self.msgs[i].0).await {
                            return Stop::Retry(format!(
                                "stream message {want} acknowledged as a duplicate of {}",
                                ack.sequence
                            ));
                        }
                        want
                    }
                    _ => ack.sequence,
                },
                Err(error) => match error.kind() {
                    PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId => {
                        // The refusal may be of a later attempt, after an earlier one was
                        // stored.
                        match want {
                            Some(want)
                                if i < retried
                                    && stored_with_id(&self.stream, want, &self.msgs[i].0)
                                        .await =>
                            {
                                want
                            }
                            _ => return Stop::Failed(PubFail::Conflict),
                        }
                    }
                    PublishErrorKind::MaxPayloadExceeded => {
                        return Stop::Failed(PubFail::TooLarge(self.msgs[i].1.len()));
                    }
                    PublishErrorKind::Other => match server_error(&error) {
                        // An earlier attempt of this message is still being replicated
                        // (servers from 2.11 on): its outcome is not known yet.
                        Some(jetstream::ErrorCode::STREAM_DUPLICATE_MESSAGE_CONFLICT) => {
                            return Stop::Retry(error.to_string());
                        }
                        Some(_) => return Stop::Failed(PubFail::Backend(error.to_string())),
                        None => return Stop::Retry(error.to_string()),
                    },
                    _ => return Stop::Retry(error.to_string()),
                },
            };
            self.acked.push(stored);
            if next == i + 1 {
                next_expects = Some(stored);
            }
        }
    }
}

/// The server's answer to a publish that `error` carries, if it is one.
fn server_error(error: &jetstream::context::PublishError) -> Option<jetstream::ErrorCode> {
    std::error::Error::source(error)
        .and_then(|s| s.downcast_ref::<jetstream::Error>())
        .map(jetstream::Error::error_code)
}

/// Whether stream message `seq` is the one published with message id `id`.
async fn stored_with_id(stream: &Stream, seq: u64, id: &str) -> bool {
    match stream.get_raw_message(seq).await {
        Ok(m) => m
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .is_some_and(|v| v.as_str() == id),
        Err(_) => false,
    }
}

/// An event of a consumed message, or `None` if it carries no JetStream metadata.
fn event_of(msg: &jetstream::Message) -> Option<(u64, RedexEvent)> {
    let info = msg.info().ok()?;
    let js_seq = info.stream_sequence;
    let ts = u64::try_from(info.published.unix_timestamp_nanos()).unwrap_or(0);
    Some((
        js_seq,
        RedexEvent {
            seq: js_seq - 1,
            timestamp_ns: ts,
            payload: msg.payload.clone(),
        },
    ))
}

/// An ordered consumer's messages from stream message `start`.
async fn consume(
    stream: &Stream,
    start: u64,
) -> Result<async_nats::jetstream::consumer::pull::Ordered, String> {
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start.max(1),
            },
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    consumer.messages().await.map_err(|e| e.to_string())
}

/// Feeds a tail from stream message `want` on: recreates its consumer after an error (the
/// server went away, the leader moved) from where it stopped, until the log is closed or
/// the tail dropped.
async fn pump(
    stream: Stream,
    channel: ChannelName,
    mut want: u64,
    tx: mpsc::Sender<Result<RedexEvent, RedexError>>,
    mut end: watch::Receiver<Option<u64>>,
    mut connections: watch::Receiver<u64>,
) {
    let ended =
        |want: u64, end: &watch::Receiver<Option<u64>>| end.borrow().is_some_and(|e| want > e);
    let mut backoff = Duration::from_millis(50);
    loop {
        if ended(want, &end) {
            return;
        }
        connections.borrow_and_update();
        let mut messages = tokio::select! {
            r = consume(&stream, want) => match r {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(%channel, error = %e, "tail: consumer not created; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = tx.closed() => return,
                        _ = end.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
            _ = tx.closed() => return,
        };
        loop {
            tokio::select! {
                m = messages.next() => match m {
                    Some(Ok(msg)) => {
                        backoff = Duration::from_millis(50);
                        let Some((js_seq, ev)) = event_of(&msg) else { continue };
                        if js_seq < want {
                            continue;
                        }
                        if js_seq > want {
                            let gap = RedexError::Evicted {
                                channel: channel.clone(),
                                requested: want - 1,
                                first_available: js_seq - 1,
                            };
                            if tx.send(Err(gap)).await.is_err() {
                                return;
                            }
                        }
                        if tx.send(Ok(ev)).await.is_err() {
                            return;
                        }
                        want = js_seq + 1;
                        if ended(want, &end) {
                            return;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::debug!(%channel, error = %e, "tail: consumer failed; recreating");
                        break;
                    }
                    None => break,
                },
                _ = end.changed() => {
                    if ended(want, &end) {
                        return;
                    }
                }
                r = connections.changed() => {
                    if r.is_err() {
                        return;
                    }
                    tracing::debug!(%channel, "tail: reconnected; recreating its consumer");
                    break;
                }
                _ = tx.closed() => return,
            }
        }
    }
}

/// Models open on a connection as they do on a [`Redex`](crate::redex::Redex): each
/// channel's stream is opened (or created) with the connection's
/// [log config](JetStreamOptions::with_log_config) for it. Every open is a new handle, so a
/// model that fails to open closes its handle and leaves the stream to the others.
impl LogBackend for JetStream {
    fn open_model_log(
        &self,
        channel: &ChannelName,
        config: &CortexConfig,
    ) -> Result<OpenedLog, CortexError> {
        let log_config = self.conn.options.model_log_config(channel, config);
        let log = self.open_log(channel, log_config)?;
        Ok(OpenedLog {
            log: Arc::new(log),
            opened_here: true,
        })
    }
}

impl CortexLog for JetStreamLog {
    fn append(&self, payload: &[u8]) -> Result<u64, RedexError> {
        self.append_run(&[payload]).map(|r| r.start)
    }

    fn append_batch(&self, payloads: &[&[u8]]) -> Result<Range<u64>, RedexError> {
        if payloads.is_empty() {
            if self.is_closed() {
                return Err(self.closed_error());
            }
            let next = self.inner.next.load(Ordering::Acquire);
            return Ok(next..next);
        }
        self.append_run(payloads)
    }

    fn read_range(&self, start: u64, end: u64) -> Result<Vec<RedexEvent>, RedexError> {
        let (first, next) = self.refresh()?;
        if start < first {
            return Err(RedexError::Evicted {
                channel: self.inner.channel.clone(),
                requested: start,
                first_available: first,
            });
        }
        let end = end.min(next);
        if start >= end {
            return Ok(Vec::new());
        }
        let stream = self.inner.stream.clone();
        let timeout = self.inner.conn.options.request_timeout;
        let channel = self.inner.channel.clone();
        let read = self.inner.conn.run(async move {
            let mut out = Vec::with_capacity((end - start).min(1 << 12) as usize);
            let work = async {
                let mut messages = consume(&stream, start + 1).await?;
                while let Some(m) = messages.next().await {
                    let msg = m.map_err(|e| e.to_string())?;
                    let Some((_, ev)) = event_of(&msg) else {
                        continue;
                    };
                    let expect = out.last().map_or(start, |e: &RedexEvent| e.seq + 1);
                    if ev.seq > expect {
                        return Ok(Err(RedexError::Evicted {
                            channel: channel.clone(),
                            requested: expect,
                            first_available: ev.seq,
                        }));
                    }
                    if ev.seq < expect {
                        continue;
                    }
                    out.push(ev);
                    if expect + 1 >= end {
                        break;
                    }
                }
                Ok::<_, String>(Ok(()))
            };
            match tokio::time::timeout(timeout, work).await {
                Ok(Ok(Ok(()))) => Ok(out),
                Ok(Ok(Err(e))) => Err(Ok(e)),
                Ok(Err(reason)) => Err(Err(reason)),
                Err(_) => Err(Err(format!("no answer within {timeout:?}"))),
            }
        });
        match read {
            Some(Ok(events)) => {
                if let Some(last) = events.last() {
                    self.inner.seen.fetch_max(last.seq + 1, Ordering::AcqRel);
                }
                Ok(events)
            }
            Some(Err(Ok(e))) => Err(e),
            Some(Err(Err(reason))) => Err(self.unavailable("read", reason, false)),
            None => Err(self.unavailable("read", "the client runtime stopped".into(), false)),
        }
    }

    fn tail(&self, from: u64) -> LogTail {
        let (tx, mut rx) = mpsc::channel(256);
        let task = pump(
            self.inner.stream.clone(),
            self.inner.channel.clone(),
            from + 1,
            tx,
            self.inner.end_tx.subscribe(),
            self.inner.conn.connections.subscribe(),
        );
        self.inner.conn.handle.spawn(task);
        let seen = Arc::clone(&self.inner.seen);
        Box::pin(futures_util::stream::poll_fn(move |cx| {
            let item = rx.poll_recv(cx);
            if let std::task::Poll::Ready(Some(Ok(ev))) = &item {
                seen.fetch_max(ev.seq + 1, Ordering::AcqRel);
            }
            item
        }))
    }

    fn next_seq(&self) -> u64 {
        self.seqs().1
    }

    fn first_seq(&self) -> u64 {
        self.seqs().0
    }

    /// Nothing to wait for: every append already waited for its acknowledgement. See
    /// [durability](self#durability-and-fsyncpolicy).
    fn sync(&self) -> Result<(), RedexError> {
        if self.is_closed() {
            return Err(self.closed_error());
        }
        Ok(())
    }

    /// Later appends through this handle fail with [`RedexError::Closed`]; its tails end
    /// after the events the stream held at the close. The stream itself stays.
    fn close(&self) -> Result<(), RedexError> {
        let _write = self.inner.write.lock();
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let next = self.seqs().1;
        self.inner.end_tx.send_replace(Some(next));
        Ok(())
    }
}
