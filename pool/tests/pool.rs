//! `Pool`: jobs run exactly once on named, pinned workers; panics are contained; shutdown
//! drains a full ring and releases parked workers, `shutdown_now` hands the queue back;
//! batches keep order, hand back what does not fit and wake at most one worker per job; every
//! spin policy runs every job; statistics are live. Real threads, under a
//! watchdog so a stuck shutdown fails instead of hanging. Skipped under loom.
#![cfg(not(loom))]

mod util;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use pool::{available_cores, PoolBuilder, SpinPolicy, WorkerContext};

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

/// Blocks the pool's only worker inside a job until the returned sender is used (or dropped).
/// Returns the pool (jobs: `true` blocks, `false` counts), the release, and the run counter.
fn pool_with_blocked_worker(
    capacity: usize,
) -> (pool::Pool<bool>, mpsc::Sender<()>, Arc<AtomicUsize>) {
    let (release, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let ran = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&ran);
    let pool = PoolBuilder::new()
        .workers(1)
        .pin(false)
        .capacity(capacity)
        .spawn(move |blocks: bool, _: &WorkerContext| {
            if blocks {
                let _ = gate.lock().unwrap().recv();
            }
            counter.fetch_add(1, Relaxed);
        })
        .unwrap();
    pool.submit(true).unwrap();
    util::wait_until(LIMIT, "the worker to take the blocking job", || {
        pool.stats().ring_len == 0
    });
    (pool, release, ran)
}

/// A batch larger than the free room: the ring takes what fits, the rest stays in the
/// backlog in order, and a later batch takes it. Nothing is dropped.
#[test]
fn submit_batch_hands_back_what_the_ring_refuses() {
    util::within(LIMIT, || {
        let (pool, release, ran) = pool_with_blocked_worker(8);
        let mut backlog: VecDeque<bool> = std::iter::repeat_n(false, 11).collect();
        assert_eq!(pool.submit_batch(&mut backlog), 8);
        assert_eq!(backlog.len(), 3, "the refused jobs stay in the backlog");
        assert_eq!(pool.submit_batch(&mut backlog), 0, "still full");
        assert_eq!(backlog.len(), 3);
        let stats = pool.stats();
        assert_eq!((stats.ring_len, stats.ring_full), (8, 2));
        release.send(()).unwrap();
        while !backlog.is_empty() {
            pool.submit_batch(&mut backlog);
            thread::yield_now();
        }
        pool.shutdown();
        assert_eq!(ran.load(Relaxed), 1 + 11);
    });
}

/// Order is kept: jobs leave the backlog from the front, and the ring is FIFO.
#[test]
fn submit_batch_keeps_order() {
    util::within(LIMIT, || {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let pool = PoolBuilder::new()
            .workers(1)
            .pin(false)
            .capacity(4)
            .spawn(move |n: u32, _: &WorkerContext| record.lock().unwrap().push(n))
            .unwrap();
        let mut backlog: VecDeque<u32> = (0..1000).collect();
        while !backlog.is_empty() {
            pool.submit_batch(&mut backlog);
            thread::yield_now();
        }
        pool.shutdown();
        assert_eq!(*seen.lock().unwrap(), (0..1000).collect::<Vec<_>>());
    });
}

