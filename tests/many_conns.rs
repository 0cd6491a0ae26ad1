//! Ten thousand concurrent connections (the C10K of Dan Kegel's 1999 page) against the
//! epoll models built for it: `event-loop`, `reuseport` and `reactor-pool`. Every connection
//! is verified: its own bytes come back, then it half-closes and sees EOF, and afterwards the
//! server holds no descriptor more than before.
//!
//! The test process holds the client side of all 10,000 sockets, so the three models run one
//! after another (a lock serialises them) to stay under the machine's 20,000-descriptor
//! limit. One epoll-driven client thread drives them all ([`util::client::echo_many`]).

mod util;

use std::sync::Mutex;
use std::time::Duration;

use util::client::{connect_many, echo_many, Finish};
use util::{ensure_nofile, seed_for, Rng, Server, Watchdog};

const CONNS: usize = 10_000;

/// One 10,000-connection test at a time: each holds 10,000 client descriptors.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn ten_thousand_connections_event_loop() {
    ten_thousand("event-loop");
}

#[test]
fn ten_thousand_connections_reuseport() {
    ten_thousand("reuseport");
}

#[test]
fn ten_thousand_connections_reactor_pool() {
    ten_thousand("reactor-pool");
}

fn ten_thousand(model: &str) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let _watchdog = Watchdog::new(
        &format!("ten_thousand_connections {model}"),
        Duration::from_secs(240),
    );
    ensure_nofile(CONNS as u64 + 500);
    let server = Server::start(
        model,
        &[
            "--max-conns",
            "12000",
            "--backlog",
            "4096",
            "--stats-interval",
            "0.25",
        ],
    );
    let baseline_fds = server.settled_fds();
    let streams = connect_many(server.addr(), CONNS, Duration::from_secs(120)).unwrap();

    // Round 1: every connection echoes its own bytes, all open at once.
    let mut rng = Rng::new(seed_for(model));
    let payloads: Vec<Vec<u8>> = (0..CONNS).map(|i| tagged(i, &mut rng, 1)).collect();
    let streams = echo_many(
        streams,
        &payloads,
        Finish::KeepOpen,
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| panic!("[{model}] round 1: {e}"));
    let stats = server.wait_stats(Duration::from_secs(10), |s| s.get("open") == CONNS as u64);
    let open = stats.map(|s| s.get("open")).unwrap_or(0);
    assert_eq!(
        open, CONNS as u64,
        "[{model}] open connections while all are connected"
    );
    let fds = server.fd_total();
    assert!(
        fds >= baseline_fds + CONNS,
        "[{model}] {fds} descriptors for {CONNS} connections"
    );

    // Round 2: again, then half-close; each must get its echo and then EOF.
    let payloads: Vec<Vec<u8>> = (0..CONNS).map(|i| tagged(i, &mut rng, 2)).collect();
    let streams = echo_many(
        streams,
        &payloads,
        Finish::HalfClose,
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| panic!("[{model}] round 2: {e}"));
    drop(streams);

    let fds = server.wait_fds(baseline_fds, 2, Duration::from_secs(20));
    assert!(
        fds.abs_diff(baseline_fds) <= 2,
        "[{model}] descriptors: {fds} after, {baseline_fds} before"
    );
    let exit = server.terminate(Duration::from_secs(30));
    exit.assert_clean();
    assert_eq!(
        exit.final_sum("accepted"),
        CONNS as u64 + 1,
        "[{model}] accepted (plus the warm-up connection)"
    );
    assert_eq!(exit.final_sum("refused"), 0, "[{model}] refused");
}

/// A payload that names its connection and round, plus random bytes.
fn tagged(i: usize, rng: &mut Rng, round: u8) -> Vec<u8> {
    let mut p = format!("conn {i} round {round} ").into_bytes();
    let extra = rng.below(64) as usize;
    p.extend(rng.bytes(extra));
    p
}
