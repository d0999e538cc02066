//! Changing a model's struct: schema versions, migrations and the schema lock check.
//!
//! Three builds of one model live in this program, as modules declaring the same channel:
//! `v1` (the struct as first shipped), `v2` (fields changed, `schema = 2`, with a migration
//! from version 1), and two mistakes: `v2_no_migration` (bumped, but no migration) and
//! `v2_unbumped` (fields changed, version not bumped). The program
//!
//! 1. writes with v1 (inserts and updates), takes a snapshot and closes;
//! 2. reopens with v2, replaying the v1 log, and writes a v2 update;
//! 3. reopens with v2 from the v1 snapshot, and gets the same rows;
//! 4. shows what the build without the migration reports;
//! 5. shows the schema lock check catching the struct changed without a bump.
//!
//! ```text
//! cargo run -p netdb-examples --example schema_migration            # in a temporary directory
//! cargo run -p netdb-examples --example schema_migration -- /tmp/x  # or a new directory of your choice
//! ```

use std::error::Error;
use std::path::{Path, PathBuf};

use netdb_runtime::cortex::{check_schema_lock_with, snapshot};
use netdb_runtime::prelude::*;

/// The struct as version 1 shipped it. Keep it after the change: the migration reads it.
pub mod v1 {
    use netdb_runtime::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
    #[cortex(channel = "checklist/items")] // schema = 1 is the default
    pub struct Item {
        pub id: u64,
        pub text: String,
        pub done: bool,
        pub owner: String,
    }
}

/// Version 2: `owner` is gone, `tags` and `priority` are new. The version is bumped, and
/// `migrate` says how to read what version 1 wrote: as a `v1::Item`, converted with `From`.
/// (Once the lock file of step 5 records version 1, also pin its fingerprint:
/// `migrate(from = 1, with = v1::Item, fingerprint = 0x...)`.)
pub mod v2 {
    use super::v1;
    use netdb_runtime::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
    #[cortex(channel = "checklist/items", schema = 2, migrate(from = 1, with = v1::Item))]
    pub struct Item {
        pub id: u64,
        pub text: String,
        pub done: bool,
        #[cortex(filter)]
        pub tags: Vec<String>,
        pub priority: u8,
    }

    impl From<v1::Item> for Item {
        fn from(old: v1::Item) -> Item {
            Item {
                id: old.id,
                text: old.text,
                done: old.done,
                tags: vec!["from-v1".into()],
                priority: 0,
            }
        }
    }
}

/// A mistake: the same version 2 struct, but no migration from version 1.
pub mod v2_no_migration {
    use netdb_runtime::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
    #[cortex(channel = "checklist/items", schema = 2)]
    pub struct Item {
        pub id: u64,
        pub text: String,
        pub done: bool,
        pub tags: Vec<String>,
        pub priority: u8,
    }
}

/// A mistake: the fields changed, but the version is still 1.
pub mod v2_unbumped {
    use netdb_runtime::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
    #[cortex(channel = "checklist/items")]
    pub struct Item {
        pub id: u64,
        pub text: String,
        pub done: bool,
        pub tags: Vec<String>,
        pub priority: u8,
    }
}

