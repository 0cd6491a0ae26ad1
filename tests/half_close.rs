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
use util::{each_model, Server, Watchdog};

#[test]
fn half_close_after_a_large_send_gets_every_byte_then_eof() {
    let _watchdog = Watchdog::new(Duration::from_secs(180));
    // FIN right behind the last byte, while most of the echo is still owed; reading starts
    // at once.
    each_model(&[], |server| {
        send_half_close_read(server, 0, 2 << 20, Duration::ZERO)
    });
}

#[test]
fn server_flushes_its_backlog_to_a_client_that_reads_late() {
    let _watchdog = Watchdog::new(Duration::from_secs(180));
    // Do not read for a while: the server has read our FIN (or will, once it resumes reading)
    // but still holds echo bytes the kernel would not take. It must keep them.
    let late = Duration::from_millis(700);
    each_model(&[], |server| send_half_close_read(server, 7, 1 << 20, late));
}

#[test]
fn half_close_without_data_gets_a_prompt_eof() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    each_model(&[], |server| {
        for _ in 0..20 {
            let stream = server.connect();
            stream.shutdown(Shutdown::Write).unwrap();
            expect_closed(&stream, Duration::from_secs(5)).unwrap();
        }
    });
}

/// Sends `size` random bytes and half-closes (on a second thread) while this thread, after
/// `read_after`, reads to EOF: the echo must be every byte, exactly.
fn send_half_close_read(server: &Server, salt: u64, size: usize, read_after: Duration) {
    let payload = server.rng(salt).bytes(size);
    let stream = server.connect();
    let echoed = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            (&stream).write_all(&payload)?;
            stream.shutdown(Shutdown::Write)
        });
        std::thread::sleep(read_after);
        let echoed = read_to_eof(&stream);
        writer.join().unwrap().expect("write and shutdown");
        echoed.expect("read to EOF")
    });
    assert_eq!(echoed.len(), payload.len(), "echoed bytes before EOF");
    assert!(echoed == payload, "echo differs from what was sent");
}
