//! The greedy neighbour: one client's costly `WORK` request must not stall another client's
//! cheap line in the models that serve connections on several threads or processes, while the
//! single event loop, by design, makes everyone wait (the motivating example of our notes for
//! "the listener reads, workers process").
//!
//! This is a latency property, so it is measured as robustly as a test can: the costly request
//! takes a full second, the cheap one should take microseconds, and the fast case takes the
//! best of three attempts (scheduling noise on a busy 2-core machine only ever adds latency).
//! It lives in its own test binary so that no other test of this suite competes for the cores.

mod util;

use std::io::Write;
use std::time::{Duration, Instant};

use util::client::{echo_exact, read_expecting};
use util::{no_greedy_neighbour, Model, Models, Server, Watchdog};

#[test]
fn a_costly_request_does_not_stall_other_clients_in_pooled_models() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    Models::ALL
        .only(no_greedy_neighbour)
        .parallel(1)
        .each(|target| {
            let took = (0..3)
                .map(|_| cheap_latency_beside_work(target.start(ARGS)))
                .min()
                .unwrap();
            assert!(
                took < Duration::from_millis(500),
                "a cheap line waited {took:?} behind WORK 1 s"
            );
        });
}

#[test]
fn event_loop_shows_the_greedy_neighbour() {
    let _watchdog = Watchdog::new(Duration::from_secs(60));
    // One thread does everything, so a cheap line waits for the whole costly one: the
    // behaviour our notes use to motivate the pooled models.
    let took = cheap_latency_beside_work(Server::start(Model::EventLoop, ARGS));
    assert!(
        took >= Duration::from_millis(500),
        "event-loop answered a cheap line in {took:?} during WORK 1 s"
    );
}

const ARGS: &[&str] = &["--protocol", "lines", "--workers", "2"];

/// Starts a `WORK 1000000` (1 s) on one connection, then times a cheap line on another; then
/// ends the server cleanly.
fn cheap_latency_beside_work(server: Server) -> Duration {
    let greedy = server.connect();
    let cheap = server.connect();
    echo_exact(&cheap, b"warm\n").unwrap();
    (&greedy).write_all(b"WORK 1000000 greedy\n").unwrap();
    std::thread::sleep(Duration::from_millis(100)); // let the server start burning
    let start = Instant::now();
    echo_exact(&cheap, b"ping\n").unwrap();
    let took = start.elapsed();
    read_expecting(&greedy, b"WORK 1000000 greedy\n").unwrap();
    drop((greedy, cheap));
    server.terminate(Duration::from_secs(20)).assert_clean();
    took
}
