//! Loom models of the ring, its parking handshake, batched hand-off, and the per-connection
//! `RunState`: every interleaving of a few tiny scenarios, and every value each relaxed or
//! acquire load may legally return in them.
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p pool --release --target-dir target-loom --test loom
//! ```
//!
//! Loom fails a model when any execution panics (an assertion below), deadlocks (every thread
//! blocked: a lost wakeup), or reads an `UnsafeCell` without a happens-before edge from its
//! last write (a missing Release/Acquire pair). The models are deliberately tiny (two or
//! three threads, capacity 2) because the number of executions grows exponentially; small
//! models already cover the interesting orderings, which is loom's bet (and CDSChecker's).
//!
//! Teaching switches, each planting one bug that a model below catches (a run takes a few
//! minutes, nearly all of it compiling; each failing model fails within seconds):
//!
//! - `--cfg rawloop_weak_ordering`: every ring model fails at once with a causality violation,
//!   because the producer's publishing store of `seq` is then `Relaxed` (see `src/ring.rs`).
//! - `--cfg rawloop_lost_notify`, `--cfg rawloop_relaxed_finish`: `RunState::finish` loses an
//!   event, or stops publishing the run; see the `RunState` section below.
//! - `--cfg rawloop_no_pass_on`: a woken consumer no longer passes the wakeup on; see the
//!   batched hand-off section below.
//!
//! Use a separate `--target-dir` for the switches (say `target-loom/teach`, inside the ignored
//! `target-loom`) so the regular loom build is not rebuilt each time. Deleting the `SeqCst`
//! fence in `BlockingRing::wake` instead makes the parking models deadlock: that fence is what
//! prevents the lost wakeup.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;

use pool::{BlockingRing, Ring};

/// Runs `body` under loom with at most `preemptions` preemptions per execution, unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise. Bounding preemptions (tokio's CI uses 2) keeps the
/// four-thread models to seconds instead of hours; most concurrency bugs need no more than
/// two or three (Musuvathi and Qadeer, "Iterative context bounding", PLDI 2007), and the
/// lost wakeup `two_consumers_two_pushes_all_wake` caught needed two.
fn model(preemptions: usize, body: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(preemptions);
    }
    builder.check(body);
}

/// Pops until an item arrives, yielding to loom's scheduler between attempts.
fn pop_spinning<T>(ring: &Ring<T>) -> T {
    loop {
        if let Some(value) = ring.try_pop() {
            return value;
        }
        thread::yield_now();
    }
}

/// Two producers race for the two slots while a consumer polls: each item is popped exactly
/// once, and the consumer reads each value only after its producer published it.
#[test]
fn two_producers_one_consumer_capacity_two() {
    model(3, || {
        let ring = Arc::new(Ring::new(2));
        let producers: Vec<_> = [1, 2]
            .into_iter()
            .map(|value| {
                let ring = Arc::clone(&ring);
                thread::spawn(move || ring.try_push(value).unwrap())
            })
            .collect();
        let consumer = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || {
                let mut got = Vec::new();
                for _ in 0..2 {
                    got.extend(ring.try_pop());
                }
                got
            })
        };
        for producer in producers {
            producer.join().unwrap();
        }
        let mut got = consumer.join().unwrap();
        got.extend(std::iter::from_fn(|| ring.try_pop()));
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
    });
}

/// Positions 1..=3 on a capacity-2 ring: the third push reuses slot 1 one lap later and must
/// wait for the consumer to free it, so both hand-offs (producer to consumer, and consumer to
/// next lap's producer) are checked, across the wrap.
#[test]
fn lap_wrap_capacity_two() {
    model(3, || {
        let ring = Arc::new(Ring::new(2));
        // Start one position in, so the concurrent part wraps from slot 1 to slot 0 to slot 1.
        ring.try_push(0).unwrap();
        assert_eq!(ring.try_pop(), Some(0));
        let producer = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || {
                for mut value in 1..=3 {
                    while let Err(back) = ring.try_push(value) {
                        value = back;
                        thread::yield_now();
                    }
                }
            })
        };
        let popped: Vec<i32> = (0..3).map(|_| pop_spinning(&ring)).collect();
        producer.join().unwrap();
        assert_eq!(popped, [1, 2, 3]);
        assert_eq!(ring.try_pop(), None);
    });
}

/// The park/unpark handshake: a consumer that parks at once (spin limit 0) must be woken by
/// a concurrent push, whatever the interleaving. A lost wakeup leaves it blocked forever,
/// which loom reports as a deadlock.
#[test]
fn park_unpark_has_no_lost_wakeup() {
    model(3, || {
        let ring = Arc::new(BlockingRing::with_spin_limit(2, 0));
        let consumer = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || ring.pop())
        };
        ring.push(7).unwrap();
        assert_eq!(consumer.join().unwrap(), Some(7));
    });
}

