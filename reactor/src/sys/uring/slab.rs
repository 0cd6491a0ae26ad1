//! The in-flight table of a ring: who submitted each operation and what the kernel may touch
//! for it, found again from the CQE's `user_data`. No `unsafe` here, but the ring's soundness
//! rests on it: an entry (and the memory it owns) goes away only through `remove`, which the
//! ring calls at the operation's final CQE.

use super::InFlight;
use crate::uring::OpId;

/// The in-flight table: a slab indexed by the low 32 bits of `user_data`, whose high 32 bits
/// are the slot's generation, so a stale [`OpId`] (for a cancel) never matches a reused slot.
#[derive(Default)]
pub(super) struct Slab {
    pub(super) slots: Vec<Slot>,
    free: Vec<u32>,
    pub(super) live: usize,
}

pub(super) struct Slot {
    generation: u32,
    op: Option<InFlight>,
}

impl Slab {
    pub(super) fn insert(&mut self, op: InFlight) -> OpId {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    op: None,
                });
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 ops in flight")
            }
        };
        let slot = &mut self.slots[index as usize];
        debug_assert!(slot.op.is_none());
        slot.op = Some(op);
        self.live += 1;
        OpId(u64::from(slot.generation) << 32 | u64::from(index))
    }

    pub(super) fn get(&self, id: OpId) -> Option<&InFlight> {
        let slot = self.slots.get((id.0 as u32) as usize)?;
        (u64::from(slot.generation) == id.0 >> 32).then_some(slot.op.as_ref()?)
    }

    pub(super) fn remove(&mut self, id: OpId) -> Option<InFlight> {
        let index = id.0 as u32;
        let slot = self.slots.get_mut(index as usize)?;
        if u64::from(slot.generation) != id.0 >> 32 {
            return None;
        }
        let op = slot.op.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
        self.live -= 1;
        Some(op)
    }
}
