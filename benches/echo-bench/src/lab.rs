//! `echo-bench lab`: every scenario against every model, interleaved, repeated, summarised.
//!
//! For each scenario, for each repetition, for each model, in that order: start a fresh server
//! on a free port, run the generator against it (in this process), stop the server. Running the
//! models in turn inside each repetition (A B C, A B C, A B C) rather than one after the other
//! (A A A, B B B, C C C) spreads slow drifts of the machine (thermal throttling, a neighbour's
//! build, the page cache) over all models instead of charging them to whichever ran last.
//!
//! The models come from a table ([`crate::models`]): `echo-server` models, variants of them
//! with other flags, and the peers of `benches/peers` (tokio multi-thread, tokio
//! current-thread, std threads), which speak the lines protocol too and take part in every
//! scenario. Entries the server does not offer yet are skipped with a note.
//!
//! Pinning is the lab's choice, not the models': without `--server-cpus` and
//! `--generator-cpus` nothing is pinned by the lab (rawloop models that pin their own workers
//! do so, on cores 0..N). With them, the generator's threads and each server run on their own
//! CPUs ([`crate::pin`]), rawloop servers get `--no-pin` so that one rule places every model
//! and peer, and the server's affinity is read back from `/proc` after every run. On a
//! two-core machine an unpinned lab mostly measures the scheduler; the figure that stays fair
//! whatever the scheduler does is CPU time per message, which every table shows.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use clap::Args;

use crate::kernel_lab;
use crate::load::{self, parse_duration, RunConfig};
use crate::models::{self, Entry, Server, ServerHelp, Skipped};
use crate::pin::{self, CpuList};
use crate::procfs;
use crate::results::{Header, LabFile, ModelRecord, RunRecord, ScenarioRecord};
use crate::scenario::{self, Timing, Variant};
use crate::server::{final_syscalls_per_msg, RunningServer, ServerSpec};
use crate::verify::Protocol;

