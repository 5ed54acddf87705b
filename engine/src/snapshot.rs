//! A value that a background thread replaces whole while flow workers read
//! it: the host's sockets ([`HostView`](crate::HostView)), the endpoint
//! directory of enrichment ([`EnrichmentView`](crate::enrich::EnrichmentView)).
//!
//! The refresher builds the next value off to the side and swaps it in with
//! [`Swap::set`]; a worker asks [`Swap::changed`] between batches, which is
//! one atomic load when nothing changed, and keeps the `Arc` it got until
//! the next change. Nothing on the packet path takes the lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The current snapshot of a `T`, shared between the thread that refreshes
/// it and the workers that read it.
#[derive(Debug)]
pub struct Swap<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Swap<T> {
    fn clone(&self) -> Self {
        Swap {
            shared: Arc::clone(&self.shared),
        }
    }
}

#[derive(Debug)]
struct Shared<T> {
    /// Bumped after every [`Swap::set`]; starts at 1.
    generation: AtomicU64,
    current: Mutex<Arc<T>>,
}

impl<T> Swap<T> {
    /// A view holding `first`.
    pub fn new(first: T) -> Swap<T> {
        Swap {
            shared: Arc::new(Shared {
                generation: AtomicU64::new(1),
                current: Mutex::new(Arc::new(first)),
            }),
        }
    }

    /// Replaces the snapshot.
    pub fn set(&self, next: T) {
        *self.lock() = Arc::new(next);
        self.shared.generation.fetch_add(1, Ordering::Release);
    }

    /// The current snapshot.
    pub fn get(&self) -> Arc<T> {
        Arc::clone(&self.lock())
    }

    /// The current snapshot if it changed since generation `*seen` (0 at
    /// first), updating `*seen`. One atomic load when nothing changed.
    pub fn changed(&self, seen: &mut u64) -> Option<Arc<T>> {
        let generation = self.shared.generation.load(Ordering::Acquire);
        if generation == *seen {
            return None;
        }
        *seen = generation;
        Some(self.get())
    }

    fn lock(&self) -> MutexGuard<'_, Arc<T>> {
        // A panic while holding the lock cannot leave the Arc half-written.
        self.shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
