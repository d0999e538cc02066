//! A user events enum with `#[derive(CortexEvents)]`: struct, tuple and unit variants, a
//! renamed typed write, a renamed adapter, the domain logic in `impl ApplyEvent`; typed
//! writes; an `ApplyError` skips only its event under `LogAndContinue` (its partial changes
//! undone) and stops the fold under `Stop`; and the stored format is pinned.

use netdb_runtime::cortex::{
    CortexEvent, CortexModel, EventDecodeError, EventMeta, FoldErrorKind, dispatch,
};
use netdb_runtime::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
#[cortex(channel = "test/derive-events/accounts", events = AccountEvent, adapter = Ledger)]
pub struct Account {
    pub id: u64,
    #[cortex(filter)]
    pub owner: String,
    #[cortex(filter, order_by)]
    pub balance: i64,
    #[cortex(filter, index)]
    pub frozen: bool,
}

/// No serde derive: the derive encodes each variant's fields itself.
#[derive(Debug, Clone, PartialEq, CortexEvents)]
#[cortex(model = Account, adapter = Ledger)]
pub enum AccountEvent {
    /// A struct variant whose default write name (`open`) the adapter already has.
    #[cortex(dispatch = 1, write = "open_account")]
    Open { id: u64, owner: String },
    /// A tuple variant: the write takes `value0`, `value1`.
    #[cortex(dispatch = 2)]
    Deposit(u64, i64),
    /// A struct variant applied in two steps: the first is undone if the second fails.
    #[cortex(dispatch = 3)]
    Transfer { from: u64, to: u64, amount: i64 },
    /// A one-field tuple variant: the write takes `value`.
    #[cortex(dispatch = 4)]
    Freeze(u64),
    /// A unit variant, with a code far from the others.
    #[cortex(dispatch = 0x0EFF)]
    ResetAll,
}

impl ApplyEvent<Account> for AccountEvent {
    fn apply(self, t: &mut TableMut<'_, Account>, _: &EventContext) -> Result<(), ApplyError> {
        let missing = |id: u64| ApplyError::new(format!("no account {id}"));
        match self {
            AccountEvent::Open { id, owner } => {
                if t.find_unique(&id).is_some() {
                    return Err(ApplyError::new(format!("account {id} exists")));
                }
                t.insert(Account {
                    id,
                    owner,
                    balance: 0,
                    frozen: false,
                });
            }
            AccountEvent::Deposit(id, amount) => {
                if !t.update(&id, |a| a.balance += amount) {
                    return Err(missing(id));
                }
            }
            AccountEvent::Transfer { from, to, amount } => {
                // Debit first, then fail if the target is missing or frozen: the fold must
                // undo the debit.
                if !t.update(&from, |a| a.balance -= amount) {
                    return Err(missing(from));
                }
                match t.find_unique(&to) {
                    None => return Err(missing(to)),
                    Some(a) if a.frozen => {
                        return Err(ApplyError::new(format!("account {to} is frozen")));
                    }
                    Some(_) => {}
                }
                t.update(&to, |a| a.balance += amount);
            }
            AccountEvent::Freeze(id) => {
                if !t.update(&id, |a| a.frozen = true) {
                    return Err(missing(id));
                }
            }
            AccountEvent::ResetAll => {
                t.remove_where(&AccountFilter::default());
            }
        }
        Ok(())
    }
}

fn lenient() -> CortexConfig {
    CortexConfig::default().with_fold_error_policy(FoldErrorPolicy::LogAndContinue)
}

fn balances(ledger: &Ledger) -> Vec<(u64, i64, bool)> {
    ledger
        .state()
        .read()
        .iter()
        .map(|a| (a.id, a.balance, a.frozen))
        .collect()
}

