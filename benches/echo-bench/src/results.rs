//! The lab's results: medians over repeated runs, written as JSON, Markdown and SVG.
//!
//! One [`Cell`] holds every run of one model in one scenario. A figure is reported as the median
//! of the runs with their range, `median [min-max]`: the median because one disturbed run (the
//! machine's other tenants, a page-cache flush) must not move the figure, the range so the
//! reader can tell a real difference between two models from noise. Errors are summed, never
//! averaged away: one error in one run shows in the table and fails the lab.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use serde::Serialize;

use crate::chart::{self, Bar};
use crate::histo::{median, min_max};
use crate::report::RunReport;
use crate::scenario::{Headline, Variant};

/// One run of the lab: the generator's report, or why there is none.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The generator's report, when the server started.
    pub report: Option<RunReport>,
    /// A problem outside the generator: the server did not start, or did not stop cleanly.
    pub failure: Option<String>,
}

impl Outcome {
    /// Errors of this run: the generator's count, plus one for a server failure.
    pub fn errors(&self) -> u64 {
        let counted = self.report.as_ref().map_or(0, |r| r.errors.total());
        counted + u64::from(self.failure.is_some())
    }
}

/// Every run of one model in one scenario variant.
#[derive(Clone, Debug)]
pub struct Cell {
    /// The variant's name.
    pub variant: &'static str,
    /// The model (or peer) name.
    pub model: String,
    /// Whether the model is a peer.
    pub peer: bool,
    /// One per repetition.
    pub outcomes: Vec<Outcome>,
}

/// The figures a cell can report.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Echoes (or connect cycles) per second.
    MsgsPerSec,
    /// Echoed MiB per second.
    MibPerSec,
    /// p99 latency of every message, us.
    P99,
    /// p99 latency of the cheap clients, us.
    CheapP99,
    /// p99 latency of the greedy clients, us.
    GreedyP99,
    /// Server CPU per message, us.
    ServerCpu,
    /// Generator CPU per message, us.
    ClientCpu,
    /// Server resident bytes per connection.
    RssPerConn,
    /// Server proportional bytes per connection.
    PssPerConn,
}

impl Metric {
    fn of(self, r: &RunReport) -> Option<f64> {
        let server = r.server.as_ref();
        let value = match self {
            Metric::MsgsPerSec => r.msgs_per_sec,
            Metric::MibPerSec => r.bytes as f64 / r.window_s / (1 << 20) as f64,
            Metric::P99 => r.latency?.p99_us,
            Metric::CheapP99 => r.cheap_latency?.p99_us,
            Metric::GreedyP99 => r.greedy_latency?.p99_us,
            Metric::ServerCpu => server?.cpu_us_per_msg,
            Metric::ClientCpu => r.client_cpu_us_per_msg,
            Metric::RssPerConn => server?.rss_per_conn,
            Metric::PssPerConn => server?.pss_per_conn,
        };
        value.is_finite().then_some(value)
    }

    fn key(self) -> &'static str {
        match self {
            Metric::MsgsPerSec => "msgs_per_sec",
            Metric::MibPerSec => "mib_per_sec",
            Metric::P99 => "p99_us",
            Metric::CheapP99 => "cheap_p99_us",
            Metric::GreedyP99 => "greedy_p99_us",
            Metric::ServerCpu => "server_cpu_us_per_msg",
            Metric::ClientCpu => "client_cpu_us_per_msg",
            Metric::RssPerConn => "server_rss_bytes_per_conn",
            Metric::PssPerConn => "server_pss_bytes_per_conn",
        }
    }
}

/// Median and range of one figure over a cell's runs.
#[derive(Copy, Clone, Debug, PartialEq, Serialize)]
pub struct Stat {
    /// Median of the runs.
    pub median: f64,
    /// Smallest run.
    pub min: f64,
    /// Largest run.
    pub max: f64,
}

impl Cell {
    /// Median and range of `metric` over the runs that have it.
    pub fn stat(&self, metric: Metric) -> Option<Stat> {
        let values: Vec<f64> = self
            .outcomes
            .iter()
            .filter_map(|o| metric.of(o.report.as_ref()?))
            .collect();
        let (min, max) = min_max(&values)?;
        Some(Stat {
            median: median(&values)?,
            min,
            max,
        })
    }

    /// All errors over all runs.
    pub fn errors(&self) -> u64 {
        self.outcomes.iter().map(Outcome::errors).sum()
    }

    /// Every error message of every run.
    pub fn error_messages(&self) -> Vec<String> {
        let mut messages = Vec::new();
        for o in &self.outcomes {
            messages.extend(o.failure.clone());
            if let Some(r) = &o.report {
                messages.extend(r.error_samples.iter().cloned());
            }
        }
        messages
    }
}

