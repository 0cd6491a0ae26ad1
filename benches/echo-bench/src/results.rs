//! The lab's results as data: every run of every model in every scenario, their medians and
//! ranges, and `results.json`, written and read back with serde.
//!
//! One [`ModelRecord`] holds every run of one model in one scenario. A figure is reported as the
//! median of the runs with their range, `median [min-max]`: the median because one disturbed run
//! (the machine's other tenants, a page-cache flush) must not move the figure, the range so the
//! reader can tell a real difference between two models from noise. With a single run
//! (`--quick`) there is neither, and the output says so: "single run, indicative only". Errors
//! are summed, never averaged away: one error in one run shows in the table and fails the lab.
//!
//! `results.md` ([`crate::markdown`]) and the charts ([`crate::charts`]) are drawn from a
//! [`LabFile`] alone, so `lab --replot` can read `results.json` back and draw them again (after
//! a change to the charts, or from an older lab's file: fields it lacks take defaults).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

use crate::histo::{median, min_max};
use crate::models::{Group, Skipped};
use crate::pin::CpuList;
use crate::report::RunReport;
use crate::scenario::{self, Headline};
use crate::server::syscalls_total;
use crate::{charts, markdown};

/// `results.json`: how the lab ran, what it skipped, and every run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LabFile {
    /// The conditions of the lab.
    pub lab: Header,
    /// Entries of the model table that did not run, and why.
    #[serde(default)]
    pub skipped: Vec<Skipped>,
    /// One per scenario variant, in the order they ran.
    pub scenarios: Vec<ScenarioRecord>,
}

/// The conditions of a lab, printed at the top of `results.md` and under every chart's title.
/// Every field has a default, so a file from an older lab still reads.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Header {
    /// The command line.
    pub command: String,
    /// `N cores, Linux <release>`.
    pub machine: String,
    /// When the lab finished, in seconds since the Unix epoch (0: unknown).
    #[serde(alias = "finished (unix time)", deserialize_with = "number_or_text")]
    pub finished_unix: u64,
    /// How long the whole lab took.
    pub took_s: f64,
    /// `--quick`: smoke-test sizes.
    pub quick: bool,
    /// Runs per model and scenario (0: unknown, count the runs).
    pub reps: usize,
    /// Measured window of each run.
    pub window_s: f64,
    /// Warm-up before it.
    pub warmup_s: f64,
    /// Generator threads.
    pub generator_threads: usize,
    /// `--workers` given to every server (`None`: each server's default).
    pub server_workers: Option<usize>,
    /// `--server-cpus`.
    pub server_cpus: Option<CpuList>,
    /// `--generator-cpus`.
    pub generator_cpus: Option<CpuList>,
    /// `--syscall-stats` was passed to the rawloop servers.
    pub syscall_stats: bool,
}

/// Every model's runs in one scenario variant.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ScenarioRecord {
    /// The variant's name (`pingpong`, `greedy-baseline`...).
    pub name: String,
    /// What it measures, one line.
    pub about: String,
    /// One per model, in the lab's order.
    pub models: Vec<ModelRecord>,
}

/// Every run of one model in one scenario variant.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ModelRecord {
    /// The model's lab name.
    pub model: String,
    /// Its group (model, variant, peer).
    #[serde(default)]
    pub group: Group,
    /// Whether it is a peer (kept for readers of older files, where it was the only group).
    #[serde(default)]
    pub peer: bool,
    /// All errors over all runs.
    #[serde(default)]
    pub errors: u64,
    /// Median and range of each figure, for the reader of the file (recomputed when read).
    #[serde(default, skip_deserializing)]
    pub summary: BTreeMap<String, Stat>,
    /// One per repetition.
    pub runs: Vec<RunRecord>,
}

