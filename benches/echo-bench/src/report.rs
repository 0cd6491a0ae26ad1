//! The result of one run: figures, errors, and how to print them (a table or one JSON object).
//!
//! The report puts errors first on purpose: a fast run that lost a byte is a failed run, and the
//! process exits non-zero (see `main.rs`). Efficiency comes as CPU microseconds per echoed
//! message, for the server (its whole process tree, see [`crate::procfs`]) and for the generator
//! itself, next to throughput and latency percentiles.

use std::fmt::Write;
use std::time::Instant;

use crate::histo::{Latency, LatencySummary};
use crate::json::Json;
use crate::load::{RunConfig, Samples, WorkerResult};
use crate::procfs::TreeMemory;

/// The kinds of error a run can meet. Every one of them fails the run.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The connection could not be set up (refused, timed out, or set-up deadline passed).
    Connect,
    /// An echoed byte differed from the byte sent, or bytes came that were never sent.
    Mismatch,
    /// The server closed the connection with echoes still due (a short echo).
    Short,
    /// The server closed a connection that had nothing in flight (e.g. an idle one).
    Closed,
    /// A read or write failed: connection reset, broken pipe.
    Reset,
    /// No echo byte for the stall timeout, or echoes still due at the grace deadline.
    Stall,
}

impl ErrorKind {
    /// Every kind, in report order.
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::Connect,
        ErrorKind::Mismatch,
        ErrorKind::Short,
        ErrorKind::Closed,
        ErrorKind::Reset,
        ErrorKind::Stall,
    ];

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Mismatch => "mismatch",
            ErrorKind::Short => "short",
            ErrorKind::Closed => "closed",
            ErrorKind::Reset => "reset",
            ErrorKind::Stall => "stall",
        }
    }
}

/// Errors counted by kind (each is a connection, or a connect attempt, that failed).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    counts: [u64; 6],
}

impl ErrorCounts {
    /// Adds `n` errors of `kind`.
    pub fn add(&mut self, kind: ErrorKind, n: u64) {
        self.counts[kind as usize] += n;
    }

    /// Errors of `kind`.
    pub fn get(&self, kind: ErrorKind) -> u64 {
        self.counts[kind as usize]
    }

    /// All errors.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &ErrorCounts) {
        for kind in ErrorKind::ALL {
            self.add(kind, other.get(kind));
        }
    }

    fn to_json(self) -> Json {
        ErrorKind::ALL
            .iter()
            .fold(Json::object().with("total", self.total()), |json, &k| {
                json.with(k.name(), self.get(k))
            })
    }
}

/// What the server cost during the run.
#[derive(Copy, Clone, Debug, Default, PartialEq)]
pub struct ServerUsage {
    /// The server's process id.
    pub pid: u32,
    /// Processes in its tree at the end of the window.
    pub processes: usize,
    /// CPU time of the tree in the measured window.
    pub cpu_us: f64,
    /// `cpu_us / messages`: what one echo costs the server (NaN without messages).
    pub cpu_us_per_msg: f64,
    /// Tree memory before the generator connected.
    pub mem_before: TreeMemory,
    /// Tree memory with every connection set up.
    pub mem_loaded: TreeMemory,
    /// Tree memory at the end of the window.
    pub mem_after: TreeMemory,
    /// `(rss loaded - rss before) / connections`: resident bytes per connection.
    pub rss_per_conn: f64,
    /// The same with proportional set sizes (fair to forked servers).
    pub pss_per_conn: f64,
}

/// The outcome of one run.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The configuration it ran with.
    pub config: RunConfig,
    /// Length of the measured window in seconds (connect-only: until the last cycle).
    pub window_s: f64,
    /// Echoes completed in the window (connect-only: completed cycles).
    pub messages: u64,
    /// Echoed bytes in the window.
    pub bytes: u64,
    /// `messages / window_s`.
    pub msgs_per_sec: f64,
    /// Latency of every message in the window.
    pub latency: Option<LatencySummary>,
    /// Latency of the cheap clients (all clients when none is greedy).
    pub cheap_latency: Option<LatencySummary>,
    /// Latency of the greedy clients.
    pub greedy_latency: Option<LatencySummary>,
    /// Errors by kind.
    pub errors: ErrorCounts,
    /// The first few error messages.
    pub error_samples: Vec<String>,
    /// Active connections open when the load started.
    pub established: usize,
    /// Idle connections open when the load started.
    pub idle_established: usize,
    /// Server CPU and memory, with `--server-pid`.
    pub server: Option<ServerUsage>,
    /// CPU time of the generator in the window, in microseconds per message.
    pub client_cpu_us_per_msg: f64,
}

