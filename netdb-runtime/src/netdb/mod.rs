//! NetDb: several model adapters under one handle, with whole-database snapshot and restore.
//!
//! `#[derive(NetDb)]` generates a typed struct with an accessor per model on top of this;
//! the runtime type works on its own too:
//!
//! ```
//! # use netdb_runtime::netdb::NetDb;
//! # use netdb_runtime::redex::Redex;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let redex = Redex::new();
//! let db = NetDb::builder().origin_hash(7).open(&redex)?; // add models with .model::<M>()
//! let bundle = db.snapshot()?;
//! let restored = NetDb::builder().origin_hash(7).open_from_snapshot(&redex, &bundle);
//! # drop(restored);
//! # Ok(())
//! # }
//! ```
//!
//! Restart behaviour is each adapter's: opened without a bundle, every model replays its
//! whole log; restored from a bundle, each model folds only the events after its snapshot.
//! Models are snapshotted one after another, each at its own folded seq: a bundle is
//! consistent per model, not across models.

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::cortex::postcard_out;
use crate::cortex::{
    CortexAdapter, CortexConfig, CortexError, CortexModel, LogBackend, SnapshotError,
    SnapshotFallback, snapshot,
};

/// The first eight bytes of every bundle.
const MAGIC: &[u8; 8] = b"NDBBUNDL";
const FORMAT: u8 = 1;

#[derive(Serialize, Deserialize)]
pub(crate) struct BundleBody<'a> {
    format: u8,
    #[serde(borrow)]
    pub(crate) models: Vec<BundleEntry<'a>>,
}

/// A model's entry. The envelope is a byte string (a length, then the bytes): written and
/// read as one slice, and borrowed from the bundle when decoding, never copied.
#[derive(Serialize, Deserialize)]
pub(crate) struct BundleEntry<'a> {
    pub(crate) channel: String,
    pub(crate) last_seq: Option<u64>,
    // serde writes a `&[u8]` as a sequence of `u8`s: in postcard the same bytes as a byte
    // string, but pushed one at a time. `serialize_bytes` writes the slice at once.
    #[serde(borrow, serialize_with = "byte_string")]
    pub(crate) envelope: &'a [u8],
}

fn byte_string<S: serde::Serializer>(bytes: &&[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(bytes)
}

/// A model adapter whose snapshot can go into a bundle: every [`CortexAdapter`].
pub trait BundleModel: Send + Sync + fmt::Debug {
    /// The model's channel.
    fn channel(&self) -> &'static str;
    /// The model's snapshot and the last seq folded into it.
    fn snapshot(&self) -> Result<(Vec<u8>, Option<u64>), CortexError>;
    /// [`CortexAdapter::catch_up`], boxed so models of different types can be awaited in turn.
    fn catch_up_boxed(&self) -> CatchUp<'_>;

    /// Appends the model's entry in a bundle to `out`: its channel, the last seq folded into
    /// its snapshot, and the snapshot as a byte string. The default copies
    /// [`snapshot`](Self::snapshot) into it; a [`CortexAdapter`] encodes its snapshot there
    /// directly.
    #[doc(hidden)]
    fn append_bundle_entry(&self, out: &mut Vec<u8>) -> Result<(), CortexError> {
        let (envelope, last_seq) = self.snapshot()?;
        let entry = BundleEntry {
            channel: self.channel().to_owned(),
            last_seq,
            envelope: &envelope,
        };
        postcard_out::append(&entry, out).map_err(|source| CortexError::Encode {
            channel: "netdb bundle",
            source,
        })
    }
}

/// The first two fields of a [`BundleEntry`], borrowed: what precedes an envelope written in
/// place.
#[derive(Serialize)]
struct EntryHead<'a> {
    channel: &'a str,
    last_seq: Option<u64>,
}

/// The future [`BundleModel::catch_up_boxed`] returns.
pub type CatchUp<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), CortexError>> + Send + 'a>>;

