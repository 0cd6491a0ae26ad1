//! `BlockingRing<T>`: a [`Ring`] whose consumers sleep when it is empty, and whose producers
//! wake them without a system call while nobody sleeps.
//!
//! A worker with nothing to do should cost no CPU, but a worker that sleeps must never miss
//! the item pushed just as it fell asleep (the "lost wakeup"). The classic fix, a mutex held
//! around every push, would put a lock back in front of the lock-free ring. Instead:
//!
//! 1. **Spin briefly.** A consumer that finds the ring empty retries `try_pop` a bounded
//!    number of times with `spin_loop` in between: under load the next item usually arrives
//!    within a microsecond, far sooner than a sleep and a wakeup would take.
//! 2. **Announce, then re-check.** It then locks the park mutex, increments `sleepers`,
//!    issues a `SeqCst` fence, and tries the ring once more before it waits on the condvar.
//! 3. **Push, then look.** A producer pushes, issues a `SeqCst` fence, and reads `sleepers`.
//!    Only if it is non-zero does it take the mutex, hand out one wake permit and
//!    `notify_one`. While every consumer is busy, a push is the ring's CAS and a fence: no
//!    lock, no system call.
//!
//! Steps 2 and 3 are Dekker's pattern ("store mine, fence, load yours"): with a `SeqCst`
//! fence between each side's store and load, at least one side sees the other's store. Either
//! the consumer's re-check finds the item, or the producer sees `sleepers > 0`; and because
//! the consumer holds the mutex from its increment until `wait` releases it, a producer that
//! then takes the mutex finds the consumer already waiting, so the notification cannot fall
//! between the re-check and the wait. Without the fences both sides could read the old value
//! (x86_64 lets a load pass an earlier store to another address), and a consumer would sleep
//! on a non-empty ring. `tests/loom.rs` model-checks this handshake.
//!
//! **Pass the wakeup on.** Vyukov's pop reports "empty" when the head slot is claimed by a
//! producer that has not yet published it, even if later slots hold items (see `ring.rs`). A
//! consumer woken by the push of a *later* slot may therefore find nothing and go back to
//! sleep: that push's wakeup is spent, and when the head slot is published its single wakeup
//! lets one consumer take one item, while the later item waits with a consumer asleep. Loom
//! found exactly this deadlock in an earlier version of this file (the model
//! `two_consumers_two_pushes_all_wake`: two producers, two consumers, one item left behind).
//! The fix keeps the fast paths untouched: a consumer that took an item *after parking* looks
//! once more (fence, `sleepers`, ring length) and, if items remain and someone sleeps, wakes
//! one. Each wakeup that finds an item is thus passed along until the items or the sleepers
//! run out. (crossbeam-channel's array flavour instead has the receiver spin and yield until
//! the pending slot is published, which burns CPU for as long as that producer is preempted,
//! and which loom cannot model: it explores schedules where the producer never runs again.)
//!
//! **Exactly one wakeup per push, and only when needed.** The producer decrements `sleepers`
//! itself (under the mutex) and leaves a permit, so the woken consumer stops counting as
//! asleep at once: a second push before it runs will not wake it again, and wakes another
//! sleeper only if there is one. A consumer woken spuriously finds no permit and waits again.
//!
//! **Close.** `close` sets a flag and wakes every sleeper. Consumers keep popping until the
//! ring is empty and only then return `None`, so nothing pushed before `close` is lost. A push
//! that races with `close` may still succeed after the last consumer has left; such an item
//! stays in the ring and is dropped with it. `Pool` rules that race out by construction
//! (`Pool::shutdown` takes `self`, so no `submit` can be running).
//!
//! The sleeping itself is `std::sync::Condvar`, which on Linux is a `futex(2)` wait: a
//! sleeping worker is off the run queue and uses no CPU.

use std::fmt;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::time::{Duration, Instant};

use crate::cache_padded::CachePadded;
use crate::ring::Ring;
use crate::sync::{self, fence, AtomicBool, AtomicU64, AtomicUsize, Condvar, Mutex};