/// Two parked consumers, two pushes from two producers: each push must wake (or be found
/// by) a distinct consumer, so both consumers return.
#[test]
fn two_consumers_two_pushes_all_wake() {
    model(2, || {
        let ring = Arc::new(BlockingRing::with_spin_limit(2, 0));
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let ring = Arc::clone(&ring);
                thread::spawn(move || ring.pop())
            })
            .collect();
        let producer = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || ring.push(1).unwrap())
        };
        ring.push(2).unwrap();
        producer.join().unwrap();
        let mut got: Vec<i32> = consumers
            .into_iter()
            .map(|c| c.join().unwrap().unwrap())
            .collect();
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
    });
}

/// Shutdown: an item pushed before `close` is delivered, then the (possibly parked) consumer
/// is released with `None`, never left asleep.
#[test]
fn close_drains_then_releases_consumer() {
    model(3, || {
        let ring = Arc::new(BlockingRing::with_spin_limit(2, 0));
        let consumer = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || {
                let mut got = Vec::new();
                while let Some(value) = ring.pop() {
                    got.push(value);
                }
                got
            })
        };
        ring.push(5).unwrap();
        ring.close();
        assert_eq!(consumer.join().unwrap(), [5]);
    });
}

// ---------------------------------------------------------------------------------------------
// `RunState`: one runner at a time, and no lost event.
//
// The harness below plays a connection: `socket` counts bytes the kernel has queued and nobody
// has read, `served` is the connection's own state (a loom `UnsafeCell`, so loom checks that
// every runner's access happens-after the previous runner's), and `in_run` catches two runners
// at once. The main thread is the reactor: an event adds a byte and calls `notify`, and pushes
// the key when told to. Workers pop keys from the pool's `BlockingRing` (parking when it is
// empty, so the models have no spin loops for loom to unroll) and run the connection until
// `finish` says Idle; the reactor closes the ring when it is done. At the end every byte must
// have been read ("every notify is followed by a run that starts after it") and the slot must
// be Idle.
//
// Teaching switches (from the workspace root; each fails within seconds):
//
//   RUSTFLAGS="--cfg loom --cfg rawloop_lost_notify" \
//       cargo test -p pool --release --target-dir target-loom/teach --test loom run_state
//
// replaces the compare-and-swap in `RunState::finish` with a load and a store: the models
// `run_state_one_worker_loses_no_event` and `run_state_two_workers_never_overlap` panic with
// "1 byte(s) never read: an event was lost". The execution: the worker reads two bytes, the
// reactor's third event finds it Running and marks it Notified, and the worker's store of
// Idle (decided from its load of Running) erases the mark: nobody will read the third byte.
//
//   RUSTFLAGS="--cfg loom --cfg rawloop_relaxed_finish" \
//       cargo test -p pool --release --target-dir target-loom/teach --test loom run_state
//
// weakens `finish`'s Release to Relaxed: the models where two threads run the connection
// (`run_state_two_workers_never_overlap`, `run_state_sweep_claims_only_idle`) fail with loom's
// "Causality violation: Concurrent write accesses to `UnsafeCell`": the next runner's access
// to `served` is not ordered after the last one's.
// ---------------------------------------------------------------------------------------------

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicUsize};
use pool::{Finish, RunState, State};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

/// The key of the one connection the models schedule.
const KEY: usize = 0;

/// A connection as the scheduler sees it. See the comment above.
struct Conn {
    state: RunState,
    /// Bytes queued by the "kernel" and not yet read. Relaxed accesses only: any ordering
    /// between the reactor's event and the worker's read must come from `RunState`.
    socket: AtomicUsize,
    /// The connection's state, touched only by its current runner: the bytes it has read.
    served: UnsafeCell<usize>,
    /// Set while a runner is inside. Relaxed, so it adds no happens-before edge of its own;
    /// a swap still sees any overlap, because read-modify-writes of one atomic are totally
    /// ordered.
    in_run: AtomicBool,
}

impl Conn {
    fn new() -> Conn {
        Conn {
            state: RunState::idle(),
            socket: AtomicUsize::new(0),
            served: UnsafeCell::new(0),
            in_run: AtomicBool::new(false),
        }
    }

    /// Bytes arrive and epoll reports them: returns whether the reactor must push the key.
    fn event(&self) -> bool {
        self.socket.fetch_add(1, Relaxed);
        self.state.notify()
    }

