//! SIGTERM and SIGINT: stop accepting, let every connection receive what the server owes it,
//! exit 0; a second signal exits at once; `--drain-timeout` bounds the wait.
//!
//! The contract: on the first signal the listener is closed and each connection is half-closed
//! by the server (`shutdown(SHUT_RD)`), so bytes the server has already read are still echoed,
//! then the server sends FIN. What a client receives is therefore always a byte-exact prefix
//! of what it sent, and, since the server counts what it read and wrote, exactly what the
//! server's final stats say it wrote. This is the graceful-shutdown pattern of mini-redis
//! (`shutdown_complete`) and nginx's `worker_shutdown_timeout`.

mod util;

use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use reactor::Signal;
use util::client::{connect, connect_buffered, echo_until_server_closes, expect_closed};
use util::client::{expect_open, fill_without_reading, read_to_eof};
use util::{counts_traffic, final_lines, poll_until, Exit, Models, Server, Target};
use util::{Watchdog, IO_TIMEOUT};

/// Prefork children print one final stats line each.
const WORKERS: usize = 2;

#[test]
fn sigterm_with_echo_in_flight_delivers_every_echoed_byte() {
    let _watchdog = Watchdog::new(Duration::from_secs(240));
    // Each client has handed all its bytes to the kernel but read only a little of the echo
    // when the signal comes: the server is mid-transfer, the client is done sending.
    Models::ALL.each(|target| mid_transfer_sigterm(target, 2 << 20, Sending::FinishedBeforeSignal));
}

#[test]
fn sigterm_while_clients_still_send_loses_no_echoed_byte() {
    let _watchdog = Watchdog::new(Duration::from_secs(240));
    // Clients are still writing when the signal comes (then half-close after their last byte,
    // as `nc -N` does). The server stops echoing, but what it already echoed must not be
    // destroyed by an RST.
    Models::ALL.each(|target| mid_transfer_sigterm(target, 8 << 20, Sending::ThroughTheSignal));
}

#[derive(Copy, Clone, PartialEq, Eq)]
enum Sending {
    FinishedBeforeSignal,
    ThroughTheSignal,
}

/// Four busy clients (each sends `size` random bytes) and four idle ones; SIGTERM once every
/// busy client has some echo. Checks: each echo is a byte-exact prefix of what was sent, idle
/// clients get EOF, exit 0 with the right number of final stats lines, and every byte the
/// server wrote reached a client.
fn mid_transfer_sigterm(target: &Target, size: usize, sending: Sending) {
    let workers = WORKERS.to_string();
    let server = target.start(&["--workers", &workers, "--drain-timeout", "20"]);
    let mut rng = server.rng(size as u64);
    let payloads: Vec<Vec<u8>> = (0..4).map(|_| rng.bytes(size)).collect();
    let idle = server.clients(4);
    let busy = server.clients(4);
    let mark = 64 * 1024;
    let received = signal_mid_transfer(&server, &busy, &payloads, mark, sending);
    let total = check_prefixes(&received, &payloads, mark);
    for (i, stream) in idle.iter().enumerate() {
        expect_closed(stream, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("idle client {i}: {e}"));
    }
    drop((idle, busy));
    check_drained_exit(server.wait_exit(Duration::from_secs(30)), total);
}

