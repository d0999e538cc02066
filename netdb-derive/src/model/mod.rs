//! `#[derive(CortexModel)]`: attributes ([`attrs`]) → a validated model ([`ir`]) → one
//! generator per output: filter, orderings and indexes ([`state`]), typed builders
//! ([`query`]), the adapter and writes ([`writes`]), and the model impl with its schema
//! (here).

mod attrs;
pub(crate) mod ir;
mod query;
mod state;
pub(crate) mod writes;

use darling::FromDeriveInput;
use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;

use crate::naming;
use ir::Model;

pub(crate) fn expand(input: &syn::DeriveInput) -> TokenStream {
    let parsed = match attrs::ModelInput::from_derive_input(input) {
        Ok(parsed) => parsed,
        Err(e) => return fallback(input, None, e),
    };
    match ir::validate(&parsed) {
        Ok(model) => generate(&model),
        Err(e) => fallback(input, Some(&parsed), e),
    }
}

fn generate(m: &Model) -> TokenStream {
    let p = m.private();
    let model = &m.ident;
    let vis = &m.vis;
    let state = m.name("State");
    let filter = state::filter(m);
    let order_by = state::order_by(m);
    let indexes = state::indexes(m);
    let builders = query::builders(m);
    let (event_items, writes, event_ty) = match &m.events {
        Some(path) => (
            TokenStream::new(),
            TokenStream::new(),
            quote_spanned!(path.span()=> #path),
        ),
        None => {
            let (items, writes) = writes::builtin(m);
            let patch = m.name("Patch");
            (items, writes, quote!(#p::BuiltinEvent<#model, #patch>))
        }
    };
    let adapter = writes::adapter(&p, vis, model, &m.adapter, writes);
    let model_impl = model_impl(m, event_ty);
    let sdoc = format!(
        "The rows of [`{model}`]: what `adapter.state().read()` gives (`find_unique`, `find_many`, `count_where`, `exists_where`, `query`)."
    );
    quote! {
        #[doc = #sdoc]
        #vis type #state = #p::Table<#model>;
        #filter
        #order_by
        #indexes
        #builders
        #event_items
        #adapter
        #model_impl
    }
}

/// The `Field` list of the schema: names and types as written, without whitespace.
fn schema_fields(m: &Model) -> Vec<TokenStream> {
    let p = m.private();
    m.fields
        .iter()
        .map(|f| {
            let name = f.ident.unraw().to_string();
            let ty = quote::ToTokens::to_token_stream(&f.ty)
                .to_string()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>();
            quote!(#p::Field { name: #name, ty: #ty })
        })
        .collect()
}

fn model_impl(m: &Model, event_ty: TokenStream) -> TokenStream {
    let p = m.private();
    let model = &m.ident;
    let id = m.id_field();
    let (idf, idty) = (&id.ident, &id.ty);
    let filter = m.name("Filter");
    let order = m.name("OrderBy");
    let query = m.name("Query");
    let watch = m.name("Watch");
    let indexes = if m.has_indexes() {
        let ix = m.name("Indexes");
        quote!(#ix)
    } else {
        quote!(())
    };
    let channel = &m.channel;
    let version = m.schema;
    let fields = schema_fields(m);

    let routes: Vec<_> = m
        .fields
        .iter()
        .filter(|f| f.routable())
        .map(|f| {
            let (field, num) = (&f.ident, f.number);
            let body = if f.filters.has {
                quote!(for __v in self.#field.iter() { __out(#p::route_hash(__v)) })
            } else if f.is_option() {
                quote!(if let ::core::option::Option::Some(__v) = &self.#field { __out(#p::route_hash(__v)) })
            } else {
                quote!(__out(#p::route_hash(&self.#field)))
            };
            quote!(#num => { #body })
        })
        .collect();

    let migrations = (!m.migrations.is_empty()).then(|| {
        let n = m.migrations.len();
        let entries = m.migrations.iter().map(|mig| {
            let (from, with) = (mig.from, &mig.with);
            let fp = match mig.fingerprint {
                Some(f) => quote!(::core::option::Option::Some(#f)),
                None => quote!(::core::option::Option::None),
            };
            quote_spanned! {with.span()=>
                #p::Migration {
                    from_version: #from,
                    from_fingerprint: #fp,
                    decode: #p::migrate_rows::<#with, #model>,
                    decode_row: #p::migrate_row::<#with, #model>,
                }
            }
        });
        quote! {
            fn migrations() -> &'static [#p::Migration<Self>] {
                static __MIGRATIONS: [#p::Migration<#model>; #n] = [#(#entries),*];
                &__MIGRATIONS
            }
        }
    });

    quote! {
        #[automatically_derived]
        impl #p::CortexModel for #model {
            type Id = #idty;
            type Event = #event_ty;
            type Filter = #filter;
            type OrderBy = #order;
            type Indexes = #indexes;
            type Query<'__a> = #query<'__a>;
            type Watch = #watch;

            const CHANNEL: &'static str = #channel;
            const SCHEMA: #p::Schema = #p::Schema::new(#version, &[#(#fields),*]);

            fn id(&self) -> &#idty {
                &self.#idf
            }

            fn route_hashes(&self, __field: u16, __out: &mut dyn ::core::ops::FnMut(u64)) {
                match __field {
                    #(#routes)*
                    _ => {}
                }
            }

            #migrations
        }
    }
}

/// On error: the errors, plus stand-ins for everything the derive would have generated, so
/// one mistake gives one error rather than one per use of the model.
fn fallback(
    input: &syn::DeriveInput,
    parsed: Option<&attrs::ModelInput>,
    errors: darling::Error,
) -> TokenStream {
    let errors = errors.write_errors();
    if !input.generics.params.is_empty() || !matches!(input.data, syn::Data::Struct(_)) {
        return errors;
    }
    let krate = parsed
        .and_then(|p| p.krate.clone())
        .unwrap_or_else(ir::default_crate);
    let p = quote!(#krate::__private);
    let model = &input.ident;
    let vis = &input.vis;
    let adapter = parsed
        .and_then(|p| p.adapter.clone())
        .unwrap_or_else(|| format_ident!("{}Adapter", naming::plural(&model.to_string())));
    let event = match parsed.and_then(|p| p.events.clone()) {
        Some(path) => quote!(#path),
        None => quote!(#p::NoEvents),
    };
    let [state, filter, order, query, watch] =
        ["State", "Filter", "OrderBy", "Query", "Watch"].map(|s| format_ident!("{}{}", model, s));
    let adapter = writes::adapter(&p, vis, model, &adapter, TokenStream::new());
    quote! {
        #errors
        #vis type #state = #p::Table<#model>;
        #vis type #filter = #p::NoFilter;
        #vis type #order = #p::IdOrder;
        #vis type #query<'__a> = #p::Query<'__a, #model>;
        #vis type #watch = #p::Watch<#model>;
        #adapter
        impl #p::CortexModel for #model {
            type Id = ();
            type Event = #event;
            type Filter = #p::NoFilter;
            type OrderBy = #p::IdOrder;
            type Indexes = ();
            type Query<'__a> = #p::Query<'__a, #model>;
            type Watch = #p::Watch<#model>;
            const CHANNEL: &'static str = "";
            const SCHEMA: #p::Schema = #p::Schema::new(1, &[]);
            fn id(&self) -> &() {
                &()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    fn pretty(input: &str) -> String {
        crate::pretty(super::expand, input)
    }

    #[test]
    fn expansion_of_a_plain_model() {
        insta::assert_snapshot!(pretty(
            r#"#[cortex(channel = "cortex/notes")]
            pub struct Note {
                pub id: u64,
                pub text: String,
            }"#
        ));
    }

    #[test]
    fn expansion_of_an_indexed_model() {
        insta::assert_snapshot!(pretty(
            r#"#[cortex(channel = "cortex/memories")]
            pub struct Memory {
                #[cortex(id)]
                pub key: String,
                #[cortex(filter(contains))]
                pub content: String,
                #[cortex(filter, index)]
                pub tags: Vec<String>,
                #[cortex(filter, index(hash))]
                pub source: Option<String>,
                #[cortex(filter)]
                pub pinned: bool,
                #[cortex(filter(range), order_by = "Created", index)]
                pub created_ns: u64,
            }"#
        ));
    }

    #[test]
    fn expansion_of_a_model_with_events() {
        insta::assert_snapshot!(pretty(
            r#"#[cortex(channel = "cortex/tasks", events = TaskEvent)]
            pub struct Task {
                pub id: u64,
                #[cortex(filter, index)]
                pub status: TaskStatus,
            }"#
        ));
    }

    #[test]
    fn expansion_of_a_versioned_model() {
        insta::assert_snapshot!(pretty(
            r#"#[cortex(channel = "cortex/tasks", schema = 3,
                migrate(from = 1, with = v1::Task, fingerprint = 0x1234),
                migrate(from = 2, with = v2::Task),
                crate = "facade::rt")]
            struct Task {
                id: u64,
                #[cortex(filter(eq))]
                title: String,
                #[cortex(order_by)]
                due: Option<u64>,
            }"#
        ));
    }

    #[test]
    fn expansion_after_a_mistake_has_stand_ins() {
        insta::assert_snapshot!(pretty(
            r#"#[cortex(channel = "cortex/tasks")]
            struct Task {
                id: u64,
                #[cortex(filter(contains))]
                rank: u64,
            }"#
        ));
    }
}