/// Three parked workers, a batch of two: one wake from the submitter, passed on at most once,
/// so at most two wakeups; the third worker sleeps on. (`submit` one by one may wake a worker
/// per job instead.)
#[test]
fn batch_wakes_at_most_one_worker_per_job() {
    util::within(LIMIT, || {
        let (release, gate) = mpsc::channel::<()>();
        let gate = Mutex::new(gate);
        let entered = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&entered);
        let pool = PoolBuilder::new()
            .workers(3)
            .pin(false)
            .spin(SpinPolicy::None)
            .spawn(move |(): (), _: &WorkerContext| {
                counter.fetch_add(1, Relaxed);
                let _ = gate.lock().unwrap().recv();
            })
            .unwrap();
        util::wait_until(LIMIT, "all workers to park", || pool.stats().sleeping == 3);
        let mut backlog: VecDeque<()> = [(), ()].into_iter().collect();
        assert_eq!(pool.submit_batch(&mut backlog), 2);
        // A worker records its wait before it starts the job, so once both jobs have started
        // the counters are complete.
        util::wait_until(LIMIT, "both jobs to start", || entered.load(Relaxed) == 2);
        let stats = pool.stats();
        assert!(
            (1..=2).contains(&stats.wakeups),
            "{} wakeups for 2 jobs",
            stats.wakeups
        );
        let unparks: u64 = stats.workers.iter().map(|w| w.unparks).sum();
        assert_eq!(unparks, stats.wakeups, "each wakeup is one worker's unpark");
        assert_eq!(stats.sleeping, 1, "the third worker was not woken");
        drop(release);
        pool.shutdown();
    });
}

/// `wake(n)` wakes up to `n` parked workers directly, and never more than are parked.
#[test]
fn wake_n_wakes_that_many_parked_workers() {
    util::within(LIMIT, || {
        let pool = PoolBuilder::new()
            .workers(3)
            .pin(false)
            .spin(SpinPolicy::None)
            .spawn(|(): (), _: &WorkerContext| {})
            .unwrap();
        util::wait_until(LIMIT, "all workers to park", || pool.stats().sleeping == 3);
        assert_eq!(pool.wake(0), 0);
        assert_eq!(pool.wake(2), 2);
        // The two woken find nothing and park again; the permits went to exactly two.
        util::wait_until(LIMIT, "the woken workers to park again", || {
            pool.stats().sleeping == 3
        });
        assert_eq!(pool.wake(10), 3);
        let stats = pool.shutdown();
        assert_eq!(stats.wakeups, 5);
        let unparks: u64 = stats.workers.iter().map(|w| w.unparks).sum();
        assert_eq!(unparks, 5);
    });
}

/// `submit_without_wake` queues without waking: a parked worker stays parked until `wake`.
#[test]
fn submit_without_wake_leaves_workers_asleep_until_wake() {
    util::within(LIMIT, || {
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&ran);
        let pool = PoolBuilder::new()
            .workers(1)
            .pin(false)
            .spin(SpinPolicy::None)
            .spawn(move |(): (), _: &WorkerContext| {
                counter.fetch_add(1, Relaxed);
            })
            .unwrap();
        util::wait_until(LIMIT, "the worker to park", || pool.stats().sleeping == 1);
        pool.submit_without_wake(()).unwrap();
        thread::sleep(Duration::from_millis(50));
        assert_eq!(ran.load(Relaxed), 0, "nobody woke the worker");
        assert_eq!(pool.wake(1), 1);
        util::wait_until(LIMIT, "the job to run", || ran.load(Relaxed) == 1);
        pool.shutdown();
    });
}

/// `shutdown_now` with one job in progress and a full queue: the job in progress finishes,
/// the queued ones come back unrun, and the counts add up exactly.
#[test]
fn shutdown_now_hands_back_queued_jobs_and_finishes_the_running_one() {
    util::within(LIMIT, || {
        let (pool, release, ran) = pool_with_blocked_worker(8);
        let mut queued = 0;
        while pool.submit(false).is_ok() {
            queued += 1;
        }
        assert_eq!(queued, 8);
        // Let the blocked job go only after shutdown_now has raised its flag: it must still
        // finish, and no queued job may start.
        let releaser = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            release.send(()).unwrap();
        });
        let abandoned = pool.shutdown_now();
        releaser.join().unwrap();
        assert_eq!(ran.load(Relaxed), 1, "only the job in progress ran");
        assert_eq!(abandoned.jobs.len(), 8);
        assert!(abandoned.jobs.iter().all(|&blocks| !blocks));
        assert_eq!(abandoned.stats.workers[0].jobs, 1);
    });
}

