//! Ten thousand concurrent connections (the C10K of Dan Kegel's 1999 page) against the
//! epoll models built for it: `event-loop`, `reuseport` and `reactor-pool`. Every connection
//! is verified: its own bytes come back, then it half-closes and sees EOF, and afterwards the
//! server holds no descriptor more than before.
//!
//! The test process holds the client side of all 10,000 sockets, so the models run one after
//! another to stay under the machine's 20,000-descriptor limit. One epoll-driven client thread
//! drives them all ([`util::client::echo_many`]).

mod util;

use std::net::TcpStream;
use std::time::Duration;

use util::client::{connect_many, echo_many, Finish};
use util::{built_for_c10k, ensure_nofile, Exit, Models, Rng, Server, Watchdog};

const CONNS: usize = 10_000;

#[test]
fn ten_thousand_connections() {
    // One model at a time: each holds 10,000 client descriptors.
    let models = Models::ALL.only(built_for_c10k).parallel(1);
    let _watchdog = Watchdog::new(Duration::from_secs(240) * models.count());
    ensure_nofile(CONNS as u64 + 500);
    let args = [
        "--max-conns",
        "12000",
        "--backlog",
        "4096",
        "--stats-interval",
        "0.25",
    ];
    models
        .exit_within(Duration::from_secs(30))
        .each_model(&args, |server| {
            let baseline_fds = server.settled_fds();
            let streams = connect_many(server.addr(), CONNS, Duration::from_secs(120)).unwrap();
            let mut rng = server.rng(0);
            let streams = all_open_at_once(server, streams, &mut rng, baseline_fds);
            // Round 2: again, then half-close; each must get its echo and then EOF.
            let payloads: Vec<Vec<u8>> = (0..CONNS).map(|i| tagged(i, &mut rng, 2)).collect();
            let within = Duration::from_secs(120);
            echo_many(streams, &payloads, Finish::HalfClose, within)
                .unwrap_or_else(|e| panic!("round 2: {e}"));
            server.expect_fds_back_to(baseline_fds, Duration::from_secs(20));
            |exit: &Exit| {
                let accepted = exit.final_sum("accepted");
                assert_eq!(
                    accepted,
                    CONNS as u64 + 1,
                    "accepted (plus the warm-up connection)"
                );
                assert_eq!(exit.final_sum("refused"), 0, "refused");
            }
        });
}

/// Round 1: every connection echoes its own bytes, all open at once; the server counts them
/// all open and holds a descriptor for each.
fn all_open_at_once(
    server: &Server,
    streams: Vec<TcpStream>,
    rng: &mut Rng,
    baseline_fds: usize,
) -> Vec<TcpStream> {
    let payloads: Vec<Vec<u8>> = (0..CONNS).map(|i| tagged(i, rng, 1)).collect();
    let streams = echo_many(
        streams,
        &payloads,
        Finish::KeepOpen,
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| panic!("round 1: {e}"));
    server
        .wait_stats(Duration::from_secs(10), |s| s.get("open") == CONNS as u64)
        .unwrap_or_else(|e| panic!("open connections while all are connected: {e}"));
    let fds = server.fd_total();
    assert!(
        fds >= baseline_fds + CONNS,
        "{fds} descriptors for {CONNS} connections"
    );
    streams
}

/// A payload that names its connection and round, plus random bytes.
fn tagged(i: usize, rng: &mut Rng, round: u8) -> Vec<u8> {
    let mut p = format!("conn {i} round {round} ").into_bytes();
    let extra = rng.below(64) as usize;
    p.extend(rng.bytes(extra));
    p
}
