//! Bounded single-producer, single-consumer rings that block by parking.
//!
//! The pipeline hands batches between threads over these. Sending and
//! receiving are lock-free ([`rtrb`] rings: one atomic store and, when the
//! cached index is stale, one atomic load); a side only parks its thread
//! when it has to wait (the ring is full or empty), after a short spin. No
//! message allocates.
//!
//! Waking is the Dekker pattern: the waiting side announces that it sleeps,
//! re-checks the ring, and parks; the other side changes the ring and then
//! checks the announcement. Sequentially consistent fences between each
//! side's write and read guarantee that at least one of them sees the
//! other's, so no wake-up is lost; `unpark` before `park` makes `park` return
//! at once.
//!
//! A consumer that drains several rings (the merge of the workers' records)
//! gives them all the same [`Waker`], so that it can sleep until any of them
//! has something.

use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, Thread};
use std::time::Instant;

/// Spins before parking. Hand-offs come every few microseconds under load,
/// so a short spin often avoids the cost of a park and wake-up.
const SPINS: u32 = 64;
/// Then yields before parking: with more threads than cores (the reader,
/// the workers and the output on two cores) the other side
/// may need this core to make progress, and waking a parked thread takes
/// far longer than a yield.
const YIELDS: u32 = 32;

/// How many free places a sender that found its ring full waits for: half
/// the ring, so that a fast sender resumes once per half ring instead of
/// once per message (each wake-up costs both sides a system call).
fn resume_room(capacity: usize) -> usize {
    capacity.div_ceil(2)
}

/// Where one thread sleeps while it waits on rings.
#[derive(Debug, Default)]
pub(crate) struct Waker {
    sleeping: AtomicBool,
    /// The thread that waits, recorded each time it is about to park: one
    /// thread at a time may wait on a `Waker`, but the side that waits may
    /// move between threads (a pipeline's record stream is made on one
    /// thread and drained on another).
    thread: Mutex<Option<Thread>>,
}

impl Waker {
    pub(crate) fn new() -> Arc<Waker> {
        Arc::new(Waker::default())
    }

    /// Returns once `ready()` holds, parking the calling thread in between.
    /// `ready` must become true only through changes followed by
    /// [`notify`](Self::notify).
    pub(crate) fn wait_until(&self, ready: impl FnMut() -> bool) {
        self.wait_until_deadline(ready, None);
    }

    /// Like [`wait_until`](Self::wait_until), but gives up at `deadline`;
    /// returns whether `ready()` held.
    pub(crate) fn wait_until_deadline(
        &self,
        mut ready: impl FnMut() -> bool,
        deadline: Option<Instant>,
    ) -> bool {
        for _ in 0..SPINS {
            if ready() {
                return true;
            }
            std::hint::spin_loop();
        }
        for _ in 0..YIELDS {
            if ready() {
                return true;
            }
            thread::yield_now();
        }
        {
            let mut waiter = self.thread.lock().unwrap_or_else(PoisonError::into_inner);
            if waiter
                .as_ref()
                .is_none_or(|t| t.id() != thread::current().id())
            {
                *waiter = Some(thread::current());
            }
        }
        loop {
            self.sleeping.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if ready() {
                self.sleeping.store(false, Ordering::Relaxed);
                return true;
            }
            match deadline {
                None => thread::park(),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        self.sleeping.store(false, Ordering::Relaxed);
                        return false;
                    }
                    thread::park_timeout(d - now);
                }
            }
            self.sleeping.store(false, Ordering::Relaxed);
            if ready() {
                return true;
            }
        }
    }

    /// Wakes the waiting thread if it sleeps. Call after every change that
    /// can make its `ready` true.
    pub(crate) fn notify(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst)
            && let Some(t) = self
                .thread
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
        {
            t.unpark();
        }
    }
}

/// The other side's [`Waker`], notified once more when this side is
/// dropped. It must be declared after the ring in a struct, so that it drops
/// after it: the other side then already sees the ring abandoned.
#[derive(Debug)]
struct Peer(Arc<Waker>);

