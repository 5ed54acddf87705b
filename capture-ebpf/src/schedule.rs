//! When to read each flow map entry.
//!
//! Reading every entry every few hundred milliseconds costs userspace CPU in
//! proportion to the open flows, busy or not (a node with a million mostly
//! quiet flows would copy about 690 MB a second at two reads a second: 344
//! bytes of key and value each). Instead the engine reads an
//! entry only when something can be due for it: its idle timeout or TCP
//! linger may have run out, or an active-timeout record is next. The
//! programs say when an entry is made and when its TCP flow closes
//! (notices in the ring buffer); each read says when the next one is due.
//!
//! [`Schedule`] keeps one due time per entry, in a heap. Moving an entry's
//! time leaves its old heap item behind, skipped when it comes up; the heap
//! is rebuilt when such items outnumber the live ones, so it stays within a
//! small multiple of the flow map's size.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::abi::FsKey;

/// One due time (monotonic nanoseconds) per flow map entry.
#[derive(Debug, Default)]
pub struct Schedule {
    due: HashMap<FsKey, u64, foldhash::fast::FixedState>,
    heap: BinaryHeap<Reverse<(u64, FsKey)>>,
}

impl Schedule {
    /// Entries with a due time.
    pub fn len(&self) -> usize {
        self.due.len()
    }

    /// Whether `key` has a due time.
    pub fn contains(&self, key: &FsKey) -> bool {
        self.due.contains_key(key)
    }

    /// `key` is due at `at` (replacing any time it had).
    pub fn set(&mut self, key: FsKey, at: u64) {
        if self.due.insert(key, at) != Some(at) {
            self.push(at, key);
        }
    }

    /// `key` is due at `at` at the latest: an earlier time it has stays.
    pub fn by(&mut self, key: FsKey, at: u64) {
        match self.due.get(&key) {
            Some(&t) if t <= at => {}
            _ => self.set(key, at),
        }
    }

    /// Forgets `key` (its entry was deleted).
    pub fn remove(&mut self, key: &FsKey) {
        self.due.remove(key);
    }

    /// The next entry due at or before `now`, taken out of the schedule
    /// (the caller sets its next time, or removes it).
    pub fn pop_due(&mut self, now: u64) -> Option<FsKey> {
        while let Some(&Reverse((at, key))) = self.heap.peek() {
            if at > now {
                return None;
            }
            self.heap.pop();
            // An item left behind when the entry's time moved, or after
            // it was removed.
            if self.due.get(&key) == Some(&at) {
                self.due.remove(&key);
                return Some(key);
            }
        }
        None
    }

    fn push(&mut self, at: u64, key: FsKey) {
        // Rebuilt from the live times when the items left behind
        // outnumber them: amortized constant time per push.
        if self.heap.len() >= 2 * self.due.len() + 1024 {
            self.heap = self.due.iter().map(|(k, &t)| Reverse((t, *k))).collect();
        }
        self.heap.push(Reverse((at, key)));
    }

    /// Heap items, live and left behind (for the bound's test).
    #[cfg(test)]
    fn items(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u16) -> FsKey {
        FsKey {
            a_port: n,
            protocol: 17,
            ..FsKey::default()
        }
    }

    #[test]
    fn entries_come_due_in_time_order_and_once() {
        let mut s = Schedule::default();
        s.set(key(1), 30);
        s.set(key(2), 10);
        s.set(key(3), 20);
        assert_eq!(s.pop_due(5), None);
        assert_eq!(s.pop_due(25), Some(key(2)));
        assert_eq!(s.pop_due(25), Some(key(3)));
        assert_eq!(s.pop_due(25), None);
        assert_eq!(s.len(), 1);
        assert_eq!(s.pop_due(100), Some(key(1)));
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn a_moved_or_removed_entry_comes_due_at_its_new_time_only() {
        let mut s = Schedule::default();
        s.set(key(1), 10);
        s.set(key(1), 50);
        s.set(key(2), 20);
        s.by(key(2), 40); // later: keeps 20
        s.by(key(1), 30); // earlier: moves to 30
        s.set(key(3), 15);
        s.remove(&key(3));
        assert_eq!(s.pop_due(25), Some(key(2)));
        assert_eq!(s.pop_due(29), None, "key 1 no longer due at 10");
        assert_eq!(s.pop_due(30), Some(key(1)));
        assert_eq!(s.pop_due(1000), None, "its item at 50 was left behind");
        assert!(!s.contains(&key(1)));
    }

    #[test]
    fn items_left_behind_stay_within_a_multiple_of_the_live_ones() {
        let mut s = Schedule::default();
        for round in 0..100u64 {
            for n in 0..100 {
                s.set(key(n), 1_000 - round);
            }
        }
        assert_eq!(s.len(), 100);
        assert!(s.items() <= 2 * 100 + 1024 + 1, "{} items", s.items());
        for n in 0..100 {
            s.remove(&key(n));
        }
        for n in 100..200 {
            s.set(key(n), 5);
        }
        let mut due = 0;
        while s.pop_due(2_000).is_some() {
            due += 1;
        }
        assert_eq!(due, 100);
    }
}