/// Waits until every model has folded what its log held: the generated `catch_up()` of
/// `#[derive(NetDb)]`.
pub fn catch_up_all(models: Vec<&dyn BundleModel>) -> CatchUp<'_> {
    Box::pin(async move {
        for model in models {
            model.catch_up_boxed().await?;
        }
        Ok(())
    })
}

impl<M: CortexModel> BundleModel for CortexAdapter<M> {
    fn channel(&self) -> &'static str {
        M::CHANNEL
    }
    fn snapshot(&self) -> Result<(Vec<u8>, Option<u64>), CortexError> {
        CortexAdapter::snapshot(self)
    }
    fn catch_up_boxed(&self) -> CatchUp<'_> {
        Box::pin(CortexAdapter::catch_up(self))
    }
    fn append_bundle_entry(&self, out: &mut Vec<u8>) -> Result<(), CortexError> {
        self.with_snapshot_state(|t| {
            let head = EntryHead {
                channel: M::CHANNEL,
                last_seq: t.folded_through_seq(),
            };
            postcard_out::append(&head, out)?;
            snapshot::encode_into(t, out, true)
        })
        .map_err(|source| CortexError::Encode {
            channel: M::CHANNEL,
            source,
        })
    }
}

trait AnyAdapter: BundleModel {
    fn close(&self) -> Result<(), CortexError>;
    fn as_any(&self) -> &dyn Any;
    fn as_bundle_model(&self) -> &dyn BundleModel;
}

impl<M: CortexModel> AnyAdapter for CortexAdapter<M> {
    fn close(&self) -> Result<(), CortexError> {
        CortexAdapter::close(self)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_bundle_model(&self) -> &dyn BundleModel {
        self
    }
}

/// One bundle holding every model's snapshot, each in its own envelope: what
/// [`NetDb::snapshot`] and the generated `snapshot()` of `#[derive(NetDb)]` return.
pub fn bundle_of(models: &[&dyn BundleModel]) -> Result<Vec<u8>, CortexError> {
    // The magic, then a `BundleBody` written field by field, each model's envelope straight
    // into it, so no envelope is copied: `format`, the length of `models`, the entries.
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.push(FORMAT);
    postcard_out::put_varint(&mut out, models.len() as u64);
    for m in models {
        m.append_bundle_entry(&mut out)?;
    }
    snapshot::shrink_if_oversized(&mut out);
    Ok(out)
}

/// Where a model's state comes from when a NetDb opens.
enum Source<'a> {
    Log,
    Snapshot(&'a [u8], Option<u64>),
    /// A full replay because the bundle has no snapshot of the model.
    Replay(String),
}

/// Opens a model on a backend; returns the adapter and whether its log was opened here.
type OpenFn = fn(
    &dyn LogBackend,
    u64,
    Source<'_>,
    CortexConfig,
) -> Result<(Box<dyn AnyAdapter>, bool), CortexError>;

fn open_model<M: CortexModel>(
    backend: &dyn LogBackend,
    origin: u64,
    source: Source<'_>,
    config: CortexConfig,
) -> Result<(Box<dyn AnyAdapter>, bool), CortexError> {
    let opened = CortexAdapter::<M>::open_log(backend, &config)?;
    let log = opened.log.clone();
    let adapter = match source {
        Source::Snapshot(bytes, last_seq) => {
            CortexAdapter::<M>::open_from_snapshot_on_log(log, origin, bytes, last_seq, config)
        }
        Source::Log => CortexAdapter::<M>::open_on_log(log, origin, config),
        Source::Replay(reason) => {
            CortexAdapter::<M>::open_replaying_on_log(log, origin, config, reason)
        }
    };
    let adapter = CortexAdapter::close_on_error(adapter, &opened)?;
    Ok((Box::new(adapter), opened.opened_here))
}

struct ModelSpec {
    channel: &'static str,
    type_id: TypeId,
    config: CortexConfig,
    open: OpenFn,
}

/// The models a [`NetDb`] opens, and how.
pub struct NetDbBuilder {
    origin_hash: u64,
    models: Vec<ModelSpec>,
}

impl fmt::Debug for NetDbBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let channels: Vec<_> = self.models.iter().map(|m| m.channel).collect();
        f.debug_struct("NetDbBuilder")
            .field("origin_hash", &self.origin_hash)
            .field("models", &channels)
            .finish()
    }
}

