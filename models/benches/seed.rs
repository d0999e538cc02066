//! Benchmarks of the seed's derived models (`netdb_models::{tasks, memories, NetDb}`): the
//! workloads of the reference implementation's `cargo bench --bench cortex`, run on what
//! `#[derive(CortexModel)]`, `#[derive(CortexEvents)]` and `#[derive(NetDb)]` generate.
//!
//! Run with `cargo bench -p netdb-models --bench seed`.
//!
//! # The state
//!
//! `state_{100,1k,10k}` is a [`NetDb`] on an in-memory [`Redex`] built through the models'
//! typed writes only: for `i` in `0..n`, task `i + 1` titled `"task-{i}"` (every third one,
//! `i % 3 == 0`, then completed), and memory `i + 1` with content `"memory-{i}"`, tag
//! `"alpha"` for even `i` and `"beta"` for odd `i`, source `"bench"`. Both models are caught
//! up (`catch_up()`) before anything is measured, and the row counts are checked.
//!
//! * `query_{n}/*`: `find_unique`, the tasks `find_many` on status = Completed (borrowed
//!   rows, `Vec<&Task>`, as `find_many` returns them; and `query().where_status(..).collect()`,
//!   which clones every row, as the reference's `find_many` does), `count_where` on the
//!   indexed status, the memories `find_many` / `count_where` on tag = "alpha". A read guard
//!   is held for the whole group, as in the runtime's `query_10k`. At 10 K, `collect_arcs`
//!   variants show the cost of owned, shared rows.
//! * `ingest/*`: typed writes (`tasks().create`, `memories().store`) appended **and folded**:
//!   every iteration appends `INGEST_BATCH` events and awaits `wait_for_seq` of the last one.
//!   Throughput is events. A fresh database serves every `CHUNK_EVENTS` events (untimed), so
//!   memory stays bounded.
//! * `round_trip/*`: one `tasks().create`, then `wait_for_seq` of its seq.
//! * `snapshot_10k/*`: encoding the tasks state (`adapter.snapshot()`), the whole-database
//!   bundle (`db.snapshot()`), and decoding them (see `workloads::snapshots` for how decoding is
//!   measured).

mod workloads;

criterion::criterion_group! {
    name = benches;
    config = workloads::config();
    targets = workloads::queries, workloads::ingest, workloads::round_trip, workloads::snapshots
}
criterion::criterion_main!(benches);
