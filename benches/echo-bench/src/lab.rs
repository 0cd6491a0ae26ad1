//! `echo-bench lab`: every scenario against every model, interleaved, repeated, summarised.
//!
//! For each scenario, for each repetition, for each model, in that order: start a fresh server
//! on a free port, run the generator against it (in this process), stop the server. Running the
//! models in turn inside each repetition (A B C, A B C, A B C) rather than one after the other
//! (A A A, B B B, C C C) spreads slow drifts of the machine (thermal throttling, a neighbour's
//! build, the page cache) over all models instead of charging them to whichever ran last.
//!
//! The servers are started normally, unpinned, and so are the generator's threads: on a two-core
//! machine any pinning would have to put the two on the same cores anyway, and `echo-bench`
//! deliberately has no libc to call `sched_setaffinity`. Models that pin their own workers
//! (`--pin`) do so as they would in production. The figure that stays fair whatever the
//! scheduler does is CPU time per message, which every table shows.
//!
//! The peers (`--peers`: tokio multi-thread, tokio current-thread, std threads) come from the
//! `benches/peers` workspace, built here with cargo, and run as extra models in the same loop.
//! They speak the lines protocol too, so they take part in every scenario.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use clap::Args;

use crate::load::{self, parse_duration, RunConfig};
use crate::results::{Cell, LabResults, Outcome};
use crate::scenario::{self, Timing, Variant};
use crate::server::{RunningServer, ServerSpec};
use crate::verify::Protocol;

/// Every model of `echo-server`, in the order the lab reports them.
pub const MODELS: [&str; 8] = [
    "event-loop",
    "thread-per-conn",
    "process-per-conn",
    "listener-pool",
    "reactor-pool",
    "reactor-offload",
    "reuseport",
    "prefork",
];

/// The peers: lab name and binary in `benches/peers`.
pub const PEERS: [(&str, &str); 3] = [
    ("tokio-mt", "peer-tokio-mt"),
    ("tokio-ct", "peer-tokio-ct"),
    ("std-threads", "peer-std-threads"),
];

/// How long a server may take to print `listening on`.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of `echo-bench lab`.
#[derive(Args, Debug, Clone)]
pub struct LabArgs {
    /// Models to run: `all` or a comma-separated list (peer names allowed: tokio-mt...).
    #[arg(long, default_value = "all")]
    pub models: String,
    /// Scenarios: `all` or a comma-separated list of pingpong, stream, many, accept,
    /// idle-memory, greedy.
    #[arg(long, default_value = "all")]
    pub scenarios: String,
    /// Smoke test: small counts, short runs, one repetition; finishes in under a minute.
    #[arg(long)]
    pub quick: bool,
    /// Also run the tokio and std peers (built from benches/peers).
    #[arg(long)]
    pub peers: bool,
    /// Output directory for results.json, results.md, the charts and the servers' logs.
    #[arg(long, default_value = "lab-out")]
    pub out: PathBuf,
    /// The echo-server binary (default: build and use target/release/echo-server).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Repetitions of every run (default 3, or 1 with --quick).
    #[arg(long)]
    pub reps: Option<usize>,
    /// Measured window of each run (default 2s, or 300ms with --quick).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Warm-up before each window (default 500ms, or 100ms with --quick).
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// Generator threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// `--workers N` for every server (default: each server's own default).
    #[arg(long)]
    pub workers: Option<usize>,
}

