//! Derive macros for netdb models. Use them through `netdb-runtime`, which re-exports them
//! (feature `derive`, on by default): generated code names the runtime only through
//! `::netdb_runtime::__private`, so no other import is needed.
//!
//! # `#[derive(NetDb)]`
//!
//! On a struct whose named fields are model adapters (`CortexAdapter<M>` or an alias of
//! one), generates:
//!
//! * `open(&redex, origin_hash)`: opens every model; each replays its log;
//! * `open_from_snapshot(&redex, origin_hash, &bundle)`: restores every model from a bundle
//!   `snapshot()` returned; each folds only the events after its snapshot;
//! * `snapshot()`: one bundle covering every model, each in its own versioned envelope;
//! * `close()`: closes every model (each fsyncs its log), returning the first error;
//! * one accessor per field, named after it (`db.tasks()`).
//!
//! Field option: `#[netdb(config = path)]`, where `path` names a `fn() -> CortexConfig`
//! used to open that model (default: `CortexConfig::default()`).
//!
//! Container option: `#[netdb(crate = "path")]`, the path of the runtime crate when it is
//! re-exported under another name (default `::netdb_runtime`).
//!
//! The derives `CortexModel` and `CortexEvents` arrive with the rest of the code generator.

use proc_macro::TokenStream;

mod netdb;

/// Generates `open`, `open_from_snapshot`, `snapshot`, `close` and accessors for a struct of
/// model adapters. See the [crate documentation](crate).
#[proc_macro_derive(NetDb, attributes(netdb))]
pub fn derive_netdb(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    netdb::expand(&input).into()
}
