//! `Ring` behaviour tests, in the manner of crossbeam-queue's `tests/array_queue.rs`: smoke,
//! capacity rules, laps around a tiny ring, spsc, mpmc with exact per-item accounting,
//! per-producer FIFO order, and drops.
//!
//! Real threads, real contention; counts are sized to finish in about a second in debug
//! builds on two cores. Skipped under loom (`tests/loom.rs` models the ring there).
#![cfg(not(loom))]

mod util;

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Barrier;
use std::thread;

use pool::{Ring, MAX_CAPACITY};
use util::DropCounter;

#[test]
fn smoke() {
    let ring = Ring::new(4);
    assert!(ring.is_empty());
    assert_eq!(ring.try_pop(), None);
    ring.try_push(7).unwrap();
    assert_eq!(ring.len(), 1);
    assert!(!ring.is_empty());
    assert_eq!(ring.try_pop(), Some(7));
    assert_eq!(ring.try_pop(), None);
    assert!(ring.is_empty());
}

#[test]
fn capacity_rounds_up_to_power_of_two_at_least_two() {
    assert_eq!(Ring::<u8>::new(1).capacity(), 2);
    assert_eq!(Ring::<u8>::new(2).capacity(), 2);
    assert_eq!(Ring::<u8>::new(3).capacity(), 4);
    assert_eq!(Ring::<u8>::new(1000).capacity(), 1024);
    assert_eq!(Ring::<u8>::new(1024).capacity(), 1024);
}

#[test]
#[should_panic(expected = "at least 1")]
fn zero_capacity_panics() {
    let _ = Ring::<u8>::new(0);
}

#[test]
#[should_panic(expected = "beyond the maximum")]
fn huge_capacity_panics_instead_of_overflowing() {
    let _ = Ring::<u8>::new(usize::MAX);
}

#[test]
#[should_panic(expected = "beyond the maximum")]
fn capacity_just_above_max_panics() {
    let _ = Ring::<u8>::new(MAX_CAPACITY + 1);
}

#[test]
fn full_ring_hands_the_value_back() {
    let ring = Ring::new(4);
    for i in 0..4 {
        ring.try_push(i).unwrap();
    }
    assert_eq!(ring.len(), 4);
    assert_eq!(ring.try_push(99), Err(99));
    assert_eq!(ring.try_pop(), Some(0));
    ring.try_push(4).unwrap();
    assert_eq!(ring.try_push(100), Err(100));
    let drained: Vec<i32> = std::iter::from_fn(|| ring.try_pop()).collect();
    assert_eq!(drained, [1, 2, 3, 4]);
}

#[test]
fn capacity_two_wraps_through_many_laps() {
    let ring = Ring::new(2);
    let laps = 100_000u64;
    for lap in 0..laps {
        // Alternate fill patterns so both slots take every role.
        ring.try_push(lap * 2).unwrap();
        if lap % 2 == 0 {
            assert_eq!(ring.try_pop(), Some(lap * 2));
            ring.try_push(lap * 2 + 1).unwrap();
            assert_eq!(ring.try_pop(), Some(lap * 2 + 1));
        } else {
            ring.try_push(lap * 2 + 1).unwrap();
            assert_eq!(ring.try_push(0), Err(0));
            assert_eq!(ring.try_pop(), Some(lap * 2));
            assert_eq!(ring.try_pop(), Some(lap * 2 + 1));
        }
        assert_eq!(ring.try_pop(), None);
    }
}

#[test]
fn spsc_preserves_order() {
    const COUNT: usize = 200_000;
    let ring = Ring::new(64);
    thread::scope(|s| {
        s.spawn(|| {
            for i in 0..COUNT {
                util::push_spinning(&ring, i);
            }
        });
        for expected in 0..COUNT {
            assert_eq!(util::pop_spinning(&ring), expected);
        }
    });
    assert!(ring.is_empty());
}

#[test]
fn single_producer_handle_preserves_order() {
    const COUNT: usize = 200_000;
    let (mut producer, ring) = Ring::with_single_producer(16);
    thread::scope(|s| {
        s.spawn(move || {
            for mut i in 0..COUNT {
                while let Err(back) = producer.try_push(i) {
                    i = back;
                    thread::yield_now();
                }
            }
        });
        for expected in 0..COUNT {
            assert_eq!(util::pop_spinning(&ring), expected);
        }
    });
}

