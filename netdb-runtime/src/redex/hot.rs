//! The hot window: the most recent events of a file, in memory.
//!
//! Payload bytes are copied into large arena chunks, so an append costs one `memcpy` and no
//! allocation or reference counting. A chunk becomes an immutable, shared [`Bytes`] when it
//! fills up ("sealed"): reads of its events are then zero-copy slices. Events still in the
//! chunk being filled are copied when read. A chunk's memory goes when its last event leaves
//! the window and no reader holds a slice of it; a couple of freed chunks are kept for reuse,
//! so a steady stream of appends with retention does not keep faulting in fresh pages.

use std::collections::VecDeque;

use bytes::Bytes;

use super::RedexEvent;

/// Arena chunk size. Payloads larger than this get a chunk of their own.
const CHUNK: usize = 64 << 10;
/// Freed chunks kept for reuse.
const SPARE_CHUNKS: usize = 2;

#[derive(Debug, Clone, Copy)]
struct Entry {
    timestamp_ns: u64,
    chunk: u64,
    offset: u32,
    len: u32,
}

/// Bytes of bookkeeping per event, counted against the memory bound.
pub(crate) const ENTRY_OVERHEAD: usize = std::mem::size_of::<Entry>();

#[derive(Debug)]
pub(crate) struct HotWindow {
    entries: VecDeque<Entry>,
    /// Seq of `entries[0]`.
    start: u64,
    /// Payload plus bookkeeping bytes.
    bytes: usize,
    /// Sealed chunks; `sealed[0]` has id `first_chunk`.
    sealed: VecDeque<Bytes>,
    first_chunk: u64,
    /// The chunk being filled; its id is `first_chunk + sealed.len()`.
    active: Vec<u8>,
    spare: Vec<Vec<u8>>,
}

impl HotWindow {
    pub fn new(start: u64) -> HotWindow {
        HotWindow {
            entries: VecDeque::new(),
            start,
            bytes: 0,
            sealed: VecDeque::new(),
            first_chunk: 0,
            active: Vec::new(),
            spare: Vec::new(),
        }
    }

