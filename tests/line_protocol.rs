//! `--protocol lines`, every model: lines split across writes or packed into one, `WORK`
//! requests that cost CPU, malformed requests, and the line-length limit.
//!
//! The protocol (src/protocol.rs): each `\n`-terminated line is echoed unchanged;
//! `WORK <micros> [payload]` burns that much CPU first; a malformed `WORK` gets
//! `ERR bad WORK: ...` and the connection carries on; a line longer than `--max-line` gets
//! `ERR line too long`, then the server sends FIN and discards input until the client's FIN
//! (a lingering close, so the error is not destroyed by an RST). An unterminated last line at
//! EOF is still echoed. TCP has no message boundaries (RFC 9293, 3.9.1, "SEND"), so a correct
//! parser must give the same answers however the bytes are cut.

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use util::client::{echo_exact, expect_closed, read_expecting, read_to_eof};
use util::{each_model, Watchdog};

const LINES: &[&str] = &["--protocol", "lines", "--max-line", "1024"];

#[test]
fn lines_split_across_writes_are_echoed_whole() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    each_model(LINES, |server| {
        let stream = server.connect();
        // Cut in the middle of a word, right before and after `\n`, and inside "WORK".
        for piece in [
            "hel",
            "lo\nwor",
            "ld",
            "\n",
            "\nWO",
            "RK 10",
            "00 split wo",
            "rk\n",
        ] {
            (&stream).write_all(piece.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(30));
        }
        read_expecting(&stream, b"hello\nworld\n\nWORK 1000 split work\n").unwrap();
    });
}

#[test]
fn many_lines_in_one_write_come_back_in_order() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    each_model(LINES, |server| {
        let mut rng = server.rng(0);
        let mut batch = Vec::new();
        for i in 0..2000 {
            // Every tenth line is a cheap WORK request: in reactor-offload it takes a detour
            // through the pool and must still come back in its place.
            if i % 10 == 0 {
                batch.extend(format!("WORK 50 line {i}\n").bytes());
            } else {
                let len = rng.below(200) as usize;
                let text: String = (0..len)
                    .map(|_| (b'a' + rng.below(26) as u8) as char)
                    .collect();
                batch.extend(format!("{i} {text}\n").bytes());
            }
        }
        let stream = server.connect();
        echo_exact(&stream, &batch).unwrap();
    });
}

#[test]
fn bad_work_gets_err_and_the_connection_continues() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    each_model(LINES, |server| {
        let stream = server.connect();
        for bad in [
            "WORK\n",
            "WORK abc payload\n",
            "WORK -5 x\n",
            "WORK 2000000 too much\n",
            "WORK  5\n",
        ] {
            (&stream).write_all(bad.as_bytes()).unwrap();
            let reply = read_line(&stream);
            assert!(reply.starts_with("ERR bad WORK"), "{bad:?} got {reply:?}");
            // The same connection still works.
            echo_exact(&stream, b"still here\n").unwrap_or_else(|e| panic!("after {bad:?}: {e}"));
        }
        // Look-alikes are ordinary lines.
        echo_exact(&stream, b"WORKER 1\nWORKWORK\nwork 5\n").unwrap();
    });
}

#[test]
fn work_is_echoed_after_its_delay() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    each_model(LINES, |server| {
        let stream = server.connect();
        let start = Instant::now();
        (&stream)
            .write_all(b"WORK 200000 two hundred ms\n")
            .unwrap();
        read_expecting(&stream, b"WORK 200000 two hundred ms\n").unwrap();
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(200),
            "WORK 200000 answered after {took:?}"
        );
        assert!(
            took < Duration::from_secs(10),
            "WORK 200000 answered after {took:?}"
        );
        // `WORK 0` and a WORK without payload are valid.
        echo_exact(&stream, b"WORK 0\nWORK 10 x\n").unwrap();
    });
}

#[test]
fn a_line_too_long_gets_err_then_fin() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    each_model(LINES, |server| {
        // Exactly --max-line bytes, newline included, is accepted.
        let fits = format!("{}\n", "f".repeat(1023));
        let stream = server.connect();
        echo_exact(&stream, fits.as_bytes()).unwrap();
        drop(stream);

        let stream = server.connect();
        let mut input = b"ok\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 1024));
        input.extend(b"\nafter\n");
        (&stream).write_all(&input).unwrap();
        read_expecting(&stream, b"ok\nERR line too long\n").unwrap();
        // Then FIN, and nothing else: "after" is never echoed.
        let rest = read_to_eof(&stream).expect("clean EOF after the error, not a reset");
        assert!(
            rest.is_empty(),
            "after ERR: {:?}",
            String::from_utf8_lossy(&rest)
        );
        // The server lingers, discarding, until our FIN; more input must not provoke an RST.
        (&stream).write_all(&[b'y'; 10_000]).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        drop(stream);

        // A too-long line split over many writes is caught too.
        let stream = server.connect();
        for _ in 0..20 {
            (&stream).write_all(&[b'z'; 100]).unwrap();
        }
        read_expecting(&stream, b"ERR line too long\n").unwrap();
        expect_closed(&stream, Duration::from_secs(10)).unwrap();
    });
}

#[test]
fn an_unterminated_last_line_is_echoed_at_eof() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    each_model(LINES, |server| {
        let stream = server.connect();
        (&stream).write_all(b"first\ntail without newline").unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let got = read_to_eof(&stream).unwrap();
        assert_eq!(String::from_utf8_lossy(&got), "first\ntail without newline");
    });
}

/// Reads one `\n`-terminated line, byte by byte (replies are short).
fn read_line(stream: &TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8];
    while line.last() != Some(&b'\n') {
        match (&*stream).read(&mut byte) {
            Ok(0) => panic!("EOF after {:?}", String::from_utf8_lossy(&line)),
            Ok(_) => line.push(byte[0]),
            Err(e) => panic!("read after {:?}: {e}", String::from_utf8_lossy(&line)),
        }
    }
    String::from_utf8_lossy(&line).into_owned()
}
