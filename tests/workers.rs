//! `--workers` and `--no-pin` at their edges: one worker, and more workers than cores,
//! unpinned. Every model must still echo exactly and run `WORK` requests, so that a pool sized
//! to zero, or a pinning that assumes a core per worker, shows up here rather than in a
//! benchmark.

mod util;

use std::time::Duration;

use util::client::{echo_exact, echo_many, Finish};
use util::{for_each_model, Server, Watchdog, MODELS};

#[test]
fn one_worker_serves_everything() {
    let _watchdog = Watchdog::new("one_worker_serves_everything", Duration::from_secs(120));
    for_each_model(MODELS, 4, |model| check_workers(model, &["--workers", "1"]));
}

#[test]
fn more_workers_than_cores_unpinned() {
    let _watchdog = Watchdog::new("more_workers_than_cores_unpinned", Duration::from_secs(120));
    for_each_model(MODELS, 4, |model| {
        check_workers(model, &["--workers", "5", "--no-pin"])
    });
}

/// Cheap lines and WORK requests on 30 connections at once, then a clean exit.
fn check_workers(model: &str, workers: &[&str]) {
    let mut args = vec!["--protocol", "lines"];
    args.extend_from_slice(workers);
    let server = Server::start(model, &args);
    let c = server.connect();
    echo_exact(&c, b"WORK 1000 alone\n").unwrap();
    drop(c);
    let streams: Vec<_> = (0..30).map(|_| server.connect()).collect();
    let payloads: Vec<Vec<u8>> = (0..30)
        .map(|i| {
            format!("hello {i}\nWORK 200 conn {i}\nbye {i}\n")
                .repeat(10)
                .into_bytes()
        })
        .collect();
    echo_many(
        streams,
        &payloads,
        Finish::HalfClose,
        Duration::from_secs(30),
    )
    .unwrap();
    server.terminate(Duration::from_secs(20)).assert_clean();
}
