//! `#[derive(NetDb)]`: attributes → validated fields → the generated `impl`.

use darling::{FromDeriveInput, FromField, ast};
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;

#[derive(FromDeriveInput)]
#[darling(attributes(netdb))]
struct Input {
    ident: syn::Ident,
    generics: syn::Generics,
    data: ast::Data<(), Field>,
    /// `#[netdb(crate = "path")]`.
    #[darling(rename = "crate")]
    krate: Option<syn::Path>,
}

#[derive(FromField)]
#[darling(attributes(netdb))]
struct Field {
    ident: Option<syn::Ident>,
    ty: syn::Type,
    /// `#[netdb(config = path)]`: a `fn() -> CortexConfig`.
    config: Option<syn::Path>,
}

/// The methods the derive generates; a field (whose accessor has its name) cannot take one.
const GENERATED: &[&str] = &[
    "open",
    "catch_up",
    "open_from_snapshot",
    "snapshot",
    "close",
    "__netdb_builder",
    "__netdb_from",
];

/// A validated model field.
struct Model<'a> {
    name: &'a syn::Ident,
    ty: &'a syn::Type,
    config: Option<&'a syn::Path>,
}

pub(crate) fn expand(input: &syn::DeriveInput) -> TokenStream {
    match Input::from_derive_input(input) {
        Ok(parsed) => generate(&parsed).unwrap_or_else(|e| e.write_errors()),
        Err(e) => e.write_errors(),
    }
}

