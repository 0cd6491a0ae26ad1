//! Criterion benchmark of `pool::Ring` against its yardsticks, crossbeam-queue's
//! `ArrayQueue` (the same Vyukov algorithm, tuned by crossbeam) and the standard library's
//! `std::sync::mpsc::sync_channel` (a bounded blocking channel), plus the park-to-wake latency
//! of `pool::BlockingRing`.
//!
//! ```text
//! CARGO_TARGET_DIR=... cargo bench --bench ring
//! ```
//!
//! Throughput: `u64` items through a queue of capacity 1024, in three shapes: 1 producer / 1
//! consumer, 2P/2C and 1P/2C (the reactor feeding workers); `vyukov-ring-sp` is our ring with
//! its single-producer fast path. Criterion measures each queue in turn; then an interleaved
//! pass runs every queue once per round (250 000 items), rotating the order, for 61 rounds, and prints medians
//! and the median per-round ratio against `ArrayQueue`. On a shared two-core machine the
//! interleaved figures are the ones to quote: background load drifts over seconds, and a
//! ratio of two runs taken a few milliseconds apart cancels most of it. Every queue gets the same harness: a thread that finds
//! the queue full (or empty) spins 64 times with `spin_loop`, then yields, so that with more
//! threads than cores a waiter gives its core to the thread it waits for. Criterion's
//! `iter_custom` times one whole transfer of `iters` items, from the moment all threads are
//! released to the moment the last one finishes; the reported time is per item.
//!
//! `sync_channel` has one receiver; with two consumers they share it behind a `Mutex`, the
//! usual std idiom, and pay for it.
//!
//! Latency: a consumer parks in `BlockingRing::pop` (spin limit 0); once it counts as a
//! sleeper, and 20 µs later, the main thread pushes an `Instant`, and the consumer measures the
//! time until its `pop` returns.
//! The same with `sync_channel`'s blocking `recv` for comparison. Both sleep in `futex(2)`,
//! so this is mostly the kernel's wakeup and scheduling path.
//!
//! The whole run takes about a minute on two cores (sample size and measurement time are
//! set below); results land in `target/criterion/`, medians in each `new/estimates.json`.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use crossbeam_queue::ArrayQueue;
use pool::{BlockingRing, Ring};

const CAPACITY: usize = 1024;
/// `(name, producers, consumers)`.
const SHAPES: [(&str, usize, usize); 3] = [("1p1c", 1, 1), ("2p2c", 2, 2), ("1p2c", 1, 2)];

/// The queues under test, in the order each shape runs them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Contender {
    /// `pool::Ring`, multi-producer pushes.
    Ring,
    /// `pool::Ring` through its single-producer `Producer` (1-producer shapes only).
    RingSp,
    /// `crossbeam_queue::ArrayQueue`.
    ArrayQueue,
    /// `std::sync::mpsc::sync_channel`, the receiver behind a `Mutex` when shared.
    SyncChannel,
}

const QUEUES: [Contender; 4] = [
    Contender::Ring,
    Contender::RingSp,
    Contender::ArrayQueue,
    Contender::SyncChannel,
];

