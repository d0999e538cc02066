//! Schema lock files: a committed record of each model's schema, so a struct that changes
//! without a version bump fails a test instead of writing snapshots no one can read.
//!
//! A model's lock file is `<dir>/<channel>.lock` (for `cortex/tasks`: `cortex/tasks.lock`),
//! plain text meant to be committed and reviewed:
//!
//! ```text
//! # netdb schema lock for cortex/tasks: commit this file.
//! version 1 0x2f0c6a4fbd16ea1b
//! version 2 0x7d1e9c0a33b5e842
//! field id: u64
//! field title: String
//! ```
//!
//! One `version` line per schema version seen, oldest first, with its fingerprint; the
//! `field` lines describe the newest. [`check_schema_lock`] compares the model with it:
//!
//! * same version, same fingerprint: nothing to do;
//! * same version, different fingerprint: an error that lists the changed fields and says to
//!   bump the version (and add a migration);
//! * a newer version: the lock gains a `version` line (a test run updates it; commit it);
//! * an older version than the lock's newest: an error (the code went back in time);
//! * no lock file: it is written.
//!
//! When the environment variable `CI` is set, the last two cases are errors instead: a lock
//! file that must change but was not committed fails the build.

use std::fmt;
use std::path::{Path, PathBuf};

use super::model::{CortexModel, Schema};

/// What [`check_schema_lock`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaLockStatus {
    /// The lock matches the model.
    Unchanged,
    /// There was no lock file; it was written.
    Created,
    /// The model has a newer version; the lock gained it.
    Updated,
}

/// Why a model does not match its lock file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaLockError {
    /// The fields changed but the version did not.
    #[error(
        "the fields of {channel} changed but its schema version is still {version}:\n{diff}\
         bump it (`schema = {next}`), add a migration from version {version} if snapshots \
         or insert events of it exist (`migrate(from = {version}, with = ...)`), and run the tests again to update {}",
        path.display(),
        next = version + 1
    )]
    Unbumped {
        /// The model's channel.
        channel: String,
        /// The version both have.
        version: u16,
        /// The lock file.
        path: PathBuf,
        /// The field changes, one per line.
        diff: String,
    },
    /// The model's version is older than the lock's newest.
    #[error(
        "{channel} has schema version {current}, but {} records version {locked}: \
         versions only go up",
        path.display()
    )]
    Downgraded {
        /// The model's channel.
        channel: String,
        /// The model's version.
        current: u16,
        /// The lock's newest version.
        locked: u16,
        /// The lock file.
        path: PathBuf,
    },
    /// Under CI, the lock file would have to be written or changed.
    #[error(
        "{} is missing or out of date for {channel} (schema version {version}); run the \
         tests locally and commit the file",
        path.display()
    )]
    NotCommitted {
        /// The model's channel.
        channel: String,
        /// The model's version.
        version: u16,
        /// The lock file.
        path: PathBuf,
    },
    /// The lock file is not in the format above.
    #[error("{} line {line}: {problem}", path.display())]
    Malformed {
        /// The lock file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// Reading or writing the lock file failed.
    #[error("schema lock {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Checks model `M` against its lock file in `dir`: see the [module documentation](self).
/// Strict (no lock file is written) when the `CI` environment variable is set (to anything
/// but empty, `false` or `0`).
pub fn check_schema_lock<M: CortexModel>(
    dir: impl AsRef<Path>,
) -> Result<SchemaLockStatus, SchemaLockError> {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0");
    check_schema_lock_with::<M>(dir, ci)
}

/// [`check_schema_lock`] with strictness chosen by the caller instead of the environment:
/// `strict` refuses to create or update the lock file.
pub fn check_schema_lock_with<M: CortexModel>(
    dir: impl AsRef<Path>,
    strict: bool,
) -> Result<SchemaLockStatus, SchemaLockError> {
    check(dir.as_ref(), M::CHANNEL, &M::SCHEMA, strict)
}

#[derive(Debug, Default, PartialEq)]
struct Lock {
    versions: Vec<(u16, u64)>,
    fields: Vec<(String, String)>,
}

impl fmt::Display for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (v, fp) in &self.versions {
            writeln!(f, "version {v} {fp:#018x}")?;
        }
        for (name, ty) in &self.fields {
            writeln!(f, "field {name}: {ty}")?;
        }
        Ok(())
    }
}