impl NetDbBuilder {
    /// The origin hash every adapter stamps on the events it appends (default 0).
    pub fn origin_hash(mut self, origin_hash: u64) -> Self {
        self.origin_hash = origin_hash;
        self
    }

    /// Adds model `M` with the default [`CortexConfig`].
    pub fn model<M: CortexModel>(self) -> Self {
        self.model_with_config::<M>(CortexConfig::default())
    }

    /// Adds model `M` with `config`.
    pub fn model_with_config<M: CortexModel>(mut self, config: CortexConfig) -> Self {
        self.models.push(ModelSpec {
            channel: M::CHANNEL,
            type_id: TypeId::of::<M>(),
            config,
            open: open_model::<M>,
        });
        self
    }

    fn check(&self) -> Result<(), CortexError> {
        for (i, m) in self.models.iter().enumerate() {
            if self.models[..i]
                .iter()
                .any(|o| o.type_id == m.type_id || o.channel == m.channel)
            {
                return Err(CortexError::DuplicateModel { channel: m.channel });
            }
        }
        Ok(())
    }

    /// Opens every model on `backend` (a [`Redex`](crate::redex::Redex), or a `JetStream`
    /// with feature `jetstream`); each replays its log.
    pub fn open<B: LogBackend + Clone + 'static>(self, backend: &B) -> Result<NetDb, CortexError> {
        self.check()?;
        self.open_each(backend, |_| Ok(Source::Log))
    }

    /// Opens every model from its snapshot in `bundle` (a [`NetDb::snapshot`]); each folds
    /// only the events after its snapshot.
    ///
    /// A model whose config says [`SnapshotFallback::Replay`] is replayed from its log when
    /// its snapshot is missing from the bundle, cannot be restored, or the bundle itself is
    /// damaged; otherwise those cases are errors, and nothing stays open. Snapshots of models
    /// the builder does not name are ignored.
    pub fn open_from_snapshot<B: LogBackend + Clone + 'static>(
        self,
        backend: &B,
        bundle: &[u8],
    ) -> Result<NetDb, CortexError> {
        self.check()?;
        let body = match decode_bundle(bundle) {
            Ok(body) => body,
            Err(e) => {
                if self
                    .models
                    .iter()
                    .any(|m| m.config.snapshot_fallback() != SnapshotFallback::Replay)
                {
                    return Err(e.into());
                }
                tracing::warn!(error = %e, "bundle not restored; replaying every model");
                let reason = e.to_string();
                return self.open_each(backend, |_| Ok(Source::Replay(reason.clone())));
            }
        };
        for e in &body.models {
            if !self.models.iter().any(|m| m.channel == e.channel) {
                tracing::warn!(
                    channel = %e.channel,
                    "the bundle holds a model this NetDb does not open; ignored"
                );
            }
        }
        self.open_each(backend, |m| {
            match body.models.iter().find(|e| e.channel == m.channel) {
                Some(e) => Ok(Source::Snapshot(e.envelope, e.last_seq)),
                None if m.config.snapshot_fallback() == SnapshotFallback::Replay => {
                    tracing::warn!(channel = m.channel, "no snapshot in the bundle; replaying");
                    Ok(Source::Replay(format!(
                        "the bundle has no snapshot of {}",
                        m.channel
                    )))
                }
                None => Err(SnapshotError::MissingModel {
                    channel: m.channel.to_owned(),
                }
                .into()),
            }
        })
    }

    /// Opens every model from the source `source` picks. On an error, the logs this call
    /// opened are closed again (logs that were open before are left open) and no fold keeps
    /// running.
    fn open_each<'b, B: LogBackend + Clone + 'static>(
        self,
        backend: &B,
        source: impl Fn(&ModelSpec) -> Result<Source<'b>, CortexError>,
    ) -> Result<NetDb, CortexError> {
        let mut models = Vec::with_capacity(self.models.len());
        let mut opened_here = Vec::with_capacity(self.models.len());
        for m in self.models {
            let adapter = source(&m)
                .and_then(|src| (m.open)(backend, self.origin_hash, src, m.config.clone()));
            match adapter {
                Ok((a, here)) => {
                    models.push((m.channel, m.type_id, a));
                    opened_here.push(here);
                }
                Err(e) => {
                    for ((_, _, a), here) in models.into_iter().zip(opened_here) {
                        if here {
                            let _ = a.close();
                        }
                        // Dropping the adapter stops its fold either way.
                    }
                    return Err(e);
                }
            }
        }
        Ok(NetDb {
            backend: Arc::new(backend.clone()),
            models,
        })
    }
}

