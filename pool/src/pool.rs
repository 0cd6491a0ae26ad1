//! `Pool<J>`: a fixed set of core-pinned worker threads that run jobs taken from a
//! [`BlockingRing`].
//!
//! This is the "thread pool" half of the flagship model: the reactor thread accepts and polls
//! sockets, and hands each ready connection to the pool with [`Pool::submit`] (or the ready
//! connections of one `epoll_wait(2)` at once with [`Pool::submit_batch`]); workers pop
//! jobs and run the handler. The shape is the classic fixed-size pool (Java's
//! `ThreadPoolExecutor` with a bounded queue, or `threadpool`'s `ThreadPool`), with these
//! choices spelled out:
//!
//! - **Bounded, non-blocking intake.** `submit` never blocks: when the ring is full it
//!   returns the job, counted in [`PoolStats::ring_full`], and the caller decides (the
//!   reactor keeps the connection and retries later). A pool that blocked its submitter
//!   would stall the event loop, and an unbounded queue would hide overload until memory
//!   ran out.
//! - **One worker per core, pinned** (see `pin.rs`), named `<prefix>-<index>`.
//! - **Panics are contained.** A job that panics is caught with `catch_unwind`, counted,
//!   logged, and the worker takes the next job: one bad request must not shrink the pool.
//! - **Batches wake one worker.** `submit` wakes a parked worker per job when one sleeps;
//!   `submit_batch` (or `submit_without_wake` and then `wake`) queues a whole batch first and
//!   wakes one, who passes the wakeup on while jobs and sleepers remain (`blocking.rs`).
//! - **The idle wait is a policy.** [`PoolBuilder::spin`] picks how a worker waits before it
//!   parks ([`SpinPolicy`]: not at all, a fixed number of polls, or adaptively), so a server
//!   can measure each choice; every worker counts its parks, unparks and spinning.
//!
//! [`Pool::shutdown`] closes the ring (later pushes fail), lets the workers drain every queued
//! job, and joins them; parked workers are woken by the close. [`Pool::shutdown_now`] instead
//! hands the queued jobs back unrun, so the join waits only for the jobs in progress: the
//! bounded shutdown a server needs at its drain deadline. Both take `self`, so no `submit`
//! can race with them, and `Drop` drains like `shutdown` for a pool that is simply dropped.
//!
//! The statistics are plain relaxed atomics, each written by one worker and read by anyone:
//! compare `jobs` and `parked_ns` across workers to see load imbalance while the pool runs,
//! and divide `parks` and `unparks` by the messages served to see what waking costs per
//! message.

use std::any::Any;
use std::collections::VecDeque;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{
    AtomicBool, AtomicU64, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use log::{error, info};

use crate::blocking::{BlockingRing, PushError};
use crate::cache_padded::CachePadded;
use crate::pin::{available_cores, spawn_pinned};
use crate::spin::{Idle, SpinPolicy, Spinner};

/// What a job learns about the worker running it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerContext {
    /// The worker's index, `0..workers`, also the suffix of its thread name.
    pub index: usize,
}

/// Configures and spawns a [`Pool`].
#[derive(Clone, Debug)]
pub struct PoolBuilder {
    workers: usize,
    pin: bool,
    capacity: usize,
    name: String,
    spin: SpinPolicy,
}

/// A fixed pool of worker threads fed by a lock-free ring. See the module documentation.
pub struct Pool<J> {
    shared: Arc<Shared<J>>,
    /// One per worker; emptied by the first shutdown, so a second one (Drop) is a no-op.
    handles: Vec<JoinHandle<()>>,
}

/// What [`Pool::shutdown_now`] leaves behind.
#[derive(Debug)]
pub struct Abandoned<J> {
    /// The final statistics, read after the last worker exited.
    pub stats: PoolStats,
    /// The jobs that were queued and never started, roughly oldest first. Dropping them is
    /// the caller's business (for a connection: closing it).
    pub jobs: Vec<J>,
}

