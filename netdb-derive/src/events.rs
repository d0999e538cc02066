//! `#[derive(CortexEvents)]`: a user's events enum → dispatch codes, encoding, decoding, the
//! forward to the user's `ApplyEvent` impl, and one typed write per variant on the model's
//! adapter.

use darling::util::SpannedValue;
use darling::{FromDeriveInput, FromVariant, ast};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;

use crate::naming;

#[derive(FromDeriveInput)]
#[darling(attributes(cortex))]
struct EventsInput {
    ident: syn::Ident,
    generics: syn::Generics,
    data: ast::Data<VariantInput, darling::util::Ignored>,
    /// The model the events change.
    model: Option<syn::Path>,
    /// The model's adapter, when the model renamed it.
    adapter: Option<syn::Path>,
    #[darling(rename = "crate")]
    krate: Option<syn::Path>,
}

#[derive(FromVariant)]
#[darling(attributes(cortex))]
struct VariantInput {
    ident: syn::Ident,
    fields: ast::Fields<syn::Field>,
    /// The stored dispatch code.
    dispatch: Option<SpannedValue<syn::LitInt>>,
    /// The typed write's name (default: the variant in snake_case).
    write: Option<syn::LitStr>,
    /// No typed write: a variant kept only to decode events already in the log.
    no_write: darling::util::Flag,
}

/// Methods a `CortexAdapter` (and the generated adapter) already has: a write must not
/// shadow them.
const TAKEN: &[&str] = &[
    "open",
    "open_with_config",
    "open_on_log",
    "open_from_snapshot",
    "open_from_snapshot_with_config",
    "open_from_snapshot_on_log",
    "into_inner",
    "state",
    "log",
    "restore_outcome",
    "folded_through_seq",
    "append",
    "append_batch",
    "append_and_wait",
    "wait_for_seq",
    "catch_up",
    "wait_for_seq_timeout",
    "fold_errors",
    "is_folding",
    "changes",
    "watch",
    "snapshot_and_watch",
    "snapshot",
    "close",
    "clone",
    "deref",
    "from",
];

/// The largest tuple serde encodes: a variant's fields travel as one.
const MAX_FIELDS: usize = 16;

struct Variant<'a> {
    ident: &'a syn::Ident,
    fields: &'a ast::Fields<syn::Field>,
    code: u16,
    /// `None` for a `no_write` variant.
    write: Option<syn::Ident>,
}