fn parse(path: &Path, text: &str) -> Result<Lock, SchemaLockError> {
    let mut lock = Lock::default();
    for (i, raw) in text.lines().enumerate() {
        let bad = |problem: &str| SchemaLockError::Malformed {
            path: path.to_owned(),
            line: i + 1,
            problem: problem.to_owned(),
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("version ") {
            let (v, fp) = rest
                .split_once(' ')
                .ok_or_else(|| bad("expected `version <n> <fingerprint>`"))?;
            let v: u16 = v.parse().map_err(|_| bad("the version is not a number"))?;
            let fp = fp
                .strip_prefix("0x")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad("the fingerprint is not a 0x-prefixed hex number"))?;
            if lock.versions.last().is_some_and(|(last, _)| *last >= v) {
                return Err(bad("versions must be listed in increasing order"));
            }
            lock.versions.push((v, fp));
        } else if let Some(rest) = line.strip_prefix("field ") {
            let (name, ty) = rest
                .split_once(": ")
                .ok_or_else(|| bad("expected `field <name>: <type>`"))?;
            lock.fields.push((name.to_owned(), ty.to_owned()));
        } else {
            return Err(bad("expected a `version` or `field` line"));
        }
    }
    if lock.versions.is_empty() {
        return Err(SchemaLockError::Malformed {
            path: path.to_owned(),
            line: text.lines().count().max(1),
            problem: "no `version` line".into(),
        });
    }
    Ok(lock)
}

/// The field changes from `old` to `new`, one line each.
fn diff(old: &[(String, String)], new: &[(String, String)]) -> String {
    let mut out = String::new();
    for (name, ty) in old {
        match new.iter().find(|(n, _)| n == name) {
            None => out.push_str(&format!("  removed  {name}: {ty}\n")),
            Some((_, t)) if t != ty => out.push_str(&format!("  changed  {name}: {ty} -> {t}\n")),
            Some(_) => {}
        }
    }
    for (name, ty) in new {
        if !old.iter().any(|(n, _)| n == name) {
            out.push_str(&format!("  added    {name}: {ty}\n"));
        }
    }
    let old_order: Vec<_> = old.iter().map(|(n, _)| n).collect();
    let new_order: Vec<_> = new.iter().map(|(n, _)| n).collect();
    if out.is_empty() && old_order != new_order {
        out.push_str("  reordered fields (postcard encodes them in declaration order)\n");
    }
    out
}