#[test]
#[should_panic(expected = "single-producer ring")]
fn shared_push_on_single_producer_ring_panics() {
    let (_producer, ring) = Ring::with_single_producer(4);
    let _ = ring.try_push(1u8);
}

/// Every item is popped exactly once, and each consumer sees each producer's items in the
/// order they were pushed (the per-producer FIFO guarantee of a linearizable queue).
#[test]
fn mpmc_exact_accounting_and_per_producer_fifo() {
    const PRODUCERS: usize = 3;
    const CONSUMERS: usize = 3;
    const PER_PRODUCER: usize = 50_000;
    let ring = Ring::new(32);
    let seen: Vec<AtomicUsize> = (0..PRODUCERS * PER_PRODUCER)
        .map(|_| AtomicUsize::new(0))
        .collect();
    let popped = AtomicUsize::new(0);
    let start = Barrier::new(PRODUCERS + CONSUMERS);
    thread::scope(|s| {
        for p in 0..PRODUCERS {
            let (ring, start) = (&ring, &start);
            s.spawn(move || {
                start.wait();
                for i in 0..PER_PRODUCER {
                    util::push_spinning(ring, (p, i));
                }
            });
        }
        for _ in 0..CONSUMERS {
            let (ring, start, seen, popped) = (&ring, &start, &seen, &popped);
            s.spawn(move || {
                start.wait();
                let mut last = [None::<usize>; PRODUCERS];
                while popped.load(Relaxed) < PRODUCERS * PER_PRODUCER {
                    let Some((p, i)) = ring.try_pop() else {
                        thread::yield_now();
                        continue;
                    };
                    popped.fetch_add(1, Relaxed);
                    assert!(last[p] < Some(i), "producer {p}: {i} after {:?}", last[p]);
                    last[p] = Some(i);
                    seen[p * PER_PRODUCER + i].fetch_add(1, Relaxed);
                }
            });
        }
    });
    for (item, count) in seen.iter().enumerate() {
        assert_eq!(
            count.load(Relaxed),
            1,
            "item {item} popped a wrong number of times"
        );
    }
    assert_eq!(ring.try_pop(), None);
}

#[test]
fn drops_every_item_exactly_once() {
    const PUSHED: usize = 10_000;
    let drops = AtomicUsize::new(0);
    let ring = Ring::new(64);
    thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..PUSHED {
                util::push_spinning(&ring, DropCounter::new(&drops));
            }
        });
        // Pop (and drop) roughly half; the rest stays queued or is pushed later.
        let mut popped = 0;
        while popped < PUSHED - 64 {
            if ring.try_pop().is_some() {
                popped += 1;
            }
        }
        assert!(drops.load(Relaxed) >= popped);
    });
    let queued = ring.len();
    assert_eq!(drops.load(Relaxed), PUSHED - queued);
    drop(ring);
    assert_eq!(
        drops.load(Relaxed),
        PUSHED,
        "leftovers must be dropped with the ring"
    );
}

#[test]
fn leftovers_are_dropped_after_laps() {
    let drops = AtomicUsize::new(0);
    let ring = Ring::new(4);
    // Go around a few laps first, so the leftovers sit at wrapped positions.
    for _ in 0..10 {
        ring.try_push(DropCounter::new(&drops)).unwrap();
        drop(ring.try_pop());
    }
    for _ in 0..3 {
        ring.try_push(DropCounter::new(&drops)).unwrap();
    }
    assert_eq!(drops.load(Relaxed), 10);
    drop(ring);
    assert_eq!(drops.load(Relaxed), 13);
}

#[test]
fn ring_is_send_and_sync_for_send_items() {
    fn assert_send_sync<T: Send + Sync>() {}
    // `Cell` is Send but not Sync: the ring never shares an item, so it is still Sync.
    assert_send_sync::<Ring<std::cell::Cell<u8>>>();
    assert_send_sync::<Ring<Box<u64>>>();
    assert_send_sync::<pool::BlockingRing<std::cell::Cell<u8>>>();
}