const ORIGIN: u64 = 1;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let (dir, temporary) = match std::env::args_os().nth(1) {
        Some(dir) => (PathBuf::from(dir), false),
        None => {
            let dir =
                std::env::temp_dir().join(format!("netdb-schema-migration-{}", std::process::id()));
            (dir, true)
        }
    };
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        return Err(format!("{} is not empty: give a new directory", dir.display()).into());
    }
    let data = dir.join("data");
    let schemas = dir.join("schemas");
    let snapshot_file = dir.join("items-v1.snapshot");
    println!("Working in {}", dir.display());

    // 1. Version 1 writes, with the built-in writes, and takes a snapshot.
    println!("\n== 1. Version 1 writes ==");
    {
        let redex = Redex::with_persistent_dir(&data)?;
        let items = v1::ItemsAdapter::open(&redex, ORIGIN)?;
        items.insert(v1::Item {
            id: 1,
            text: "Draft the release notes".into(),
            done: false,
            owner: "ann".into(),
        })?;
        items.insert(v1::Item {
            id: 2,
            text: "Tag the release".into(),
            done: false,
            owner: "bob".into(),
        })?;
        items.insert(v1::Item {
            id: 3,
            text: "Announce it".into(),
            done: false,
            owner: "cy".into(),
        })?;
        items.update(
            v1::ItemPatch::new(1)
                .text("Write the release notes")
                .done(true),
        )?;
        let seq = items.update(v1::ItemPatch::new(2).owner("ann"))?;
        items.wait_for_seq(seq).await?;
        println!("Inserted 3 items, then updated #1 (text, done) and #2 (owner):");
        for item in items.state().read().iter() {
            println!("  {item:?}");
        }

        let (bytes, last_seq) = items.snapshot()?;
        std::fs::write(&snapshot_file, &bytes)?;
        println!(
            "Saved a snapshot through seq {} to {}.",
            show_seq(last_seq),
            snapshot_file.display()
        );
        items.close()?;
    }

    // 2. Version 2 replays the log version 1 wrote.
    println!("\n== 2. Version 2 replays the version 1 log ==");
    let replayed = {
        let redex = Redex::with_persistent_dir(&data)?;
        let items = v2::ItemsAdapter::open(&redex, ORIGIN)?;
        items.catch_up().await?;
        println!(
            "The version 1 inserts were read as v1::Item and converted with From; the updates \
             applied by field name (the one that set `owner` sets nothing now):"
        );
        for item in items.state().read().iter() {
            println!("  {item:?}");
        }
        // New events are written with version 2.
        let seq = items.update(v2::ItemPatch::new(3).tags(vec!["comms".into()]).priority(2))?;
        items.wait_for_seq(seq).await?;
        println!("Wrote a version 2 update to #3 (tags, priority): seq {seq}.");
        let rows: Vec<v2::Item> = items.state().read().iter().cloned().collect();
        items.close()?;
        rows
    };

    // 3. Version 2 restores the version 1 snapshot: its rows are migrated the same way, then
    //    the events after it (the version 2 update) are folded.
    println!("\n== 3. Version 2 restores the version 1 snapshot ==");
    let bytes = std::fs::read(&snapshot_file)?;
    let info = snapshot::inspect(&bytes)?;
    println!(
        "The snapshot file: channel {}, schema version {}, {} rows, through seq {}.",
        info.channel,
        info.schema_version,
        info.rows,
        show_seq(info.last_seq)
    );
    {
        let redex = Redex::with_persistent_dir(&data)?;
        let items = v2::ItemsAdapter::open_from_snapshot(&redex, ORIGIN, &bytes, info.last_seq)?;
        items.catch_up().await?;
        println!("Restored, then folded the events after the snapshot:");
        let rows: Vec<v2::Item> = items.state().read().iter().cloned().collect();
        for item in &rows {
            println!("  {item:?}");
        }
        let same = if rows == replayed { "yes" } else { "NO" };
        println!("The same rows as the replay in step 2: {same}.");
        items.close()?;
    }

    // 4. A build that bumped the version but forgot the migration cannot read version 1.
    println!("\n== 4. A version 2 build without the migration ==");
    {
        let redex = Redex::with_persistent_dir(&data)?;
        let items = v2_no_migration::ItemsAdapter::open(&redex, ORIGIN)?;
        // The fold stops at the first version 1 insert; waiting past it reports why.
        if let Err(e) = items.catch_up().await {
            println!("Replaying the log fails:\n  {e}");
        }
        if let Some(stopped) = items.fold_errors().stopped {
            println!(
                "fold_errors().stopped records it too: event {}, {:?}.",
                stopped.seq, stopped.kind
            );
        }
        items.close()?;

        match v2_no_migration::ItemsAdapter::open_from_snapshot(
            &redex,
            ORIGIN,
            &bytes,
            info.last_seq,
        ) {
            Err(e) => println!("Restoring the version 1 snapshot fails:\n  {e}"),
            Ok(items) => {
                println!("Restoring the version 1 snapshot unexpectedly worked.");
                items.close()?;
            }
        }
    }

    // 5. The schema lock file catches a struct changed without a version bump, in a test,
    //    before any data is misread. Each build's test calls `check_schema_lock` (strict
    //    under CI); here `check_schema_lock_with(dir, false)` stands in for those tests.
    println!("\n== 5. The schema lock check ==");
    let status = check_schema_lock_with::<v1::Item>(&schemas, false)?;
    println!("The version 1 build's test: {status:?}. The lock file it wrote:");
    print_lock(&schemas)?;

    match check_schema_lock_with::<v2_unbumped::Item>(&schemas, false) {
        Err(e) => println!(
            "The unbumped build's test fails with:\n{}",
            indent(&e.to_string())
        ),
        Ok(status) => println!("The unbumped build's test unexpectedly passed: {status:?}"),
    }
    // At run time the snapshot envelope catches it too: same version, other fingerprint.
    {
        let redex = Redex::with_persistent_dir(&data)?;
        match v2_unbumped::ItemsAdapter::open_from_snapshot(&redex, ORIGIN, &bytes, info.last_seq) {
            Err(e) => println!(
                "Were it shipped, restoring the version 1 snapshot would fail with:\n{}",
                indent(&e.to_string())
            ),
            Ok(items) => {
                println!("The unbumped build restored the snapshot (unexpected).");
                items.close()?;
            }
        }
    }

    let status = check_schema_lock_with::<v2::Item>(&schemas, false)?;
    println!("The version 2 build's test: {status:?}. The lock file now (commit it):");
    print_lock(&schemas)?;

    if temporary {
        std::fs::remove_dir_all(&dir)?;
    }
    println!("\nDone.");
    Ok(())
}

fn print_lock(schemas: &Path) -> Result<(), Box<dyn Error>> {
    let text = std::fs::read_to_string(schemas.join("checklist/items.lock"))?;
    print!("{}", indent(&text));
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

fn show_seq(seq: Option<u64>) -> String {
    seq.map_or_else(|| "(none)".into(), |s| s.to_string())
}
