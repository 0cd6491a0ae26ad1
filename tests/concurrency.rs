//! Many clients at once, every byte verified: 200 concurrent connections per model.
//!
//! Concurrency bugs in a server show up as crossed wires (one client's bytes in another's
//! echo), lost tails (a connection closed before its last write), or a connection starved
//! forever. Each client here sends its own random payload and gets exactly that payload back,
//! then half-closes and must see EOF; all 200 are in flight together, driven by one epoll
//! client thread ([`util::Server::echo_clients`]), plus a second shape where 50 threads do
//! request/response turns in lockstep against the same server.

mod util;

use std::time::Duration;

use util::client::{echo_exact, Finish};
use util::{counts_traffic, each_model, Exit, Models, Watchdog};

const CLIENTS: usize = 200;

#[test]
fn two_hundred_concurrent_connections_all_echo_exactly() {
    let _watchdog = Watchdog::new(Duration::from_secs(240));
    each_model(&[], |server| {
        let baseline_fds = server.settled_fds();
        let mut rng = server.rng(0);
        let payloads: Vec<Vec<u8>> = (0..CLIENTS)
            .map(|_| {
                let size = rng.below(96 * 1024) as usize + 1;
                rng.bytes(size)
            })
            .collect();
        server.echo_clients(&payloads, Finish::HalfClose, Duration::from_secs(60));
        // Every connection was closed by the server after its FIN: nothing may leak.
        server.expect_fds_back_to(baseline_fds, Duration::from_secs(10));
        move |exit: &Exit| {
            // Plus the warm-up connection of `settled_fds`, which echoed b"settle\n".
            assert_eq!(exit.final_sum("accepted"), CLIENTS as u64 + 1);
            if counts_traffic(exit.model) {
                let total: u64 = payloads.iter().map(|p| p.len() as u64).sum::<u64>() + 7;
                assert_eq!(exit.final_sum("bytes_out"), total, "bytes_out");
            }
        }
    });
}

#[test]
fn fifty_threads_in_lockstep_never_see_each_others_bytes() {
    let _watchdog = Watchdog::new(Duration::from_secs(240));
    Models::ALL.parallel(2).each_model(&[], |server| {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..50u64)
                .map(|t| {
                    s.spawn(move || {
                        let mut rng = server.rng(t);
                        let stream = server.connect();
                        for turn in 0..40 {
                            // Each message starts with the thread's id, so crossed wires would
                            // show even if sizes happened to match.
                            let mut msg = format!("thread {t} turn {turn} ").into_bytes();
                            let extra = rng.below(3000) as usize;
                            msg.extend(rng.bytes(extra));
                            echo_exact(&stream, &msg)
                                .unwrap_or_else(|e| panic!("thread {t} turn {turn}: {e}"));
                        }
                    })
                })
                .collect();
            for h in handles {
                if let Err(p) = h.join() {
                    std::panic::resume_unwind(p);
                }
            }
        });
    });
}
