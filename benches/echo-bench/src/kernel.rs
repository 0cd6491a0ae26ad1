//! `echo-bench kernel backlog|synflood`: one experiment on the kernel's queues, in a network
//! namespace this process creates for it and that disappears when it exits.
//!
//! The lab (`echo-bench lab --scenarios backlog,synflood`) runs this command once per setting
//! and reads its `--json` output; a person can run it by hand to try other settings. Every knob
//! is checked before anything happens (exit status 2 with a clear message); then the process
//! unshares its network namespace, first thing, while it has a single thread
//! ([`PrivateNet::create`]). Without root it prints "skipped: needs root (network namespace)"
//! and exits with [`EXIT_SKIPPED`]. An experiment that fails exits with 1.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::clients::{self, ClientRecord, Outcome};
use crate::load::parse_duration;
use crate::netns::{NetnsError, PrivateNet, EXIT_SKIPPED};
use crate::netstat::Counter;
use crate::queues::{self, BacklogConfig, SynfloodConfig};
use crate::synflood::FloodConfig;

/// `echo-bench kernel ...`.
#[derive(Args, Debug, Clone)]
pub struct KernelArgs {
    /// Which experiment.
    #[command(subcommand)]
    pub experiment: Experiment,
    /// The echo-server binary (default: target/release/echo-server, built if needed).
    #[arg(long, global = true)]
    pub server_bin: Option<PathBuf>,
    /// Print one JSON object (what the lab reads) instead of a summary.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The experiments.
#[derive(Subcommand, Debug, Clone)]
pub enum Experiment {
    /// Stop the server (SIGSTOP), burst clients at it, resume it (SIGCONT): the accept queue
    /// fills to the backlog, then SYNs are dropped and retransmitted.
    Backlog(BacklogArgs),
    /// Flood the server with spoofed SYNs while legitimate clients connect.
    Synflood(SynfloodArgs),
}

/// Settings of `kernel backlog`.
#[derive(Args, Debug, Clone)]
pub struct BacklogArgs {
    /// listen(2) backlog of the server (1-65535).
    #[arg(long, default_value_t = 16)]
    pub backlog: u32,
    /// Clients in the burst (1-10000).
    #[arg(long, default_value_t = 64)]
    pub burst: usize,
    /// How long the server stays stopped once the burst has started.
    #[arg(long, default_value = "1500ms", value_parser = parse_duration)]
    pub hold: Duration,
    /// net.ipv4.tcp_abort_on_overflow: 0 drops the final ACK of a handshake that finds the
    /// accept queue full, 1 answers it with a reset.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub abort_on_overflow: u8,
    /// How long each client may take from its connect to its echo (more than --hold).
    #[arg(long, default_value = "6s", value_parser = parse_duration)]
    pub deadline: Duration,
}

/// Settings of `kernel synflood`.
#[derive(Args, Debug, Clone)]
pub struct SynfloodArgs {
    /// net.ipv4.tcp_syncookies: 0 never, 1 when the SYN queue is full, 2 always.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub syncookies: u8,
    /// listen(2) backlog of the server, which also bounds its SYN queue (1-65535).
    #[arg(long, default_value_t = 128)]
    pub backlog: u32,
    /// Spoofed SYNs per second (1-100000).
    #[arg(long, default_value_t = 2000)]
    pub rate: u32,
    /// At most this many spoofed SYNs (1-1000000).
    #[arg(long, default_value_t = 10_000)]
    pub packets: u64,
    /// The flood lasts at most this long (at most 60s).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Legitimate clients, spread over the flood (1-1000).
    #[arg(long, default_value_t = 10)]
    pub clients: usize,
    /// How long each legitimate client may take from its connect to its echo.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub deadline: Duration,
}

/// Sampling period of the queues and counters.
const SAMPLE: Duration = Duration::from_millis(20);

impl BacklogArgs {
    /// The experiment's configuration, or why these settings are refused.
    pub fn config(&self) -> Result<BacklogConfig, String> {
        check_range("--backlog", self.backlog as u64, 1, 65_535)?;
        check_range("--burst", self.burst as u64, 1, 10_000)?;
        if self.hold > Duration::from_secs(30) {
            return Err(format!("--hold {:?}: at most 30s", self.hold));
        }
        if self.deadline <= self.hold || self.deadline > Duration::from_secs(60) {
            return Err(format!(
                "--deadline {:?}: must be longer than --hold {:?} and at most 60s",
                self.deadline, self.hold
            ));
        }
        Ok(BacklogConfig {
            backlog: self.backlog,
            burst: self.burst,
            hold_s: self.hold.as_secs_f64(),
            abort_on_overflow: self.abort_on_overflow == 1,
            deadline_s: self.deadline.as_secs_f64(),
            sample_s: SAMPLE.as_secs_f64(),
        })
    }
}

impl SynfloodArgs {
    /// The experiment's configuration, or why these settings are refused.
    pub fn config(&self) -> Result<SynfloodConfig, String> {
        check_range("--backlog", self.backlog as u64, 1, 65_535)?;
        check_range("--clients", self.clients as u64, 1, 1_000)?;
        let flood = FloodConfig {
            target: "127.0.0.1:1".parse().expect("a valid placeholder"),
            rate: self.rate,
            max_packets: self.packets,
            max_duration: self.duration,
        };
        flood
            .validate()
            .map_err(|e| format!("--rate/--packets/--duration: {e}"))?;
        if self.deadline.is_zero() || self.deadline > Duration::from_secs(60) {
            return Err(format!("--deadline {:?}: must be 1ms..60s", self.deadline));
        }
        Ok(SynfloodConfig {
            syncookies: self.syncookies,
            backlog: self.backlog,
            rate: self.rate,
            packets: self.packets,
            flood_s: self.duration.as_secs_f64(),
            clients: self.clients,
            deadline_s: self.deadline.as_secs_f64(),
            sample_s: SAMPLE.as_secs_f64(),
        })
    }
}

/// Runs `echo-bench kernel ...`; call it before this process starts any thread.
pub fn main(args: &KernelArgs) -> ExitCode {
    let checked = match &args.experiment {
        Experiment::Backlog(a) => a.config().map(|_| ()),
        Experiment::Synflood(a) => a.config().map(|_| ()),
    };
    let server_bin = match (checked, server_bin(args)) {
        (Err(e), _) | (Ok(()), Err(e)) => {
            eprintln!("echo-bench kernel: {e}");
            return ExitCode::from(2);
        }
        (Ok(()), Ok(bin)) => bin,
    };
    let net = match PrivateNet::create() {
        Ok(net) => net,
        Err(NetnsError::Unavailable(why)) => {
            eprintln!("skipped: {why}");
            return ExitCode::from(EXIT_SKIPPED);
        }
        Err(NetnsError::Failed(why)) => {
            eprintln!("echo-bench kernel: private network namespace: {why}");
            return ExitCode::from(1);
        }
    };
    let _ = reactor::process::raise_nofile_limit();
    let result = match &args.experiment {
        Experiment::Backlog(a) => a
            .config()
            .and_then(|cfg| queues::backlog(&net, server_bin, &cfg))
            .map(|run| (serde_json::to_string(&run), backlog_summary(&run))),
        Experiment::Synflood(a) => a
            .config()
            .and_then(|cfg| queues::synflood(&net, server_bin, &cfg))
            .map(|run| (serde_json::to_string(&run), synflood_summary(&run))),
    };
    match result {
        Ok((json, summary)) => {
            match args.json {
                true => println!("{}", json.expect("a run serialises")),
                false => print!("{summary}"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("echo-bench kernel: {e}");
            ExitCode::from(1)
        }
    }
}

/// `--server-bin`, or the workspace's release build (built first when cargo is there).
fn server_bin(args: &KernelArgs) -> Result<PathBuf, String> {
    let bin = match &args.server_bin {
        Some(bin) => bin.clone(),
        None => crate::models::build_echo_server(&crate::models::workspace_root())?,
    };
    match bin.is_file() {
        true => Ok(bin),
        false => Err(format!("--server-bin {}: no such file", bin.display())),
    }
}

fn check_range(flag: &str, value: u64, low: u64, high: u64) -> Result<(), String> {
    match (low..=high).contains(&value) {
        true => Ok(()),
        false => Err(format!("{flag} {value}: must be {low}-{high}")),
    }
}

/// A few lines for a person: outcomes, connect latency, the counters.
pub fn backlog_summary(run: &queues::BacklogRun) -> String {
    let c = &run.config;
    let peak = run
        .samples
        .iter()
        .map(|s| s.queues.accept_queue)
        .max()
        .unwrap_or(0);
    format!(
        "backlog {} (tcp_abort_on_overflow {}), burst of {} while stopped for {:.1}s\n\
         peak accept queue {peak}\n{}{}",
        c.backlog,
        u8::from(c.abort_on_overflow),
        c.burst,
        c.hold_s,
        outcomes(&run.clients),
        counters(&run.counters),
    )
}

/// A few lines for a person: the flood, the legitimate clients, the counters.
pub fn synflood_summary(run: &queues::SynfloodRun) -> String {
    let c = &run.config;
    let peak = run
        .samples
        .iter()
        .map(|s| s.queues.syn_queue)
        .max()
        .unwrap_or(0);
    format!(
        "tcp_syncookies {}, backlog {}: {} spoofed SYNs in {:.1}s ({} send errors)\n\
         peak SYN queue {peak}\n{}{}",
        c.syncookies,
        c.backlog,
        run.flood.sent,
        run.flood.elapsed_s,
        run.flood.send_errors,
        outcomes(&run.clients),
        counters(&run.counters),
    )
}

fn outcomes(records: &[ClientRecord]) -> String {
    let mut connect: Vec<f64> = records.iter().filter_map(|r| r.connect_s).collect();
    connect.sort_by(f64::total_cmp);
    let at = |q: f64| connect.get(((connect.len() as f64 - 1.0) * q).round() as usize);
    let ms = |v: Option<&f64>| v.map_or("-".into(), |s| format!("{:.1} ms", s * 1e3));
    format!(
        "clients: {} echoed, {} reset, {} timed out, {} failed\n\
         connect latency: p50 {}, p90 {}, max {}\n",
        clients::count(records, Outcome::Echoed),
        clients::count(records, Outcome::Reset),
        clients::count(records, Outcome::TimedOut),
        clients::count(records, Outcome::Failed),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(connect.last()),
    )
}

fn counters(counters: &crate::netstat::Counters) -> String {
    let list: Vec<String> = Counter::ALL
        .iter()
        .map(|c| format!("{} {}", c.name(), counters.get(c).copied().unwrap_or(0)))
        .collect();
    format!("TcpExt: {}\n", list.join(", "))
}
