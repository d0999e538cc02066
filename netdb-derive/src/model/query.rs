//! The typed builders: `<Model>Query<'a>` (from `state.query()`) and `<Model>Watch` (from
//! `adapter.watch()`), each the runtime's builder plus the model's `where_*` methods.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;

use super::ir::{Model, param};

/// The `where_*` methods of every filtered field; the same for queries and watches.
fn where_methods(m: &Model) -> TokenStream {
    let p = m.private();
    let some = quote!(::core::option::Option::Some);
    let bound = quote!(::core::ops::Bound);
    let mut out = Vec::new();
    for f in &m.fields {
        let n = f.name();
        let sp = f.ident.span();
        let mut method = |name: syn::Ident, doc: String, args: TokenStream, body: TokenStream| {
            out.push(quote_spanned! {sp=>
                #[doc = #doc]
                pub fn #name(self, #args) -> Self {
                    Self(self.0.filter(|__f| #body))
                }
            });
        };
        let (vparam, vconv) = param(f.value_ty());
        let clauses = f.clauses();
        if f.filters.eq {
            let (eq, eq_in) = (&clauses.eq, &clauses.eq_in);
            method(
                format_ident!("where_{}", n, span = sp),
                format!("Rows whose `{n}` equals `value`."),
                quote!(value: #vparam),
                quote!(__f.#eq = #some(#vconv(value))),
            );
            method(
                format_ident!("where_{}_in", n, span = sp),
                format!("Rows whose `{n}` equals one of `values`."),
                quote!(values: impl ::core::iter::IntoIterator<Item = #vparam>),
                quote!(__f.#eq_in = #some(values.into_iter().map(#vconv).collect())),
            );
        }
        if f.filters.contains {
            let c = &clauses.contains;
            method(
                format_ident!("where_{}_contains", n, span = sp),
                format!("Rows whose `{n}` contains `text`, ignoring case."),
                quote!(text: impl ::core::convert::Into<::std::string::String>),
                quote!(__f.#c = #some(text.into())),
            );
        }
        if f.filters.range {
            let r = &clauses.range;
            for (suffix, word, lo, hi) in [
                (
                    "gt",
                    "greater than",
                    quote!(#bound::Excluded(#vconv(value))),
                    quote!(#bound::Unbounded),
                ),
                (
                    "gte",
                    "at least",
                    quote!(#bound::Included(#vconv(value))),
                    quote!(#bound::Unbounded),
                ),
                (
                    "lt",
                    "less than",
                    quote!(#bound::Unbounded),
                    quote!(#bound::Excluded(#vconv(value))),
                ),
                (
                    "lte",
                    "at most",
                    quote!(#bound::Unbounded),
                    quote!(#bound::Included(#vconv(value))),
                ),
            ] {
                method(
                    format_ident!("where_{}_{}", n, suffix, span = sp),
                    format!(
                        "Rows whose `{n}` is {word} `value` (combines with the other range builders)."
                    ),
                    quote!(value: #vparam),
                    quote!(#p::narrow_range(&mut __f.#r, #lo, #hi)),
                );
            }
            method(
                format_ident!("where_{}_between", n, span = sp),
                format!("Rows whose `{n}` lies in `low..=high` (both ends included)."),
                quote!(low: #vparam, high: #vparam),
                quote!(#p::narrow_range(&mut __f.#r, #bound::Included(#vconv(low)), #bound::Included(#vconv(high)))),
            );
        }
        if f.filters.has {
            let (elem, _) = f.elem().expect("validated");
            let (eparam, econv) = param(elem);
            let s = f.singular.unraw().to_string();
            let (has, any, all) = (&clauses.has, &clauses.any, &clauses.all);
            method(
                format_ident!("where_{}", s, span = sp),
                format!("Rows whose `{n}` holds `value`."),
                quote!(value: #eparam),
                quote!(__f.#has = #some(#econv(value))),
            );
            method(
                format_ident!("where_any_{}", s, span = sp),
                format!("Rows whose `{n}` holds at least one of `values`."),
                quote!(values: impl ::core::iter::IntoIterator<Item = #eparam>),
                quote!(__f.#any = #some(values.into_iter().map(#econv).collect())),
            );
            method(
                format_ident!("where_all_{}", n, span = sp),
                format!("Rows whose `{n}` holds every one of `values`."),
                quote!(values: impl ::core::iter::IntoIterator<Item = #eparam>),
                quote!(__f.#all = #some(values.into_iter().map(#econv).collect())),
            );
        }
        if f.filters.some {
            let c = &clauses.some;
            method(
                format_ident!("where_{}_some", n, span = sp),
                format!("Rows whose `{n}` is set."),
                quote!(),
                quote!(__f.#c = #some(true)),
            );
            method(
                format_ident!("where_{}_none", n, span = sp),
                format!("Rows whose `{n}` is not set."),
                quote!(),
                quote!(__f.#c = #some(false)),
            );
        }
    }
    quote!(#(#out)*)
}

pub(crate) fn builders(m: &Model) -> TokenStream {
    let p = m.private();
    let model = &m.ident;
    let vis = &m.vis;
    let query = m.name("Query");
    let watch = m.name("Watch");
    let filter = m.name("Filter");
    let order = m.name("OrderBy");
    let wheres = where_methods(m);
    // The builder methods queries and watches share: the `where_*` builders and these.
    let shared = quote! {
        #wheres

        /// Changes the filter with a closure.
        pub fn filter(self, change: impl ::core::ops::FnOnce(&mut #filter)) -> Self {
            Self(self.0.filter(change))
        }
        /// Replaces the filter.
        pub fn with_filter(self, filter: #filter) -> Self {
            Self(self.0.with_filter(filter))
        }
        /// Orders the rows (default: id ascending).
        pub fn order_by(self, order: #order) -> Self {
            Self(self.0.order_by(order))
        }
        /// Keeps at most `n` rows.
        pub fn limit(self, n: usize) -> Self {
            Self(self.0.limit(n))
        }
        /// Skips the first `n` rows.
        pub fn offset(self, n: usize) -> Self {
            Self(self.0.offset(n))
        }
        /// The filter, order, limit and offset so far.
        pub fn spec(&self) -> &#p::QuerySpec<#model> {
            self.0.spec()
        }
    };
    let qdoc = format!(
        "A query over [`{model}`] rows: `state.query()`, then `where_*` builders, `order_by`, `limit`, `offset`, and a terminal (`collect`, `count`, `exists`, `first`, `iter`, `for_each`)."
    );
    let wdoc = format!(
        "A live query over [`{model}`] rows: `adapter.watch()`, then `where_*` builders, `order_by`, `limit`, `offset`, then `stream()`."
    );
    quote! {
        #[doc = #qdoc]
        #[derive(::core::fmt::Debug)]
        #[must_use = "a query does nothing until a terminal such as `collect` runs it"]
        #vis struct #query<'a>(#p::Query<'a, #model>);

        #[automatically_derived]
        impl<'a> ::core::convert::From<#p::Query<'a, #model>> for #query<'a> {
            fn from(__q: #p::Query<'a, #model>) -> Self {
                Self(__q)
            }
        }

        #[automatically_derived]
        #[allow(dead_code)]
        impl<'a> #query<'a> {
            #shared
            /// The untyped builder.
            pub fn into_inner(self) -> #p::Query<'a, #model> {
                self.0
            }
            /// The matching rows, cloned.
            pub fn collect(self) -> ::std::vec::Vec<#model> {
                self.0.collect()
            }
            /// The matching rows, shared (no clone of the rows).
            pub fn collect_arcs(self) -> ::std::vec::Vec<::std::sync::Arc<#model>> {
                self.0.collect_arcs()
            }
            /// Calls `f` with each matching row, borrowed.
            pub fn for_each(self, f: impl ::core::ops::FnMut(&'a #model)) {
                self.0.for_each(f)
            }
            /// The matching rows, borrowed, in order.
            pub fn iter(self) -> impl ::core::iter::ExactSizeIterator<Item = &'a #model> + 'a {
                self.0.iter()
            }
            /// How many rows match (limit and offset apply).
            pub fn count(self) -> usize {
                self.0.count()
            }
            /// Whether any row matches.
            pub fn exists(self) -> bool {
                self.0.exists()
            }
            /// The first matching row in order.
            pub fn first(self) -> ::core::option::Option<#model> {
                self.0.first()
            }
        }

        #[doc = #wdoc]
        #[derive(::core::fmt::Debug)]
        #[must_use = "a watch does nothing until `stream()` starts it"]
        #vis struct #watch(#p::Watch<#model>);

        #[automatically_derived]
        impl ::core::convert::From<#p::Watch<#model>> for #watch {
            fn from(__w: #p::Watch<#model>) -> Self {
                Self(__w)
            }
        }

        #[automatically_derived]
        impl ::core::convert::From<#watch> for #p::Watch<#model> {
            fn from(__w: #watch) -> Self {
                __w.0
            }
        }

        #[automatically_derived]
        #[allow(dead_code)]
        impl #watch {
            #shared
            /// Starts watching: the first item is the current result, then each changed result.
            pub fn stream(self) -> #p::WatchStream<#model> {
                self.0.stream()
            }
            /// The current result, and a stream of the results after it.
            pub fn snapshot_and_stream(self) -> (::std::vec::Vec<#model>, #p::WatchStream<#model>) {
                self.0.snapshot_and_stream()
            }
        }
    }
}
