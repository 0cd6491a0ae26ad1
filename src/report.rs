//! Stats lines: what a server prints every `--stats-interval` and at exit.
//!
//! The format is one line of `key=value` pairs starting with `stats`, on stdout, so a test or a
//! script can parse it with a split and a person can read it. The model adds what only it
//! knows: the accept-queue depth of its listener (`TCP_INFO`), the ring and per-worker counts of
//! the pool (load imbalance), and, with `--syscall-stats`, syscalls per echoed message.

use std::fmt::Write as _;

use pool::PoolStats;
use reactor::TcpListener;

use crate::config::Settings;
use crate::stats::Stats;

/// The stats line for this moment.
pub fn line(
    settings: &Settings,
    stats: &Stats,
    listener: Option<&TcpListener>,
    pool: Option<&PoolStats>,
) -> String {
    let mut extra = vec![("model", settings.args.model.name().to_string())];
    if let Some(queue) = listener.and_then(|l| l.accept_queue().ok()) {
        extra.push(("accept_queue", queue.len.to_string()));
        extra.push(("accept_backlog", queue.backlog.to_string()));
    }
    if let Some(pool) = pool {
        let jobs: Vec<String> = pool.workers.iter().map(|w| w.jobs.to_string()).collect();
        let parked: Vec<String> = pool
            .workers
            .iter()
            .map(|w| (w.parked_ns / 1_000_000).to_string())
            .collect();
        let panics: u64 = pool.workers.iter().map(|w| w.panics).sum();
        extra.push(("worker_jobs", jobs.join(",")));
        extra.push(("worker_parked_ms", parked.join(",")));
        extra.push(("worker_panics", panics.to_string()));
        extra.push(("ring_depth", pool.ring_len.to_string()));
        extra.push(("ring_high_water", pool.ring_high_water.to_string()));
        extra.push(("ring_full", pool.ring_full.to_string()));
        extra.push(("wakeups", pool.wakeups.to_string()));
    }
    if reactor::syscalls::is_enabled() {
        let futex_wakes = pool.map_or(0, |p| p.wakeups);
        let per_msg = syscalls_per_message(stats.messages_total(), futex_wakes);
        extra.push(("syscalls_per_msg", per_msg));
    }
    stats.line(&extra)
}

/// `line` with `fields` appended as ` key=value` pairs.
pub fn with_fields(mut line: String, fields: &[(&str, String)]) -> String {
    for (key, value) in fields {
        let _ = write!(line, " {key}={value}");
    }
    line
}

/// Prints the final stats line (at exit).
pub fn print_final(
    settings: &Settings,
    stats: &Stats,
    listener: Option<&TcpListener>,
    pool: Option<&PoolStats>,
) {
    println!("{} final=1", line(settings, stats, listener, pool));
}

/// `futex_wakes` are the pool's wakeups of parked workers (each a `futex(FUTEX_WAKE)`), which
/// the pool counts itself because `reactor` never sees them.
fn syscalls_per_message(messages: u64, futex_wakes: u64) -> String {
    let counts = reactor::syscalls::snapshot();
    let per = |n: u64| n as f64 / messages.max(1) as f64;
    let mut out = String::new();
    let _ = write!(
        out,
        "epoll_wait:{:.2},epoll_ctl:{:.2},accept:{:.2},read:{:.2},write:{:.2},wake:{:.2},\
         futex_wake:{:.2}",
        per(counts.epoll_wait),
        per(counts.epoll_ctl),
        per(counts.accept),
        per(counts.read),
        per(counts.write),
        per(counts.wake),
        per(futex_wakes),
    );
    out
}
