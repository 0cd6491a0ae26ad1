//! `RunState`: every transition against a reference model (proptest over random legal
//! sequences), and real threads serving connections through a `Pool`: a reactor thread turns
//! "bytes arrived" into `notify` and batched submits, workers `start`, read, `finish`, and at the
//! end every byte was read exactly once with never two workers inside one connection. The
//! interleavings a test run cannot reach are model-checked in `tests/loom.rs`: the window in
//! which a broken `finish` would lose an event is a few nanoseconds wide, which threads on two
//! cores almost never hit (built with `--cfg rawloop_lost_notify`, these tests still pass) and
//! loom hits every time. Skipped under loom.
#![cfg(not(loom))]

mod util;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use pool::{Finish, PoolBuilder, RunState, SpinPolicy, State, WorkerContext};
use proptest::prelude::*;

const LIMIT: Duration = Duration::from_secs(60);

/// What a caller may do to a `RunState`, when the protocol allows it.
#[derive(Clone, Copy, Debug)]
enum Op {
    Notify,
    Start,
    Finish,
    TryClaim,
    Requeue,
    Close,
    Open,
}

/// The reference: the state as a plain enum, and the keys "in the queue".
#[derive(Debug)]
struct Model {
    state: State,
    queued_keys: usize,
}

impl Model {
    /// Whether the protocol allows `op` now (the caller side of the contract).
    fn allows(&self, op: Op) -> bool {
        match op {
            Op::Notify | Op::TryClaim => true,
            Op::Start => self.queued_keys > 0,
            Op::Finish | Op::Requeue | Op::Close => {
                matches!(self.state, State::Running | State::Notified)
            }
            Op::Open => self.state == State::Closed,
        }
    }
}

proptest! {
    /// Random legal sequences: each call returns what the reference predicts, the decoded
    /// state matches, and a key is queued exactly when the state says Queued.
    #[test]
    fn transitions_match_the_reference(ops in prop::collection::vec(0..7u8, 1..200)) {
        let run_state = RunState::idle();
        let mut model = Model { state: State::Idle, queued_keys: 0 };
        for op in ops {
            let op = [Op::Notify, Op::Start, Op::Finish, Op::TryClaim, Op::Requeue, Op::Close,
                Op::Open][usize::from(op)];
            if !model.allows(op) {
                continue;
            }
            apply(&run_state, &mut model, op);
            prop_assert_eq!(run_state.state(), model.state, "after {:?}", op);
            prop_assert_eq!(model.queued_keys, usize::from(model.state == State::Queued));
        }
    }
}

/// Applies `op` to both and checks the returned values.
fn apply(run_state: &RunState, model: &mut Model, op: Op) {
    use State::*;
    match op {
        Op::Notify => {
            let push = run_state.notify();
            assert_eq!(push, model.state == Idle, "notify from {:?}", model.state);
            model.state = match model.state {
                Idle => Queued,
                Running => Notified,
                other => other,
            };
            model.queued_keys += usize::from(push);
        }
        Op::Start => {
            run_state.start();
            model.queued_keys -= 1;
            model.state = Running;
        }
        Op::Finish => {
            let expected = if model.state == Notified {
                Finish::Again
            } else {
                Finish::Idle
            };
            assert_eq!(run_state.finish(), expected);
            model.state = if expected == Finish::Again {
                Running
            } else {
                Idle
            };
        }
        Op::TryClaim => {
            assert_eq!(run_state.try_claim(), model.state == Idle);
            if model.state == Idle {
                model.state = Running;
            }
        }
        Op::Requeue => {
            run_state.requeue();
            model.state = Queued;
            model.queued_keys += 1;
        }
        Op::Close => {
            assert_eq!(run_state.close(), model.state);
            model.state = Closed;
        }
        Op::Open => {
            run_state.open();
            model.state = Idle;
        }
    }
}

