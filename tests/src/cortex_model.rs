//! A small CortEX model for the CortEX crash test, and the deterministic event stream its
//! writer process appends.
//!
//! [`Counter`] rows are keyed by a `u64` id and hold a `u64` value; [`LedgerEvent::Add`]
//! adds to a row (creating it), [`LedgerEvent::Remove`] deletes it. Both are declared with
//! the derives: the events' stored form is what `#[derive(CortexEvents)]` writes (dispatch
//! code 1 or 2, then the variant's fields as one postcard tuple).
//!
//! The event at sequence number `seq` of a log written with seed `seed` is
//! [`ledger_event`]`(seed, seq)`, so the test recomputes every event, and the state they
//! fold to ([`reference_fold`]), without the writer telling it.

use std::collections::BTreeMap;

use netdb_runtime::cortex::{ApplyError, ApplyEvent, EventContext, TableMut};
use netdb_runtime::{CortexEvents, CortexModel};
use serde::{Deserialize, Serialize};

use crate::crash::CrashModel;
use crate::mix64;

/// One counter: an id and a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, CortexModel)]
#[cortex(channel = "cortex/ledger", events = LedgerEvent)]
pub struct Counter {
    /// The row key.
    pub id: u64,
    /// The sum of the amounts added since the row was (re)created, wrapping.
    pub value: u64,
}

/// The events of [`Counter`].
#[derive(Debug, Clone, PartialEq, Eq, CortexEvents)]
#[cortex(model = Counter)]
pub enum LedgerEvent {
    /// Adds `amount` to row `id`, creating it with value `amount` if it does not exist.
    #[cortex(dispatch = 1)]
    Add {
        /// The row.
        id: u64,
        /// What to add.
        amount: u64,
    },
    /// Removes row `id` (nothing happens if it does not exist).
    #[cortex(dispatch = 2)]
    Remove {
        /// The row.
        id: u64,
    },
}

impl ApplyEvent<Counter> for LedgerEvent {
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

/// The crash harness's view of the ledger: the stream is [`ledger_event`], the reference
/// fold a plain map (timestamps play no part).
impl CrashModel for Counter {
    fn event(seed: u64, seq: u64) -> LedgerEvent {
        ledger_event(seed, seq)
    }

    fn reference_apply(state: &mut BTreeMap<u64, Counter>, event: &LedgerEvent, _ts: u64) {
        match *event {
            LedgerEvent::Add { id, amount } => {
                let row = state.entry(id).or_insert(Counter { id, value: 0 });
                row.value = row.value.wrapping_add(amount);
            }
            LedgerEvent::Remove { id } => {
                state.remove(&id);
            }
        }
    }
}

/// The state the events `seqs` of the stream with `seed` fold to, from an empty one.
pub fn reference_fold(seed: u64, seqs: std::ops::Range<u64>) -> BTreeMap<u64, Counter> {
    let mut state = BTreeMap::new();
    for seq in seqs {
        Counter::reference_apply(&mut state, &ledger_event(seed, seq), 0);
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use netdb_runtime::cortex::CortexEvent;

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