impl RunReport {
    /// True when the run met no error at all.
    pub fn ok(&self) -> bool {
        self.errors.total() == 0
    }

    /// Merges the workers' results and the main thread's samples.
    pub fn build(
        cfg: &RunConfig,
        mem_before: Option<TreeMemory>,
        samples: Samples,
        results: Vec<Result<WorkerResult, String>>,
    ) -> RunReport {
        let (mut all, mut cheap, mut greedy) = (Latency::new(), Latency::new(), Latency::new());
        let mut report = RunReport::empty(cfg);
        let mut last_echo: Option<Instant> = None;
        for result in results {
            let r = match result {
                Ok(r) => r,
                Err(e) => {
                    report.errors.add(ErrorKind::Stall, 1);
                    report.error_samples.push(e);
                    continue;
                }
            };
            all.merge(&r.all);
            cheap.merge(&r.cheap);
            greedy.merge(&r.greedy);
            report.messages += r.messages;
            report.bytes += r.bytes;
            report.errors.merge(&r.errors);
            report.established += r.established;
            report.idle_established += r.idle_established;
            report.error_samples.extend(r.samples);
            last_echo = last_echo.max(r.last_echo);
        }
        if samples.times.is_none() {
            report.errors.add(ErrorKind::Connect, 1);
            report
                .error_samples
                .push("set-up did not finish in time".into());
        }
        let window = match (cfg.connect_only, samples.times, samples.window) {
            (Some(_), Some(times), _) => last_echo.map(|end| end - times.start),
            (None, _, Some((start, end))) => Some(end - start),
            _ => None,
        };
        report.window_s = window.map_or(0.0, |w| w.as_secs_f64());
        report.msgs_per_sec = report.messages as f64 / report.window_s;
        report.latency = all.summary();
        report.cheap_latency = cheap.summary();
        report.greedy_latency = greedy.summary();
        let per_msg = |us: f64| us / report.messages as f64;
        if let Some((start, end)) = samples.client_cpu {
            report.client_cpu_us_per_msg = per_msg(end.saturating_sub(start).as_secs_f64() * 1e6);
        }
        if let (Some(pid), Some(before)) = (cfg.server_pid, mem_before) {
            let conns = (report.established + report.idle_established) as f64;
            let loaded = samples.mem_loaded.unwrap_or_default();
            let mut usage = ServerUsage {
                pid,
                mem_before: before,
                mem_loaded: loaded,
                mem_after: samples.mem_after.unwrap_or_default(),
                rss_per_conn: (loaded.rss as f64 - before.rss as f64) / conns,
                pss_per_conn: (loaded.pss as f64 - before.pss as f64) / conns,
                cpu_us_per_msg: f64::NAN,
                ..ServerUsage::default()
            };
            if let Some((start, end)) = samples.server_cpu {
                usage.cpu_us = end.micros().saturating_sub(start.micros()) as f64;
                usage.cpu_us_per_msg = per_msg(usage.cpu_us);
                usage.processes = end.processes;
            }
            report.server = Some(usage);
        }
        report
    }

    fn empty(cfg: &RunConfig) -> RunReport {
        RunReport {
            config: cfg.clone(),
            window_s: 0.0,
            messages: 0,
            bytes: 0,
            msgs_per_sec: 0.0,
            latency: None,
            cheap_latency: None,
            greedy_latency: None,
            errors: ErrorCounts::default(),
            error_samples: Vec::new(),
            established: 0,
            idle_established: 0,
            server: None,
            client_cpu_us_per_msg: f64::NAN,
        }
    }

