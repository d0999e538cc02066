//! The model's adapter, `<Models>Adapter`, and its typed writes; for a model without an
//! events enum, also the patch type and the built-in insert / update / delete writes.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::ir::{Model, param};

/// `<Models>Adapter`: a `CortexAdapter<Model>` (it derefs to one) with typed constructors,
/// and `writes` (the built-in writes, or nothing when an events enum adds its own).
pub(crate) fn adapter(
    p: &TokenStream,
    vis: &syn::Visibility,
    model: &syn::Ident,
    name: &syn::Ident,
    writes: TokenStream,
) -> TokenStream {
    let result = quote!(::core::result::Result<Self, #p::CortexError>);
    let doc = format!(
        "The live state of [`{model}`] over its log: a `CortexAdapter<{model}>` (it derefs to \
         one, for `state`, `watch`, `wait_for_seq`, `snapshot`, `close`, ...) with the model's \
         typed writes."
    );
    quote! {
        #[doc = #doc]
        #[derive(::core::clone::Clone, ::core::fmt::Debug)]
        #vis struct #name(#p::CortexAdapter<#model>);

        #[automatically_derived]
        impl ::core::ops::Deref for #name {
            type Target = #p::CortexAdapter<#model>;
            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }

        #[automatically_derived]
        impl ::core::convert::From<#p::CortexAdapter<#model>> for #name {
            fn from(__a: #p::CortexAdapter<#model>) -> Self {
                Self(__a)
            }
        }

        #[automatically_derived]
        impl #p::ModelAdapter for #name {
            type Model = #model;
            fn from_netdb(__db: &#p::NetDb) -> #result {
                __db.adapter::<#model>().map(|__a| Self(::core::clone::Clone::clone(__a)))
            }
            fn cortex(&self) -> &#p::CortexAdapter<#model> {
                &self.0
            }
        }

        #[automatically_derived]
        #[allow(dead_code)]
        impl #name {
            /// Opens the model's channel on `backend` (a `Redex`, on disk if it has a
            /// persistent directory; or a `JetStream` connection) and replays its log.
            /// `origin_hash` identifies this writer in its events.
            pub fn open<B: #p::LogBackend + ?::core::marker::Sized>(backend: &B, origin_hash: u64) -> #result {
                #p::CortexAdapter::open(backend, origin_hash).map(Self)
            }
            /// [`open`](Self::open) with a config (start position, fold error policy, file
            /// config, snapshot fallback).
            pub fn open_with_config<B: #p::LogBackend + ?::core::marker::Sized>(backend: &B, origin_hash: u64, config: #p::CortexConfig) -> #result {
                #p::CortexAdapter::open_with_config(backend, origin_hash, config).map(Self)
            }
            /// Restores the state from `bytes` (what `snapshot()` returned, with its
            /// `last_seq`) and folds only the events after it.
            pub fn open_from_snapshot<B: #p::LogBackend + ?::core::marker::Sized>(backend: &B, origin_hash: u64, bytes: &[u8], last_seq: ::core::option::Option<u64>) -> #result {
                #p::CortexAdapter::open_from_snapshot(backend, origin_hash, bytes, last_seq).map(Self)
            }
            /// [`open_from_snapshot`](Self::open_from_snapshot) with a config.
            pub fn open_from_snapshot_with_config<B: #p::LogBackend + ?::core::marker::Sized>(backend: &B, origin_hash: u64, bytes: &[u8], last_seq: ::core::option::Option<u64>, config: #p::CortexConfig) -> #result {
                #p::CortexAdapter::open_from_snapshot_with_config(backend, origin_hash, bytes, last_seq, config).map(Self)
            }
            /// Opens over a log already open (any `CortexLog`).
            pub fn open_on_log(log: ::std::sync::Arc<dyn #p::CortexLog>, origin_hash: u64, config: #p::CortexConfig) -> #result {
                #p::CortexAdapter::open_on_log(log, origin_hash, config).map(Self)
            }
            /// The untyped adapter.
            pub fn into_inner(self) -> #p::CortexAdapter<#model> {
                self.0
            }
            #writes
        }
    }
}

