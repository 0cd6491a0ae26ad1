//! The kernel lab: `echo-bench lab --scenarios backlog,synflood,fairness`.
//!
//! - `backlog` and `synflood` run `echo-bench kernel ...` (this very binary) once per setting,
//!   each in a network namespace of its own ([`crate::kernel`]), and read its JSON. A setting
//!   is one process and one namespace, so no run sees another's counters, half-open requests
//!   or sysctls. When the first run says it cannot work here (not root), the scenario is
//!   skipped with that reason and the rest of the lab goes on.
//! - `fairness` runs in the lab's own namespace, like the other scenarios: the models of
//!   [`fairness::MODELS`] that `echo-server --help` offers, interleaved, repeated.
//!
//! Everything lands in `OUT/kernel.json` (serde), `OUT/kernel.md` and the charts
//! `backlog-*.svg`, `synflood-*.svg`, `fairness-*.svg` ([`crate::kernel_charts`]);
//! `lab --replot` draws them again from `kernel.json`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::fairness::{self, FairnessRun, Load};
use crate::lab::{self, LabArgs};
use crate::models::{self, Entry, Group, ServerHelp, Skipped};
use crate::netns::EXIT_SKIPPED;
use crate::pin::{self, CpuList};
use crate::queues::{BacklogRun, SynfloodRun};
use crate::results::Header;
use crate::server::{RunningServer, ServerSpec};
use crate::{kernel_charts, kernel_md, sys};

/// The kernel lab's scenarios, in the order they run.
pub const SCENARIOS: [&str; 3] = ["backlog", "synflood", "fairness"];

/// `kernel.json`: how the lab ran, and every run of the three scenarios.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct KernelFile {
    /// The lab's conditions.
    pub lab: Header,
    /// Scenarios and models that did not run, and why.
    pub skipped: Vec<Skipped>,
    /// Runs that failed, with the reason.
    pub failures: Vec<String>,
    /// One per backlog and `tcp_abort_on_overflow` setting.
    pub backlog: Vec<BacklogRun>,
    /// One per `tcp_syncookies` setting.
    pub synflood: Vec<SynfloodRun>,
    /// The fairness load.
    pub fairness_load: Option<Load>,
    /// One per model.
    pub fairness: Vec<FairnessRecord>,
}

/// Every fairness run of one model.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FairnessRecord {
    /// Its lab name.
    pub model: String,
    /// Model or variant, for the charts' colours.
    pub group: Group,
    /// One per repetition.
    pub runs: Vec<FairnessRun>,
}

/// The settings of each scenario, full or `--quick`.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Backlogs tried, each with `tcp_abort_on_overflow` 0 and 1.
    pub backlogs: Vec<u32>,
    /// Clients in each burst.
    pub burst: usize,
    /// How long the server stays stopped.
    pub hold: Duration,
    /// How long a burst client may take.
    pub burst_deadline: Duration,
    /// `tcp_syncookies` values tried.
    pub syncookies: Vec<u8>,
    /// `kernel synflood` arguments besides `--syncookies`.
    pub flood_args: Vec<String>,
    /// The fairness load.
    pub load: Load,
    /// Fairness repetitions.
    pub reps: usize,
}

impl Settings {
    /// Quick (a smoke test of about a minute) or full; `duration` overrides the fairness
    /// runs' length (`lab --duration`).
    pub fn new(
        quick: bool,
        workers: Option<usize>,
        reps: Option<usize>,
        duration: Option<Duration>,
    ) -> Settings {
        let (burst, hold, deadline) = match quick {
            true => (256, 1_500, 8_000),
            false => (2_048, 2_500, 12_000),
        };
        let (rate, flood_s, clients, flood_deadline) = match quick {
            true => (2_000, 2, 10, 3),
            false => (5_000, 5, 25, 5),
        };
        let flood_args = [
            "--backlog".to_string(),
            "128".into(),
            "--rate".into(),
            rate.to_string(),
            "--packets".into(),
            (rate * flood_s).to_string(),
            "--duration".into(),
            format!("{flood_s}s"),
            "--clients".into(),
            clients.to_string(),
            "--deadline".into(),
            format!("{flood_deadline}s"),
        ];
        let workers = workers.unwrap_or(4);
        Settings {
            backlogs: vec![16, 128, 1024, 4096],
            burst,
            hold: Duration::from_millis(hold),
            burst_deadline: Duration::from_millis(deadline),
            syncookies: vec![0, 1, 2],
            flood_args: flood_args.to_vec(),
            load: fairness_load(workers, quick, duration),
            reps: reps.unwrap_or(if quick { 1 } else { 3 }).max(1),
        }
    }
}