/// The figures shown for each headline kind, first one charted as the headline.
pub fn metrics(headline: Headline) -> &'static [Metric] {
    match headline {
        Headline::Throughput => &[
            Metric::MsgsPerSec,
            Metric::MibPerSec,
            Metric::P99,
            Metric::ServerCpu,
            Metric::ClientCpu,
        ],
        Headline::Accept => &[Metric::MsgsPerSec, Metric::P99, Metric::ServerCpu],
        Headline::Memory => &[Metric::RssPerConn, Metric::PssPerConn],
        Headline::CheapP99 => &[
            Metric::CheapP99,
            Metric::GreedyP99,
            Metric::MsgsPerSec,
            Metric::ServerCpu,
        ],
    }
}

/// Column title of a metric in a given scenario.
fn title(headline: Headline, metric: Metric) -> &'static str {
    match (headline, metric) {
        (Headline::Accept, Metric::MsgsPerSec) => "conn/s",
        (Headline::Accept, Metric::P99) => "p99 connect+echo us",
        (Headline::Accept, Metric::ServerCpu) => "server us/conn",
        (_, Metric::MsgsPerSec) => "msg/s",
        (_, Metric::MibPerSec) => "MiB/s",
        (_, Metric::P99) => "p99 us",
        (_, Metric::CheapP99) => "cheap p99 us",
        (_, Metric::GreedyP99) => "greedy p99 us",
        (_, Metric::ServerCpu) => "server us/msg",
        (_, Metric::ClientCpu) => "client us/msg",
        (_, Metric::RssPerConn) => "RSS B/conn",
        (_, Metric::PssPerConn) => "PSS B/conn",
    }
}

/// `cells` in variant-major order: `cells[v * n_models + m]`.
pub struct LabResults<'a> {
    /// The variants that ran.
    pub variants: &'a [Variant],
    /// Every cell.
    pub cells: &'a [Cell],
    /// Number of models (columns of the cell grid).
    pub n_models: usize,
    /// The lab's command line and context, for the header.
    pub header: Vec<(String, String)>,
}

impl LabResults<'_> {
    fn row(&self, v: usize) -> &[Cell] {
        &self.cells[v * self.n_models..(v + 1) * self.n_models]
    }

    fn find(&self, variant: &str, model: &str) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.variant == variant && c.model == model)
    }

    /// Writes `results.json`, `results.md` and the charts into `dir`; returns the Markdown.
    pub fn write(&self, dir: &Path) -> Result<String, String> {
        let write = |name: &str, text: &str| {
            fs::write(dir.join(name), text).map_err(|e| format!("cannot write {name}: {e}"))
        };
        write("results.json", &(self.to_json() + "\n"))?;
        let markdown = self.markdown();
        write("results.md", &markdown)?;
        for (v, variant) in self.variants.iter().enumerate() {
            for &metric in metrics(variant.headline).iter().filter(|m| charted(**m)) {
                let bars: Vec<Bar> = self.row(v).iter().map(|c| bar(c, metric)).collect();
                let file = format!("{}-{}.svg", variant.name, metric.key().replace('_', "-"));
                let caption = format!("{}: {}", variant.name, title(variant.headline, metric));
                chart::bar_chart(
                    &dir.join(file),
                    &caption,
                    title(variant.headline, metric),
                    &bars,
                )?;
            }
        }
        Ok(markdown)
    }

    /// `results.json`: the header, then per variant and model the summary and every run.
    pub fn to_json(&self) -> String {
        let scenarios = self
            .variants
            .iter()
            .enumerate()
            .map(|(v, variant)| ScenarioJson {
                name: variant.name,
                about: variant.about,
                models: self
                    .row(v)
                    .iter()
                    .map(|cell| ModelJson {
                        model: &cell.model,
                        peer: cell.peer,
                        errors: cell.errors(),
                        summary: metrics(variant.headline)
                            .iter()
                            .map(|m| (m.key(), cell.stat(*m)))
                            .collect(),
                        runs: cell.outcomes.iter().map(RunJson::from).collect(),
                    })
                    .collect(),
            });
        let lab = LabJson {
            lab: self.header.iter().cloned().collect(),
            scenarios: scenarios.collect(),
        };
        serde_json::to_string_pretty(&lab).expect("results always serialise")
    }

    /// `results.md`: header, one table per scenario, the yardsticks, the errors.
    pub fn markdown(&self) -> String {
        let mut md = String::from("# echo-bench lab results\n\n");
        for (key, value) in &self.header {
            let _ = writeln!(md, "- {key}: {value}");
        }
        md.push_str(
            "\nEach figure is the median of the runs, with the range `[min-max]`. CPU figures \
             are per echoed message (per connection for `accept`), for the server's whole \
             process tree. `errors` must be 0: any error fails the lab.\n",
        );
        for (v, variant) in self.variants.iter().enumerate() {
            let _ = writeln!(md, "\n## {}\n\n{}\n", variant.name, variant.about);
            let columns = metrics(variant.headline);
            md.push_str("| model |");
            for &m in columns {
                let _ = write!(md, " {} |", title(variant.headline, m));
            }
            md.push_str(" errors |\n|---|");
            md.push_str(&"---:|".repeat(columns.len() + 1));
            md.push('\n');
            for cell in self.row(v) {
                let _ = write!(
                    md,
                    "| {}{} |",
                    cell.model,
                    if cell.peer { " (peer)" } else { "" }
                );
                for &m in columns {
                    let _ = write!(md, " {} |", cell.stat(m).map_or("-".into(), format_stat));
                }
                let _ = writeln!(md, " {} |", cell.errors());
            }
        }
        self.yardsticks(&mut md);
        self.errors_section(&mut md);
        md
    }

    /// The comparisons the project's goals are stated in.
    fn yardsticks(&self, md: &mut String) {
        let models: Vec<&Cell> = self.cells.iter().take(self.n_models).collect();
        let mut lines = Vec::new();
        let med = |variant: &str, model: &str, m: Metric| {
            self.find(variant, model)
                .and_then(|c| c.stat(m))
                .map(|s| s.median)
        };
        let tokio_best = ["tokio-mt", "tokio-ct"]
            .iter()
            .filter_map(|p| med("pingpong", p, Metric::ServerCpu).map(|v| (v, *p)))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        if let (Some(event_loop), Some((tokio, peer))) =
            (med("pingpong", "event-loop", Metric::ServerCpu), tokio_best)
        {
            lines.push(format!(
                "pingpong server CPU: event-loop {event_loop:.2} us/msg vs {peer} {tokio:.2} us/msg \
                 (ratio {:.2})",
                event_loop / tokio
            ));
        }
        for cell in &models {
            let with = med("greedy", &cell.model, Metric::CheapP99);
            let alone = med("greedy-baseline", &cell.model, Metric::CheapP99);
            if let (Some(with), Some(alone)) = (with, alone) {
                lines.push(format!(
                    "greedy neighbour, {}: cheap p99 {with:.0} us with vs {alone:.0} us without \
                     (x{:.1})",
                    cell.model,
                    with / alone
                ));
            }
            if let Some(bytes) = med("idle-memory", &cell.model, Metric::RssPerConn) {
                lines.push(format!(
                    "idle memory, {}: {bytes:.0} B/conn resident",
                    cell.model
                ));
            }
        }
        if !lines.is_empty() {
            md.push_str("\n## Yardsticks\n\n");
            for line in lines {
                let _ = writeln!(md, "- {line}");
            }
        }
    }

    fn errors_section(&self, md: &mut String) {
        let failing: Vec<&Cell> = self.cells.iter().filter(|c| c.errors() > 0).collect();
        if failing.is_empty() {
            md.push_str(
                "\n## Errors\n\nNone: every echoed byte of every run was checked and correct.\n",
            );
            return;
        }
        md.push_str("\n## Errors\n\n");
        for cell in failing {
            let _ = writeln!(
                md,
                "- {} / {}: {} errors",
                cell.variant,
                cell.model,
                cell.errors()
            );
            for message in cell.error_messages().iter().take(5) {
                let _ = writeln!(md, "  - `{message}`");
            }
        }
    }
}

