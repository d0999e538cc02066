//! Shared helpers of the netdb cross-crate tests and of the helper processes they drive.
//!
//! The RedEX crash test (`tests/redex_crash.rs`) and its writer process
//! (`src/bin/redex_crash_writer.rs`) agree on three things defined here: the channel and
//! file configuration, the textual form of an [`FsyncPolicy`], and the payload of every
//! sequence number ([`payload`]), so the test can check each recovered event byte for byte
//! without the writer telling it what it wrote.
//!
//! The CortEX crash tests run the model-generic harness of [`crash`]: its writer loop
//! ([`crash::writer_main`]) and its kill-and-check loop ([`crash::crash_loop`]), with the
//! same file configuration and policy syntax. `tests/cortex_crash.rs` (writer
//! `src/bin/cortex_crash_writer.rs`) drives the small ledger model of [`cortex_model`];
//! `tests/tasks_crash.rs` (writer `src/bin/tasks_crash_writer.rs`) drives the seed's tasks
//! model through its typed writes, with the event stream of [`tasks_model`].
//!
//! With feature `jetstream`, `nats` starts real `nats-server` processes for the JetStream
//! suites (`tests/jetstream.rs`, with its peer process `src/bin/js_tasks_peer.rs`, and
//! `tests/jetstream_models.rs`, the models' behaviour suite of `netdb-models` on JetStream).

use std::time::Duration;

use netdb_runtime::redex::{ChannelName, FsyncPolicy, RedexFileConfig};

pub mod cortex_model;
pub mod crash;
#[cfg(feature = "jetstream")]
pub mod nats;
pub mod tasks_model;

/// The channel the crash writer appends to.
pub const CRASH_CHANNEL: &str = "crash/log";
/// The segment size of the crash channel: small, so segments roll every few hundred events.
pub const CRASH_SEGMENT_MAX_BYTES: u64 = 64 * 1024;
/// The longest payload [`payload`] produces.
pub const MAX_PAYLOAD: usize = 300;

/// The crash channel's name.
pub fn crash_channel() -> ChannelName {
    CRASH_CHANNEL.parse().expect("valid channel name")
}

/// The configuration the crash writer and the checking test both open the channel with.
pub fn crash_config(policy: FsyncPolicy) -> RedexFileConfig {
    RedexFileConfig::default()
        .with_persistent(true)
        .with_fsync_policy(policy)
        .with_segment_max_bytes(CRASH_SEGMENT_MAX_BYTES)
}

/// SplitMix64: a fast, well-mixed hash of a `u64`.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The length of the payload of `seq`: 0..=[`MAX_PAYLOAD`]. About one in four payloads is
/// at most 8 bytes (stored inline in the index record), the rest go to the data file.
pub fn payload_len(seq: u64) -> usize {
    let h = mix64(seq ^ 0x5EED_0000_0000_0000);
    if h & 3 == 0 {
        (h >> 8) as usize % 9
    } else {
        (h >> 8) as usize % (MAX_PAYLOAD + 1)
    }
}

/// The payload of `seq`, a deterministic function of it. Payloads of 8 bytes or more start
/// with `seq` (little-endian), so a misplaced record is recognisable; the rest of the bytes
/// are a hash of `(seq, position)`.
pub fn payload(seq: u64) -> Vec<u8> {
    let len = payload_len(seq);
    let mut out = Vec::with_capacity(len);
    if len >= 8 {
        out.extend_from_slice(&seq.to_le_bytes());
    }
    let mut i = 0u64;
    while out.len() < len {
        let word = mix64(seq.wrapping_mul(0x1_0000_0001).wrapping_add(i)).to_le_bytes();
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&word[..take]);
        i += 1;
    }
    out
}

/// A tiny xorshift64* generator: enough randomness for choosing kill points and batch
/// sizes, with no dependency.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from `seed` (any value; it is mixed first).
    pub fn new(seed: u64) -> XorShift {
        XorShift(mix64(seed) | 1)
    }

    /// A generator seeded from the clock and the process id.
    pub fn from_entropy() -> XorShift {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        XorShift::new(nanos ^ (u64::from(std::process::id()) << 32))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `range` (inclusive), which must not be empty.
    pub fn range(&mut self, range: std::ops::RangeInclusive<u64>) -> u64 {
        let (lo, hi) = (*range.start(), *range.end());
        assert!(lo <= hi, "empty range");
        let span = hi - lo;
        if span == u64::MAX {
            return self.next_u64();
        }
        lo + self.next_u64() % (span + 1)
    }
}

/// Formats a policy the way [`parse_policy`] reads it: `never`, `every:N`, `interval:MS`,
/// `bytes:MS:MAXBYTES`.
pub fn format_policy(policy: FsyncPolicy) -> String {
    match policy {
        FsyncPolicy::Never => "never".into(),
        FsyncPolicy::EveryN(n) => format!("every:{n}"),
        FsyncPolicy::Interval(d) => format!("interval:{}", d.as_millis()),
        FsyncPolicy::IntervalOrBytes { period, max_bytes } => {
            format!("bytes:{}:{max_bytes}", period.as_millis())
        }
    }
}

