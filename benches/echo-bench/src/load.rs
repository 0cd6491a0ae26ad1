//! One run of the load generator: configuration, threads, timeline, CPU and memory samples.
//!
//! A run has four phases on one shared timeline:
//!
//! 1. **set-up**: each worker thread connects its share of the connections (active and idle),
//!    a bounded number of handshakes at a time, and each connection echoes one message;
//! 2. **warm-up**: load flows but nothing is recorded (caches, page faults, lazy allocations);
//! 3. **measure**: every echo completed in this window is counted and its latency recorded,
//!    and the server's CPU time is sampled at both ends of it;
//! 4. **drain**: no new messages; the echoes still due must arrive before the grace deadline,
//!    or their connections count as stalled.
//!
//! Every phase has a deadline, so a run ends by itself whatever the server does: a dead,
//! wedged or lying server produces errors in the report, never a hung generator.
//!
//! The workers are plain threads, each with its own epoll set (`reactor::Epoll`) and its own
//! connections (connection `i` belongs to worker `i % threads`), sharing nothing but a few
//! atomic counters for the progress line. The main thread only keeps the clock and samples
//! `/proc`. The workers inherit the CPU affinity of the thread that calls [`run`]: the lab pins
//! that thread with `--generator-cpus` (see [`crate::pin`]), and otherwise they go wherever the
//! scheduler puts them; CPU time per message is the figure that does not depend on who got
//! which core.

use std::io::{self, IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::histo::Latency;
use crate::procfs::{self, TreeCpu, TreeMemory};
use crate::report::{ErrorCounts, RunReport};
use crate::verify::{MessageFormat, Protocol};
use crate::worker;

/// Everything that defines a run (the command line of `echo-bench`). In JSON durations are
/// seconds (`duration_s`...), and fields that older reports lack take the defaults of
/// [`RunConfig::new`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunConfig {
    /// The echo server.
    pub addr: SocketAddr,
    /// Active connections, each keeping `depth` messages in flight.
    pub conns: usize,
    /// Message size in bytes (lines: including the `\n`).
    pub size: usize,
    /// Messages in flight per connection (1 = ping-pong).
    pub depth: usize,
    /// Length of the measured window.
    #[serde(rename = "duration_s", with = "seconds")]
    pub duration: Duration,
    /// Load before the measured window, not recorded.
    #[serde(rename = "warmup_s", with = "seconds")]
    pub warmup: Duration,
    /// Worker threads of the generator.
    pub threads: usize,
    /// Open-loop total rate in messages per second; `None` is closed loop.
    pub rate: Option<f64>,
    /// Extra connections held idle during the run (each echoes one message at set-up).
    pub idle: usize,
    /// Connect-only test: this many connect / echo / close cycles, `conns` at a time.
    pub connect_only: Option<usize>,
    /// Raw bytes or lines.
    pub protocol: Protocol,
    /// CPU microseconds each `WORK` line asks for.
    pub work_us: u64,
    /// How many of the active connections send `WORK` lines (lines protocol).
    pub greedy: usize,
    /// The server's process id, for its CPU time and memory.
    #[serde(default)]
    pub server_pid: Option<u32>,
    /// How long after the window the echoes still due may take.
    #[serde(rename = "grace_s", with = "seconds", default = "default_timeout")]
    pub grace: Duration,
    /// A connection waiting this long for an echo without receiving a byte is stalled.
    #[serde(
        rename = "stall_timeout_s",
        with = "seconds",
        default = "default_timeout"
    )]
    pub stall_timeout: Duration,
    /// Deadline for the set-up phase (connects and idle echoes).
    #[serde(
        rename = "setup_timeout_s",
        with = "seconds",
        default = "default_setup"
    )]
    pub setup_timeout: Duration,
    /// Print a progress line on stderr while running (not part of the record).
    #[serde(skip)]
    pub progress: bool,
}

