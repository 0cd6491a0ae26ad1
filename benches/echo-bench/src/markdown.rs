//! `results.md`: the lab's conditions, one table per scenario, the yardsticks, every error.
//!
//! Written for a person: the header says how the figures were obtained (how many runs, which
//! machine, which pinning) before any figure, because a number without its conditions cannot be
//! compared with anything. A lab of single runs (`--quick`) says "single run, indicative only"
//! instead of promising medians and ranges it does not have.

use std::fmt::Write as _;

use crate::chart::compact;
use crate::models::Group;
use crate::results::{metrics, utc, Header, LabFile, Metric, ModelRecord, Stat};
use crate::scenario;

/// The whole of `results.md`.
pub fn results(file: &LabFile) -> String {
    let mut md = String::from("# echo-bench lab results\n\n");
    header(&mut md, file);
    for scenario in &file.scenarios {
        let _ = writeln!(md, "\n## {}\n\n{}\n", scenario.name, scenario.about);
        let headline = scenario::headline(&scenario.name);
        let columns: Vec<Metric> = metrics(headline)
            .iter()
            .copied()
            .filter(|&m| !optional(m) || has(&scenario.models, m))
            .collect();
        md.push_str("| model |");
        for m in &columns {
            let _ = write!(md, " {} |", m.column(headline));
        }
        md.push_str(" errors |\n|---|");
        md.push_str(&"---:|".repeat(columns.len() + 1));
        md.push('\n');
        for model in &scenario.models {
            let _ = write!(md, "| {}{} |", model.model, group_suffix(model.group));
            for &m in &columns {
                let _ = write!(md, " {} |", model.stat(m).map_or("-".into(), format_stat));
            }
            let _ = writeln!(md, " {} |", model.errors);
        }
        syscall_breakdown(&mut md, &scenario.models);
    }
    yardsticks(&mut md, file);
    notes(&mut md, file);
    errors(&mut md, file);
    md
}

/// A run's conditions as two short lines, for under a chart's title.
pub fn conditions(file: &LabFile) -> [String; 2] {
    let lab = &file.lab;
    let mode = if lab.quick { "quick run" } else { "full run" };
    let date = match lab.finished_unix {
        0 => "date unknown".to_string(),
        unix => utc(unix),
    };
    let machine = if lab.machine.is_empty() {
        "machine unknown"
    } else {
        &lab.machine
    };
    [
        format!("{mode}, {} · {date}", runs_per_cell(file.reps())),
        format!("{machine} · {}", pinning_short(lab)),
    ]
}

/// How many runs stand behind each figure, in words.
pub fn runs_per_cell(reps: usize) -> String {
    match reps {
        1 => "1 run per model: single run, indicative only".into(),
        n => format!("median of {n} runs per model, whiskers min to max"),
    }
}

fn header(md: &mut String, file: &LabFile) {
    let lab = &file.lab;
    let line = |md: &mut String, key: &str, value: &str| {
        let _ = writeln!(md, "- {key}: {value}");
    };
    if !lab.command.is_empty() {
        line(md, "command", &lab.command);
    }
    line(md, "machine", &lab.machine);
    let mut date = match lab.finished_unix {
        0 => "unknown".to_string(),
        unix => utc(unix),
    };
    if lab.took_s > 0.0 {
        date += &format!(" (the lab took {:.0} s)", lab.took_s);
    }
    line(md, "date", &date);
    let mut runs = match (lab.quick, file.reps()) {
        (true, 1) => "quick lab (smoke-test sizes), 1 per model and scenario: single run, \
                      indicative only"
            .to_string(),
        (quick, n) => format!(
            "{} lab, {n} per model and scenario (median with the range [min-max])",
            if quick { "quick" } else { "full" }
        ),
    };
    runs += "; models interleaved within each repetition, a fresh server per run";
    if lab.window_s > 0.0 {
        runs += &format!(
            "; window {} s after {} s of warm-up; {} generator thread(s)",
            lab.window_s, lab.warmup_s, lab.generator_threads
        );
    }
    line(md, "runs", &runs);
    line(md, "pinning", &pinning_long(lab));
    let workers = match lab.server_workers {
        Some(n) => format!("`--workers {n}` for every server"),
        None => "each server's default (one per CPU it may use)".into(),
    };
    line(md, "server workers", &workers);
    if lab.syscall_stats {
        line(
            md,
            "syscall stats",
            "on (`--syscall-stats`: counting costs the servers a little)",
        );
    }
    for skipped in &file.skipped {
        line(
            md,
            "skipped",
            &format!("`{}`: {}", skipped.name, skipped.reason),
        );
    }
    md.push('\n');
    if file.reps() == 1 {
        md.push_str(
            "**Single run, indicative only**: each figure below is one run, with no median and \
             no range. Run the lab without `--quick` (3 runs per model) before comparing models.",
        );
    } else {
        let _ = write!(
            md,
            "Each figure is the median of {} runs, with the range `[min-max]`.",
            file.reps()
        );
    }
    md.push_str(
        " CPU and context switches are per echoed message (per connection for `accept`), for \
         the server's whole process tree. Memory is PSS (proportional set size: pages shared \
         by forked processes are divided among them). `errors` must be 0: any error fails the \
         lab.\n",
    );
}

