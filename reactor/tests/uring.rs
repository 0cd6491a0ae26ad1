//! `reactor::uring` against the real kernel: real io_uring instances on real loopback sockets,
//! eventfds and timers. Each test checks exact bytes, exact tokens and that every operation's
//! resources come back, never how fast.
//!
//! Where io_uring is unavailable (sysctl `kernel.io_uring_disabled`, a seccomp profile, an old
//! kernel) each test prints `skipped: <cause>` on stderr and returns, unless the environment sets
//! `RAWLOOP_REQUIRE_URING`, which turns a skip into a failure (for machines known to have it).
//! The signalfd scenario lives in `uring_signal.rs`, which needs a single-threaded process.

mod util;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use reactor::uring::{self, Completion, OpKind, Ring, RingOptions, RingStats, Unavailable};
use reactor::{TcpListener, TcpStream, Token, Waker};
use util::{any_v4, listen, pair, write_all, DEADLINE, QUIET};

/// A ring with `opts`, or `None` after printing why io_uring cannot run here.
fn ring_or_skip(test: &str, opts: RingOptions) -> Option<Ring> {
    if let Err(cause) = uring::available() {
        assert!(
            std::env::var_os("RAWLOOP_REQUIRE_URING").is_none(),
            "{test}: io_uring required but unavailable: {cause}"
        );
        // Straight to the stderr handle, which libtest does not capture, so the skip shows.
        let _ = writeln!(std::io::stderr(), "{test}: skipped: {cause}");
        return None;
    }
    Some(Ring::new(&opts).expect("Ring::new"))
}

macro_rules! ring_or_skip {
    ($test:expr) => {
        ring_or_skip!($test, RingOptions::default())
    };
    ($test:expr, $opts:expr) => {
        match ring_or_skip($test, $opts) {
            Some(ring) => ring,
            None => return,
        }
    };
}

/// Waits for and returns the next completion, panicking after [`DEADLINE`].
fn next(ring: &mut Ring) -> Completion {
    let start = Instant::now();
    loop {
        if let Some(done) = ring.next_completion() {
            return done;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no completion within {DEADLINE:?}"
        );
        ring.wait(1, Some(DEADLINE)).expect("wait");
    }
}

/// The next completion, which must be for `token`.
fn next_for(ring: &mut Ring, token: Token) -> Completion {
    let done = next(ring);
    assert_eq!(done.token(), token, "unexpected completion {done:?}");
    done
}

/// Waits for the final completion of `token`, skipping other tokens' completions.
fn next_for_final(ring: &mut Ring, token: Token) -> Completion {
    loop {
        let done = next(ring);
        if done.token() == token && done.is_final() {
            return done;
        }
    }
}

#[test]
fn nop_round_trip() {
    let mut ring = ring_or_skip!("nop_round_trip");
    let id = ring.nop(Token(7));
    assert_eq!(ring.in_flight(), 1);
    let done = next(&mut ring);
    assert_eq!(
        (done.token(), done.id(), done.kind(), done.res()),
        (Token(7), id, OpKind::Nop, 0)
    );
    assert!(done.is_final() && !done.more());
    assert_eq!(ring.in_flight(), 0);
    assert!(ring.next_completion().is_none());
}

#[test]
fn batched_submit_takes_one_enter() {
    let opts = RingOptions {
        sq_entries: 128,
        cq_entries: 256,
    };
    let mut ring = ring_or_skip!("batched_submit_takes_one_enter", opts);
    for i in 0..100 {
        ring.nop(Token(i));
    }
    let before = ring.stats();
    ring.wait(100, Some(DEADLINE)).unwrap();
    let after = ring.stats();
    assert_eq!(
        after.enters - before.enters,
        1,
        "100 SQEs, one io_uring_enter"
    );
    assert_eq!(after.sqes_submitted - before.sqes_submitted, 100);
    let tokens: Vec<u64> = std::iter::from_fn(|| ring.next_completion())
        .map(|done| done.token().0)
        .collect();
    assert_eq!(
        tokens.iter().copied().collect::<BTreeSet<_>>(),
        (0..100).collect()
    );
    assert_eq!(tokens.len(), 100, "each token exactly once");
    assert_eq!(ring.in_flight(), 0);
}