/// `<Model>Patch` and the built-in writes. The events type is the runtime's
/// `BuiltinEvent<Model, ModelPatch>`; no alias is generated, so a user enum named
/// `<Model>Event` never clashes.
pub(crate) fn builtin(m: &Model) -> (TokenStream, TokenStream) {
    let p = m.private();
    let model = &m.ident;
    let vis = &m.vis;
    let patch = m.name("Patch");
    let id = m.id_field();
    let (idf, idty) = (&id.ident, &id.ty);
    // A `String` id is taken as `impl Into<String>`, like every string parameter.
    let (id_param, id_conv) = param(idty);
    let opt = quote!(::core::option::Option);
    let mut slots = Vec::new();
    let mut nones = Vec::new();
    let mut setters = Vec::new();
    let mut encodes = Vec::new();
    let mut decodes = Vec::new();
    let mut applies = Vec::new();
    for f in m.fields.iter().filter(|f| !f.is_id) {
        let (field, ty, n) = (&f.ident, &f.ty, f.name());
        let sp = ty.span();
        let doc = format!("The new `{n}`, if it changes.");
        slots.push(quote_spanned!(sp=> #[doc = #doc] pub #field: #opt<#ty>,));
        nones.push(quote!(#field: #opt::None,));
        let (value_param, conv) = param(ty);
        let sdoc = format!("Sets `{n}`.");
        setters.push(quote_spanned! {sp=>
            #[doc = #sdoc]
            #[must_use]
            pub fn #field(mut self, value: #value_param) -> Self {
                self.#field = #opt::Some(#conv(value));
                self
            }
        });
        encodes.push(quote_spanned! {sp=>
            if let #opt::Some(__v) = &self.#field {
                __out(#n, #p::encode_field(__v)?);
            }
        });
        let olds = &f.renamed_from;
        decodes.push(quote_spanned! {sp=>
            #n #(| #olds)* => self.#field = #opt::Some(#p::decode_field(__bytes)?),
        });
        applies.push(quote! {
            if let #opt::Some(__v) = self.#field {
                __r.#field = __v;
            }
        });
    }
    let pdoc = format!(
        "A change to some fields of one [`{model}`] row: `{patch}::new(id)`, then a setter per \
         field to change; written with the adapter's `update`."
    );
    let items = quote! {
        #[doc = #pdoc]
        #[derive(::core::fmt::Debug, ::core::clone::Clone, ::core::cmp::PartialEq)]
        #vis struct #patch {
            /// The row to change.
            pub #idf: #idty,
            #(#slots)*
        }

        #[automatically_derived]
        #[allow(dead_code)]
        impl #patch {
            /// A patch of row `id` that changes nothing yet.
            pub fn new(#idf: #id_param) -> Self {
                Self { #idf: #id_conv(#idf), #(#nones)* }
            }
            #(#setters)*
        }

        #[automatically_derived]
        impl #p::ModelPatch<#model> for #patch {
            fn new(__id: #idty) -> Self {
                #patch::new(__id)
            }
            fn id(&self) -> &#idty {
                &self.#idf
            }
            fn encode_fields(&self, __out: &mut dyn ::core::ops::FnMut(&'static str, ::std::vec::Vec<u8>)) -> ::core::result::Result<(), #p::postcard::Error> {
                #(#encodes)*
                ::core::result::Result::Ok(())
            }
            fn decode_field(&mut self, __name: &str, __bytes: &[u8]) -> ::core::result::Result<bool, #p::postcard::Error> {
                match __name {
                    #(#decodes)*
                    _ => return ::core::result::Result::Ok(false),
                }
                ::core::result::Result::Ok(true)
            }
            fn apply_to(self, __r: &mut #model) {
                #(#applies)*
            }
        }
    };
    let ret = quote!(::core::result::Result<u64, #p::CortexError>);
    let writes = quote! {
        /// Appends an insert of `row` (replacing any row with its id); returns its seq.
        /// `wait_for_seq(seq)` waits until the state holds it.
        pub fn insert(&self, row: #model) -> #ret {
            self.0.append(&#p::BuiltinEvent::Insert(row))
        }
        /// Appends an update of the fields `patch` sets (nothing happens to a row that does
        /// not exist); returns its seq.
        pub fn update(&self, patch: #patch) -> #ret {
            self.0.append(&#p::BuiltinEvent::Update(patch))
        }
        /// Appends a delete of row `id` (nothing happens if it does not exist); returns its seq.
        pub fn delete(&self, id: #id_param) -> #ret {
            self.0.append(&#p::BuiltinEvent::Delete(#id_conv(id)))
        }
    };
    (items, writes)
}