/// Whether a metric gets its own chart (the secondary figures stay in the tables).
fn charted(metric: Metric) -> bool {
    matches!(
        metric,
        Metric::MsgsPerSec
            | Metric::P99
            | Metric::CheapP99
            | Metric::ServerCpu
            | Metric::RssPerConn
    )
}

fn bar(cell: &Cell, metric: Metric) -> Bar {
    let stat = cell.stat(metric);
    Bar {
        label: cell.model.clone(),
        median: stat.map_or(f64::NAN, |s| s.median),
        low: stat.map_or(f64::NAN, |s| s.min),
        high: stat.map_or(f64::NAN, |s| s.max),
        peer: cell.peer,
    }
}

/// `results.json` as written: the header, then the scenarios.
#[derive(Serialize)]
struct LabJson<'a> {
    lab: BTreeMap<String, String>,
    scenarios: Vec<ScenarioJson<'a>>,
}

#[derive(Serialize)]
struct ScenarioJson<'a> {
    name: &'a str,
    about: &'a str,
    models: Vec<ModelJson<'a>>,
}

#[derive(Serialize)]
struct ModelJson<'a> {
    model: &'a str,
    peer: bool,
    errors: u64,
    summary: BTreeMap<&'static str, Option<Stat>>,
    runs: Vec<RunJson<'a>>,
}

/// One run: the generator's report (flattened, `ok` first) and the server's failure if any.
#[derive(Serialize)]
struct RunJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    ok: Option<bool>,
    #[serde(flatten)]
    report: Option<&'a RunReport>,
    failure: Option<&'a str>,
}

impl<'a> From<&'a Outcome> for RunJson<'a> {
    fn from(outcome: &'a Outcome) -> RunJson<'a> {
        RunJson {
            ok: outcome.report.as_ref().map(RunReport::ok),
            report: outcome.report.as_ref(),
            failure: outcome.failure.as_deref(),
        }
    }
}

fn format_stat(s: Stat) -> String {
    if s.min == s.max {
        chart::compact(s.median)
    } else {
        format!(
            "{} [{}-{}]",
            chart::compact(s.median),
            chart::compact(s.min),
            chart::compact(s.max)
        )
    }
}
