//! A live dashboard: several watches with different filters, each printing its updates from
//! its own task, while a producer task writes tasks and memories.
//!
//! Watches: pending tasks, completed tasks, tasks whose title contains "urgent", and
//! memories tagged "incident". A watch yields its current result, then a new result each
//! time a write changes it (a row entering or leaving it, or a row in it changing); writes
//! that do not change it wake nothing.
//!
//! The producer waits for each write to be folded, then yields, so the panels print every
//! step. A panel that falls behind (say, on a busy multi-threaded runtime) skips to the
//! latest result instead: the final results printed at the end do not depend on timing.
//! The program ends on its own: the producer finishes, the database is closed, and closing
//! ends every watch stream.
//!
//! ```text
//! cargo run -p netdb-examples --example live_dashboard
//! ```

use std::error::Error;

use futures_util::StreamExt;
use netdb_models::memories::{Memory, OrderBy as MemoryOrderBy};
use netdb_models::tasks::{Task, TaskStatus};
use netdb_models::{MemoriesAdapter, NetDb, TasksAdapter};
use netdb_runtime::cortex::{CortexAdapter, CortexError, CortexModel, WatchStream};
use netdb_runtime::redex::Redex;
use tokio::task::JoinHandle;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let redex = Redex::new(); // in memory
    let db = NetDb::open(&redex, 1)?;

    // Start the watches before the producer: each prints its first result (empty), then
    // every change it sees.
    println!("Starting four watches.");
    let panels = [
        spawn_panel(
            "pending",
            db.tasks()
                .watch()
                .where_status(TaskStatus::Pending)
                .stream(),
            list_tasks,
        ),
        spawn_panel(
            "completed",
            db.tasks()
                .watch()
                .where_status(TaskStatus::Completed)
                .stream(),
            list_tasks,
        ),
        spawn_panel(
            "urgent",
            db.tasks().watch().where_title_contains("urgent").stream(),
            list_tasks_with_status,
        ),
        spawn_panel(
            "incidents",
            db.memories()
                .watch()
                .where_tag("incident")
                .order_by(MemoryOrderBy::CreatedAsc)
                .stream(),
            list_memories,
        ),
    ];

    // The producer runs as its own task, writing through clones of the adapters.
    let producer = tokio::spawn(produce(db.tasks().clone(), db.memories().clone()));
    producer.await??;

    // The producer waited for its last writes to be folded, so every watch already holds
    // its final result. Closing ends the streams; each panel task then returns.
    println!("Producer done; closing the database.");
    db.close()?;
    println!("\nFinal results:");
    for panel in panels {
        let (name, last) = panel.await?;
        println!("  {name:<9}  {last}");
    }
    println!("Done.");
    Ok(())
}

/// The writes: a short incident, from report to fix.
async fn produce(tasks: TasksAdapter, memories: MemoriesAdapter) -> Result<(), CortexError> {
    let say = |what: &str| println!("producer: {what}");

    say("create #1 \"Write the weekly report\"");
    settle(&tasks, tasks.create(1, "Write the weekly report")?).await?;
    say("create #2 \"URGENT: fix the login outage\"");
    settle(&tasks, tasks.create(2, "URGENT: fix the login outage")?).await?;
    say("create #3 \"Plan the next sprint\"");
    settle(&tasks, tasks.create(3, "Plan the next sprint")?).await?;

    say("remember #1 \"logins fail for SSO users\" [incident, auth]");
    let tags = vec!["incident".into(), "auth".into()];
    let seq = memories.store(1, "logins fail for SSO users", tags, "pager")?;
    settle(&memories, seq).await?;

    say("create #4 \"Review the urgent hotfix\"");
    settle(&tasks, tasks.create(4, "Review the urgent hotfix")?).await?;
    say("complete #2");
    settle(&tasks, tasks.complete(2)?).await?;

    say("remember #2 \"hotfix deployed\" [incident, deploy]");
    let tags = vec!["incident".into(), "deploy".into()];
    settle(&memories, memories.store(2, "hotfix deployed", tags, "ci")?).await?;

    say("complete #4");
    settle(&tasks, tasks.complete(4)?).await?;
    say("rename #1 to \"Write the urgent post-mortem\"");
    settle(&tasks, tasks.rename(1, "Write the urgent post-mortem")?).await?;
    say("delete #3");
    settle(&tasks, tasks.delete(3)?).await?;

    say("retag memory #1 [auth]: no longer an incident");
    settle(&memories, memories.retag(1, vec!["auth".into()])?).await?;

    say("complete #1");
    settle(&tasks, tasks.complete(1)?).await?;
    Ok(())
}

/// Waits until the fold has applied event `seq` (so every watch already holds a result that
/// includes it), then yields, so the panels print before the next write.
async fn settle<M: CortexModel>(adapter: &CortexAdapter<M>, seq: u64) -> Result<(), CortexError> {
    adapter.wait_for_seq(seq).await?;
    tokio::task::yield_now().await;
    Ok(())
}

/// Spawns a task that prints every result `stream` yields, and returns the panel's name and
/// its last result when the stream ends.
fn spawn_panel<M: CortexModel>(
    name: &'static str,
    mut stream: WatchStream<M>,
    show: fn(&[M]) -> String,
) -> JoinHandle<(&'static str, String)> {
    tokio::spawn(async move {
        let mut last = String::new();
        while let Some(rows) = stream.next().await {
            last = show(&rows);
            println!("  [{name:<9}] {last}");
        }
        (name, last)
    })
}

fn list_tasks(tasks: &[Task]) -> String {
    if tasks.is_empty() {
        return "(none)".into();
    }
    let items: Vec<String> = tasks
        .iter()
        .map(|t| format!("#{} {:?}", t.id, t.title))
        .collect();
    items.join(", ")
}

fn list_tasks_with_status(tasks: &[Task]) -> String {
    if tasks.is_empty() {
        return "(none)".into();
    }
    let items: Vec<String> = tasks
        .iter()
        .map(|t| match t.status {
            TaskStatus::Pending => format!("#{} {:?}", t.id, t.title),
            TaskStatus::Completed => format!("#{} {:?} (done)", t.id, t.title),
        })
        .collect();
    items.join(", ")
}

fn list_memories(memories: &[Memory]) -> String {
    if memories.is_empty() {
        return "(none)".into();
    }
    let items: Vec<String> = memories
        .iter()
        .map(|m| format!("#{} {:?}", m.id, m.content))
        .collect();
    items.join(", ")
}
