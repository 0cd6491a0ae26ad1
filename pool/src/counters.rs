//! Four ways to count from many threads at once: one wrong on purpose, three right at
//! different prices.
//!
//! | counter           | increment                       | exact | cost when two cores count        |
//! |-------------------|---------------------------------|-------|----------------------------------|
//! | [`RacyCounter`]   | `load`, then `store(v + 1)`     | no    | cheap, and wrong                 |
//! | [`AtomicCounter`] | `fetch_add` (`lock xadd`)       | yes   | the cache line bounces per add   |
//! | [`ShardedCounter`]| `fetch_add` on this thread's slot | yes | near-free adds, a sum per read   |
//! | [`MutexCounter`]  | lock, `+= 1`, unlock            | yes   | a contended lock per add         |
//!
//! `cargo run -p pool --release --bin counter-race` measures all four.
//!
//! # Why the racy counter uses atomics
//!
//! The race we want to show is the lost update: two threads both read 41, both add one,
//! both store 42, and one increment vanishes. In C one would write `counter++` on a plain
//! `int`; the Rust equivalent, a `static mut u64` or an `UnsafeCell` written by two threads,
//! is a *data race*, which is undefined behaviour: the compiler may assume it never happens,
//! keep the value in a register for the whole loop, or fold a million increments into one
//! add, so the program would show whatever the optimizer produced rather than the race.
//! An atomic accessed with a separate `load` and `store` has no data race (each access is
//! indivisible and the language defines what every load may return), yet the
//! read-modify-write as a whole is not atomic. That is a *race condition* at the logic level,
//! with defined behaviour: exactly the lost update, and nothing else, which is what a reader
//! should see. `Ordering::Relaxed` is enough: no other memory is published through it.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};

use crate::cache_padded::CachePadded;

/// A counter shared by many threads.
pub trait Counter: Send + Sync {
    /// Adds `n`.
    fn add(&self, n: u64);

    /// Adds one.
    fn incr(&self) {
        self.add(1);
    }

    /// The current total. Once every incrementing thread has been joined it is final; while
    /// they run it is a snapshot.
    fn get(&self) -> u64;

    /// A short name for tables and logs.
    fn name(&self) -> &'static str;
}

/// DELIBERATELY WRONG: increments with a separate atomic load and store, so concurrent
/// increments can overwrite each other (lost updates). No undefined behaviour: see the module
/// documentation.
///
/// Cost: a load and a store, no lock prefix; the cache line still moves between cores on
/// every write, so it is not even fast under contention. Right only when a single thread
/// writes (the pool's per-worker statistics use exactly this pattern for that reason).
#[derive(Debug, Default)]
pub struct RacyCounter {
    value: CachePadded<AtomicU64>,
}

/// Increments with `fetch_add` (`lock xadd` on x86_64): every increment counts.
///
/// Cost: about 5 ns uncontended, but under contention every add must own the cache line,
/// so two cores adding in a loop serialize on it (tens of ns per add). Right for counters
/// that are read often or updated rarely.
#[derive(Debug, Default)]
pub struct AtomicCounter {
    value: CachePadded<AtomicU64>,
}

/// One cache-padded slot per thread (by a per-thread index, modulo the slot count); adds go
/// to the caller's slot, reads sum all slots.
///
/// Cost: an add is an uncontended `fetch_add` on a line the thread usually owns; a read
/// touches every slot (`O(slots)` cache misses) and, while threads are adding, returns a sum
/// that was never the exact total at any single instant (but never more than the final
/// total). Memory: 128 bytes per slot. Right for hot statistics read rarely: bytes and
/// connections counted on every read. Two threads that land on the same slot (more threads
/// than slots) still count exactly, because the slot is added with `fetch_add`, not a store.
#[derive(Debug)]
pub struct ShardedCounter {
    shards: Box<[CachePadded<AtomicU64>]>,
}

/// A `Mutex<u64>`: lock, add, unlock.
///
/// Cost: uncontended, an atomic to lock and one to unlock (about twice an `AtomicCounter`);
/// contended, waiters spin then sleep in `futex(2)`, micro-seconds each. Right when the
/// counter is part of a larger invariant that must change together under one lock.
#[derive(Debug, Default)]
pub struct MutexCounter {
    value: CachePadded<Mutex<u64>>,
}

impl RacyCounter {
    /// A counter at zero.
    pub fn new() -> RacyCounter {
        RacyCounter::default()
    }
}

impl Counter for RacyCounter {
    /// Deliberately racy: between this load and this store another thread's increment can
    /// land and be overwritten.
    #[inline]
    fn add(&self, n: u64) {
        let seen = self.value.load(Relaxed);
        self.value.store(seen.wrapping_add(n), Relaxed);
    }

    fn get(&self) -> u64 {
        self.value.load(Relaxed)
    }

    fn name(&self) -> &'static str {
        "racy"
    }
}

impl AtomicCounter {
    /// A counter at zero.
    pub fn new() -> AtomicCounter {
        AtomicCounter::default()
    }
}

impl Counter for AtomicCounter {
    #[inline]
    fn add(&self, n: u64) {
        // Relaxed: the count publishes no other data, and `fetch_add` is atomic at any ordering.
        self.value.fetch_add(n, Relaxed);
    }

    fn get(&self) -> u64 {
        self.value.load(Relaxed)
    }

    fn name(&self) -> &'static str {
        "atomic"
    }
}

impl ShardedCounter {
    /// A counter at zero with two slots per available core (rounded up to a power of two),
    /// so threads rarely share one.
    pub fn new() -> ShardedCounter {
        static DEFAULT_SHARDS: OnceLock<usize> = OnceLock::new();
        let shards = *DEFAULT_SHARDS.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            (cores * 2).next_power_of_two().min(1024)
        });
        ShardedCounter::with_shards(shards)
    }

    /// A counter at zero with `shards` slots (at least 1, rounded up to a power of two).
    pub fn with_shards(shards: usize) -> ShardedCounter {
        let shards = shards.max(1).next_power_of_two();
        ShardedCounter {
            shards: (0..shards).map(|_| CachePadded::default()).collect(),
        }
    }

    /// The number of slots.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }
}

impl Default for ShardedCounter {
    fn default() -> Self {
        ShardedCounter::new()
    }
}

impl Counter for ShardedCounter {
    #[inline]
    fn add(&self, n: u64) {
        let slot = thread_index() & (self.shards.len() - 1);
        self.shards[slot].fetch_add(n, Relaxed);
    }

    fn get(&self) -> u64 {
        self.shards
            .iter()
            .fold(0u64, |sum, shard| sum.wrapping_add(shard.load(Relaxed)))
    }

    fn name(&self) -> &'static str {
        "sharded"
    }
}

impl MutexCounter {
    /// A counter at zero.
    pub fn new() -> MutexCounter {
        MutexCounter::default()
    }
}

impl Counter for MutexCounter {
    #[inline]
    fn add(&self, n: u64) {
        // Poisoning cannot leave a `u64` half-updated, so a poisoned lock is used as is.
        let mut value = self.value.lock().unwrap_or_else(|p| p.into_inner());
        *value = value.wrapping_add(n);
    }

    fn get(&self) -> u64 {
        *self.value.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn name(&self) -> &'static str {
        "mutex"
    }
}

/// A small number unique to the calling thread, handed out in order of first use, so that
/// the threads of one run get consecutive indices and hence distinct slots.
#[inline]
fn thread_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX.with(|index| {
        if index.get() == usize::MAX {
            index.set(NEXT.fetch_add(1, Relaxed));
        }
        index.get()
    })
}
