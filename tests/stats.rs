//! The stats lines, every model: periodic and final lines carry every documented field, the
//! counters agree with each other and with what the clients did, and the single-threaded
//! models can never lose an update of the racy counter.
//!
//! Scripts and the bench lab parse these lines (`stats k=v ...`, one per `--stats-interval`,
//! plus one ending in `final=1` at exit), so their shape is a contract like the echo itself.

mod util;

use std::time::Duration;

use util::client::{echo_exact, Finish};
use util::Watchdog;
use util::{counts_on_one_thread, counts_traffic, each_model, Exit, Model, Server, Stats};

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
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    let args = [
        "--stats-interval",
        "0.2",
        "--syscall-stats",
        "--workers",
        "2",
    ];
    each_model(&args, |server| {
        let payloads: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 50_000]).collect();
        server.echo_clients(&payloads, Finish::HalfClose, Duration::from_secs(30));
        // A periodic line from after the clients left (prefork's parent prints none).
        if server.model() != Model::Prefork {
            let periodic = server
                .wait_stats(Duration::from_secs(5), |s| s.get("closed") == 20)
                .expect("a periodic stats line");
            check_line(server.model(), &periodic);
            assert_eq!(periodic.get("open"), 0, "{periodic:?}");
        }
        check_final_lines
    });
}

/// The final lines: every field, and counts that match what 20 clients of 50,000 bytes did.
fn check_final_lines(exit: &Exit) {
    let first = &exit.stdout[0];
    assert!(first.starts_with("listening on "), "first line: {first:?}");
    let finals = exit.final_stats();
    for line in &finals {
        check_line(exit.model, line);
    }
    assert_eq!(exit.final_sum("accepted"), 20);
    assert_eq!(exit.final_sum("closed"), 20);
    if counts_traffic(exit.model) {
        assert_eq!(exit.final_sum("bytes_in"), 20 * 50_000);
        assert_eq!(exit.final_sum("bytes_out"), 20 * 50_000);
        assert!(exit.final_sum("messages") >= 20, "messages: {finals:?}");
    }
    if counts_on_one_thread(exit.model) {
        // One thread per process counts: a racy read-modify-write cannot lose anything.
        assert_eq!(exit.final_sum("lost_updates"), 0, "{finals:?}");
    }
}

/// Checks one line's fields and internal consistency.
fn check_line(model: Model, s: &Stats) {
    for key in COMMON {
        s.get(key); // panics naming the missing field
    }
    assert_eq!(
        s.0.get("model").map(String::as_str),
        Some(model.name()),
        "{s:?}"
    );
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
    assert!(s.has("syscalls_per_msg"), "--syscall-stats: {s:?}");
    let extra: &[&str] = match model {
        Model::ReactorPool => &[
            "worker_jobs",
            "worker_panics",
            "ring_depth",
            "ring_full",
            "overlaps",
        ],
        // Its final line is checked by `reactor_offload_final_line_reports_every_job`.
        Model::ReactorOffload if !s.has("final") => &["worker_jobs", "worker_panics", "ring_depth"],
        Model::ListenerPool => &["worker_conns"],
        Model::ProcessPerConn if !s.has("final") => &["children"],
        _ => &[],
    };
    for key in extra {
        assert!(s.has(key), "[{}] no `{key}`: {s:?}", model.name());
    }
}

#[test]
fn reactor_offload_final_line_reports_every_job() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    // One costly request goes through the pool; by the time its echo has arrived, the
    // connection has closed and the server has drained, that job is finished, so the final
    // line must report the pool and count the job. Ten servers, because a miss is a race
    // (about one run in three).
    for run in 0..10 {
        let server = Server::start(
            Model::ReactorOffload,
            &["--protocol", "lines", "--workers", "2"],
        );
        let c = server.connect();
        echo_exact(&c, b"WORK 1000 via the pool\n").unwrap();
        drop(c);
        let exit = server.terminate(Duration::from_secs(20));
        exit.assert_clean();
        let last = exit.last_final();
        for key in ["worker_jobs", "worker_panics", "ring_depth", "ring_full"] {
            assert!(
                last.has(key),
                "run {run}: final line without `{key}`: {last:?}"
            );
        }
        let jobs: u64 = last.list("worker_jobs").iter().sum();
        assert_eq!(
            jobs, 1,
            "run {run}: one WORK through the pool, final line: {last:?}"
        );
    }
}

#[test]
fn periodic_and_final_lines_carry_the_same_fields_and_the_time() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    let args = ["--stats-interval", "0.2", "--workers", "2"];
    each_model(&args, |server| {
        server.echo_clients(&[b"ping\n"; 3], Finish::HalfClose, Duration::from_secs(30));
        server
            .wait_stats(Duration::from_secs(5), |s| !s.has("child"))
            .expect("a periodic stats line");
        |exit: &Exit| {
            // The server's own lines (a prefork parent's, not its children's labelled ones).
            let own: Vec<Stats> = exit
                .stats()
                .into_iter()
                .filter(|s| !s.has("child"))
                .collect();
            let periodic = own
                .iter()
                .rev()
                .find(|s| !s.has("final"))
                .expect("periodic");
            let last = own.last().expect("final");
            let keys = |s: &Stats| -> Vec<String> {
                let mut k: Vec<String> = s.0.keys().filter(|k| *k != "final").cloned().collect();
                k.sort();
                k
            };
            assert_eq!(
                keys(periodic),
                keys(last),
                "periodic {periodic:?}\nfinal {last:?}"
            );
            for s in [periodic, last] {
                let time = &s.0["time"];
                assert!(
                    time.len() >= 20 && time.starts_with("20") && time.ends_with('Z'),
                    "an RFC 3339 UTC time first: {time:?}"
                );
            }
        }
    });
}

#[test]
fn json_stats_lines_are_one_object_each_with_the_text_fields() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    for model in [Model::EventLoop, Model::ReactorPool, Model::Prefork] {
        let args = [
            "--stats-interval",
            "0.2",
            "--stats-format",
            "json",
            "--workers",
            "2",
        ];
        let server = Server::start(model, &args);
        server.echo_clients(&[b"ping\n"; 2], Finish::HalfClose, Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(500));
        let exit = server.terminate(Duration::from_secs(20));
        assert!(exit.status.success(), "[{model:?}] {:?}", exit.status);
        let objects: Vec<serde_json::Value> = exit.stdout[1..]
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let last = objects.last().expect("a final object");
        assert_eq!(last["final"], 1, "[{model:?}] {last}");
        assert_eq!(last["accepted"], 2, "[{model:?}] {last}");
        assert_eq!(last["model"], model.name(), "[{model:?}] {last}");
        assert!(last["time"].is_string(), "[{model:?}] {last}");
        for key in COMMON {
            assert!(
                last[key].is_u64(),
                "[{model:?}] `{key}` is a number: {last}"
            );
        }
    }
}
