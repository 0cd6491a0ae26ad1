//! Resource limits every model enforces: `--max-conns` (past it, a connection is accepted and
//! closed at once, never left to rot in the accept queue) and `--idle-timeout` (a connection
//! with no traffic either way for that long is closed, while a slow but live one is kept).
//!
//! `--max-conns` counts per process, so `prefork` runs one child here; `reuseport`'s loops
//! share one count. A refused client sees a clean close (EOF) instead of a connection that
//! hangs, which is what lets a load balancer retry elsewhere at once.

mod util;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use util::client::{echo_exact, expect_closed};
use util::{counts_traffic, each_model, poll_until, Exit, Server, Watchdog};

#[test]
fn max_conns_refuses_the_extra_client_and_recovers() {
    let _watchdog = Watchdog::new(Duration::from_secs(180));
    each_model(&["--max-conns", "5", "--workers", "1"], |server| {
        let mut kept = server.clients(5);
        for (i, c) in kept.iter().enumerate() {
            // An echo proves the server accepted and counted this one.
            echo_exact(c, format!("kept {i}\n").as_bytes()).unwrap();
        }
        let extra = server.connect();
        let _ = (&extra).write_all(b"let me in\n"); // may already see the close
        expect_closed(&extra, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("the 6th client: {e}"));
        for (i, c) in kept.iter().enumerate() {
            echo_exact(c, b"still served\n")
                .unwrap_or_else(|e| panic!("kept client {i} after the refusal: {e}"));
        }
        // One leaves; a newcomer gets its place (once the server has seen the close).
        let leaving = kept.pop().unwrap();
        leaving.shutdown(Shutdown::Write).unwrap();
        let mut byte = [0u8];
        assert_eq!(
            (&leaving).read(&mut byte).unwrap(),
            0,
            "server closes after our FIN"
        );
        drop(leaving);
        let _newcomer = newcomer(server);
        |exit: &Exit| {
            let refused = exit.final_sum("refused");
            assert!(refused >= 1, "refused count: {:?}", exit.final_stats());
        }
    });
}

/// A newcomer that gets served, trying for up to 10 s after a client left.
fn newcomer(server: &Server) -> std::net::TcpStream {
    let place = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let c = server.connect();
        match echo_exact(&c, b"my turn\n") {
            Ok(()) => Ok(c),
            Err(e) => Err(format!("a place freed after a client left (last try: {e})")),
        }
    });
    place.unwrap()
}

#[test]
fn idle_timeout_closes_idle_clients_and_keeps_slow_live_ones() {
    let _watchdog = Watchdog::new(Duration::from_secs(180));
    each_model(&["--idle-timeout", "1"], |server| {
        let idle = server.connect();
        echo_exact(&idle, b"then silence\n").unwrap();
        let silent_from = Instant::now();
        let live = server.connect();
        // A byte every 300 ms for 3 s: never idle for a whole second.
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..10u8 {
                    echo_exact(&live, &[b'a' + i])
                        .unwrap_or_else(|e| panic!("slow client, byte {i}: {e}"));
                    std::thread::sleep(Duration::from_millis(300));
                }
            });
            expect_closed(&idle, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("idle client: {e}"));
            let closed_after = silent_from.elapsed();
            assert!(
                closed_after >= Duration::from_millis(900),
                "closed after {closed_after:?}, before the 1 s idle timeout"
            );
        });
        echo_exact(&live, b"still alive\n").unwrap();
        |exit: &Exit| {
            // process-per-conn's children count their own idle closes and take them along.
            if counts_traffic(exit.model) {
                let idle_closed = exit.final_sum("idle_closed");
                assert!(idle_closed >= 1, "idle_closed: {:?}", exit.final_stats());
            }
        }
    });
}

#[test]
fn a_client_still_reading_its_echo_is_not_idle() {
    let _watchdog = Watchdog::new(Duration::from_secs(180));
    each_model(&["--idle-timeout", "1"], |server| {
        let c = server.connect();
        // Send 8 MiB at once, then read it back slowly over ~3 s: the client sends nothing
        // after the first moment, but the server keeps writing, so the connection is live.
        // A server that counted only input as activity would close it after 1 s while still
        // holding most of the echo (in its memory or unread in its receive queue): the client
        // would see EOF or a reset before the last byte. (Once the last echo bytes sit in
        // kernel buffers the server has nothing left to do and may legitimately time the
        // connection out while the client is still reading them, so the check ends there.)
        let payload: Vec<u8> = (0..8u32 << 20).map(|i| (i % 253) as u8).collect();
        std::thread::scope(|s| {
            let writer = s.spawn(|| (&c).write_all(&payload));
            let mut got = 0;
            let mut buf = vec![0u8; 64 * 1024];
            let start = Instant::now();
            while got < payload.len() {
                let paced = (start.elapsed().as_millis() as usize + 1) * payload.len() / 3000;
                if got >= paced {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                let n = (&c)
                    .read(&mut buf)
                    .unwrap_or_else(|e| panic!("after {got} bytes: {e}"));
                assert!(
                    n > 0,
                    "closed after {got} of {} bytes ({:?})",
                    payload.len(),
                    start.elapsed()
                );
                assert!(buf[..n] == payload[got..got + n], "echo differs at {got}");
                got += n;
            }
            writer.join().unwrap().unwrap();
        });
    });
}

#[test]
fn a_request_that_takes_longer_than_the_idle_timeout_is_answered() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    // While the server burns 1 s of CPU on our request, no byte moves either way; the
    // connection is busy, not idle, and the answer must arrive.
    each_model(
        &["--idle-timeout", "0.5", "--protocol", "lines"],
        |server| {
            let c = server.connect();
            echo_exact(&c, b"WORK 1000000 one second\n").unwrap();
            echo_exact(&c, b"and again\n").unwrap();
        },
    );
}