/// An event that lands while a worker runs the connection is not pushed: the same worker's
/// `finish` returns `Again` and serves it, and only then does the connection go idle.
#[test]
fn event_during_a_run_is_served_by_the_same_worker() {
    util::within(LIMIT, || {
        let (entered_tx, entered) = mpsc::channel::<()>();
        let (release, gate) = mpsc::channel::<()>();
        let (entered_tx, gate) = (Mutex::new(entered_tx), Mutex::new(gate));
        let conn = Arc::new(Conn {
            state: RunState::idle(),
            socket: AtomicU64::new(0),
            served: Mutex::new(0),
        });
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let pool = {
            let (conn, outcomes) = (Arc::clone(&conn), Arc::clone(&outcomes));
            PoolBuilder::new()
                .workers(2)
                .pin(false)
                .spawn(move |_key: usize, ctx: &WorkerContext| {
                    conn.state.start();
                    conn.serve_once();
                    // Hold the connection until the test has delivered a second event.
                    entered_tx.lock().unwrap().send(()).unwrap();
                    gate.lock().unwrap().recv().unwrap();
                    loop {
                        let outcome = conn.state.finish();
                        outcomes.lock().unwrap().push((ctx.index, outcome));
                        if outcome == Finish::Idle {
                            break;
                        }
                        conn.serve_once();
                    }
                })
                .unwrap()
        };
        conn.socket.fetch_add(1, Relaxed);
        assert!(conn.state.notify());
        pool.submit(0).unwrap();
        entered.recv().unwrap();
        conn.socket.fetch_add(1, Relaxed);
        assert!(!conn.state.notify(), "running: nothing to push");
        assert_eq!(conn.state.state(), State::Notified);
        release.send(()).unwrap();
        util::wait_until(LIMIT, "the connection to go idle", || {
            conn.state.state() == State::Idle
        });
        pool.shutdown();
        let outcomes = outcomes.lock().unwrap();
        let worker = outcomes[0].0;
        assert_eq!(*outcomes, [(worker, Finish::Again), (worker, Finish::Idle)]);
        assert_eq!(*conn.served.lock().unwrap(), 2);
        assert_eq!(conn.socket.load(Relaxed), 0);
    });
}

#[test]
fn events_on_a_closed_slot_are_ignored_until_open() {
    let slot = RunState::closed();
    assert_eq!(slot.state(), State::Closed);
    assert!(!slot.notify(), "a stale event must not queue a closed slot");
    assert!(!slot.try_claim());
    assert_eq!(slot.state(), State::Closed);
    slot.open();
    assert_eq!(slot.state(), State::Idle);
    assert!(slot.notify());
    assert_eq!(format!("{slot:?}"), "RunState(Queued)");
}

/// A connection as the threaded test sees it.
struct Conn {
    state: RunState,
    /// Bytes "the kernel" queued and nobody read yet.
    socket: AtomicU64,
    /// The connection's own state. Only its runner may hold it: `try_lock` failing means two
    /// threads were inside at once, which the test reports instead of waiting.
    served: Mutex<u64>,
}

impl Conn {
    /// Reads everything queued; panics if another thread holds the connection.
    fn serve_once(&self) {
        let mut served = self
            .served
            .try_lock()
            .expect("two threads inside one connection at once");
        *served += self.socket.swap(0, Relaxed);
    }
}

