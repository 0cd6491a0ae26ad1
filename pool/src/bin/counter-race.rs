//! `counter-race`: N threads hammer one shared counter, once per counter kind, and a table
//! shows which kinds lose updates and what each increment costs.
//!
//! ```text
//! cargo run -p pool --release --bin counter-race -- [--threads N] [--increments M]
//! ```
//!
//! Each thread is pinned to its own core (when there are enough cores) and all start
//! together (spinning on a flag until the main thread says go), so the increments really overlap in time: that overlap is what
//! makes the racy counter's load-then-store lose updates (see `pool::counters`). `ns/incr`
//! is wall-clock time divided by the total number of increments, so it is the cost of one
//! increment with all threads counting at once; compare it with `--threads 1`. `overlap` is
//! the share of the run during which all threads were counting at the same time: updates can
//! only be lost while it is above zero, and on a machine busy with other work the scheduler
//! may serialize the threads (run with more `--increments` to span more time slices).

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pool::counters::{AtomicCounter, Counter, MutexCounter, RacyCounter, ShardedCounter};
use pool::{available_cores, spawn_pinned};

const USAGE: &str = "usage: counter-race [--threads N] [--increments M]
  --threads N      threads incrementing at once (default: available cores, at least 2)
  --increments M   increments per thread (default: 50000000)";

fn main() -> ExitCode {
    let (threads, increments) = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("counter-race: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    println!(
        "{threads} threads x {increments} increments, {} cores available",
        available_cores()
    );
    println!(
        "{:<8} {:>14} {:>14} {:>14} {:>9} {:>9} {:>9}",
        "counter", "expected", "observed", "lost", "lost %", "ns/incr", "overlap"
    );
    let rows = [
        race(RacyCounter::new(), threads, increments),
        race(AtomicCounter::new(), threads, increments),
        race(ShardedCounter::new(), threads, increments),
        race(MutexCounter::new(), threads, increments),
    ];
    for row in &rows {
        row.print();
    }
    ExitCode::SUCCESS
}

/// One line of the table.
struct Row {
    name: &'static str,
    expected: u64,
    observed: u64,
    elapsed: Duration,
    /// The fraction of the run during which every thread was counting at once.
    overlap: f64,
}

impl Row {
    fn print(&self) {
        let lost = self.expected.saturating_sub(self.observed);
        let lost_percent = 100.0 * lost as f64 / self.expected.max(1) as f64;
        let ns_per_incr = self.elapsed.as_nanos() as f64 / self.expected.max(1) as f64;
        println!(
            "{:<8} {:>14} {:>14} {:>14} {:>8.2}% {:>9.2} {:>8.0}%",
            self.name,
            self.expected,
            self.observed,
            lost,
            lost_percent,
            ns_per_incr,
            100.0 * self.overlap
        );
    }
}

/// Runs `threads` threads that each increment `counter` `increments` times, all released
/// at once, and reports the total against the expected count.
fn race<C: Counter + 'static>(counter: C, threads: usize, increments: u64) -> Row {
    let counter = Arc::new(counter);
    // Every thread checks in, then spins until the main thread says go: a spinning start is
    // tighter than waking threads from a barrier one by one, so the loops really overlap.
    let ready = Arc::new(AtomicUsize::new(0));
    let go = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..threads)
        .map(|index| {
            let (counter, ready, go) = (Arc::clone(&counter), Arc::clone(&ready), Arc::clone(&go));
            let name = format!("race-{}-{index}", counter.name());
            spawn_pinned(name, index, index < available_cores(), move || {
                ready.fetch_add(1, Ordering::AcqRel);
                while !go.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
                let started = Instant::now();
                for _ in 0..increments {
                    counter.incr();
                }
                (started, Instant::now())
            })
            .expect("spawn a counting thread")
        })
        .collect();
    while ready.load(Ordering::Acquire) < threads {
        std::thread::yield_now();
    }
    go.store(true, Ordering::Release);
    let began = Instant::now();
    let spans: Vec<(Instant, Instant)> = handles
        .into_iter()
        .map(|handle| handle.join().expect("a counting thread panicked"))
        .collect();
    Row {
        name: counter.name(),
        expected: threads as u64 * increments,
        observed: counter.get(),
        elapsed: began.elapsed(),
        overlap: overlap(&spans),
    }
}

/// How much of the whole run (first start to last end) had all threads counting at once
/// (last start to first end). Lost updates need overlap: on a busy machine the scheduler may
/// run the threads one after the other, and then even the racy counter comes out exact.
fn overlap(spans: &[(Instant, Instant)]) -> f64 {
    let first_start = spans.iter().map(|s| s.0).min();
    let last_start = spans.iter().map(|s| s.0).max();
    let first_end = spans.iter().map(|s| s.1).min();
    let last_end = spans.iter().map(|s| s.1).max();
    match (first_start, last_start, first_end, last_end) {
        (Some(first_start), Some(last_start), Some(first_end), Some(last_end)) => {
            let together = first_end.saturating_duration_since(last_start);
            let whole = last_end.duration_since(first_start);
            together.as_secs_f64() / whole.as_secs_f64().max(f64::MIN_POSITIVE)
        }
        _ => 0.0,
    }
}

/// Parses `--threads N` and `--increments M` (also as `--flag=value`). `Ok(None)` means
/// `--help` was asked for.
fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<(usize, u64)>, String> {
    let mut threads = available_cores().max(2);
    let mut increments: u64 = 50_000_000;
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let value = match inline_value.or_else(|| args.next()) {
            Some(value) => value,
            None => return Err(format!("{flag} needs a value")),
        };
        match flag.as_str() {
            "--threads" => threads = parse_positive(&flag, &value)?,
            "--increments" => increments = parse_positive(&flag, &value)?,
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    Ok(Some((threads, increments)))
}

fn parse_positive<N: std::str::FromStr + PartialOrd + Default>(
    flag: &str,
    value: &str,
) -> Result<N, String> {
    match value.parse::<N>() {
        Ok(n) if n > N::default() => Ok(n),
        _ => Err(format!("{flag} wants a positive integer, got {value:?}")),
    }
}