/// A snapshot of a pool's counters.
#[derive(Clone, Debug, Default)]
pub struct PoolStats {
    /// One entry per worker, by index.
    pub workers: Vec<WorkerStats>,
    /// Jobs queued at the time of the snapshot (racy, see [`Ring::len`](crate::Ring::len)).
    pub ring_len: usize,
    /// The most jobs seen queued just after a submit.
    pub ring_high_water: usize,
    /// Submits refused because the ring was full.
    pub ring_full: u64,
    /// Times a parked worker was woken: by a submit, or passed on by a worker that found
    /// more jobs after its own wakeup. Each one is a `futex(2)` wake.
    pub wakeups: u64,
    /// Workers parked right now and not yet woken (racy snapshot).
    pub sleeping: usize,
}

/// A snapshot of one worker's counters.
///
/// The waiting counters (`parked_ns`, `parks`, `unparks`, `spin_hits`, `spun_ns`) are added
/// when a wait ends, just before the worker starts the job it waited for: a worker asleep
/// right now does not show its current wait yet.
#[derive(Clone, Debug, Default)]
pub struct WorkerStats {
    /// Jobs this worker ran, including those that panicked.
    pub jobs: u64,
    /// Total time spent parked (asleep with an empty ring), in nanoseconds; a park is
    /// counted when the worker wakes from it.
    pub parked_ns: u64,
    /// How many times the worker parked (announced itself asleep; nearly all of these end
    /// in a `futex(2)` wait).
    pub parks: u64,
    /// How many times the worker was woken by a wake permit, a submit's or one passed on by
    /// another worker: each one a `futex(2)` wake paid by the waker. `parks - unparks` is
    /// roughly the parks that ended because the worker found a job in its re-check, or at
    /// shutdown.
    pub unparks: u64,
    /// Idle periods that ended while spinning, before any park: park/unpark pairs saved.
    pub spin_hits: u64,
    /// Total time spent spinning on an empty ring (CPU burned waiting), in nanoseconds.
    pub spun_ns: u64,
    /// Jobs that panicked (caught; the worker lived on).
    pub panics: u64,
}

impl PoolBuilder {
    /// Defaults: one worker per available core, pinned, a ring of 1024 jobs, threads named
    /// `rawloop-worker-<i>`.
    ///
    /// The name is the issue's; note that Linux shows only its first 15 bytes
    /// (`rawloop-worker-`) in `top` and `perf`, so pass a shorter prefix with
    /// [`name`](PoolBuilder::name) if you need to tell the workers apart there.
    pub fn new() -> PoolBuilder {
        PoolBuilder {
            workers: available_cores(),
            pin: true,
            capacity: 1024,
            name: "rawloop-worker".to_owned(),
            spin: SpinPolicy::default(),
        }
    }

    /// Sets the number of workers.
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    pub fn workers(mut self, n: usize) -> Self {
        assert!(n >= 1, "a pool needs at least one worker");
        self.workers = n;
        self
    }

    /// Pins worker `i` to core `i % cores` (on by default).
    pub fn pin(mut self, on: bool) -> Self {
        self.pin = on;
        self
    }