#[test]
fn cq_overflow_delivers_every_completion_once() {
    // A 2-entry CQ under 64 completions: all but the first two overflow into the kernel's
    // list (IORING_FEAT_NODROP) and must come back through overflow flushes, none lost.
    let opts = RingOptions {
        sq_entries: 2,
        cq_entries: 2,
    };
    let mut ring = ring_or_skip!("cq_overflow_delivers_every_completion_once", opts);
    assert_eq!(ring.features().cq_entries, 2);
    for i in 0..64 {
        ring.nop(Token(i));
    }
    assert_eq!(
        ring.submit().unwrap(),
        64,
        "queued beyond the SQ, submitted in chunks"
    );
    let mut seen = vec![0u32; 64];
    while seen.contains(&0) {
        let done = next(&mut ring);
        seen[done.token().0 as usize] += 1;
    }
    assert!(
        seen.iter().all(|&n| n == 1),
        "every completion exactly once: {seen:?}"
    );
    assert!(ring.next_completion().is_none());
    let stats = ring.stats();
    eprintln!("{stats:?}");
    assert!(
        stats.overflow_flushes + stats.busy_retries > 0,
        "the CQ never overflowed, so this test proved nothing: {stats:?}"
    );
}

#[test]
fn buffer_ring_runs_dry_then_recovers() {
    let mut ring = ring_or_skip!("buffer_ring_runs_dry_then_recovers");
    let group = ring.add_buffer_group(2, 16).unwrap();
    let (client, server) = pair();
    let sent: Vec<u8> = (0..64u8).collect();
    write_all(&client, &sent);
    ring.recv_multishot(&server, group, Token(1));
    // 64 bytes, two 16-byte buffers, none recycled until the ring runs dry: ENOBUFS must come.
    let (mut got, mut lent, mut dry) = (Vec::new(), Vec::new(), 0);
    while got.len() < sent.len() {
        let mut done = next_for(&mut ring, Token(1));
        if let Some(buf) = done.take_provided() {
            got.extend_from_slice(ring.buffer(&buf));
            lent.push(buf);
        }
        if done.is_final() {
            // Running dry ends the recv; so can a full CQ, with data in that last CQE.
            if done.res() == -libc::ENOBUFS {
                assert_eq!(ring.buffers_in_ring(group), 0);
                dry += 1;
                for buf in lent.drain(..) {
                    ring.recycle(buf); // replenish...
                }
            } else {
                assert!(done.res() > 0, "unexpected end of the recv: {done:?}");
            }
            ring.recv_multishot(&server, group, Token(1)); // ...and re-arm
        }
    }
    assert!(dry >= 1, "the buffer ring never ran dry");
    assert_eq!(got, sent, "every byte, in order, across the ENOBUFS");
}

#[test]
fn cancel_ends_a_multishot_recv_and_frees_its_slot() {
    let mut ring = ring_or_skip!("cancel_ends_a_multishot_recv_and_frees_its_slot");
    let group = ring.add_buffer_group(4, 64).unwrap();
    let (_client, server) = pair();
    let recv = ring.recv_multishot(&server, group, Token(1));
    ring.submit().unwrap(); // armed: no data, so the kernel waits on the socket
    ring.cancel(recv, Token(2));
    let (mut recv_done, mut cancel_done) = (None, None);
    while recv_done.is_none() || cancel_done.is_none() {
        let done = next(&mut ring);
        match done.token() {
            Token(1) => recv_done = Some(done),
            Token(2) => cancel_done = Some(done),
            other => panic!("unexpected {other:?}"),
        }
    }
    let (recv_done, cancel_done) = (recv_done.unwrap(), cancel_done.unwrap());
    assert_eq!(cancel_done.res(), 0, "the cancel found the recv");
    assert_eq!(recv_done.res(), -libc::ECANCELED);
    assert!(
        recv_done.is_final(),
        "a cancelled multishot ends without F_MORE"
    );
    assert_eq!(ring.in_flight(), 0, "slot released at the final CQE");
    assert_eq!(ring.buffers_in_ring(group), 4);
    // The OpId is stale now; its slot may be reused, but the generation keeps it from matching.
    ring.nop(Token(3));
    ring.cancel(recv, Token(4));
    let results: Vec<(Token, i32)> = (0..2)
        .map(|_| next(&mut ring))
        .map(|d| (d.token(), d.res()))
        .collect();
    assert!(results.contains(&(Token(4), -libc::ENOENT)), "{results:?}");
}

