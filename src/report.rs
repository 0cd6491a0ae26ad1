//! Stats lines: what a server prints every `--stats-interval` and at exit.
//!
//! A line is `key=value` pairs after the word `stats`, on stdout, so a test or a script can
//! parse it with a split and a person can read it; the first field is the time (RFC 3339, UTC)
//! and the last line of a run carries `final=1`. Periodic and final lines have the same fields.
//! With `--stats-format json` each line is instead one JSON object (numbers as numbers,
//! comma-separated lists as arrays), for scripts and dashboards. The model adds what only it
//! knows: the accept-queue depth of its listener (`TCP_INFO`), the ring and per-worker counts
//! (load imbalance), and, with `--syscall-stats`, syscalls per echoed message.
//!
//! Every line goes out through [`emit`], which stamps and renders it.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pool::PoolStats;
use reactor::TcpListener;

use crate::config::{Settings, StatsFormat};
use crate::stats::{Counts, Stats};

/// The stats line for this moment.
pub fn line(
    settings: &Settings,
    stats: &Stats,
    listener: Option<&TcpListener>,
    pool: Option<&PoolStats>,
) -> String {
    line_of(settings, stats.counts(), listener, pool)
}

/// The stats line of `counts` (which may add up several processes) for this moment.
pub fn line_of(
    settings: &Settings,
    counts: Counts,
    listener: Option<&TcpListener>,
    pool: Option<&PoolStats>,
) -> String {
    let mut extra = vec![("model", settings.args.model.name().to_string())];
    // Every line has the same fields: once the listener is closed (the drain, the final line)
    // its queue is empty and its backlog is what `listen` was given, as the kernel capped it.
    let (queue, backlog) = match listener.and_then(|l| l.accept_queue().ok()) {
        Some(queue) => (queue.len, queue.backlog),
        None => {
            let cap = reactor::somaxconn().unwrap_or(u32::MAX);
            (0, settings.args.backlog.min(cap))
        }
    };
    extra.push(("accept_queue", queue.to_string()));
    extra.push(("accept_backlog", backlog.to_string()));
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
        let per_msg = syscalls_per_message(counts.messages, futex_wakes);
        extra.push(("syscalls_per_msg", per_msg));
    }
    counts.line(&extra)
}

/// Chooses how [`emit`] renders lines (`--stats-format`); set once at start-up.
pub fn set_format(format: StatsFormat) {
    let _ = FORMAT.set(format);
}

static FORMAT: OnceLock<StatsFormat> = OnceLock::new();

/// Prints a stats line (`stats k=v ...`) on stdout, stamped with the time and rendered in the
/// chosen format, and flushes it (stdout is a pipe when a script reads it).
pub fn emit(line: &str) {
    let fields = line.strip_prefix("stats ").unwrap_or(line);
    let now = jiff::Timestamp::now();
    let text = match FORMAT.get().copied().unwrap_or(StatsFormat::Text) {
        StatsFormat::Text => format!("stats time={now:.3} {fields}"),
        StatsFormat::Json => json(&format!("time={now:.3} {fields}")),
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// `k=v k=v` as one JSON object: numbers stay numbers, `a,b` lists become arrays, `k:v` lists
/// objects, anything else a string.
fn json(fields: &str) -> String {
    let members: Vec<String> = fields
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(key, value)| format!("\"{}\":{}", escape(key), json_value(value)))
        .collect();
    format!("{{{}}}", members.join(","))
}

fn json_value(value: &str) -> String {
    let number = |v: &str| v.parse::<f64>().is_ok_and(f64::is_finite);
    if number(value) {
        return value.to_string();
    }
    let items: Vec<&str> = value.split(',').collect();
    if items.len() > 1 && items.iter().all(|v| number(v)) {
        return format!("[{}]", items.join(","));
    }
    let pairs: Option<Vec<(&str, &str)>> = items.iter().map(|i| i.split_once(':')).collect();
    match pairs {
        Some(pairs) if pairs.iter().all(|(_, v)| number(v)) => {
            let members: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("\"{}\":{v}", escape(k)))
                .collect();
            format!("{{{}}}", members.join(","))
        }
        _ => format!("\"{}\"", escape(value)),
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `line` with `fields` appended as ` key=value` pairs.
pub fn with_fields(mut line: String, fields: &[(&str, String)]) -> String {
    for (key, value) in fields {
        let _ = write!(line, " {key}={value}");
    }
    line
}

/// `line` marked as the last of the run.
pub fn final_line(line: String) -> String {
    line + " final=1"
}

/// `futex_wakes` are the pool's wakeups of parked workers (each a `futex(FUTEX_WAKE)`), which
/// the pool counts itself because `reactor` never sees them. The io_uring models add
/// `io_uring_enter` (syscalls) and the SQEs and CQEs those enters carried (work, not syscalls).
fn syscalls_per_message(messages: u64, futex_wakes: u64) -> String {
    let counts = reactor::syscalls::snapshot();
    let per = |n: u64| n as f64 / messages.max(1) as f64;
    let mut out = String::new();
    let _ = write!(
        out,
        "epoll_wait:{:.2},epoll_ctl:{:.2},accept:{:.2},read:{:.2},write:{:.2},wake:{:.2},\
         futex_wake:{:.2},io_uring_enter:{:.2},uring_sqe:{:.2},uring_cqe:{:.2}",
        per(counts.epoll_wait),
        per(counts.epoll_ctl),
        per(counts.accept),
        per(counts.read),
        per(counts.write),
        per(counts.wake),
        per(futex_wakes),
        per(counts.io_uring_enter),
        per(counts.uring_sqes_submitted),
        per(counts.uring_cqes_reaped),
    );
    out
}

/// When the next periodic stats line is due (`--stats-interval`), for a loop that checks on
/// its housekeeping tick rather than keeping a timer for it.
#[derive(Debug)]
pub struct StatsClock {
    every: Option<Duration>,
    last: Instant,
}

impl StatsClock {
    /// A clock for lines every `every` (`None`: never), counted from now.
    pub fn new(every: Option<Duration>) -> StatsClock {
        StatsClock {
            every,
            last: Instant::now(),
        }
    }

    /// True, once, when at least one interval has passed since the last line.
    pub fn due(&mut self, now: Instant) -> bool {
        match self.every {
            Some(every) if now.duration_since(self.last) >= every => {
                self.last = now;
                true
            }
            _ => false,
        }
    }
}