    /// Sets the ring's capacity (rounded up to a power of two, see [`Ring::new`](crate::Ring::new)).
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = n;
        self
    }

    /// Sets the thread name prefix: workers are named `<prefix>-<i>`.
    pub fn name(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.name);
        self
    }

    /// How many times an idle worker polls the empty ring before it parks: shorthand for
    /// `.spin(SpinPolicy::Fixed(spins))`.
    pub fn spin_limit(self, spins: u32) -> Self {
        self.spin(SpinPolicy::Fixed(spins))
    }

    /// How an idle worker waits before it parks (default:
    /// `SpinPolicy::Fixed(DEFAULT_SPIN_LIMIT)`). Each worker keeps its own
    /// [`Spinner`](crate::Spinner), so the adaptive policy learns per worker.
    pub fn spin(mut self, policy: SpinPolicy) -> Self {
        self.spin = policy;
        self
    }

    /// Spawns the workers; each runs `handler(job, &context)` for every job it pops.
    ///
    /// If a thread cannot be spawned, the workers already started are shut down and joined
    /// before the error is returned.
    pub fn spawn<J, F>(self, handler: F) -> io::Result<Pool<J>>
    where
        J: Send + 'static,
        F: Fn(J, &WorkerContext) + Send + Sync + 'static,
    {
        let shared = Arc::new(Shared {
            // The ring's own spin limit is unused: workers pop with their own `Spinner`.
            queue: BlockingRing::new(self.capacity),
            workers: (0..self.workers).map(|_| CachePadded::default()).collect(),
            ring_full: AtomicU64::new(0),
            high_water: AtomicUsize::new(0),
            spin: self.spin,
            discard: AtomicBool::new(false),
            handed_back: Mutex::new(Vec::new()),
        });
        let handler = Arc::new(handler);
        let mut pool = Pool {
            shared,
            handles: Vec::with_capacity(self.workers),
        };
        for index in 0..self.workers {
            let shared = Arc::clone(&pool.shared);
            let handler = Arc::clone(&handler);
            let name = format!("{}-{index}", self.name);
            let handle = spawn_pinned(name, index, self.pin, move || {
                run_worker(&shared, &*handler, index);
            })?; // On error, dropping `pool` shuts down the workers spawned so far.
            pool.handles.push(handle);
        }
        info!(
            "pool: {} workers named {}-<i>, pinned: {}, ring capacity {}, spin {:?}",
            self.workers,
            self.name,
            self.pin,
            pool.shared.queue.ring().capacity(),
            self.spin
        );
        Ok(pool)
    }
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder::new()
    }
}

