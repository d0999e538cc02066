//! Name helpers shared by the derives: case conversion and the plural an adapter is named
//! after.

/// `created_ns` → `CreatedNs`.
pub(crate) fn camel(snake: &str) -> String {
    snake
        .split('_')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

/// `SetStatus` → `set_status`.
pub(crate) fn snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(ch.to_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

/// The English plural of a type name, good enough for adapter names: `Task` → `Tasks`,
/// `Memory` → `Memories`, `Box` → `Boxes`, `Key` → `Keys`.
pub(crate) fn plural(word: &str) -> String {
    let lower = word.to_ascii_lowercase();
    let before_last = lower.chars().rev().nth(1);
    if lower.ends_with('y') && !matches!(before_last, Some('a' | 'e' | 'i' | 'o' | 'u')) {
        format!("{}ies", &word[..word.len() - 1])
    } else if ["s", "x", "z", "ch", "sh"]
        .iter()
        .any(|e| lower.ends_with(e))
    {
        format!("{word}es")
    } else {
        format!("{word}s")
    }
}

/// The singular of a collection field's name: `tags` → `tag`, `categories` → `category`,
/// `boxes` → `box`. A name without a plural ending is kept.
pub(crate) fn singular(word: &str) -> String {
    if let Some(stem) = word.strip_suffix("ies") {
        format!("{stem}y")
    } else if let Some(stem) = ["sses", "xes", "ches", "shes"]
        .iter()
        .find_map(|e| word.strip_suffix(e).map(|s| (s, e)))
        .map(|(s, e)| format!("{s}{}", &e[..e.len() - 2]))
    {
        stem
    } else if let Some(stem) = word
        .strip_suffix('s')
        .filter(|s| !s.ends_with('s') && !s.ends_with('u'))
    {
        stem.to_owned()
    } else {
        word.to_owned()
    }
}

/// An identifier for `name`, raw (`r#type`) when `name` is a keyword: generated names built
/// from a raw field name (`r#type`, `r#loops` → `loop`) must stay valid.
pub(crate) fn ident(name: &str, span: proc_macro2::Span) -> syn::Ident {
    if syn::parse_str::<syn::Ident>(name).is_ok() {
        syn::Ident::new(name, span)
    } else {
        syn::Ident::new_raw(name, span)
    }
}

/// An integer literal's value, refusing a type suffix: `0xFINGERPRINT` would otherwise read
/// as `0xF` with suffix `INGERPRINT`, and `3u8` hides a typo the same way.
pub(crate) fn int<N: std::str::FromStr>(lit: &syn::LitInt) -> Option<N>
where
    N::Err: std::fmt::Display,
{
    if lit.suffix().is_empty() {
        lit.base10_parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(camel("created_ns"), "CreatedNs");
        assert_eq!(camel("title"), "Title");
        assert_eq!(snake("SetStatus"), "set_status");
        assert_eq!(snake("Create"), "create");
        assert_eq!(plural("Task"), "Tasks");
        assert_eq!(plural("Memory"), "Memories");
        assert_eq!(plural("Key"), "Keys");
        assert_eq!(plural("Box"), "Boxes");
        assert_eq!(plural("Status"), "Statuses");
        assert_eq!(singular("tags"), "tag");
        assert_eq!(singular("categories"), "category");
        assert_eq!(singular("boxes"), "box");
        assert_eq!(singular("classes"), "class");
        assert_eq!(singular("status"), "status");
        assert_eq!(singular("labels"), "label");
        assert_eq!(singular("data"), "data");
    }
}
