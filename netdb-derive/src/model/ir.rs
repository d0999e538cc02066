//! The validated model: every attribute checked against the field's type and the others,
//! with every mistake reported at once on the offending token.

use darling::util::Override;
use proc_macro2::Span;
use quote::format_ident;
use syn::ext::IdentExt;
use syn::spanned::Spanned;

use super::attrs::{FieldInput, FilterKinds, IndexKinds, MigrateInput, ModelInput};
use crate::naming;

/// What a field's type is, as far as filters care: read from the type's last path segment.
#[derive(Clone)]
pub(crate) enum Kind {
    Str,
    Int,
    Float,
    Bool,
    /// A collection of `elem`; `vec` when it is a `Vec` (whose index update diffs slices).
    Collection {
        elem: syn::Type,
        vec: bool,
    },
    /// `Option<inner>`: eq / contains / range test the value inside.
    Opt {
        inner: syn::Type,
        kind: Box<Kind>,
    },
    Other,
}

impl Kind {
    pub(crate) fn of(ty: &syn::Type) -> Kind {
        let syn::Type::Path(p) = ty else {
            return Kind::Other;
        };
        let Some(last) = p.path.segments.last() else {
            return Kind::Other;
        };
        let first_arg = || match &last.arguments {
            syn::PathArguments::AngleBracketed(a) => a.args.iter().find_map(|a| match a {
                syn::GenericArgument::Type(t) => Some(t.clone()),
                _ => None,
            }),
            _ => None,
        };
        match last.ident.to_string().as_str() {
            "String" => Kind::Str,
            "u8" | "u16" | "u32" | "u64" | "u128" | "usize" | "i8" | "i16" | "i32" | "i64"
            | "i128" | "isize" => Kind::Int,
            "f32" | "f64" => Kind::Float,
            "bool" => Kind::Bool,
            name @ ("Vec" | "VecDeque" | "HashSet" | "BTreeSet" | "IndexSet" | "SmallVec") => {
                match first_arg() {
                    Some(elem) => Kind::Collection {
                        elem,
                        vec: name == "Vec",
                    },
                    None => Kind::Other,
                }
            }
            "Option" => match first_arg() {
                Some(inner) => Kind::Opt {
                    kind: Box::new(Kind::of(&inner)),
                    inner,
                },
                None => Kind::Other,
            },
            _ => Kind::Other,
        }
    }

    /// The kind of the value filters compare: the inner kind of an option.
    fn value(&self) -> &Kind {
        match self {
            Kind::Opt { kind, .. } => kind,
            k => k,
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::Int => "an integer",
            Kind::Float => "a float",
            Kind::Bool => "a bool",
            Kind::Collection { .. } => "a collection",
            Kind::Opt { .. } => "an option",
            Kind::Other => "this type",
        }
    }
}

/// The filters one field has.
#[derive(Clone, Copy, Default)]
pub(crate) struct Filters {
    pub eq: bool,
    pub contains: bool,
    pub range: bool,
    pub has: bool,
    pub some: bool,
}