/// One run of one model: the generator's report, or why there is none.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunRecord {
    /// No error counted, and the server started and stopped cleanly.
    #[serde(default)]
    pub ok: bool,
    /// The generator's report, when the server started.
    #[serde(flatten)]
    pub report: Option<RunReport>,
    /// A problem outside the generator: the server did not start, did not stop cleanly, or
    /// ran outside its CPUs.
    pub failure: Option<String>,
    /// The CPUs the server's threads were allowed, read back from `/proc` after the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cpus: Option<CpuList>,
    /// `syscalls_per_msg` of the server's final stats lines (`--syscall-stats`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub syscalls_per_msg: Vec<String>,
}

/// The figures a model can report in a scenario.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Echoes (or connect cycles) per second.
    MsgsPerSec,
    /// Echoed MiB per second.
    MibPerSec,
    /// p99 latency of every message, µs.
    P99,
    /// p99 latency of the cheap clients, µs.
    CheapP99,
    /// p99 latency of the greedy clients, µs.
    GreedyP99,
    /// Server CPU per message, µs.
    ServerCpu,
    /// Server context switches (voluntary + involuntary) per message.
    ServerSwitches,
    /// Server syscalls per message, from its final stats line.
    Syscalls,
    /// Generator CPU per message, µs.
    ClientCpu,
    /// Server proportional set size per connection, bytes.
    PssPerConn,
    /// Server resident bytes per connection.
    RssPerConn,
}

/// Median and range of one figure over a model's runs.
#[derive(Copy, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    /// Median of the runs.
    pub median: f64,
    /// Smallest run.
    pub min: f64,
    /// Largest run.
    pub max: f64,
}

impl LabFile {
    /// Fills in errors and summaries, writes `results.json`, `results.md` and the charts into
    /// `dir`, and returns the Markdown.
    pub fn write(&mut self, dir: &Path) -> Result<String, String> {
        for scenario in &mut self.scenarios {
            let metrics = metrics(scenario::headline(&scenario.name));
            for model in &mut scenario.models {
                model.errors = model.runs.iter().map(RunRecord::errors).sum();
                model.summary = metrics
                    .iter()
                    .filter_map(|m| Some((m.key().to_string(), model.stat(*m)?)))
                    .collect();
            }
        }
        let json = serde_json::to_string_pretty(self).map_err(|e| e.to_string())? + "\n";
        write(dir, "results.json", &json)?;
        self.render(dir)
    }

    /// Reads a `results.json` (from this lab or an older one).
    pub fn read(path: &Path) -> Result<LabFile, String> {
        let text =
            fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut file: LabFile =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        for model in file.scenarios.iter_mut().flat_map(|s| &mut s.models) {
            if model.peer {
                model.group = Group::Peer;
            }
            model.errors = model.runs.iter().map(RunRecord::errors).sum();
        }
        Ok(file)
    }

    /// Writes `results.md` and the charts into `dir`; returns the Markdown.
    pub fn render(&self, dir: &Path) -> Result<String, String> {
        let markdown = markdown::results(self);
        write(dir, "results.md", &markdown)?;
        charts::draw_all(self, dir)?;
        Ok(markdown)
    }

    /// Runs per model and scenario: the header's count, or the most runs any model has.
    pub fn reps(&self) -> usize {
        match self.lab.reps {
            0 => self
                .scenarios
                .iter()
                .flat_map(|s| &s.models)
                .map(|m| m.runs.len())
                .max()
                .unwrap_or(0),
            reps => reps,
        }
    }

    /// The record of `model` in scenario variant `scenario`.
    pub fn find(&self, scenario: &str, model: &str) -> Option<&ModelRecord> {
        let scenario = self.scenarios.iter().find(|s| s.name == scenario)?;
        scenario.models.iter().find(|m| m.model == model)
    }

    /// Median of `metric` for `model` in `scenario`.
    pub fn median(&self, scenario: &str, model: &str, metric: Metric) -> Option<f64> {
        Some(self.find(scenario, model)?.stat(metric)?.median)
    }
}

impl ModelRecord {
    /// Median and range of `metric` over the runs that have it.
    pub fn stat(&self, metric: Metric) -> Option<Stat> {
        let values: Vec<f64> = self.runs.iter().filter_map(|r| metric.of(r)).collect();
        let (min, max) = min_max(&values)?;
        Some(Stat {
            median: median(&values)?,
            min,
            max,
        })
    }

