//! `kernel.md`: the kernel lab's page for a person, a table per scenario, drawn from a
//! [`KernelFile`] alone (so `lab --replot` can write it again).
//!
//! Each table leads with the figure that answers its scenario's question: for `backlog`, how
//! deep the accept queue got and how many SYNs overflowed it; for `synflood`, how many
//! legitimate clients got in; for `fairness`, how evenly the workers shared the connections
//! (Jain's index) and what that did to latency.

use std::fmt::Write as _;

use crate::clients::{self, ClientRecord, Outcome};
use crate::fairness::FairnessRun;
use crate::histo::{median, min_max};
use crate::kernel_lab::{FairnessRecord, KernelFile};
use crate::markdown::conditions;
use crate::netstat::Counter;
use crate::results::LabFile;

/// The whole page.
pub fn page(file: &KernelFile) -> String {
    let mut md = String::from("# echo-bench kernel lab\n\n");
    for line in conditions_of(file) {
        let _ = writeln!(md, "- {line}");
    }
    if !file.lab.command.is_empty() {
        let _ = writeln!(md, "- command: {}", file.lab.command);
    }
    for s in &file.skipped {
        let _ = writeln!(md, "- skipped: `{}`: {}", s.name, s.reason);
    }
    for f in &file.failures {
        let _ = writeln!(md, "- FAILED: {f}");
    }
    if !file.backlog.is_empty() {
        backlog(&mut md, file);
    }
    if !file.synflood.is_empty() {
        synflood(&mut md, file);
    }
    if !file.fairness.is_empty() {
        fairness(&mut md, file);
    }
    md
}

/// The two lines of conditions under every chart's title.
pub fn conditions_of(file: &KernelFile) -> [String; 2] {
    let lab = LabFile {
        lab: file.lab.clone(),
        ..LabFile::default()
    };
    conditions(&lab)
}

fn backlog(md: &mut String, file: &KernelFile) {
    let first = &file.backlog[0];
    let _ = writeln!(
        md,
        "\n## backlog\n\nThe server (`echo-server --model event-loop`) is stopped with SIGSTOP, a \
         burst of {} clients connects, and SIGCONT lets it go {:.1} s later. Each client sends \
         one line and waits for its echo, for at most {:.0} s. sysctls: {}.\n",
        first.config.burst,
        first.config.hold_s,
        first.config.deadline_s,
        sysctls(&first.sysctls)
    );
    md.push_str(
        "| backlog | abort_on_overflow | peak accept queue | echoed | reset | timed out | \
         ListenOverflows | ListenDrops | connect p50 | connect max |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for run in &file.backlog {
        let peak = run.samples.iter().map(|s| s.queues.accept_queue).max();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            run.config.backlog,
            u8::from(run.config.abort_on_overflow),
            peak.unwrap_or(0),
            clients::count(&run.clients, Outcome::Echoed),
            clients::count(&run.clients, Outcome::Reset),
            clients::count(&run.clients, Outcome::TimedOut)
                + clients::count(&run.clients, Outcome::Failed),
            counter(&run.counters, Counter::ListenOverflows),
            counter(&run.counters, Counter::ListenDrops),
            seconds(connect_quantile(&run.clients, 0.5)),
            seconds(connect_quantile(&run.clients, 1.0)),
        );
    }
}

fn synflood(md: &mut String, file: &KernelFile) {
    let first = &file.synflood[0];
    let _ = writeln!(
        md,
        "\n## synflood\n\nSpoofed SYNs from 127.66.0.0/16 at {} per second for {:.0} s against a \
         server with backlog {} (which also bounds its SYN queue); their SYN-ACKs are dropped \
         by an nftables rule, so the handshakes stay half-open. {} legitimate clients start \
         during the flood and may take {:.0} s each.\n",
        first.config.rate,
        first.config.flood_s,
        first.config.backlog,
        first.config.clients,
        first.config.deadline_s,
    );
    md.push_str(
        "| tcp_syncookies | SYNs sent | peak SYN queue | legit echoed | connect p50 | connect max | \
         TCPReqQFullDrop | TCPReqQFullDoCookies | SyncookiesSent | SyncookiesRecv |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for run in &file.synflood {
        let peak = run.samples.iter().map(|s| s.queues.syn_queue).max();
        let echoed = clients::count(&run.clients, Outcome::Echoed);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {echoed}/{} | {} | {} | {} | {} | {} | {} |",
            run.config.syncookies,
            run.flood.sent,
            peak.unwrap_or(0),
            run.clients.len(),
            seconds(connect_quantile(&run.clients, 0.5)),
            seconds(connect_quantile(&run.clients, 1.0)),
            counter(&run.counters, Counter::TCPReqQFullDrop),
            counter(&run.counters, Counter::TCPReqQFullDoCookies),
            counter(&run.counters, Counter::SyncookiesSent),
            counter(&run.counters, Counter::SyncookiesRecv),
        );
    }
}

