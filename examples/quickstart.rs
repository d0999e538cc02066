//! The quickstart: the seed's tasks and memories models (`netdb_models::NetDb`) on disk.
//!
//! It opens a data directory, waits for the replay of what earlier runs wrote, creates a few
//! tasks, queries them, watches this run's pending tasks while it completes some, closes and
//! reopens the directory to show the replayed state, then takes a whole-database snapshot
//! and restores from it. Run it twice: the second run finds the first run's tasks.
//!
//! ```text
//! cargo run -p netdb-examples --example quickstart            # uses ./netdb-data
//! cargo run -p netdb-examples --example quickstart -- /tmp/x  # or a directory of your choice
//! ```

use std::error::Error;
use std::path::PathBuf;

use futures_util::StreamExt;
use netdb_models::NetDb;
use netdb_models::memories::OrderBy as MemoryOrderBy;
use netdb_models::tasks::{OrderBy, Task, TaskStatus};
use netdb_runtime::redex::Redex;

/// This program's writer id, stamped into every event it appends.
const ORIGIN: u64 = 1;

/// What each run creates.
const TITLES: [&str; 4] = [
    "Write the quickstart",
    "Review the quickstart",
    "Fix the flaky test",
    "Ship release 0.1",
];

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("netdb-data"), PathBuf::from);

    // 1. Open the directory. Each model replays its log in the background; `catch_up`
    //    waits until the replay has reached the end of what is on disk.
    println!("Opening the data directory {}", dir.display());
    let redex = Redex::with_persistent_dir(&dir)?;
    let db = NetDb::open(&redex, ORIGIN)?;
    db.catch_up().await?;

    let (earlier, largest_id) = {
        let state = db.tasks().state();
        let tasks = state.read(); // a read guard: hold it briefly, never across an .await
        let largest = tasks.query().order_by(OrderBy::IdDesc).first();
        (tasks.len(), largest.map_or(0, |t| t.id))
    };
    // Each run leaves one memory; this run's number follows the last one's.
    let run = {
        let state = db.memories().state();
        let last = state.read().query().order_by(MemoryOrderBy::IdDesc).first();
        last.map_or(1, |m| m.id + 1)
    };
    if earlier == 0 {
        println!("It holds no tasks yet: this is the first run.");
    } else {
        println!(
            "Earlier runs left {earlier} tasks ({}); the largest id is {largest_id}.",
            status_counts(&db)
        );
        println!("The 4 they created last:");
        let state = db.tasks().state();
        state
            .read()
            .query()
            .order_by(OrderBy::CreatedDesc)
            .limit(4)
            .for_each(|t| println!("  {}", describe(t)));
        println!("And what they remembered:");
        let state = db.memories().state();
        state
            .read()
            .query()
            .where_tag("quickstart")
            .order_by(MemoryOrderBy::CreatedAsc)
            .for_each(|m| println!("  {}", m.content));
    }

    // 2. Create tasks. Ids continue after the largest existing one. Each write appends an
    //    event and returns its sequence number; `wait_for_seq` waits until the fold has
    //    applied it, so the queries below see it (read your own writes).
    println!("\nRun {run}: creating {} tasks.", TITLES.len());
    let mut ids = Vec::new();
    let mut last_seq = 0;
    for (id, title) in (largest_id + 1..).zip(TITLES) {
        last_seq = db.tasks().create(id, title)?;
        ids.push(id);
        println!("  created task #{id} {title:?} (log seq {last_seq})");
    }
    db.tasks().wait_for_seq(last_seq).await?;

    // 3. Query.
    {
        let state = db.tasks().state();
        let tasks = state.read();
        println!("\nThe 3 newest pending tasks:");
        tasks
            .query()
            .where_status(TaskStatus::Pending)
            .order_by(OrderBy::CreatedDesc)
            .limit(3)
            .for_each(|t| println!("  {}", describe(t)));
        let matches = tasks.query().where_title_contains("QUICKSTART").count();
        println!("Tasks whose title contains \"quickstart\" (any case): {matches}");
        let pending = tasks.query().where_status(TaskStatus::Pending).count();
        println!("Pending tasks in all: {pending}");
    }

    // 4. Watch. The first item is the current result; each later item is the new result
    //    after a change. Once `wait_for_seq` returns, the watch already holds the result
    //    that includes that event, so this output does not depend on timing.
    let mut watch = db
        .tasks()
        .watch()
        .where_status(TaskStatus::Pending)
        .where_id_in(ids.clone())
        .stream();
    let now = watch.next().await.ok_or("the watch ended early")?;
    println!("\nWatching this run's pending tasks: {}", list_ids(&now));
    for id in [ids[0], ids[2]] {
        let seq = db.tasks().complete(id)?;
        db.tasks().wait_for_seq(seq).await?;
        let update = watch.next().await.ok_or("the watch ended early")?;
        println!(
            "  completed #{id}; the watch now shows: {}",
            list_ids(&update)
        );
    }
    drop(watch); // dropping a stream ends the watch

    // A memory records the run: the snapshot below covers both models.
    let (first, last) = (largest_id + 1, largest_id + TITLES.len() as u64);
    let seq = db.memories().store(
        run,
        format!("run {run} created tasks #{first}..=#{last}"),
        vec!["quickstart".into(), format!("run-{run}")],
        "quickstart",
    )?;
    db.memories().wait_for_seq(seq).await?;

    // 5. Close (each log is fsynced), then reopen the directory as a new process would:
    //    the state is rebuilt by replaying the logs.
    println!("\nClosing the database and reopening {}", dir.display());
    db.close()?;
    drop((db, redex));

    let redex = Redex::with_persistent_dir(&dir)?;
    let db = NetDb::open(&redex, ORIGIN)?;
    db.catch_up().await?;
    println!("The replay rebuilt {}.", summary(&db));
    {
        let state = db.tasks().state();
        let tasks = state.read();
        println!("This run's tasks after the replay:");
        tasks
            .query()
            .where_id_in(ids.clone())
            .for_each(|t| println!("  {}", describe(t)));
    }

    // 6. Snapshot and restore. A snapshot is the state of every model and the last event
    //    folded into each; restoring it folds only the events after it, so it is a
    //    shortcut past a long replay. (The log stays the truth.)
    let bundle = db.snapshot()?;
    println!(
        "\nTook a whole-database snapshot: {} bytes covering tasks and memories.",
        bundle.len()
    );
    db.close()?;
    drop(db);

    let db = NetDb::open_from_snapshot(&redex, ORIGIN, &bundle)?;
    db.catch_up().await?;
    println!("Restored from the snapshot: {}.", summary(&db));
    let total = db.tasks().state().read().len();
    db.close()?;

    println!(
        "\nRun it again to see these tasks come back; delete {} to start over.",
        dir.display()
    );
    println!("Done. This directory now holds {total} tasks.");
    Ok(())
}

/// "N pending, M completed".
fn status_counts(db: &NetDb) -> String {
    let state = db.tasks().state();
    let tasks = state.read();
    let pending = tasks.query().where_status(TaskStatus::Pending).count();
    let completed = tasks.query().where_status(TaskStatus::Completed).count();
    format!("{pending} pending, {completed} completed")
}

/// "N tasks (P pending, C completed) and M memories".
fn summary(db: &NetDb) -> String {
    let tasks = db.tasks().state().read().len();
    let memories = match db.memories().state().read().len() {
        1 => "1 memory".to_string(),
        n => format!("{n} memories"),
    };
    format!("{tasks} tasks ({}) and {memories}", status_counts(db))
}

/// One task on a line.
fn describe(task: &Task) -> String {
    let status = match task.status {
        TaskStatus::Pending => "pending",
        TaskStatus::Completed => "completed",
    };
    format!("#{} {:?} ({status})", task.id, task.title)
}

/// "#1, #2" or "none".
fn list_ids(tasks: &[Task]) -> String {
    if tasks.is_empty() {
        return "none".into();
    }
    let ids: Vec<String> = tasks.iter().map(|t| format!("#{}", t.id)).collect();
    ids.join(", ")
}
