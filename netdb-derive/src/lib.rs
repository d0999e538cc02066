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

mod events;
mod model;
mod naming;
mod netdb;

/// Generates a model's filter, orderings, indexes, typed query and watch builders, events
/// (or the glue to a `CortexEvents` enum), adapter with typed writes, and schema. See the
/// [crate documentation](crate).
#[proc_macro_derive(CortexModel, attributes(cortex))]
pub fn derive_cortex_model(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    model::expand(&input).into()
}

/// Generates dispatch codes, encoding, decoding and one typed write per variant for an
/// events enum. See the [crate documentation](crate).
#[proc_macro_derive(CortexEvents, attributes(cortex))]
pub fn derive_cortex_events(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    events::expand(&input).into()
}

/// Generates `open`, `open_from_snapshot`, `snapshot`, `close` and accessors for a struct of
/// model adapters. See the [crate documentation](crate).
#[proc_macro_derive(NetDb, attributes(netdb))]
pub fn derive_netdb(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    netdb::expand(&input).into()
}
