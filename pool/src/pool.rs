//! `Pool<J>`: a fixed set of core-pinned worker threads that run jobs taken from a
//! [`BlockingRing`].
//!
//! This is the "thread pool" half of the flagship model: the reactor thread accepts and polls
//! sockets, and hands each ready connection to the pool with [`Pool::submit`]; workers pop
//! jobs and run the handler. The shape is the classic fixed-size pool (Java's
//! `ThreadPoolExecutor` with a bounded queue, or `threadpool`'s `ThreadPool`), with three
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
//!
//! Shutdown closes the ring (later pushes fail), lets the workers drain every queued job, and
//! joins them; parked workers are woken by the close. `Pool::shutdown` takes `self`, so no
//! `submit` can race with it, and `Drop` does the same for a pool that is simply dropped.
//!
//! The statistics are plain relaxed atomics, each written by one worker and read by anyone:
//! compare `jobs` and `parked_ns` across workers to see load imbalance while the pool runs.

use std::any::Any;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use log::{error, info};

use crate::blocking::{BlockingRing, PushError, DEFAULT_SPIN_LIMIT};
use crate::cache_padded::CachePadded;
use crate::pin::{available_cores, spawn_pinned};

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
    spin_limit: u32,
}

/// A fixed pool of worker threads fed by a lock-free ring. See the module documentation.
pub struct Pool<J> {
    shared: Arc<Shared<J>>,
    /// One per worker; emptied by the first shutdown, so a second one (Drop) is a no-op.
    handles: Vec<JoinHandle<()>>,
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
#[derive(Clone, Debug, Default)]
pub struct WorkerStats {
    /// Jobs this worker ran, including those that panicked.
    pub jobs: u64,
    /// Total time spent parked (asleep with an empty ring), in nanoseconds; a park is
    /// counted when the worker wakes from it.
    pub parked_ns: u64,
    /// How many times the worker parked.
    pub parks: u64,
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
            spin_limit: DEFAULT_SPIN_LIMIT,
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

    /// How many times an idle worker polls the empty ring before it parks.
    pub fn spin_limit(mut self, spins: u32) -> Self {
        self.spin_limit = spins;
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
            queue: BlockingRing::with_spin_limit(self.capacity, self.spin_limit),
            workers: (0..self.workers).map(|_| CachePadded::default()).collect(),
            ring_full: AtomicU64::new(0),
            high_water: AtomicUsize::new(0),
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
            "pool: {} workers named {}-<i>, pinned: {}, ring capacity {}",
            self.workers,
            self.name,
            self.pin,
            pool.shared.queue.ring().capacity()
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
        let shared = &*self.shared;
        match shared.queue.push(job) {
            Ok(()) => {
                // Reading the length costs a load of the consumers' `head` line; next to the
                // system calls that produce a job (a read on a socket) it is noise. Load
                // before `fetch_max` so the common case writes nothing shared.
                let len = shared.queue.ring().len();
                if len > shared.high_water.load(Relaxed) {
                    shared.high_water.fetch_max(len, Relaxed);
                }
                Ok(())
            }
            Err(PushError::Full(job)) => {
                shared.ring_full.fetch_add(1, Relaxed);
                Err(job)
            }
            Err(PushError::Closed(job)) => Err(job),
        }
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
    panics: AtomicU64,
}

impl WorkerCounters {
    fn snapshot(&self) -> WorkerStats {
        WorkerStats {
            jobs: self.jobs.load(Relaxed),
            parked_ns: self.parked_ns.load(Relaxed),
            parks: self.parks.load(Relaxed),
            panics: self.panics.load(Relaxed),
        }
    }

    fn record_park(&self, asleep: Duration) {
        let nanos = u64::try_from(asleep.as_nanos()).unwrap_or(u64::MAX);
        bump(&self.parks, 1);
        bump(&self.parked_ns, nanos);
    }
}

/// Adds `n` to a counter that only the calling thread writes.
#[inline]
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

/// A worker's life: pop, run (catching panics), repeat until the ring is closed and drained.
fn run_worker<J, F>(shared: &Shared<J>, handler: &F, index: usize)
where
    F: Fn(J, &WorkerContext),
{
    let context = WorkerContext { index };
    let counters = &*shared.workers[index];
    while let Some(job) = shared.queue.pop_with(|asleep| counters.record_park(asleep)) {
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