/// Parses `never`, `every:N`, `interval:MS` or `bytes:MS:MAXBYTES`.
pub fn parse_policy(s: &str) -> Result<FsyncPolicy, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let num = |p: &str| {
        p.parse::<u64>()
            .map_err(|e| format!("bad number {p:?} in fsync policy {s:?}: {e}"))
    };
    match parts.as_slice() {
        ["never"] => Ok(FsyncPolicy::Never),
        ["every", n] => Ok(FsyncPolicy::EveryN(num(n)?)),
        ["interval", ms] => Ok(FsyncPolicy::Interval(Duration::from_millis(num(ms)?))),
        ["bytes", ms, max] => Ok(FsyncPolicy::IntervalOrBytes {
            period: Duration::from_millis(num(ms)?),
            max_bytes: num(max)?,
        }),
        _ => Err(format!(
            "unknown fsync policy {s:?}; expected never | every:N | interval:MS | bytes:MS:MAXBYTES"
        )),
    }
}

/// Reads `lines` lines of a writer's stdout, handing each to `on_line`, then spins for
/// `spin` (jitter, so kills land at different steps of the writer's loop), SIGKILLs the
/// writer and reaps it. Fails if the writer ended, a line was refused, or it did not die by
/// SIGKILL; the error carries the writer's stderr.
pub fn read_then_kill(
    child: &mut std::process::Child,
    lines: u64,
    spin: Duration,
    mut on_line: impl FnMut(&str) -> Result<(), String>,
) -> Result<(), String> {
    use std::io::{BufRead, BufReader, Read};
    use std::os::unix::process::ExitStatusExt;

    const SIGKILL: i32 = 9;
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    let mut failure = None;
    for _ in 0..lines {
        line.clear();
        match out.read_line(&mut line) {
            Ok(0) => {
                failure = Some("the writer ended before it was killed".to_string());
                break;
            }
            Ok(_) => {
                if let Err(e) = on_line(&line) {
                    failure = Some(e);
                    break;
                }
            }
            Err(e) => {
                failure = Some(format!("reading the writer's stdout: {e}"));
                break;
            }
        }
    }
    let until = std::time::Instant::now() + spin;
    while std::time::Instant::now() < until {
        std::hint::spin_loop();
    }
    let killed = child.kill();
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    killed.map_err(|e| format!("kill: {e}"))?;
    drop(out);
    if failure.is_none() && status.signal() != Some(SIGKILL) {
        failure = Some(format!("the writer was not killed by SIGKILL: {status}"));
    }
    match failure {
        None => Ok(()),
        Some(f) => {
            let mut err = String::new();
            if let Some(mut s) = child.stderr.take() {
                let _ = s.read_to_string(&mut err);
            }
            Err(format!("{f} (exit status {status}); writer stderr: {err}"))
        }
    }
}

/// A number from environment variable `name`, if set (panics on a value that is not one).
pub fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|e| panic!("{name}={v:?} is not a number: {e}")),
    )
}

/// Serialises spawning a child with holding a RedEX directory lock in this process.
///
/// The lock is an `flock` on an open file description. A child spawned by another test
/// thread while this process has the lock file open inherits the descriptor until its
/// `exec` closes it (it is close-on-exec), and for that moment it holds the lock too: a
/// writer spawned right after this process closed the directory could then be refused
/// with `Locked`. Tests run in parallel threads, so every spawn, and every in-process open
/// of a directory, happens under this guard.
pub fn no_spawns() -> std::sync::MutexGuard<'static, ()> {
    static FD_INHERITANCE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    FD_INHERITANCE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_deterministic_and_varied() {
        let mut inline = 0;
        let mut heap = 0;
        for seq in 0..10_000u64 {
            let p = payload(seq);
            assert_eq!(p, payload(seq));
            assert_eq!(p.len(), payload_len(seq));
            assert!(p.len() <= MAX_PAYLOAD);
            if p.len() >= 8 {
                assert_eq!(p[..8], seq.to_le_bytes());
            }
            if p.len() <= 8 {
                inline += 1;
            } else {
                heap += 1;
            }
        }
        assert!(
            inline > 1_000 && heap > 5_000,
            "inline {inline}, heap {heap}"
        );
        assert!((0..10_000).any(|s| payload_len(s) == 0));
        assert!((0..10_000).any(|s| payload_len(s) == MAX_PAYLOAD));
    }

    #[test]
    fn policies_round_trip() {
        for p in [
            FsyncPolicy::Never,
            FsyncPolicy::EveryN(16),
            FsyncPolicy::Interval(Duration::from_millis(5)),
            FsyncPolicy::IntervalOrBytes {
                period: Duration::from_millis(5),
                max_bytes: 4096,
            },
        ] {
            assert_eq!(parse_policy(&format_policy(p)), Ok(p));
        }
        assert!(parse_policy("sometimes").is_err());
        assert!(parse_policy("every:x").is_err());
    }
}
