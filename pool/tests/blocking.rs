//! `BlockingRing`: parked consumers use no CPU, wake on a push (one per push, and only when one
//! is parked), a batch pushed without waking is fully taken after one `wake(1)`, `close`
//! drains then releases every consumer, and `pop_with_spinner` reports each wait. Real
//! threads; every test that could hang on a lost wakeup runs under a watchdog. Skipped under
//! loom (`tests/loom.rs` model-checks the same handshake there).
#![cfg(not(loom))]

mod util;

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use pool::{BlockingRing, PushError, SpinPolicy, Spinner};

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn push_without_sleepers_makes_no_wakeup() {
    let ring = BlockingRing::new(8);
    for i in 0..8 {
        ring.push(i).unwrap();
    }
    assert!(matches!(ring.push(8), Err(PushError::Full(8))));
    assert_eq!(
        ring.wakeups(),
        0,
        "nobody was parked: no notify may be issued"
    );
    for i in 0..8 {
        assert_eq!(ring.pop(), Some(i));
    }
}

#[test]
fn parked_consumer_wakes_on_push() {
    util::within(LIMIT, || {
        let ring = Arc::new(BlockingRing::with_spin_limit(8, 0));
        let consumer = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || {
                let mut parks = 0;
                let item = ring.pop_with(|_| parks += 1);
                (item, parks)
            })
        };
        util::wait_until(LIMIT, "the consumer to park", || ring.sleepers() == 1);
        ring.push(42u64).unwrap();
        let (item, parks) = consumer.join().unwrap();
        assert_eq!(item, Some(42));
        assert_eq!(parks, 1);
        assert_eq!(ring.wakeups(), 1);
        assert_eq!(ring.sleepers(), 0);
    });
}

#[test]
fn one_wakeup_per_push_even_before_the_woken_consumer_runs() {
    util::within(LIMIT, || {
        let ring = Arc::new(BlockingRing::with_spin_limit(8, 0));
        let consumer = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || ring.pop())
        };
        util::wait_until(LIMIT, "the consumer to park", || ring.sleepers() == 1);
        // Two pushes back to back: the first hands the only sleeper a permit, so the second
        // sees no sleeper and must not notify again, whether or not the consumer has run.
        ring.push(1).unwrap();
        ring.push(2).unwrap();
        assert_eq!(consumer.join().unwrap(), Some(1));
        assert_eq!(ring.wakeups(), 1);
        assert_eq!(ring.pop(), Some(2));
    });
}

#[test]
fn close_releases_parked_consumers() {
    util::within(LIMIT, || {
        let ring = Arc::new(BlockingRing::<u32>::with_spin_limit(8, 0));
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let ring = Arc::clone(&ring);
                thread::spawn(move || ring.pop())
            })
            .collect();
        util::wait_until(LIMIT, "all consumers to park", || ring.sleepers() == 3);
        ring.close();
        for consumer in consumers {
            assert_eq!(consumer.join().unwrap(), None);
        }
        assert!(matches!(ring.push(1), Err(PushError::Closed(1))));
    });
}

#[test]
fn close_drains_queued_items_first() {
    let ring = BlockingRing::new(16);
    for i in 0..10 {
        ring.push(i).unwrap();
    }
    ring.close();
    let drained: Vec<i32> = std::iter::from_fn(|| ring.pop()).collect();
    assert_eq!(drained, (0..10).collect::<Vec<_>>());
}

