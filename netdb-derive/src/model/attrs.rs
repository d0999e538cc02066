//! The attribute language of `#[derive(CortexModel)]`, as darling reads it. Validation that
//! needs more than one attribute at a time happens in [`super::ir`].

use darling::util::{Flag, Override, SpannedValue};
use darling::{FromDeriveInput, FromField, FromMeta, ast};

/// The struct and its container attributes: `#[cortex(channel = "...", schema = N, ...)]`.
#[derive(FromDeriveInput)]
#[darling(attributes(cortex))]
pub(crate) struct ModelInput {
    pub ident: syn::Ident,
    pub vis: syn::Visibility,
    pub generics: syn::Generics,
    pub data: ast::Data<darling::util::Ignored, FieldInput>,
    /// The RedEX channel the events live on.
    pub channel: Option<syn::LitStr>,
    /// The schema version (default 1).
    pub schema: Option<syn::LitInt>,
    /// The user's events enum; without it the model gets insert / update / delete.
    pub events: Option<syn::Path>,
    /// `migrate(from = N, with = OldStruct)`, once per older version.
    #[darling(multiple)]
    pub migrate: Vec<SpannedValue<MigrateInput>>,
    /// The name of the generated adapter (default: the plural of the model + `Adapter`).
    pub adapter: Option<syn::Ident>,
    /// The runtime crate's path, for facades that re-export it.
    #[darling(rename = "crate")]
    pub krate: Option<syn::Path>,
}

/// `migrate(from = 1, with = TaskV1, fingerprint = 0x...)`.
#[derive(FromMeta)]
pub(crate) struct MigrateInput {
    pub from: Option<syn::LitInt>,
    pub with: Option<syn::Path>,
    pub fingerprint: Option<syn::Lit>,
}

/// A field and its attributes: `#[cortex(id)]`, `filter`, `order_by`, `index`, `singular`.
#[derive(FromField)]
#[darling(attributes(cortex))]
pub(crate) struct FieldInput {
    pub ident: Option<syn::Ident>,
    pub ty: syn::Type,
    pub id: Flag,
    /// `filter` (the kinds the type supports) or `filter(eq, range, ...)`.
    pub filter: Option<SpannedValue<Override<FilterKinds>>>,
    /// `order_by` (named after the field) or `order_by = "Created"`.
    pub order_by: Option<SpannedValue<Override<syn::LitStr>>>,
    /// `index` (kind chosen from the filters) or `index(hash | ordered | inverted)`.
    pub index: Option<SpannedValue<Override<IndexKinds>>>,
    /// The singular of a collection field, for its membership filters (default: the field
    /// name without its plural ending).
    pub singular: Option<syn::LitStr>,
    /// `renamed_from = "old"` (repeatable): names the field had in older versions, so their
    /// update events still set it.
    #[darling(multiple)]
    pub renamed_from: Vec<syn::LitStr>,
}

/// The filter kinds a field asks for.
#[derive(FromMeta, Default, Clone, Copy)]
pub(crate) struct FilterKinds {
    /// `where_x(v)`, `where_x_in(..)`.
    pub eq: Flag,
    /// `where_x_contains(s)`, case-insensitive, on strings.
    pub contains: Flag,
    /// `where_x_gt` / `_gte` / `_lt` / `_lte` / `_between`, on ordered types.
    pub range: Flag,
    /// `where_<singular>`, `where_any_<singular>`, `where_all_<field>`, on collections.
    pub has: Flag,
    /// `where_x_some()`, `where_x_none()`, on options.
    pub some: Flag,
}

impl FilterKinds {
    /// `filter()`: no kind named.
    pub(crate) fn is_empty(&self) -> bool {
        ![self.eq, self.contains, self.range, self.has, self.some]
            .iter()
            .any(|f| f.is_present())
    }
}

/// The index kind a field asks for.
#[derive(FromMeta, Default, Clone, Copy)]
pub(crate) struct IndexKinds {
    pub hash: Flag,
    pub ordered: Flag,
    pub inverted: Flag,
}

impl IndexKinds {
    /// `index()`: no kind named.
    pub(crate) fn is_empty(&self) -> bool {
        ![self.hash, self.ordered, self.inverted]
            .iter()
            .any(|f| f.is_present())
    }
}
