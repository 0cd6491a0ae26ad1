//! `BlockingRing<T>`: a [`Ring`] whose consumers sleep when it is empty, and whose producers
//! wake them without a system call while nobody sleeps.
//!
//! A worker with nothing to do should cost no CPU, but a worker that sleeps must never miss
//! the item pushed just as it fell asleep (the "lost wakeup"). The classic fix, a mutex held
//! around every push, would put a lock back in front of the lock-free ring. Instead:
//!
//! 1. **Spin briefly.** A consumer that finds the ring empty retries `try_pop` with
//!    `spin_loop` in between, within a budget: a fixed number of polls (the ring's spin
//!    limit), or what the consumer's [`Spinner`] decides (`spin.rs`: none, fixed, or adaptive
//!    to how soon items have been arriving). Under load the next item often arrives sooner
//!    than a sleep and a wakeup would take.
//! 2. **Announce, then re-check.** It then locks the park mutex, increments `sleepers`,
//!    issues a `SeqCst` fence, and tries the ring once more before it waits on the condvar.
//! 3. **Push, then look.** A producer pushes, issues a `SeqCst` fence, and reads `sleepers`
//!    (`wake`). Only if it is non-zero does it take the mutex, hand out one wake permit and
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
//! **Batches.** A reactor that gets several ready connections from one `epoll_wait(2)` should
//! not pay a fence and possibly a `futex(2)` wake per connection, nor wake every sleeper at
//! once. `push_without_wake` pushes without looking at the sleepers; one `wake(1)` after the
//! batch then does step 3's look once. The consumer it wakes takes one item and, finding more
//! items and more sleepers, passes the wakeup on; so a batch of `k` items wakes at most `k`
//! consumers, each woken by the previous one, and consumers that are still spinning take
//! items without being woken at all. This is how the Go scheduler avoids a herd too: it keeps
//! at most one thread "spinning" for work, and a spinning thread that finds work wakes the
//! next (`runtime/proc.go`, "Worker thread parking/unparking"). `wake(n)` wakes `n` sleepers
//! from the caller instead, for when latency matters more than the caller's system calls.
//! `tests/loom.rs` checks that no item is left with its consumer asleep either way, and its
//! teaching switch `rawloop_no_pass_on` shows the deadlock without the pass-on.
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
use crate::spin::{Idle, SpinBudget, SpinPolicy, Spinner};
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
        self.wake(1);
        Ok(())
    }

    /// Pushes `value` without waking anyone: the first half of a batched hand-off. Call
    /// [`wake`](BlockingRing::wake) once the batch is in, or a parked consumer may sleep on a
    /// non-empty ring.
    pub fn push_without_wake(&self, value: T) -> Result<(), PushError<T>> {
        if self.closed.load(Acquire) {
            return Err(PushError::Closed(value));
        }
        self.ring.try_push(value).map_err(PushError::Full)
    }

    /// Wakes up to `max` parked consumers and returns how many it woke (each a `futex(2)`
    /// wake). With no consumer parked this is a fence and a load: no lock, no system call.
    ///
    /// After a batch of pushes, `wake(1)` is enough to get every item taken: a consumer woken
    /// from a park that finds more items queued and more consumers asleep wakes the next
    /// ("Pass the wakeup on" in the module documentation), so a batch of `k` items wakes at
    /// most `k` consumers, one after the other, and never a herd.
    pub fn wake(&self, max: usize) -> usize {
        if max == 0 {
            return 0;
        }
        // Dekker, producer side: the pushes (their Release stores of `seq`), then this fence,
        // then the load of `sleepers`. If the load misses a consumer's increment, that
        // consumer's re-check is guaranteed to see our items.
        fence(SeqCst);
        if self.sleepers.load(Relaxed) == 0 {
            return 0;
        }
        self.wake_sleepers(max)
    }

    /// Pops an item, parking while the ring is empty. Returns `None` only once the ring is
    /// closed and drained.
    pub fn pop(&self) -> Option<T> {
        self.pop_with(|_| {})
    }

    /// Like [`pop`](BlockingRing::pop), calling `on_parked(time asleep)` after each park, so
    /// a worker can account for its idle time.
    pub fn pop_with(&self, mut on_parked: impl FnMut(Duration)) -> Option<T> {
        let mut spinner = Spinner::new(SpinPolicy::Fixed(self.spin_limit));
        self.pop_idle(&mut spinner, &mut on_parked, &mut |_| {})
    }

    /// Like [`pop`](BlockingRing::pop), spinning as `spinner`'s policy decides instead of
    /// this ring's spin limit, and calling `on_idle` once if the ring was empty at the first
    /// poll, with what the wait cost (time spun, parks, time parked, wakeups received).
    ///
    /// The fast path, an item at the first poll, reads no clock and reports nothing.
    pub fn pop_with_spinner(
        &self,
        spinner: &mut Spinner,
        mut on_idle: impl FnMut(&Idle),
    ) -> Option<T> {
        self.pop_idle(spinner, &mut |_| {}, &mut on_idle)
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

    /// The body of every pop: poll, spin within the budget, park, repeat.
    fn pop_idle(
        &self,
        spinner: &mut Spinner,
        on_parked: &mut dyn FnMut(Duration),
        on_idle: &mut dyn FnMut(&Idle),
    ) -> Option<T> {
        if let Some(value) = self.ring.try_pop() {
            return Some(value);
        }
        let ran_dry = Instant::now();
        let mut idle = Idle::default();
        let item = loop {
            let spin_began = Instant::now();
            let spun = self.spin(spinner.budget(), spin_began);
            idle.spun += spin_began.elapsed();
            match spun {
                Spun::Found(value) => {
                    idle.found_by_spin = idle.parks == 0;
                    break Some(value);
                }
                Spun::Closed(last) => break last,
                Spun::Empty => {}
            }
            let asleep = Instant::now();
            let (found, woken) = self.park();
            let slept = asleep.elapsed();
            on_parked(slept);
            idle.parks += 1;
            idle.parked += slept;
            idle.unparks += u32::from(woken);
            // Woken (or closed): look at once, before the next spin's budget check.
            if let Some(value) = found.or_else(|| self.ring.try_pop()) {
                break Some(value);
            }
        };
        if item.is_some() {
            if idle.parks > 0 {
                self.pass_on_wakeup();
            }
            spinner.record_gap(ran_dry.elapsed());
        }
        on_idle(&idle);
        item
    }

    /// Polls the empty ring within `budget`, counted from `began`.
    fn spin(&self, budget: SpinBudget, began: Instant) -> Spun<T> {
        let mut polls: u32 = 0;
        loop {
            if self.closed.load(Acquire) {
                // Closed: items pushed before `close` are still ours to drain, so look once
                // more after seeing the flag (Acquire orders this pop after them).
                return Spun::Closed(self.ring.try_pop());
            }
            let more = match budget {
                SpinBudget::Polls(limit) => polls < limit,
                SpinBudget::For(span) => began.elapsed() < span,
            };
            if !more {
                return Spun::Empty;
            }
            polls = polls.saturating_add(1);
            sync::spin_loop();
            if let Some(value) = self.ring.try_pop() {
                return Spun::Found(value);
            }
        }
    }

    /// Parks until woken. Returns an item if the re-check after announcing found one
    /// (`None` means "woken or closed: poll again"), and whether a wake permit woke us.
    fn park(&self) -> (Option<T>, bool) {
        let mut permits = sync::lock(&self.park);
        self.sleepers.fetch_add(1, Relaxed);
        // Dekker, consumer side: our increment, then this fence, then the re-check below.
        // Pairs with the fence in `wake` (see the module documentation).
        fence(SeqCst);
        let found = self.ring.try_pop();
        if found.is_some() || self.closed.load(Acquire) {
            self.sleepers.fetch_sub(1, Relaxed);
            return (found, false);
        }
        loop {
            permits = sync::wait(&self.wake, permits);
            if *permits > 0 {
                // A producer decremented `sleepers` for us when it left this permit.
                *permits -= 1;
                return (None, true);
            }
            if self.closed.load(Acquire) {
                self.sleepers.fetch_sub(1, Relaxed);
                return (None, false);
            }
            // A spurious wakeup: still counted in `sleepers`, so wait again.
        }
    }

    /// After a consumer that parked has taken an item: if more items wait and another consumer
    /// sleeps, wake it (see "Pass the wakeup on" in the module documentation).
    fn pass_on_wakeup(&self) {
        // The deliberate bug of `--cfg rawloop_no_pass_on`: a batch woken with `wake(1)` then
        // leaves the other consumers asleep on a non-empty ring, and loom reports a deadlock.
        if cfg!(rawloop_no_pass_on) {
            return;
        }
        // Dekker again, now between this consumer's pop and a consumer parking concurrently:
        // either we see its `sleepers` increment, or its re-check sees the ring as we left it.
        fence(SeqCst);
        if self.sleepers.load(Relaxed) > 0 && !self.ring.is_empty() {
            self.wake_sleepers(1);
        }
    }

    /// Hands up to `max` sleeping consumers a permit each and wakes them; returns how many.
    fn wake_sleepers(&self, max: usize) -> usize {
        let mut permits = sync::lock(&self.park);
        // Under the mutex `sleepers` is exact: another producer may have woken the last
        // sleeper between our first look and now.
        let woken = max.min(self.sleepers.load(Relaxed));
        if woken == 0 {
            return 0;
        }
        self.sleepers.fetch_sub(woken, Relaxed);
        *permits += woken;
        drop(permits);
        // One `notify_one` per permit: `notify_all` would also wake the sleepers that get no
        // permit, only for them to find none and sleep again (a thundering herd).
        for _ in 0..woken {
            self.wake.notify_one();
        }
        self.wakeups.fetch_add(woken as u64, Relaxed);
        woken
    }
}

/// How a spin ended.
enum Spun<T> {
    /// An item arrived.
    Found(T),
    /// The ring is closed; the last look at it.
    Closed(Option<T>),
    /// The budget ran out: park.
    Empty,
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