#[test]
fn multishot_accept_takes_several_connections_with_one_sqe() {
    let mut ring = ring_or_skip!("multishot_accept_takes_several_connections_with_one_sqe");
    let listener = listen(any_v4());
    let addr = listener.local_addr().unwrap();
    let accept = ring.accept_multishot(&listener, Token(0));
    let clients: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut peers = BTreeSet::new();
    for _ in 0..clients.len() {
        let mut done = next_for(&mut ring, Token(0));
        assert!(done.res() >= 0 && done.more(), "{done:?}");
        let conn = TcpStream::from(done.take_accepted().expect("a new socket"));
        peers.insert(conn.peer_addr().unwrap());
        let err = conn.read(&mut [0u8; 8]).unwrap_err();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::WouldBlock,
            "accepted SOCK_NONBLOCK"
        );
    }
    let expected: BTreeSet<_> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
    assert_eq!(peers, expected);
    assert_eq!(
        ring.stats().sqes_submitted,
        1,
        "one SQE for five connections"
    );
    ring.cancel(accept, Token(1));
    let ended = next_for_final(&mut ring, Token(0));
    assert_eq!(ended.res(), -libc::ECANCELED);
}

#[test]
fn multishot_recv_ends_without_more_at_end_of_stream() {
    let mut ring = ring_or_skip!("multishot_recv_ends_without_more_at_end_of_stream");
    let group = ring.add_buffer_group(8, 4096).unwrap();
    let (client, server) = pair();
    ring.recv_multishot(&server, group, Token(1));
    ring.submit().unwrap();
    let writer = thread::spawn(move || {
        let mut sent = Vec::new();
        for i in 0..10u8 {
            let chunk = vec![b'a' + i; 100 + usize::from(i)];
            write_all(&client, &chunk);
            sent.extend_from_slice(&chunk);
            thread::sleep(Duration::from_millis(2)); // separate chunks, likely separate CQEs
        }
        sent // dropping `client` closes it: the recv sees end of stream
    });
    let (mut got, mut data_cqes) = (Vec::new(), 0);
    let last = loop {
        let mut done = next_for(&mut ring, Token(1));
        if let Some(buf) = done.take_provided() {
            got.extend_from_slice(ring.buffer(&buf));
            ring.recycle(buf); // copied: the buffer may go back at once
            data_cqes += 1;
            assert!(done.more(), "data CQEs keep the recv armed");
        }
        if done.is_final() {
            break done;
        }
    };
    assert_eq!(
        last.res(),
        0,
        "end of stream: res 0 and no F_MORE, so re-arm would be wrong"
    );
    assert_eq!(got, writer.join().unwrap());
    assert!(data_cqes >= 1);
    assert_eq!(ring.buffers_in_ring(group), 8);
    assert_eq!(ring.in_flight(), 0);
}