#[tokio::test]
async fn typed_writes_append_each_variant_and_return_seqs() {
    let redex = Redex::new();
    let ledger = Ledger::open(&redex, 3).unwrap();
    let seqs = [
        ledger.open_account(1, "ann").unwrap(),
        ledger.open_account(2, String::from("bob")).unwrap(),
        ledger.deposit(1, 100).unwrap(),
        ledger.transfer(1, 2, 30).unwrap(),
        ledger.freeze(2).unwrap(),
    ];
    assert_eq!(seqs, [0, 1, 2, 3, 4]);
    ledger.wait_for_seq(4).await.unwrap();
    assert_eq!(balances(&ledger), [(1, 70, false), (2, 30, true)]);
    {
        let shared = ledger.state();
        let st = shared.read();
        assert_eq!(st.query().where_frozen(true).first().unwrap().owner, "bob");
        let richest: Vec<u64> = st
            .query()
            .order_by(AccountOrderBy::BalanceDesc)
            .iter()
            .map(|a| a.id)
            .collect();
        assert_eq!(richest, [1, 2]);
    }
    // Each write is stored with its variant's dispatch code and this schema's version.
    let codes: Vec<u16> = ledger
        .log()
        .read_range(0, 5)
        .unwrap()
        .iter()
        .map(|ev| {
            let (meta, _) = EventMeta::decode(&ev.payload).unwrap();
            assert_eq!(meta.schema_version, Account::SCHEMA.version);
            assert_eq!(meta.origin_hash, 3);
            meta.dispatch
        })
        .collect();
    assert_eq!(codes, [1, 1, 2, 3, 4]);

    let s = ledger.reset_all().unwrap();
    assert_eq!(s, 5);
    ledger.wait_for_seq(s).await.unwrap();
    assert!(ledger.state().read().is_empty());
    // The adapter's own `open` is still the constructor.
    let again = Ledger::open(&redex, 3).unwrap();
    again.wait_for_seq(s).await.unwrap();
    assert!(again.state().read().is_empty());
}

#[tokio::test]
async fn an_apply_error_skips_only_that_event_under_log_and_continue() {
    let redex = Redex::new();
    let ledger = Ledger::open_with_config(&redex, 1, lenient()).unwrap();
    ledger.open_account(1, "ann").unwrap();
    ledger.open_account(2, "bob").unwrap();
    ledger.deposit(1, 100).unwrap();
    // Debits account 1, then fails: account 99 does not exist.
    let bad = ledger.transfer(1, 99, 30).unwrap();
    let after = ledger.deposit(2, 5).unwrap();
    let good = ledger.transfer(1, 2, 10).unwrap();
    ledger.wait_for_seq(good).await.unwrap();
    // The failed transfer's debit was undone; every other event applied.
    assert_eq!(balances(&ledger), [(1, 90, false), (2, 15, false)]);
    assert_eq!(after, bad + 1);
    let errors = ledger.fold_errors();
    assert_eq!(errors.skipped, 1);
    assert!(errors.stopped.is_none());
    assert_eq!(errors.recent.len(), 1);
    assert_eq!(errors.recent[0].seq, bad);
    assert_eq!(
        errors.recent[0].kind,
        FoldErrorKind::Rejected("no account 99".into())
    );

    // `append_and_wait` reports a skipped event as such.
    let err = ledger
        .append_and_wait(&AccountEvent::Open {
            id: 1,
            owner: "again".into(),
        })
        .await
        .unwrap_err();
    match err {
        CortexError::Skipped { error, .. } => {
            assert_eq!(
                error.kind,
                FoldErrorKind::Rejected("account 1 exists".into())
            );
        }
        other => panic!("expected Skipped, got {other:?}"),
    }
    // The fold goes on after it.
    let s = ledger.freeze(1).unwrap();
    ledger.wait_for_seq(s).await.unwrap();
    assert_eq!(balances(&ledger), [(1, 90, true), (2, 15, false)]);
    assert_eq!(ledger.fold_errors().skipped, 2);
}

#[tokio::test]
async fn an_apply_error_stops_the_fold_under_the_default_policy() {
    let redex = Redex::new();
    let ledger = Ledger::open(&redex, 1).unwrap();
    ledger.open_account(1, "ann").unwrap();
    ledger.deposit(1, 10).unwrap();
    let bad = ledger.freeze(7).unwrap();
    let later = ledger.deposit(1, 1).unwrap();
    match ledger.wait_for_seq(later).await.unwrap_err() {
        CortexError::FoldStopped { error, .. } => {
            assert_eq!(error.seq, bad);
            assert_eq!(error.kind, FoldErrorKind::Rejected("no account 7".into()));
        }
        other => panic!("expected FoldStopped, got {other:?}"),
    }
    // The state stays at the last good event.
    assert_eq!(balances(&ledger), [(1, 10, false)]);
    assert_eq!(ledger.folded_through_seq(), Some(bad - 1));
    assert!(!ledger.is_folding());
}

