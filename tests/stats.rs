//! The stats lines, every model: periodic and final lines carry every documented field, the
//! counters agree with each other and with what the clients did, and the single-threaded
//! models can never lose an update of the racy counter.
//!
//! Scripts and the bench lab parse these lines (`stats k=v ...`, one per `--stats-interval`,
//! plus one ending in `final=1` at exit), so their shape is a contract like the echo itself.

mod util;

use std::time::Duration;

use util::client::{echo_many, Finish};
use util::{for_each_model, Server, Stats, Watchdog, MODELS};

/// Fields of every stats line (src/stats.rs `Stats::line`).
const COMMON: &[&str] = &[
    "accepted",
    "open",
    "closed",
    "refused",
    "idle_closed",
    "errors",
    "bytes_in",
    "bytes_out",
    "messages",
    "messages_racy",
    "lost_updates",
    "fd_exhausted",
];

#[test]
fn stats_lines_have_every_field_and_consistent_counts() {
    let _watchdog = Watchdog::new(
        "stats_lines_have_every_field_and_consistent_counts",
        Duration::from_secs(120),
    );
    for_each_model(MODELS, 4, |model| {
        let server = Server::start(
            model,
            &[
                "--stats-interval",
                "0.2",
                "--syscall-stats",
                "--workers",
                "2",
            ],
        );
        let streams: Vec<_> = (0..20).map(|_| server.connect()).collect();
        let payloads: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 50_000]).collect();
        echo_many(
            streams,
            &payloads,
            Finish::HalfClose,
            Duration::from_secs(30),
        )
        .unwrap();
        // A periodic line from after the clients left (prefork's parent prints none).
        if model != "prefork" {
            let periodic = server
                .wait_stats(Duration::from_secs(5), |s| s.get("closed") == 20)
                .expect("a periodic stats line");
            check_line(model, &periodic);
            assert_eq!(periodic.get("open"), 0, "{periodic:?}");
        }
        let exit = server.terminate(Duration::from_secs(20));
        exit.assert_clean();
        assert!(
            exit.stdout[0].starts_with("listening on "),
            "first line: {:?}",
            exit.stdout[0]
        );
        let finals = exit.final_stats();
        for line in &finals {
            check_line(model, line);
        }
        assert_eq!(exit.final_sum("accepted"), 20);
        assert_eq!(exit.final_sum("closed"), 20);
        if model != "process-per-conn" {
            assert_eq!(exit.final_sum("bytes_in"), 20 * 50_000);
            assert_eq!(exit.final_sum("bytes_out"), 20 * 50_000);
            assert!(exit.final_sum("messages") >= 20, "messages: {finals:?}");
        }
        if matches!(model, "event-loop" | "prefork" | "process-per-conn") {
            // One thread per process counts: a racy read-modify-write cannot lose anything.
            assert_eq!(exit.final_sum("lost_updates"), 0, "{finals:?}");
        }
    });
}

/// Checks one line's fields and internal consistency.
fn check_line(model: &str, s: &Stats) {
    for key in COMMON {
        s.get(key); // panics naming the missing field
    }
    assert_eq!(s.0.get("model").map(String::as_str), Some(model), "{s:?}");
    assert_eq!(
        s.get("open"),
        s.get("accepted").saturating_sub(s.get("closed")),
        "open = accepted - closed: {s:?}"
    );
    assert_eq!(
        s.get("lost_updates"),
        s.get("messages").saturating_sub(s.get("messages_racy")),
        "{s:?}"
    );
    assert!(
        s.0.contains_key("syscalls_per_msg"),
        "--syscall-stats: {s:?}"
    );
    let extra: &[&str] = match model {
        "reactor-pool" => &[
            "worker_jobs",
            "worker_panics",
            "ring_depth",
            "ring_full",
            "overlaps",
        ],
        // Its final line is checked by `reactor_offload_final_line_reports_the_pool`.
        "reactor-offload" if !s.0.contains_key("final") => {
            &["worker_jobs", "worker_panics", "ring_depth"]
        }
        "listener-pool" => &["worker_conns"],
        "process-per-conn" if !s.0.contains_key("final") => &["children"],
        _ => &[],
    };
    for key in extra {
        assert!(s.0.contains_key(*key), "[{model}] no `{key}`: {s:?}");
    }
}

#[test]
fn reactor_offload_final_line_reports_the_pool() {
    let _watchdog = Watchdog::new(
        "reactor_offload_final_line_reports_the_pool",
        Duration::from_secs(60),
    );
    let server = Server::start(
        "reactor-offload",
        &["--protocol", "lines", "--workers", "2"],
    );
    let c = server.connect();
    util::client::echo_exact(&c, b"WORK 1000 via the pool\n").unwrap();
    drop(c);
    let exit = server.terminate(Duration::from_secs(20));
    exit.assert_clean();
    let last = exit.final_stats().pop().unwrap();
    for key in ["worker_jobs", "worker_panics", "ring_depth", "ring_full"] {
        assert!(
            last.0.contains_key(key),
            "final line without `{key}`: {last:?}"
        );
    }
}

#[test]
fn reactor_offload_final_line_counts_every_job() {
    let _watchdog = Watchdog::new(
        "reactor_offload_final_line_counts_every_job",
        Duration::from_secs(120),
    );
    // One costly request goes through the pool; by the time its echo has arrived, the
    // connection has closed and the server has drained, that job is finished, so the final
    // line must count it. Ten servers, because the miss is a race (about one run in three).
    for run in 0..10 {
        let server = Server::start(
            "reactor-offload",
            &["--protocol", "lines", "--workers", "2"],
        );
        let c = server.connect();
        util::client::echo_exact(&c, b"WORK 1000 via the pool\n").unwrap();
        drop(c);
        let exit = server.terminate(Duration::from_secs(20));
        exit.assert_clean();
        let last = exit.final_stats().pop().unwrap();
        let jobs: u64 = last.0["worker_jobs"]
            .split(',')
            .map(|n| n.parse::<u64>().unwrap())
            .sum();
        assert_eq!(
            jobs, 1,
            "run {run}: one WORK through the pool, final line: {last:?}"
        );
    }
}
