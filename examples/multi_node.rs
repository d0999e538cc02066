//! Two processes sharing the seed's tasks through NATS JetStream: one writes, one watches.
//!
//! Needs a `nats-server` with JetStream enabled (`nats-server -js`; Debian and Ubuntu ship
//! it as the `nats-server` package). Then:
//!
//! ```text
//! cargo run -p netdb-examples --features jetstream --example multi_node             # both
//! cargo run -p netdb-examples --features jetstream --example multi_node -- watch    # here
//! cargo run -p netdb-examples --features jetstream --example multi_node -- write    # there
//! cargo run -p netdb-examples --features jetstream --example multi_node -- --nats nats://host:4222 watch
//! ```
//!
//! Without a role it runs both: it starts itself again as the watcher, waits until the
//! watcher has caught up, then writes. `NATS_URL` or `--nats` names the server (default
//! `nats://127.0.0.1:4222`). The tasks live in the server's stream `NETDB_cortex~tasks`, so
//! each run sees the tasks of the runs before it, from any machine that reaches the server.

use std::error::Error;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use netdb_models::NetDb;
use netdb_models::tasks::{OrderBy, Task, TaskStatus};
use netdb_runtime::jetstream::{JetStream, JetStreamOptions};

/// The writer's and the watcher's ids in the events they append (the watcher appends none).
const WRITER: u64 = 1;
const WATCHER: u64 = 2;

/// What each writer run creates; it then completes the first two.
const TITLES: [&str; 3] = [
    "Provision the cluster",
    "Deploy the API",
    "Announce the launch",
];

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let mut role = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--nats" => url = args.next().ok_or("--nats needs a server address")?,
            "watch" | "write" => role = Some(arg),
            other => return Err(format!("unknown argument `{other}`: see the file's docs").into()),
        }
    }
    match role.as_deref() {
        Some("watch") => watch(&url).await,
        Some(_) => write(&url).await,
        None => both(&url).await,
    }
}

fn connect(url: &str, name: &str) -> Result<JetStream, Box<dyn Error>> {
    let options = JetStreamOptions::new([url]).with_client_name(name);
    JetStream::connect(options).map_err(|e| {
        format!("{e}\n(start one with `nats-server -js`, or name it with --nats or NATS_URL)")
            .into()
    })
}

/// Runs the watcher as a second process, then writes here.
async fn both(url: &str) -> Result<(), Box<dyn Error>> {
    let exe = std::env::current_exe()?;
    let mut watcher = Command::new(exe)
        .args(["--nats", url, "watch"])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(watcher.stdout.take().ok_or("no watcher stdout")?).lines();
    // Relay the watcher's lines; start writing once it says it is watching.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let relay = std::thread::spawn(move || {
        let mut ready = Some(ready_tx);
        for line in lines.by_ref().map_while(Result::ok) {
            println!("[watcher] {line}");
            if line.starts_with("watching")
                && let Some(tx) = ready.take()
            {
                let _ = tx.send(());
            }
        }
    });
    if ready_rx.recv_timeout(Duration::from_secs(30)).is_err() {
        let _ = watcher.kill();
        return Err("the watcher did not start watching within 30 s".into());
    }
    write(url).await?;
    let status = watcher.wait()?;
    let _ = relay.join();
    if !status.success() {
        return Err(format!("the watcher failed: {status}").into());
    }
    println!("Done: the watcher saw every write of the writer.");
    Ok(())
}

/// Creates tasks, then completes the first two; prints each write's log seq.
async fn write(url: &str) -> Result<(), Box<dyn Error>> {
    let js = connect(url, "multi-node writer")?;
    let db = NetDb::open(&js, WRITER)?;
    db.catch_up().await?; // folds what earlier runs left, so new ids follow theirs
    let (existing, largest) = tasks_and_largest_id(&db);
    let next_id = largest + 1;
    println!("[writer] the stream holds {existing} tasks from earlier runs");
    let ids: Vec<u64> = (next_id..).take(TITLES.len()).collect();
    for (&id, title) in ids.iter().zip(TITLES) {
        let seq = db.tasks().create(id, title)?;
        println!("[writer] created #{id} {title:?} (seq {seq})");
    }
    for &id in &ids[..2] {
        let seq = db.tasks().complete(id)?;
        println!("[writer] completed #{id} (seq {seq})");
    }
    // The last write names the end: the watcher stops once it folded it.
    let seq = db
        .tasks()
        .rename(ids[2], format!("{} (ready)", TITLES[2]))?;
    println!("[writer] renamed #{} (seq {seq}): that is all", ids[2]);
    db.tasks().wait_for_seq(seq).await?;
    db.close()?;
    Ok(())
}

/// Watches pending tasks and prints each change, until a pending task's title ends in
/// "(ready)" arrives (the writer's last write).
async fn watch(url: &str) -> Result<(), Box<dyn Error>> {
    let js = connect(url, "multi-node watcher")?;
    let db = NetDb::open(&js, WATCHER)?;
    db.catch_up().await?;
    let (start, largest) = tasks_and_largest_id(&db);
    let mut pending = db
        .tasks()
        .watch()
        .where_status(TaskStatus::Pending)
        .order_by(OrderBy::IdAsc)
        .stream();
    println!("watching pending tasks ({start} tasks in the stream so far)");
    loop {
        let rows = tokio::time::timeout(Duration::from_secs(60), pending.next())
            .await
            .map_err(|_| "no change for 60 s")?
            .ok_or("the watch ended")?;
        println!("pending now: {}", list(&rows));
        // Only a task created after this watcher started ends it, not an earlier run's.
        if rows
            .iter()
            .any(|t| t.id > largest && t.title.ends_with("(ready)"))
        {
            break;
        }
    }
    let state = db.tasks().state();
    let completed = state
        .read()
        .query()
        .where_status(TaskStatus::Completed)
        .count();
    println!("the writer is done; {completed} tasks are completed in all");
    db.close()?;
    Ok(())
}

/// How many tasks the fold holds, and the largest id among them (0 if none).
fn tasks_and_largest_id(db: &NetDb) -> (usize, u64) {
    let state = db.tasks().state();
    let tasks = state.read();
    let largest = tasks.query().order_by(OrderBy::IdDesc).first();
    (tasks.len(), largest.map_or(0, |t| t.id))
}

fn list(rows: &[Task]) -> String {
    if rows.is_empty() {
        return "none".into();
    }
    let items: Vec<String> = rows
        .iter()
        .map(|t| format!("#{} {}", t.id, t.title))
        .collect();
    items.join(", ")
}
