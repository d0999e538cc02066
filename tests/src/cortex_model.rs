//! A small hand-written CortEX model for the CortEX crash test, and the deterministic
//! event stream its writer process appends.
//!
//! [`Counter`] rows are keyed by a `u64` id and hold a `u64` value; [`LedgerEvent::Add`]
//! adds to a row (creating it), [`LedgerEvent::Remove`] deletes it. The model is written
//! the way `#[derive(CortexModel)]` will generate it for a model with no filters or
//! indexes: [`NoFilter`], [`IdOrder`], `()` indexes, and the runtime's [`Query`] /
//! [`Watch`] builders.
//!
//! The event at sequence number `seq` of a log written with seed `seed` is
//! [`ledger_event`]`(seed, seq)`, so the test recomputes every event, and the state they
//! fold to ([`reference_fold`]), without the writer telling it.

use std::collections::BTreeMap;

use netdb_runtime::cortex::{
    ApplyError, CortexEvent, CortexModel, EventContext, EventDecodeError, Field, IdOrder, NoFilter,
    Query, Schema, TableMut, Watch,
};
use serde::{Deserialize, Serialize};

use crate::mix64;

/// One counter: an id and a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// The row key.
    pub id: u64,
    /// The sum of the amounts added since the row was (re)created, wrapping.
    pub value: u64,
}

/// The events of [`Counter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerEvent {
    /// Adds `amount` to row `id`, creating it with value `amount` if it does not exist.
    Add {
        /// The row.
        id: u64,
        /// What to add.
        amount: u64,
    },
    /// Removes row `id` (nothing happens if it does not exist).
    Remove {
        /// The row.
        id: u64,
    },
}

/// The dispatch code of [`LedgerEvent::Add`].
pub const DISPATCH_ADD: u16 = 1;
/// The dispatch code of [`LedgerEvent::Remove`].
pub const DISPATCH_REMOVE: u16 = 2;

impl CortexModel for Counter {
    type Id = u64;
    type Event = LedgerEvent;
    type Filter = NoFilter;
    type OrderBy = IdOrder;
    type Indexes = ();
    type Query<'a> = Query<'a, Counter>;
    type Watch = Watch<Counter>;

    const CHANNEL: &'static str = "cortex/ledger";
    const SCHEMA: Schema = Schema::new(
        1,
        &[
            Field {
                name: "id",
                ty: "u64",
            },
            Field {
                name: "value",
                ty: "u64",
            },
        ],
    );

    fn id(&self) -> &u64 {
        &self.id
    }
}

impl CortexEvent<Counter> for LedgerEvent {
    fn dispatch(&self) -> u16 {
        match self {
            LedgerEvent::Add { .. } => DISPATCH_ADD,
            LedgerEvent::Remove { .. } => DISPATCH_REMOVE,
        }
    }

    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
        // Each variant's fields alone, as a tuple: the dispatch code says which variant.
        let buf = std::mem::take(out);
        *out = match *self {
            LedgerEvent::Add { id, amount } => postcard::to_extend(&(id, amount), buf)?,
            LedgerEvent::Remove { id } => postcard::to_extend(&id, buf)?,
        };
        Ok(())
    }

    fn decode_body(
        dispatch: u16,
        _schema_version: u16,
        body: &[u8],
    ) -> Result<Self, EventDecodeError> {
        let body_err = |source| EventDecodeError::Body { dispatch, source };
        match dispatch {
            DISPATCH_ADD => {
                let (id, amount) = postcard::from_bytes::<(u64, u64)>(body).map_err(body_err)?;
                Ok(LedgerEvent::Add { id, amount })
            }
            DISPATCH_REMOVE => {
                let id = postcard::from_bytes::<u64>(body).map_err(body_err)?;
                Ok(LedgerEvent::Remove { id })
            }
            other => Err(EventDecodeError::UnknownDispatch(other)),
        }
    }

    fn apply(self, t: &mut TableMut<'_, Counter>, _ctx: &EventContext) -> Result<(), ApplyError> {
        match self {
            LedgerEvent::Add { id, amount } => {
                if !t.update(&id, |r| r.value = r.value.wrapping_add(amount)) {
                    t.insert(Counter { id, value: amount });
                }
            }
            LedgerEvent::Remove { id } => {
                t.remove(&id);
            }
        }
        Ok(())
    }
}

/// How many distinct row ids the event stream uses: few, so adds and removes meet.
pub const LEDGER_IDS: u64 = 48;

/// The event at `seq` of the stream with `seed`: one in six is a `Remove`, the rest are
/// `Add`s of 1..=1000.
pub fn ledger_event(seed: u64, seq: u64) -> LedgerEvent {
    let h = mix64(mix64(seed) ^ seq.wrapping_mul(0xA076_1D64_78BD_642F));
    let id = (h >> 8) % LEDGER_IDS;
    if h.is_multiple_of(6) {
        LedgerEvent::Remove { id }
    } else {
        LedgerEvent::Add {
            id,
            amount: 1 + (h >> 32) % 1000,
        }
    }
}

/// Applies `event` to a plain map: the reference the fold is checked against.
pub fn reference_apply(state: &mut BTreeMap<u64, u64>, event: &LedgerEvent) {
    match *event {
        LedgerEvent::Add { id, amount } => {
            let v = state.entry(id).or_insert(0);
            *v = v.wrapping_add(amount);
        }
        LedgerEvent::Remove { id } => {
            state.remove(&id);
        }
    }
}

/// The state the events `seqs` of the stream with `seed` fold to, from an empty one.
pub fn reference_fold(seed: u64, seqs: std::ops::Range<u64>) -> BTreeMap<u64, u64> {
    let mut state = BTreeMap::new();
    for seq in seqs {
        reference_apply(&mut state, &ledger_event(seed, seq));
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_vary() {
        let (mut adds, mut removes) = (0, 0);
        for seq in 0..5_000 {
            let e = ledger_event(9, seq);
            assert_eq!(e, ledger_event(9, seq));
            let mut body = vec![0xAA];
            e.encode_body(&mut body).unwrap();
            assert_eq!(body[0], 0xAA, "encode_body appends");
            assert_eq!(
                LedgerEvent::decode_body(e.dispatch(), 1, &body[1..]).unwrap(),
                e
            );
            match e {
                LedgerEvent::Add { .. } => adds += 1,
                LedgerEvent::Remove { .. } => removes += 1,
            }
        }
        assert!(
            removes > 500 && adds > 3_500,
            "{adds} adds, {removes} removes"
        );
        assert!(LedgerEvent::decode_body(3, 1, &[0]).is_err());
        let state = reference_fold(9, 0..5_000);
        assert!(!state.is_empty() && state.len() as u64 <= LEDGER_IDS);
    }
}