    /// The report as one JSON object (`--json`, and each run in the lab's `results.json`).
    pub fn to_json(&self) -> Json {
        let c = &self.config;
        let config = Json::object()
            .with("addr", c.addr.to_string())
            .with("protocol", c.protocol.name())
            .with("conns", c.conns)
            .with("size", c.size)
            .with("depth", c.depth)
            .with("threads", c.threads)
            .with("duration_s", c.duration.as_secs_f64())
            .with("warmup_s", c.warmup.as_secs_f64())
            .with("rate", c.rate)
            .with("idle", c.idle)
            .with("connect_only", c.connect_only)
            .with("greedy", c.greedy)
            .with("work_us", c.work_us);
        let server = self.server.map(|s| {
            let mem = |m: TreeMemory| {
                Json::object()
                    .with("rss", m.rss)
                    .with("pss", m.pss)
                    .with("processes", m.processes)
            };
            Json::object()
                .with("pid", s.pid as u64)
                .with("processes", s.processes)
                .with("cpu_us", s.cpu_us)
                .with("cpu_us_per_msg", s.cpu_us_per_msg)
                .with("mem_before", mem(s.mem_before))
                .with("mem_loaded", mem(s.mem_loaded))
                .with("mem_after", mem(s.mem_after))
                .with("rss_per_conn", s.rss_per_conn)
                .with("pss_per_conn", s.pss_per_conn)
        });
        let samples: Vec<Json> = self
            .error_samples
            .iter()
            .map(|s| Json::from(s.as_str()))
            .collect();
        Json::object()
            .with("ok", self.ok())
            .with("config", config)
            .with("window_s", self.window_s)
            .with("messages", self.messages)
            .with("bytes", self.bytes)
            .with("msgs_per_sec", self.msgs_per_sec)
            .with(
                "mib_per_sec",
                self.bytes as f64 / self.window_s / (1 << 20) as f64,
            )
            .with("established", self.established)
            .with("idle_established", self.idle_established)
            .with("latency_us", self.latency.map(latency_json))
            .with("cheap_latency_us", self.cheap_latency.map(latency_json))
            .with("greedy_latency_us", self.greedy_latency.map(latency_json))
            .with("errors", self.errors.to_json())
            .with("error_samples", samples)
            .with("server", server)
            .with("client_cpu_us_per_msg", self.client_cpu_us_per_msg)
    }

    /// The summary printed on a terminal at the end of a run.
    pub fn human(&self) -> String {
        let c = &self.config;
        let mut out = String::new();
        let mode = match (c.connect_only, c.rate) {
            (Some(n), _) => format!("connect-only {n} cycles, {} at a time", c.conns),
            (None, Some(rate)) => format!("open loop at {rate} msg/s"),
            (None, None) => "closed loop".to_string(),
        };
        let _ = writeln!(
            out,
            "echo-bench {}  {} conns x depth {} x {} B ({}), {} idle, {} threads, {mode}",
            c.addr,
            c.conns,
            c.depth,
            c.size,
            c.protocol.name(),
            c.idle,
            c.threads
        );
        let mib = self.bytes as f64 / self.window_s / (1 << 20) as f64;
        let _ = writeln!(
            out,
            "  messages   {:>12}  in {:.2} s  {:>12.0} msg/s  {mib:.1} MiB/s",
            self.messages, self.window_s, self.msgs_per_sec
        );
        let mut latency_line = |name: &str, summary: &Option<LatencySummary>| {
            if let Some(l) = summary {
                let _ = writeln!(
                    out,
                    "  {name:<10} p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  (us)",
                    l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
                );
            }
        };
        latency_line("latency", &self.latency);
        if c.greedy > 0 {
            latency_line("cheap", &self.cheap_latency);
            latency_line("greedy", &self.greedy_latency);
        }
        if let Some(s) = &self.server {
            let _ = writeln!(
                out,
                "  server     {:.2} us/msg CPU ({} processes), RSS {} -> {} KiB ({:.0} B/conn, PSS {:.0} B/conn)",
                s.cpu_us_per_msg,
                s.processes,
                s.mem_before.rss / 1024,
                s.mem_loaded.rss / 1024,
                s.rss_per_conn,
                s.pss_per_conn
            );
        }
        let _ = writeln!(
            out,
            "  client     {:.2} us/msg CPU",
            self.client_cpu_us_per_msg
        );
        let _ = write!(out, "  errors     {}", self.errors.total());
        for kind in ErrorKind::ALL.iter().filter(|k| self.errors.get(**k) > 0) {
            let _ = write!(out, "  {} {}", kind.name(), self.errors.get(*kind));
        }
        out.push('\n');
        for sample in &self.error_samples {
            let _ = writeln!(out, "    {sample}");
        }
        out
    }
}

/// Percentiles as a JSON object.
pub fn latency_json(l: LatencySummary) -> Json {
    Json::object()
        .with("count", l.count)
        .with("mean", l.mean_us)
        .with("p50", l.p50_us)
        .with("p90", l.p90_us)
        .with("p99", l.p99_us)
        .with("p99_9", l.p999_us)
        .with("max", l.max_us)
}
