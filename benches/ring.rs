//! Criterion benchmark of `pool::Ring` against its yardsticks, crossbeam-queue's
//! `ArrayQueue` (the same Vyukov algorithm, tuned by crossbeam) and the standard library's
//! `std::sync::mpsc::sync_channel` (a bounded blocking channel), plus the park-to-wake latency
//! of `pool::BlockingRing`, batched hand-off against a wake per item, and the spin policies.
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
//! Hand-off (`handoff`, and `handoff-interleaved`): batches of 4 items into 2 consumers that
//! are parked before each batch, pushed with `push` (a fence and possibly a wake per item),
//! or with `push_without_wake` and then `wake(1)` (the woken consumer passes the wakeup on) or
//! `wake(4)`. Printed per hand-off: the producer's time in push and wake calls (the reactor's
//! cost), the makespan until the batch is served, and wakeups per batch, with ratios against
//! wake-each per round.
//!
//! Spin policies (`spin-interleaved`): one producer (core 0) pushes an item `gap` after the
//! consumer (core 1) took the previous one, for gaps of 2, 20 and 200 µs; printed per policy:
//! the median push-to-pop latency (with its ratio to `Fixed(32)`, what reactor-pool uses),
//! the CPU time spent spinning per item, and parks per item.
//!
//! The whole run takes a few minutes on two cores (sample size and measurement time are
//! set below); results land in `target/criterion/`, medians in each `new/estimates.json`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use crossbeam_queue::ArrayQueue;
use pool::{BlockingRing, Ring, SpinPolicy, Spinner};

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
    targets = throughput, park_wake_latency, handoff
}

/// Criterion's groups, then the interleaved comparisons, each skipped when a filter is given
/// that its name does not contain: `interleaved` (the queues), `handoff-interleaved` and
/// `spin-interleaved`. E.g. `cargo bench --bench ring -- handoff` runs the criterion group
/// `handoff` and the interleaved hand-off comparison only.
fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let wanted =
        |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    if wanted("interleaved") {
        interleaved();
    }
    if wanted("handoff-interleaved") {
        handoff_interleaved();
    }
    if wanted("spin-interleaved") {
        spin_interleaved();
    }
}

// ---------------------------------------------------------------------------------------------
// Batched hand-off: a batch of ready connections pushed with a wake per item, or pushed whole
// and woken once (the wakeup passed on), or pushed whole and woken `n` times from the producer.
// ---------------------------------------------------------------------------------------------

/// Items per batch: about what one `epoll_wait` returned per call in reactor-pool's ping-pong
/// (0.35 calls per message).
const BATCH: usize = 4;
/// Consumers, parked before each batch (the workers of a two-core machine).
const HANDOFF_CONSUMERS: usize = 2;
/// Work per item, a busy wait standing in for serving a connection.
const ITEM_WORK: Duration = Duration::from_micros(2);

/// How a batch is handed to the consumers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Handoff {
    /// `push` per item: a fence per item, and a wake per item while a consumer sleeps.
    WakeEach,
    /// `push_without_wake` per item, then `wake(1)`: consumers pass the wakeup on.
    BatchWakeOne,
    /// `push_without_wake` per item, then `wake(BATCH)`: the producer wakes them all.
    BatchWakeAll,
}

const HANDOFFS: [Handoff; 3] = [
    Handoff::WakeEach,
    Handoff::BatchWakeOne,
    Handoff::BatchWakeAll,
];

/// Medians over the batches of one run.
struct HandoffRun {
    /// The producer's time in the push and wake calls: the reactor's cost per batch.
    submit_ns: f64,
    /// From the first push to the last item served.
    makespan_ns: f64,
    /// `futex(2)` wakes per batch, whoever paid for them.
    wakeups: f64,
}