impl Contender {
    fn name(self) -> &'static str {
        match self {
            Contender::Ring => "vyukov-ring",
            Contender::RingSp => "vyukov-ring-sp",
            Contender::ArrayQueue => "array-queue",
            Contender::SyncChannel => "sync-channel",
        }
    }

    fn fits(self, producers: usize) -> bool {
        self != Contender::RingSp || producers == 1
    }

    /// One transfer of `items` through a fresh queue of this kind; the time it took.
    fn run(self, items: u64, producers: usize, consumers: usize) -> Duration {
        match self {
            Contender::Ring => {
                let ring = &Ring::new(CAPACITY);
                let push = move |_| move |v| ring.try_push(v);
                transfer(items, producers, consumers, push, || ring.try_pop())
            }
            Contender::RingSp => {
                let (producer, ring) = Ring::with_single_producer(CAPACITY);
                // `transfer` asks for one push function per producer: hand over the one
                // `Producer` the first (and only) time it asks.
                let producer = Mutex::new(Some(producer));
                let push = |_| {
                    let mut producer = producer.lock().unwrap().take().unwrap();
                    move |v| producer.try_push(v)
                };
                transfer(items, 1, consumers, push, || ring.try_pop())
            }
            Contender::ArrayQueue => {
                let queue = &ArrayQueue::new(CAPACITY);
                let push = move |_| move |v| queue.push(v);
                transfer(items, producers, consumers, push, || queue.pop())
            }
            Contender::SyncChannel => {
                let (tx, rx) = sync_channel::<u64>(CAPACITY);
                let rx = Mutex::new(rx);
                let push = |_| {
                    let tx = tx.clone();
                    move |v| tx.send(v).map_err(|e| e.0)
                };
                transfer(items, producers, consumers, push, || {
                    rx.lock().unwrap().recv().ok()
                })
            }
        }
    }
}

fn throughput(c: &mut Criterion) {
    for (shape, producers, consumers) in SHAPES {
        let mut group = c.benchmark_group(format!("ring/{shape}"));
        group.throughput(Throughput::Elements(1));
        for queue in QUEUES.into_iter().filter(|q| q.fits(producers)) {
            group.bench_function(queue.name(), |b| {
                b.iter_custom(|iters| queue.run(iters, producers, consumers))
            });
        }
        group.finish();
    }
}

/// Rounds of the interleaved comparison, and items per transfer.
const ROUNDS: usize = 61;
const ROUND_ITEMS: u64 = 250_000;

