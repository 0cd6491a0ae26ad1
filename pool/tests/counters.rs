//! Counters under real contention: the atomic, sharded and mutex counters are exact, the racy
//! one never over-counts, and the `counter-race` binary prints its table. Skipped under loom.
#![cfg(not(loom))]

use std::process::Command;
use std::sync::Barrier;
use std::thread;

use pool::counters::{AtomicCounter, Counter, MutexCounter, RacyCounter, ShardedCounter};

const THREADS: usize = 4;
const INCREMENTS: u64 = 100_000;

/// Increments `counter` from `THREADS` threads released together; returns the final total.
fn hammer(counter: &impl Counter) -> u64 {
    let start = Barrier::new(THREADS);
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                start.wait();
                for _ in 0..INCREMENTS {
                    counter.incr();
                }
            });
        }
    });
    counter.get()
}

const EXPECTED: u64 = THREADS as u64 * INCREMENTS;

#[test]
fn atomic_counter_is_exact() {
    assert_eq!(hammer(&AtomicCounter::new()), EXPECTED);
}

#[test]
fn sharded_counter_is_exact() {
    assert_eq!(hammer(&ShardedCounter::new()), EXPECTED);
}

#[test]
fn sharded_counter_is_exact_when_threads_share_a_slot() {
    let counter = ShardedCounter::with_shards(1);
    assert_eq!(counter.shards(), 1);
    assert_eq!(hammer(&counter), EXPECTED);
}

#[test]
fn mutex_counter_is_exact() {
    assert_eq!(hammer(&MutexCounter::new()), EXPECTED);
}

#[test]
fn racy_counter_never_over_counts() {
    let observed = hammer(&RacyCounter::new());
    assert!(observed <= EXPECTED, "{observed} > {EXPECTED}");
    assert!(
        observed >= INCREMENTS,
        "at least one thread's own increments survive"
    );
}

#[test]
fn add_adds_n_and_names_are_distinct() {
    let counters: [&dyn Counter; 4] = [
        &RacyCounter::new(),
        &AtomicCounter::new(),
        &ShardedCounter::new(),
        &MutexCounter::new(),
    ];
    for counter in counters {
        counter.add(40);
        counter.incr();
        counter.add(1);
        assert_eq!(counter.get(), 42, "{}", counter.name());
    }
    let mut names: Vec<_> = counters.iter().map(|c| c.name()).collect();
    names.dedup();
    assert_eq!(names.len(), 4);
}

#[test]
fn counter_race_prints_a_row_per_counter() {
    let output = Command::new(env!("CARGO_BIN_EXE_counter-race"))
        .args(["--threads", "2", "--increments=20000"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let table = String::from_utf8(output.stdout).unwrap();
    for name in ["racy", "atomic", "sharded", "mutex"] {
        let row = table
            .lines()
            .find(|line| line.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row in:\n{table}"));
        let fields: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(fields[1], "40000", "expected column of {row}");
        if name != "racy" {
            assert_eq!(fields[2], "40000", "observed column of {row}");
            assert_eq!(fields[3], "0", "lost column of {row}");
        }
    }
}

#[test]
fn counter_race_rejects_bad_arguments() {
    let output = Command::new(env!("CARGO_BIN_EXE_counter-race"))
        .args(["--threads", "zero"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--threads"));
}