impl Handoff {
    fn name(self) -> &'static str {
        match self {
            Handoff::WakeEach => "push+wake-each",
            Handoff::BatchWakeOne => "batch+wake(1)",
            Handoff::BatchWakeAll => "batch+wake(n)",
        }
    }

    /// `batches` batches of `BATCH` items into parked consumers.
    fn run(self, batches: usize) -> HandoffRun {
        let ring = Arc::new(BlockingRing::<u64>::with_spin_limit(64, 0));
        let served = Arc::new(AtomicU64::new(0));
        let consumers: Vec<_> = (0..HANDOFF_CONSUMERS)
            .map(|_| {
                let (ring, served) = (Arc::clone(&ring), Arc::clone(&served));
                thread::spawn(move || {
                    let mut spinner = Spinner::new(SpinPolicy::None);
                    while ring.pop_with_spinner(&mut spinner, |_| {}).is_some() {
                        spin_for(ITEM_WORK);
                        served.fetch_add(1, Ordering::Release);
                    }
                })
            })
            .collect();
        let (mut submit_ns, mut makespan_ns) = (Vec::new(), Vec::new());
        for batch in 0..batches {
            while ring.sleepers() < HANDOFF_CONSUMERS {
                thread::yield_now();
            }
            // Let the consumers get from announcing themselves into their futex wait.
            spin_for(Duration::from_micros(20));
            let began = Instant::now();
            self.submit(&ring);
            submit_ns.push(began.elapsed().as_nanos() as f64);
            let target = ((batch + 1) * BATCH) as u64;
            while served.load(Ordering::Acquire) < target {
                std::hint::spin_loop();
            }
            makespan_ns.push(began.elapsed().as_nanos() as f64);
        }
        ring.close();
        consumers.into_iter().for_each(|c| c.join().unwrap());
        HandoffRun {
            submit_ns: median(&submit_ns),
            makespan_ns: median(&makespan_ns),
            wakeups: ring.wakeups() as f64 / batches as f64,
        }
    }

    fn submit(self, ring: &BlockingRing<u64>) {
        for item in 0..BATCH as u64 {
            match self {
                Handoff::WakeEach => ring.push(item).unwrap(),
                Handoff::BatchWakeOne | Handoff::BatchWakeAll => {
                    ring.push_without_wake(item).unwrap()
                }
            }
        }
        match self {
            Handoff::WakeEach => {}
            Handoff::BatchWakeOne => {
                ring.wake(1);
            }
            Handoff::BatchWakeAll => {
                ring.wake(BATCH);
            }
        }
    }
}

fn handoff(c: &mut Criterion) {
    let mut group = c.benchmark_group("handoff");
    group.measurement_time(Duration::from_secs(1));
    for kind in HANDOFFS {
        group.bench_function(kind.name(), |b| {
            // The time per batch, first push to last item served.
            b.iter_custom(|iters| {
                let run = kind.run(iters as usize);
                Duration::from_nanos((run.makespan_ns * iters as f64) as u64)
            })
        });
    }
    group.finish();
}

const HANDOFF_ROUNDS: usize = 31;
const HANDOFF_BATCHES: usize = 100;