fn generate(input: &Input) -> Result<TokenStream, darling::Error> {
    let mut errors = darling::Error::accumulator();
    if !input.generics.params.is_empty() {
        errors.push(
            darling::Error::custom(
                "a NetDb struct cannot be generic: name the model adapters' types directly",
            )
            .with_span(&input.generics.params),
        );
    }
    const SHAPE: &str = "#[derive(NetDb)] needs a struct with named fields, one per model \
                         adapter: `struct Db { tasks: CortexAdapter<Task> }`";
    let fields = match &input.data {
        ast::Data::Struct(fields) if fields.style == ast::Style::Struct => &fields.fields[..],
        _ => {
            errors.push(darling::Error::custom(SHAPE).with_span(&input.ident));
            &[]
        }
    };
    if fields.is_empty()
        && matches!(&input.data, ast::Data::Struct(f) if f.style == ast::Style::Struct)
    {
        errors.push(
            darling::Error::custom(
                "a NetDb struct needs at least one model adapter field, e.g. \
                 `tasks: CortexAdapter<Task>`",
            )
            .with_span(&input.ident),
        );
    }
    for f in fields {
        if let Some(name) = &f.ident
            && GENERATED.contains(&name.unraw().to_string().as_str())
        {
            errors.push(
                darling::Error::custom(format!(
                    "a field named `{name}` would clash with the generated `{name}` method \
                     (the accessor has the field's name); rename the field"
                ))
                .with_span(name),
            );
        }
    }
    let models: Vec<Model<'_>> = fields
        .iter()
        .filter_map(|f| {
            Some(Model {
                name: f.ident.as_ref()?,
                ty: &f.ty,
                config: f.config.as_ref(),
            })
        })
        .collect();
    errors.finish()?;

    let rt = input
        .krate
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::netdb_runtime));
    let p = quote!(#rt::__private);
    let ident = &input.ident;

    // `<FieldType as ModelAdapter>::Model`, spanned on the field type so a field that is
    // not an adapter gets its error there.
    let model_of = |m: &Model<'_>| {
        let ty = m.ty;
        quote_spanned!(ty.span()=> <#ty as #p::ModelAdapter>::Model)
    };
    let add_models = models.iter().map(|m| {
        let model = model_of(m);
        let config = match m.config {
            Some(f) => quote_spanned!(f.span()=> #f()),
            None => quote!(#p::CortexConfig::default()),
        };
        quote!(.model_with_config::<#model>(#config))
    });
    // Every use of a field goes through `ModelAdapter`, spanned on its type: a field that
    // is not an adapter gets one error, there, and nothing else.
    let adapter_trait = |m: &Model<'_>| {
        let ty = m.ty;
        quote_spanned!(ty.span()=> <#ty as #p::ModelAdapter>)
    };
    let take_adapters = models.iter().map(|m| {
        let name = m.name;
        let tr = adapter_trait(m);
        quote!(#name: #tr::from_netdb(&__db)?)
    });
    let accessors = models.iter().map(|m| {
        let (name, ty) = (m.name, m.ty);
        let doc = format!("The `{name}` model's adapter.");
        quote! {
            #[doc = #doc]
            pub fn #name(&self) -> &#ty {
                &self.#name
            }
        }
    });
    // Every model as a `&dyn BundleModel`: what `snapshot` and `catch_up` go through.
    let adapter_refs: Vec<TokenStream> = models
        .iter()
        .map(|m| {
            let name = m.name;
            let tr = adapter_trait(m);
            quote!(#tr::as_bundle_model(&self.#name))
        })
        .collect();
    let closes = models.iter().map(|m| {
        let name = m.name;
        let tr = adapter_trait(m);
        quote! {
            if let ::core::result::Result::Err(__netdb_err) = #tr::close_adapter(&self.#name) {
                __first.get_or_insert(__netdb_err);
            }
        }
    });

    Ok(quote! {
        #[automatically_derived]
        // A program may use only some of the generated methods.
        #[allow(dead_code)]
        impl #ident {
            fn __netdb_builder(__origin_hash: u64) -> #p::NetDbBuilder {
                #p::NetDb::builder().origin_hash(__origin_hash) #(#add_models)*
            }

            fn __netdb_from(__db: #p::NetDb) -> ::core::result::Result<Self, #p::CortexError> {
                ::core::result::Result::Ok(Self { #(#take_adapters,)* })
            }

            /// Opens every model on the backend (a `Redex`, or a `JetStream` connection);
            /// each replays its log. The origin hash identifies this writer in the events
            /// it appends.
            pub fn open<B: #p::LogBackend + ::core::clone::Clone + 'static>(
                __backend: &B,
                __origin_hash: u64,
            ) -> ::core::result::Result<Self, #p::CortexError> {
                Self::__netdb_from(Self::__netdb_builder(__origin_hash).open(__backend)?)
            }

            /// Restores every model from a bundle `snapshot` returned; each folds only the
            /// events after its snapshot.
            pub fn open_from_snapshot<B: #p::LogBackend + ::core::clone::Clone + 'static>(
                __backend: &B,
                __origin_hash: u64,
                __bundle: &[u8],
            ) -> ::core::result::Result<Self, #p::CortexError> {
                Self::__netdb_from(
                    Self::__netdb_builder(__origin_hash).open_from_snapshot(__backend, __bundle)?,
                )
            }

            /// A future that returns once every model has folded what its log held when this
            /// was called: after `open`, the replay of what earlier runs wrote.
            pub fn catch_up(&self) -> #p::CatchUp<'_> {
                #p::catch_up_all(::std::vec![#(#adapter_refs),*])
            }

            /// One bundle covering every model, each in its own versioned envelope.
            pub fn snapshot(&self) -> ::core::result::Result<::std::vec::Vec<u8>, #p::CortexError> {
                #p::bundle_of(&[#(#adapter_refs),*])
            }

            /// Closes every model (each fsyncs its log); returns the first error after
            /// trying them all.
            pub fn close(&self) -> ::core::result::Result<(), #p::CortexError> {
                let mut __first = ::core::option::Option::None;
                #(#closes)*
                match __first {
                    ::core::option::Option::Some(__netdb_err) => {
                        ::core::result::Result::Err(__netdb_err)
                    }
                    ::core::option::Option::None => ::core::result::Result::Ok(()),
                }
            }

            #(#accessors)*
        }
    })
}

#[cfg(test)]
mod tests {
    use super::expand;

    fn pretty(input: &str) -> String {
        crate::pretty(expand, input)
    }

    #[test]
    fn expansion_of_a_two_model_db() {
        insta::assert_snapshot!(pretty(
            "struct AppDb {
                tasks: TasksAdapter,
                #[netdb(config = notes_config)]
                notes: CortexAdapter<Note>,
            }"
        ));
    }

    #[test]
    fn expansion_with_a_renamed_runtime() {
        insta::assert_snapshot!(pretty(
            "#[netdb(crate = \"facade::rt\")]
            struct Db { notes: CortexAdapter<Note> }"
        ));
    }
}