    /// Every error message of every run.
    pub fn error_messages(&self) -> Vec<String> {
        let mut messages = Vec::new();
        for run in &self.runs {
            messages.extend(run.failure.clone());
            if let Some(r) = &run.report {
                messages.extend(r.error_samples.iter().cloned());
            }
        }
        messages
    }
}

impl RunRecord {
    /// A record of a run, `ok` filled in.
    pub fn new(report: Option<RunReport>, failure: Option<String>) -> RunRecord {
        RunRecord {
            ok: failure.is_none() && report.as_ref().is_some_and(RunReport::ok),
            report,
            failure,
            server_cpus: None,
            syscalls_per_msg: Vec::new(),
        }
    }

    /// Errors of this run: the generator's count, plus one for a server failure.
    pub fn errors(&self) -> u64 {
        let counted = self.report.as_ref().map_or(0, |r| r.errors.total());
        counted + u64::from(self.failure.is_some())
    }
}

impl Metric {
    /// The figure in one run, when it has one.
    pub fn of(self, run: &RunRecord) -> Option<f64> {
        let report = || run.report.as_ref();
        let server = || report()?.server.as_ref();
        let value = match self {
            Metric::MsgsPerSec => report()?.msgs_per_sec,
            Metric::MibPerSec => {
                let r = report()?;
                r.bytes as f64 / r.window_s / (1 << 20) as f64
            }
            Metric::P99 => report()?.latency?.p99_us,
            Metric::CheapP99 => report()?.cheap_latency?.p99_us,
            Metric::GreedyP99 => report()?.greedy_latency?.p99_us,
            Metric::ServerCpu => server()?.cpu_us_per_msg,
            Metric::ServerSwitches => server()?.switches_per_msg,
            Metric::Syscalls => syscalls_total(run.syscalls_per_msg.last()?)?,
            Metric::ClientCpu => report()?.client_cpu_us_per_msg,
            Metric::PssPerConn => server()?.pss_per_conn,
            Metric::RssPerConn => server()?.rss_per_conn,
        };
        value.is_finite().then_some(value)
    }

    /// Its key in `results.json` and in chart file names.
    pub fn key(self) -> &'static str {
        match self {
            Metric::MsgsPerSec => "msgs_per_sec",
            Metric::MibPerSec => "mib_per_sec",
            Metric::P99 => "p99_us",
            Metric::CheapP99 => "cheap_p99_us",
            Metric::GreedyP99 => "greedy_p99_us",
            Metric::ServerCpu => "server_cpu_us_per_msg",
            Metric::ServerSwitches => "server_switches_per_msg",
            Metric::Syscalls => "server_syscalls_per_msg",
            Metric::ClientCpu => "client_cpu_us_per_msg",
            Metric::PssPerConn => "server_pss_bytes_per_conn",
            Metric::RssPerConn => "server_rss_bytes_per_conn",
        }
    }

    /// Whether a larger value is better (throughput) or a smaller one (everything else).
    pub fn higher_is_better(self) -> bool {
        matches!(self, Metric::MsgsPerSec | Metric::MibPerSec)
    }

    /// Column title in a scenario's table.
    pub fn column(self, headline: Headline) -> &'static str {
        match (headline, self) {
            (Headline::Accept, Metric::MsgsPerSec) => "conn/s",
            (Headline::Accept, Metric::P99) => "p99 connect+echo µs",
            (Headline::Accept, Metric::ServerCpu) => "server µs/conn",
            (_, Metric::MsgsPerSec) => "msg/s",
            (_, Metric::MibPerSec) => "MiB/s",
            (_, Metric::P99) => "p99 µs",
            (_, Metric::CheapP99) => "cheap p99 µs",
            (_, Metric::GreedyP99) => "greedy p99 µs",
            (_, Metric::ServerCpu) => "server µs/msg",
            (_, Metric::ServerSwitches) => "server switches/msg",
            (_, Metric::Syscalls) => "server syscalls/msg",
            (_, Metric::ClientCpu) => "client µs/msg",
            (_, Metric::PssPerConn) => "PSS B/conn",
            (_, Metric::RssPerConn) => "RSS B/conn",
        }
    }
}