impl<J: Send + 'static> Pool<J> {
    /// Queues `job` for a worker. Never blocks: returns `Err(job)` when the ring is full
    /// (counted in [`PoolStats::ring_full`]).
    ///
    /// Wakes exactly one parked worker, and only when one is parked: while every worker is
    /// busy, a submit is a compare-and-swap and a fence, with no lock and no system call.
    pub fn submit(&self, job: J) -> Result<(), J> {
        self.submit_without_wake(job)?;
        self.shared.queue.wake(1);
        Ok(())
    }

    /// Queues `job` without waking anyone: the first half of a batched hand-off, which must
    /// end with [`wake`](Pool::wake). Returns `Err(job)` when the ring is full (counted) or
    /// closed.
    pub fn submit_without_wake(&self, job: J) -> Result<(), J> {
        self.push(job)?;
        self.note_depth();
        Ok(())
    }

    /// Wakes up to `max` parked workers; returns how many (each a `futex(2)` wake). With no
    /// worker parked it is a fence and a load.
    ///
    /// After a batch, `wake(1)` suffices: a woken worker that takes a job and sees more jobs
    /// queued and more workers parked wakes the next one. `wake(n)` wakes them all from the
    /// calling thread instead, sooner but with `n` system calls on the caller's time.
    pub fn wake(&self, max: usize) -> usize {
        self.shared.queue.wake(max)
    }

    /// Moves jobs from the front of `backlog` into the ring until the backlog is empty or the
    /// ring is full, then wakes at most one parked worker, who passes the wakeup on while
    /// jobs and sleepers remain (see [`wake`](Pool::wake)). Returns how many jobs it queued.
    ///
    /// Jobs the ring refused stay in `backlog`, in order: nothing is dropped. A reactor
    /// appends the keys of one `epoll_wait(2)` to its backlog and calls this once, so a
    /// batch of ready connections costs at most one `futex(2)` wake on the reactor thread.
    pub fn submit_batch(&self, backlog: &mut VecDeque<J>) -> usize {
        let mut queued = 0;
        while let Some(job) = backlog.pop_front() {
            if let Err(refused) = self.push(job) {
                backlog.push_front(refused);
                break;
            }
            queued += 1;
        }
        if queued > 0 {
            self.note_depth();
            self.shared.queue.wake(1);
        }
        queued
    }

    /// A snapshot of the counters, readable while the pool runs.
    pub fn stats(&self) -> PoolStats {
        let shared = &*self.shared;
        PoolStats {
            workers: shared.workers.iter().map(|w| w.snapshot()).collect(),
            ring_len: shared.queue.ring().len(),
            ring_high_water: shared.high_water.load(Relaxed),
            ring_full: shared.ring_full.load(Relaxed),
            wakeups: shared.queue.wakeups(),
            sleeping: shared.queue.sleepers(),
        }
    }

    /// The number of workers.
    pub fn workers(&self) -> usize {
        self.shared.workers.len()
    }

    /// Stops intake, lets the workers run every queued job, and joins them. Returns the
    /// final statistics, read after the last worker has exited, so every job that ran is
    /// counted (a [`stats`](Pool::stats) read while a worker is finishing a job may miss it).
    pub fn shutdown(mut self) -> PoolStats {
        self.stop();
        self.stats()
    }

    /// Stops intake, lets the jobs in progress finish, and joins the workers without running
    /// the jobs still queued: they are handed back in [`Abandoned::jobs`]. For a server at its
    /// drain deadline, whose join must not wait for a full queue to be served.
    ///
    /// A worker checks for this stop after each pop, so no job starts once the worker has seen
    /// it; the time to join is that of the longest job in progress, not of the queue. (A job
    /// that never returns still blocks the join: bounding a job is the job's business.)
    pub fn shutdown_now(mut self) -> Abandoned<J> {
        // Release: a worker that sees the flag (Acquire) hands its job back instead of
        // running it. Set before `close`, which wakes the parked workers to see it.
        self.shared.discard.store(true, Release);
        self.stop();
        let shared = &*self.shared;
        let mut jobs = std::mem::take(&mut *lock(&shared.handed_back));
        jobs.extend(std::iter::from_fn(|| shared.queue.ring().try_pop()));
        Abandoned {
            stats: self.stats(),
            jobs,
        }
    }

    /// Pushes `job`, counting a full ring.
    fn push(&self, job: J) -> Result<(), J> {
        match self.shared.queue.push_without_wake(job) {
            Ok(()) => Ok(()),
            Err(PushError::Full(job)) => {
                self.shared.ring_full.fetch_add(1, Relaxed);
                Err(job)
            }
            Err(PushError::Closed(job)) => Err(job),
        }
    }

    /// Updates the high-water mark after a push.
    fn note_depth(&self) {
        let shared = &*self.shared;
        // Reading the length costs a load of the consumers' `head` line; next to the system
        // calls that produce a job (a read on a socket) it is noise. Load before `fetch_max`
        // so the common case writes nothing shared.
        let len = shared.queue.ring().len();
        if len > shared.high_water.load(Relaxed) {
            shared.high_water.fetch_max(len, Relaxed);
        }
    }
}

impl<J> Pool<J> {
    fn stop(&mut self) {
        if self.handles.is_empty() {
            return;
        }
        self.shared.queue.close();
        for handle in self.handles.drain(..) {
            let name = handle.thread().name().unwrap_or("worker").to_owned();
            // Jobs' panics are caught in `run_worker`, so a join error means the pool's own
            // code panicked: report it rather than propagate a panic out of `Drop`.
            if handle.join().is_err() {
                error!("{name} panicked outside a job");
            }
        }
    }
}

impl<J> Drop for Pool<J> {
    /// Same as [`Pool::shutdown`]: a dropped pool drains its queue and joins its workers.
    fn drop(&mut self) {
        self.stop();
    }
}

