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
//! consumer, 2P/2C and 1P/2C (the reactor feeding workers). Each shape benchmarks every queue
//! back to back in one run, so they see the same machine state; `vyukov-ring-sp` is our ring
//! with its single-producer fast path. Every queue gets the same harness: a thread that finds
//! the queue full (or empty) spins 64 times with `spin_loop`, then yields, so that with more
//! threads than cores a waiter gives its core to the thread it waits for. Criterion's
//! `iter_custom` times one whole transfer of `iters` items, from the moment all threads are
//! released to the moment the last one finishes; the reported time is per item.
//!
//! `sync_channel` has one receiver; with two consumers they share it behind a `Mutex`, the
//! usual std idiom, and pay for it.
//!
//! Latency: a consumer parks in `BlockingRing::pop` (spin limit 0); after 100 µs the main
//! thread pushes an `Instant`, and the consumer measures the time until its `pop` returns.
//! The same with `sync_channel`'s blocking `recv` for comparison. Both sleep in `futex(2)`,
//! so this is mostly the kernel's wakeup and scheduling path.
//!
//! The whole run takes about two minutes on two cores (sample size and measurement time are
//! set below); results land in `target/criterion/`, medians in each `new/estimates.json`.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use crossbeam_queue::ArrayQueue;
use pool::{BlockingRing, Ring};

const CAPACITY: usize = 1024;
/// `(name, producers, consumers)`.
const SHAPES: [(&str, usize, usize); 3] = [("1p1c", 1, 1), ("2p2c", 2, 2), ("1p2c", 1, 2)];

fn throughput(c: &mut Criterion) {
    for (shape, producers, consumers) in SHAPES {
        let mut group = c.benchmark_group(format!("ring/{shape}"));
        group.throughput(Throughput::Elements(1));
        group.bench_function("vyukov-ring", |b| {
            b.iter_custom(|iters| {
                let ring = &Ring::new(CAPACITY);
                let push = move |_| move |v| ring.try_push(v);
                transfer(iters, producers, consumers, push, || ring.try_pop())
            })
        });
        if producers == 1 {
            group.bench_function("vyukov-ring-sp", |b| {
                b.iter_custom(|iters| {
                    let (producer, ring) = Ring::with_single_producer(CAPACITY);
                    // `transfer` asks for one push function per producer: hand over the
                    // one `Producer` the first (and only) time it asks.
                    let producer = Mutex::new(Some(producer));
                    let push = |_| {
                        let mut producer = producer.lock().unwrap().take().unwrap();
                        move |v| producer.try_push(v)
                    };
                    transfer(iters, 1, consumers, push, || ring.try_pop())
                })
            });
        }
        group.bench_function("array-queue", |b| {
            b.iter_custom(|iters| {
                let queue = &ArrayQueue::new(CAPACITY);
                let push = move |_| move |v| queue.push(v);
                transfer(iters, producers, consumers, push, || queue.pop())
            })
        });
        group.bench_function("sync-channel", |b| {
            b.iter_custom(|iters| {
                let (tx, rx) = sync_channel::<u64>(CAPACITY);
                let rx = Mutex::new(rx);
                let push = |_| {
                    let tx = tx.clone();
                    move |v| tx.send(v).map_err(|e| e.0)
                };
                transfer(iters, producers, consumers, push, || {
                    rx.lock().unwrap().recv().ok()
                })
            })
        });
        group.finish();
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
                // Let the consumer get deep into its futex wait, not just announce itself.
                thread::sleep(Duration::from_micros(100));
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
                thread::sleep(Duration::from_micros(100));
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

fn config() -> Criterion {
    Criterion::default()
        .sample_size(15)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
}

criterion_group! {
    name = benches;
    config = config();
    targets = throughput, park_wake_latency
}
criterion_main!(benches);
