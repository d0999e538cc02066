//! The append timestamp source.
//!
//! Timestamps feed age retention, which needs millisecond-scale precision at most, so the
//! coarse real-time clock (a few nanoseconds to read, a few milliseconds of resolution) is
//! used where the platform has one.

/// Nanoseconds since the Unix epoch, from a cheap wall clock.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // One libc call; see the SAFETY note.
pub(crate) fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_REALTIME_COARSE exists on every
    // Linux since 2.6.32; the call writes only through the pointer it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    if rc != 0 {
        return precise_now_ns();
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Nanoseconds since the Unix epoch.
#[cfg(not(target_os = "linux"))]
pub(crate) fn now_ns() -> u64 {
    precise_now_ns()
}

fn precise_now_ns() -> u64 {
    system_time_ns(std::time::SystemTime::now())
}

/// Nanoseconds since the Unix epoch of `t` (0 before the epoch).
pub(crate) fn system_time_ns(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn coarse_clock_tracks_the_wall_clock() {
        let precise = super::precise_now_ns();
        let coarse = super::now_ns();
        let diff = precise.abs_diff(coarse);
        assert!(diff < 1_000_000_000, "clocks differ by {diff} ns");
    }
}
