//! The second process of the JetStream two-process test (`tests/jetstream.rs`): the seed's
//! `NetDb` (tasks and memories) opened on a JetStream server the test started.
//!
//! ```text
//! js-tasks-peer <nats-url> read <seq>    wait_for_seq(seq), print every task, exit
//! js-tasks-peer <nats-url> watch <n>     print each emission of a watch on every task
//!                                        until it holds n tasks; then create task 1000,
//!                                        print its seq and exit
//! ```
//!
//! Lines on stdout: `ready` once the model caught up, `task <id> <status> <title>`,
//! `emission <id>,<id>,...`, `wrote <seq>`.

use std::error::Error;
use std::io::Write;
use std::time::Duration;

use futures_util::StreamExt;
use netdb_models::NetDb;
use netdb_models::tasks::OrderBy;
use netdb_runtime::jetstream::{JetStream, JetStreamOptions};

/// This process's writer id.
const ORIGIN: u64 = 2;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, mode, arg] = args.as_slice() else {
        return Err("usage: js-tasks-peer <nats-url> (read <seq> | watch <n>)".into());
    };
    let arg: u64 = arg.parse()?;
    let js = JetStream::connect(
        JetStreamOptions::new([url.as_str()]).with_client_name("js-tasks-peer"),
    )?;
    let db = NetDb::open(&js, ORIGIN)?;
    db.catch_up().await?;
    say("ready");
    match mode.as_str() {
        "read" => {
            db.tasks().wait_for_seq(arg).await?;
            let state = db.tasks().state();
            let tasks = state.read().query().order_by(OrderBy::IdAsc).collect();
            for t in tasks {
                say(&format!("task {} {:?} {}", t.id, t.status, t.title));
            }
        }
        "watch" => {
            let mut watch = db.tasks().watch().order_by(OrderBy::IdAsc).stream();
            loop {
                let rows = tokio::time::timeout(Duration::from_secs(30), watch.next())
                    .await
                    .map_err(|_| "no emission for 30 s")?
                    .ok_or("the watch ended")?;
                let ids: Vec<String> = rows.iter().map(|t| t.id.to_string()).collect();
                say(&format!("emission {}", ids.join(",")));
                if rows.len() as u64 >= arg {
                    break;
                }
            }
            let seq = db.tasks().create(1000, "written by the watcher")?;
            say(&format!("wrote {seq}"));
        }
        other => return Err(format!("unknown mode `{other}`").into()),
    }
    db.close()?;
    Ok(())
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