    /// One pass of a runner: read everything queued (`read(2)` until `EAGAIN`).
    fn serve_once(&self) {
        assert!(
            !self.in_run.swap(true, Relaxed),
            "two runners inside one connection"
        );
        let bytes = self.socket.swap(0, Relaxed);
        // SAFETY: (what loom checks) the runner owns the connection between `start` (or
        // `try_claim`) and `finish`, so no other thread accesses `served` meanwhile, and
        // `RunState`'s Release/Acquire pairs order this access after the previous runner's.
        self.served.with_mut(|served| unsafe { *served += bytes });
        self.in_run.store(false, Relaxed);
    }

    /// A worker's job after popping the key: start, serve until `finish` says Idle.
    fn run(&self) {
        self.state.start();
        self.serve_until_idle();
    }

    fn serve_until_idle(&self) {
        loop {
            self.serve_once();
            match self.state.finish() {
                Finish::Idle => return,
                Finish::Again => continue,
            }
        }
    }

    /// The final checks, once every thread has been joined.
    fn assert_all_served(&self, events: usize) {
        let unread = self.socket.load(Relaxed);
        assert_eq!(unread, 0, "{unread} byte(s) never read: an event was lost");
        assert_eq!(self.state.state(), State::Idle);
        // SAFETY: every other thread has been joined.
        let served = self.served.with(|served| unsafe { *served });
        assert_eq!(served, events);
    }
}

/// Spawns `n` workers that pop keys and run the connection until the ring is closed and empty.
fn spawn_workers(
    n: usize,
    conn: &Arc<Conn>,
    ring: &Arc<BlockingRing<usize>>,
) -> Vec<thread::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let (conn, ring) = (Arc::clone(conn), Arc::clone(ring));
            thread::spawn(move || {
                while ring.pop().is_some() {
                    conn.run();
                }
            })
        })
        .collect()
}

/// A queue for the models: parks at once (spin limit 0), two slots (a key is queued at most
/// once, so it never fills).
fn key_queue() -> Arc<BlockingRing<usize>> {
    Arc::new(BlockingRing::with_spin_limit(2, 0))
}

/// The reactor's side of one event: notify, and push the key only when told to.
fn dispatch(conn: &Conn, ring: &BlockingRing<usize>) {
    if conn.event() {
        ring.push(KEY)
            .expect("a key is queued at most once, so a ring of 2 never fills");
    }
}

/// Three events against one worker: whatever the interleaving, each one is served by a run
/// that starts after it, and the worker never runs the connection twice at once.
#[test]
fn run_state_one_worker_loses_no_event() {
    model(3, || {
        const EVENTS: usize = 3;
        let (conn, ring) = (Arc::new(Conn::new()), key_queue());
        let workers = spawn_workers(1, &conn, &ring);
        for _ in 0..EVENTS {
            dispatch(&conn, &ring);
        }
        ring.close();
        workers.into_iter().for_each(|w| w.join().unwrap());
        conn.assert_all_served(EVENTS);
    });
}

/// Two workers race for the key of one connection across two events: never both inside it,
/// each run ordered after the last (loom's `UnsafeCell` check), and no event lost.
#[test]
fn run_state_two_workers_never_overlap() {
    model(2, || {
        const EVENTS: usize = 2;
        let (conn, ring) = (Arc::new(Conn::new()), key_queue());
        let workers = spawn_workers(2, &conn, &ring);
        for _ in 0..EVENTS {
            dispatch(&conn, &ring);
        }
        ring.close();
        workers.into_iter().for_each(|w| w.join().unwrap());
        conn.assert_all_served(EVENTS);
    });
}

/// The reactor sweeps (an idle-timeout check) while a worker may be serving: `try_claim`
/// succeeds only on an Idle connection, and the sweep's access is ordered after the worker's
/// last run.
#[test]
fn run_state_sweep_claims_only_idle() {
    model(3, || {
        let (conn, ring) = (Arc::new(Conn::new()), key_queue());
        let workers = spawn_workers(1, &conn, &ring);
        dispatch(&conn, &ring);
        if conn.state.try_claim() {
            conn.serve_once();
            // Only the reactor notifies, and it is busy here: nothing can have arrived.
            assert_eq!(conn.state.finish(), Finish::Idle);
        }
        ring.close();
        workers.into_iter().for_each(|w| w.join().unwrap());
        conn.assert_all_served(1);
    });
}