/// The fairness load: a moderate one. Half as many clients as workers, each pausing 1 ms
/// between two connections of 2 ms of work, keep the server busy without saturating it, so
/// that which worker a connection lands on decides whether it waits: with every worker always
/// busy (no pause, more clients than workers) every model spreads the work evenly and only
/// the scheduler's queueing shows.
fn fairness_load(workers: usize, quick: bool, duration: Option<Duration>) -> Load {
    let default = Duration::from_secs(if quick { 2 } else { 5 });
    Load {
        workers,
        clients: (workers / 2).max(1),
        work_us: 2_000,
        pause_us: 1_000,
        duration_s: duration.unwrap_or(default).as_secs_f64(),
    }
}

/// Runs the kernel scenarios of `selected`; `Ok(true)` when every run that ran succeeded.
pub fn run(args: &LabArgs, selected: &[String], echo_server: &Path) -> Result<bool, String> {
    check(args, echo_server)?;
    let started = Instant::now();
    let settings = Settings::new(args.quick, args.workers, args.reps, args.duration);
    let me = std::env::current_exe().map_err(|e| format!("cannot find echo-bench itself: {e}"))?;
    let mut file = KernelFile::default();
    let wants = |name: &str| selected.iter().any(|s| s == name);
    if wants("backlog") {
        run_backlog(&me, echo_server, &settings, &mut file);
    }
    if wants("synflood") {
        run_synflood(&me, echo_server, &settings, &mut file);
    }
    if wants("fairness") {
        run_fairness(args, echo_server, &settings, &mut file)?;
    }
    file.lab = lab::header(args, settings.reps, None, started.elapsed());
    write(&mut file, &args.out)?;
    Ok(file.failures.is_empty()
        && file
            .fairness
            .iter()
            .all(|f| f.runs.iter().all(|r| r.errors == 0)))
}

/// The lab options the kernel scenarios use, checked before anything runs.
fn check(args: &LabArgs, echo_server: &Path) -> Result<(), String> {
    if let Some(n) = args.workers.filter(|n| !(1..=64).contains(n)) {
        return Err(format!(
            "--workers {n}: the fairness scenario takes 1-64 workers"
        ));
    }
    if let Some(n) = args.reps.filter(|n| !(1..=20).contains(n)) {
        return Err(format!("--reps {n}: must be 1-20"));
    }
    let bounds = Duration::from_millis(100)..=Duration::from_secs(60);
    if let Some(d) = args.duration.filter(|d| !bounds.contains(d)) {
        return Err(format!(
            "--duration {d:?}: the fairness runs take 100ms-60s"
        ));
    }
    if !echo_server.is_file() {
        return Err(format!("{}: no such echo-server", echo_server.display()));
    }
    Ok(())
}