/// Interleaved rounds of the three hand-offs; medians, and ratios against wake-each.
fn handoff_interleaved() {
    println!(
        "\nhandoff: {HANDOFF_ROUNDS} rounds x {HANDOFF_BATCHES} batches of {BATCH} items into \
         {HANDOFF_CONSUMERS} parked consumers ({} µs of work per item)",
        ITEM_WORK.as_micros()
    );
    let mut runs: Vec<Vec<HandoffRun>> = HANDOFFS.iter().map(|_| Vec::new()).collect();
    for round in 0..HANDOFF_ROUNDS {
        for k in 0..HANDOFFS.len() {
            let h = (round + k) % HANDOFFS.len();
            runs[h].push(HANDOFFS[h].run(HANDOFF_BATCHES));
        }
    }
    let base = &runs[0];
    for (h, kind) in HANDOFFS.iter().enumerate() {
        let metric = |f: fn(&HandoffRun) -> f64| {
            let values: Vec<f64> = runs[h].iter().map(f).collect();
            let ratios: Vec<f64> = (0..HANDOFF_ROUNDS)
                .map(|r| f(&runs[h][r]) / f(&base[r]))
                .collect();
            (median(&values), median(&ratios))
        };
        let (submit, submit_ratio) = metric(|r| r.submit_ns);
        let (makespan, makespan_ratio) = metric(|r| r.makespan_ns);
        let (wakeups, _) = metric(|r| r.wakeups);
        println!(
            "  {:<15} submit {:>6.2} µs/batch ({:.2}x), makespan {:>6.1} µs ({:.2}x), \
             {wakeups:.2} wakeups/batch",
            kind.name(),
            submit / 1e3,
            submit_ratio,
            makespan / 1e3,
            makespan_ratio,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Spin policies: park-to-wake latency and CPU spent spinning when items arrive `gap` apart.
// ---------------------------------------------------------------------------------------------

const POLICIES: [(&str, SpinPolicy); 4] = [
    ("fixed(32)", SpinPolicy::Fixed(32)),
    ("none", SpinPolicy::None),
    ("fixed(256)", SpinPolicy::Fixed(256)),
    ("adaptive", SpinPolicy::adaptive()),
];
const GAPS_US: [u64; 3] = [2, 20, 200];
const SPIN_ROUNDS: usize = 15;
const SPIN_ITEMS: usize = 200;

/// One run's figures, per item.
struct SpinRun {
    /// Median time from the push to the consumer's `pop` returning.
    latency_ns: f64,
    /// Mean time the consumer spent spinning.
    spun_ns: f64,
    /// Parks per item (each one a `futex(2)` wait and, mostly, a wake).
    parks: f64,
}

/// `items` items, each pushed `gap` after the consumer took the previous one. The producer
/// runs on core 0, the consumer on core 1 (`spawn_pinned`), so they do not share a core.
fn spin_run(policy: SpinPolicy, gap: Duration, items: usize) -> SpinRun {
    let ring = Arc::new(BlockingRing::<Instant>::new(4));
    let taken = Arc::new(AtomicU64::new(0));
    let consumer = {
        let (ring, taken) = (Arc::clone(&ring), Arc::clone(&taken));
        pool::spawn_pinned("bench-consumer".into(), 1, true, move || {
            let mut spinner = Spinner::new(policy);
            let (mut latencies, mut spun, mut parks) = (Vec::new(), Duration::ZERO, 0u64);
            while let Some(sent) = ring.pop_with_spinner(&mut spinner, |idle| {
                spun += idle.spun;
                parks += u64::from(idle.parks);
            }) {
                latencies.push(sent.elapsed().as_nanos() as f64);
                taken.fetch_add(1, Ordering::Release);
            }
            (latencies, spun, parks)
        })
        .unwrap()
    };
    let producer = {
        let ring = Arc::clone(&ring);
        pool::spawn_pinned("bench-producer".into(), 0, true, move || {
            for item in 0..items as u64 {
                while taken.load(Ordering::Acquire) < item {
                    std::hint::spin_loop();
                }
                spin_for(gap);
                ring.push(Instant::now()).unwrap();
            }
            ring.close();
        })
        .unwrap()
    };
    producer.join().unwrap();
    let (latencies, spun, parks) = consumer.join().unwrap();
    SpinRun {
        latency_ns: median(&latencies),
        spun_ns: spun.as_nanos() as f64 / items as f64,
        parks: parks as f64 / items as f64,
    }
}

/// Interleaved rounds of every policy at every gap; medians over rounds, and ratios against
/// `fixed(32)` (what reactor-pool uses today).
fn spin_interleaved() {
    println!(
        "\nspin policies: {SPIN_ROUNDS} rounds x {SPIN_ITEMS} items, one producer (core 0) and \
         one consumer (core 1); latency = push to pop, spun = CPU spinning per item"
    );
    for gap_us in GAPS_US {
        let gap = Duration::from_micros(gap_us);
        let mut runs: Vec<Vec<SpinRun>> = POLICIES.iter().map(|_| Vec::new()).collect();
        for round in 0..SPIN_ROUNDS {
            for k in 0..POLICIES.len() {
                let p = (round + k) % POLICIES.len();
                runs[p].push(spin_run(POLICIES[p].1, gap, SPIN_ITEMS));
            }
        }
        for (p, (name, _)) in POLICIES.iter().enumerate() {
            let latency: Vec<f64> = runs[p].iter().map(|r| r.latency_ns).collect();
            let ratio: Vec<f64> = (0..SPIN_ROUNDS)
                .map(|r| runs[p][r].latency_ns / runs[0][r].latency_ns)
                .collect();
            let spun: Vec<f64> = runs[p].iter().map(|r| r.spun_ns).collect();
            let parks: Vec<f64> = runs[p].iter().map(|r| r.parks).collect();
            println!(
                "  gap {gap_us:>3} µs {name:<10} latency {:>7.2} µs ({:.2}x fixed(32)), \
                 spun {:>6.2} µs/item, {:.2} parks/item",
                median(&latency) / 1e3,
                median(&ratio),
                median(&spun) / 1e3,
                median(&parks),
            );
        }
    }
}
