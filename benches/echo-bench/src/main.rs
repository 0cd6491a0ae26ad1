//! `echo-bench`: the command line of the load generator and of the lab.
//!
//! `echo-bench --addr ADDR [...]` runs the generator once against a running server and prints a
//! summary (or one JSON object with `--json`); `echo-bench lab [...]` starts `echo-server` with
//! every model, runs every scenario against each, and writes tables and charts. Both exit with
//! status 1 when any error was counted (a wrong byte, a reset, a stall...), 2 on bad usage.
//! `echo-bench kernel backlog|synflood` runs one experiment on the kernel's listen queues in a
//! network namespace of its own (77: skipped, it needs root).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use echo_bench::kernel::{self, KernelArgs};
use echo_bench::lab::{self, LabArgs};
use echo_bench::load::parse_duration;
use echo_bench::{Protocol, RunConfig};

#[derive(Parser, Debug)]
#[command(
    name = "echo-bench",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
/// Load generator for echo servers: checks every echoed byte, reports latency percentiles and
/// the server's CPU per message. `echo-bench lab` compares every model of echo-server.
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start echo-server with each model, run each scenario against all of them, interleaved
    /// and repeated, and write DIR/results.{json,md} and DIR/*.svg.
    Lab(LabArgs),
    /// One experiment on the kernel's listen queues (backlog, SYN flood), in a private network
    /// namespace created for it (needs root).
    Kernel(KernelArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Address of the echo server.
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// Active connections.
    #[arg(long, default_value_t = 64)]
    conns: usize,
    /// Message size in bytes (lines protocol: including the final newline).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Messages in flight per connection (1 = ping-pong).
    #[arg(long, default_value_t = 1)]
    depth: usize,
    /// Length of the measured window (5s, 500ms...).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    /// Load before the window, not recorded.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Generator threads, each with its own epoll loop.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Open loop: total messages per second on a fixed schedule (latency counted from the
    /// scheduled send time, so a slow server cannot hide behind a slowed-down generator).
    /// `--greedy` connections stay closed loop; the rate is shared by the others.
    #[arg(long)]
    rate: Option<f64>,
    /// Extra connections held idle during the run (each echoes one message first).
    #[arg(long, default_value_t = 0)]
    idle: usize,
    /// Connection-rate test: N cycles of connect, one echo, close; --conns at a time.
    #[arg(long, value_name = "N")]
    connect_only: Option<usize>,
    /// Wire protocol: raw or lines.
    #[arg(long, default_value = "raw")]
    protocol: Protocol,
    /// CPU microseconds asked by each WORK line of a greedy client.
    #[arg(long, default_value_t = 2000)]
    work_us: u64,
    /// Connections that send costly `WORK` lines (needs --protocol lines); the rest are cheap
    /// and their latency is reported separately.
    #[arg(long, default_value_t = 0)]
    greedy: usize,
    /// The server's pid: report its CPU per message and memory (its whole process tree).
    #[arg(long)]
    server_pid: Option<u32>,
    /// How long after the window echoes still due may take before they count as stalled.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    grace: Duration,
    /// A connection waiting this long without an echo byte is stalled (an error).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    stall_timeout: Duration,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Lab(args)) => match lab::run(&args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("echo-bench lab: {e}");
                ExitCode::from(2)
            }
        },
        // Before any thread: it unshares its network namespace.
        Some(Command::Kernel(args)) => kernel::main(&args),
        None => run_once(cli.run),
    }
}

fn run_once(args: RunArgs) -> ExitCode {
    let Some(addr) = args.addr else {
        eprintln!("echo-bench: --addr is required (or use `echo-bench lab`); see --help");
        return ExitCode::from(2);
    };
    let json = args.json;
    let cfg = RunConfig {
        conns: args.conns,
        size: args.size,
        depth: args.depth,
        duration: args.duration,
        warmup: args.warmup,
        threads: args.threads,
        rate: args.rate,
        idle: args.idle,
        connect_only: args.connect_only,
        protocol: args.protocol,
        work_us: args.work_us,
        greedy: args.greedy,
        server_pid: args.server_pid,
        grace: args.grace,
        stall_timeout: args.stall_timeout,
        progress: !json,
        ..RunConfig::new(addr)
    };
    match echo_bench::run(&cfg) {
        Ok(report) => {
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.human());
            }
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("echo-bench: {e}");
            ExitCode::from(2)
        }
    }
}