impl<J> std::fmt::Debug for Pool<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.shared.workers.len())
            .field("queue", &self.shared.queue)
            .finish()
    }
}

/// What the pool handle and its workers share.
struct Shared<J> {
    queue: BlockingRing<J>,
    /// Indexed by worker; each padded so two workers' counters never share a cache line.
    workers: Box<[CachePadded<WorkerCounters>]>,
    ring_full: AtomicU64,
    high_water: AtomicUsize,
    spin: SpinPolicy,
    /// Set by `shutdown_now`: workers stop taking jobs.
    discard: AtomicBool,
    /// Jobs a worker popped after `discard` was set, handed back unrun.
    handed_back: Mutex<Vec<J>>,
}

/// One worker's live counters. Each field has a single writer (its worker), so it is bumped
/// with a relaxed load and store rather than `fetch_add`: with one writer no update can be
/// lost, and readers only ever see a slightly stale value. (`RacyCounter` is the same code
/// with many writers, and loses updates: one writer is what makes this correct.)
#[derive(Default)]
struct WorkerCounters {
    jobs: AtomicU64,
    parked_ns: AtomicU64,
    parks: AtomicU64,
    unparks: AtomicU64,
    spin_hits: AtomicU64,
    spun_ns: AtomicU64,
    panics: AtomicU64,
}

impl WorkerCounters {
    fn snapshot(&self) -> WorkerStats {
        WorkerStats {
            jobs: self.jobs.load(Relaxed),
            parked_ns: self.parked_ns.load(Relaxed),
            parks: self.parks.load(Relaxed),
            unparks: self.unparks.load(Relaxed),
            spin_hits: self.spin_hits.load(Relaxed),
            spun_ns: self.spun_ns.load(Relaxed),
            panics: self.panics.load(Relaxed),
        }
    }

    /// Adds one wait for a job to the counters (only the non-zero parts are written).
    fn record_idle(&self, idle: &Idle) {
        bump(&self.spun_ns, nanos(idle.spun));
        if idle.found_by_spin {
            bump(&self.spin_hits, 1);
        }
        if idle.parks > 0 {
            bump(&self.parks, u64::from(idle.parks));
            bump(&self.parked_ns, nanos(idle.parked));
            bump(&self.unparks, u64::from(idle.unparks));
        }
    }
}

fn nanos(span: Duration) -> u64 {
    u64::try_from(span.as_nanos()).unwrap_or(u64::MAX)
}

/// Locks `mutex`, ignoring poisoning: the handed-back jobs are a plain `Vec`, and no code
/// panics while holding it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Adds `n` to a counter that only the calling thread writes.
#[inline]
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

/// A worker's life: pop, run (catching panics), repeat until the ring is closed and drained,
/// or until `shutdown_now` asks it to stop taking jobs.
fn run_worker<J, F>(shared: &Shared<J>, handler: &F, index: usize)
where
    F: Fn(J, &WorkerContext),
{
    let context = WorkerContext { index };
    let counters = &*shared.workers[index];
    let mut spinner = Spinner::new(shared.spin);
    while let Some(job) = shared
        .queue
        .pop_with_spinner(&mut spinner, |idle| counters.record_idle(idle))
    {
        if shared.discard.load(Acquire) {
            lock(&shared.handed_back).push(job);
            return;
        }
        // AssertUnwindSafe: after a panic the job is gone, and the handler is `Fn` and `Sync`,
        // so any state it shares is behind its own synchronization (a poisoned mutex, say).
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| handler(job, &context)));
        bump(&counters.jobs, 1);
        if let Err(payload) = outcome {
            bump(&counters.panics, 1);
            error!(
                "worker {index}: job panicked ({}); worker continues",
                panic_message(&*payload)
            );
        }
    }
}

/// The message of a panic payload, when it is a string (as `panic!("...")` makes it).
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(message) = payload.downcast_ref::<&str>() {
        message
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message
    } else {
        "non-string payload"
    }
}
