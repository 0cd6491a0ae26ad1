//! The lab's scenarios: each one a question about the models, turned into generator runs.
//!
//! | scenario      | load                                              | the question                          |
//! |---------------|---------------------------------------------------|---------------------------------------|
//! | `pingpong`    | 64 connections, 64 B, one message in flight each  | cost of one request/response          |
//! | `stream`      | 16 connections, 4 KiB, 16 in flight each          | bulk throughput, syscall batching     |
//! | `many`        | 2,000 connections, 64 B, ping-pong                | does it scale with connections?       |
//! | `accept`      | 10,000 connect / echo / close cycles, 64 at once  | connection set-up rate                |
//! | `idle-memory` | 10,000 idle connections                           | memory (PSS) per connection           |
//! | `greedy`      | lines; 2 closed-loop clients send `WORK 2000`, 62 cheap ones at 50 msg/s each | does one costly client hurt the rest? |
//!
//! `greedy` runs twice per model: with the two greedy clients, and as `greedy-baseline` with
//! the 62 cheap clients alone, so the report can give the ratio of the cheap clients' p99.
//! `--quick` shrinks every count and duration so the whole lab runs in well under a minute
//! (a smoke test: it checks that every model echoes correctly, not how fast).

use std::net::SocketAddr;
use std::time::Duration;

use crate::load::RunConfig;
use crate::verify::Protocol;

/// Every scenario, in the lab's order.
pub const ALL: [&str; 6] = [
    "pingpong",
    "stream",
    "many",
    "accept",
    "idle-memory",
    "greedy",
];

/// Which figure answers a scenario's question.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Headline {
    /// Messages per second, p99 latency, server CPU per message.
    Throughput,
    /// Connections per second and p99 of connect + echo.
    Accept,
    /// Server memory (PSS) per idle connection.
    Memory,
    /// p99 of the cheap clients (with or without greedy neighbours).
    CheapP99,
}

/// One kind of generator run the lab repeats for every model.
#[derive(Clone, Debug)]
pub struct Variant {
    /// Name in reports and file names (`greedy-baseline` for the second greedy run).
    pub name: &'static str,
    /// What the run measures, one line for `results.md`.
    pub about: &'static str,
    /// Which figure to put first.
    pub headline: Headline,
    /// The run, with a placeholder address and no server pid (the lab fills both in).
    pub template: RunConfig,
}

/// Lengths of the runs.
#[derive(Copy, Clone, Debug)]
pub struct Timing {
    /// Smoke-test sizes (`--quick`).
    pub quick: bool,
    /// Measured window of the duration-bound scenarios.
    pub duration: Duration,
    /// Warm-up before it.
    pub warmup: Duration,
    /// Generator threads.
    pub threads: usize,
}

/// The runs of the scenarios named in `selected`, in the lab's order.
pub fn variants(selected: &[String], timing: Timing) -> Vec<Variant> {
    let mut out = Vec::new();
    for name in ALL.iter().filter(|n| selected.iter().any(|s| s == *n)) {
        match *name {
            "pingpong" => out.push(pingpong(timing)),
            "stream" => out.push(stream(timing)),
            "many" => out.push(many(timing)),
            "accept" => out.push(accept(timing)),
            "idle-memory" => out.push(idle_memory(timing)),
            "greedy" => out.extend(greedy(timing)),
            _ => unreachable!("ALL lists only known scenarios"),
        }
    }
    out
}

/// The headline of a variant by its name (how `lab --replot` finds it again).
pub fn headline(variant: &str) -> Headline {
    match variant {
        "accept" => Headline::Accept,
        "idle-memory" => Headline::Memory,
        "greedy" | "greedy-baseline" => Headline::CheapP99,
        _ => Headline::Throughput,
    }
}

/// The base of every run: timing, a placeholder address, a bounded set-up.
fn base(timing: Timing) -> RunConfig {
    let placeholder = SocketAddr::from(([127, 0, 0, 1], 0));
    RunConfig {
        duration: timing.duration,
        warmup: timing.warmup,
        threads: timing.threads,
        // A stalled connection is an error the lab must report, but a quick run should not
        // wait long to find it.
        grace: Duration::from_secs(if timing.quick { 3 } else { 5 }),
        stall_timeout: Duration::from_secs(if timing.quick { 3 } else { 5 }),
        setup_timeout: Duration::from_secs(if timing.quick { 15 } else { 120 }),
        ..RunConfig::new(placeholder)
    }
}

