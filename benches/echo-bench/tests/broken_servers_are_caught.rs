//! Against servers that break the echo contract, the generator counts the breakage as an error
//! of the right kind, ends in bounded time, and the binary exits non-zero. A verifier that
//! cannot fail is a defect: these tests are what proves ours can.

mod util;

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use echo_bench::{ErrorKind, RunConfig, RunReport};
use util::{quick_config, serve, Behaviour};

fn run_against(behaviour: Behaviour) -> RunReport {
    let report = echo_bench::run(&quick_config(serve(behaviour))).expect("valid config");
    assert!(
        !report.ok(),
        "a broken server ({behaviour:?}) passed: {}",
        report.human()
    );
    report
}

#[test]
fn a_flipped_byte_is_a_mismatch() {
    // Offset 1000 falls in the 16th message of the first connection.
    let report = run_against(Behaviour::FlipByteAt(1_000));
    assert!(
        report.errors.get(ErrorKind::Mismatch) >= 1,
        "{}",
        report.human()
    );
    assert!(
        report
            .error_samples
            .iter()
            .any(|s| s.contains("byte 40 of 64")),
        "{:?}",
        report.error_samples
    );
}

#[test]
fn a_duplicated_stream_is_a_mismatch() {
    let report = run_against(Behaviour::DuplicateFrom(640));
    assert!(
        report.errors.get(ErrorKind::Mismatch) >= 1,
        "{}",
        report.human()
    );
}

#[test]
fn a_closed_connection_is_a_short_echo_or_a_reset() {
    let report = run_against(Behaviour::CloseAfter(2_000));
    let counted = report.errors.get(ErrorKind::Short) + report.errors.get(ErrorKind::Reset);
    assert_eq!(counted, 8, "one error per connection: {}", report.human());
}

#[test]
fn a_reset_is_counted() {
    let report = run_against(Behaviour::ResetAfter(2_000));
    assert!(
        report.errors.get(ErrorKind::Reset) >= 1,
        "{}",
        report.human()
    );
}

#[test]
fn a_server_that_stops_echoing_stalls_and_the_run_still_ends() {
    let start = Instant::now();
    let report = run_against(Behaviour::SwallowAfter(1_000));
    assert_eq!(report.errors.get(ErrorKind::Stall), 8, "{}", report.human());
    // 0.2 s warm-up + 0.5 s window + 2 s grace, plus set-up: far below 10 s.
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn a_server_closing_idle_connections_is_caught() {
    let addr = serve(Behaviour::CloseIdleAfter(64));
    let cfg = RunConfig {
        conns: 0,
        idle: 20,
        ..quick_config(addr)
    };
    let report = echo_bench::run(&cfg).unwrap();
    assert!(!report.ok(), "{}", report.human());
    let counted = report.errors.get(ErrorKind::Closed) + report.errors.get(ErrorKind::Reset);
    assert_eq!(counted, 20, "{}", report.human());
}

#[test]
fn a_refused_connection_is_a_connect_error() {
    // Bind then drop a listener: nothing listens on that port any more.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let report = echo_bench::run(&quick_config(addr)).unwrap();
    assert_eq!(
        report.errors.get(ErrorKind::Connect),
        8,
        "{}",
        report.human()
    );
    let churn = RunConfig {
        connect_only: Some(50),
        ..quick_config(addr)
    };
    let report = echo_bench::run(&churn).unwrap();
    assert_eq!(
        report.errors.get(ErrorKind::Connect),
        50,
        "{}",
        report.human()
    );
}

#[test]
fn the_binary_exits_non_zero_on_errors_and_zero_without() {
    let bench = env!("CARGO_BIN_EXE_echo-bench");
    let run = |addr: std::net::SocketAddr| {
        Command::new(bench)
            .args([
                "--addr",
                &addr.to_string(),
                "--conns",
                "4",
                "--duration",
                "300ms",
            ])
            .args(["--warmup", "100ms", "--grace", "2s", "--json"])
            .output()
            .expect("run echo-bench")
    };
    let good = run(serve(Behaviour::Echo));
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(String::from_utf8_lossy(&good.stdout).contains("\"ok\": true"));
    let bad = run(serve(Behaviour::FlipByteAt(100)));
    assert_eq!(bad.status.code(), Some(1));
    let json = String::from_utf8_lossy(&bad.stdout);
    assert!(
        json.contains("\"ok\": false") && json.contains("\"mismatch\": 4"),
        "{json}"
    );
}
