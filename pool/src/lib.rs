//! `pool`: a bounded lock-free MPMC ring feeding a fixed pool of core-pinned worker threads,
//! and counters that show correct versus racy shared state.
//!
//! This is the concurrency half of rawloop's flagship model (the other half, the epoll
//! reactor, lives in the `reactor` crate and knows nothing of this one). The reactor thread
//! pushes ready connections into a [`Ring`]; workers pop them, serve them, and sleep without
//! burning CPU when there is nothing to do. A [`RunState`] per connection makes sure one
//! worker at a time serves it and that no readiness event is lost, without re-arming the
//! socket after every message.
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//!
//! let done = Arc::new(AtomicU64::new(0));
//! let seen = Arc::clone(&done);
//! let pool = pool::PoolBuilder::new()
//!     .workers(2)
//!     .pin(false)
//!     .spawn(move |n: u64, _ctx: &pool::WorkerContext| {
//!         seen.fetch_add(n, Ordering::Relaxed);
//!     })
//!     .unwrap();
//! for n in 1..=10 {
//!     pool.submit(n).unwrap();
//! }
//! pool.shutdown(); // drains the queue and joins the workers
//! assert_eq!(done.load(Ordering::Relaxed), 55);
//! ```
//!
//! # Layout
//!
//! - `ring`: [`Ring`], Dmitry Vyukov's bounded MPMC queue with per-slot sequence numbers,
//!   every memory ordering justified; [`Producer`], the single-producer fast path.
//! - `blocking`: [`BlockingRing`], the ring plus parking: consumers spin briefly, then sleep
//!   on a condvar behind a `sleepers` count, and producers wake one only when one sleeps;
//!   batches are pushed without waking and woken once, the wakeup passed on.
//! - `spin`: [`SpinPolicy`] (none, fixed, adaptive) and the per-worker [`Spinner`] that
//!   decides how long an idle consumer polls before it parks, after glibc's adaptive mutex.
//! - `pool`: [`Pool`] and [`PoolBuilder`], N named, pinned workers running jobs from a
//!   [`BlockingRing`], catching panics, taking batches, draining on shutdown or handing the
//!   queue back ([`Pool::shutdown_now`]), with live [`PoolStats`] (parks, unparks, spinning).
//! - `sched`: [`RunState`], one atomic per connection (idle, queued, running, notified,
//!   closed) so that the reactor pushes a key only when nobody holds or queues it and the
//!   worker that holds it serves again when an event arrived meanwhile: the idea of tokio's
//!   `ScheduledIo` and task state, and of the Linux workqueue's `WORK_STRUCT_PENDING` bit.
//! - `pin`: [`spawn_pinned`], [`pin_current_thread`] and [`available_cores`], over
//!   `sched_setaffinity(2)`.
//! - [`counters`]: [`RacyCounter`](counters::RacyCounter) (loses updates, on purpose),
//!   `AtomicCounter`, `ShardedCounter` and `MutexCounter`, each with its price.
//! - `cache_padded`: [`CachePadded`], why 128 bytes.
//! - `sync`: the atomics, cell, mutex and condvar the ring, its parking and `RunState` use,
//!   swapped for loom's under `--cfg loom`.
//!
//! The binary `counter-race` races the four counters; `benches/ring.rs` (in the root package)
//! compares the ring with crossbeam's `ArrayQueue` and `std::sync::mpsc::sync_channel`,
//! batched against per-item waking, and the spin policies' park-to-wake latency.
//!
//! # Correctness evidence
//!
//! `tests/ring.rs` (crossbeam-style: smoke, laps, spsc, mpmc with exact accounting, FIFO per
//! producer, drops), `tests/ring_model.rs` (proptest against `VecDeque`), `tests/blocking.rs`
//! (parking, waking, batches and spin policies with real threads), `tests/sched.rs`
//! (`RunState` against a reference model with proptest, and with real threads serving
//! connections through a pool), `tests/loom.rs` (model-checked with `RUSTFLAGS="--cfg loom"`:
//! the ring, parking, batches, and `RunState`'s one-runner and no-lost-event properties; its
//! header lists the teaching switches that plant a bug for loom to catch, and `blocking.rs`
//! tells of the lost wakeup it found for real), `tests/pool.rs` and `tests/counters.rs`.
//!
//! # Unsafe code
//!
//! Only `ring.rs` contains `unsafe`: reading and writing a slot's value, whose exclusivity the
//! sequence-number protocol guarantees, and the `Send`/`Sync` impls that follow from it. No
//! module of this crate calls libc directly; pinning goes through `core_affinity`.

#![deny(missing_docs)]
#![deny(unsafe_code)]

mod blocking;
mod cache_padded;
pub mod counters;
mod pin;
mod pool;
// The slot accesses of Vyukov's algorithm: each `unsafe` block carries its `SAFETY:` proof.
#[allow(unsafe_code)]
mod ring;
mod sched;
mod spin;
mod sync;

pub use blocking::{BlockingRing, PushError, DEFAULT_SPIN_LIMIT};
pub use cache_padded::CachePadded;
pub use pin::{available_cores, pin_current_thread, spawn_pinned};
pub use pool::{Abandoned, Pool, PoolBuilder, PoolStats, WorkerContext, WorkerStats};
pub use ring::{Producer, Ring, MAX_CAPACITY};
pub use sched::{Finish, RunState, State};
pub use spin::{Idle, SpinBudget, SpinPolicy, Spinner, DEFAULT_ADAPTIVE_CAP};
