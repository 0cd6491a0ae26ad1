//! `Pool`: jobs run exactly once on named, pinned workers; panics are contained; shutdown
//! drains a full ring and releases parked workers; statistics are live. Real threads, under a
//! watchdog so a stuck shutdown fails instead of hanging. Skipped under loom.
#![cfg(not(loom))]

mod util;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use pool::{available_cores, PoolBuilder, WorkerContext};

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn every_job_runs_exactly_once() {
    util::within(LIMIT, || {
        const JOBS: u64 = 20_000;
        let sum = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&sum);
        let pool = PoolBuilder::new()
            .workers(3)
            .pin(false)
            .capacity(64)
            .spawn(move |n: u64, _: &WorkerContext| {
                seen.fetch_add(n, Relaxed);
            })
            .unwrap();
        assert_eq!(pool.workers(), 3);
        for mut n in 1..=JOBS {
            while let Err(back) = pool.submit(n) {
                n = back;
                thread::yield_now();
            }
        }
        let stats = pool.stats();
        pool.shutdown();
        assert_eq!(sum.load(Relaxed), JOBS * (JOBS + 1) / 2);
        assert_eq!(stats.workers.len(), 3);
        assert!(stats.ring_high_water >= 1 && stats.ring_high_water <= 64);
    });
}

#[test]
fn workers_are_named_and_pinned_by_index() {
    util::within(LIMIT, || {
        let initial_cores = core_affinity::get_core_ids().unwrap_or_default();
        let workers = available_cores();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let pool = PoolBuilder::new()
            .workers(workers)
            .name("rl-test")
            .spawn(move |(): (), ctx: &WorkerContext| {
                let name = thread::current().name().map(str::to_owned);
                let mask = core_affinity::get_core_ids().unwrap_or_default();
                record.lock().unwrap().push((ctx.index, name, mask));
                // Hold this worker so the next job goes to another one.
                thread::sleep(Duration::from_millis(50));
            })
            .unwrap();
        // Submit until every worker has run a job.
        util::wait_until(LIMIT, "every worker to run a job", || {
            let _ = pool.submit(());
            let stats = pool.stats();
            stats.workers.iter().all(|w| w.jobs > 0)
        });
        pool.shutdown();
        for (index, name, mask) in seen.lock().unwrap().iter() {
            assert_eq!(name.as_deref(), Some(format!("rl-test-{index}").as_str()));
            if !initial_cores.is_empty() {
                let expected = initial_cores[index % initial_cores.len()].id;
                let ids: Vec<usize> = mask.iter().map(|c| c.id).collect();
                assert_eq!(
                    ids,
                    [expected],
                    "worker {index} should be pinned to one core"
                );
            }
        }
    });
}

#[test]
fn default_names_are_rawloop_worker_index() {
    util::within(LIMIT, || {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let pool = PoolBuilder::new()
            .workers(1)
            .pin(false)
            .spawn(move |(): (), _: &WorkerContext| {
                let name = thread::current().name().map(str::to_owned);
                tx.lock().unwrap().send(name).unwrap();
            })
            .unwrap();
        pool.submit(()).unwrap();
        assert_eq!(rx.recv().unwrap().as_deref(), Some("rawloop-worker-0"));
    });
}

#[test]
fn panicking_job_is_counted_and_worker_lives_on() {
    util::within(LIMIT, || {
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&ran);
        let pool = PoolBuilder::new()
            .workers(1)
            .pin(false)
            .spawn(move |n: u32, _: &WorkerContext| {
                if n.is_multiple_of(10) {
                    panic!("job {n} fails on purpose");
                }
                counter.fetch_add(1, Relaxed);
            })
            .unwrap();
        for n in 1..=30 {
            pool.submit(n).unwrap();
        }
        // Read the stats while running, once all 30 jobs were taken.
        util::wait_until(LIMIT, "30 jobs", || pool.stats().workers[0].jobs == 30);
        let stats = pool.stats();
        pool.shutdown();
        assert_eq!(stats.workers[0].panics, 3);
        assert_eq!(
            ran.load(Relaxed),
            27,
            "the one worker survived all three panics"
        );
    });
}

/// A full ring refuses submits (counted), and shutdown still runs every accepted job.
#[test]
fn shutdown_with_full_ring_drains_everything() {
    util::within(LIMIT, || {
        let (release, gate) = mpsc::channel::<()>();
        let gate = Mutex::new(gate);
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&ran);
        let pool = PoolBuilder::new()
            .workers(1)
            .pin(false)
            .capacity(8)
            .spawn(move |first: bool, _: &WorkerContext| {
                if first {
                    // Block the only worker until the test has filled the ring.
                    gate.lock().unwrap().recv().unwrap();
                }
                counter.fetch_add(1, Relaxed);
            })
            .unwrap();
        pool.submit(true).unwrap();
        util::wait_until(LIMIT, "the worker to take the first job", || {
            pool.stats().ring_len == 0
        });
        let mut accepted = 1;
        while pool.submit(false).is_ok() {
            accepted += 1;
        }
        assert_eq!(accepted, 1 + 8);
        assert_eq!(pool.submit(false), Err(false));
        let stats = pool.stats();
        assert_eq!(stats.ring_full, 2);
        assert_eq!(stats.ring_len, 8);
        assert_eq!(stats.ring_high_water, 8);
        release.send(()).unwrap();
        pool.shutdown();
        assert_eq!(ran.load(Relaxed), accepted);
    });
}

#[test]
fn shutdown_with_parked_workers_terminates() {
    util::within(LIMIT, || {
        let pool = PoolBuilder::new()
            .workers(3)
            .pin(false)
            .spin_limit(0)
            .spawn(|(): (), _: &WorkerContext| {})
            .unwrap();
        util::wait_until(LIMIT, "all workers to park", || pool.stats().sleeping == 3);
        pool.shutdown();
    });
}

#[test]
fn dropping_the_pool_drains_and_joins() {
    util::within(LIMIT, || {
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&ran);
        let pool = PoolBuilder::new()
            .workers(2)
            .pin(false)
            .spawn(move |(): (), _: &WorkerContext| {
                thread::sleep(Duration::from_millis(1));
                counter.fetch_add(1, Relaxed);
            })
            .unwrap();
        for _ in 0..50 {
            pool.submit(()).unwrap();
        }
        drop(pool);
        assert_eq!(ran.load(Relaxed), 50);
    });
}

/// Idle workers park, a submit wakes one, and the wakeup and parked time show in the stats.
#[test]
fn idle_workers_park_and_wake_on_submit() {
    util::within(LIMIT, || {
        let pool = PoolBuilder::new()
            .workers(2)
            .pin(false)
            .spin_limit(0)
            .spawn(|(): (), _: &WorkerContext| {})
            .unwrap();
        util::wait_until(LIMIT, "both workers to park", || pool.stats().sleeping == 2);
        thread::sleep(Duration::from_millis(20));
        pool.submit(()).unwrap();
        util::wait_until(LIMIT, "the job to run", || {
            pool.stats().workers.iter().map(|w| w.jobs).sum::<u64>() == 1
        });
        let stats = pool.stats();
        assert_eq!(stats.wakeups, 1, "one submit, one parked worker woken");
        let woken = stats.workers.iter().find(|w| w.jobs == 1).unwrap();
        assert!(woken.parks >= 1);
        assert!(
            woken.parked_ns >= 20_000_000,
            "parked for at least the 20 ms we slept"
        );
        pool.shutdown();
    });
}