/// Streams `payloads[i]` through `busy[i]` and SIGTERMs the server once each has `mark` bytes
/// of echo (and, with [`Sending::FinishedBeforeSignal`], once every payload is written);
/// returns what each busy client received up to the server's close.
fn signal_mid_transfer(
    server: &Server,
    busy: &[TcpStream],
    payloads: &[Vec<u8>],
    mark: usize,
    sending: Sending,
) -> Vec<Vec<u8>> {
    let signalled = AtomicBool::new(false);
    std::thread::scope(|s| {
        let (got_some, got_some_rx) = mpsc::channel();
        let (wrote, wrote_rx) = mpsc::channel();
        let mut readers = Vec::new();
        for (stream, payload) in busy.iter().zip(payloads) {
            let wrote = wrote.clone();
            // After the signal the server may cut the writer off (EPIPE, ECONNRESET).
            s.spawn(move || {
                let result = stream_write(stream, payload);
                let _ = wrote.send(result.is_ok());
                if result.is_ok() {
                    let _ = stream.shutdown(std::net::Shutdown::Write);
                }
            });
            let (got_some, signalled) = (got_some.clone(), &signalled);
            readers.push(s.spawn(move || {
                let mut got = read_at_least(stream, mark);
                let _ = got_some.send(());
                if sending == Sending::FinishedBeforeSignal {
                    // Hold the rest of the echo back until the signal has been sent: at most
                    // as long as the main thread's waits below, 20 s each.
                    poll_until(IO_TIMEOUT * 8, Duration::from_millis(5), || {
                        signalled
                            .load(Ordering::Acquire)
                            .then_some(())
                            .ok_or("the signal")
                    })
                    .unwrap();
                }
                read_until_end(stream, &mut got);
                got
            }));
        }
        for _ in 0..busy.len() {
            got_some_rx
                .recv_timeout(IO_TIMEOUT)
                .expect("every busy client gets some echo");
        }
        if sending == Sending::FinishedBeforeSignal {
            for _ in 0..busy.len() {
                let ok = wrote_rx
                    .recv_timeout(IO_TIMEOUT)
                    .expect("the kernel takes the payload");
                assert!(ok, "a write failed before the signal");
            }
        }
        server.signal(Signal::Terminate);
        signalled.store(true, Ordering::Release);
        readers.into_iter().map(|r| r.join().unwrap()).collect()
    })
}

/// Each busy client got at least `mark` bytes, all a prefix of what it sent; returns the sum.
fn check_prefixes(received: &[Vec<u8>], payloads: &[Vec<u8>], mark: usize) -> u64 {
    let mut total = 0;
    for (i, (got, payload)) in received.iter().zip(payloads).enumerate() {
        assert!(
            got.len() >= mark,
            "busy client {i} got only {} bytes",
            got.len()
        );
        assert!(
            got[..] == payload[..got.len()],
            "busy client {i}: the echo is not a prefix of what it sent"
        );
        total += got.len() as u64;
    }
    total
}

/// Exit 0, one final line per serving process, and every byte written reached a client.
fn check_drained_exit(exit: Exit, received: u64) {
    exit.assert_clean();
    let finals = exit.final_stats().len();
    let want = final_lines(exit.model, WORKERS);
    assert_eq!(finals, want, "final stats lines: {:?}", exit.stdout);
    if counts_traffic(exit.model) {
        // Bytes read after the signal are discarded (lingering close), never echoed, so the
        // server wrote at most what it read; and every byte it wrote must have arrived.
        let (bytes_in, bytes_out) = (exit.final_sum("bytes_in"), exit.final_sum("bytes_out"));
        assert!(
            bytes_out <= bytes_in,
            "wrote {bytes_out} bytes, read only {bytes_in}"
        );
        assert_eq!(
            received, bytes_out,
            "bytes the clients received vs bytes the server wrote (read {bytes_in})"
        );
    }
}

