//! Flow slot storage, and the prefetch hints that let a batch's lookups
//! overlap their cache misses.

use super::state::Flow;
use crate::flow::key::FlowKey;

/// The distance between the look-ahead stages of
/// [`FlowTable::observe_batch`], in packets.
pub(super) const AHEAD: usize = 4;

/// Asks the CPU to start loading the cache line holding `addr`: a hint,
/// which does nothing where there is no stable prefetch instruction.
#[inline(always)]
#[allow(unsafe_code)]
pub(super) fn prefetch_addr(addr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and changes no memory, whatever the
    // address, and nothing is dereferenced; SSE is part of every x86-64 CPU.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// [`prefetch_addr`] for the first cache line of `*p`.
#[inline(always)]
pub(super) fn prefetch<T>(p: &T) {
    prefetch_addr((p as *const T).cast());
}

/// [`prefetch_addr`] for every cache line of `*p`.
#[inline(always)]
pub(super) fn prefetch_object<T>(p: &T) {
    let start: *const u8 = (p as *const T).cast();
    let mut offset = 0;
    while offset < std::mem::size_of::<T>() {
        prefetch_addr(start.wrapping_add(offset));
        offset += 64;
    }
    // The last line, when the object does not start on a line boundary.
    prefetch_addr(start.wrapping_add(std::mem::size_of::<T>().saturating_sub(1)));
}

/// Flow slots in fixed chunks: growing never moves flows or doubles the
/// memory, so the slack is at most one chunk. Under a flow limit the last
/// chunk holds only the slots left, so that a small limit is not rounded
/// up to a whole chunk.
#[derive(Debug, Default)]
pub(super) struct Slab {
    chunks: Vec<Box<[Option<Flow>]>>,
    /// Slots handed out so far (occupied or free).
    len: u32,
    /// The most slots the table will need (its flow limit), or 0 for no
    /// limit.
    limit: u32,
}

const CHUNK_BITS: u32 = 12;
const CHUNK: usize = 1 << CHUNK_BITS;
const CHUNK_MASK: u32 = (1 << CHUNK_BITS) - 1;

/// The chunk of slot `i`, and its position there.
#[inline(always)]
fn locate(i: u32) -> (usize, usize) {
    ((i >> CHUNK_BITS) as usize, (i & CHUNK_MASK) as usize)
}

impl Slab {
    /// Slots for a table of at most `limit` flows (0: no limit).
    pub(super) fn with_limit(limit: usize) -> Slab {
        Slab {
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            ..Slab::default()
        }
    }

    #[inline]
    pub(super) fn slot(&self, i: u32) -> &Option<Flow> {
        let (chunk, at) = locate(i);
        &self.chunks[chunk][at]
    }

    /// Slot `i`, or `None` if there is no such slot.
    #[inline]
    pub(super) fn try_slot(&self, i: u32) -> Option<&Option<Flow>> {
        let (chunk, at) = locate(i);
        self.chunks.get(chunk)?.get(at)
    }

    #[inline]
    pub(super) fn slot_mut(&mut self, i: u32) -> &mut Option<Flow> {
        let (chunk, at) = locate(i);
        &mut self.chunks[chunk][at]
    }

    #[inline]
    pub(super) fn get(&self, i: u32) -> Option<&Flow> {
        self.slot(i).as_ref()
    }

    #[inline]
    pub(super) fn get_mut(&mut self, i: u32) -> Option<&mut Flow> {
        self.slot_mut(i).as_mut()
    }

    #[inline]
    pub(super) fn key_is(&self, i: u32, key: &FlowKey) -> bool {
        self.get(i).is_some_and(|f| f.key == *key)
    }

    #[inline]
    pub(super) fn put(&mut self, i: u32, flow: Flow) {
        *self.slot_mut(i) = Some(flow);
    }

    #[inline]
    pub(super) fn take(&mut self, i: u32) -> Option<Flow> {
        self.slot_mut(i).take()
    }

    /// The occupied slots and their flows, in memory order.
    pub(super) fn occupied(&self) -> impl Iterator<Item = (u32, &Flow)> {
        self.chunks
            .iter()
            .flat_map(|chunk| chunk.iter())
            .take(self.len as usize)
            .enumerate()
            .filter_map(|(i, slot)| slot.as_ref().map(|f| (i as u32, f)))
    }

    /// A new slot holding `flow`.
    #[inline]
    pub(super) fn push(&mut self, flow: Flow) -> u32 {
        let i = self.len;
        let (chunk, at) = locate(i);
        if chunk == self.chunks.len() {
            // Under a limit, the last chunk holds what is left of it.
            let left = (self.limit as usize).saturating_sub(i as usize);
            let n = if left == 0 { CHUNK } else { left.min(CHUNK) };
            self.chunks
                .push(std::iter::repeat_with(|| None).take(n).collect());
        } else if at == self.chunks[chunk].len() {
            // A short chunk is full: the table took more flows than its
            // limit (which it does not), so it becomes a whole one, its
            // flows moving with it.
            let mut slots = std::mem::take(&mut self.chunks[chunk]).into_vec();
            slots.resize_with(CHUNK, || None);
            self.chunks[chunk] = slots.into_boxed_slice();
        }
        self.len = i.checked_add(1).expect("fewer than 2^32 flows per table");
        self.put(i, flow);
        i
    }

    pub(super) fn allocated_bytes(&self) -> usize {
        // Only the last chunk may be short.
        let slots = self
            .chunks
            .last()
            .map_or(0, |last| (self.chunks.len() - 1) * CHUNK + last.len());
        slots * std::mem::size_of::<Option<Flow>>()
    }
}