pub(crate) fn decode_bundle(bytes: &[u8]) -> Result<BundleBody<'_>, SnapshotError> {
    let rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| SnapshotError::NotABundle {
            model_snapshot: bytes.starts_with(crate::cortex::snapshot::MAGIC),
        })?;
    match rest.first() {
        Some(&FORMAT) => {}
        Some(&found) => {
            return Err(SnapshotError::UnsupportedFormat {
                found,
                supported: FORMAT,
            });
        }
        None => {
            return Err(SnapshotError::Corrupt {
                reason: "the bundle ends after its magic".into(),
            });
        }
    }
    let (body, trailing) = postcard::take_from_bytes(rest).map_err(|e| SnapshotError::Corrupt {
        reason: format!("the bundle does not decode ({e})"),
    })?;
    if !trailing.is_empty() {
        return Err(SnapshotError::Corrupt {
            reason: format!("{} bytes follow the end of the bundle", trailing.len()),
        });
    }
    Ok(body)
}

/// Model adapters under one handle: see the [module documentation](self).
pub struct NetDb {
    backend: Arc<dyn LogBackend>,
    models: Vec<(&'static str, TypeId, Box<dyn AnyAdapter>)>,
}

impl fmt::Debug for NetDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let channels: Vec<_> = self.models.iter().map(|m| m.0).collect();
        f.debug_struct("NetDb").field("models", &channels).finish()
    }
}

impl NetDb {
    /// A builder: name the models, then `open` or `open_from_snapshot`.
    pub fn builder() -> NetDbBuilder {
        NetDbBuilder {
            origin_hash: 0,
            models: Vec::new(),
        }
    }