/// `lab --replot`: kernel.md and the charts again from `dir/kernel.json`, when it exists.
pub fn replot(dir: &Path) -> Result<Option<bool>, String> {
    let path = dir.join("kernel.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: KernelFile =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    render(&file, dir)?;
    Ok(Some(file.failures.is_empty()))
}

fn write(file: &mut KernelFile, dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let json = serde_json::to_string(file).map_err(|e| e.to_string())? + "\n";
    let path = dir.join("kernel.json");
    fs::write(&path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    render(file, dir)
}

fn render(file: &KernelFile, dir: &Path) -> Result<(), String> {
    let markdown = kernel_md::page(file);
    let path = dir.join("kernel.md");
    fs::write(&path, &markdown).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    kernel_charts::draw_all(file, dir)?;
    println!("{markdown}");
    eprintln!("wrote {}/kernel.md, kernel.json and charts", dir.display());
    Ok(())
}

fn run_backlog(me: &Path, echo_server: &Path, s: &Settings, file: &mut KernelFile) {
    'all: for &backlog in &s.backlogs {
        for abort in [0, 1] {
            let args = [
                "backlog".to_string(),
                "--backlog".into(),
                backlog.to_string(),
                "--burst".into(),
                s.burst.to_string(),
                "--hold".into(),
                format!("{}ms", s.hold.as_millis()),
                "--deadline".into(),
                format!("{}ms", s.burst_deadline.as_millis()),
                "--abort-on-overflow".into(),
                abort.to_string(),
            ];
            let label = format!("backlog {backlog}, tcp_abort_on_overflow {abort}");
            match inside(me, echo_server, &args) {
                Ok(json) => match serde_json::from_str(&json) {
                    Ok(run) => file.backlog.push(run),
                    Err(e) => file
                        .failures
                        .push(format!("{label}: unreadable result: {e}")),
                },
                Err(Inside::Skipped(why)) => {
                    file.skipped.push(Skipped {
                        name: "backlog".into(),
                        reason: why,
                    });
                    break 'all;
                }
                Err(Inside::Failed(why)) => file.failures.push(format!("{label}: {why}")),
            }
        }
    }
}

fn run_synflood(me: &Path, echo_server: &Path, s: &Settings, file: &mut KernelFile) {
    for &mode in &s.syncookies {
        let mut args = vec![
            "synflood".to_string(),
            "--syncookies".into(),
            mode.to_string(),
        ];
        args.extend(s.flood_args.iter().cloned());
        let label = format!("synflood, tcp_syncookies {mode}");
        match inside(me, echo_server, &args) {
            Ok(json) => match serde_json::from_str(&json) {
                Ok(run) => file.synflood.push(run),
                Err(e) => file
                    .failures
                    .push(format!("{label}: unreadable result: {e}")),
            },
            Err(Inside::Skipped(why)) => {
                file.skipped.push(Skipped {
                    name: "synflood".into(),
                    reason: why,
                });
                return;
            }
            Err(Inside::Failed(why)) => file.failures.push(format!("{label}: {why}")),
        }
    }
}

/// Why `echo-bench kernel` gave no result.
enum Inside {
    Skipped(String),
    Failed(String),
}

/// Runs `echo-bench kernel ARGS --json` (tied to this thread: it dies with the lab) and
/// returns its stdout.
fn inside(me: &Path, echo_server: &Path, args: &[String]) -> Result<String, Inside> {
    eprintln!("echo-bench kernel {}", args.join(" "));
    let mut command = Command::new(me);
    command
        .arg("kernel")
        .args(args)
        .arg("--json")
        .arg("--server-bin")
        .arg(echo_server)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    sys::kill_with_parent(&mut command);
    let out = command
        .output()
        .map_err(|e| Inside::Failed(format!("cannot run {}: {e}", me.display())))?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    match out.status.code() {
        Some(0) => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Some(code) if code == i32::from(EXIT_SKIPPED) => {
            let why = stderr.trim_start_matches("skipped: ").to_string();
            eprintln!("skipped: {why}");
            Err(Inside::Skipped(why))
        }
        _ => Err(Inside::Failed(format!("{}: {stderr}", out.status))),
    }
}

fn run_fairness(
    args: &LabArgs,
    echo_server: &Path,
    s: &Settings,
    file: &mut KernelFile,
) -> Result<(), String> {
    let help = ServerHelp::of(echo_server)?;
    let mut entries: Vec<&'static Entry> = Vec::new();
    for entry in models::named(models::TABLE, &fairness::MODELS.join(","), false)? {
        match help.missing(&entry.server) {
            Some(reason) => file.skipped.push(Skipped {
                name: entry.name.into(),
                reason,
            }),
            None => entries.push(entry),
        }
    }
    let server_cpus = lab::server_mask(args)?;
    if let Some(cpus) = &args.generator_cpus {
        pin::pin_current_thread(cpus).map_err(|e| format!("--generator-cpus: {e}"))?;
    }
    file.fairness = entries
        .iter()
        .map(|e| FairnessRecord {
            model: e.name.into(),
            group: e.group,
            runs: Vec::new(),
        })
        .collect();
    for rep in 0..s.reps {
        for (m, entry) in entries.iter().enumerate() {
            let spec = lab::spec(entry, echo_server, &PathBuf::new(), &help, args);
            let run = fairness_once(spec, server_cpus.clone(), s, &args.out);
            eprintln!(
                "fairness rep {}/{} {}: Jain conns {}, jobs {}, latency avg {:.1} ms max {:.1} ms, {} errors",
                rep + 1,
                s.reps,
                entry.name,
                run.jain_conns.map_or("-".into(), |j| format!("{j:.3}")),
                run.jain_jobs.map_or("-".into(), |j| format!("{j:.3}")),
                run.latency.avg_ms,
                run.latency.max_ms,
                run.errors
            );
            file.fairness[m].runs.push(run);
        }
    }
    file.fairness_load = Some(s.load.clone());
    Ok(())
}

/// One fairness run: a fresh server, the clients, the server's final stats lines.
fn fairness_once(
    mut spec: ServerSpec,
    cpus: Option<CpuList>,
    s: &Settings,
    out: &Path,
) -> FairnessRun {
    spec.cpus = cpus;
    let extra = [
        "--workers".to_string(),
        s.load.workers.to_string(),
        "--protocol".into(),
        "lines".into(),
    ];
    let logs = out.join("logs");
    let _ = fs::create_dir_all(&logs);
    let log = logs.join(format!("fairness-{}.log", spec.name));
    let failed = |why: String| FairnessRun {
        errors: 1,
        error_samples: vec![why],
        ..FairnessRun::default()
    };
    let server = match RunningServer::start(&spec, &extra, Some(&log), Duration::from_secs(10)) {
        Ok(server) => server,
        Err(e) => return failed(e),
    };
    let driven = fairness::drive(server.addr, &s.load);
    match server.stop(Duration::from_secs(10)) {
        Ok(lines) => fairness::summarise(fairness::shares_from_stats(&lines), driven),
        Err(e) => failed(format!("{}: {e}", spec.name)),
    }
}