fn fairness(md: &mut String, file: &KernelFile) {
    if let Some(load) = &file.fairness_load {
        let _ = writeln!(
            md,
            "\n## fairness\n\n{} workers; {} client threads in a closed loop, each connection \
             one `WORK {}` request (its echo) then closed, for {:.0} s. Per worker: the \
             connections it took and the requests it served, from the server's final stats \
             lines (the run with the median Jain index of jobs). Jain's index: 1 is an even \
             share, 1/{} one worker taking everything.\n",
            load.workers, load.clients, load.work_us, load.duration_s, load.workers
        );
    }
    md.push_str(
        "| model | conns per worker | jobs per worker | Jain (conns) | Jain (jobs) | \
         latency min / avg / max / stdev (ms) | errors |\n|---|---|---|---:|---:|---|---:|\n",
    );
    for record in &file.fairness {
        let Some(run) = typical(record) else { continue };
        let conns: Option<Vec<String>> = run
            .workers
            .iter()
            .map(|w| w.conns.map(|c| c.to_string()))
            .collect();
        let jobs: Vec<String> = run.workers.iter().map(|w| w.jobs.to_string()).collect();
        let l = &run.latency;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.1} / {:.1} / {:.1} / {:.1} | {} |",
            record.model,
            conns.map_or("-".into(), |c| c.join(", ")),
            jobs.join(", "),
            stat(record, |r| r.jain_conns),
            stat(record, |r| r.jain_jobs),
            l.min_ms,
            l.avg_ms,
            l.max_ms,
            l.stdev_ms,
            record.runs.iter().map(|r| r.errors).sum::<u64>(),
        );
    }
}

/// The run with the median Jain index of jobs (the first with several runs at the median).
pub fn typical(record: &FairnessRecord) -> Option<&FairnessRun> {
    let values: Vec<f64> = record.runs.iter().filter_map(|r| r.jain_jobs).collect();
    let mid = median(&values)?;
    record.runs.iter().min_by(|a, b| {
        let d = |r: &FairnessRun| r.jain_jobs.map_or(f64::INFINITY, |j| (j - mid).abs());
        d(a).total_cmp(&d(b))
    })
}

/// `median [min-max]` of a figure over a model's runs (the median alone for one run).
fn stat(record: &FairnessRecord, figure: impl Fn(&FairnessRun) -> Option<f64>) -> String {
    let values: Vec<f64> = record.runs.iter().filter_map(figure).collect();
    match (median(&values), min_max(&values)) {
        (Some(m), Some((lo, hi))) if values.len() > 1 => format!("{m:.3} [{lo:.3}-{hi:.3}]"),
        (Some(m), _) => format!("{m:.3}"),
        _ => "-".into(),
    }
}

/// The `q` quantile of the clients' connect latency, over those that connected.
pub fn connect_quantile(records: &[ClientRecord], q: f64) -> Option<f64> {
    let mut connect: Vec<f64> = records.iter().filter_map(|r| r.connect_s).collect();
    connect.sort_by(f64::total_cmp);
    let at = ((connect.len() as f64 - 1.0) * q).round();
    connect.get(at.max(0.0) as usize).copied()
}

/// A duration in seconds, written in the unit that suits it (`-` for none).
pub fn seconds(value: Option<f64>) -> String {
    match value {
        None => "-".into(),
        Some(s) if s < 0.01 => format!("{:.2} ms", s * 1e3),
        Some(s) if s < 1.0 => format!("{:.0} ms", s * 1e3),
        Some(s) => format!("{s:.2} s"),
    }
}

fn counter(counters: &crate::netstat::Counters, c: Counter) -> u64 {
    counters.get(&c).copied().unwrap_or(0)
}

fn sysctls(map: &std::collections::BTreeMap<String, u64>) -> String {
    let list: Vec<String> = map
        .iter()
        .filter(|(k, _)| !k.ends_with("tcp_abort_on_overflow"))
        .map(|(k, v)| format!("`{k}={v}`"))
        .collect();
    list.join(", ")
}
