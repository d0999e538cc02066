//! CortEX: the fold driver that turns a RedEX log into a live, queryable state.
//!
//! **Status:** in progress. This module holds the pieces that are settled so far:
//!
//! * [`EventMeta`], the fixed little-endian prefix every CortEX event carries, with the
//!   dispatch-code ranges in [`dispatch`].
//!
//! The model traits, the adapter, queries, indexes, watches and snapshots follow.

pub mod dispatch;
mod event_meta;

pub use event_meta::{EventMeta, EventMetaError, SeqOrTs};