/// `shutdown_now` on parked workers returns at once with nothing to hand back.
#[test]
fn shutdown_now_with_parked_workers_terminates() {
    util::within(LIMIT, || {
        let pool = PoolBuilder::new()
            .workers(3)
            .pin(false)
            .spin(SpinPolicy::None)
            .spawn(|(): (), _: &WorkerContext| {})
            .unwrap();
        util::wait_until(LIMIT, "all workers to park", || pool.stats().sleeping == 3);
        let abandoned = pool.shutdown_now();
        assert!(abandoned.jobs.is_empty());
    });
}

/// Many jobs, many workers, `shutdown_now` mid-stream: every submitted job either ran or came
/// back, never both, never neither.
#[test]
fn shutdown_now_accounts_for_every_job() {
    util::within(LIMIT, || {
        const JOBS: usize = 50_000;
        let ran: Arc<Vec<AtomicUsize>> = Arc::new((0..JOBS).map(|_| AtomicUsize::new(0)).collect());
        let record = Arc::clone(&ran);
        let pool = PoolBuilder::new()
            .workers(3)
            .pin(false)
            .capacity(256)
            .spawn(move |n: usize, _: &WorkerContext| {
                record[n].fetch_add(1, Relaxed);
            })
            .unwrap();
        let mut submitted = 0;
        while submitted < JOBS {
            if pool.submit(submitted).is_ok() {
                submitted += 1;
            }
            if submitted == JOBS / 2 {
                break;
            }
        }
        let abandoned = pool.shutdown_now();
        for &n in &abandoned.jobs {
            assert_eq!(ran[n].load(Relaxed), 0, "job {n} ran and came back");
            ran[n].fetch_add(1, Relaxed);
        }
        for (n, count) in ran.iter().enumerate().take(submitted) {
            assert_eq!(count.load(Relaxed), 1, "job {n}");
        }
        let jobs: u64 = abandoned.stats.workers.iter().map(|w| w.jobs).sum();
        assert_eq!(jobs as usize + abandoned.jobs.len(), submitted);
    });
}

/// Each spin policy runs every job, and the counters tell the policies apart: `None` never
/// spins, and every worker's unparks are wakeups someone paid for.
#[test]
fn every_spin_policy_runs_every_job_and_counts_its_waiting() {
    util::within(LIMIT, || {
        for policy in [
            SpinPolicy::None,
            SpinPolicy::Fixed(64),
            SpinPolicy::adaptive(),
        ] {
            const JOBS: u64 = 2_000;
            let sum = Arc::new(AtomicU64::new(0));
            let seen = Arc::clone(&sum);
            let pool = PoolBuilder::new()
                .workers(2)
                .pin(false)
                .spin(policy)
                .spawn(move |n: u64, _: &WorkerContext| {
                    seen.fetch_add(n, Relaxed);
                })
                .unwrap();
            for n in 1..=JOBS {
                pool.submit(n).unwrap();
                // Gaps of 0 to 40 µs: some idle periods end while spinning, some parked.
                let until = std::time::Instant::now() + Duration::from_micros(n % 41);
                while std::time::Instant::now() < until {
                    std::hint::spin_loop();
                }
            }
            let stats = pool.shutdown();
            assert_eq!(sum.load(Relaxed), JOBS * (JOBS + 1) / 2, "{policy:?}");
            let unparks: u64 = stats.workers.iter().map(|w| w.unparks).sum();
            let parks: u64 = stats.workers.iter().map(|w| w.parks).sum();
            assert_eq!(unparks, stats.wakeups, "{policy:?}");
            assert!(unparks <= parks, "{policy:?}");
            if policy == SpinPolicy::None {
                assert!(stats.workers.iter().all(|w| w.spin_hits == 0), "{stats:?}");
            }
        }
    });
}