/// Many producers and consumers that park at every empty poll: a lost wakeup would leave a
/// consumer asleep with items queued, and the watchdog would fire. Exact accounting at the end.
#[test]
fn mpmc_with_parking_loses_nothing() {
    const PRODUCERS: usize = 2;
    const CONSUMERS: usize = 3;
    const PER_PRODUCER: usize = 20_000;
    util::within(LIMIT, || {
        let ring = Arc::new(BlockingRing::<usize>::with_spin_limit(4, 0));
        let seen: Arc<Vec<AtomicUsize>> = Arc::new(
            (0..PRODUCERS * PER_PRODUCER)
                .map(|_| AtomicUsize::new(0))
                .collect(),
        );
        let consumers: Vec<_> = (0..CONSUMERS)
            .map(|_| {
                let (ring, seen) = (Arc::clone(&ring), Arc::clone(&seen));
                thread::spawn(move || {
                    while let Some(item) = ring.pop() {
                        seen[item].fetch_add(1, Relaxed);
                    }
                })
            })
            .collect();
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    for i in 0..PER_PRODUCER {
                        let mut item = p * PER_PRODUCER + i;
                        while let Err(back) = ring.push(item) {
                            item = back.into_inner();
                            thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        for producer in producers {
            producer.join().unwrap();
        }
        ring.close();
        for consumer in consumers {
            consumer.join().unwrap();
        }
        for (item, count) in seen.iter().enumerate() {
            assert_eq!(count.load(Relaxed), 1, "item {item}");
        }
        assert!(
            ring.wakeups() > 0,
            "consumers parked at spin limit 0, someone woke them"
        );
    });
}

/// A batch pushed without waking, then one `wake(1)`: three parked consumers all get an item,
/// the first woken passing the wakeup on; never more wakeups than items.
#[test]
fn batch_with_one_wake_reaches_every_parked_consumer() {
    util::within(LIMIT, || {
        let ring = Arc::new(BlockingRing::<u32>::with_spin_limit(8, 0));
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let ring = Arc::clone(&ring);
                thread::spawn(move || ring.pop())
            })
            .collect();
        util::wait_until(LIMIT, "all consumers to park", || ring.sleepers() == 3);
        for item in 0..3 {
            ring.push_without_wake(item).unwrap();
        }
        assert_eq!(ring.wakeups(), 0, "pushing a batch wakes nobody");
        assert_eq!(ring.wake(1), 1);
        let mut got: Vec<u32> = consumers
            .into_iter()
            .map(|c| c.join().unwrap().unwrap())
            .collect();
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2]);
        assert_eq!(ring.wakeups(), 3, "one from the producer, two passed on");
    });
}

#[test]
fn wake_without_sleepers_is_free_and_push_without_wake_respects_close() {
    let ring = BlockingRing::new(2);
    assert_eq!(ring.wake(4), 0);
    ring.push_without_wake(1).unwrap();
    ring.push_without_wake(2).unwrap();
    assert!(matches!(ring.push_without_wake(3), Err(PushError::Full(3))));
    ring.close();
    assert!(matches!(
        ring.push_without_wake(4),
        Err(PushError::Closed(4))
    ));
    assert_eq!(ring.wakeups(), 0);
}

/// `pop_with_spinner` reports one wait: with no spinning, a park that a push ended.
#[test]
fn pop_with_spinner_reports_the_park_and_the_unpark() {
    util::within(LIMIT, || {
        let ring = Arc::new(BlockingRing::with_spin_limit(8, 0));
        let consumer = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || {
                let mut spinner = Spinner::new(SpinPolicy::None);
                let mut reports = Vec::new();
                let item = ring.pop_with_spinner(&mut spinner, |idle| reports.push(*idle));
                // An item already queued: the fast path reports nothing.
                let second = ring.pop_with_spinner(&mut spinner, |idle| reports.push(*idle));
                (item, second, reports)
            })
        };
        util::wait_until(LIMIT, "the consumer to park", || ring.sleepers() == 1);
        ring.push_without_wake(7u64).unwrap();
        ring.push_without_wake(8u64).unwrap();
        ring.wake(1);
        let (item, second, reports) = consumer.join().unwrap();
        assert_eq!((item, second), (Some(7), Some(8)));
        assert_eq!(reports.len(), 1, "{reports:?}");
        let idle = reports[0];
        assert_eq!((idle.parks, idle.unparks), (1, 1), "{idle:?}");
        assert!(!idle.found_by_spin);
        assert!(idle.parked > Duration::ZERO);
    });
}
