//! Tails: cursors that stream a file's events, backfill then live.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::file::FileInner;
use super::{RedexError, RedexEvent};

/// Events fetched per lock acquisition while catching up.
const TAIL_BATCH_EVENTS: u64 = 1024;
/// Payload bytes fetched per lock acquisition while catching up.
const TAIL_BATCH_BYTES: usize = 4 << 20;

/// The stream returned by [`RedexFile::tail`](super::RedexFile::tail).
///
/// It holds only a position: reading a batch takes the file lock briefly, and a tail that
/// is not polled costs the log nothing.
pub struct RedexTail {
    file: Arc<FileInner>,
    next: u64,
    buf: VecDeque<RedexEvent>,
    /// What a read fetches, before it moves to `buf`; kept for its allocation.
    scratch: Vec<RedexEvent>,
    waker_slot: Option<(u64, usize)>,
    done: bool,
}

impl std::fmt::Debug for RedexTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedexTail")
            .field("channel", &self.file.channel)
            .field("next_seq", &self.next_seq())
            .field("done", &self.done)
            .finish()
    }
}

impl RedexTail {
    pub(crate) fn new(file: Arc<FileInner>, from: u64) -> Self {
        RedexTail {
            file,
            next: from,
            buf: VecDeque::new(),
            scratch: Vec::new(),
            waker_slot: None,
            done: false,
        }
    }

    /// The sequence number of the next event this tail will yield.
    pub fn next_seq(&self) -> u64 {
        self.buf.front().map_or(self.next, |e| e.seq)
    }
}

impl Drop for RedexTail {
    fn drop(&mut self) {
        if self.waker_slot.is_some() {
            let forgotten = self.file.lock().forget_waker(self.waker_slot);
            drop(forgotten); // after the lock is released
        }
    }
}

impl Stream for RedexTail {
    type Item = Result<RedexEvent, RedexError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(ev) = this.buf.pop_front() {
            return Poll::Ready(Some(Ok(ev)));
        }
        if this.done {
            return Poll::Ready(None);
        }
        let to = this.next.saturating_add(TAIL_BATCH_EVENTS);
        let batch = &mut this.scratch;
        batch.clear();
        match this.file.read_chunk(this.next, to, TAIL_BATCH_BYTES, batch) {
            Ok(None) => {
                let mut events = batch.drain(..);
                let first = events
                    .next()
                    .expect("a read that found events returns some");
                this.buf.extend(events);
                this.next = this.buf.back().map_or(first.seq, |e| e.seq) + 1;
                Poll::Ready(Some(Ok(first)))
            }
            // Nothing to read, and the lock still held: no append can slip in unseen.
            Ok(Some(mut st)) => {
                if st.closed {
                    this.done = true;
                    return Poll::Ready(None);
                }
                let displaced = st.register_waker(cx.waker(), &mut this.waker_slot);
                drop(st);
                drop(displaced); // after the lock is released
                Poll::Pending
            }
            // Retention passed this tail: say so once, then go on from the oldest event.
            Err(
                e @ RedexError::Evicted {
                    first_available, ..
                },
            ) => {
                this.next = first_available;
                Poll::Ready(Some(Err(e)))
            }
            Err(e) => {
                this.done = true;
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    use futures_core::Stream;

    use crate::redex::{Redex, RedexFileConfig};

    #[test]
    fn dropped_parked_tails_do_not_pile_up() {
        let redex = Redex::new();
        let file = redex
            .open_file(&"parked".parse().unwrap(), RedexFileConfig::default())
            .unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        let live: Vec<_> = (0..3)
            .map(|_| {
                let mut t = file.tail(0);
                assert!(Pin::new(&mut t).poll_next(&mut cx).is_pending());
                t
            })
            .collect();
        for _ in 0..10_000 {
            let mut t = file.tail(0);
            assert!(Pin::new(&mut t).poll_next(&mut cx).is_pending());
        }
        let entries = file.inner.lock().parked_entries();
        assert!(entries < 200, "{entries} waker entries for 3 live tails");
        // The live tails still hear about the next append.
        file.append(b"x").unwrap();
        for mut t in live {
            assert!(matches!(
                Pin::new(&mut t).poll_next(&mut cx),
                Poll::Ready(Some(Ok(_)))
            ));
        }
    }
}