/// A worker that yields the connection with `requeue` (a budget spent, bytes maybe still
/// pending) hands it on through the ring: the next run, by either worker, is ordered after
/// it, and the byte is served.
#[test]
fn run_state_requeue_hands_the_connection_on() {
    model(2, || {
        let (conn, ring) = (Arc::new(Conn::new()), key_queue());
        let runs = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (conn, ring, runs) = (Arc::clone(&conn), Arc::clone(&ring), Arc::clone(&runs));
                thread::spawn(move || {
                    while ring.pop().is_some() {
                        conn.state.start();
                        conn.serve_once();
                        if runs.fetch_add(1, Relaxed) == 0 {
                            // The first run yields: back to the queue, key pushed again.
                            conn.state.requeue();
                            ring.push(KEY).unwrap();
                        } else {
                            // The second finishes; no more events come, so it ends the model.
                            assert_eq!(conn.state.finish(), Finish::Idle);
                            ring.close();
                        }
                    }
                })
            })
            .collect();
        dispatch(&conn, &ring);
        workers.into_iter().for_each(|w| w.join().unwrap());
        conn.assert_all_served(1);
    });
}

/// A worker closes the connection (it read end-of-file) while the reactor may deliver a
/// stale event; the reactor then reuses the slot for a new connection. The stale event is
/// ignored or costs one empty run, never a second runner, and the new connection's event is
/// served.
#[test]
fn run_state_close_ignores_stale_events_and_reopens() {
    model(2, || {
        let (conn, ring) = (Arc::new(Conn::new()), key_queue());
        let freed = Arc::new(AtomicBool::new(false));
        let worker = {
            let (conn, ring, freed) = (Arc::clone(&conn), Arc::clone(&ring), Arc::clone(&freed));
            thread::spawn(move || {
                // The first connection: serve it once, then close it and free the key.
                ring.pop().unwrap();
                conn.state.start();
                conn.serve_once();
                assert!(matches!(
                    conn.state.close(),
                    State::Running | State::Notified
                ));
                freed.store(true, Release);
                // The second connection.
                ring.pop().unwrap();
                conn.run();
            })
        };
        dispatch(&conn, &ring);
        dispatch(&conn, &ring); // stale if the worker closes first
        while !freed.load(Acquire) {
            thread::yield_now();
        }
        // Install the new connection: the key is ours again.
        conn.socket.store(0, Relaxed);
        // SAFETY: the slot is Closed and the worker that closed it published `freed` after
        // its last access; the new connection is not yet open to events.
        conn.served.with_mut(|served| unsafe { *served = 0 });
        conn.state.open();
        dispatch(&conn, &ring);
        worker.join().unwrap();
        conn.assert_all_served(1);
    });
}

// ---------------------------------------------------------------------------------------------
// Batched hand-off: push a whole batch, then wake one consumer, who passes the wakeup on.
//
// Teaching switch:
//
//   RUSTFLAGS="--cfg loom --cfg rawloop_no_pass_on" \
//       cargo test -p pool --release --target-dir target-loom/teach --test loom batch_then_one
//
// stops woken consumers from passing the wakeup on. `batch_then_one_wake_reaches_every_consumer`
// (and `two_consumers_two_pushes_all_wake`) then fail with loom's
// "deadlock; threads = [(Id(0), Blocked(..)), (Id(1), Terminated), (Id(2), Blocked(..))]":
// the reactor (thread 0) waits to join a consumer that sleeps on the condvar with an item
// still queued. (The test binary then aborts, so run the models by name.)
// `batch_then_wake_all_needed` still passes: `wake(2)` wakes both sleepers directly.
// ---------------------------------------------------------------------------------------------

/// Two consumers parked (or about to park), a batch of two pushed without waking, then a
/// single `wake(1)`: both consumers must get an item, through the passed-on wakeup.
#[test]
fn batch_then_one_wake_reaches_every_consumer() {
    model(2, || {
        let ring = Arc::new(BlockingRing::with_spin_limit(2, 0));
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let ring = Arc::clone(&ring);
                thread::spawn(move || ring.pop())
            })
            .collect();
        ring.push_without_wake(1).unwrap();
        ring.push_without_wake(2).unwrap();
        assert!(ring.wake(1) <= 1);
        let mut got: Vec<i32> = consumers
            .into_iter()
            .map(|c| c.join().unwrap().unwrap())
            .collect();
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
    });
}

/// `wake(2)` after a batch wakes both sleepers directly, and no more than there are.
#[test]
fn batch_then_wake_all_needed() {
    model(2, || {
        let ring = Arc::new(BlockingRing::with_spin_limit(2, 0));
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let ring = Arc::clone(&ring);
                thread::spawn(move || ring.pop())
            })
            .collect();
        ring.push_without_wake(1).unwrap();
        ring.push_without_wake(2).unwrap();
        assert!(ring.wake(5) <= 2);
        let mut got: Vec<i32> = consumers
            .into_iter()
            .map(|c| c.join().unwrap().unwrap())
            .collect();
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
        assert!(ring.wakeups() <= 2);
    });
}