impl Drop for Peer {
    fn drop(&mut self) {
        self.0.notify();
    }
}

/// The sending half of a ring.
#[derive(Debug)]
pub(crate) struct Sender<T> {
    ring: rtrb::Producer<T>,
    /// Where this side sleeps while the ring is full.
    own: Arc<Waker>,
    /// Wakes the receiver (after `ring`: see [`Peer`]).
    receiver: Peer,
}

/// The receiving half of a ring.
#[derive(Debug)]
pub(crate) struct Receiver<T> {
    ring: rtrb::Consumer<T>,
    /// Where this side sleeps while the ring is empty (possibly shared
    /// with other rings drained by the same thread).
    own: Arc<Waker>,
    /// Wakes the sender (after `ring`: see [`Peer`]).
    sender: Peer,
}

/// A ring of `capacity` messages whose receiver sleeps on `receiver_waker`.
pub(crate) fn ring<T>(capacity: usize, receiver_waker: Arc<Waker>) -> (Sender<T>, Receiver<T>) {
    let (p, c) = rtrb::RingBuffer::new(capacity);
    let sender_waker = Waker::new();
    (
        Sender {
            ring: p,
            own: sender_waker.clone(),
            receiver: Peer(receiver_waker.clone()),
        },
        Receiver {
            ring: c,
            own: receiver_waker,
            sender: Peer(sender_waker),
        },
    )
}

impl<T> Sender<T> {
    /// Sends `value`, waiting while the ring is full.
    ///
    /// # Errors
    /// The receiver is gone; `value` is given back.
    pub(crate) fn send(&mut self, value: T) -> Result<(), T> {
        let mut value = value;
        loop {
            if self.ring.is_abandoned() {
                return Err(value);
            }
            match self.ring.push(value) {
                Ok(()) => {
                    self.receiver.0.notify();
                    return Ok(());
                }
                Err(rtrb::PushError::Full(v)) => {
                    value = v;
                    let ring = &self.ring;
                    let room = resume_room(ring.buffer().capacity());
                    self.own
                        .wait_until(|| ring.slots() >= room || ring.is_abandoned());
                }
            }
        }
    }

    /// Sends `value` if there is room now.
    ///
    /// # Errors
    /// The ring is full or the receiver is gone; `value` is given back.
    pub(crate) fn try_send(&mut self, value: T) -> Result<(), T> {
        if self.ring.is_abandoned() {
            return Err(value);
        }
        match self.ring.push(value) {
            Ok(()) => {
                self.receiver.0.notify();
                Ok(())
            }
            Err(rtrb::PushError::Full(v)) => Err(v),
        }
    }
}

impl<T> Receiver<T> {
    /// The next message if one is ready.
    pub(crate) fn try_recv(&mut self) -> Option<T> {
        let v = self.ring.pop().ok()?;
        let capacity = self.ring.buffer().capacity();
        if capacity - self.ring.slots() >= resume_room(capacity) {
            self.sender.0.notify();
        }
        Some(v)
    }

    /// The next message, waiting for one; `None` once the sender is gone
    /// and every message has been received.
    pub(crate) fn recv(&mut self) -> Option<T> {
        loop {
            if let Some(v) = self.try_recv() {
                return Some(v);
            }
            if self.is_closed() {
                // A message sent just before the sender went away.
                return self.try_recv();
            }
            let ring = &self.ring;
            self.own
                .wait_until(|| !ring.is_empty() || ring.is_abandoned());
        }
    }

    /// Whether a message is ready or the sender is gone: what a thread
    /// that drains several rings waits for.
    pub(crate) fn has_news(&self) -> bool {
        !self.ring.is_empty() || self.ring.is_abandoned()
    }

    /// Whether the sender is gone (messages may still be queued).
    pub(crate) fn is_closed(&self) -> bool {
        self.ring.is_abandoned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Runs `f` on a thread and fails if it does not end within 20 s (a lost
    /// wake-up would leave it parked for ever).
    fn within_deadline<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(20))
            .expect("finished without a lost wake-up")
    }