/// How many times a consumer retries an empty ring before it parks, by default.
///
/// Each retry is a load of the head slot plus a `pause` (about 40 ns on recent x86_64 cores,
/// where `pause` was lengthened to ~140 cycles), so the default spins for a few tens of
/// microseconds at most: long enough to catch the next item under load, short enough that an
/// idle worker parks almost at once. Loom builds spin once, to keep the models small.
#[cfg(not(loom))]
pub const DEFAULT_SPIN_LIMIT: u32 = 256;
/// How many times a consumer retries an empty ring before it parks, by default.
#[cfg(loom)]
pub const DEFAULT_SPIN_LIMIT: u32 = 1;

/// Why a push was refused.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PushError<T> {
    /// The ring is full; the value is handed back.
    Full(T),
    /// The ring was closed; the value is handed back.
    Closed(T),
}

/// A [`Ring`] with parking consumers. See the module documentation.
pub struct BlockingRing<T> {
    ring: Ring<T>,
    /// Consumers that are parked (or about to be) and have not yet been handed a permit.
    /// Changed only under `park`'s mutex; read without it by producers, after a fence.
    sleepers: CachePadded<AtomicUsize>,
    /// Set once by `close`; read by consumers on every empty poll.
    closed: AtomicBool,
    /// Wake permits handed out by producers and not yet taken by a woken consumer.
    park: Mutex<usize>,
    wake: Condvar,
    /// `notify_one` calls made by producers or passed on by consumers (each a `futex(2)` wake).
    wakeups: AtomicU64,
    spin_limit: u32,
}

impl<T> BlockingRing<T> {
    /// A blocking ring of at least `capacity` items (rules of [`Ring::new`]) whose consumers
    /// spin [`DEFAULT_SPIN_LIMIT`] times before parking.
    pub fn new(capacity: usize) -> BlockingRing<T> {
        BlockingRing::with_spin_limit(capacity, DEFAULT_SPIN_LIMIT)
    }

    /// Like [`new`](BlockingRing::new), with consumers retrying `spin_limit` times before they
    /// park (0: park at the first empty poll, which the latency benchmark uses).
    pub fn with_spin_limit(capacity: usize, spin_limit: u32) -> BlockingRing<T> {
        BlockingRing {
            ring: Ring::new(capacity),
            sleepers: CachePadded::new(AtomicUsize::new(0)),
            closed: AtomicBool::new(false),
            park: Mutex::new(0),
            wake: Condvar::new(),
            wakeups: AtomicU64::new(0),
            spin_limit,
        }
    }

    /// Pushes `value` and wakes one parked consumer if any is parked. Never blocks (beyond
    /// the park mutex, taken only when a consumer sleeps).
    pub fn push(&self, value: T) -> Result<(), PushError<T>> {
        if self.closed.load(Acquire) {
            return Err(PushError::Closed(value));
        }
        self.ring.try_push(value).map_err(PushError::Full)?;
        self.wake_one();
        Ok(())
    }

    /// Pops an item, parking while the ring is empty. Returns `None` only once the ring is
    /// closed and drained.
    pub fn pop(&self) -> Option<T> {
        self.pop_with(|_| {})
    }

    /// Like [`pop`](BlockingRing::pop), calling `on_parked(time asleep)` after each park, so
    /// a worker can account for its idle time.
    pub fn pop_with(&self, mut on_parked: impl FnMut(Duration)) -> Option<T> {
        let mut parked = false;
        loop {
            for _ in 0..=self.spin_limit {
                if let Some(value) = self.ring.try_pop() {
                    if parked {
                        self.pass_on_wakeup();
                    }
                    return Some(value);
                }
                if self.closed.load(Acquire) {
                    // Closed: items pushed before `close` are still ours to drain, so look
                    // once more after seeing the flag (Acquire orders this pop after them).
                    return self.ring.try_pop();
                }
                sync::spin_loop();
            }
            let asleep = Instant::now();
            let found = self.park();
            on_parked(asleep.elapsed());
            parked = true;
            if let Some(value) = found {
                self.pass_on_wakeup();
                return Some(value);
            }
        }
    }

