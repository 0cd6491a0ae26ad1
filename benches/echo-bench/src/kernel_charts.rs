//! Which charts the kernel lab draws from a [`KernelFile`], and what each one says.
//!
//! - `backlog-accept-queue.svg`: the accept queue's depth over time, a line per backlog, from
//!   the burst (the server already stopped) past SIGCONT. A small backlog flattens at
//!   backlog + 1 (the kernel admits one more than the backlog) while a large one takes the
//!   whole burst.
//! - `backlog-connected.svg`: the share of the burst whose `connect` had returned, over time.
//!   The steps a second apart are SYN retransmissions: a dropped SYN is sent again 1 s later,
//!   and again (this kernel spaces its first retries a second apart,
//!   `net.ipv4.tcp_syn_linear_timeouts`; older ones double the wait: 1 s, 3 s, 7 s...).
//! - `backlog-echoed.svg`: the share whose line came back. A client whose final ACK was
//!   dropped (it found the queue full) believes it is connected, sends its request, and waits
//!   for a retransmission: after a retransmitted SYN, 3 s (RFC 6298 §5.7).
//! - `backlog-overflows.svg`: `ListenOverflows` per backlog and `tcp_abort_on_overflow`, with
//!   how the clients ended.
//! - `synflood-syn-queue.svg`: half-open connections over time, a line per `tcp_syncookies`.
//! - `synflood-counters.svg`: `TCPReqQFullDrop` (SYNs dropped) and `SyncookiesSent` over time.
//! - `synflood-legit.svg`: the share of legitimate clients served during the flood.
//! - `synflood-connect-latency.svg`: each legitimate client's connect latency by start time.
//! - `fairness-jain-conns.svg`, `fairness-jain-jobs.svg`, `fairness-latency-avg-ms.svg`,
//!   `fairness-latency-max-ms.svg`, `fairness-latency-stdev-ms.svg`: one bar per model
//!   ([`crate::chart`]), and `fairness-worker-conns.svg`, `fairness-worker-jobs.svg`: each
//!   model's bar split into its workers' shares.

use std::path::Path;

use crate::chart::{self, Chart, Row, Value};
use crate::clients::{self, ClientRecord, Outcome};
use crate::fairness::FairnessRun;
use crate::histo::{median, min_max};
use crate::kernel_lab::KernelFile;
use crate::kernel_md::{conditions_of, connect_quantile, seconds, typical};
use crate::netstat::Counter;
use crate::plot::{self, Bar, BarChart, Heading, LineChart, Series, SharesChart};
use crate::queues::{BacklogRun, SynfloodRun};

/// Draws every chart the file has data for into `dir`.
pub fn draw_all(file: &KernelFile, dir: &Path) -> Result<(), String> {
    let conditions = conditions_of(file);
    // The namespace experiments run once per setting, whatever --reps says.
    let once = [once_per_setting(&conditions[0]), conditions[1].clone()];
    if !file.backlog.is_empty() {
        backlog(&file.backlog, &once, dir)?;
    }
    if !file.synflood.is_empty() {
        synflood(&file.synflood, &once, dir)?;
    }
    if !file.fairness.is_empty() {
        fairness(file, &conditions, dir)?;
    }
    Ok(())
}

/// `full run, median of 3 runs per model... · date` -> `full run, one run per setting... · date`.
fn once_per_setting(line: &str) -> String {
    let mode = line.split(',').next().unwrap_or("");
    let date = line.rsplit(" · ").next().unwrap_or("");
    format!("{mode}, one run per setting, each in a network namespace of its own · {date}")
}

fn heading(title: &str, reading: &str, conditions: &[String; 2]) -> Heading {
    Heading {
        title: title.into(),
        reading: reading.into(),
        conditions: conditions.clone(),
    }
}

/// The runs with `tcp_abort_on_overflow` 0 (or all, if none has it): one line per backlog.
fn lines_of(runs: &[BacklogRun]) -> Vec<&BacklogRun> {
    let zero: Vec<&BacklogRun> = runs
        .iter()
        .filter(|r| !r.config.abort_on_overflow)
        .collect();
    if zero.is_empty() {
        runs.iter().collect()
    } else {
        zero
    }
}

