//! The result of one run: figures, errors, and how to print them (a table or one JSON object).
//!
//! The report puts errors first on purpose: a fast run that lost a byte is a failed run, and the
//! process exits non-zero (see `main.rs`). Efficiency comes as CPU microseconds per echoed
//! message, for the server (its whole process tree, see [`crate::procfs`]) and for the generator
//! itself, next to throughput and latency percentiles.
//!
//! The JSON form is derived with serde, and the lab reads it back (`lab --replot`), so every
//! field survives a round trip. JSON has no NaN: serde_json writes a figure that could not be
//! computed (CPU per message of a run that echoed nothing) as `null`, and [`nan_if_null`] reads
//! `null` back as NaN.

use std::fmt::Write;
use std::time::Instant;

use serde::{Deserialize, Deserializer, Serialize};

use crate::histo::{Latency, LatencySummary};
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
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "ErrorsByName", from = "ErrorsByName")]
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
}

/// [`ErrorCounts`] as JSON shows it: the total, then one named count per kind.
#[derive(Serialize, Deserialize)]
struct ErrorsByName {
    /// Written for the reader; recomputed from the kinds when read back.
    #[serde(default, skip_deserializing)]
    total: u64,
    connect: u64,
    mismatch: u64,
    short: u64,
    closed: u64,
    reset: u64,
    stall: u64,
}

impl From<ErrorCounts> for ErrorsByName {
    fn from(e: ErrorCounts) -> ErrorsByName {
        let [connect, mismatch, short, closed, reset, stall] = e.counts;
        ErrorsByName {
            total: e.total(),
            connect,
            mismatch,
            short,
            closed,
            reset,
            stall,
        }
    }
}

impl From<ErrorsByName> for ErrorCounts {
    fn from(e: ErrorsByName) -> ErrorCounts {
        ErrorCounts {
            counts: [e.connect, e.mismatch, e.short, e.closed, e.reset, e.stall],
        }
    }
}

/// What the server cost during the run.
#[derive(Copy, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerUsage {
    /// The server's process id.
    pub pid: u32,
    /// Processes in its tree at the end of the window.
    pub processes: usize,
    /// CPU time of the tree in the measured window.
    pub cpu_us: f64,
    /// `cpu_us / messages`: what one echo costs the server (NaN without messages).
    #[serde(deserialize_with = "nan_if_null")]
    pub cpu_us_per_msg: f64,
    /// Voluntary context switches of the tree's live threads in the window (they blocked:
    /// a worker parking, a loop sleeping in `epoll_wait`).
    #[serde(default)]
    pub voluntary_switches: u64,
    /// Involuntary context switches in the window (threads preempted by the scheduler).
    #[serde(default)]
    pub involuntary_switches: u64,
    /// Both kinds per echoed message (NaN without messages or with an older report).
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub switches_per_msg: f64,
    /// Tree memory before the generator connected.
    pub mem_before: TreeMemory,
    /// Tree memory with every connection set up.
    pub mem_loaded: TreeMemory,
    /// Tree memory at the end of the window.
    pub mem_after: TreeMemory,
    /// `(rss loaded - rss before) / connections`: resident bytes per connection.
    #[serde(deserialize_with = "nan_if_null")]
    pub rss_per_conn: f64,
    /// The same with proportional set sizes (fair to forked servers).
    #[serde(deserialize_with = "nan_if_null")]
    pub pss_per_conn: f64,
}

/// The outcome of one run.
#[derive(Clone, Debug, Serialize, Deserialize)]
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
    #[serde(deserialize_with = "nan_if_null")]
    pub msgs_per_sec: f64,
    /// `bytes / window_s` in MiB (2^20 bytes) per second.
    #[serde(default = "nan", deserialize_with = "nan_if_null")]
    pub mib_per_sec: f64,
    /// Latency of every message in the window.
    #[serde(rename = "latency_us")]
    pub latency: Option<LatencySummary>,
    /// Latency of the cheap clients (all clients when none is greedy).
    #[serde(rename = "cheap_latency_us")]
    pub cheap_latency: Option<LatencySummary>,
    /// Latency of the greedy clients.
    #[serde(rename = "greedy_latency_us")]
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
    #[serde(deserialize_with = "nan_if_null")]
    pub client_cpu_us_per_msg: f64,
    /// What the reader should know about this run's figures (e.g. CPU left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A report as `--json` prints it: `ok` first, then every field of the report.
