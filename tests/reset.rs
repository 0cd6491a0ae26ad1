//! Clients that vanish with an RST, in every state of a connection: the server closes that
//! connection only, leaks no descriptor, and keeps serving everyone else.
//!
//! An RST makes the next read(2) or write(2) on the server's socket fail with ECONNRESET, or a
//! write fail with EPIPE (tcp(7)); a server that treats either as fatal, or forgets to close
//! the socket on that path, is the bug this file looks for. The client sends RST by closing
//! with SO_LINGER {1, 0} (socket(7)).

mod util;

use std::io::{Read, Write};
use std::time::Duration;

use util::client::fill_without_reading;
use util::client::{echo_exact, reset};
use util::{each_model, Watchdog};

#[test]
fn client_resets_mid_stream_do_not_disturb_other_clients() {
    let _watchdog = Watchdog::new(Duration::from_secs(240));
    each_model(&[], |server| {
        let mut rng = server.rng(0);
        let baseline_fds = server.settled_fds();
        let bystander = server.connect();
        echo_exact(&bystander, b"before\n").unwrap();
        for round in 0..6 {
            // Right after connecting (perhaps before the server even accepted).
            reset(server.connect());
            // After a small request, with its echo unread.
            let s = server.connect();
            (&s).write_all(b"hello, then gone").unwrap();
            reset(s);
            // With the server blocked on a full socket: the client never reads, so the
            // server holds pending echo bytes when the RST arrives.
            let s = server.connect();
            let quiet = Duration::from_millis(100);
            fill_without_reading(&s, &rng.bytes(256 * 1024), quiet, 64 << 20);
            reset(s);
            // Halfway through reading the echo.
            let s = server.connect();
            let payload = rng.bytes(300_000);
            (&s).write_all(&payload[..100_000]).unwrap();
            let mut buf = vec![0u8; 50_000];
            (&s).read_exact(&mut buf).unwrap();
            assert!(
                buf[..] == payload[..50_000],
                "round {round}: partial echo differs"
            );
            reset(s);
            echo_exact(&bystander, format!("round {round}\n").as_bytes())
                .unwrap_or_else(|e| panic!("bystander after round {round}: {e}"));
        }
        let newcomer = server.connect();
        echo_exact(&newcomer, &rng.bytes(500_000)).expect("a new client after the resets");
        drop(newcomer);
        // The newcomer, the bystander and every reset connection must be gone from the server.
        drop(bystander);
        server.expect_fds_back_to(baseline_fds, Duration::from_secs(10));
    });
}
