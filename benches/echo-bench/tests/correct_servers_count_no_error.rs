//! Against a correct echo server, every mode of the generator counts zero errors and measures
//! what it claims to (messages, latency, the open-loop rate, connect cycles, idle connections).

mod util;

use std::time::Duration;

use echo_bench::{Protocol, RunConfig};
use util::{quick_config, serve, Behaviour};

fn run_ok(cfg: &RunConfig) -> echo_bench::RunReport {
    let report = echo_bench::run(cfg).expect("valid config");
    assert!(report.ok(), "unexpected errors: {}", report.human());
    report
}

#[test]
fn pingpong_has_no_error_and_records_every_message() {
    let addr = serve(Behaviour::Echo);
    let report = run_ok(&quick_config(addr));
    assert!(report.messages > 100, "{}", report.human());
    let latency = report.latency.expect("latency recorded");
    assert_eq!(latency.count, report.messages);
    assert!(latency.p50_us > 0.0 && latency.p50_us <= latency.p99_us);
    assert_eq!(report.established, 8);
    assert_eq!(report.bytes, report.messages * 64);
}

#[test]
fn deep_pipelines_of_large_messages_have_no_error() {
    let addr = serve(Behaviour::Echo);
    // 4 KiB x 16 in flight, then messages larger than the socket buffers, so that writes
    // are partial and echoes arrive split across many reads.
    for (size, depth) in [(4096, 16), (300_000, 2)] {
        let cfg = RunConfig {
            conns: 4,
            size,
            depth,
            ..quick_config(addr)
        };
        let report = run_ok(&cfg);
        assert!(report.messages > 0, "{}", report.human());
        assert_eq!(report.bytes, report.messages * size as u64);
    }
}

#[test]
fn several_threads_share_the_connections() {
    let addr = serve(Behaviour::Echo);
    let cfg = RunConfig {
        conns: 10,
        threads: 3,
        ..quick_config(addr)
    };
    let report = run_ok(&cfg);
    assert_eq!(report.established, 10);
    assert!(report.messages > 0);
}

#[test]
fn open_loop_holds_the_requested_rate() {
    let addr = serve(Behaviour::Echo);
    let cfg = RunConfig {
        rate: Some(2_000.0),
        ..quick_config(addr)
    };
    let report = run_ok(&cfg);
    // 2,000 msg/s over a 0.5 s window: 1,000 messages, give or take the window's edges and a
    // busy machine's scheduling. A closed loop over 8 connections would echo ten times more.
    assert!(
        (500..=1_300).contains(&report.messages),
        "{}",
        report.human()
    );
}

#[test]
fn idle_connections_are_opened_and_held() {
    let addr = serve(Behaviour::Echo);
    let cfg = RunConfig {
        conns: 2,
        idle: 200,
        ..quick_config(addr)
    };
    let report = run_ok(&cfg);
    assert_eq!((report.established, report.idle_established), (2, 200));
}

#[test]
fn connect_only_completes_every_cycle() {
    let addr = serve(Behaviour::Echo);
    let cfg = RunConfig {
        conns: 16,
        connect_only: Some(300),
        duration: Duration::from_secs(20),
        ..quick_config(addr)
    };
    let report = run_ok(&cfg);
    assert_eq!(report.messages, 300, "{}", report.human());
    assert!(report.msgs_per_sec > 0.0 && report.window_s < 20.0);
}

#[test]
fn greedy_clients_are_measured_apart_from_cheap_ones() {
    let addr = serve(Behaviour::Lines);
    let cfg = RunConfig {
        conns: 6,
        greedy: 2,
        protocol: Protocol::Lines,
        work_us: 1_000,
        ..quick_config(addr)
    };
    let report = run_ok(&cfg);
    let cheap = report.cheap_latency.expect("cheap clients measured");
    let greedy = report.greedy_latency.expect("greedy clients measured");
    // Every WORK line costs the server at least 1 ms; a cheap line costs nothing.
    assert!(greedy.p50_us >= 1_000.0, "{}", report.human());
    assert!(cheap.p50_us < greedy.p50_us, "{}", report.human());
    assert_eq!(cheap.count + greedy.count, report.messages);
}