fn backlog(runs: &[BacklogRun], conditions: &[String; 2], dir: &Path) -> Result<(), String> {
    let shown = lines_of(runs);
    let first = shown[0];
    let resumed = first.resumed_at_s - first.burst_at_s;
    let markers = vec![
        (
            0.0,
            format!("burst of {} (server stopped)", first.config.burst),
        ),
        (resumed, "SIGCONT".to_string()),
    ];
    let queue = LineChart {
        heading: heading(
            "backlog: accept-queue depth while the server is stopped",
            "connections waiting for accept(2), per listen backlog; a full queue drops new SYNs",
            conditions,
        ),
        x_axis: "seconds since the burst".into(),
        y_axis: "accept queue (connections)".into(),
        series: shown
            .iter()
            .map(|r| Series {
                name: format!("backlog {}", r.config.backlog),
                points: r
                    .samples
                    .iter()
                    .map(|s| (s.t_s - r.burst_at_s, f64::from(s.queues.accept_queue)))
                    .filter(|p| p.0 >= -0.05)
                    .collect(),
            })
            .collect(),
        markers: markers.clone(),
        linear: false,
    };
    plot::lines(&queue, &dir.join("backlog-accept-queue.svg"))?;
    let connected = LineChart {
        heading: heading(
            "backlog: clients connected over time",
            "share of the burst whose connect(2) returned; steps a second apart are SYN retransmissions",
            conditions,
        ),
        x_axis: "seconds since the burst".into(),
        y_axis: "% of the burst connected".into(),
        series: shown
            .iter()
            .map(|r| Series {
                name: format!("backlog {}", r.config.backlog),
                points: cumulative(r, |c| c.connect_s),
            })
            .collect(),
        markers,
        linear: true,
    };
    plot::lines(&connected, &dir.join("backlog-connected.svg"))?;
    let echoed = LineChart {
        heading: heading(
            "backlog: clients served over time",
            "share of the burst whose line came back; a client can be connected and not served",
            conditions,
        ),
        series: shown
            .iter()
            .map(|r| Series {
                name: format!("backlog {}", r.config.backlog),
                points: cumulative(r, |c| c.echo_s),
            })
            .collect(),
        y_axis: "% of the burst echoed".into(),
        ..connected
    };
    plot::lines(&echoed, &dir.join("backlog-echoed.svg"))?;
    plot::bars(
        &overflow_bars(runs, conditions),
        &dir.join("backlog-overflows.svg"),
    )
}

/// The percentage of a run's clients past a milestone (`when`: seconds from their start) at
/// each instant since the burst, as a step line to the end of the run.
fn cumulative(run: &BacklogRun, when: impl Fn(&ClientRecord) -> Option<f64>) -> Vec<(f64, f64)> {
    let origin = run.burst_at_s;
    let mut times: Vec<f64> = run
        .clients
        .iter()
        .filter_map(|c| Some(c.start_s + when(c)? - origin))
        .collect();
    times.sort_by(f64::total_cmp);
    let n = run.clients.len().max(1) as f64;
    let mut points = vec![(0.0, 0.0)];
    let mut level = 0.0;
    for (i, &t) in times.iter().enumerate() {
        // One step per millisecond at most: thousands of clients connect within a few, and a
        // step per client would only make the file heavy.
        if times.get(i + 1).is_some_and(|&next| next - t < 0.001) {
            continue;
        }
        points.push((t, level));
        level = 100.0 * (i + 1) as f64 / n;
        points.push((t, level));
    }
    let end = run.samples.last().map_or(0.0, |s| s.t_s - origin);
    let done = 100.0 * times.len() as f64 / n;
    points.push((end.max(times.last().copied().unwrap_or(0.0)), done));
    points
}