    /// Opens `builder`'s models from `bundle`: the same as
    /// [`NetDbBuilder::open_from_snapshot`].
    pub fn open_from_snapshot<B: LogBackend + Clone + 'static>(
        backend: &B,
        bundle: &[u8],
        builder: NetDbBuilder,
    ) -> Result<NetDb, CortexError> {
        builder.open_from_snapshot(backend, bundle)
    }

    /// The adapter of model `M`.
    pub fn adapter<M: CortexModel>(&self) -> Result<&CortexAdapter<M>, CortexError> {
        self.models
            .iter()
            .find(|(_, t, _)| *t == TypeId::of::<M>())
            .and_then(|(_, _, a)| a.as_any().downcast_ref())
            .ok_or(CortexError::UnknownModel {
                channel: M::CHANNEL,
            })
    }

    /// The channels of the models, in builder order.
    pub fn channels(&self) -> Vec<&'static str> {
        self.models.iter().map(|m| m.0).collect()
    }

    /// The backend the models' logs live on (a [`Redex`](crate::redex::Redex), or a
    /// `JetStream` with feature `jetstream`).
    pub fn backend(&self) -> &dyn LogBackend {
        &*self.backend
    }

    /// One blob holding every model's snapshot, each in its own versioned envelope.
    pub fn snapshot(&self) -> Result<Vec<u8>, CortexError> {
        let models: Vec<&dyn BundleModel> = self
            .models
            .iter()
            .map(|(_, _, a)| a.as_bundle_model())
            .collect();
        bundle_of(&models)
    }

    /// Closes every model (each fsyncs its log). Returns the first error after trying all.
    pub fn close(&self) -> Result<(), CortexError> {
        let mut first = None;
        for (_, _, a) in &self.models {
            if let Err(e) = a.close() {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod bundle_format_tests {
    use super::*;
    use crate::cortex::Table;
    use crate::cortex::snapshot::tests::{Row, row};
    use crate::redex::Redex;

    /// A model whose bundle entry is the trait's default: its snapshot, copied.
    #[derive(Debug)]
    struct Copied<'a>(&'a CortexAdapter<Row>);

    impl BundleModel for Copied<'_> {
        fn channel(&self) -> &'static str {
            self.0.channel()
        }
        fn snapshot(&self) -> Result<(Vec<u8>, Option<u64>), CortexError> {
            self.0.snapshot()
        }
        fn catch_up_boxed(&self) -> CatchUp<'_> {
            self.0.catch_up_boxed()
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn envelopes_written_in_place_keep_the_bundle_bytes() {
        let mut state = 7;
        let rows = (0..3000).map(|i| row(i, &mut state, 9)).collect();
        let envelope = snapshot::encode(&Table::<Row>::from_rows(rows, None)).unwrap();
        let (redex, empty_redex) = (Redex::new(), Redex::new());
        let full = CortexAdapter::<Row>::open_from_snapshot(&redex, 1, &envelope, None).unwrap();
        let empty = CortexAdapter::<Row>::open(&empty_redex, 1).unwrap();
        let models: [&dyn BundleModel; 3] = [&full, &empty, &full];

        let snapshots: Vec<_> = models.iter().map(|m| m.snapshot().unwrap()).collect();
        let body = BundleBody {
            format: FORMAT,
            models: models
                .iter()
                .zip(&snapshots)
                .map(|(m, (envelope, last_seq))| BundleEntry {
                    channel: m.channel().to_owned(),
                    last_seq: *last_seq,
                    envelope,
                })
                .collect(),
        };
        let mut expected = MAGIC.to_vec();
        expected.extend(postcard::to_stdvec(&body).unwrap());

        assert_eq!(bundle_of(&models).unwrap(), expected);
        let copied: [&dyn BundleModel; 3] = [&Copied(&full), &Copied(&empty), &Copied(&full)];
        assert_eq!(bundle_of(&copied).unwrap(), expected);
        assert_eq!(bundle_of(&[]).unwrap(), [&MAGIC[..], &[FORMAT, 0]].concat());
    }

    /// The bundle as format 1 first declared it: envelopes as `Vec<u8>`, which postcard
    /// writes as a length then the bytes.
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct OwnedBody {
        format: u8,
        models: Vec<(String, Option<u64>, Vec<u8>)>,
    }

    #[test]
    fn byte_string_envelopes_keep_the_format_1_bytes() {
        let envelopes: Vec<Vec<u8>> = vec![vec![], vec![7; 3], (0..=255).collect()];
        let owned = OwnedBody {
            format: FORMAT,
            models: envelopes
                .iter()
                .enumerate()
                .map(|(i, e)| (format!("m{i}"), Some(i as u64), e.clone()))
                .collect(),
        };
        let borrowed = BundleBody {
            format: FORMAT,
            models: owned
                .models
                .iter()
                .map(|(channel, last_seq, envelope)| BundleEntry {
                    channel: channel.clone(),
                    last_seq: *last_seq,
                    envelope,
                })
                .collect(),
        };
        let old = postcard::to_stdvec(&owned).unwrap();
        assert_eq!(postcard::to_stdvec(&borrowed).unwrap(), old);
        let mut bundle = MAGIC.to_vec();
        bundle.extend_from_slice(&old);
        let back = decode_bundle(&bundle).unwrap();
        let got: Vec<&[u8]> = back.models.iter().map(|e| e.envelope).collect();
        assert_eq!(got, envelopes.iter().map(Vec::as_slice).collect::<Vec<_>>());
    }
}
