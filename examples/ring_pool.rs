//! The `pool` crate in one screen: a `Ring` (Vyukov's bounded MPMC queue) used by hand, then
//! a `Pool` of pinned workers fed through one, with each worker's job count from its stats.
//!
//! `cargo run --example ring_pool [JOBS]` (default 10000 jobs).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use pool::{PoolBuilder, Ring, WorkerContext};

fn main() -> std::io::Result<()> {
    let jobs: u64 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);

    // A ring asked for 3 slots has 4: capacities round up to a power of two, so that a
    // position maps to its slot with a mask instead of a division.
    let ring = Ring::new(3);
    let refused = (0..5)
        .filter_map(|n| ring.try_push(n).err())
        .collect::<Vec<_>>();
    println!(
        "ring of {}: pushed 0..5, refused {refused:?} (full: the value comes back)",
        ring.capacity()
    );
    let popped: Vec<i32> = std::iter::from_fn(|| ring.try_pop()).collect();
    println!("popped {popped:?} in FIFO order, then None (empty)");

    // A pool: one worker per core, pinned, taking jobs from a BlockingRing of 256 slots.
    // The handler runs on the worker threads; the shared sum checks that no job is lost.
    let sum = Arc::new(AtomicU64::new(0));
    let worker_sum = Arc::clone(&sum);
    let pool = PoolBuilder::new()
        .capacity(256)
        .spawn(move |job: u64, _ctx: &WorkerContext| {
            worker_sum.fetch_add(job, Relaxed);
        })?;
    for job in 1..=jobs {
        // `submit` never blocks: a full ring hands the job back and the caller decides. An
        // event loop would keep the connection and retry later; here we just let the
        // workers catch up.
        let mut job = job;
        while let Err(back) = pool.submit(job) {
            job = back;
            std::thread::yield_now();
        }
    }
    // Wait until the workers have run every job, to read the final counts before shutdown.
    while pool.stats().workers.iter().map(|w| w.jobs).sum::<u64>() < jobs {
        std::thread::sleep(Duration::from_millis(1));
    }
    let stats = pool.stats();
    for (index, worker) in stats.workers.iter().enumerate() {
        println!(
            "worker {index}: {} jobs, parked {} times",
            worker.jobs, worker.parks
        );
    }
    println!(
        "ring full {} times, high water {} of 256, {} wakeups",
        stats.ring_full, stats.ring_high_water, stats.wakeups
    );
    pool.shutdown(); // Closes the ring, drains it, joins the workers.
    assert_eq!(
        sum.load(Relaxed),
        jobs * (jobs + 1) / 2,
        "every job ran exactly once"
    );
    println!(
        "sum of 1..={jobs} = {}: every job ran once",
        sum.load(Relaxed)
    );
    Ok(())
}
