//! RedEX on disk: write events to a local data directory, close it, reopen it, and show what
//! recovery found. Run it twice to see the first run's events come back.
//!
//! ```text
//! cargo run -p netdb-examples --example redex_log            # uses ./netdb-data
//! cargo run -p netdb-examples --example redex_log -- /tmp/x  # or a directory of your choice
//! ```

use std::error::Error;
use std::path::PathBuf;

use futures_util::StreamExt;
use netdb_runtime::redex::{ChannelName, FsyncPolicy, Redex, RedexFileConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("netdb-data"), PathBuf::from);
    let channel: ChannelName = "examples/orders".parse()?;
    let config = RedexFileConfig::default()
        .with_persistent(true)
        .with_fsync_policy(FsyncPolicy::EveryN(100));

    println!("Opening the RedEX directory {}", dir.display());
    let redex = Redex::with_persistent_dir(&dir)?;
    let log = redex.open_file(&channel, config.clone())?;
    let already = log.len();
    if already > 0 {
        println!("It already holds {already} events from earlier runs.");
    } else {
        println!("It is empty: this is the first run.");
    }

    let run = log.next_seq() / 3 + 1;
    let first = log.append(format!("run {run}: order placed").as_bytes())?;
    let rest = log.append_batch(&[
        format!("run {run}: order paid"),
        format!("run {run}: order shipped"),
    ])?;
    println!(
        "Appended events {first}..={} (one append and a batch of two).",
        rest.end - 1
    );

    let mut tail = log.tail(first);
    print!("A tail from seq {first} delivers:");
    for _ in 0..3 {
        let event = tail.next().await.expect("the log is open")?;
        print!(
            " [{}] {:?}",
            event.seq,
            String::from_utf8_lossy(&event.payload)
        );
    }
    println!();

    println!("Closing (close always fsyncs) and reopening...");
    log.close()?;
    drop((tail, log, redex));

    let redex = Redex::with_persistent_dir(&dir)?;
    let log = redex.open_file(&channel, config)?;
    let report = log
        .recovery_report()
        .expect("a persistent file has a report");
    println!(
        "Recovered {} events in {} segment(s); next seq is {}; torn bytes cut: {}.",
        log.len(),
        report.segments,
        report.next_seq,
        report.truncated_bytes
    );
    let shown = log.len().min(6);
    println!("The last {shown} events:");
    for event in log.read_range(log.next_seq() - shown, log.next_seq())? {
        println!(
            "  [{}] {}",
            event.seq,
            String::from_utf8_lossy(&event.payload)
        );
    }
    log.close()?;
    println!(
        "Done. Run it again to see these events come back; delete {} to start over.",
        dir.display()
    );
    Ok(())
}
