//! Half-close: after the client's FIN the server still sends every byte it owes, then its own
//! FIN.
//!
//! TCP lets each direction close on its own (RFC 9293, 3.6: a connection in CLOSE-WAIT "may
//! continue sending"), and RFC 862 echo depends on it: a client like `nc -N` sends its input,
//! shuts down its write side, then reads the echo to EOF. A server that closes as soon as it
//! reads 0 loses the tail of the echo; one that never closes leaves the client hanging.

mod util;

use std::io::Write;
use std::net::Shutdown;
use std::time::Duration;

use util::client::{expect_closed, read_to_eof};
use util::{for_each_model, seed_for, Rng, Server, Watchdog, MODELS};

#[test]
fn half_close_after_a_large_send_gets_every_byte_then_eof() {
    let _watchdog = Watchdog::new(
        "half_close_after_a_large_send_gets_every_byte_then_eof",
        Duration::from_secs(180),
    );
    for_each_model(MODELS, 4, |model| {
        let server = Server::start(model, &[]);
        let payload = Rng::new(seed_for(model)).bytes(2 << 20);
        let stream = server.connect();
        let echoed = std::thread::scope(|s| {
            let writer = s.spawn(|| {
                (&stream).write_all(&payload)?;
                // FIN right behind the last byte, while most of the echo is still owed.
                stream.shutdown(Shutdown::Write)
            });
            let echoed = read_to_eof(&stream);
            writer.join().unwrap().expect("write and shutdown");
            echoed.expect("read to EOF")
        });
        assert_eq!(echoed.len(), payload.len(), "echoed bytes before EOF");
        assert!(echoed == payload, "echo differs from what was sent");
        server.terminate(Duration::from_secs(20)).assert_clean();
    });
}

#[test]
fn server_flushes_its_backlog_to_a_client_that_reads_late() {
    let _watchdog = Watchdog::new(
        "server_flushes_its_backlog_to_a_client_that_reads_late",
        Duration::from_secs(180),
    );
    for_each_model(MODELS, 4, |model| {
        let server = Server::start(model, &[]);
        let payload = Rng::new(seed_for(model) ^ 7).bytes(1 << 20);
        let stream = server.connect();
        std::thread::scope(|s| {
            let writer = s.spawn(|| {
                (&stream).write_all(&payload)?;
                stream.shutdown(Shutdown::Write)
            });
            // Do not read for a while: the server has read our FIN (or will, once it resumes
            // reading) but still holds echo bytes the kernel would not take. It must keep them.
            std::thread::sleep(Duration::from_millis(700));
            let echoed = read_to_eof(&stream).expect("read to EOF");
            writer.join().unwrap().expect("write and shutdown");
            assert_eq!(echoed.len(), payload.len(), "echoed bytes before EOF");
            assert!(echoed == payload, "echo differs from what was sent");
        });
        server.terminate(Duration::from_secs(20)).assert_clean();
    });
}

#[test]
fn half_close_without_data_gets_a_prompt_eof() {
    let _watchdog = Watchdog::new(
        "half_close_without_data_gets_a_prompt_eof",
        Duration::from_secs(120),
    );
    for_each_model(MODELS, 4, |model| {
        let server = Server::start(model, &[]);
        for _ in 0..20 {
            let stream = server.connect();
            stream.shutdown(Shutdown::Write).unwrap();
            expect_closed(&stream, Duration::from_secs(5)).unwrap();
        }
        server.terminate(Duration::from_secs(20)).assert_clean();
    });
}
