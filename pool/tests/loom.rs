//! Loom models of the ring and its parking handshake: every interleaving of a few tiny
//! scenarios, and every value each relaxed or acquire load may legally return in them.
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
//! Teaching switch: add `--cfg rawloop_weak_ordering` to `RUSTFLAGS` and every model fails
//! at once with a causality violation, because the producer's publishing store of `seq` is
//! then `Relaxed` (see `src/ring.rs`). Deleting the `SeqCst` fence in `BlockingRing::wake_one`
//! instead makes the parking models deadlock: that fence is what prevents the lost wakeup.
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