impl RunConfig {
    /// A ping-pong run against `addr` with the defaults of the command line.
    pub fn new(addr: SocketAddr) -> RunConfig {
        RunConfig {
            addr,
            conns: 64,
            size: 64,
            depth: 1,
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            threads: 1,
            rate: None,
            idle: 0,
            connect_only: None,
            protocol: Protocol::Raw,
            work_us: 0,
            greedy: 0,
            server_pid: None,
            grace: default_timeout(),
            stall_timeout: default_timeout(),
            setup_timeout: default_setup(),
            progress: false,
        }
    }

    /// Checks the combinations that make no sense, with a message for the user.
    pub fn validate(&self) -> Result<MessageFormat, String> {
        if self.threads == 0 || self.depth == 0 {
            return Err("--threads and --depth must be at least 1".into());
        }
        if self.greedy > self.conns {
            return Err(format!(
                "--greedy {} exceeds --conns {}",
                self.greedy, self.conns
            ));
        }
        if self.greedy > 0 && self.protocol != Protocol::Lines {
            return Err("--greedy needs --protocol lines (WORK is a line command)".into());
        }
        if self.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            return Err("--rate must be a positive number of messages per second".into());
        }
        if self.conns == 0 && self.idle == 0 {
            return Err("nothing to do: --conns and --idle are both 0".into());
        }
        if self.connect_only.is_some() && self.conns == 0 {
            return Err("--connect-only needs --conns >= 1 (connections at a time)".into());
        }
        MessageFormat::new(self.protocol, self.size, self.work_us)
    }
}

/// The instants that cut a run into phases, published to the workers once set-up is done.
#[derive(Copy, Clone, Debug)]
pub struct Times {
    /// Load starts.
    pub start: Instant,
    /// Recording starts.
    pub warm_end: Instant,
    /// Recording and sending stop.
    pub measure_end: Instant,
    /// Echoes still due now are stalled.
    pub grace_end: Instant,
}

/// What the workers and the main thread share.
pub struct Shared {
    /// Workers done with set-up (successfully or not).
    pub ready: AtomicUsize,
    /// Workers that have finished entirely.
    pub finished: AtomicUsize,
    /// The timeline, once the main thread starts the load.
    times: Mutex<Option<Times>>,
    started: Condvar,
    /// Set when the main thread gives up waiting: workers stop at once.
    pub abort: AtomicBool,
    /// Echoes completed so far, all phases (progress line only).
    pub completed: AtomicU64,
    /// Errors so far (progress line only).
    pub errors: AtomicU64,
    /// Connect-only cycles not yet claimed by a worker.
    pub churn_left: AtomicU64,
}

impl Shared {
    fn new(churn: u64) -> Shared {
        Shared {
            ready: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            times: Mutex::new(None),
            started: Condvar::new(),
            abort: AtomicBool::new(false),
            completed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            churn_left: AtomicU64::new(churn),
        }
    }

    /// Blocks until the main thread publishes the timeline, or `timeout` passes (`None`).
    pub fn wait_start(&self, timeout: Duration) -> Option<Times> {
        let guard = self.times.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = self
            .started
            .wait_timeout_while(guard, timeout, |t| {
                t.is_none() && !self.abort.load(Ordering::Relaxed)
            })
            .unwrap_or_else(|e| e.into_inner());
        *guard
    }

    fn publish(&self, times: Times) {
        *self.times.lock().unwrap_or_else(|e| e.into_inner()) = Some(times);
        self.started.notify_all();
    }

    fn give_up(&self) {
        self.abort.store(true, Ordering::Relaxed);
        self.started.notify_all();
    }
}

/// What one worker thread measured.
#[derive(Debug, Default)]
pub struct WorkerResult {
    /// Latency of every message echoed in the window.
    pub all: Latency,
    /// The same, cheap (non-greedy) clients only.
    pub cheap: Latency,
    /// Greedy clients only.
    pub greedy: Latency,
    /// Echoes completed in the window.
    pub messages: u64,
    /// Echoed bytes in the window.
    pub bytes: u64,
    /// Errors by kind.
    pub errors: ErrorCounts,
    /// The first few error messages.
    pub samples: Vec<String>,
    /// Active connections open when the load started.
    pub established: usize,
    /// Idle connections open (and echoed once) when the load started.
    pub idle_established: usize,
    /// Connect-only: when the last cycle completed.
    pub last_echo: Option<Instant>,
}