fn pingpong(timing: Timing) -> Variant {
    Variant {
        name: "pingpong",
        about: "64 connections, 64 B messages, one in flight each: the cost of a request/response",
        headline: Headline::Throughput,
        template: RunConfig {
            conns: 64,
            size: 64,
            depth: 1,
            ..base(timing)
        },
    }
}

fn stream(timing: Timing) -> Variant {
    Variant {
        name: "stream",
        about: "16 connections, 4 KiB messages, 16 in flight each: bulk throughput",
        headline: Headline::Throughput,
        template: RunConfig {
            conns: 16,
            size: 4096,
            depth: 16,
            ..base(timing)
        },
    }
}

fn many(timing: Timing) -> Variant {
    Variant {
        name: "many",
        about: "2,000 ping-pong connections of 64 B (200 with --quick): scaling with connections",
        headline: Headline::Throughput,
        template: RunConfig {
            conns: if timing.quick { 200 } else { 2_000 },
            size: 64,
            depth: 1,
            ..base(timing)
        },
    }
}

fn accept(timing: Timing) -> Variant {
    let cycles = if timing.quick { 500 } else { 10_000 };
    Variant {
        name: "accept",
        about: "10,000 connect / one echo / close cycles, 64 at a time (500 with --quick)",
        headline: Headline::Accept,
        template: RunConfig {
            conns: 64,
            size: 64,
            connect_only: Some(cycles),
            // The cycles end the run; the duration is only its upper bound.
            duration: Duration::from_secs(if timing.quick { 10 } else { 60 }),
            warmup: Duration::ZERO,
            ..base(timing)
        },
    }
}

fn idle_memory(timing: Timing) -> Variant {
    Variant {
        name: "idle-memory",
        about: "10,000 idle connections (500 with --quick), each echoed once: server memory (PSS) per connection",
        headline: Headline::Memory,
        template: RunConfig {
            conns: 0,
            idle: if timing.quick { 500 } else { 10_000 },
            size: 64,
            duration: Duration::from_millis(if timing.quick { 100 } else { 500 }),
            warmup: Duration::ZERO,
            ..base(timing)
        },
    }
}

fn greedy(timing: Timing) -> [Variant; 2] {
    // The cheap clients are open loop at a light, steady rate (50 msg/s each): their p99 then
    // measures the server's responsiveness, not queueing we caused ourselves. The greedy
    // clients stay closed loop: each keeps one `WORK 2000` in flight at all times.
    let lines = RunConfig {
        protocol: Protocol::Lines,
        size: 64,
        depth: 1,
        work_us: 2_000,
        rate: Some(3_100.0),
        ..base(timing)
    };
    [
        Variant {
            name: "greedy",
            about: "lines; 2 clients send `WORK 2000` (2 ms of server CPU each), 62 cheap ones: cheap p99",
            headline: Headline::CheapP99,
            template: RunConfig { conns: 64, greedy: 2, ..lines.clone() },
        },
        Variant {
            name: "greedy-baseline",
            about: "lines; the same 62 cheap clients alone, to give the greedy ratio",
            headline: Headline::CheapP99,
            template: RunConfig { conns: 62, greedy: 0, ..lines },
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_has_a_valid_run() {
        let timing = Timing {
            quick: true,
            duration: Duration::from_millis(300),
            warmup: Duration::from_millis(100),
            threads: 1,
        };
        let all: Vec<String> = ALL.iter().map(|s| s.to_string()).collect();
        let variants = variants(&all, timing);
        assert_eq!(variants.len(), ALL.len() + 1);
        for v in &variants {
            assert!(v.template.validate().is_ok(), "{}", v.name);
            assert_eq!(headline(v.name), v.headline, "{}", v.name);
        }
        let greedy = variants.iter().find(|v| v.name == "greedy").unwrap();
        assert_eq!((greedy.template.conns, greedy.template.greedy), (64, 2));
    }
}