/// Which CPUs each side ran on, in one line for the charts.
fn pinning_short(lab: &Header) -> String {
    let side = |list: &Option<crate::pin::CpuList>| match list {
        Some(cpus) if cpus.len() == 1 => format!("on CPU {cpus}"),
        Some(cpus) => format!("on CPUs {cpus}"),
        None => "unpinned".into(),
    };
    match (&lab.server_cpus, &lab.generator_cpus) {
        (None, None) => "unpinned (the scheduler places server and generator)".into(),
        (server, generator) => format!("servers {}, generator {}", side(server), side(generator)),
    }
}

fn pinning_long(lab: &Header) -> String {
    let mut text = pinning_short(lab);
    match &lab.server_cpus {
        Some(_) => text.push_str(
            "; every server starts with that CPU mask (set before exec, inherited by all its \
             threads and processes, read back from /proc after every run), and rawloop servers \
             get `--no-pin`, so the kernel balances their workers over those CPUs and every \
             model and peer is placed by the same rule",
        ),
        None => text.push_str(
            "; rawloop models that pin their workers (`--pin`, their default) pin them to cores \
             0..N, so on a small machine they share cores with the generator",
        ),
    }
    text
}

fn group_suffix(group: Group) -> &'static str {
    match group {
        Group::Model => "",
        Group::Variant => " (variant)",
        Group::Peer => " (peer)",
    }
}

/// Columns shown only when some model has the figure: syscalls need `--syscall-stats`, and
/// results of older labs have no context switches.
fn optional(metric: Metric) -> bool {
    matches!(metric, Metric::Syscalls | Metric::ServerSwitches)
}

fn has(models: &[ModelRecord], metric: Metric) -> bool {
    models.iter().any(|m| m.stat(metric).is_some())
}

/// The per-kind syscall counts behind the `server syscalls/msg` column, when the lab had them.
fn syscall_breakdown(md: &mut String, models: &[ModelRecord]) {
    let lines: Vec<String> = models
        .iter()
        .filter_map(|m| {
            let value = m.runs.iter().find_map(|r| r.syscalls_per_msg.last())?;
            Some(format!("- {}: `{value}`", m.model))
        })
        .collect();
    if !lines.is_empty() {
        md.push_str(
            "\nSyscalls per message by kind (the server's final stats line, first run):\n\n",
        );
        for line in lines {
            let _ = writeln!(md, "{line}");
        }
    }
}

/// The comparisons the project's goals are stated in.
fn yardsticks(md: &mut String, file: &LabFile) {
    let mut lines = Vec::new();
    let tokio_best = ["tokio-mt", "tokio-ct"]
        .iter()
        .filter_map(|p| Some((file.median("pingpong", p, Metric::ServerCpu)?, *p)))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    if let (Some(event_loop), Some((tokio, peer))) = (
        file.median("pingpong", "event-loop", Metric::ServerCpu),
        tokio_best,
    ) {
        lines.push(format!(
            "pingpong server CPU: event-loop {event_loop:.2} µs/msg vs {peer} {tokio:.2} µs/msg \
             (ratio {:.2})",
            event_loop / tokio
        ));
    }
    let models = file.scenarios.first().map_or(&[][..], |s| &s.models[..]);
    for model in models.iter().map(|m| m.model.as_str()) {
        let with = file.median("greedy", model, Metric::CheapP99);
        let alone = file.median("greedy-baseline", model, Metric::CheapP99);
        if let (Some(with), Some(alone)) = (with, alone) {
            lines.push(format!(
                "greedy neighbour, {model}: cheap p99 {with:.0} µs with vs {alone:.0} µs without \
                 (×{:.1})",
                with / alone
            ));
        }
        if let Some(bytes) = file.median("idle-memory", model, Metric::PssPerConn) {
            lines.push(format!("idle memory, {model}: {bytes:.0} B/conn (PSS)"));
        }
    }
    if !lines.is_empty() {
        md.push_str("\n## Yardsticks\n\n");
        for line in lines {
            let _ = writeln!(md, "- {line}");
        }
    }
}

/// What the generator noted about single runs (CPU left out of a run sampled too late).
fn notes(md: &mut String, file: &LabFile) {
    let mut lines = Vec::new();
    for scenario in &file.scenarios {
        for model in &scenario.models {
            for (rep, run) in model.runs.iter().enumerate() {
                let notes = run.report.iter().flat_map(|r| &r.notes);
                for note in notes {
                    lines.push(format!(
                        "- {} / {}, run {}: {note}",
                        scenario.name,
                        model.model,
                        rep + 1
                    ));
                }
            }
        }
    }
    if !lines.is_empty() {
        md.push_str("\n## Notes\n\n");
        for line in lines {
            let _ = writeln!(md, "{line}");
        }
    }
}

fn errors(md: &mut String, file: &LabFile) {
    let failing: Vec<(&str, &ModelRecord)> = file
        .scenarios
        .iter()
        .flat_map(|s| s.models.iter().map(move |m| (s.name.as_str(), m)))
        .filter(|(_, m)| m.errors > 0)
        .collect();
    md.push_str("\n## Errors\n\n");
    if failing.is_empty() {
        md.push_str("None: every echoed byte of every run was checked and correct.\n");
        return;
    }
    for (scenario, model) in failing {
        let _ = writeln!(
            md,
            "- {scenario} / {}: {} errors",
            model.model, model.errors
        );
        for message in model.error_messages().iter().take(5) {
            let _ = writeln!(md, "  - `{message}`");
        }
    }
}

fn format_stat(s: Stat) -> String {
    if s.min == s.max {
        compact(s.median)
    } else {
        format!(
            "{} [{}-{}]",
            compact(s.median),
            compact(s.min),
            compact(s.max)
        )
    }
}