pub(crate) fn expand(input: &syn::DeriveInput) -> TokenStream {
    let parsed = match EventsInput::from_derive_input(input) {
        Ok(p) => p,
        Err(e) => {
            let errors = e.write_errors();
            let stub = any_model_stub(&crate::model::ir::default_crate(), input);
            return quote!(#errors #stub);
        }
    };
    let mut errors = darling::Error::accumulator();
    let err = |span: Span, msg: String| darling::Error::custom(msg).with_span(&span);
    let name = &parsed.ident;
    if !parsed.generics.params.is_empty() {
        errors.push(err(
            parsed.generics.params.span(),
            "an events enum cannot be generic: its variants are stored in the log with fixed \
             dispatch codes; declare a concrete enum"
                .into(),
        ));
    }
    let variants_in: &[VariantInput] = match &parsed.data {
        ast::Data::Enum(v) => v,
        ast::Data::Struct(_) => {
            errors.push(err(
                name.span(),
                "#[derive(CortexEvents)] goes on an enum with one variant per kind of event; for \
                 the row struct, derive `CortexModel`"
                    .into(),
            ));
            &[]
        }
    };
    if variants_in.is_empty() && matches!(parsed.data, ast::Data::Enum(_)) {
        errors.push(err(
            name.span(),
            "an events enum needs at least one variant, each with `#[cortex(dispatch = N)]`".into(),
        ));
    }
    if parsed.model.is_none() {
        errors.push(err(
            name.span(),
            "name the model these events change: `#[cortex(model = Task)]`".into(),
        ));
    }

    let mut variants: Vec<Variant<'_>> = Vec::new();
    let next_free = variants_in
        .iter()
        .filter_map(|v| crate::naming::int::<u32>(v.dispatch.as_ref()?))
        .filter(|&c| c < 0xF000)
        .max()
        .map_or(1, |c| c + 1);
    for v in variants_in {
        let code = match &v.dispatch {
            None => {
                errors.push(err(
                    v.ident.span(),
                    format!(
                        "every event needs an explicit dispatch code, e.g. \
                         `#[cortex(dispatch = {next_free})]`: the code is stored in the log, so it \
                         must not change when variants are reordered (use 1..=0xEFFF)"
                    ),
                ));
                None
            }
            Some(lit) => {
                match crate::naming::int::<u32>(lit).ok_or(()) {
                    Ok(0) => {
                        errors.push(err(
                            lit.span(),
                            "dispatch code 0 is invalid; user codes are 1..=0xEFFF".into(),
                        ));
                        None
                    }
                    Ok(c) if c > 0xFFFF => {
                        errors.push(err(lit.span(), format!("dispatch code {c} does not fit in 16 bits; user codes are 1..=0xEFFF")));
                        None
                    }
                    Ok(c) if c >= 0xF000 => {
                        errors.push(err(
                        lit.span(),
                        format!("dispatch code {c:#06x} is in the range netdb reserves for its own events (0xF000..=0xFFFF); pick one in 1..=0xEFFF"),
                    ));
                        None
                    }
                    Ok(c) => Some(c as u16),
                    Err(_) => {
                        errors.push(err(
                            lit.span(),
                            "a dispatch code is a plain integer in 1..=0xEFFF (no type suffix)"
                                .into(),
                        ));
                        None
                    }
                }
            }
        };
        if let (Some(c), Some(lit)) = (code, &v.dispatch)
            && let Some(first) = variants.iter().find(|x| x.code == c)
        {
            errors.push(err(
                lit.span(),
                format!(
                    "dispatch code {c} is already used by `{}`; every event needs its own \
                     code (the next free one is {next_free})",
                    first.ident
                ),
            ));
        }
        if v.fields.len() > MAX_FIELDS {
            errors.push(err(
                v.ident.span(),
                format!("an event variant has at most {MAX_FIELDS} fields; group some in a struct"),
            ));
        }
        if v.no_write.is_present()
            && let Some(lit) = &v.write
        {
            errors.push(err(
                lit.span(),
                "`no_write` means no typed write, so it cannot have a name: keep one of the two"
                    .into(),
            ));
        }
        let write = match &v.write {
            _ if v.no_write.is_present() => None,
            Some(lit) => match syn::parse_str::<syn::Ident>(&lit.value()) {
                Ok(i) => Some(syn::Ident::new(&i.to_string(), lit.span())),
                Err(_) => {
                    errors.push(err(
                        lit.span(),
                        "`write` names a method: a snake_case word".into(),
                    ));
                    continue;
                }
            },
            None => Some(format_ident!(
                "{}",
                naming::snake(&v.ident.unraw().to_string()),
                span = v.ident.span()
            )),
        };
        if let Some(write) = &write {
            let wname = write.to_string();
            if TAKEN.contains(&wname.as_str()) {
                errors.push(err(
                    v.write.as_ref().map(|l| l.span()).unwrap_or(v.ident.span()),
                    format!(
                        "the typed write `{wname}` would shadow the adapter's own `{wname}` \
                         method; name it with `#[cortex(write = \"{wname}_event\")]` (or another \
                         name)"
                    ),
                ));
            } else if let Some(first) = variants.iter().find(|x| x.write.as_ref() == Some(write)) {
                errors.push(err(
                    write.span(),
                    format!(
                        "the typed write `{wname}` is already generated for `{}`; name one with \
                         `#[cortex(write = \"...\")]`",
                        first.ident
                    ),
                ));
            }
        }
        if let Some(code) = code {
            variants.push(Variant {
                ident: &v.ident,
                fields: &v.fields,
                code,
                write,
            });
        }
    }

    let krate = parsed
        .krate
        .clone()
        .unwrap_or_else(crate::model::ir::default_crate);
    let p = quote!(#krate::__private);
    let Some(model) = &parsed.model else {
        let errors = errors.finish().err().map(|e| e.write_errors());
        let stub = any_model_stub(&krate, input);
        return quote!(#errors #stub);
    };
    if let Err(e) = errors.finish() {
        if !parsed.generics.params.is_empty() {
            return e.write_errors();
        }
        // One mistake, one error: the model still gets an events impl.
        let stub = any_model_stub(&krate, input);
        let errors = e.write_errors();
        return quote!(#errors #stub);
    }
    let adapter = parsed.adapter.clone().unwrap_or_else(|| {
        let mut path = model.clone();
        if let Some(last) = path.segments.last_mut() {
            // Spanned at the derive: an unknown model then gets no suggestion to name the
            // adapter instead.
            last.ident = format_ident!("{}Adapter", naming::plural(&last.ident.to_string()));
            last.arguments = syn::PathArguments::None;
        }
        path
    });
    generate(&p, name, model, &adapter, &variants)
}

/// An events impl for every model, for an events type the derive refused: keeps the
/// model that names it from a follow-up error.
fn any_model_stub(krate: &syn::Path, input: &syn::DeriveInput) -> TokenStream {
    if !input.generics.params.is_empty() || matches!(input.data, syn::Data::Union(_)) {
        return TokenStream::new();
    }
    let p = quote!(#krate::__private);
    let name = &input.ident;
    quote! {
        #[automatically_derived]
        impl<__M: #p::CortexModel> #p::CortexEvent<__M> for #name {
            fn dispatch(&self) -> u16 { ::core::unreachable!() }
            fn encode_body(&self, _: &mut ::std::vec::Vec<u8>) -> ::core::result::Result<(), #p::postcard::Error> { ::core::unreachable!() }
            fn decode_body(__d: u16, _: u16, _: &[u8]) -> ::core::result::Result<Self, #p::EventDecodeError> {
                ::core::result::Result::Err(#p::EventDecodeError::UnknownDispatch(__d))
            }
            fn apply(self, _: &mut #p::TableMut<'_, __M>, _: &#p::EventContext) -> ::core::result::Result<(), #p::ApplyError> { ::core::unreachable!() }
        }
    }
}

/// The names of a variant's fields as typed-write parameters: the field names, or `value`
/// / `value0`, `value1`, ... for a tuple variant.
fn param_names(v: &Variant<'_>) -> Vec<syn::Ident> {
    match v.fields.style {
        ast::Style::Struct => v.fields.iter().filter_map(|f| f.ident.clone()).collect(),
        ast::Style::Tuple if v.fields.len() == 1 => vec![format_ident!("value")],
        ast::Style::Tuple => (0..v.fields.len())
            .map(|i| format_ident!("value{}", i))
            .collect(),
        ast::Style::Unit => Vec::new(),
    }
}

fn generate(
    p: &TokenStream,
    name: &syn::Ident,
    model: &syn::Path,
    adapter: &syn::Path,
    variants: &[Variant<'_>],
) -> TokenStream {
    let mut dispatch = Vec::new();
    let mut encode = Vec::new();
    let mut decode = Vec::new();
    let mut writes = Vec::new();
    for v in variants {
        let code = v.code;
        let names = param_names(v);
        let ident = v.ident;
        let tys: Vec<&syn::Type> = v.fields.iter().map(|f| &f.ty).collect();
        let any = match v.fields.style {
            ast::Style::Struct => quote!(Self::#ident { .. }),
            ast::Style::Tuple => quote!(Self::#ident(..)),
            ast::Style::Unit => quote!(Self::#ident),
        };
        dispatch.push(quote!(#any => #code,));
        // The fields travel as one tuple, without the variant (the dispatch code says it).
        let locals: Vec<syn::Ident> = names
            .iter()
            .map(|n| format_ident!("__{}", n.unraw()))
            .collect();
        let pattern = rebind(quote!(Self), v, &locals);
        encode.push(quote! {
            #pattern => {
                #p::postcard_append(&(#(#locals,)*), __out)?;
            }
        });
        let decoded = quote_spanned!(ident.span()=> (#(#tys,)*));
        decode.push(quote! {
            #code => {
                let (#(#locals,)*): #decoded = #p::postcard::from_bytes(__body)
                    .map_err(|__e| #p::EventDecodeError::Body { dispatch: __dispatch, source: __e })?;
                ::core::result::Result::Ok(#pattern)
            }
        });
        let Some(write) = &v.write else { continue };
        let (params, convs): (Vec<_>, Vec<_>) = names
            .iter()
            .zip(&tys)
            .zip(&locals)
            .map(|((n, ty), l)| {
                let (param, conv) = crate::model::ir::param(ty);
                (quote!(#n: #param), quote!(let #l = #conv(#n);))
            })
            .unzip();
        let event = rebind(quote!(#name), v, &locals);
        let doc = format!(
            "Appends a `{name}::{ident}` event (dispatch code {code}); returns its seq. \
             `wait_for_seq(seq)` waits until the state reflects it."
        );
        writes.push(quote_spanned! {write.span()=>
            #[doc = #doc]
            pub fn #write(&self, #(#params),*) -> ::core::result::Result<u64, #p::CortexError> {
                #(#convs)*
                #p::CortexAdapter::<#model>::append(self, &__netdb_event(#event))
            }
        });
    }
    let writes = writes.into_iter();
    let apply_forward = quote_spanned! {name.span()=>
        <Self as #p::ApplyEvent<#model>>::apply(self, __table, __ctx)
    };
    let events_check = quote_spanned! {model.span()=>
        <#model as #p::ModelEvents<#name>>::event(__e)
    };
    quote! {
        #[automatically_derived]
        impl #p::CortexEvent<#model> for #name {
            fn dispatch(&self) -> u16 {
                match self {
                    #(#dispatch)*
                }
            }

            fn encode_body(&self, __out: &mut ::std::vec::Vec<u8>) -> ::core::result::Result<(), #p::postcard::Error> {
                match self {
                    #(#encode)*
                }
                ::core::result::Result::Ok(())
            }

            fn decode_body(__dispatch: u16, _: u16, __body: &[u8]) -> ::core::result::Result<Self, #p::EventDecodeError> {
                match __dispatch {
                    #(#decode)*
                    _ => ::core::result::Result::Err(#p::EventDecodeError::UnknownDispatch(__dispatch)),
                }
            }

            fn apply(self, __table: &mut #p::TableMut<'_, #model>, __ctx: &#p::EventContext) -> ::core::result::Result<(), #p::ApplyError> {
                #apply_forward
            }
        }

        const _: () = {
            // The one place that needs the model to name this enum as its events: a model
            // that names other events gets one error, here, on `model = ...`.
            fn __netdb_event(__e: #name) -> <#model as #p::CortexModel>::Event {
                #events_check
            }

            #[automatically_derived]
            #[allow(dead_code)]
            impl #adapter {
                #(#writes)*
            }
        };
    }
}

/// The variant's pattern / constructor with its fields bound to `locals`.
fn rebind(prefix: TokenStream, v: &Variant<'_>, locals: &[syn::Ident]) -> TokenStream {
    let ident = v.ident;
    match v.fields.style {
        ast::Style::Struct => {
            let names = v.fields.iter().filter_map(|f| f.ident.as_ref());
            quote!(#prefix::#ident { #(#names: #locals),* })
        }
        ast::Style::Tuple => quote!(#prefix::#ident(#(#locals),*)),
        ast::Style::Unit => quote!(#prefix::#ident),
    }
}

#[cfg(test)]
mod tests {
    fn pretty(input: &str) -> String {
        crate::pretty(super::expand, input)
    }

    #[test]
    fn expansion_of_an_events_enum() {
        insta::assert_snapshot!(pretty(
            r#"#[cortex(model = crate::tasks::Task)]
            pub enum TaskEvent {
                #[cortex(dispatch = 1)]
                Create { id: u64, title: String },
                #[cortex(dispatch = 2, write = "rename_task")]
                Rename(u64, String),
                #[cortex(dispatch = 7)]
                Purge,
            }"#
        ));
    }
}