/// Runs the lab; `Ok(true)` when no run counted any error.
pub fn run(args: &LabArgs) -> Result<bool, String> {
    let started = Instant::now();
    // Thousands of sockets on both sides; the servers inherit the raised limit.
    let _ = reactor::process::raise_nofile_limit();
    let timing = Timing {
        quick: args.quick,
        duration: args
            .duration
            .unwrap_or(Duration::from_millis(if args.quick { 300 } else { 2_000 })),
        warmup: args
            .warmup
            .unwrap_or(Duration::from_millis(if args.quick { 100 } else { 500 })),
        threads: args.threads.max(1),
    };
    let reps = args.reps.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    let scenarios = select(&args.scenarios, &scenario::ALL)?;
    let specs = servers(args)?;
    let variants = scenario::variants(&scenarios, timing);
    let logs = args.out.join("logs");
    fs::create_dir_all(&logs).map_err(|e| format!("cannot create {}: {e}", logs.display()))?;
    let mut cells: Vec<Cell> = Vec::new();
    for variant in &variants {
        for (spec, peer) in &specs {
            let model = spec.name.clone();
            cells.push(Cell {
                variant: variant.name,
                model,
                peer: *peer,
                outcomes: Vec::new(),
            });
        }
    }
    let total = variants.len() * reps * specs.len();
    let mut done = 0;
    for (v, variant) in variants.iter().enumerate() {
        for rep in 0..reps {
            for (s, (spec, _)) in specs.iter().enumerate() {
                let outcome = run_one(spec, variant, args.workers, &logs);
                done += 1;
                eprintln!(
                    "[{done}/{total}] {} rep {}/{reps} {}: {}",
                    variant.name,
                    rep + 1,
                    spec.name,
                    brief(&outcome)
                );
                cells[v * specs.len() + s].outcomes.push(outcome);
            }
        }
    }
    let results = LabResults {
        variants: &variants,
        cells: &cells,
        n_models: specs.len(),
        header: header(args, reps, timing, started.elapsed()),
    };
    let markdown = results.write(&args.out)?;
    println!("{markdown}");
    eprintln!(
        "wrote {}/results.md, results.json and charts",
        args.out.display()
    );
    Ok(cells.iter().all(|c| c.errors() == 0))
}

/// One run: fresh server, generator, stop.
fn run_one(spec: &ServerSpec, variant: &Variant, workers: Option<usize>, logs: &Path) -> Outcome {
    let mut extra = Vec::new();
    if variant.template.protocol == Protocol::Lines {
        extra.extend(["--protocol".to_string(), "lines".to_string()]);
    }
    if let Some(n) = workers {
        extra.extend(["--workers".to_string(), n.to_string()]);
    }
    let log = logs.join(format!("{}.log", spec.name));
    let server = match RunningServer::start(spec, &extra, Some(&log), START_TIMEOUT) {
        Ok(server) => server,
        Err(e) => {
            return Outcome {
                report: None,
                failure: Some(e),
            }
        }
    };
    let cfg = RunConfig {
        addr: server.addr,
        server_pid: Some(server.pid),
        ..variant.template.clone()
    };
    let report = load::run(&cfg);
    let stopped = server
        .stop(STOP_TIMEOUT)
        .map_err(|e| format!("{}: {e}", spec.name));
    match report {
        Ok(report) => Outcome {
            report: Some(report),
            failure: stopped.err(),
        },
        Err(e) => Outcome {
            report: None,
            failure: Some(e),
        },
    }
}

/// One line per run on stderr while the lab goes.
fn brief(outcome: &Outcome) -> String {
    let Some(r) = &outcome.report else {
        return format!("FAILED {}", outcome.failure.as_deref().unwrap_or("?"));
    };
    let mut line = match r.config.conns {
        0 => format!("{} idle connections", r.idle_established),
        _ => format!("{:.0} msg/s", r.msgs_per_sec),
    };
    if let Some(l) = r.cheap_latency.or(r.latency) {
        line += &format!(", p99 {:.0} us", l.p99_us);
    }
    if let Some(s) = &r.server {
        if s.cpu_us_per_msg.is_finite() {
            line += &format!(", server {:.2} us/msg", s.cpu_us_per_msg);
        }
        if r.config.idle > 0 {
            line += &format!(", {:.0} B/conn", s.rss_per_conn);
        }
    }
    match (r.errors.total(), &outcome.failure) {
        (0, None) => line + ", ok",
        (n, failure) => {
            let first = r.error_samples.first().or(failure.as_ref());
            format!("{line}, {n} ERRORS {}", first.map_or("", |s| s.as_str()))
        }
    }
}

