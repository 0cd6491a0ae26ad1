//! reactor-pool with a tiny ring: the reactor must never block and never lose a readiness
//! event when `Pool::submit` refuses (the key goes to the reactor's backlog and is retried).
//! A ring of 2 slots and one worker against 200 busy clients makes the ring full thousands of
//! times; every client must still get exactly its bytes back, and `ring_full` proves the
//! backlog path really ran.

mod util;

use std::time::Duration;

use util::client::Finish;
use util::{Model, Server, Watchdog};

#[test]
fn a_full_ring_loses_no_readiness_event() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    let server = Server::start(
        Model::ReactorPool,
        &["--ring-capacity", "2", "--workers", "1", "--no-pin"],
    );
    let payloads: Vec<Vec<u8>> = (0..200u32)
        .map(|i| {
            (0..20_000u32)
                .map(|j| (i.wrapping_mul(31) ^ j) as u8)
                .collect()
        })
        .collect();
    // Every client gets exactly its bytes back through a 2-slot ring.
    server.echo_clients(&payloads, Finish::HalfClose, Duration::from_secs(60));
    let exit = server.terminate(Duration::from_secs(20));
    exit.assert_clean();
    let ring_full = exit.final_sum("ring_full");
    assert!(
        ring_full > 0,
        "200 clients through a 2-slot ring never filled it (ring_full=0): the test proves nothing"
    );
    assert_eq!(
        exit.final_sum("overlaps"),
        0,
        "a retried key was dispatched twice"
    );
    assert_eq!(exit.final_sum("bytes_out"), 200 * 20_000, "bytes echoed");
}