/// A server the lab will run, and the table entry it comes from.
type Planned = (ServerSpec, &'static Entry);

/// How long a server may take to print `listening on`.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of `echo-bench lab`.
#[derive(Args, Debug, Clone)]
pub struct LabArgs {
    /// Models to run, comma-separated: `all` (every model echo-server offers), `variants`
    /// (models with other flags, e.g. reactor-pool-oneshot), `peers`, or lab names
    /// (event-loop, tokio-mt...). `all,variants` runs both.
    #[arg(long, default_value = "all")]
    pub models: String,
    /// Scenarios: `all` or a comma-separated list of pingpong, stream, many, accept,
    /// idle-memory, greedy; and the kernel lab's backlog, synflood, fairness (`kernel`: the
    /// three; backlog and synflood need root and run in a private network namespace).
    #[arg(long, default_value = "all")]
    pub scenarios: String,
    /// Smoke test: small counts, short runs, one repetition; finishes in about a minute.
    #[arg(long)]
    pub quick: bool,
    /// Also run the tokio and std peers (built from benches/peers); same as adding `peers`
    /// to --models.
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
    /// Run every server on these CPUs (kernel list format: 0, 0,2, 0-1), set before exec and
    /// inherited by all its threads; rawloop servers then get --no-pin.
    #[arg(long, value_name = "LIST")]
    pub server_cpus: Option<CpuList>,
    /// Run the generator's threads on these CPUs.
    #[arg(long, value_name = "LIST")]
    pub generator_cpus: Option<CpuList>,
    /// Pass --syscall-stats to rawloop servers and report syscalls per message from their
    /// final stats line (counting costs them a little, so it is off by default).
    #[arg(long)]
    pub syscall_stats: bool,
    /// Run nothing: read OUT/results.json and write OUT/results.md and the charts again.
    #[arg(long)]
    pub replot: bool,
}

/// Runs the lab; `Ok(true)` when no run counted any error.
pub fn run(args: &LabArgs) -> Result<bool, String> {
    if args.replot {
        return replot(&args.out);
    }
    // Thousands of sockets on both sides; the servers inherit the raised limit.
    let _ = reactor::process::raise_nofile_limit();
    let (classic, kernel) = select_scenarios(&args.scenarios)?;
    let mut ok = true;
    if !classic.is_empty() {
        ok &= run_models(args, &classic)?;
    }
    if !kernel.is_empty() {
        let echo_server = match &args.server_bin {
            Some(path) => path.clone(),
            None => models::build_echo_server(&models::workspace_root())?,
        };
        ok &= kernel_lab::run(args, &kernel, &echo_server)?;
    }
    Ok(ok)
}

/// `--scenarios`: the model scenarios ([`scenario::ALL`], `all` for every one) and the kernel
/// lab's ([`kernel_lab::SCENARIOS`], `kernel` for the three), each list in the lab's order.
fn select_scenarios(list: &str) -> Result<(Vec<String>, Vec<String>), String> {
    let known: Vec<&str> = scenario::ALL
        .iter()
        .chain(kernel_lab::SCENARIOS.iter())
        .copied()
        .collect();
    let expanded: Vec<String> = list
        .split(',')
        .map(|word| match word.trim() {
            "kernel" => kernel_lab::SCENARIOS.join(","),
            "all" => scenario::ALL.join(","),
            other => other.to_string(),
        })
        .collect();
    let chosen = select(&expanded.join(","), &known)?;
    let pick = |names: &[&str]| -> Vec<String> {
        names
            .iter()
            .filter(|n| chosen.iter().any(|c| c == *n))
            .map(|n| n.to_string())
            .collect()
    };
    Ok((pick(&scenario::ALL), pick(&kernel_lab::SCENARIOS)))
}

/// The model scenarios: every selected model in every selected scenario.
fn run_models(args: &LabArgs, scenarios: &[String]) -> Result<bool, String> {
    let started = Instant::now();
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
    let server_mask = server_mask(args)?;
    let (planned, skipped) = plan(args, server_mask)?;
    for s in &skipped {
        eprintln!("skipped {}: {}", s.name, s.reason);
    }
    // After the builds, which deserve every core: from here on this thread and every
    // generator thread it starts run on the generator's CPUs.
    if let Some(cpus) = &args.generator_cpus {
        pin::pin_current_thread(cpus).map_err(|e| format!("--generator-cpus: {e}"))?;
    }
    let variants = scenario::variants(scenarios, timing);
    let logs = args.out.join("logs");
    fs::create_dir_all(&logs).map_err(|e| format!("cannot create {}: {e}", logs.display()))?;
    let mut file = LabFile {
        lab: Header::default(),
        skipped,
        scenarios: variants.iter().map(|v| record(v, &planned)).collect(),
    };
    let total = variants.len() * reps * planned.len();
    let mut done = 0;
    for (v, variant) in variants.iter().enumerate() {
        for rep in 0..reps {
            for (m, (spec, _)) in planned.iter().enumerate() {
                let run = run_one(spec, variant, args.workers, &logs);
                done += 1;
                eprintln!(
                    "[{done}/{total}] {} rep {}/{reps} {}: {}",
                    variant.name,
                    rep + 1,
                    spec.name,
                    brief(&run)
                );
                file.scenarios[v].models[m].runs.push(run);
            }
        }
    }
    file.lab = header(args, reps, Some(timing), started.elapsed());
    let markdown = file.write(&args.out)?;
    println!("{markdown}");
    eprintln!(
        "wrote {}/results.md, results.json and charts",
        args.out.display()
    );
    Ok(all_ok(&file))
}

/// `--replot`: the Markdown and the charts again from `dir/results.json` and
/// `dir/kernel.json`, whichever exist.
fn replot(dir: &Path) -> Result<bool, String> {
    let kernel = kernel_lab::replot(dir)?;
    let results = dir.join("results.json");
    if kernel.is_some() && !results.exists() {
        return Ok(kernel == Some(true));
    }
    let file = LabFile::read(&results)?;
    let markdown = file.render(dir)?;
    println!("{markdown}");
    eprintln!("wrote {}/results.md and charts", dir.display());
    Ok(all_ok(&file) && kernel != Some(false))
}

fn all_ok(file: &LabFile) -> bool {
    file.scenarios
        .iter()
        .flat_map(|s| &s.models)
        .all(|m| m.runs.iter().all(|r| r.errors() == 0))
}

/// An empty record of a scenario variant, a model per planned server.
fn record(variant: &Variant, planned: &[Planned]) -> ScenarioRecord {
    ScenarioRecord {
        name: variant.name.to_string(),
        about: variant.about.to_string(),
        models: planned
            .iter()
            .map(|(spec, entry)| ModelRecord {
                model: spec.name.clone(),
                group: entry.group,
                peer: entry.group == models::Group::Peer,
                ..ModelRecord::default()
            })
            .collect(),
    }
}

/// One run: fresh server, generator, affinity read back, stop.
fn run_one(spec: &ServerSpec, variant: &Variant, workers: Option<usize>, logs: &Path) -> RunRecord {
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
        Err(e) => return RunRecord::new(None, Some(e)),
    };
    let cfg = RunConfig {
        addr: server.addr,
        server_pid: Some(server.pid),
        ..variant.template.clone()
    };
    let report = load::run(&cfg);
    // After the load, when every thread and child the server starts exists.
    let seen = procfs::tree_cpus_allowed(server.pid)
        .ok()
        .and_then(CpuList::from_set);
    let strayed = match (&spec.cpus, &seen) {
        (Some(wanted), Some(seen)) if !wanted.contains_all(seen) => Some(format!(
            "{}: threads allowed on CPUs {seen}, outside --server-cpus {wanted}",
            spec.name
        )),
        _ => None,
    };
    let (lines, stop_failure) = match server.stop(STOP_TIMEOUT) {
        Ok(lines) => (lines, None),
        Err(e) => (Vec::new(), Some(format!("{}: {e}", spec.name))),
    };
    let mut run = match report {
        Ok(report) => RunRecord::new(Some(report), strayed.or(stop_failure)),
        Err(e) => RunRecord::new(None, Some(e)),
    };
    run.server_cpus = seen;
    run.syscalls_per_msg = final_syscalls_per_msg(&lines);
    run
}