/// The servers to run, each with whether it is a peer.
fn servers(args: &LabArgs) -> Result<Vec<(ServerSpec, bool)>, String> {
    let peer_names: Vec<&str> = PEERS.iter().map(|p| p.0).collect();
    let known: Vec<&str> = MODELS.iter().chain(&peer_names).copied().collect();
    let mut names = match args.models.as_str() {
        "all" => MODELS.iter().map(|m| m.to_string()).collect(),
        list => select(list, &known)?,
    };
    if args.peers {
        for peer in &peer_names {
            if !names.iter().any(|n| n == peer) {
                names.push(peer.to_string());
            }
        }
    }
    let root = workspace_root();
    let wants_models = names.iter().any(|n| MODELS.contains(&n.as_str()));
    let echo_server = match (&args.server_bin, wants_models) {
        (Some(path), _) => path.clone(),
        (None, true) => build_echo_server(&root)?,
        (None, false) => PathBuf::new(),
    };
    let wants_peers = names.iter().any(|n| peer_names.contains(&n.as_str()));
    let peers_dir = if wants_peers {
        build_peers(&root)?
    } else {
        PathBuf::new()
    };
    Ok(names
        .into_iter()
        .map(|name| match PEERS.iter().find(|p| p.0 == name) {
            Some((_, bin)) => (
                ServerSpec {
                    name,
                    program: peers_dir.join(bin),
                    args: vec![],
                },
                true,
            ),
            None => {
                let args = vec!["--model".to_string(), name.clone()];
                (
                    ServerSpec {
                        name,
                        program: echo_server.clone(),
                        args,
                    },
                    false,
                )
            }
        })
        .collect())
}

/// `all` or a comma-separated subset of `known`, in the order given.
fn select(list: &str, known: &[&str]) -> Result<Vec<String>, String> {
    if list == "all" {
        return Ok(known.iter().map(|s| s.to_string()).collect());
    }
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|name| match known.contains(&name) {
            true => Ok(name.to_string()),
            false => Err(format!(
                "unknown name {name:?}; known: all, {}",
                known.join(", ")
            )),
        })
        .collect()
}

/// The repository root: this crate lives in `benches/echo-bench`.
fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    here.canonicalize().unwrap_or(here)
}

/// Where cargo puts its output for a manifest under `default`: `CARGO_TARGET_DIR` wins.
fn target_dir(default: PathBuf) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or(default, PathBuf::from)
}

/// Builds `echo-server` in release mode (a no-op when up to date) and returns its path. A lab
/// run against a stale binary would measure yesterday's code, so it is always rebuilt; if cargo
/// is missing but a binary exists, that binary is used with a warning.
fn build_echo_server(root: &Path) -> Result<PathBuf, String> {
    let bin = target_dir(root.join("target")).join("release/echo-server");
    let args = ["build", "--release", "--bin", "echo-server"];
    cargo(root, &args, &bin)?;
    Ok(bin)
}

/// Builds the peers workspace and returns the directory of its binaries.
fn build_peers(root: &Path) -> Result<PathBuf, String> {
    let manifest = root.join("benches/peers/Cargo.toml");
    let dir = target_dir(root.join("benches/peers/target")).join("release");
    let manifest = manifest.to_string_lossy().into_owned();
    cargo(
        root,
        &["build", "--release", "--manifest-path", &manifest],
        &dir.join(PEERS[0].1),
    )?;
    Ok(dir)
}

fn cargo(root: &Path, args: &[&str], product: &Path) -> Result<(), String> {
    eprintln!("cargo {}", args.join(" "));
    let status = Command::new("cargo").args(args).current_dir(root).status();
    match status {
        Ok(s) if s.success() => Ok(()),
        _ if product.exists() => {
            log::warn!(
                "cargo {} failed; using the existing {}",
                args.join(" "),
                product.display()
            );
            Ok(())
        }
        Ok(s) => Err(format!("cargo {} failed: {s}", args.join(" "))),
        Err(e) => Err(format!("cannot run cargo: {e}")),
    }
}

/// The context printed at the top of results.md and results.json.
fn header(args: &LabArgs, reps: usize, timing: Timing, took: Duration) -> Vec<(String, String)> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let command: Vec<String> = std::env::args().collect();
    vec![
        ("command".into(), format!("`{}`", command.join(" "))),
        ("machine".into(), format!("{cores} cores, Linux {}", kernel.trim())),
        ("finished (unix time)".into(), unix.to_string()),
        ("lab took".into(), format!("{:.0} s", took.as_secs_f64())),
        (
            "runs".into(),
            format!(
                "{reps} per model and scenario, models interleaved; window {:?} after {:?} warm-up; \
                 {} generator thread(s); a fresh server per run",
                timing.duration, timing.warmup, timing.threads
            ),
        ),
        ("workers".into(), args.workers.map_or("each server's default".into(), |n| n.to_string())),
    ]
}