#[test]
fn large_send_returns_its_buffer_short_or_whole() {
    let mut ring = ring_or_skip!("large_send_returns_its_buffer_short_or_whole");
    let (client, server) = pair();
    server.set_send_buffer_size(64 * 1024).unwrap();
    let data: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    let len = data.len();
    let reader = thread::spawn(move || {
        let mut got = Vec::with_capacity(len);
        let mut chunk = vec![0u8; 1 << 16];
        while got.len() < len {
            let n = client.read(&mut chunk).expect("read");
            assert!(n > 0, "EOF after {} bytes", got.len());
            got.extend_from_slice(&chunk[..n]);
        }
        got
    });
    let (mut buf, mut offset, mut sends) = (data.clone(), 0, 0);
    let heap = buf.as_ptr();
    while offset < len {
        ring.send(&server, buf, offset, Token(9));
        let mut done = next_for(&mut ring, Token(9));
        assert!(done.res() > 0, "send failed: {done:?}");
        buf = done.take_buf().expect("the final CQE returns the Vec");
        assert_eq!(
            (buf.as_ptr(), buf.len()),
            (heap, len),
            "the same Vec, untouched"
        );
        offset += done.res() as usize;
        sends += 1;
    }
    assert_eq!(reader.join().unwrap(), data, "every byte, in order");
    eprintln!("8 MiB sent in {sends} send(s)");
}

#[test]
fn eventfd_read_through_the_ring_waits_for_a_wake() {
    let mut ring = ring_or_skip!("eventfd_read_through_the_ring_waits_for_a_wake");
    let waker = Arc::new(Waker::new().unwrap());
    ring.read(&*waker, Vec::with_capacity(8), Token(3));
    ring.wait(1, Some(QUIET)).unwrap();
    assert!(
        ring.next_completion().is_none(),
        "nothing to read before the wake"
    );
    let remote = Arc::clone(&waker);
    thread::spawn(move || remote.wake().unwrap())
        .join()
        .unwrap();
    let mut done = next_for(&mut ring, Token(3));
    assert_eq!((done.kind(), done.res()), (OpKind::Read, 8));
    let buf = done.take_buf().unwrap();
    assert_eq!(
        u64::from_ne_bytes(buf[..].try_into().unwrap()),
        1,
        "the eventfd counter"
    );
}

#[test]
fn timeout_fires_and_tick_repeats_until_cancelled() {
    let mut ring = ring_or_skip!("timeout_fires_and_tick_repeats_until_cancelled");
    ring.timeout(Duration::from_millis(1), Token(1));
    let done = next_for(&mut ring, Token(1));
    assert_eq!(done.res(), -libc::ETIME, "expiry is the timeout's result");
    assert!(done.is_final());
    if !ring.features().multishot_timeout {
        eprintln!("tick part skipped: kernel lacks IORING_TIMEOUT_MULTISHOT");
        return;
    }
    let tick = ring.tick(Duration::from_millis(1), Token(2)).unwrap();
    for _ in 0..3 {
        let done = next_for(&mut ring, Token(2));
        assert_eq!(done.res(), -libc::ETIME);
        assert!(done.more(), "a tick stays armed");
    }
    ring.cancel(tick, Token(3));
    let ended = next_for_final(&mut ring, Token(2));
    assert_eq!(ended.res(), -libc::ECANCELED);
    while ring.in_flight() > 0 {
        next(&mut ring);
    }
}

#[test]
fn close_through_the_ring_ends_the_peers_stream() {
    let mut ring = ring_or_skip!("close_through_the_ring_ends_the_peers_stream");
    let (client, server) = pair();
    ring.close(server, Token(5));
    let done = next_for(&mut ring, Token(5));
    assert_eq!((done.kind(), done.res()), (OpKind::Close, 0));
    assert_eq!(
        client.read(&mut [0u8; 8]).unwrap(),
        0,
        "the peer sees end of stream"
    );
}

#[test]
fn dropping_a_ring_with_armed_operations_cancels_them() {
    if ring_or_skip(
        "dropping_a_ring_with_armed_operations_cancels_them",
        RingOptions::default(),
    )
    .is_none()
    {
        return;
    }
    let listener = listen(any_v4());
    let (client, server) = pair();
    let waker = Waker::new().unwrap();
    // More rings than the 16 registered-ring slots a thread has: each drop must free its slot.
    for _ in 0..20 {
        let mut ring = Ring::new(&RingOptions::default()).unwrap();
        assert!(ring.features().registered_ring);
        let group = ring.add_buffer_group(4, 64).unwrap();
        ring.accept_multishot(&listener, Token(0));
        ring.recv_multishot(&server, group, Token(1));
        ring.read(&waker, Vec::with_capacity(8), Token(2));
        ring.timeout(Duration::from_secs(3600), Token(3));
        ring.submit().unwrap();
        assert_eq!(ring.in_flight(), 4);
    } // each drop cancels the four operations and waits for their final completions
    assert_eq!(
        uring::leaked_operations(),
        0,
        "a drop gave up waiting and leaked"
    );
    // The descriptors they were armed on are intact.
    write_all(&client, b"still here");
    assert_eq!(util::read_exact_nonblocking(&server, 10), b"still here");
    let _second = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    assert!(util::accept_one(&listener).1.port() > 0);
}

