//! The filter, the orderings and the index set: `<Model>Filter`, `<Model>OrderBy`,
//! `<Model>Indexes`, and their runtime traits.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;

use super::ir::{Clauses, Field, IndexKind, Model};

pub(crate) fn filter(m: &Model) -> TokenStream {
    let p = m.private();
    let model = &m.ident;
    let vis = &m.vis;
    let name = m.name("Filter");
    let serde_crate = format!("{}::serde", p).replace(' ', "");
    let opt = quote!(::core::option::Option);
    let vec = quote!(::std::vec::Vec);

    let mut decls = Vec::new();
    let mut tests = Vec::new();
    let mut plans = Vec::new();
    let mut routes = Vec::new();
    // Every clause field, and the counts an index answers exactly when its clause is alone.
    let mut clause_fields: Vec<syn::Ident> = Vec::new();
    let mut exact = Vec::new();
    for f in &m.fields {
        let Clauses {
            eq,
            eq_in,
            contains,
            range,
            has,
            any,
            all,
            some,
        } = f.clauses();
        clause_fields.extend(f.clauses().enabled(&f.filters).into_iter().cloned());
        let num = f.number;
        let field = &f.ident;
        // A route from a one-value clause, else from a several-values clause.
        let route = |one: &syn::Ident, many: &syn::Ident| {
            let hash = quote!(#p::route_hash(__v));
            quote! {
                if let #opt::Some(__v) = &self.#one {
                    return #opt::Some(#p::Route { field: #num, hashes: ::std::vec![#hash] });
                }
                if let #opt::Some(__vs) = &self.#many {
                    return #opt::Some(#p::Route {
                        field: #num,
                        hashes: __vs.iter().map(|__v| #hash).collect(),
                    });
                }
            }
        };
        let fname = f.name();
        let vty = f.value_ty();
        let sp = f.ty.span();
        let doc = |what: String| format!("`{fname}` {what}.");
        // `__r.field` compared through the option for `Option<T>` fields.
        let value_test = |body: TokenStream| {
            if f.is_option() {
                quote_spanned!(sp=> __r.#field.as_ref().is_some_and(|__x| #body))
            } else {
                quote_spanned!(sp=> { let __x = &__r.#field; #body })
            }
        };
        if f.filters.eq {
            let (d1, d2) = (
                doc("equals this value".into()),
                doc("equals one of these values".into()),
            );
            decls.push(quote_spanned!(sp=> #[doc = #d1] pub #eq: #opt<#vty>, #[doc = #d2] pub #eq_in: #opt<#vec<#vty>>,));
            let t1 = value_test(quote!(__x == __v));
            let t2 = value_test(quote!(__v.contains(__x)));
            tests.push(quote!(self.#eq.as_ref().is_none_or(|__v| #t1)));
            tests.push(quote!(self.#eq_in.as_ref().is_none_or(|__v| #t2)));
            routes.push(route(&eq, &eq_in));
            if f.is_id {
                plans.push(quote! {
                    if let #opt::Some(__v) = &self.#eq { __plan.offer_ids([__v]); }
                    if let #opt::Some(__vs) = &self.#eq_in { __plan.offer_ids(__vs.iter()); }
                });
            }
            // A hash or an ordered index answers an equality the same way: the key's set.
            if matches!(f.index, Some(IndexKind::Hash | IndexKind::Ordered)) {
                let key = index_key(f, quote!(__v));
                exact.push(quote! {
                    if let #opt::Some(__v) = &self.#eq {
                        return #opt::Some(__ix.#field.get(&#key).map_or(0, |__s| __s.len()));
                    }
                });
                plans.push(quote! {
                    if let #opt::Some(__v) = &self.#eq {
                        __plan.offer_set(__ix.#field.get(&#key));
                    }
                    if let #opt::Some(__vs) = &self.#eq_in {
                        __plan.offer_union(__vs.iter().map(|__v| __ix.#field.get(&#key)));
                    }
                });
            }
        }
        if f.filters.contains {
            let d = doc("contains this text, ignoring case".into());
            let ident = &contains;
            decls.push(quote_spanned!(sp=> #[doc = #d] pub #ident: #opt<::std::string::String>,));
            let t = value_test(quote!(#p::contains_ignore_case(__x, __v)));
            tests.push(quote!(self.#ident.as_ref().is_none_or(|__v| #t)));
        }
        if f.filters.range {
            let d = doc("lies within these bounds".into());
            let ident = &range;
            decls.push(quote_spanned!(sp=> #[doc = #d] pub #ident: #opt<#p::RangeClause<#vty>>,));
            let t = value_test(quote!(#p::in_range(__v, __x)));
            tests.push(quote!(self.#ident.as_ref().is_none_or(|__v| #t)));
            if f.index == Some(IndexKind::Ordered) {
                let bounds = if f.is_option() {
                    quote!((__v.0.clone().map(#opt::Some), __v.1.clone().map(#opt::Some)))
                } else {
                    quote!((__v.0.as_ref(), __v.1.as_ref()))
                };
                plans.push(quote! {
                    if let #opt::Some(__v) = &self.#ident {
                        __plan.offer_keys(__ix.#field.range(#bounds));
                    }
                });
            }
        }
        if f.filters.has {
            let (elem, _) = f.elem().expect("validated: has is on collections");
            let s = f.singular.unraw().to_string();
            let (d1, d2, d3) = (
                doc(format!("holds this {s}")),
                doc(format!("holds at least one of these {s} values")),
                doc(format!("holds every one of these {s} values")),
            );
            decls.push(quote_spanned!(sp=>
                #[doc = #d1] pub #has: #opt<#elem>,
                #[doc = #d2] pub #any: #opt<#vec<#elem>>,
                #[doc = #d3] pub #all: #opt<#vec<#elem>>,
            ));
            let holds = quote!(__r.#field.iter().any(|__e| __e == __v));
            tests.push(quote!(self.#has.as_ref().is_none_or(|__v| #holds)));
            tests.push(quote!(self.#any.as_ref().is_none_or(|__vs| __vs.iter().any(|__v| #holds))));
            tests.push(quote!(self.#all.as_ref().is_none_or(|__vs| __vs.iter().all(|__v| #holds))));
            let hash = quote!(#p::route_hash(__v));
            routes.push(route(&has, &any));
            routes.push(quote! {
                if let #opt::Some(__v) = self.#all.as_ref().and_then(|__vs| __vs.first()) {
                    return #opt::Some(#p::Route { field: #num, hashes: ::std::vec![#hash] });
                }
            });
            if f.index == Some(IndexKind::Inverted) {
                exact.push(quote! {
                    if let #opt::Some(__v) = &self.#has {
                        return #opt::Some(__ix.#field.get(__v).map_or(0, |__s| __s.len()));
                    }
                });
                plans.push(quote! {
                    if let #opt::Some(__v) = &self.#has {
                        __plan.offer_set(__ix.#field.get(__v));
                    }
                    if let #opt::Some(__vs) = &self.#any {
                        __plan.offer_union(__vs.iter().map(|__v| __ix.#field.get(__v)));
                    }
                    if let #opt::Some(__vs) = &self.#all {
                        for __v in __vs {
                            __plan.offer_set(__ix.#field.get(__v));
                        }
                    }
                });
            }
        }
        if f.filters.some {
            let d = doc("is set (`true`) or not (`false`)".into());
            let ident = &some;
            decls.push(quote_spanned!(sp=> #[doc = #d] pub #ident: #opt<bool>,));
            tests.push(quote!(self.#ident.is_none_or(|__v| __r.#field.is_some() == __v)));
        }
    }
    let indexes = if m.has_indexes() {
        m.name("Indexes").into_token_stream()
    } else {
        quote!(())
    };
    let plan = (!plans.is_empty()).then(|| {
        let ix_pat = if m.has_indexes() { quote!(__ix) } else { quote!(_) };
        quote! {
            fn plan<'__i>(&'__i self, #ix_pat: &'__i #indexes, __plan: &mut #p::Plan<'__i, <#model as #p::CortexModel>::Id>) {
                #(#plans)*
            }
        }
    });
    let exact_count = (!exact.is_empty()).then(|| {
        quote! {
            fn exact_count(&self, __ix: &#indexes) -> #opt<usize> {
                let __clauses = 0 #(+ usize::from(self.#clause_fields.is_some()))*;
                if __clauses != 1 {
                    return #opt::None;
                }
                #(#exact)*
                #opt::None
            }
        }
    });
    let route = (!routes.is_empty()).then(|| {
        quote! {
            fn route(&self) -> #opt<#p::Route> {
                #(#routes)*
                #opt::None
            }
        }
    });
    let doc = format!(
        "A filter over [`{model}`] rows: one optional clause per generated `where_*` builder; \
         a row matches when it passes every clause set. Plain data: build it with the \
         builders or by hand (`{name} {{ .., ..Default::default() }}`)."
    );
    quote! {
        #[doc = #doc]
        #[derive(::core::fmt::Debug, ::core::clone::Clone, ::core::default::Default, ::core::cmp::PartialEq, #p::serde::Serialize, #p::serde::Deserialize)]
        #[serde(crate = #serde_crate)]
        #vis struct #name {
            #(#decls)*
        }

        #[automatically_derived]
        impl #p::ModelFilter<#model> for #name {
            fn matches(&self, __r: &#model) -> bool {
                true #(&& #tests)*
            }
            #plan
            #route
            #exact_count
        }
    }
}

use quote::ToTokens;

/// The key an index on `f` holds for clause value `v` (`&T`): `Some(v)` for options.
fn index_key(f: &Field, v: TokenStream) -> TokenStream {
    if f.is_option() {
        quote!(::core::option::Option::Some(::core::clone::Clone::clone(#v)))
    } else {
        quote!(*#v)
    }
}

pub(crate) fn order_by(m: &Model) -> TokenStream {
    let p = m.private();
    let model = &m.ident;
    let vis = &m.vis;
    let name = m.name("OrderBy");
    let id = &m.id_field().ident;
    let mut variants = Vec::new();
    let mut compares = Vec::new();
    let mut walks = Vec::new();
    for f in &m.fields {
        let Some(base) = &f.order_by else { continue };
        let field = &f.ident;
        let fname = f.name();
        for (suffix, dir, word) in [
            ("Asc", quote!(Asc), "ascending"),
            ("Desc", quote!(Desc), "descending"),
        ] {
            let v = format_ident!("{}{}", base, suffix, span = base.span());
            let doc = format!("By `{fname}`, {word} (ties by id, {word}).");
            variants.push(quote!(#[doc = #doc] #v,));
            compares.push(quote_spanned! {f.ty.span()=>
                #name::#v => #p::order_by_key(#p::Direction::#dir, (&__a.#field, &__a.#id), (&__b.#field, &__b.#id)),
            });
            if f.index == Some(IndexKind::Ordered) {
                walks.push(quote!(#name::#v => ::core::option::Option::Some(__ix.#field.walk(#p::Direction::#dir)),));
            }
        }
    }
    let walk = (!walks.is_empty()).then(|| {
        let indexes = m.name("Indexes");
        quote! {
            fn walk<'__i>(&self, __ix: &'__i #indexes) -> ::core::option::Option<#p::IdWalk<'__i, <#model as #p::CortexModel>::Id>> {
                match self {
                    #(#walks)*
                    _ => ::core::option::Option::None,
                }
            }
        }
    });
    let doc = format!(
        "The orderings of [`{model}`] rows, for `order_by`. Every ordering breaks ties by id, so results never depend on how a query was planned."
    );
    quote! {
        #[doc = #doc]
        #[derive(::core::fmt::Debug, ::core::clone::Clone, ::core::marker::Copy, ::core::cmp::PartialEq, ::core::cmp::Eq, ::core::hash::Hash, ::core::default::Default)]
        #vis enum #name {
            /// By id, ascending: the default.
            #[default]
            IdAsc,
            /// By id, descending.
            IdDesc,
            #(#variants)*
        }

        #[automatically_derived]
        impl #p::ModelOrder<#model> for #name {
            fn id_asc() -> Self {
                #name::IdAsc
            }
            fn id_direction(&self) -> ::core::option::Option<#p::Direction> {
                match self {
                    #name::IdAsc => ::core::option::Option::Some(#p::Direction::Asc),
                    #name::IdDesc => ::core::option::Option::Some(#p::Direction::Desc),
                    #[allow(unreachable_patterns)]
                    _ => ::core::option::Option::None,
                }
            }
            fn compare(&self, __a: &#model, __b: &#model) -> ::core::cmp::Ordering {
                match self {
                    #name::IdAsc => ::core::cmp::Ord::cmp(&__a.#id, &__b.#id),
                    #name::IdDesc => ::core::cmp::Ord::cmp(&__b.#id, &__a.#id),
                    #(#compares)*
                }
            }
            #walk
        }
    }
}

pub(crate) fn indexes(m: &Model) -> TokenStream {
    if !m.has_indexes() {
        return TokenStream::new();
    }
    let p = m.private();
    let model = &m.ident;
    let vis = &m.vis;
    let name = m.name("Indexes");
    let idty = &m.id_field().ty;
    let mut decls = Vec::new();
    let mut inserts = Vec::new();
    let mut removes = Vec::new();
    let mut updates = Vec::new();
    for f in &m.fields {
        let Some(kind) = f.index else { continue };
        let field = &f.ident;
        let ty = &f.ty;
        let sp = ty.span();
        let doc = format!("`{}`'s index.", f.name());
        match kind {
            IndexKind::Hash | IndexKind::Ordered => {
                let ix = if kind == IndexKind::Hash {
                    quote!(HashIndex)
                } else {
                    quote!(OrderedIndex)
                };
                decls.push(quote_spanned!(sp=> #[doc = #doc] pub #field: #p::#ix<#ty, #idty>,));
                inserts.push(quote_spanned!(sp=> self.#field.insert_ref(&__r.#field, __id);));
                removes.push(quote_spanned!(sp=> self.#field.remove(&__r.#field, __id);));
                updates.push(
                    quote_spanned!(sp=> self.#field.update(&__old.#field, &__new.#field, __id);),
                );
            }
            IndexKind::Inverted => {
                let (elem, is_vec) = f.elem().expect("validated: inverted is on collections");
                decls.push(
                    quote_spanned!(sp=> #[doc = #doc] pub #field: #p::InvertedIndex<#elem, #idty>,),
                );
                inserts.push(quote_spanned!(sp=> self.#field.insert(&__r.#field, __id);));
                removes.push(quote_spanned!(sp=> self.#field.remove(&__r.#field, __id);));
                updates.push(if is_vec {
                    quote_spanned!(sp=> self.#field.update(&__old.#field, &__new.#field, __id);)
                } else {
                    quote_spanned! {sp=>
                        if __old.#field != __new.#field {
                            self.#field.remove(&__old.#field, __id);
                            self.#field.insert(&__new.#field, __id);
                        }
                    }
                });
            }
        }
    }
    let doc =
        format!("The secondary indexes of [`{model}`], kept by the table on every row change.");
    quote! {
        #[doc = #doc]
        #[derive(::core::fmt::Debug, ::core::default::Default)]
        #vis struct #name {
            #(#decls)*
        }

        #[automatically_derived]
        impl #p::IndexSet<#model> for #name {
            fn insert(&mut self, __id: &#p::RowKey<#idty>, __r: &#model) {
                #(#inserts)*
            }
            fn remove(&mut self, __id: &#p::RowKey<#idty>, __r: &#model) {
                #(#removes)*
            }
            fn update(&mut self, __id: &#p::RowKey<#idty>, __old: &#model, __new: &#model) {
                #(#updates)*
            }
        }
    }
}