#[test]
fn sigterm_under_load_of_a_hundred_streaming_clients() {
    let _watchdog = Watchdog::new(Duration::from_secs(240));
    Models::ALL.parallel(2).each(|target| {
        let server = target.start(&["--drain-timeout", "20"]);
        let shared = server.rng(100).bytes((8 << 20) + 100 * 4099);
        let payloads: Vec<&[u8]> = (0..100)
            .map(|i| &shared[i * 4099..i * 4099 + (8 << 20)])
            .collect();
        let streams = server.clients(100);
        let within = Duration::from_secs(60);
        let got = std::thread::scope(|s| {
            let clients = s.spawn(|| echo_until_server_closes(streams, &payloads, within));
            std::thread::sleep(Duration::from_millis(150));
            server.signal(Signal::Terminate);
            clients.join().unwrap()
        });
        // Each count is a verified prefix; together they must be all the server wrote.
        let got = got.unwrap();
        let total: u64 = got.iter().map(|&n| n as u64).sum();
        let complete = got.iter().filter(|&&n| n == 8 << 20).count();
        eprintln!(
            "[{}] SIGTERM under load: {} MiB echoed, {complete} of 100 complete",
            server.label(),
            total >> 20
        );
        assert!(total > 0, "no echo at all before the signal");
        assert!(
            complete < 100,
            "every echo completed before the signal: nothing was cut"
        );
        let exit = server.wait_exit(Duration::from_secs(30));
        exit.assert_clean();
        if counts_traffic(exit.model) {
            let bytes_out = exit.final_sum("bytes_out");
            assert_eq!(total, bytes_out, "bytes received vs bytes the server wrote");
        }
    });
}

#[test]
fn sigterm_during_a_costly_request_still_answers_everything_read() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    Models::ALL.each(|target| {
        // The server reads the whole pipeline in one go, starts the 700 ms WORK, and gets the
        // signal while burning. Every line it has read is a request it must answer: the WORK
        // and the two lines behind it (reactor-offload keeps those aside while a worker runs
        // the WORK), then FIN.
        let server = target.start(&["--protocol", "lines", "--drain-timeout", "20"]);
        let c = server.connect();
        let pipeline = b"first\nWORK 700000 slow\nsecond\nthird\n";
        (&c).write_all(pipeline).unwrap();
        let mut first = [0u8; 6];
        (&c).read_exact(&mut first).unwrap();
        assert_eq!(&first, b"first\n");
        std::thread::sleep(Duration::from_millis(200));
        server.signal(Signal::Terminate);
        let rest = read_to_eof(&c).expect("the rest, then EOF");
        assert_eq!(
            String::from_utf8_lossy(&rest),
            "WORK 700000 slow\nsecond\nthird\n",
            "requests read before the signal must all be answered"
        );
        drop(c);
        server.wait_exit(Duration::from_secs(30)).assert_clean();
    });
}

#[test]
fn sigint_with_idle_clients_exits_promptly() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    Models::ALL.each(|target| {
        // A long drain timeout: the server must exit because every connection finished, not
        // because the timeout ran out.
        let server = start_for_stuck_clients(target, "60");
        let clients = server.clients(50);
        for c in &clients {
            (&*c).write_all(b"x").unwrap();
            let mut b = [0u8];
            (&*c).read_exact(&mut b).unwrap();
        }
        server.signal(Signal::Interrupt);
        for (i, c) in clients.iter().enumerate() {
            expect_closed(c, Duration::from_secs(10)).unwrap_or_else(|e| panic!("client {i}: {e}"));
        }
        // Having read EOF, a client closes its side; the server lingers until it does.
        drop(clients);
        let exit = server.wait_exit(Duration::from_secs(10));
        exit.assert_clean();
        assert!(
            exit.elapsed < Duration::from_secs(5),
            "took {:?} to exit with only idle clients",
            exit.elapsed
        );
    });
}

#[test]
fn listener_is_closed_while_draining() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    Models::ALL.each(|target| {
        let server = start_for_stuck_clients(target, "30");
        let stuck = stuck_client(&server);
        server.signal(Signal::Terminate);
        // The stuck client keeps the server draining; meanwhile nobody may be let in.
        let every = Duration::from_millis(1);
        poll_until(Duration::from_secs(5), every, || {
            match connect(server.addr()) {
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => Ok(()),
                // The listener closed with this connection in its accept queue (RST): it was not
                // let in either; the next attempt should be refused outright.
                Err(e) if e.kind() == ErrorKind::ConnectionReset => Err("refusal (got a reset)"),
                Err(e) => panic!("connect while draining: {e}"),
                // Accepted by a listener that is about to close, or queued: it must not be
                // served, only closed.
                Ok(late) => match expect_open(&late, Duration::from_millis(50)) {
                    Ok(()) => Err("refusal (connections are still accepted)"),
                    Err(_) => Err("refusal (accepted, then closed)"),
                },
            }
        })
        .unwrap_or_else(|e| panic!("5 s after SIGTERM: {e}"));
        drop(stuck);
        server.wait_exit(Duration::from_secs(40)).assert_clean();
    });
}