#[test]
fn unavailable_causes_name_the_cause() {
    let text = |errno, sysctl| Unavailable::from_setup_errno(errno, sysctl).to_string();
    assert_eq!(
        text(libc::EPERM, Some(2)),
        "io_uring is disabled by sysctl kernel.io_uring_disabled=2"
    );
    assert!(text(libc::EPERM, Some(1)).contains("kernel.io_uring_disabled=1"));
    assert!(text(libc::EPERM, Some(1)).contains("kernel.io_uring_group"));
    for sysctl in [Some(0), None] {
        assert_eq!(
            text(libc::EPERM, sysctl),
            "io_uring_setup(2) is not permitted here (EPERM: seccomp or sysctl)"
        );
    }
    assert!(text(libc::ENOSYS, None).contains("ENOSYS"));
    assert!(text(libc::ENOMEM, None).contains("RLIMIT_MEMLOCK"));
    assert!(text(libc::EFAULT, None).starts_with("io_uring_setup(2) failed: "));
    let missing = Unavailable::MissingFeature("IORING_RECV_MULTISHOT (Linux 6.0)");
    assert_eq!(
        missing.to_string(),
        "kernel lacks IORING_RECV_MULTISHOT (Linux 6.0)"
    );
    assert_eq!(
        Unavailable::MissingOpcode("IORING_OP_RECV").to_string(),
        "kernel lacks IORING_OP_RECV"
    );
    // Through io::Error and back, as Ring::new reports it.
    let err: std::io::Error = Unavailable::DisabledBySysctl(2).into();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
    assert_eq!(
        Unavailable::from_io(&err),
        Some(Unavailable::DisabledBySysctl(2))
    );
    assert!(err.to_string().contains("kernel.io_uring_disabled=2"));
    assert_eq!(Unavailable::from_io(&std::io::Error::other("x")), None);
}

/// An echo server on one ring, one thread: multishot accept, a multishot recv per connection
/// into provided buffers, one send in flight per connection, stopped by an eventfd read
/// through the same ring. Returns the ring's counters.
fn echo_server(listener: TcpListener, stop: Arc<Waker>, opts: RingOptions) -> RingStats {
    const ACCEPT: Token = Token(u64::MAX);
    const STOP: Token = Token(u64::MAX - 1);
    struct Conn {
        fd: OwnedFd,
        pending: Vec<u8>,
        sending: bool,
    }
    let mut ring = Ring::new(&opts).unwrap();
    let group = ring.add_buffer_group(64, 4096).unwrap();
    ring.accept_multishot(&listener, ACCEPT);
    ring.read(&*stop, Vec::with_capacity(8), STOP);
    let mut conns: Vec<Option<Conn>> = Vec::new();
    loop {
        ring.wait(1, None).unwrap();
        while let Some(mut done) = ring.next_completion() {
            let token = done.token();
            if token == STOP {
                return ring.stats();
            }
            if token == ACCEPT {
                if let Some(fd) = done.take_accepted() {
                    ring.recv_multishot(&fd, group, Token(conns.len() as u64));
                    conns.push(Some(Conn {
                        fd,
                        pending: Vec::new(),
                        sending: false,
                    }));
                }
                if !done.more() {
                    ring.accept_multishot(&listener, ACCEPT);
                }
                continue;
            }
            let slot = &mut conns[token.0 as usize];
            let conn = slot.as_mut().expect("completion for a closed connection");
            if let Some(buf) = done.take_provided() {
                conn.pending.extend_from_slice(ring.buffer(&buf)); // copy, then recycle
                ring.recycle(buf);
            }
            match (done.kind(), done.is_final(), done.res()) {
                (OpKind::Recv, true, res) if res > 0 || res == -libc::ENOBUFS => {
                    // Ended with data (full CQ) or out of buffers: re-arm.
                    ring.recv_multishot(&conn.fd, group, token);
                }
                (OpKind::Recv, true, _) => {
                    *slot = None; // end of stream (the clients close only when done)
                    continue;
                }
                (OpKind::Send, _, res) => {
                    assert!(res > 0, "send: {res}");
                    let mut out = done.take_buf().unwrap();
                    conn.sending = false;
                    if (res as usize) < out.len() {
                        // A short send: the rest goes first, before any newer bytes.
                        out.drain(..res as usize);
                        out.append(&mut conn.pending);
                        conn.pending = out;
                    }
                }
                _ => {}
            }
            if !conn.sending && !conn.pending.is_empty() {
                let out = std::mem::take(&mut conn.pending);
                ring.send(&conn.fd, out, 0, token);
                conn.sending = true;
            }
        }
    }
}