/// Every variant, one of each shape.
fn samples() -> Vec<AccountEvent> {
    vec![
        AccountEvent::Open {
            id: 7,
            owner: "ann".into(),
        },
        AccountEvent::Deposit(7, -3),
        AccountEvent::Transfer {
            from: 1,
            to: 2,
            amount: 300,
        },
        AccountEvent::Freeze(9),
        AccountEvent::ResetAll,
    ]
}

#[test]
fn the_stored_format_is_pinned() {
    let encode = |e: &AccountEvent| {
        // The body is appended after what the buffer holds (the header goes first).
        let mut out = vec![0xEE, 0xEE];
        e.encode_body(&mut out).unwrap();
        assert_eq!(out[..2], [0xEE, 0xEE]);
        out.split_off(2)
    };
    let pinned: [(u16, &[u8]); 5] = [
        // (id = 7, owner = "ann"): the fields as a tuple, no variant tag.
        (1, &[0x07, 0x03, b'a', b'n', b'n']),
        // (7, -3): i64 zigzag, -3 → 5.
        (2, &[0x07, 0x05]),
        // (from = 1, to = 2, amount = 300): zigzag 600 = varint [0xD8, 0x04].
        (3, &[0x01, 0x02, 0xD8, 0x04]),
        (4, &[0x09]),
        // A unit variant has an empty body.
        (0x0EFF, &[]),
    ];
    for (event, (code, body)) in samples().iter().zip(pinned) {
        assert_eq!(event.dispatch(), code, "{event:?}");
        assert_eq!(encode(event), body, "{event:?}");
    }
    // Every dispatch code decodes its body back to the variant, whatever the schema version
    // the header names.
    for event in samples() {
        let body = encode(&event);
        for version in [1, Account::SCHEMA.version] {
            assert_eq!(
                AccountEvent::decode_body(event.dispatch(), version, &body).unwrap(),
                event
            );
        }
    }
    // Unknown codes, including the built-in ones a model with an events enum does not have.
    for code in [0, 5, 0x0EFE, dispatch::USER_LAST, dispatch::INSERT] {
        assert_eq!(
            AccountEvent::decode_body(code, 1, &[]).unwrap_err(),
            EventDecodeError::UnknownDispatch(code)
        );
    }
    // A truncated body is a body error naming the code.
    assert!(matches!(
        AccountEvent::decode_body(1, 1, &[0x07, 0x03, b'a']).unwrap_err(),
        EventDecodeError::Body { dispatch: 1, .. }
    ));
    assert!(matches!(
        AccountEvent::decode_body(3, 1, &[]).unwrap_err(),
        EventDecodeError::Body { dispatch: 3, .. }
    ));
}

#[tokio::test]
async fn events_replay_from_the_log_into_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let last = {
        let redex = Redex::with_persistent_dir(dir.path()).unwrap();
        let ledger = Ledger::open_with_config(&redex, 1, lenient()).unwrap();
        ledger.open_account(1, "ann").unwrap();
        ledger.open_account(2, "bob").unwrap();
        ledger.deposit(1, 50).unwrap();
        ledger.transfer(1, 3, 5).unwrap(); // skipped
        ledger.transfer(2, 1, 5).unwrap();
        let last = ledger.freeze(2).unwrap();
        ledger.wait_for_seq(last).await.unwrap();
        assert_eq!(balances(&ledger), [(1, 55, false), (2, -5, true)]);
        ledger.close().unwrap();
        last
    };
    let redex = Redex::with_persistent_dir(dir.path()).unwrap();
    let ledger = Ledger::open_with_config(&redex, 1, lenient()).unwrap();
    ledger.wait_for_seq(last).await.unwrap();
    assert_eq!(balances(&ledger), [(1, 55, false), (2, -5, true)]);
    assert_eq!(ledger.fold_errors().skipped, 1);
    ledger.close().unwrap();
}