/// One reactor thread, three workers, sixteen connections, bytes arriving at random: every
/// byte is read, by one runner at a time, and the reactor pushed each key only when told to.
/// The reactor also sweeps (`try_claim`) like an idle-timeout check. A lost event would leave
/// bytes unread and the watchdog would fire while waiting for them.
#[test]
fn pool_serves_every_byte_one_runner_at_a_time() {
    const CONNS: usize = 16;
    const EVENTS: u64 = 200_000;
    util::within(LIMIT, || {
        let conns: Arc<Vec<Conn>> = Arc::new(
            (0..CONNS)
                .map(|_| Conn {
                    state: RunState::idle(),
                    socket: AtomicU64::new(0),
                    served: Mutex::new(0),
                })
                .collect(),
        );
        let runs = Arc::new(AtomicU64::new(0));
        let pool = {
            let (conns, runs) = (Arc::clone(&conns), Arc::clone(&runs));
            PoolBuilder::new()
                .workers(3)
                .pin(false)
                .capacity(8) // smaller than the connections, so the backlog path is taken
                .spin(SpinPolicy::adaptive())
                .spawn(move |key: usize, _: &WorkerContext| {
                    let conn = &conns[key];
                    conn.state.start();
                    loop {
                        runs.fetch_add(1, Relaxed);
                        conn.serve_once();
                        // Some work while holding it, so that events land during runs.
                        spin_for(Duration::from_micros(2));
                        if conn.state.finish() == Finish::Idle {
                            break;
                        }
                    }
                })
                .unwrap()
        };
        let mut backlog = VecDeque::new();
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut sweeps_claimed = 0;
        for event in 0..EVENTS {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let key = (rng % CONNS as u64) as usize;
            let conn = &conns[key];
            conn.socket.fetch_add(1, Relaxed);
            if conn.state.notify() {
                backlog.push_back(key);
            }
            // A batch per "epoll_wait": every few events, then a pause of 0 to 15 µs so the
            // workers catch up and connections go idle and come back.
            if event % 8 == 7 {
                pool.submit_batch(&mut backlog);
                spin_for(Duration::from_nanos(rng % 16_000));
            }
            if event % 1024 == 0 {
                let swept = &conns[(event as usize / 1024) % CONNS];
                if swept.state.try_claim() {
                    sweeps_claimed += 1;
                    swept.serve_once();
                    // Only this thread notifies, so nothing can have arrived meanwhile.
                    assert_eq!(swept.state.finish(), Finish::Idle);
                }
            }
        }
        while !backlog.is_empty() {
            pool.submit_batch(&mut backlog);
            thread::yield_now();
        }
        util::wait_until(
            LIMIT,
            "every connection to go idle with nothing unread",
            || {
                conns
                    .iter()
                    .all(|c| c.state.state() == State::Idle && c.socket.load(Relaxed) == 0)
            },
        );
        let stats = pool.shutdown();
        let served: u64 = conns.iter().map(|c| *c.served.lock().unwrap()).sum();
        assert_eq!(served, EVENTS, "every byte read exactly once");
        let jobs: u64 = stats.workers.iter().map(|w| w.jobs).sum();
        assert!(jobs <= EVENTS, "at most one push per event");
        assert!(
            jobs > 100 * CONNS as u64,
            "connections went idle and were queued again"
        );
        assert!(runs.load(Relaxed) >= jobs);
        assert!(stats.ring_full > 0, "the backlog path was taken");
        assert!(sweeps_claimed > 0, "some sweep found an idle connection");
    });
}

/// Busy-waits for `span` (a sleep this short would oversleep by the timer slack).
fn spin_for(span: Duration) {
    let until = std::time::Instant::now() + span;
    while std::time::Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// A worker closes a connection (end-of-file) while its events keep coming; the reactor then
/// reuses the slot. Stale events never queue the closed slot, and the new connection is served.
#[test]
fn closed_slot_ignores_events_and_is_reused() {
    util::within(LIMIT, || {
        let conn = Arc::new(Conn {
            state: RunState::idle(),
            socket: AtomicU64::new(0),
            served: Mutex::new(0),
        });
        let freed = Arc::new(AtomicBool::new(false));
        let pool = {
            let (conn, freed) = (Arc::clone(&conn), Arc::clone(&freed));
            PoolBuilder::new()
                .workers(2)
                .pin(false)
                .spawn(move |_key: usize, _: &WorkerContext| {
                    conn.state.start();
                    conn.serve_once();
                    if !freed.load(Relaxed) {
                        // The first connection "reads end-of-file" and closes.
                        assert!(matches!(
                            conn.state.close(),
                            State::Running | State::Notified
                        ));
                        freed.store(true, Relaxed);
                        return;
                    }
                    while conn.state.finish() == Finish::Again {
                        conn.serve_once();
                    }
                })
                .unwrap()
        };
        let dispatch = |conn: &Conn| {
            conn.socket.fetch_add(1, Relaxed);
            if conn.state.notify() {
                pool.submit(0).unwrap();
            }
        };
        dispatch(&conn);
        util::wait_until(LIMIT, "the worker to close the slot", || {
            freed.load(Relaxed)
        });
        for _ in 0..100 {
            dispatch(&conn); // stale: the slot is closed
        }
        assert_eq!(conn.state.state(), State::Closed);
        // Reuse: a new connection in the slot.
        conn.socket.store(0, Relaxed);
        *conn.served.lock().unwrap() = 0;
        conn.state.open();
        for _ in 0..1000 {
            dispatch(&conn);
        }
        util::wait_until(LIMIT, "the new connection to be served", || {
            conn.state.state() == State::Idle && conn.socket.load(Relaxed) == 0
        });
        pool.shutdown();
        assert_eq!(*conn.served.lock().unwrap(), 1000);
    });
}