#[derive(Serialize)]
struct Verdict<'a> {
    ok: bool,
    #[serde(flatten)]
    report: &'a RunReport,
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
        // The workers count exactly the echoes completed between `warm_end` and
        // `measure_end`, whenever the main thread happens to look.
        let window = match (cfg.connect_only, samples.times) {
            (Some(_), Some(times)) => last_echo.map(|end| end - times.start),
            (None, Some(times)) => Some(times.measure_end - times.warm_end),
            (_, None) => None,
        };
        report.window_s = window.map_or(0.0, |w| w.as_secs_f64());
        report.msgs_per_sec = report.messages as f64 / report.window_s;
        report.mib_per_sec = report.bytes as f64 / report.window_s / (1 << 20) as f64;
        report.latency = all.summary();
        report.cheap_latency = cheap.summary();
        report.greedy_latency = greedy.summary();
        // CPU read well after the window's edges covers the drain or misses load: leave the
        // per-message figures out rather than print wrong ones.
        let late = samples.sample_lateness.unwrap_or_default().as_secs_f64();
        let cpu_ok = late <= report.window_s / 10.0;
        if !cpu_ok {
            report.notes.push(format!(
                "CPU sampled {:.0} ms past the window's edge (window {:.0} ms; the machine was \
                 too busy): CPU and context switches per message left out",
                late * 1e3,
                report.window_s * 1e3
            ));
        }
        let per_msg = |us: f64| match cpu_ok {
            true => us / report.messages as f64,
            false => f64::NAN,
        };
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
                switches_per_msg: f64::NAN,
                ..ServerUsage::default()
            };
            if let Some((start, end)) = samples.server_cpu {
                usage.cpu_us = end.micros().saturating_sub(start.micros()) as f64;
                usage.cpu_us_per_msg = per_msg(usage.cpu_us);
                usage.processes = end.processes;
                // Threads that exited in the window take their counts with them (see
                // `procfs`), so a delta can only err low; saturate rather than wrap.
                usage.voluntary_switches = end
                    .voluntary_switches
                    .saturating_sub(start.voluntary_switches);
                usage.involuntary_switches = end
                    .involuntary_switches
                    .saturating_sub(start.involuntary_switches);
                usage.switches_per_msg =
                    per_msg((usage.voluntary_switches + usage.involuntary_switches) as f64);
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
            mib_per_sec: 0.0,
            latency: None,
            cheap_latency: None,
            greedy_latency: None,
            errors: ErrorCounts::default(),
            error_samples: Vec::new(),
            established: 0,
            idle_established: 0,
            server: None,
            client_cpu_us_per_msg: f64::NAN,
            notes: Vec::new(),
        }
    }

    /// The report as one pretty-printed JSON object with `ok` first (`--json`).
    pub fn to_json(&self) -> String {
        let verdict = Verdict {
            ok: self.ok(),
            report: self,
        };
        serde_json::to_string_pretty(&verdict).expect("a report always serialises")
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
        let _ = writeln!(
            out,
            "  messages   {:>12}  in {:.2} s  {:>12.0} msg/s  {:.1} MiB/s",
            self.messages, self.window_s, self.msgs_per_sec, self.mib_per_sec
        );
        let mut latency_line = |name: &str, summary: &Option<LatencySummary>| {
            if let Some(l) = summary {
                let _ = writeln!(
                    out,
                    "  {name:<10} p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  (µs)",
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
                "  server     {:.2} µs/msg CPU ({} processes), {:.2} context switches/msg \
                 ({} voluntary, {} involuntary)",
                s.cpu_us_per_msg,
                s.processes,
                s.switches_per_msg,
                s.voluntary_switches,
                s.involuntary_switches
            );
            let _ = writeln!(
                out,
                "  memory     RSS {} -> {} KiB ({:.0} B/conn), PSS {} -> {} KiB ({:.0} B/conn)",
                s.mem_before.rss / 1024,
                s.mem_loaded.rss / 1024,
                s.rss_per_conn,
                s.mem_before.pss / 1024,
                s.mem_loaded.pss / 1024,
                s.pss_per_conn
            );
        }
        let _ = writeln!(
            out,
            "  client     {:.2} µs/msg CPU",
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
        for note in &self.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        out
    }
}

/// `f64::NAN`, the default of figures that older reports lack.
pub fn nan() -> f64 {
    f64::NAN
}

/// Reads a number, or `null` as NaN (serde_json writes NaN and infinities as `null`).
pub fn nan_if_null<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn sample() -> RunReport {
        let cfg = RunConfig::new(SocketAddr::from(([127, 0, 0, 1], 7007)));
        let mut report = RunReport::empty(&cfg);
        report.messages = 10;
        report.window_s = 0.5;
        report.latency = Some(LatencySummary {
            count: 10,
            p99_us: 12.5,
            ..LatencySummary::default()
        });
        report.errors.add(ErrorKind::Stall, 2);
        report.server = Some(ServerUsage {
            cpu_us_per_msg: f64::NAN,
            switches_per_msg: 1.5,
            ..ServerUsage::default()
        });
        report
    }

    #[test]
    fn a_report_survives_a_json_round_trip_nan_included() {
        let report = sample();
        let text = report.to_json();
        assert!(text.starts_with("{\n  \"ok\": false,"), "{text}");
        assert!(text.contains("\"cpu_us_per_msg\": null"), "{text}");
        assert!(
            text.contains("\"stall\": 2") && text.contains("\"total\": 2"),
            "{text}"
        );
        let back: RunReport = serde_json::from_str(&text).unwrap();
        assert!(back.server.unwrap().cpu_us_per_msg.is_nan());
        assert!(back.client_cpu_us_per_msg.is_nan());
        assert_eq!(back.errors, report.errors);
        assert_eq!(back.latency, report.latency);
        assert_eq!(back.config.duration, report.config.duration);
        assert_eq!(back.to_json(), text, "a second trip changes nothing");
    }

    #[test]
    fn a_report_written_by_the_old_hand_rolled_writer_still_reads() {
        // One run of docs/lab/results.json as the writer before serde produced it: no
        // context switches, no timeouts in the config. `lab --replot` must still draw it.
        let old = r#"{"ok": true, "config": {"addr": "127.0.0.1:35353", "protocol": "raw",
            "conns": 64, "size": 64, "depth": 1, "threads": 1, "duration_s": 2,
            "warmup_s": 0.5, "rate": null, "idle": 0, "connect_only": null, "greedy": 0,
            "work_us": 0}, "window_s": 2, "messages": 292953, "bytes": 18748992,
            "msgs_per_sec": 146492.232, "mib_per_sec": 8.941, "established": 64,
            "idle_established": 0, "latency_us": {"count": 292953, "mean": 624.723,
            "p50": 591.359, "p90": 784.895, "p99": 1212.415, "p99_9": 1721.343,
            "max": 17186.815}, "cheap_latency_us": null, "greedy_latency_us": null,
            "errors": {"total": 0, "connect": 0, "mismatch": 0, "short": 0, "closed": 0,
            "reset": 0, "stall": 0}, "error_samples": [], "server": {"pid": 10339,
            "processes": 1, "cpu_us": 1959146, "cpu_us_per_msg": 6.688,
            "mem_before": {"rss": 3080192, "pss": 1854464, "processes": 1},
            "mem_loaded": {"rss": 3153920, "pss": 1928192, "processes": 1},
            "mem_after": {"rss": 3153920, "pss": 1928192, "processes": 1},
            "rss_per_conn": 1152, "pss_per_conn": 1152}, "client_cpu_us_per_msg": 6.738,
            "failure": null}"#;
        let report: RunReport = serde_json::from_str(old).unwrap();
        assert_eq!(report.latency.unwrap().p99_us, 1212.415);
        assert_eq!(report.config.warmup, std::time::Duration::from_millis(500));
        let server = report.server.unwrap();
        assert_eq!(server.cpu_us_per_msg, 6.688);
        assert!(server.switches_per_msg.is_nan(), "absent, not zero");
        assert!(report.ok());
    }
}
