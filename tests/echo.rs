//! RFC 862 conformance for every model: whatever a client sends comes back byte for byte, in
//! order, nothing added and nothing lost, for payloads from 0 bytes to 1 MiB.
//!
//! RFC 862: "Once a connection is established any data received is sent back. This continues
//! until the calling user terminates the connection." The sizes straddle the boundaries the
//! server cares about: its 64 KiB read chunk, its 64 KiB high-water mark, and payloads far
//! larger than both that exercise backpressure and partial writes. The bytes are random from
//! a fixed seed per model, so a failure replays exactly.

mod util;

use std::net::Shutdown;
use std::time::Duration;

use util::client::{echo_exact, read_to_eof};
use util::{counts_traffic, each_model, Exit, Watchdog};

/// Sizes around the server's 64 KiB read chunk and high-water mark, and 1 MiB.
const EDGE_SIZES: &[usize] = &[
    0,
    1,
    2,
    100,
    4095,
    4096,
    65535,
    65536,
    65537,
    131072,
    1 << 20,
];

#[test]
fn echo_is_byte_exact_for_random_sizes_up_to_1mib() {
    let _watchdog = Watchdog::new(Duration::from_secs(240));
    each_model(&[], |server| {
        let mut rng = server.rng(0);
        let mut sizes = EDGE_SIZES.to_vec();
        sizes.extend((0..8).map(|_| rng.below(1 << 20) as usize + 1));
        let mut total = 0u64;
        for (i, &size) in sizes.iter().enumerate() {
            let payload = rng.bytes(size);
            let stream = server.connect();
            echo_exact(&stream, &payload)
                .unwrap_or_else(|e| panic!("payload {i} ({size} bytes): {e}"));
            // Nothing more may arrive: half-close and the server must answer with a bare FIN.
            stream.shutdown(Shutdown::Write).unwrap();
            let extra = read_to_eof(&stream)
                .unwrap_or_else(|e| panic!("payload {i} ({size} bytes): after the echo: {e}"));
            assert!(
                extra.is_empty(),
                "payload {i} ({size} bytes): {} bytes after the echo",
                extra.len()
            );
            total += size as u64;
        }
        move |exit: &Exit| {
            let accepted = exit.final_sum("accepted");
            assert_eq!(accepted, sizes.len() as u64, "accepted connections");
            if counts_traffic(exit.model) {
                assert_eq!(exit.final_sum("bytes_in"), total, "bytes_in");
                assert_eq!(exit.final_sum("bytes_out"), total, "bytes_out");
            }
        }
    });
}

#[test]
fn one_connection_carries_many_messages_in_order() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    each_model(&[], |server| {
        let mut rng = server.rng(1);
        let stream = server.connect();
        // Request/response turns of random sizes on one connection: the echo of each message
        // must arrive complete before the next one is sent, and never mixed with it.
        for turn in 0..300 {
            let size = if turn % 50 == 0 {
                rng.below(300_000)
            } else {
                rng.below(2_000)
            } as usize
                + 1;
            let payload = rng.bytes(size);
            echo_exact(&stream, &payload)
                .unwrap_or_else(|e| panic!("turn {turn} ({size} bytes): {e}"));
        }
        stream.shutdown(Shutdown::Write).unwrap();
        assert!(
            read_to_eof(&stream).unwrap().is_empty(),
            "bytes after the last echo"
        );
    });
}
