//! The timer lists: intrusive doubly-linked lists over the slot array,
//! one per idle class in last-seen order and one for the active timeout in
//! record-start order. Expiring is popping heads.

/// No slot: the end of a list.
pub(super) const NIL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Link {
    pub(super) prev: u32,
    pub(super) next: u32,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct List {
    pub(super) head: u32,
    pub(super) tail: u32,
}

impl List {
    pub(super) const EMPTY: List = List {
        head: NIL,
        tail: NIL,
    };

    #[inline]
    pub(super) fn push_back(&mut self, links: &mut [Link], i: u32) {
        links[i as usize] = Link {
            prev: self.tail,
            next: NIL,
        };
        if self.tail == NIL {
            self.head = i;
        } else {
            links[self.tail as usize].next = i;
        }
        self.tail = i;
    }

    /// Moves `i`, already in the list, to its back; nothing to do (and no
    /// neighbour to touch) when it is there already, as for consecutive
    /// packets of one flow.
    #[inline]
    pub(super) fn move_to_back(&mut self, links: &mut [Link], i: u32) {
        if self.tail != i {
            self.unlink(links, i);
            self.push_back(links, i);
        }
    }

    #[inline]
    pub(super) fn unlink(&mut self, links: &mut [Link], i: u32) {
        let Link { prev, next } = links[i as usize];
        if prev == NIL {
            self.head = next;
        } else {
            links[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            links[next as usize].prev = prev;
        }
        links[i as usize] = Link {
            prev: NIL,
            next: NIL,
        };
    }
}
