//! Channel names: the validated, path-safe names of RedEX files.

use std::fmt;
use std::str::FromStr;

/// The longest channel name accepted, in bytes.
pub const MAX_CHANNEL_NAME_LEN: usize = 200;
/// The longest single `/`-separated segment accepted, in bytes.
pub const MAX_CHANNEL_SEGMENT_LEN: usize = 64;

/// The name of a RedEX file, such as `orders/audit`.
///
/// A channel name is one or more segments separated by `/`. Each segment is 1 to 64
/// characters from lowercase ASCII letters, digits, `-` and `_`; the whole name is at most
/// 200 bytes. These rules make a name a safe relative path on every common file system:
/// a persistent file lives under `<base>/<channel name>/`, so names cannot escape the base
/// directory (`..`, absolute paths), hide (leading `.`), or collide on case-insensitive
/// file systems (`Orders` vs `orders`).
///
/// ```
/// use netdb_runtime::redex::ChannelName;
///
/// let name: ChannelName = "orders/audit".parse()?;
/// assert_eq!(name.as_str(), "orders/audit");
///
/// let err = "orders/../secrets".parse::<ChannelName>().unwrap_err();
/// assert!(err.to_string().contains("`..`"));
/// # Ok::<(), netdb_runtime::redex::ChannelNameError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(String);

impl ChannelName {
    /// Parses and validates a channel name; same as `name.parse()`.
    pub fn new(name: &str) -> Result<Self, ChannelNameError> {
        validate(name)?;
        Ok(ChannelName(name.to_owned()))
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `/`-separated segments of the name.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl FromStr for ChannelName {
    type Err = ChannelNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ChannelName::new(s)
    }
}

impl TryFrom<&str> for ChannelName {
    type Error = ChannelNameError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        ChannelName::new(s)
    }
}

impl TryFrom<String> for ChannelName {
    type Error = ChannelNameError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        validate(&s)?;
        Ok(ChannelName(s))
    }
}

impl AsRef<str> for ChannelName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelName({:?})", self.0)
    }
}

/// Why a string is not a valid [`ChannelName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid channel name {name:?}: {problem}; {RULES}")]
pub struct ChannelNameError {
    /// The rejected input (cut to 80 characters).
    pub name: String,
    /// What is wrong with it.
    pub problem: ChannelNameProblem,
}

const RULES: &str = "a channel name is 1 to 200 bytes of `/`-separated segments, each 1 to 64 \
                     characters from `a-z`, `0-9`, `-` and `_` (for example \"orders/audit\")";

/// The specific rule a rejected channel name broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelNameProblem {
    /// The name is the empty string.
    #[error("the name is empty")]
    Empty,
    /// The name is longer than [`MAX_CHANNEL_NAME_LEN`].
    #[error("the name is {len} bytes long, more than {MAX_CHANNEL_NAME_LEN}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The name starts with `/`.
    #[error("the name starts with `/` (absolute paths are not channel names)")]
    Absolute,
    /// Two `/` in a row, or a trailing `/`.
    #[error("segment {index} is empty (two `/` in a row or a trailing `/`)")]
    EmptySegment {
        /// Zero-based index of the empty segment.
        index: usize,
    },
    /// A `.` or `..` segment.
    #[error("segment {index} is `{segment}`; `.` and `..` are not allowed")]
    DotSegment {
        /// Zero-based index of the segment.
        index: usize,
        /// `.` or `..`.
        segment: String,
    },
    /// A segment longer than [`MAX_CHANNEL_SEGMENT_LEN`].
    #[error("segment {index} is {len} bytes long, more than {MAX_CHANNEL_SEGMENT_LEN}")]
    SegmentTooLong {
        /// Zero-based index of the segment.
        index: usize,
        /// Its length in bytes.
        len: usize,
    },
    /// A character outside `a-z`, `0-9`, `-`, `_` and the `/` separator.
    #[error("character {ch:?} at byte {at} is not allowed")]
    BadChar {
        /// The offending character.
        ch: char,
        /// Its byte offset in the name.
        at: usize,
    },
}