/// The figures of a scenario's table, in column order. `Syscalls` shows only when some model
/// has it (`--syscall-stats`).
pub fn metrics(headline: Headline) -> &'static [Metric] {
    match headline {
        Headline::Throughput => &[
            Metric::MsgsPerSec,
            Metric::MibPerSec,
            Metric::P99,
            Metric::ServerCpu,
            Metric::ServerSwitches,
            Metric::Syscalls,
            Metric::ClientCpu,
        ],
        Headline::Accept => &[
            Metric::MsgsPerSec,
            Metric::P99,
            Metric::ServerCpu,
            Metric::Syscalls,
        ],
        Headline::Memory => &[Metric::PssPerConn, Metric::RssPerConn],
        Headline::CheapP99 => &[
            Metric::CheapP99,
            Metric::GreedyP99,
            Metric::MsgsPerSec,
            Metric::ServerCpu,
            Metric::ServerSwitches,
            Metric::Syscalls,
        ],
    }
}

/// `YYYY-MM-DD HH:MM UTC` for a Unix time.
pub fn utc(unix: u64) -> String {
    match jiff::Timestamp::from_second(unix as i64) {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M UTC").to_string(),
        Err(_) => format!("{unix} (Unix time)"),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> Result<(), String> {
    fs::write(dir.join(name), text).map_err(|e| format!("cannot write {name}: {e}"))
}

/// A Unix time written as a number, or as text by the labs before serde (`"1795351595"`).
fn number_or_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrText {
        Number(u64),
        Text(String),
    }
    Ok(match NumberOrText::deserialize(deserializer)? {
        NumberOrText::Number(n) => n,
        NumberOrText::Text(text) => text.trim().parse().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_come_out_in_the_gregorian_calendar() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_795_351_595), "2026-11-22 12:46 UTC");
        assert_eq!(utc(4_107_542_399), "2100-02-28 23:59 UTC");
    }

    #[test]
    fn a_lab_file_survives_a_json_round_trip() {
        let mut run = RunRecord::new(None, Some("no `listening on` line".into()));
        run.syscalls_per_msg = vec!["read:1.00,write:1.00".into()];
        run.server_cpus = Some("0".parse().unwrap());
        let file = LabFile {
            lab: Header {
                reps: 1,
                quick: true,
                server_cpus: Some("0".parse().unwrap()),
                finished_unix: 1_795_351_595,
                ..Header::default()
            },
            skipped: vec![Skipped {
                name: "uring".into(),
                reason: "echo-server --help lists no model `uring`".into(),
            }],
            scenarios: vec![ScenarioRecord {
                name: "pingpong".into(),
                about: "64 connections".into(),
                models: vec![ModelRecord {
                    model: "tokio-mt".into(),
                    group: Group::Peer,
                    peer: true,
                    errors: 1,
                    summary: BTreeMap::new(),
                    runs: vec![run],
                }],
            }],
        };
        let text = serde_json::to_string_pretty(&file).unwrap();
        let back: LabFile = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_string_pretty(&back).unwrap(), text);
        let model = &back.scenarios[0].models[0];
        assert!(model.runs[0].report.is_none() && !model.runs[0].ok);
        assert_eq!(model.stat(Metric::Syscalls).unwrap().median, 2.0);
        assert_eq!(back.lab.server_cpus, Some("0".parse().unwrap()));
        // An older lab's header: text where numbers are now, keys that no longer exist.
        let old = r#"{"lab": {"machine": "2 cores, Linux 6.18", "finished (unix time)": "1795351595",
            "lab took": "546 s"}, "scenarios": []}"#;
        let old: LabFile = serde_json::from_str(old).unwrap();
        assert_eq!(old.lab.finished_unix, 1_795_351_595);
        assert_eq!(old.lab.machine, "2 cores, Linux 6.18");
    }
}
