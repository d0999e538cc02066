//! Property test: a RedEX file behaves like a plain vector of payloads under random appends,
//! batches, syncs, reopens (clean and crash-like), retention sweeps, reads and tails.

use std::collections::VecDeque;

use futures_util::StreamExt;
use netdb_runtime::redex::{Redex, RedexError, RedexFile, RedexFileConfig};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    Batch(Vec<Vec<u8>>),
    Sync,
    /// Close (fsync) and reopen.
    Reopen,
    /// Drop without close (staged bytes reach the OS, no fsync) and reopen.
    DropReopen,
    SweepKeep(u64),
    Read {
        from: u64,
        len: u64,
    },
    Tail {
        from: u64,
    },
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..=8),
        prop::collection::vec(any::<u8>(), 9..300),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => payload().prop_map(Op::Append),
        2 => prop::collection::vec(payload(), 0..6).prop_map(Op::Batch),
        1 => Just(Op::Sync),
        1 => Just(Op::Reopen),
        1 => Just(Op::DropReopen),
        1 => (0u64..40).prop_map(Op::SweepKeep),
        2 => (0u64..80, 0u64..30).prop_map(|(from, len)| Op::Read { from, len }),
        1 => (0u64..80).prop_map(|from| Op::Tail { from }),
    ]
}

/// The reference: retained payloads and the seq of the first one.
struct Model {
    first: u64,
    events: VecDeque<Vec<u8>>,
}

impl Model {
    fn next(&self) -> u64 {
        self.first + self.events.len() as u64
    }
}

fn config(persistent: bool) -> RedexFileConfig {
    RedexFileConfig::default()
        .with_persistent(persistent)
        .with_segment_max_bytes(512)
        .with_max_memory_bytes(300)
}

fn run(ops: Vec<Op>, persistent: bool) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let channel = "model/log".parse().unwrap();
    let open = || -> (Redex, RedexFile) {
        let redex = if persistent {
            Redex::with_persistent_dir(dir.path()).unwrap()
        } else {
            Redex::new()
        };
        let file = redex.open_file(&channel, config(persistent)).unwrap();
        (redex, file)
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (mut redex, mut file) = open();
    let mut model = Model {
        first: 0,
        events: VecDeque::new(),
    };
    for op in ops {
        match op {
            Op::Append(p) => {
                prop_assert_eq!(file.append(&p).unwrap(), model.next());
                model.events.push_back(p);
            }
            Op::Batch(ps) => {
                let range = file.append_batch(&ps).unwrap();
                prop_assert_eq!(range, model.next()..model.next() + ps.len() as u64);
                model.events.extend(ps);
            }
            Op::Sync => file.sync().unwrap(),
            Op::Reopen | Op::DropReopen if !persistent => {}
            Op::Reopen => {
                file.close().unwrap();
                drop((file, redex));
                (redex, file) = open();
            }
            Op::DropReopen => {
                drop((file, redex));
                (redex, file) = open();
            }
            Op::SweepKeep(keep) => {
                // Retention is fixed at open, so sweep through a file opened with the bound.
                file.close().unwrap();
                drop((file, redex));
                let r = if persistent {
                    Redex::with_persistent_dir(dir.path()).unwrap()
                } else {
                    Redex::new()
                };
                if persistent {
                    let f = r
                        .open_file(&channel, config(true).with_retention_max_events(keep))
                        .unwrap();
                    f.sweep_retention().unwrap();
                    f.close().unwrap();
                    drop((f, r));
                    while model.events.len() as u64 > keep {
                        model.events.pop_front();
                        model.first += 1;
                    }
                    (redex, file) = open();
                } else {
                    // An in-memory log is gone once closed: model that too.
                    drop(r);
                    (redex, file) = open();
                    model = Model {
                        first: 0,
                        events: VecDeque::new(),
                    };
                }
            }
            Op::Read { from, len } => {
                let got = file.read_range(from, from + len);
                if from < model.first {
                    let evicted = matches!(got, Err(RedexError::Evicted { .. }));
                    prop_assert!(evicted, "read below the head must say Evicted");
                } else {
                    let got = got.unwrap();
                    let want: Vec<&Vec<u8>> = model
                        .events
                        .iter()
                        .skip((from - model.first) as usize)
                        .take(len as usize)
                        .collect();
                    prop_assert_eq!(got.len(), want.len());
                    for (i, (g, w)) in got.iter().zip(want).enumerate() {
                        prop_assert_eq!(g.seq, from + i as u64);
                        prop_assert_eq!(&g.payload[..], &w[..]);
                    }
                }
            }
            Op::Tail { from } => {
                let start = from.max(model.first);
                let expected = model.next().saturating_sub(start) as usize;
                let mut tail = file.tail(from);
                let got: Vec<_> = rt.block_on(async {
                    let mut out = Vec::new();
                    while out.len() < expected + usize::from(from < model.first) {
                        out.push(tail.next().await.unwrap());
                    }
                    out
                });
                let mut got = got.into_iter();
                if from < model.first {
                    let evicted = matches!(got.next(), Some(Err(RedexError::Evicted { .. })));
                    prop_assert!(evicted);
                }
                for (i, ev) in got.enumerate() {
                    let ev = ev.unwrap();
                    prop_assert_eq!(ev.seq, start + i as u64);
                    prop_assert_eq!(
                        &ev.payload[..],
                        &model.events[(ev.seq - model.first) as usize][..]
                    );
                }
            }
        }
        prop_assert_eq!(file.first_seq(), model.first);
        prop_assert_eq!(file.next_seq(), model.next());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn disk_log_matches_a_vector(ops in prop::collection::vec(op(), 1..60)) {
        run(ops, true)?;
    }

    #[test]
    fn memory_log_matches_a_vector(ops in prop::collection::vec(op(), 1..60)) {
        run(ops, false)?;
    }
}
