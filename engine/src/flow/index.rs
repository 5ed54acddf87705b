//! The flow table's index: slot numbers by key hash, in one flat array.
//!
//! Open addressing with linear probing. Each entry is 8 bytes: the high 32
//! bits of the key's hash and the slot number of the flow, whose key the
//! caller compares. An entry's home position comes from its stored hash
//! bits, so growing and deleting (backward shift, no tombstones) never need
//! the keys. The array is at most 3/4 full, and a lookup usually reads one
//! cache line, whose address [`SlotIndex::entry_addr`] gives in advance so
//! that the table can prefetch it.

/// The slot number of an empty entry (never a real slot).
const EMPTY: u32 = u32::MAX;

/// Slot numbers by hash.
#[derive(Debug, Clone)]
pub(crate) struct SlotIndex {
    /// `(hash >> 32) << 32 | slot`, or `EMPTY` in the low half.
    entries: Vec<u64>,
    len: usize,
}

fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}

fn slot_of(entry: u64) -> u32 {
    entry as u32
}

impl SlotIndex {
    pub(crate) fn new() -> SlotIndex {
        SlotIndex {
            entries: vec![u64::from(EMPTY); 16],
            len: 0,
        }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn allocation_size(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<u64>()
    }

    #[inline]
    fn mask(&self) -> usize {
        self.entries.len() - 1
    }

    #[inline]
    fn home(&self, tag: u32) -> usize {
        tag as usize & self.mask()
    }

    /// Where a lookup of `hash` starts reading, for a prefetch.
    #[inline]
    pub(crate) fn entry_addr(&self, hash: u64) -> *const u8 {
        let at = self.home(tag_of(hash));
        self.entries[at..].as_ptr().cast()
    }

    /// The first slot stored under `hash` for which `is_it` holds.
    #[inline]
    pub(crate) fn find(&self, hash: u64, mut is_it: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = tag_of(hash);
        let mask = self.mask();
        let mut at = self.home(tag);
        loop {
            let e = self.entries[at];
            let slot = slot_of(e);
            if slot == EMPTY {
                return None;
            }
            if (e >> 32) as u32 == tag && is_it(slot) {
                return Some(slot);
            }
            at = (at + 1) & mask;
        }
    }

    /// Adds `slot` under `hash` (the caller knows it is not there yet).
    #[inline]
    pub(crate) fn insert(&mut self, hash: u64, slot: u32) {
        debug_assert_ne!(slot, EMPTY);
        if (self.len + 1) * 4 > self.entries.len() * 3 {
            self.grow();
        }
        self.place((u64::from(tag_of(hash)) << 32) | u64::from(slot));
        self.len += 1;
    }

    #[inline]
    fn place(&mut self, entry: u64) {
        let mask = self.mask();
        let mut at = self.home((entry >> 32) as u32);
        while slot_of(self.entries[at]) != EMPTY {
            at = (at + 1) & mask;
        }
        self.entries[at] = entry;
    }

    fn grow(&mut self) {
        let doubled = vec![u64::from(EMPTY); self.entries.len() * 2];
        let old = std::mem::replace(&mut self.entries, doubled);
        for e in old {
            if slot_of(e) != EMPTY {
                self.place(e);
            }
        }
    }

    /// Removes `slot`, stored under `hash`; false if it was not there.
    #[inline]
    pub(crate) fn remove(&mut self, hash: u64, slot: u32) -> bool {
        let tag = tag_of(hash);
        let mask = self.mask();
        let mut at = self.home(tag);
        loop {
            let e = self.entries[at];
            if slot_of(e) == EMPTY {
                return false;
            }
            if slot_of(e) == slot {
                break;
            }
            at = (at + 1) & mask;
        }
        // Backward shift: move later entries of the probe run into the hole
        // when their home is not between the hole and them (cyclically).
        let mut hole = at;
        let mut next = (hole + 1) & mask;
        loop {
            let e = self.entries[next];
            if slot_of(e) == EMPTY {
                break;
            }
            let home = self.home((e >> 32) as u32);
            let dist_home = next.wrapping_sub(home) & mask;
            let dist_hole = next.wrapping_sub(hole) & mask;
            if dist_home >= dist_hole {
                self.entries[hole] = e;
                hole = next;
            }
            next = (next + 1) & mask;
        }
        self.entries[hole] = u64::from(EMPTY);
        self.len -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// Inserts and removes agree with a map, whatever the collisions
        /// (hashes drawn from a small set so that probe runs overlap and
        /// wrap around).
        #[test]
        fn agrees_with_a_map(ops in proptest::collection::vec((any::<bool>(), 0u64..64, 0u32..200), 1..600)) {
            let mut index = SlotIndex::new();
            let mut model: HashMap<u32, u64> = HashMap::new();
            for (insert, h, slot) in ops {
                // Few distinct homes, and tags that collide.
                let hash = (h.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 0xf) << 28 | (h & 3);
                if insert {
                    if let std::collections::hash_map::Entry::Vacant(v) = model.entry(slot) {
                        v.insert(hash);
                        index.insert(hash, slot);
                    }
                } else {
                    let had = model.remove(&slot);
                    let removed = index.remove(had.unwrap_or(hash), slot);
                    prop_assert_eq!(removed, had.is_some());
                }
                prop_assert_eq!(index.len(), model.len());
                for (&s, &hs) in &model {
                    prop_assert_eq!(index.find(hs, |x| x == s), Some(s));
                }
                prop_assert!(index.len() * 4 <= index.entries.len() * 3);
            }
        }
    }
}