fn overflow_bars(runs: &[BacklogRun], conditions: &[String; 2]) -> BarChart {
    let bars = runs
        .iter()
        .map(|r| {
            let count = |c| r.counters.get(&c).copied().unwrap_or(0);
            let (overflows, drops) = (count(Counter::ListenOverflows), count(Counter::ListenDrops));
            Bar {
                label: format!(
                    "backlog {} · abort {}",
                    r.config.backlog,
                    u8::from(r.config.abort_on_overflow)
                ),
                value: overflows as f64,
                text: format!("{overflows} (drops {drops}) · {}", ends(&r.clients)),
                colour: usize::from(r.config.abort_on_overflow),
            }
        })
        .collect();
    BarChart {
        heading: heading(
            "backlog: ListenOverflows per listen backlog",
            "SYNs (and final ACKs) that found the accept queue full, with tcp_abort_on_overflow 0 \
             and 1; lower is better",
            conditions,
        ),
        axis: "TcpExt ListenOverflows (and ListenDrops) during the run · how the clients ended"
            .into(),
        bars,
    }
}

/// `60 echoed, 4 reset` (and the other endings when there are any).
fn ends(records: &[ClientRecord]) -> String {
    let mut text = format!(
        "{} echoed, {} reset",
        clients::count(records, Outcome::Echoed),
        clients::count(records, Outcome::Reset)
    );
    for (outcome, name) in [
        (Outcome::TimedOut, "timed out"),
        (Outcome::Failed, "failed"),
    ] {
        match clients::count(records, outcome) {
            0 => {}
            n => text += &format!(", {n} {name}"),
        }
    }
    text
}

fn synflood(runs: &[SynfloodRun], conditions: &[String; 2], dir: &Path) -> Result<(), String> {
    let first = &runs[0];
    let markers = vec![
        (0.0, "flood starts".to_string()),
        (
            first.flood_end_s - first.flood_at_s,
            "flood ends".to_string(),
        ),
    ];
    let name = |r: &SynfloodRun| format!("tcp_syncookies {}", r.config.syncookies);
    let queue = LineChart {
        heading: heading(
            "synflood: SYN queue (half-open connections) during the flood",
            "request sockets waiting for a final ACK that never comes; cookies need none",
            conditions,
        ),
        x_axis: "seconds since the flood started".into(),
        y_axis: "half-open connections".into(),
        series: runs
            .iter()
            .map(|r| Series {
                name: name(r),
                points: r
                    .samples
                    .iter()
                    .map(|s| (s.t_s - r.flood_at_s, f64::from(s.queues.syn_queue)))
                    .filter(|p| p.0 >= -0.05)
                    .collect(),
            })
            .collect(),
        markers: markers.clone(),
        linear: false,
    };
    plot::lines(&queue, &dir.join("synflood-syn-queue.svg"))?;
    plot::lines(
        &counter_lines(runs, conditions, markers.clone()),
        &dir.join("synflood-counters.svg"),
    )?;
    plot::bars(
        &legit_bars(runs, conditions),
        &dir.join("synflood-legit.svg"),
    )?;
    let latency = LineChart {
        heading: heading(
            "synflood: connect latency of the legitimate clients",
            "by start time; a client that never connected is drawn at its deadline; lower is better",
            conditions,
        ),
        x_axis: "client's start, seconds since the flood started".into(),
        y_axis: "connect latency (ms)".into(),
        series: runs
            .iter()
            .map(|r| Series {
                name: name(r),
                points: r
                    .clients
                    .iter()
                    .map(|c| {
                        let latency = c.connect_s.unwrap_or(r.config.deadline_s);
                        (c.start_s - r.flood_at_s, latency * 1e3)
                    })
                    .collect(),
            })
            .collect(),
        markers,
        linear: false,
    };
    plot::lines(&latency, &dir.join("synflood-connect-latency.svg"))
}

/// `TCPReqQFullDrop` where cookies are off, `SyncookiesSent` where they are on.
fn counter_lines(
    runs: &[SynfloodRun],
    conditions: &[String; 2],
    markers: Vec<(f64, String)>,
) -> LineChart {
    let series = runs
        .iter()
        .map(|r| {
            let counter = match r.config.syncookies {
                0 => Counter::TCPReqQFullDrop,
                _ => Counter::SyncookiesSent,
            };
            Series {
                name: format!("tcp_syncookies {}: {}", r.config.syncookies, counter.name()),
                points: r
                    .samples
                    .iter()
                    .map(|s| {
                        (
                            s.t_s - r.flood_at_s,
                            s.counters.get(&counter).copied().unwrap_or(0) as f64,
                        )
                    })
                    .filter(|p| p.0 >= -0.05)
                    .collect(),
            }
        })
        .collect();
    LineChart {
        heading: heading(
            "synflood: SYNs dropped, or answered with a cookie",
            "TcpExt counters since the start: without cookies a full SYN queue drops SYNs",
            conditions,
        ),
        x_axis: "seconds since the flood started".into(),
        y_axis: "SYNs (cumulative)".into(),
        series,
        markers,
        linear: false,
    }
}

