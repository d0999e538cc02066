//! The netdb runtime: everything generated model code calls into.
//!
//! * [`redex`] — RedEX, the append-only log: in memory or on disk, with fsync policies,
//!   torn-write recovery, retention and tails that never drop a slow reader.
//!
//! * [`cortex`] — CortEX, the fold driver: model traits, the adapter, queries, indexes,
//!   watches and versioned snapshots.
//!
//! * [`netdb`] — the `NetDb` façade: several models under one handle, with whole-database
//!   snapshot and restore.
//!
//! * `jetstream` (feature `jetstream`) — the same models on NATS JetStream: a log shared
//!   by several processes and machines, replicated by the servers.
//!
//! ```
//! use netdb_runtime::redex::{Redex, RedexFileConfig};
//!
//! let redex = Redex::new();
//! let log = redex.open_file(&"greetings".parse()?, RedexFileConfig::default())?;
//! let seq = log.append(b"hello")?;
//! assert_eq!(log.read_range(seq, seq + 1)?[0].payload, &b"hello"[..]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// Lint policy: `unsafe_code` is denied workspace-wide; the one exception (a libc clock
// read) carries its own `allow` and SAFETY note in `redex/clock.rs`.
#![warn(missing_docs)]

pub mod cortex;
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "jetstream")]
pub mod jetstream;
pub mod netdb;
pub mod redex;

/// The derives: `CortexModel`, `CortexEvents` and `NetDb` (see the `netdb-derive` crate).
/// Feature `derive`, on by default.
#[cfg(feature = "derive")]
pub use netdb_derive::{CortexEvents, CortexModel, NetDb};

/// The names most programs using netdb need.
pub mod prelude {
    pub use crate::cortex::{
        ApplyError, ApplyEvent, BuiltinEvent, CortexAdapter, CortexConfig, CortexError,
        EventContext, FoldErrorPolicy, SnapshotFallback, StartAt, TableMut,
    };
    pub use crate::netdb::NetDb;
    pub use crate::redex::{FsyncPolicy, Redex, RedexFileConfig};
    #[cfg(feature = "derive")]
    pub use netdb_derive::{CortexEvents, CortexModel, NetDb};
}

/// What generated code names, by absolute path (`::netdb_runtime::__private::…`), so a
/// crate using the derives needs no imports and no direct dependency on serde or postcard.
/// Not public API: it changes with the derives.
#[doc(hidden)]
pub mod __private {
    pub use crate::cortex::*;
    pub use crate::netdb::{BundleModel, CatchUp, NetDb, NetDbBuilder, bundle_of, catch_up_all};
    pub use crate::redex::{Redex, RedexError};
    pub use postcard;
    pub use serde;

    /// Appends `value` to `out` in postcard's format: what generated event encoders call
    /// (the same bytes as `postcard::to_extend`, without its per-byte varint loop).
    #[inline]
    pub fn postcard_append<T: serde::Serialize + ?Sized>(
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), postcard::Error> {
        crate::cortex::postcard_append(value, out)
    }

    /// The event type of a model whose derive failed: keeps one mistake from causing
    /// follow-up errors. Never constructed.
    #[derive(Debug)]
    pub enum NoEvents {}

    impl<M: CortexModel> CortexEvent<M> for NoEvents {
        fn dispatch(&self) -> u16 {
            match *self {}
        }
        fn encode_body(&self, _: &mut Vec<u8>) -> Result<(), postcard::Error> {
            match *self {}
        }
        fn decode_body(code: u16, _: u16, _: &[u8]) -> Result<Self, EventDecodeError> {
            Err(EventDecodeError::UnknownDispatch(code))
        }
        fn apply(self, _: &mut TableMut<'_, M>, _: &EventContext) -> Result<(), ApplyError> {
            match self {}
        }
    }
}

/// The README's code blocks, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

/// The book's chapters: every Rust block is compiled and run by `cargo test`, so the guide
/// cannot drift from the code.
#[cfg(doctest)]
mod book {
    #[doc = include_str!("../../book/src/introduction.md")]
    struct Introduction;
    #[doc = include_str!("../../book/src/quick-start.md")]
    struct QuickStart;
    #[doc = include_str!("../../book/src/models.md")]
    struct Models;
    #[doc = include_str!("../../book/src/attributes.md")]
    struct Attributes;
    #[doc = include_str!("../../book/src/queries.md")]
    struct Queries;
    #[doc = include_str!("../../book/src/indexes.md")]
    struct Indexes;
    #[doc = include_str!("../../book/src/watches.md")]
    struct Watches;
    #[doc = include_str!("../../book/src/events.md")]
    struct Events;
    #[doc = include_str!("../../book/src/cortex.md")]
    struct Cortex;
    #[doc = include_str!("../../book/src/snapshots.md")]
    struct Snapshots;
    #[doc = include_str!("../../book/src/durability.md")]
    struct Durability;
    #[doc = include_str!("../../book/src/restart.md")]
    struct Restart;
    #[doc = include_str!("../../book/src/on-disk-format.md")]
    struct OnDiskFormat;
    #[doc = include_str!("../../book/src/reliability.md")]
    struct Reliability;
    #[cfg(feature = "jetstream")]
    #[doc = include_str!("../../book/src/several-machines.md")]
    struct SeveralMachines;
    #[doc = include_str!("../../book/src/performance.md")]
    struct Performance;
    #[doc = include_str!("../../book/src/faq.md")]
    struct Faq;
}

#[cfg(not(unix))]
compile_error!(
    "netdb-runtime uses positional file I/O and supports Unix-like systems (Linux, macOS)"
);