/// Runs the generator once and returns its report (errors inside; check [`RunReport::ok`]).
pub fn run(cfg: &RunConfig) -> Result<RunReport, String> {
    let fmt = cfg.validate()?;
    ensure_descriptors(cfg.conns + cfg.idle);
    let mem_before = cfg.server_pid.and_then(|pid| procfs::tree_memory(pid).ok());
    let shared = Shared::new(cfg.connect_only.unwrap_or(0) as u64);
    let (samples, results) = thread::scope(|scope| {
        let handles: Vec<_> = (0..cfg.threads)
            .map(|worker_idx| {
                let (fmt, shared) = (&fmt, &shared);
                thread::Builder::new()
                    .name(format!("echo-bench-{worker_idx}"))
                    .spawn_scoped(scope, move || worker::run(worker_idx, cfg, fmt, shared))
            })
            .collect();
        let samples = control(cfg, &shared);
        let results: Vec<Result<WorkerResult, String>> = handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h.join().map_err(|_| "a worker thread panicked".to_string()),
                Err(e) => Err(format!("cannot spawn a worker thread: {e}")),
            })
            .collect();
        (samples, results)
    });
    Ok(RunReport::build(cfg, mem_before, samples, results))
}

/// Parses a duration as the command line takes it: `5s`, `500ms`, `2m`, `1.5s`, or bare
/// seconds (`3`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("bad duration {text:?} (e.g. 5s, 500ms)"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" => value * 60.0,
        _ => return Err(format!("bad duration unit in {text:?} (µs, ms, s, m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("bad duration {text:?}: {e}"))
}

/// What the main thread sampled around the measured window.
#[derive(Debug, Default)]
pub struct Samples {
    /// The timeline (None if set-up never finished).
    pub times: Option<Times>,
    /// Server memory once every connection was set up.
    pub mem_loaded: Option<TreeMemory>,
    /// Server memory at the end of the window.
    pub mem_after: Option<TreeMemory>,
    /// Server CPU at the start and end of the window.
    pub server_cpu: Option<(TreeCpu, TreeCpu)>,
    /// Generator CPU at the start and end of the window.
    pub client_cpu: Option<(Duration, Duration)>,
    /// How long after the boundary it stands for (the window's start, and for a time-bound
    /// run its end) a CPU sample finished, the larger of the two.
    pub sample_lateness: Option<Duration>,
}

/// The main thread's part: wait for set-up, start the clock, sample, show progress.
fn control(cfg: &RunConfig, shared: &Shared) -> Samples {
    let mut samples = Samples::default();
    let setup_deadline = Instant::now() + cfg.setup_timeout + Duration::from_secs(5);
    while shared.ready.load(Ordering::Acquire) < cfg.threads {
        if Instant::now() >= setup_deadline {
            shared.give_up();
            return samples;
        }
        thread::sleep(Duration::from_millis(1));
    }
    let pid = cfg.server_pid;
    samples.mem_loaded = pid.and_then(|pid| procfs::tree_memory(pid).ok());
    // Reading the CPU of a big tree takes a while (2,000 processes: tens to hundreds of ms on
    // a busy machine). Rehearse one pass to know how long, then start each real pass that much
    // before its boundary: every process is read while the load still runs, and each one's
    // interval between the two passes lasts one window.
    let rehearsal = Instant::now();
    let _ = pid.map(procfs::tree_cpu);
    let pass = rehearsal.elapsed();
    let start = Instant::now();
    let (warmup, duration) = match cfg.connect_only {
        Some(_) => (Duration::ZERO, cfg.duration),
        None => (cfg.warmup, cfg.duration),
    };
    let lead = pass.min(warmup).min(duration / 4);
    let times = Times {
        start,
        warm_end: start + warmup,
        measure_end: start + warmup + duration,
        grace_end: start + warmup + duration + cfg.grace,
    };
    samples.times = Some(times);
    shared.publish(times);
    let mut progress = Progress::new(cfg.progress && io::stderr().is_terminal(), start);
    progress.wait_until(times.warm_end - lead, shared, cfg.threads);
    let cpu_start = pid.and_then(|pid| procfs::tree_cpu(pid).ok());
    let self_start = procfs::self_cpu().ok();
    let first_late = Instant::now().saturating_duration_since(times.warm_end);
    let _ = match cfg.connect_only {
        // A connect-only run ends when its cycles are done, not at a fixed time.
        Some(_) => progress.wait_until(times.grace_end, shared, cfg.threads),
        None => progress.wait_until(times.measure_end - lead, shared, cfg.threads),
    };
    let cpu_end = pid.and_then(|pid| procfs::tree_cpu(pid).ok());
    let self_end = procfs::self_cpu().ok();
    let second_late = match cfg.connect_only {
        // The load has stopped by the time a connect-only run ends: a late sample adds
        // nothing to it.
        Some(_) => Duration::ZERO,
        None => Instant::now().saturating_duration_since(times.measure_end),
    };
    samples.mem_after = pid.and_then(|pid| procfs::tree_memory(pid).ok());
    samples.server_cpu = cpu_start.zip(cpu_end);
    samples.client_cpu = self_start.zip(self_end);
    samples.sample_lateness = Some(first_late.max(second_late));
    progress.finish();
    samples
}

/// The progress line on a terminal: elapsed time, recent rate, errors so far.
struct Progress {
    enabled: bool,
    start: Instant,
    last: (Instant, u64),
}

impl Progress {
    fn new(enabled: bool, start: Instant) -> Progress {
        Progress {
            enabled,
            start,
            last: (start, 0),
        }
    }

    /// Sleeps until `deadline` or until every worker has finished, refreshing the line.
    fn wait_until(&mut self, deadline: Instant, shared: &Shared, threads: usize) -> Instant {
        loop {
            let now = Instant::now();
            if now >= deadline || shared.finished.load(Ordering::Acquire) >= threads {
                return now;
            }
            thread::sleep((deadline - now).min(Duration::from_millis(50)));
            if self.enabled && self.last.0.elapsed() >= Duration::from_millis(500) {
                self.show(shared);
            }
        }
    }

    fn show(&mut self, shared: &Shared) {
        let now = Instant::now();
        let completed = shared.completed.load(Ordering::Relaxed);
        let rate = (completed - self.last.1) as f64 / (now - self.last.0).as_secs_f64();
        self.last = (now, completed);
        let errors = shared.errors.load(Ordering::Relaxed);
        let elapsed = (now - self.start).as_secs_f64();
        eprint!("\r  {elapsed:6.1} s  {rate:>12.0} msg/s  {errors} errors   ");
        let _ = io::stderr().flush();
    }

    fn finish(&self) {
        if self.enabled {
            eprint!("\r{:60}\r", "");
        }
    }
}

/// Raises the soft descriptor limit to the hard one when the run needs many sockets.
fn ensure_descriptors(sockets: usize) {
    let needed = sockets as u64 + 64;
    if let Ok((soft, _)) = reactor::process::nofile_limit() {
        if soft < needed {
            match reactor::process::raise_nofile_limit() {
                Ok(new) if new >= needed => {}
                Ok(new) => log::warn!("{sockets} sockets need ~{needed} descriptors; limit {new}"),
                Err(e) => log::warn!("cannot raise RLIMIT_NOFILE: {e}"),
            }
        }
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_setup() -> Duration {
    Duration::from_secs(30)
}

/// A [`Duration`] as a number of seconds in JSON (`0.3`, not `{"secs": 0, "nanos": ...}`).
mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(duration.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let seconds = f64::deserialize(deserializer)?;
        Duration::try_from_secs_f64(seconds).map_err(serde::de::Error::custom)
    }
}
