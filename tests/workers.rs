//! `--workers` and `--no-pin` at their edges: one worker, and more workers than cores,
//! unpinned. Every model must still echo exactly and run `WORK` requests, so that a pool sized
//! to zero, or a pinning that assumes a core per worker, shows up here rather than in a
//! benchmark.

mod util;

use std::time::Duration;

use util::client::{echo_exact, Finish};
use util::{each_model, Server, Watchdog};

#[test]
fn one_worker_serves_everything() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    each_model(&["--protocol", "lines", "--workers", "1"], check_workers);
}

#[test]
fn more_workers_than_cores_unpinned() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    let args = ["--protocol", "lines", "--workers", "5", "--no-pin"];
    each_model(&args, check_workers);
}

/// Cheap lines and WORK requests on 30 connections at once.
fn check_workers(server: &Server) {
    let c = server.connect();
    echo_exact(&c, b"WORK 1000 alone\n").unwrap();
    drop(c);
    let payloads: Vec<Vec<u8>> = (0..30)
        .map(|i| {
            format!("hello {i}\nWORK 200 conn {i}\nbye {i}\n")
                .repeat(10)
                .into_bytes()
        })
        .collect();
    server.echo_clients(&payloads, Finish::HalfClose, Duration::from_secs(30));
}
