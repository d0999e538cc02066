//! The seed benchmark (`seed.rs`, same workloads, same names) with mimalloc as the global
//! allocator instead of the system's (glibc).
//!
//! Run with `cargo bench -p netdb-models --bench seed_mimalloc`.
//!
//! netdb does not choose an allocator: that is the application's call. This shows how much
//! of each figure is the allocator's. Restoring a snapshot allocates every row's strings and
//! its `Arc`; ingest allocates the typed write's strings, the decoded event's and the row's.
//! A profile of `seed` puts glibc's `malloc` (with the `malloc_consolidate` it runs when a
//! large request follows many frees) at about two thirds of a restore.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod workloads;

criterion::criterion_group! {
    name = benches;
    config = workloads::config();
    targets = workloads::queries, workloads::ingest, workloads::round_trip, workloads::snapshots
}
criterion::criterion_main!(benches);