    /// Stops intake and wakes every parked consumer. Consumers drain what is queued, then
    /// their `pop` returns `None`. Idempotent.
    pub fn close(&self) {
        self.closed.store(true, Release);
        // Taking the mutex orders the flag before any consumer's check under the mutex: a
        // consumer between its re-check and `wait` holds it, so it is waiting by the time
        // we notify.
        let _permits = sync::lock(&self.park);
        self.wake.notify_all();
    }

    /// Whether [`close`](BlockingRing::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Acquire)
    }

    /// Consumers parked and not yet woken: a racy snapshot, for statistics and tests.
    pub fn sleepers(&self) -> usize {
        self.sleepers.load(Relaxed)
    }

    /// How many times a parked consumer was woken (by a push, or passed on).
    pub fn wakeups(&self) -> u64 {
        self.wakeups.load(Relaxed)
    }

    /// The underlying lock-free ring (for `len`, `capacity`, or non-waking `try_pop`).
    pub fn ring(&self) -> &Ring<T> {
        &self.ring
    }

    /// Parks until woken. Returns an item if the re-check after announcing found one;
    /// `None` means "woken or closed: poll again".
    fn park(&self) -> Option<T> {
        let mut permits = sync::lock(&self.park);
        self.sleepers.fetch_add(1, Relaxed);
        // Dekker, consumer side: our increment, then this fence, then the re-check below.
        // Pairs with the fence in `wake_one` (see the module documentation).
        fence(SeqCst);
        let found = self.ring.try_pop();
        if found.is_some() || self.closed.load(Acquire) {
            self.sleepers.fetch_sub(1, Relaxed);
            return found;
        }
        loop {
            permits = sync::wait(&self.wake, permits);
            if *permits > 0 {
                // A producer decremented `sleepers` for us when it left this permit.
                *permits -= 1;
                return None;
            }
            if self.closed.load(Acquire) {
                self.sleepers.fetch_sub(1, Relaxed);
                return None;
            }
            // A spurious wakeup: still counted in `sleepers`, so wait again.
        }
    }

    /// Wakes one parked consumer, if any, after a push.
    #[inline]
    fn wake_one(&self) {
        // Dekker, producer side: the push (its Release store of `seq`), then this fence, then
        // the load of `sleepers`. If the load misses a consumer's increment, that consumer's
        // re-check is guaranteed to see our item.
        fence(SeqCst);
        if self.sleepers.load(Relaxed) == 0 {
            return;
        }
        self.wake_sleeper();
    }

    /// After a consumer that parked has taken an item: if more items wait and another consumer
    /// sleeps, wake it (see "Pass the wakeup on" in the module documentation).
    fn pass_on_wakeup(&self) {
        // Dekker again, now between this consumer's pop and a consumer parking concurrently:
        // either we see its `sleepers` increment, or its re-check sees the ring as we left it.
        fence(SeqCst);
        if self.sleepers.load(Relaxed) > 0 && !self.ring.is_empty() {
            self.wake_sleeper();
        }
    }

    /// Hands one sleeping consumer a permit and wakes it, if one still sleeps.
    fn wake_sleeper(&self) {
        let mut permits = sync::lock(&self.park);
        // Under the mutex `sleepers` is exact: another producer may have woken the last
        // sleeper between our first look and now.
        if self.sleepers.load(Relaxed) == 0 {
            return;
        }
        self.sleepers.fetch_sub(1, Relaxed);
        *permits += 1;
        drop(permits);
        self.wake.notify_one();
        self.wakeups.fetch_add(1, Relaxed);
    }
}

impl<T> PushError<T> {
    /// The value that was not pushed.
    pub fn into_inner(self) -> T {
        match self {
            PushError::Full(value) | PushError::Closed(value) => value,
        }
    }
}

impl<T> fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PushError::Full(_) => "Full(..)",
            PushError::Closed(_) => "Closed(..)",
        })
    }
}

impl<T> fmt::Debug for BlockingRing<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingRing")
            .field("ring", &self.ring)
            .field("sleepers", &self.sleepers())
            .field("closed", &self.is_closed())
            .finish()
    }
}