#[test]
fn second_signal_exits_at_once() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    Models::ALL.each(|target| {
        let mut server = start_for_stuck_clients(target, "60");
        let stuck = stuck_client(&server);
        server.signal(Signal::Terminate);
        std::thread::sleep(Duration::from_millis(1500));
        assert!(
            server.is_running(),
            "exited although a client still had echo bytes coming (drain timeout 60 s)"
        );
        server.signal(Signal::Terminate);
        let exit = server.wait_exit(Duration::from_secs(10));
        assert!(
            exit.status.success(),
            "second signal: exit status {:?}; stderr:\n{}",
            exit.status,
            exit.stderr_tail
        );
        assert!(
            exit.elapsed < Duration::from_secs(3),
            "second signal took {:?}",
            exit.elapsed
        );
        drop(stuck);
    });
}

#[test]
fn drain_timeout_bounds_a_stuck_shutdown() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    Models::ALL.each(|target| {
        let server = start_for_stuck_clients(target, "1");
        let stuck = stuck_client(&server);
        let exit = server.terminate(Duration::from_secs(15));
        exit.assert_clean();
        assert!(
            exit.elapsed >= Duration::from_millis(900) && exit.elapsed < Duration::from_secs(6),
            "with --drain-timeout 1 and a client that never reads, exit took {:?}",
            exit.elapsed
        );
        drop(stuck);
    });
}

/// A server for the tests with a [`stuck_client`]: `--drain-timeout` as given, and
/// `--high-water` 4 MiB, so that when the server stops reading from the client it holds
/// megabytes of echo that no kernel buffer will take while the client does not read. (With the
/// default 64 KiB the server may, by chance, have handed every byte to the kernel when the
/// signal comes, and legitimately have nothing left to drain.)
fn start_for_stuck_clients(target: &Target, drain_timeout: &str) -> Server {
    target.start(&["--high-water", "4194304", "--drain-timeout", drain_timeout])
}

/// A client that sends far more than it reads, so the server always holds echo bytes for it
/// and cannot finish draining on its own (with [`start_for_stuck_clients`]).
fn stuck_client(server: &Server) -> TcpStream {
    // A small receive buffer keeps the echo in the server; a large send buffer lets the client
    // push its bytes quickly.
    let stream = connect_buffered(server.addr(), 16 * 1024, 1 << 20);
    let chunk = server.rng(0).bytes(64 * 1024);
    // Until the writes make no progress for a whole second: by then the kernel buffers on
    // both sides are full and the server holds the rest of the echo in its own memory.
    fill_without_reading(&stream, &chunk, Duration::from_secs(1), 64 << 20);
    stream
}

fn stream_write(stream: &TcpStream, payload: &[u8]) -> io::Result<()> {
    for chunk in payload.chunks(16 * 1024) {
        (&*stream).write_all(chunk)?;
    }
    Ok(())
}

/// Reads until at least `mark` bytes have arrived.
fn read_at_least(stream: &TcpStream, mark: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while got.len() < mark {
        match (&*stream).read(&mut buf) {
            Ok(0) => panic!("EOF after {} bytes, before the signal", got.len()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read after {} bytes: {e}", got.len()),
        }
    }
    got
}

/// Reads until EOF; a reset after the server's close also ends the stream (what arrived
/// before it is kept and checked).
fn read_until_end(stream: &TcpStream, got: &mut Vec<u8>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match (&*stream).read(&mut buf) {
            Ok(0) => return,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
            Err(e) => panic!("read after {} bytes: {e}", got.len()),
        }
    }
}
