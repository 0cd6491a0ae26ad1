//! Model check of `pool::Ring`, Dmitry Vyukov's bounded MPMC queue, driven from one thread.
//!
//! One thread cannot exercise the races (that is loom's job, in `pool/tests/loom.rs`), but it
//! can drive the sequence-number arithmetic through every state a slot goes through: empty,
//! full, many laps around a ring of 2 to 16 slots, pushes refused when full and pops refused
//! when empty, with and without the single-producer handle. After every operation the ring
//! must agree with a `VecDeque` bounded at the ring's capacity: the same result, the same
//! item, the same `len()`. (Single-threaded, `len()` is exact, not the racy snapshot it is
//! under concurrency.)
//!
//! Items are [`Tracked`] values that count their drops, so the check also sees a leak or a
//! double drop: a refused push must hand the item back, a pop must move it out, and dropping
//! the ring must drop exactly the items still queued, once each.
//!
//! Input format:
//!
//! ```text
//! byte 0      capacity requested = 1 + (b & 15), so 1..=16 (rounded up by the ring to a
//!             power of two, at least 2); bit 7 set = push through `Ring::with_single_producer`
//! each next   one operation: bits 0-1 the kind, bits 2-7 a count - 1 (1..=64):
//!             0 push count items, 1 pop count times, 2 count (push, pop) pairs,
//!             3 pop until empty
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use pool::{Producer, Ring};

/// Runs one fuzz input; panics if the ring and the model disagree.
pub fn check(input: &[u8]) {
    let Some((&config, ops)) = input.split_first() else {
        return;
    };
    let requested = 1 + usize::from(config & 15);
    let drops = DropLog::default();
    let mut harness = Harness::new(requested, config & 0x80 != 0, &drops);
    for &op in ops {
        let count = usize::from(op >> 2) + 1;
        match op & 3 {
            0 => (0..count).for_each(|_| harness.push()),
            1 => (0..count).for_each(|_| harness.pop()),
            2 => (0..count).for_each(|_| {
                harness.push();
                harness.pop();
            }),
            _ => {
                while !harness.model.is_empty() {
                    harness.pop();
                }
                harness.pop();
            }
        }
    }
    let queued: Vec<u64> = harness.model.iter().copied().collect();
    drop(harness);
    drops.assert_all_dropped_once(&queued);
}

/// An item that records its drop in a shared log, by id.
#[derive(Debug)]
struct Tracked {
    id: u64,
    log: DropLog,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.log.record(self.id);
    }
}

/// The drop count of every item made so far (index = id), shared by the items. A `Mutex`,
/// not a `RefCell`, only so that `Tracked` is `Send` like any real job: the ring is `Sync`
/// only for `Send` items.
#[derive(Clone, Debug, Default)]
struct DropLog(Arc<Mutex<Drops>>);

#[derive(Debug, Default)]
struct Drops {
    /// Times item `id` was dropped: 0 while alive, then 1; 2 would be a double drop.
    counts: Vec<u32>,
    /// Items made and not yet dropped.
    live: usize,
}

impl DropLog {
    fn make(&self) -> Tracked {
        let mut drops = self.0.lock().unwrap();
        drops.counts.push(0);
        drops.live += 1;
        Tracked {
            id: drops.counts.len() as u64 - 1,
            log: self.clone(),
        }
    }

    fn record(&self, id: u64) {
        let mut drops = self.0.lock().unwrap();
        drops.counts[id as usize] += 1;
        assert_eq!(drops.counts[id as usize], 1, "item {id} dropped twice");
        drops.live -= 1;
    }

    /// Items alive: made but not yet dropped.
    fn live(&self) -> usize {
        self.0.lock().unwrap().live
    }

    /// Once the ring is gone, every item ever made has been dropped exactly once; `queued`
    /// (the items the ring held when it was dropped) included.
    fn assert_all_dropped_once(&self, queued: &[u64]) {
        let drops = self.0.lock().unwrap();
        for (id, &count) in drops.counts.iter().enumerate() {
            assert_eq!(
                count,
                1,
                "item {id} dropped {count} times (queued at ring drop: {})",
                queued.contains(&(id as u64))
            );
        }
    }
}

/// The ring under test, its optional single producer, and the model.
struct Harness<'a> {
    ring: Arc<Ring<Tracked>>,
    producer: Option<Producer<Tracked>>,
    /// Ids of the queued items, oldest first.
    model: VecDeque<u64>,
    capacity: usize,
    drops: &'a DropLog,
}

impl<'a> Harness<'a> {
    fn new(requested: usize, single_producer: bool, drops: &'a DropLog) -> Harness<'a> {
        let (producer, ring) = if single_producer {
            let (producer, ring) = Ring::with_single_producer(requested);
            (Some(producer), ring)
        } else {
            (None, Arc::new(Ring::new(requested)))
        };
        // `Ring::new` documents the rounding: up to a power of two, and at least 2.
        let capacity = requested.max(2).next_power_of_two();
        assert_eq!(
            ring.capacity(),
            capacity,
            "capacity for {requested} requested"
        );
        Harness {
            ring,
            producer,
            model: VecDeque::with_capacity(capacity),
            capacity,
            drops,
        }
    }

    fn push(&mut self) {
        let item = self.drops.make();
        let id = item.id;
        let result = match &mut self.producer {
            Some(producer) => producer.try_push(item),
            None => self.ring.try_push(item),
        };
        match result {
            Ok(()) => {
                assert!(
                    self.model.len() < self.capacity,
                    "push into a full ring succeeded"
                );
                self.model.push_back(id);
            }
            Err(back) => {
                assert_eq!(
                    self.model.len(),
                    self.capacity,
                    "push refused with room left"
                );
                assert_eq!(back.id, id, "a refused push must return the same item");
            }
        }
        self.check_len();
    }

    fn pop(&mut self) {
        let got = self.ring.try_pop().map(|item| item.id);
        assert_eq!(got, self.model.pop_front(), "pop returned the wrong item");
        self.check_len();
    }

    fn check_len(&self) {
        assert_eq!(self.ring.len(), self.model.len(), "len()");
        assert_eq!(self.ring.is_empty(), self.model.is_empty(), "is_empty()");
        // Every item not in the ring has been dropped: nothing leaked, nothing lost.
        assert_eq!(
            self.drops.live(),
            self.model.len(),
            "live items vs queued items"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "dropped twice")]
    fn a_double_drop_is_caught() {
        let log = DropLog::default();
        let item = log.make();
        log.record(item.id);
        drop(item);
    }

    #[test]
    #[should_panic(expected = "dropped 0 times")]
    fn a_leak_is_caught() {
        let log = DropLog::default();
        std::mem::forget(log.make());
        log.assert_all_dropped_once(&[]);
    }

    #[test]
    fn a_full_ring_refuses_and_laps() {
        // Capacity 3 rounds to 4; push 5 (one refused), pop 5 (one empty), four times.
        check(&[2, 4 << 2, 4 << 2 | 1, 4 << 2, 4 << 2 | 1, 15 << 2 | 2, 3]);
    }
}
