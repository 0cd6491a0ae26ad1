//! Which charts the lab draws from its results, and what each one says.
//!
//! A chart per headline figure of each scenario (throughput, p99, server CPU per message;
//! memory per connection; connections per second), plus context switches per message for
//! `pingpong`, the figure that explains a model's CPU when it hands messages between threads.
//! The greedy scenario draws one chart of paired bars, the cheap clients' p99 alone
//! (`greedy-baseline`) and next to greedy clients (`greedy`), instead of two charts a reader
//! would have to hold side by side. Secondary figures stay in the tables.

use std::path::Path;

use crate::chart::{self, Chart, Row, Value};
use crate::markdown::conditions;
use crate::results::{LabFile, Metric, ScenarioRecord};
use crate::scenario::{self, Headline};

/// Draws every chart of `file` into `dir`, named `SCENARIO-METRIC.svg`.
pub fn draw_all(file: &LabFile, dir: &Path) -> Result<(), String> {
    let conditions = conditions(file);
    for scenario in &file.scenarios {
        let headline = scenario::headline(&scenario.name);
        for &metric in charted(&scenario.name, headline) {
            let rows = rows(&[scenario], metric);
            if rows.iter().all(|r| r.values.iter().all(Option::is_none)) {
                continue;
            }
            let (title, axis) = words(&scenario.name, headline, metric);
            let chart = Chart {
                title,
                axis,
                higher_is_better: metric.higher_is_better(),
                conditions: conditions.clone(),
                series: Vec::new(),
                rows,
            };
            chart::draw(&chart, &dir.join(file_name(&scenario.name, metric)))?;
        }
    }
    draw_greedy(file, dir, conditions)
}

/// The file name of a scenario's chart of `metric`.
pub fn file_name(scenario: &str, metric: Metric) -> String {
    format!("{scenario}-{}.svg", metric.key().replace('_', "-"))
}

/// The metrics charted on their own for a scenario (greedy's are paired, see [`draw_greedy`]).
fn charted(scenario: &str, headline: Headline) -> &'static [Metric] {
    match (headline, scenario) {
        (Headline::Throughput, "pingpong") => &[
            Metric::MsgsPerSec,
            Metric::P99,
            Metric::ServerCpu,
            Metric::ServerSwitches,
        ],
        (Headline::Throughput | Headline::Accept, _) => {
            &[Metric::MsgsPerSec, Metric::P99, Metric::ServerCpu]
        }
        (Headline::Memory, _) => &[Metric::PssPerConn],
        (Headline::CheapP99, _) => &[],
    }
}

/// The cheap clients' p99, paired: alone (`greedy-baseline`) and with greedy neighbours
/// (`greedy`). With only one of the two scenarios run, its bars alone.
fn draw_greedy(file: &LabFile, dir: &Path, conditions: [String; 2]) -> Result<(), String> {
    let find = |name: &str| file.scenarios.iter().find(|s| s.name == name);
    let (series, scenarios, name): (Vec<String>, Vec<&ScenarioRecord>, &str) =
        match (find("greedy-baseline"), find("greedy")) {
            (Some(alone), Some(greedy)) => (
                vec![
                    "cheap clients alone (greedy-baseline)".into(),
                    "next to 2 greedy clients (greedy)".into(),
                ],
                vec![alone, greedy],
                "greedy",
            ),
            (None, Some(greedy)) => (Vec::new(), vec![greedy], "greedy"),
            (Some(alone), None) => (Vec::new(), vec![alone], "greedy-baseline"),
            (None, None) => return Ok(()),
        };
    let chart = Chart {
        title: format!("{name}: p99 latency of the cheap clients"),
        axis: "µs (99% of the cheap clients' messages are echoed faster)".into(),
        higher_is_better: false,
        conditions,
        series,
        rows: rows(&scenarios, Metric::CheapP99),
    };
    chart::draw(&chart, &dir.join(file_name(name, Metric::CheapP99)))?;
    Ok(())
}

/// One row per model of the first scenario, one value per scenario (the series).
fn rows(scenarios: &[&ScenarioRecord], metric: Metric) -> Vec<Row> {
    let Some(first) = scenarios.first() else {
        return Vec::new();
    };
    first
        .models
        .iter()
        .map(|model| Row {
            label: model.model.clone(),
            group: model.group,
            values: scenarios
                .iter()
                .map(|s| {
                    let record = s.models.iter().find(|m| m.model == model.model)?;
                    let stat = record.stat(metric)?;
                    Some(Value {
                        median: stat.median,
                        low: stat.min,
                        high: stat.max,
                    })
                })
                .collect(),
        })
        .collect()
}

/// The title and the axis description of a chart.
fn words(scenario: &str, headline: Headline, metric: Metric) -> (String, String) {
    let (what, axis) = match (headline, metric) {
        (Headline::Accept, Metric::MsgsPerSec) => (
            "connections per second",
            "connect / echo / close cycles per second",
        ),
        (Headline::Accept, Metric::P99) => ("p99 of connect + first echo", "µs"),
        (Headline::Accept, Metric::ServerCpu) => (
            "server CPU per connection",
            "µs of CPU per connection, whole server process tree",
        ),
        (_, Metric::MsgsPerSec) => ("echoed messages per second", "messages per second"),
        (_, Metric::P99) => ("p99 latency", "µs (99% of messages are echoed faster)"),
        (_, Metric::ServerCpu) => (
            "server CPU per message",
            "µs of CPU per echoed message, whole server process tree",
        ),
        (_, Metric::ServerSwitches) => (
            "server context switches per message",
            "voluntary + involuntary context switches per echoed message",
        ),
        (_, Metric::PssPerConn) => (
            "server memory per idle connection",
            "bytes per connection (PSS: pages shared by forked processes divided among them)",
        ),
        (_, other) => (other.column(headline), ""),
    };
    (format!("{scenario}: {what}"), axis.to_string())
}