    /// Seq of the oldest event in memory.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Memory held for the window's events.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn active_id(&self) -> u64 {
        self.first_chunk + self.sealed.len() as u64
    }

    pub fn push(&mut self, timestamp_ns: u64, payload: &[u8]) {
        if self.active.capacity() - self.active.len() < payload.len() {
            self.seal(payload.len());
        }
        let offset = self.active.len() as u32;
        self.active.extend_from_slice(payload);
        self.entries.push_back(Entry {
            timestamp_ns,
            chunk: self.active_id(),
            offset,
            len: payload.len() as u32,
        });
        self.bytes += payload.len() + ENTRY_OVERHEAD;
    }

    /// Seals the active chunk (if it holds anything) and starts one with room for `need`.
    fn seal(&mut self, need: usize) {
        let fresh = match self.spare.pop() {
            Some(v) if v.capacity() >= need => v,
            _ => Vec::with_capacity(CHUNK.max(need)),
        };
        let full = std::mem::replace(&mut self.active, fresh);
        if self
            .entries
            .back()
            .is_some_and(|e| e.chunk == self.active_id())
        {
            self.sealed.push_back(Bytes::from(full));
        } else {
            // No event lives in it: the new chunk takes over its id.
            self.recycle(full);
        }
    }

    fn recycle(&mut self, mut v: Vec<u8>) {
        if self.spare.len() < SPARE_CHUNKS && v.capacity() == CHUNK {
            v.clear();
            self.spare.push(v);
        }
    }

    /// Drops the oldest event; returns its payload length.
    pub fn pop_front(&mut self) -> Option<usize> {
        let e = self.entries.pop_front()?;
        self.start += 1;
        self.bytes -= e.len as usize + ENTRY_OVERHEAD;
        // Release sealed chunks no remaining event refers to.
        let keep_from = self.entries.front().map_or(self.active_id(), |f| f.chunk);
        while self.first_chunk < keep_from {
            match self.sealed.pop_front() {
                Some(chunk) => {
                    if let Ok(unique) = chunk.try_into_mut() {
                        self.recycle(unique.into());
                    }
                    self.first_chunk += 1;
                }
                None => break,
            }
        }
        if self.entries.is_empty() {
            self.active.clear();
        }
        Some(e.len as usize)
    }

    /// Empties the window and makes `start` the next seq it expects.
    pub fn reset(&mut self, start: u64) {
        while self.pop_front().is_some() {}
        self.start = start;
    }

    fn payload(&self, e: &Entry) -> Bytes {
        let (off, len) = (e.offset as usize, e.len as usize);
        if e.chunk == self.active_id() {
            Bytes::copy_from_slice(&self.active[off..off + len])
        } else {
            self.sealed[(e.chunk - self.first_chunk) as usize].slice(off..off + len)
        }
    }

    /// The event at `seq`, if it is in the window.
    #[cfg(test)]
    pub fn event(&self, seq: u64) -> Option<RedexEvent> {
        let e = self.entries.get(seq.checked_sub(self.start)? as usize)?;
        Some(RedexEvent {
            seq,
            timestamp_ns: e.timestamp_ns,
            payload: self.payload(e),
        })
    }

    /// Appends the events `[from, to)` (`from` must be in the window, `to` at most its end)
    /// to `out`, stopping after about `max_bytes` of payload (at least one event).
    ///
    /// Events in sealed chunks are zero-copy slices. Those still in the active chunk lie
    /// back to back there: they are copied out together, into one buffer the events then
    /// slice, so a batch costs one allocation rather than one per event.
    pub fn read(&self, from: u64, to: u64, max_bytes: usize, out: &mut Vec<RedexEvent>) {
        let skip = (from - self.start) as usize;
        let end = (to - self.start) as usize;
        let mut budget = max_bytes;
        let mut i = skip;
        let active = self.active_id();
        while i < end {
            let e = &self.entries[i];
            if budget < e.len as usize && i > skip {
                return;
            }
            budget = budget.saturating_sub(e.len as usize);
            if e.chunk != active {
                out.push(RedexEvent {
                    seq: self.start + i as u64,
                    timestamp_ns: e.timestamp_ns,
                    payload: self.payload(e),
                });
                i += 1;
                continue;
            }
            // From here on every event is in the active chunk: take the run the budget
            // allows, then copy its bytes once.
            let first = i;
            i += 1;
            while i < end {
                let len = self.entries[i].len as usize;
                if budget < len {
                    break;
                }
                budget -= len;
                i += 1;
            }
            let head = &self.entries[first];
            if i == first + 1 {
                out.push(RedexEvent {
                    seq: self.start + first as u64,
                    timestamp_ns: head.timestamp_ns,
                    payload: self.payload(head),
                });
                return;
            }
            let base = head.offset as usize;
            let last = &self.entries[i - 1];
            let bytes = Bytes::copy_from_slice(
                &self.active[base..last.offset as usize + last.len as usize],
            );
            out.reserve(i - first);
            for (k, e) in self.entries.range(first..i).enumerate() {
                let off = e.offset as usize - base;
                out.push(RedexEvent {
                    seq: self.start + (first + k) as u64,
                    timestamp_ns: e.timestamp_ns,
                    payload: bytes.slice(off..off + e.len as usize),
                });
            }
            return;
        }
    }

    /// `(timestamp_ns, payload_len)` of the events from `seq` on.
    pub fn meta_from(&self, seq: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let skip = seq.saturating_sub(self.start) as usize;
        self.entries
            .range(skip.min(self.entries.len())..)
            .map(|e| (e.timestamp_ns, u64::from(e.len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_survive_sealing_and_eviction() {
        let mut w = HotWindow::new(10);
        let payload = |i: u64| vec![i as u8; (i as usize * 997) % 5000];
        for i in 0..200 {
            w.push(i, &payload(i));
        }
        let before: Vec<_> = (10..210).map(|s| w.event(s).unwrap()).collect();
        for (k, e) in before.iter().enumerate() {
            assert_eq!(e.payload, payload(k as u64));
            assert_eq!(e.timestamp_ns, k as u64);
        }
        for _ in 0..150 {
            w.pop_front().unwrap();
        }
        assert_eq!(w.start(), 160);
        assert!(w.event(159).is_none());
        for s in 160..210 {
            assert_eq!(w.event(s).unwrap().payload, payload(s - 10));
        }
        // Slices handed out earlier stay valid after their chunk left the window.
        assert_eq!(before[0].payload, payload(0));
        for i in 200..400 {
            w.push(i, &payload(i));
        }
        for s in 160..410 {
            assert_eq!(w.event(s).unwrap().payload, payload(s - 10));
        }
        w.reset(1000);
        assert!(w.is_empty());
        assert_eq!(w.bytes(), 0);
        w.push(0, b"x");
        assert_eq!(w.event(1000).unwrap().payload, &b"x"[..]);
    }

    #[test]
    fn batched_reads_match_single_event_reads() {
        let mut w = HotWindow::new(5);
        let payload = |i: u64| vec![i as u8; 1 + (i as usize * 131) % 3000];
        for i in 0..120 {
            w.push(i, &payload(i));
        }
        let end = 125;
        for from in [5, 6, 40, 100, 124] {
            for max_bytes in [0, 1, 2000, 10_000, usize::MAX] {
                let mut got = Vec::new();
                w.read(from, end, max_bytes, &mut got);
                assert!(!got.is_empty());
                let mut budget = max_bytes;
                for (k, e) in got.iter().enumerate() {
                    let want = w.event(from + k as u64).unwrap();
                    assert_eq!(*e, want);
                    assert!(k == 0 || budget >= e.payload.len());
                    budget = budget.saturating_sub(e.payload.len());
                }
                // It stopped at the end or where the next event would overrun the budget.
                let next = from + got.len() as u64;
                assert!(next == end || w.event(next).unwrap().payload.len() > budget);
            }
        }
    }

    #[test]
    fn a_payload_larger_than_a_chunk_gets_its_own() {
        let mut w = HotWindow::new(0);
        w.push(0, b"small");
        w.push(1, &vec![9; CHUNK * 2 + 3]);
        w.push(2, b"after");
        assert_eq!(w.event(1).unwrap().payload.len(), CHUNK * 2 + 3);
        assert_eq!(w.event(2).unwrap().payload, &b"after"[..]);
        assert_eq!(w.event(0).unwrap().payload, &b"small"[..]);
    }
}
