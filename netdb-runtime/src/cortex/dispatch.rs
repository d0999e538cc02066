//! Dispatch codes: which kind of event a payload is.
//!
//! Every CortEX event starts with an [`EventMeta`](super::EventMeta) whose `dispatch` field
//! names its kind. The 16-bit space is split:
//!
//! | Range | Owner | Use |
//! |---|---|---|
//! | `0x0000` | nobody | invalid: never written, refused when read |
//! | `0x0001 ..= 0xEFFF` | the model | the model's own event kinds (`#[cortex(dispatch = N)]` on a `CortexEvents` variant) |
//! | `0xF000 ..= 0xFFFF` | netdb | events netdb generates itself (the built-in insert / update / delete of a model without an events enum) and future system events |
//!
//! A code is part of the stored format: once events with it are in a log, it must keep
//! its meaning. That is why codes are explicit numbers, not positions in an enum.

/// The invalid code.
pub const INVALID: u16 = 0x0000;
/// The first code of the range model events may use.
pub const USER_FIRST: u16 = 0x0001;
/// The last code of the range model events may use.
pub const USER_LAST: u16 = 0xEFFF;
/// The first code reserved for netdb.
pub const RESERVED_FIRST: u16 = 0xF000;

/// Built-in event: a whole row inserted (or replaced).
pub const INSERT: u16 = 0xF001;
/// Built-in event: some fields of a row changed.
pub const UPDATE: u16 = 0xF002;
/// Built-in event: a row deleted.
pub const DELETE: u16 = 0xF003;

/// Whether a model may use `code` for one of its own events.
pub const fn is_user(code: u16) -> bool {
    code >= USER_FIRST && code <= USER_LAST
}

/// Whether `code` is in the range reserved for netdb.
pub const fn is_reserved(code: u16) -> bool {
    code >= RESERVED_FIRST
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_partition_the_code_space() {
        for code in 0..=u16::MAX {
            let owners = [code == INVALID, is_user(code), is_reserved(code)];
            assert_eq!(owners.iter().filter(|&&o| o).count(), 1, "{code:#06x}");
        }
        assert!([INSERT, UPDATE, DELETE].iter().all(|&c| is_reserved(c)));
    }
}