fn legit_bars(runs: &[SynfloodRun], conditions: &[String; 2]) -> BarChart {
    let bars = runs
        .iter()
        .map(|r| {
            let echoed = clients::count(&r.clients, Outcome::Echoed);
            let share = 100.0 * echoed as f64 / r.clients.len().max(1) as f64;
            let p50 = seconds(connect_quantile(&r.clients, 0.5));
            Bar {
                label: format!("tcp_syncookies {}", r.config.syncookies),
                value: share,
                text: format!(
                    "{share:.0}% ({echoed}/{}) · connect p50 {p50}",
                    r.clients.len()
                ),
                colour: usize::from(r.config.syncookies),
            }
        })
        .collect();
    BarChart {
        heading: heading(
            "synflood: legitimate clients served during the flood",
            "share that connected and got their echo before their deadline; higher is better",
            conditions,
        ),
        axis: "% of the legitimate clients".into(),
        bars,
    }
}

fn fairness(file: &KernelFile, conditions: &[String; 2], dir: &Path) -> Result<(), String> {
    type Figure = fn(&FairnessRun) -> Option<f64>;
    let figures: [(&str, &str, &str, bool, Figure); 5] = [
        (
            "jain-conns",
            "Jain's index of connections per worker",
            "1 = every worker took as many connections",
            true,
            |r| r.jain_conns,
        ),
        (
            "jain-jobs",
            "Jain's index of requests per worker",
            "1 = every worker served as many requests",
            true,
            |r| r.jain_jobs,
        ),
        (
            "latency-avg-ms",
            "average latency",
            "ms from connect to echo, per connection",
            false,
            |r| Some(r.latency.avg_ms),
        ),
        (
            "latency-max-ms",
            "worst latency",
            "ms from connect to echo, slowest connection",
            false,
            |r| Some(r.latency.max_ms),
        ),
        (
            "latency-stdev-ms",
            "latency standard deviation",
            "ms: how much connections differ",
            false,
            |r| Some(r.latency.stdev_ms),
        ),
    ];
    for (key, what, axis, higher, figure) in figures {
        let rows = file
            .fairness
            .iter()
            .map(|record| {
                let values: Vec<f64> = record.runs.iter().filter_map(figure).collect();
                let value = match (median(&values), min_max(&values)) {
                    (Some(median), Some((low, high))) => Some(Value { median, low, high }),
                    _ => None,
                };
                Row {
                    label: record.model.clone(),
                    group: record.group,
                    values: vec![value],
                }
            })
            .collect();
        let chart = Chart {
            title: format!("fairness: {what}"),
            axis: axis.into(),
            higher_is_better: higher,
            conditions: conditions.clone(),
            series: Vec::new(),
            rows,
        };
        chart::draw(&chart, &dir.join(format!("fairness-{key}.svg")))?;
    }
    for (key, what) in [("conns", "connections"), ("jobs", "requests")] {
        let rows = file
            .fairness
            .iter()
            .map(|record| {
                let counts = typical(record).map_or(Vec::new(), |run| {
                    run.workers
                        .iter()
                        .map(|w| {
                            if key == "conns" {
                                w.conns.unwrap_or(0)
                            } else {
                                w.jobs
                            }
                        })
                        .collect()
                });
                (record.model.clone(), counts)
            })
            .collect();
        let chart = SharesChart {
            heading: heading(
                &format!("fairness: each worker's share of the {what}"),
                "equal segments are a fair split; \"no figure\" where workers do not own connections",
                conditions,
            ),
            rows,
        };
        plot::shares(&chart, &dir.join(format!("fairness-worker-{key}.svg")))?;
    }
    Ok(())
}