fn check(
    dir: &Path,
    channel: &str,
    schema: &Schema,
    ci: bool,
) -> Result<SchemaLockStatus, SchemaLockError> {
    let mut path = dir.to_owned();
    path.extend(channel.split('/'));
    path.set_extension("lock");
    let io = |source| SchemaLockError::Io {
        path: path.clone(),
        source,
    };
    let fields: Vec<(String, String)> = schema
        .fields
        .iter()
        .map(|f| (f.name.to_owned(), f.ty.to_owned()))
        .collect();
    let current = (schema.version, schema.fingerprint);
    let write = |lock: &Lock| -> Result<(), SchemaLockError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let text = format!("# netdb schema lock for {channel}: commit this file.\n{lock}");
        // Written beside, then renamed over: a test checking the same lock at the same time
        // reads the old file or the new one, never half of one.
        let unique = path.with_extension(format!(
            "lock.{}.{:?}.tmp",
            std::process::id(),
            std::thread::current().id()
        ));
        let written = std::fs::write(&unique, text).and_then(|()| std::fs::rename(&unique, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&unique); // leave no stray temp file behind
        }
        written.map_err(io)
    };
    let not_committed = || SchemaLockError::NotCommitted {
        channel: channel.to_owned(),
        version: schema.version,
        path: path.clone(),
    };

    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if ci {
                return Err(not_committed());
            }
            write(&Lock {
                versions: vec![current],
                fields,
            })?;
            return Ok(SchemaLockStatus::Created);
        }
        Err(e) => return Err(io(e)),
    };
    let mut lock = parse(&path, &text)?;
    let &(newest, newest_fp) = lock.versions.last().expect("parse requires a version");
    if schema.version == newest {
        if schema.fingerprint == newest_fp {
            return Ok(SchemaLockStatus::Unchanged);
        }
        return Err(SchemaLockError::Unbumped {
            channel: channel.to_owned(),
            version: schema.version,
            path: path.clone(),
            diff: diff(&lock.fields, &fields),
        });
    }
    if schema.version < newest {
        return Err(SchemaLockError::Downgraded {
            channel: channel.to_owned(),
            current: schema.version,
            locked: newest,
            path: path.clone(),
        });
    }
    if ci {
        return Err(not_committed());
    }
    lock.versions.push(current);
    lock.fields = fields;
    write(&lock)?;
    Ok(SchemaLockStatus::Updated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cortex::model::Field;

    const V1: &[Field] = &[
        Field {
            name: "id",
            ty: "u64",
        },
        Field {
            name: "title",
            ty: "String",
        },
    ];
    const V1_CHANGED: &[Field] = &[
        Field {
            name: "id",
            ty: "u64",
        },
        Field {
            name: "title",
            ty: "Option<String>",
        },
        Field {
            name: "done",
            ty: "bool",
        },
    ];

    #[test]
    fn created_unchanged_unbumped_updated_downgraded() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let v1 = Schema::new(1, V1);
        assert_eq!(
            check(d, "cortex/tasks", &v1, false).unwrap(),
            SchemaLockStatus::Created
        );
        assert!(d.join("cortex/tasks.lock").exists());
        assert_eq!(
            check(d, "cortex/tasks", &v1, false).unwrap(),
            SchemaLockStatus::Unchanged
        );

        let unbumped = Schema::new(1, V1_CHANGED);
        let e = check(d, "cortex/tasks", &unbumped, false).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, SchemaLockError::Unbumped { version: 1, .. }),
            "{e:?}"
        );
        assert!(
            msg.contains("changed  title: String -> Option<String>"),
            "{msg}"
        );
        assert!(msg.contains("added    done: bool"), "{msg}");
        assert!(msg.contains("schema = 2"), "{msg}");

        let v2 = Schema::new(2, V1_CHANGED);
        assert!(matches!(
            check(d, "cortex/tasks", &v2, true),
            Err(SchemaLockError::NotCommitted { .. })
        ));
        assert_eq!(
            check(d, "cortex/tasks", &v2, false).unwrap(),
            SchemaLockStatus::Updated
        );
        let text = std::fs::read_to_string(d.join("cortex/tasks.lock")).unwrap();
        assert!(
            text.contains(&format!("version 1 {:#018x}", v1.fingerprint)),
            "{text}"
        );
        assert!(
            text.contains(&format!("version 2 {:#018x}", v2.fingerprint)),
            "{text}"
        );
        assert_eq!(
            check(d, "cortex/tasks", &v2, true).unwrap(),
            SchemaLockStatus::Unchanged
        );

        assert!(matches!(
            check(d, "cortex/tasks", &v1, false),
            Err(SchemaLockError::Downgraded {
                current: 1,
                locked: 2,
                ..
            })
        ));
    }

    #[test]
    fn a_missing_lock_under_ci_and_malformed_locks_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = Schema::new(1, V1);
        assert!(matches!(
            check(dir.path(), "m", &v1, true),
            Err(SchemaLockError::NotCommitted { .. })
        ));
        for (text, line) in [
            ("version one 0x1\n", 1),
            ("version 1 12\n", 1),
            ("# c\nversion 2 0x1\nversion 1 0x2\n", 3),
            ("field id u64\nversion 1 0x1\n", 1),
            ("hello\n", 1),
            ("field id: u64\n", 1),
        ] {
            std::fs::write(dir.path().join("m.lock"), text).unwrap();
            match check(dir.path(), "m", &v1, false) {
                Err(SchemaLockError::Malformed { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn reordered_fields_are_reported() {
        let a = vec![("a".into(), "u8".into()), ("b".into(), "u8".into())];
        let b = vec![("b".into(), "u8".into()), ("a".into(), "u8".into())];
        assert!(diff(&a, &b).contains("reordered"));
        assert!(diff(&a, &a).is_empty());
    }
}