impl Filters {
    pub(crate) fn any(&self) -> bool {
        self.eq || self.contains || self.range || self.has || self.some
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum IndexKind {
    Hash,
    Ordered,
    Inverted,
}

/// A validated field.
pub(crate) struct Field {
    pub ident: syn::Ident,
    pub ty: syn::Type,
    pub kind: Kind,
    /// The field's number in route hashes: its position in the struct.
    pub number: u16,
    pub is_id: bool,
    pub filters: Filters,
    /// The ordering's base name: `Created` gives `CreatedAsc` / `CreatedDesc`.
    pub order_by: Option<syn::Ident>,
    pub index: Option<IndexKind>,
    /// The element name of a collection's membership filters.
    pub singular: syn::Ident,
    /// Older names of the field (`renamed_from`), which old update events use.
    pub renamed_from: Vec<String>,
}

impl Field {
    /// The name as written, without `r#`, for generated names built from it.
    pub(crate) fn name(&self) -> String {
        self.ident.unraw().to_string()
    }

    /// The type the eq / contains / range clauses hold.
    pub(crate) fn value_ty(&self) -> &syn::Type {
        match &self.kind {
            Kind::Opt { inner, .. } => inner,
            _ => &self.ty,
        }
    }

    pub(crate) fn is_option(&self) -> bool {
        matches!(self.kind, Kind::Opt { .. })
    }

    /// The element type of a collection field.
    pub(crate) fn elem(&self) -> Option<(&syn::Type, bool)> {
        match &self.kind {
            Kind::Collection { elem, vec } => Some((elem, *vec)),
            _ => None,
        }
    }

    /// Whether a watcher can be routed by this field (an equality or membership clause).
    pub(crate) fn routable(&self) -> bool {
        self.filters.eq || self.filters.has
    }
}

pub(crate) struct Migration {
    pub from: u16,
    pub with: syn::Path,
    pub fingerprint: Option<u64>,
}

/// The validated model.
pub(crate) struct Model {
    pub ident: syn::Ident,
    pub vis: syn::Visibility,
    pub krate: syn::Path,
    pub channel: syn::LitStr,
    pub schema: u16,
    pub events: Option<syn::Path>,
    pub migrations: Vec<Migration>,
    pub adapter: syn::Ident,
    pub fields: Vec<Field>,
    pub id: usize,
}

impl Model {
    pub(crate) fn id_field(&self) -> &Field {
        &self.fields[self.id]
    }

    /// `<Model><suffix>`: the generated items' names.
    pub(crate) fn name(&self, suffix: &str) -> syn::Ident {
        format_ident!("{}{}", self.ident, suffix)
    }

    pub(crate) fn private(&self) -> proc_macro2::TokenStream {
        let krate = &self.krate;
        quote::quote!(#krate::__private)
    }

    pub(crate) fn has_indexes(&self) -> bool {
        self.fields.iter().any(|f| f.index.is_some())
    }
}

/// A generated parameter of type `ty`, and the conversion from it: `impl Into<String>` for
/// strings (so callers pass `"text"`), the type itself otherwise.
pub(crate) fn param(ty: &syn::Type) -> (proc_macro2::TokenStream, proc_macro2::TokenStream) {
    if matches!(Kind::of(ty), Kind::Str) {
        (
            quote::quote!(impl ::core::convert::Into<::std::string::String>),
            quote::quote!(::core::convert::Into::into),
        )
    } else {
        (quote::quote!(#ty), quote::quote!(::core::convert::identity))
    }
}

/// The runtime's default path.
pub(crate) fn default_crate() -> syn::Path {
    syn::parse_quote!(::netdb_runtime)
}

fn err(span: impl Spanned, msg: impl std::fmt::Display) -> darling::Error {
    darling::Error::custom(msg).with_span(&span.span())
}

fn err_at(span: Span, msg: impl std::fmt::Display) -> darling::Error {
    darling::Error::custom(msg).with_span(&span)
}

/// Checks everything; returns the model, or every error found.
pub(crate) fn validate(input: &ModelInput) -> Result<Model, darling::Error> {
    let mut errors = darling::Error::accumulator();
    let name = &input.ident;

    if !input.generics.params.is_empty() {
        errors.push(err(
            &input.generics.params,
            "a CortexModel cannot be generic: its rows are stored and decoded by a fixed schema; \
             declare a concrete struct (one per instantiation you need)",
        ));
    }
    let fields_in: &[FieldInput] = match &input.data {
        darling::ast::Data::Struct(f) if f.style == darling::ast::Style::Struct => &f.fields,
        darling::ast::Data::Struct(_) => {
            errors.push(err(
                name,
                "#[derive(CortexModel)] needs named fields, one of them the id: \
                 `struct Task { id: u64, title: String }`",
            ));
            &[]
        }
        darling::ast::Data::Enum(_) => {
            errors.push(err(
                name,
                "#[derive(CortexModel)] goes on the struct of a row, not on an enum; for the \
                 model's events, derive `CortexEvents` on the enum and name it with \
                 `#[cortex(events = ...)]` on the model",
            ));
            &[]
        }
    };

    let channel = match &input.channel {
        Some(c) if c.value().is_empty() => {
            errors.push(err(
                c,
                "the channel name is empty; name one, e.g. \"cortex/tasks\"",
            ));
            c.clone()
        }
        Some(c) => {
            if let Some(problem) = channel_problem(&c.value()) {
                errors.push(err(
                    c,
                    format!(
                        "`{}` is not a channel name: {problem}. A channel name is `/`-separated \
                         segments of 1 to 64 characters from `a-z`, `0-9`, `-` and `_`, at most \
                         200 bytes, e.g. \"cortex/tasks\"",
                        c.value()
                    ),
                ));
            }
            c.clone()
        }
        None => {
            let example = format!(
                "cortex/{}",
                naming::snake(&naming::plural(&name.to_string()))
            );
            if !fields_in.is_empty() {
                errors.push(err(
                    name,
                    format!(
                        "a model needs the log channel its events live on: add \
                         `#[cortex(channel = \"{example}\")]` (it is stored: keep it when the \
                         struct is renamed)"
                    ),
                ));
            }
            syn::LitStr::new(&example, name.span())
        }
    };

    let schema = match &input.schema {
        None => 1,
        Some(lit) => match crate::naming::int::<u16>(lit).ok_or(()) {
            Ok(0) => {
                errors.push(err(lit, "schema versions start at 1; use `schema = 1`"));
                1
            }
            Ok(v) => v,
            Err(_) => {
                errors.push(err(
                    lit,
                    "the schema version must be a plain number in 1..=65535 (no type suffix)",
                ));
                1
            }
        },
    };

    let mut migrations: Vec<Migration> = Vec::new();
    for m in &input.migrate {
        let MigrateInput {
            from,
            with,
            fingerprint,
        } = &**m;
        const FORM: &str = "write a migration as `migrate(from = 1, with = TaskV1)`: the older \
                            schema version, and the struct as it was then (with \
                            `impl From<TaskV1> for Task`)";
        let (Some(from), Some(with)) = (from, with) else {
            errors.push(err_at(
                m.span(),
                format!("`migrate` needs `from` and `with`: {FORM}"),
            ));
            continue;
        };
        let Ok(v) = crate::naming::int::<u16>(from).ok_or(()) else {
            errors.push(err(
                from,
                "`from` must be a plain schema version number in 1..=65535 (no type suffix)",
            ));
            continue;
        };
        if v == 0 {
            errors.push(err(
                from,
                "schema versions start at 1; there is no version 0 to migrate from",
            ));
        } else if v >= schema {
            errors.push(err(
                from,
                format!(
                    "a migration reads an older version, but {v} is not older than this model's \
                     version {schema}: bump `schema` above {v}, or remove this migration"
                ),
            ));
        } else if let Some(first) = migrations.iter().find(|x| x.from == v) {
            let first = quote::ToTokens::to_token_stream(&first.with)
                .to_string()
                .replace(' ', "");
            errors.push(err(
                from,
                format!(
                    "there is already a migration from version {v} (`with = {first}`); each \
                     older version has one migration: remove this one, or fix its `from`"
                ),
            ));
        }
        let fingerprint = match fingerprint {
            None => None,
            Some(lit) => match lit {
                syn::Lit::Int(int) if crate::naming::int::<u64>(int).is_some() => {
                    crate::naming::int(int)
                }
                _ => {
                    errors.push(err(lit, "a fingerprint is a plain u64 literal, as the schema lock file lists it (e.g. 0x1f2e3d4c5b6a7988; no type suffix)"));
                    None
                }
            },
        };
        migrations.push(Migration {
            from: v,
            with: with.clone(),
            fingerprint,
        });
    }

    // The id: the field marked `id`, else a field named `id`. Decided first, so the field
    // checks know it.
    let explicit = fields_in.iter().any(|f| f.id.is_present());
    let is_id = |f: &FieldInput| {
        f.id.is_present() || (!explicit && f.ident.as_ref().is_some_and(|i| i.unraw() == "id"))
    };
    let mut fields: Vec<Field> = Vec::new();
    let mut id: Option<usize> = None;
    for (number, f) in fields_in.iter().enumerate() {
        let Some(ident) = f.ident.clone() else {
            continue;
        };
        let field = validate_field(f, ident, number, is_id(f), &mut errors);
        if field.is_id {
            if let Some(prev) = id {
                errors.push(err_at(
                    f.id.span(),
                    format!(
                        "a model has one id field, and `{}` is already it; remove this `id`",
                        fields[prev].name()
                    ),
                ));
            } else {
                id = Some(fields.len());
            }
        }
        fields.push(field);
    }
    if id.is_none() && !fields_in.is_empty() {
        errors.push(err(
            name,
            "a model needs an id: mark the field that identifies a row with `#[cortex(id)]` \
             (or name it `id`)",
        ));
    }
    check_generated_names(&fields, &mut errors);
    if input.events.is_none()
        && let Some(f) = fields.iter().find(|f| !f.is_id && f.name() == "new")
    {
        errors.push(err(
            &f.ident,
            format!(
                "a field named `new` would clash with `{name}Patch::new` (the patch has a setter \
                 named after each field); rename the field, or declare an events enum \
                 (`#[cortex(events = ...)]`)"
            ),
        ));
    }

    let adapter = input.adapter.clone().unwrap_or_else(|| {
        format_ident!(
            "{}Adapter",
            naming::plural(&name.to_string()),
            span = name.span()
        )
    });
    errors.finish()?;
    Ok(Model {
        ident: name.clone(),
        vis: input.vis.clone(),
        krate: input.krate.clone().unwrap_or_else(default_crate),
        channel,
        schema,
        events: input.events.clone(),
        migrations,
        adapter,
        fields,
        id: id.unwrap_or(0),
    })
}

/// What is wrong with a channel name, by the rules of the runtime's `ChannelName` (checked
/// here too, so a bad name fails the build, on the literal, rather than the first `open`).
fn channel_problem(name: &str) -> Option<String> {
    if name.len() > 200 {
        return Some(format!("it is {} bytes long", name.len()));
    }
    for (index, segment) in name.split('/').enumerate() {
        if segment.is_empty() {
            return Some(format!("segment {index} is empty"));
        }
        if let Some(ch) = segment
            .chars()
            .find(|&c| !matches!(c, 'a'..='z' | '0'..='9' | '-' | '_'))
        {
            return Some(format!("segment {index} holds {ch:?}"));
        }
        if segment.len() > 64 {
            return Some(format!("segment {index} is {} bytes long", segment.len()));
        }
    }
    None
}

fn validate_field(
    f: &FieldInput,
    ident: syn::Ident,
    number: usize,
    is_id: bool,
    errors: &mut darling::error::Accumulator,
) -> Field {
    let kind = Kind::of(&f.ty);
    let shown = ident.unraw().to_string();

    let mut filters = Filters::default();
    if let Some(filter) = &f.filter {
        let span = filter.span();
        match &**filter {
            Override::Inherit => filters = default_filters(&kind),
            Override::Explicit(k) => {
                // An empty list has no tokens to point at: point at the field.
                let span = if k.is_empty() { ident.span() } else { span };
                filters = explicit_filters(k, &kind, &shown, &f.ty, span, errors);
            }
        }
    }
    if is_id {
        filters.eq = true;
    }

    let order_by = f.order_by.as_ref().and_then(|o| {
        if is_id {
            errors.push(err_at(
                o.span(),
                "the id orderings `IdAsc` and `IdDesc` are always generated; remove `order_by`",
            ));
            return None;
        }
        let base = match &**o {
            Override::Inherit => naming::camel(&shown),
            Override::Explicit(lit) => {
                let v = lit.value();
                if syn::parse_str::<syn::Ident>(&v).is_err() || v.contains("r#") {
                    errors.push(err(lit, format!(
                        "`{v}` is not a name for an ordering: use a CamelCase word, e.g. `order_by = \"Created\"` gives `CreatedAsc` and `CreatedDesc`"
                    )));
                    return None;
                }
                v
            }
        };
        match kind.value() {
            Kind::Float => {
                errors.push(err_at(o.span(), format!(
                    "`{shown}` is a float, which has no total order (NaN); `order_by` needs one: \
                     store an integer (e.g. cents, or nanoseconds) or a wrapper type with `Ord`"
                )));
                None
            }
            Kind::Collection { .. } => {
                errors.push(err_at(o.span(), format!(
                    "`{shown}` is a collection, which has no natural order to sort rows by; \
                     order by a scalar field"
                )));
                None
            }
            _ => Some(format_ident!("{}", base, span = o.span())),
        }
    });

    let index = f.index.as_ref().and_then(|ix| {
        let span = match &**ix {
            Override::Explicit(k) if k.is_empty() => ident.span(),
            _ => ix.span(),
        };
        if is_id {
            errors.push(err_at(
                span,
                "the id needs no index: rows are kept by id, and `find_unique` and `where_id` \
                 use that; remove `index`",
            ));
            return None;
        }
        if !filters.any() {
            errors.push(err_at(span, format!(
                "`index` needs a filter on `{shown}` to serve; add `filter` (or remove `index`)"
            )));
            return None;
        }
        let chosen = match &**ix {
            Override::Inherit => {
                if filters.has {
                    IndexKind::Inverted
                } else if filters.range {
                    IndexKind::Ordered
                } else if filters.eq {
                    IndexKind::Hash
                } else {
                    errors.push(err_at(span, format!(
                        "the filters on `{shown}` (contains / some) cannot use an index; remove `index`"
                    )));
                    return None;
                }
            }
            Override::Explicit(IndexKinds { hash, ordered, inverted }) => {
                let picked: Vec<_> = [(hash, IndexKind::Hash), (ordered, IndexKind::Ordered), (inverted, IndexKind::Inverted)]
                    .into_iter()
                    .filter(|(flag, _)| flag.is_present())
                    .collect();
                match picked.as_slice() {
                    [(_, k)] => *k,
                    [] => {
                        errors.push(err_at(span, "name one index kind: `index(hash)`, `index(ordered)` or `index(inverted)`, or write `index` alone to pick it from the filters"));
                        return None;
                    }
                    [_, (second, _), ..] => {
                        errors.push(err_at(second.span(), "a field has one index; keep one kind"));
                        return None;
                    }
                }
            }
        };
        let problem = match chosen {
            IndexKind::Inverted if !filters.has => Some("an inverted index serves membership filters (`filter(has)`) on collections"),
            IndexKind::Hash if !filters.eq => Some("a hash index serves equality filters (`filter(eq)`)"),
            IndexKind::Ordered if !(filters.eq || filters.range) => Some("an ordered index serves `filter(range)` or `filter(eq)`"),
            IndexKind::Ordered | IndexKind::Hash if matches!(kind.value(), Kind::Float) => Some("a float has no total order or hash (NaN), so it cannot key an index; store an integer instead"),
            _ => None,
        };
        if let Some(p) = problem {
            errors.push(err_at(span, format!("{p}; `{shown}` has no such filter, so this index would never be used")));
            return None;
        }
        Some(chosen)
    });

    let singular = match &f.singular {
        Some(lit) => match syn::parse_str::<syn::Ident>(&lit.value()) {
            Ok(i) => syn::Ident::new(&i.to_string(), lit.span()),
            Err(_) => {
                errors.push(err(
                    lit,
                    "`singular` must be a snake_case word, e.g. `singular = \"tag\"`",
                ));
                ident.clone()
            }
        },
        None => naming::ident(&naming::singular(&shown), ident.span()),
    };
    if f.singular.is_some() && !filters.has {
        errors.push(err(
            f.singular.as_ref().map(Spanned::span).unwrap_or_else(Span::call_site),
            "`singular` names the element in membership filters; it needs `filter(has)` on a collection",
        ));
    }

    Field {
        ident,
        ty: f.ty.clone(),
        kind,
        number: number as u16,
        is_id,
        filters,
        order_by,
        index,
        singular,
        renamed_from: f.renamed_from.iter().map(syn::LitStr::value).collect(),
    }
}

/// The filters a bare `filter` gives each kind of type.
fn default_filters(kind: &Kind) -> Filters {
    let mut f = Filters::default();
    match kind {
        Kind::Str => {
            f.eq = true;
            f.contains = true;
        }
        Kind::Int => {
            f.eq = true;
            f.range = true;
        }
        Kind::Float => f.range = true,
        Kind::Bool | Kind::Other => f.eq = true,
        Kind::Collection { .. } => f.has = true,
        Kind::Opt { kind, .. } => {
            f = match &**kind {
                Kind::Collection { .. } | Kind::Opt { .. } => Filters::default(),
                k => default_filters(k),
            };
            f.some = true;
        }
    }
    f
}

fn explicit_filters(
    k: &FilterKinds,
    kind: &Kind,
    shown: &str,
    ty: &syn::Type,
    span: Span,
    errors: &mut darling::error::Accumulator,
) -> Filters {
    let value = kind.value();
    let ty_s = quote::ToTokens::to_token_stream(ty)
        .to_string()
        .replace(' ', "");
    let mut f = Filters::default();
    let mut refuse = |flag: &darling::util::Flag, msg: String| {
        errors.push(err_at(flag.span(), msg));
    };
    if k.eq.is_present() {
        match value {
            Kind::Float => refuse(
                &k.eq,
                format!(
                    "`{shown}` is `{ty_s}`, a float: floats have no equality or hash to filter by (NaN); use `filter(range)`"
                ),
            ),
            Kind::Collection { .. } => refuse(
                &k.eq,
                format!(
                    "`{shown}` is `{ty_s}`, a collection: use `filter(has)` for membership filters"
                ),
            ),
            _ => f.eq = true,
        }
    }
    if k.contains.is_present() {
        if matches!(value, Kind::Str) {
            f.contains = true;
        } else {
            refuse(
                &k.contains,
                format!(
                    "`filter(contains)` is a case-insensitive substring test and needs a `String` field (or `Option<String>`); `{shown}` is `{ty_s}`: use `filter(eq)`{}",
                    if matches!(value, Kind::Int | Kind::Float) {
                        " or `filter(range)`"
                    } else {
                        ""
                    }
                ),
            );
        }
    }
    if k.range.is_present() {
        match value {
            Kind::Collection { .. } => refuse(
                &k.range,
                format!(
                    "`filter(range)` needs an ordered value; `{shown}` is `{ty_s}`, a collection: use `filter(has)`"
                ),
            ),
            _ => f.range = true,
        }
    }
    if k.has.is_present() {
        if matches!(kind, Kind::Collection { .. }) {
            f.has = true;
        } else {
            refuse(
                &k.has,
                format!(
                    "`filter(has)` tests membership and needs a collection field (`Vec<T>`, `HashSet<T>`, `BTreeSet<T>`); `{shown}` is `{ty_s}`, {}: use `filter(eq)`",
                    kind.describe()
                ),
            );
        }
    }
    if k.some.is_present() {
        if matches!(kind, Kind::Opt { .. }) {
            f.some = true;
        } else {
            refuse(
                &k.some,
                format!(
                    "`filter(some)` tests whether an `Option` is set; `{shown}` is `{ty_s}`, not an `Option`"
                ),
            );
        }
    }
    if !(k.eq.is_present()
        || k.contains.is_present()
        || k.range.is_present()
        || k.has.is_present()
        || k.some.is_present())
    {
        errors.push(err_at(span, "name at least one filter kind: `filter(eq, contains, range, has, some)`, or write `filter` alone for the kinds the type supports"));
    }
    f
}

/// Two fields must not generate the same filter clause or ordering.
fn check_generated_names(fields: &[Field], errors: &mut darling::error::Accumulator) {
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut claim = |name: String, owner: &Field, span: Span| {
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
            errors.push(err_at(
                span,
                format!(
                    "`{name}` (and its `where_{name}` builder) is generated for both `{first}` \
                     and `{}`; rename a field, or give the collection another element name with \
                     `singular = \"...\"`",
                    owner.name()
                ),
            ));
        } else {
            seen.push((name, owner.name()));
        }
    };
    for f in fields {
        for clause in clause_names(f) {
            claim(clause, f, f.ident.span());
        }
    }
    let mut orders: Vec<String> = vec!["Id".into()];
    for f in fields {
        if let Some(o) = &f.order_by {
            let s = o.to_string();
            if orders.contains(&s) {
                errors.push(err(
                    o,
                    format!("an ordering named `{s}` already exists; name this one with `order_by = \"...\"`"),
                ));
            } else {
                orders.push(s);
            }
        }
    }
}

/// The filter struct's field names a field generates (one per clause).
pub(crate) fn clause_names(f: &Field) -> Vec<String> {
    let clauses = f.clauses();
    clauses
        .enabled(&f.filters)
        .into_iter()
        .map(|i| i.unraw().to_string())
        .collect()
}

/// The filter struct's field for each clause kind of a field: the one place clause names
/// are spelled.
pub(crate) struct Clauses {
    pub eq: syn::Ident,
    pub eq_in: syn::Ident,
    pub contains: syn::Ident,
    pub range: syn::Ident,
    pub has: syn::Ident,
    pub any: syn::Ident,
    pub all: syn::Ident,
    pub some: syn::Ident,
}

impl Clauses {
    /// The clause fields `filters` turns on, in declaration order.
    pub(crate) fn enabled(&self, filters: &Filters) -> Vec<&syn::Ident> {
        let mut v = Vec::new();
        if filters.eq {
            v.extend([&self.eq, &self.eq_in]);
        }
        if filters.contains {
            v.push(&self.contains);
        }
        if filters.range {
            v.push(&self.range);
        }
        if filters.has {
            v.extend([&self.has, &self.any, &self.all]);
        }
        if filters.some {
            v.push(&self.some);
        }
        v
    }
}

impl Field {
    /// This field's clause names.
    pub(crate) fn clauses(&self) -> Clauses {
        let n = self.name();
        let s = &self.singular;
        let sp = self.ident.span();
        Clauses {
            eq: self.ident.clone(),
            eq_in: format_ident!("{}_in", n, span = sp),
            contains: format_ident!("{}_contains", n, span = sp),
            range: format_ident!("{}_range", n, span = sp),
            has: self.singular.clone(),
            any: format_ident!("any_{}", s, span = sp),
            all: format_ident!("all_{}", n, span = sp),
            some: format_ident!("{}_some", n, span = sp),
        }
    }
}