/// The interleaved comparison: `ROUNDS` rounds, each running every queue once per shape
/// (starting with a different queue each round), so that slow drifts of a shared machine hit
/// every queue alike. Prints per queue the median time per item and the median, over rounds,
/// of `ArrayQueue`'s time divided by this queue's (above 1.00: faster than `ArrayQueue`).
fn interleaved() {
    println!("\ninterleaved: {ROUNDS} rounds x {ROUND_ITEMS} items per queue and shape");
    for (shape, producers, consumers) in SHAPES {
        let queues: Vec<Contender> = QUEUES.into_iter().filter(|q| q.fits(producers)).collect();
        let mut ns = vec![Vec::with_capacity(ROUNDS); queues.len()];
        for round in 0..ROUNDS {
            for k in 0..queues.len() {
                let q = (round + k) % queues.len();
                let took = queues[q].run(ROUND_ITEMS, producers, consumers);
                ns[q].push(took.as_nanos() as f64 / ROUND_ITEMS as f64);
            }
        }
        let aq = queues
            .iter()
            .position(|&q| q == Contender::ArrayQueue)
            .unwrap();
        for (q, queue) in queues.iter().enumerate() {
            let ratios: Vec<f64> = (0..ROUNDS).map(|r| ns[aq][r] / ns[q][r]).collect();
            println!(
                "  {shape} {:<15} median {:>6.1} ns/item ({:>5.1} M items/s), vs array-queue {:.2}x",
                queue.name(),
                median(&ns[q]),
                1e3 / median(&ns[q]),
                median(&ratios)
            );
        }
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// Moves `items` values from `producers` threads to `consumers` threads and returns the time
/// from the common start to the last thread's finish. `make_push(index)` builds each
/// producer's push function; `pop` is shared by the consumers.
fn transfer<P>(
    items: u64,
    producers: usize,
    consumers: usize,
    make_push: impl Fn(usize) -> P,
    pop: impl Fn() -> Option<u64> + Sync,
) -> Duration
where
    P: FnMut(u64) -> Result<(), u64> + Send,
{
    let start = Barrier::new(producers + consumers + 1);
    thread::scope(|s| {
        for p in 0..producers {
            let share = share(items, producers, p);
            let mut push = make_push(p);
            let start = &start;
            s.spawn(move || {
                start.wait();
                for i in 0..share {
                    let mut value = i;
                    let mut backoff = Backoff::default();
                    while let Err(back) = push(value) {
                        value = back;
                        backoff.wait();
                    }
                }
            });
        }
        for c in 0..consumers {
            let quota = share(items, consumers, c);
            let (start, pop) = (&start, &pop);
            s.spawn(move || {
                start.wait();
                let mut sum = 0u64;
                for _ in 0..quota {
                    let mut backoff = Backoff::default();
                    loop {
                        if let Some(value) = pop() {
                            sum = sum.wrapping_add(value);
                            break;
                        }
                        backoff.wait();
                    }
                }
                std::hint::black_box(sum);
            });
        }
        start.wait();
        let began = Instant::now();
        // Leaving the scope joins every thread.
        began
    })
    .elapsed()
}

/// `items` split as evenly as possible; part `index` of `parts`.
fn share(items: u64, parts: usize, index: usize) -> u64 {
    let parts = parts as u64;
    items / parts + u64::from((index as u64) < items % parts)
}

/// Spin 64 times, then yield: the same waiting policy for every queue.
#[derive(Default)]
struct Backoff(u32);

impl Backoff {
    fn wait(&mut self) {
        if self.0 < 64 {
            self.0 += 1;
            std::hint::spin_loop();
        } else {
            thread::yield_now();
        }
    }
}

fn park_wake_latency(c: &mut Criterion) {
    let mut group = c.benchmark_group("park-wake");
    // Each iteration also waits (unmeasured) for the consumer to fall asleep, so a second of
    // measured wakeups already takes several seconds of wall time.
    group.measurement_time(Duration::from_secs(1));
    group.bench_function("blocking-ring", |b| {
        b.iter_custom(|iters| {
            let ring = Arc::new(BlockingRing::<Instant>::with_spin_limit(4, 0));
            let (done_tx, done_rx) = sync_channel::<Duration>(1);
            let consumer = {
                let ring = Arc::clone(&ring);
                thread::spawn(move || {
                    while let Some(sent) = ring.pop() {
                        done_tx.send(sent.elapsed()).unwrap();
                    }
                })
            };
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                while ring.sleepers() == 0 {
                    thread::yield_now();
                }
                // Let the consumer get from announcing itself into its futex wait.
                spin_for(Duration::from_micros(20));
                ring.push(Instant::now()).unwrap();
                total += done_rx.recv().unwrap();
            }
            ring.close();
            consumer.join().unwrap();
            total
        })
    });
    group.bench_function("sync-channel", |b| {
        b.iter_custom(|iters| {
            let (tx, rx): (SyncSender<Instant>, Receiver<Instant>) = sync_channel(4);
            let (done_tx, done_rx) = sync_channel::<Duration>(1);
            let consumer = thread::spawn(move || {
                while let Ok(sent) = rx.recv() {
                    done_tx.send(sent.elapsed()).unwrap();
                }
            });
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // No sleeper count to watch here: give the receiver time to block in `recv`.
                spin_for(Duration::from_micros(50));
                tx.send(Instant::now()).unwrap();
                total += done_rx.recv().unwrap();
            }
            drop(tx);
            consumer.join().unwrap();
            total
        })
    });
    group.finish();
}

/// Busy-waits for `span`: a `thread::sleep` this short would oversleep by the timer slack
/// (50 µs by default on Linux).
fn spin_for(span: Duration) {
    let until = Instant::now() + span;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
}

criterion_group! {
    name = benches;
    config = config();
    targets = throughput, park_wake_latency
}

/// Criterion's groups, then the interleaved comparison (skipped when a filter is given that
/// does not match "interleaved", e.g. `cargo bench --bench ring -- park-wake`).
fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    if filters.is_empty() || filters.iter().any(|f| "interleaved".contains(f.as_str())) {
        interleaved();
    }
}