fn validate(name: &str) -> Result<(), ChannelNameError> {
    let fail = |problem| {
        Err(ChannelNameError {
            name: name.chars().take(80).collect(),
            problem,
        })
    };
    if name.is_empty() {
        return fail(ChannelNameProblem::Empty);
    }
    if name.len() > MAX_CHANNEL_NAME_LEN {
        return fail(ChannelNameProblem::TooLong { len: name.len() });
    }
    if name.starts_with('/') {
        return fail(ChannelNameProblem::Absolute);
    }
    let mut at = 0;
    for (index, segment) in name.split('/').enumerate() {
        if segment.is_empty() {
            return fail(ChannelNameProblem::EmptySegment { index });
        }
        if segment == "." || segment == ".." {
            return fail(ChannelNameProblem::DotSegment {
                index,
                segment: segment.to_owned(),
            });
        }
        if let Some((offset, ch)) = segment
            .char_indices()
            .find(|&(_, c)| !matches!(c, 'a'..='z' | '0'..='9' | '-' | '_'))
        {
            return fail(ChannelNameProblem::BadChar {
                ch,
                at: at + offset,
            });
        }
        if segment.len() > MAX_CHANNEL_SEGMENT_LEN {
            return fail(ChannelNameProblem::SegmentTooLong {
                index,
                len: segment.len(),
            });
        }
        at += segment.len() + 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(name: &str) -> ChannelNameProblem {
        name.parse::<ChannelName>().unwrap_err().problem
    }

    #[test]
    fn accepts_well_formed_names() {
        for ok in [
            "a",
            "orders/audit",
            "cortex/tasks",
            "a-b_c/0/z9",
            &"x".repeat(64),
        ] {
            let name: ChannelName = ok.parse().unwrap();
            assert_eq!(name.as_str(), ok);
        }
        let name: ChannelName = "a/b/c".parse().unwrap();
        assert_eq!(name.segments().collect::<Vec<_>>(), ["a", "b", "c"]);
    }

    #[test]
    fn rejects_each_rule_with_its_reason() {
        assert_eq!(problem(""), ChannelNameProblem::Empty);
        assert_eq!(problem("/etc/passwd"), ChannelNameProblem::Absolute);
        assert_eq!(
            problem("a//b"),
            ChannelNameProblem::EmptySegment { index: 1 }
        );
        assert_eq!(problem("a/"), ChannelNameProblem::EmptySegment { index: 1 });
        assert_eq!(
            problem("a/../b"),
            ChannelNameProblem::DotSegment {
                index: 1,
                segment: "..".into()
            }
        );
        assert_eq!(
            problem("./a"),
            ChannelNameProblem::DotSegment {
                index: 0,
                segment: ".".into()
            }
        );
        assert_eq!(
            problem("orders/Audit"),
            ChannelNameProblem::BadChar { ch: 'A', at: 7 }
        );
        assert_eq!(
            problem("a b"),
            ChannelNameProblem::BadChar { ch: ' ', at: 1 }
        );
        assert_eq!(
            problem("a\\b"),
            ChannelNameProblem::BadChar { ch: '\\', at: 1 }
        );
        assert_eq!(
            problem("a/.hidden"),
            ChannelNameProblem::BadChar { ch: '.', at: 2 }
        );
        assert_eq!(problem("é"), ChannelNameProblem::BadChar { ch: 'é', at: 0 });
        assert_eq!(
            problem(&"x".repeat(65)),
            ChannelNameProblem::SegmentTooLong { index: 0, len: 65 }
        );
        let long = vec!["abcdefghij"; 19].join("/");
        assert_eq!(long.len(), 208);
        assert_eq!(problem(&long), ChannelNameProblem::TooLong { len: 208 });
    }

    #[test]
    fn error_message_says_what_is_allowed() {
        let msg = "a//b".parse::<ChannelName>().unwrap_err().to_string();
        assert!(msg.contains("\"a//b\""), "{msg}");
        assert!(msg.contains("segment 1 is empty"), "{msg}");
        assert!(msg.contains("`a-z`, `0-9`, `-` and `_`"), "{msg}");
    }
}