/// One line per run on stderr while the lab goes.
fn brief(run: &RunRecord) -> String {
    let Some(r) = &run.report else {
        return format!("FAILED {}", run.failure.as_deref().unwrap_or("?"));
    };
    let mut line = match r.config.conns {
        0 => format!("{} idle connections", r.idle_established),
        _ => format!("{:.0} msg/s", r.msgs_per_sec),
    };
    if let Some(l) = r.cheap_latency.or(r.latency) {
        line += &format!(", p99 {:.0} µs", l.p99_us);
    }
    if let Some(s) = &r.server {
        if s.cpu_us_per_msg.is_finite() {
            line += &format!(
                ", server {:.2} µs/msg, {:.3} switches/msg",
                s.cpu_us_per_msg, s.switches_per_msg
            );
        }
        if r.config.idle > 0 {
            line += &format!(", {:.0} B/conn (PSS)", s.pss_per_conn);
        }
    }
    if let Some(syscalls) = run.syscalls_per_msg.last() {
        line += &format!(", syscalls/msg {syscalls}");
    }
    for note in &r.notes {
        line += &format!(" (note: {note})");
    }
    match (r.errors.total(), &run.failure) {
        (0, None) => line + ", ok",
        (n, failure) => {
            let first = r.error_samples.first().or(failure.as_ref());
            format!("{line}, {n} ERRORS {}", first.map_or("", |s| s.as_str()))
        }
    }
}

/// The CPUs the servers get: `--server-cpus`, or with only `--generator-cpus` the lab's own
/// mask from before it pins itself (else the servers, spawned from the pinned thread, would
/// inherit the generator's CPUs). Both lists must be CPUs this process may use (its own mask,
/// from taskset or a cpuset).
pub(crate) fn server_mask(args: &LabArgs) -> Result<Option<CpuList>, String> {
    let own = pin::current_thread_cpus().map_err(|e| format!("sched_getaffinity: {e}"))?;
    for (flag, list) in [
        ("--server-cpus", &args.server_cpus),
        ("--generator-cpus", &args.generator_cpus),
    ] {
        if let Some(list) = list.as_ref().filter(|list| !own.contains_all(list)) {
            return Err(format!(
                "{flag} {list}: this process may only use CPUs {own}"
            ));
        }
    }
    Ok(match (&args.server_cpus, &args.generator_cpus) {
        (Some(server), _) => Some(server.clone()),
        (None, Some(_)) => Some(own),
        (None, None) => None,
    })
}