#[test]
fn echo_through_one_ring_counts_enters_per_message() {
    let test = "echo_through_one_ring_counts_enters_per_message";
    if ring_or_skip(test, RingOptions::default()).is_none() {
        return;
    }
    reactor::syscalls::enable();
    let before = reactor::syscalls::snapshot();
    let stats = run_echo(8, 500, RingOptions::default());
    let counted = reactor::syscalls::snapshot() - before;
    // The process-wide counters see this ring's work (and other tests' running meanwhile).
    assert!(
        counted.io_uring_enter >= stats.enters,
        "{counted:?} vs {stats:?}"
    );
    assert!(counted.uring_sqes_submitted >= stats.sqes_submitted);
    assert!(counted.uring_cqes_reaped >= stats.cqes_reaped);
    let messages = (8 * 500) as f64;
    eprintln!(
        "echo through one ring, 8 connections x 500 round trips: {:.2} io_uring_enter, \
         {:.2} SQEs, {:.2} CQEs per echoed message ({stats:?})",
        stats.enters as f64 / messages,
        stats.sqes_submitted as f64 / messages,
        stats.cqes_reaped as f64 / messages,
    );
}

#[test]
fn echo_survives_a_tiny_completion_queue() {
    // 16 connections and a 4-entry CQ: CQEs overflow, and a multishot recv or accept that
    // finds the CQ full ends early (its last CQE may carry data); the loop re-arms it and no
    // byte may be lost.
    let tiny = RingOptions {
        sq_entries: 4,
        cq_entries: 4,
    };
    if ring_or_skip("echo_survives_a_tiny_completion_queue", tiny).is_none() {
        return;
    }
    let stats = run_echo(16, 200, tiny);
    eprintln!("tiny CQ: {stats:?}");
}

/// Runs [`echo_server`] on its own thread against `conns` client threads doing `rounds`
/// checked round trips of 64 bytes each; returns the server ring's counters.
fn run_echo(conns: usize, rounds: usize, opts: RingOptions) -> RingStats {
    let listener = listen(any_v4());
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(Waker::new().unwrap());
    let server = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || echo_server(listener, stop, opts))
    };
    let clients: Vec<_> = (0..conns)
        .map(|c| {
            thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream.set_read_timeout(Some(DEADLINE)).unwrap();
                for round in 0..rounds {
                    let msg: Vec<u8> = (0..64).map(|i| (c * 31 + round * 7 + i) as u8).collect();
                    write_all(&stream, &msg);
                    let mut echo = vec![0u8; msg.len()];
                    stream.read_exact(&mut echo).expect("echo");
                    assert_eq!(echo, msg, "connection {c}, round {round}");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    stop.wake().unwrap();
    let stats = server.join().unwrap();
    assert!(stats.enters > 0 && stats.cqes_reaped > 0);
    stats
}