    #[test]
    fn every_message_arrives_in_order_through_small_rings() {
        for capacity in [1, 2, 3, 8] {
            every_message_arrives_in_order(capacity);
        }
    }

    fn every_message_arrives_in_order(capacity: usize) {
        // Small rings make both sides wait and wake up constantly (a full
        // ring's sender waits for half of it to drain); the receiver
        // alternates fast and slow phases so both sides park.
        let sum = within_deadline(move || {
            let (mut tx, mut rx) = ring::<u64>(capacity, Waker::new());
            let sender = thread::spawn(move || {
                for i in 0..200_000u64 {
                    tx.send(i).expect("receiver alive");
                    if i % 50_000 == 0 {
                        thread::sleep(Duration::from_millis(5));
                    }
                }
            });
            let mut expected = 0;
            while let Some(v) = rx.recv() {
                assert_eq!(v, expected);
                expected += 1;
                if v % 40_000 == 0 {
                    thread::sleep(Duration::from_millis(5));
                }
            }
            sender.join().unwrap();
            expected
        });
        assert_eq!(sum, 200_000);
    }

    #[test]
    fn a_waiting_receiver_learns_that_the_sender_is_gone() {
        let got = within_deadline(|| {
            let (tx, mut rx) = ring::<u32>(4, Waker::new());
            let r = thread::spawn(move || rx.recv());
            thread::sleep(Duration::from_millis(50));
            drop(tx);
            r.join().unwrap()
        });
        assert_eq!(got, None);
    }

    #[test]
    fn a_message_sent_just_before_the_sender_left_is_received() {
        let (mut tx, mut rx) = ring::<u32>(4, Waker::new());
        tx.send(7).unwrap();
        drop(tx);
        assert!(rx.is_closed());
        assert_eq!(rx.recv(), Some(7));
        assert_eq!(rx.recv(), None);
    }

    #[test]
    fn a_sender_waiting_on_a_full_ring_gets_its_message_back_when_the_receiver_leaves() {
        let back = within_deadline(|| {
            let (mut tx, rx) = ring::<u32>(1, Waker::new());
            tx.send(1).unwrap();
            let s = thread::spawn(move || tx.send(2));
            thread::sleep(Duration::from_millis(50));
            drop(rx);
            s.join().unwrap()
        });
        assert_eq!(back, Err(2));
    }

    #[test]
    fn try_send_reports_a_full_ring() {
        let (mut tx, mut rx) = ring::<u32>(1, Waker::new());
        assert_eq!(tx.try_send(1), Ok(()));
        assert_eq!(tx.try_send(2), Err(2));
        assert_eq!(rx.try_recv(), Some(1));
        assert_eq!(rx.try_recv(), None);
    }

    #[test]
    fn one_thread_waits_on_several_rings_with_a_shared_waker() {
        let total = within_deadline(|| {
            let waker = Waker::new();
            let mut rxs = Vec::new();
            let mut senders = Vec::new();
            for k in 0..3u64 {
                let (mut tx, rx) = ring::<u64>(2, waker.clone());
                rxs.push(rx);
                senders.push(thread::spawn(move || {
                    for i in 0..20_000u64 {
                        tx.send(k * 1_000_000 + i).unwrap();
                    }
                }));
            }
            let mut next = [0u64; 3];
            let mut open = 3;
            while open > 0 {
                open = 0;
                for (k, rx) in rxs.iter_mut().enumerate() {
                    while let Some(v) = rx.try_recv() {
                        assert_eq!(v, k as u64 * 1_000_000 + next[k]);
                        next[k] += 1;
                    }
                    if !(rx.is_closed() && next[k] == 20_000) {
                        open += 1;
                    }
                }
                if open > 0 {
                    waker.wait_until(|| rxs.iter().any(Receiver::has_news));
                }
            }
            for s in senders {
                s.join().unwrap();
            }
            next.iter().sum::<u64>()
        });
        assert_eq!(total, 60_000);
    }
}