/// The servers to run, in table order, and the entries skipped. Builds what is needed.
fn plan(
    args: &LabArgs,
    server_mask: Option<CpuList>,
) -> Result<(Vec<Planned>, Vec<Skipped>), String> {
    let entries = models::named(models::TABLE, &args.models, args.peers)?;
    let root = models::workspace_root();
    let rawloop = |e: &&Entry| matches!(e.server, Server::Rawloop { .. });
    let (echo_server, help) = match (&args.server_bin, entries.iter().any(rawloop)) {
        (_, false) => (PathBuf::new(), ServerHelp::default()),
        (Some(path), true) => (path.clone(), ServerHelp::of(path)?),
        (None, true) => {
            let path = models::build_echo_server(&root)?;
            let help = ServerHelp::of(&path)?;
            (path, help)
        }
    };
    let mut skipped = Vec::new();
    let mut runnable = Vec::new();
    for entry in entries {
        match help.missing(&entry.server) {
            Some(reason) => skipped.push(Skipped {
                name: entry.name.to_string(),
                reason,
            }),
            None => runnable.push(entry),
        }
    }
    let peers = runnable
        .iter()
        .any(|e| matches!(e.server, Server::Peer { .. }));
    let peers_dir = if peers {
        models::build_peers(&root)?
    } else {
        PathBuf::new()
    };
    if runnable.is_empty() {
        return Err(format!(
            "nothing to run: --models {} selects no available model",
            args.models
        ));
    }
    Ok((
        runnable
            .into_iter()
            .map(|entry| {
                let mut spec = spec(entry, &echo_server, &peers_dir, &help, args);
                spec.cpus = server_mask.clone();
                (spec, entry)
            })
            .collect(),
        skipped,
    ))
}

/// How to start `entry`'s server under the lab's options (its CPUs are the caller's to set).
pub(crate) fn spec(
    entry: &Entry,
    echo_server: &Path,
    peers_dir: &Path,
    help: &ServerHelp,
    args: &LabArgs,
) -> ServerSpec {
    let (program, server_args) = match entry.server {
        Server::Rawloop { model, args: extra } => {
            let mut server_args = vec!["--model".to_string(), model.to_string()];
            server_args.extend(extra.iter().map(|a| a.to_string()));
            // With a CPU list the lab places the server; echo-server's own pinning would add
            // a second rule (worker i on the i-th CPU) that the peers do not have.
            if args.server_cpus.is_some() && help.has("--no-pin") {
                server_args.push("--no-pin".into());
            }
            if args.syscall_stats && help.has("--syscall-stats") {
                server_args.push("--syscall-stats".into());
            }
            (echo_server.to_path_buf(), server_args)
        }
        Server::Peer { bin } => (peers_dir.join(bin), Vec::new()),
    };
    ServerSpec {
        name: entry.name.to_string(),
        program,
        args: server_args,
        cpus: None,
    }
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
                "unknown name {name:?}; known: all, kernel, {}",
                known.join(", ")
            )),
        })
        .collect()
}

/// The conditions of the lab, for results.md, results.json and every chart; `timing` is the
/// model scenarios' (the kernel lab has its own settings, which its page states).
pub(crate) fn header(
    args: &LabArgs,
    reps: usize,
    timing: Option<Timing>,
    took: Duration,
) -> Header {
    // Every online CPU of the machine, not the lab's own mask (narrower once pinned).
    let cores = fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|list| list.trim().parse::<CpuList>().ok())
        .map_or_else(
            || std::thread::available_parallelism().map_or(0, |n| n.get()),
            |l| l.len(),
        );
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let finished_unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let command: Vec<String> = std::env::args().collect();
    Header {
        command: format!("`{}`", command.join(" ")),
        machine: format!("{cores} cores, Linux {}", kernel.trim()),
        finished_unix,
        took_s: took.as_secs_f64(),
        quick: args.quick,
        reps,
        window_s: timing.map_or(0.0, |t| t.duration.as_secs_f64()),
        warmup_s: timing.map_or(0.0, |t| t.warmup.as_secs_f64()),
        generator_threads: timing.map_or(0, |t| t.threads),
        server_workers: args.workers,
        server_cpus: args.server_cpus.clone(),
        generator_cpus: args.generator_cpus.clone(),
        syscall_stats: args.syscall_stats,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_split_into_the_model_lab_and_the_kernel_lab() {
        let (classic, kernel) = select_scenarios("all").unwrap();
        assert_eq!(classic.len(), scenario::ALL.len());
        assert!(kernel.is_empty());
        let (classic, kernel) = select_scenarios("synflood, pingpong,backlog").unwrap();
        assert_eq!(classic, ["pingpong"]);
        // In the lab's order, whatever the order given.
        assert_eq!(kernel, ["backlog", "synflood"]);
        let (classic, kernel) = select_scenarios("kernel").unwrap();
        assert!(classic.is_empty() && kernel.len() == 3);
        let err = select_scenarios("smallx").unwrap_err();
        assert!(
            err.contains("\"smallx\"") && err.contains("kernel"),
            "{err}"
        );
    }
}
