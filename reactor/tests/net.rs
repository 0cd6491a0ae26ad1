//! TCP sockets from socket(2) up, on real loopback: binding port 0, IPv4 and IPv6 echo,
//! nonblocking accept and connect, the accept-queue depth from TCP_INFO, writev, socket options,
//! and writes to a vanished peer that fail with EPIPE/ECONNRESET instead of raising SIGPIPE.

mod util;

use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use reactor::{
    somaxconn, AcceptQueue, Epoll, Events, Interest, ListenOptions, Shutdown, TcpListener,
    TcpStream, Token,
};
use util::{accept_one, any_v4, any_v6, listen, pair, pair_on, wait_for, write_all, DEADLINE};

#[test]
fn bind_port_zero_reports_the_real_port() {
    let listener = listen(any_v4());
    let addr = listener.local_addr().unwrap();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0, "the kernel must have picked a port");
    // The port is real: std can connect to it, and our accept sees std's local address.
    let client = std::net::TcpStream::connect(addr).unwrap();
    let (server, peer) = accept_one(&listener);
    assert_eq!(peer, client.local_addr().unwrap());
    assert_eq!(server.local_addr().unwrap(), addr);
    assert_eq!(server.peer_addr().unwrap(), peer);
}

#[test]
fn echo_over_ipv4_loopback() {
    echo_roundtrip(any_v4());
}

#[test]
fn echo_over_ipv6_loopback() {
    let (client, server) = pair_on(any_v6());
    assert!(matches!(client.peer_addr().unwrap(), SocketAddr::V6(_)));
    assert_eq!(server.local_addr().unwrap().ip().to_string(), "::1");
    drop((client, server));
    echo_roundtrip(any_v6());
}

/// A tiny echo server thread (our listener and streams on both ends) checked byte for byte.
/// The client writes from one thread and reads from another through `&TcpStream`, which is
/// `Read + Write` precisely so that one socket can be shared this way.
fn echo_roundtrip(addr: SocketAddr) {
    let listener = listen(addr);
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (stream, _) = accept_one(&listener);
        stream.set_nonblocking(false).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).unwrap();
            if n == 0 {
                return;
            }
            write_all(&stream, &buf[..n]);
        }
    });
    let client = TcpStream::connect(addr).unwrap();
    // Larger than the socket buffers, so writer and reader must really run concurrently.
    let message: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut echoed = Vec::new();
    thread::scope(|s| {
        s.spawn(|| {
            (&client).write_all(&message).unwrap();
            client.shutdown(Shutdown::Write).unwrap();
        });
        (&client).read_to_end(&mut echoed).unwrap();
    });
    assert_eq!(echoed.len(), message.len());
    assert!(echoed == message, "echoed bytes differ");
    server.join().unwrap();
}

#[test]
fn nonblocking_accept_returns_would_block() {
    let listener = listen(any_v4());
    let err = listener.accept().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
}

#[test]
fn accepted_streams_are_nonblocking() {
    let (_client, server) = pair();
    let mut buf = [0u8; 8];
    assert_eq!(
        server.read(&mut buf).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
}

#[test]
fn accept_queue_reads_the_real_queue() {
    const BACKLOG: u32 = 16;
    const WAITING: u32 = 5;
    assert!(
        somaxconn().unwrap_or(4096) >= BACKLOG,
        "somaxconn would cap the backlog"
    );
    let opts = ListenOptions {
        backlog: BACKLOG,
        ..ListenOptions::default()
    };
    let listener = TcpListener::bind(any_v4(), &opts).unwrap();
    let addr = listener.local_addr().unwrap();
    assert_eq!(
        listener.accept_queue().unwrap(),
        AcceptQueue {
            len: 0,
            backlog: BACKLOG
        }
    );

    let clients: Vec<TcpStream> = (0..WAITING)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    // connect() returns once the SYN-ACK arrives; the server side joins the queue when the
    // final ACK is processed, which on loopback is immediate but not synchronous: poll for it.
    let start = Instant::now();
    while listener.accept_queue().unwrap().len < WAITING && start.elapsed() < DEADLINE {
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        listener.accept_queue().unwrap(),
        AcceptQueue {
            len: WAITING,
            backlog: BACKLOG
        }
    );

    for _ in 0..WAITING {
        accept_one(&listener);
    }
    assert_eq!(listener.accept_queue().unwrap().len, 0);
    assert_eq!(
        listener.accept().unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    drop(clients);
}

#[test]
fn backlog_is_capped_by_somaxconn() {
    let Some(cap) = somaxconn() else { return };
    let opts = ListenOptions {
        backlog: cap.saturating_mul(4),
        ..ListenOptions::default()
    };
    let listener = TcpListener::bind(any_v4(), &opts).unwrap();
    assert_eq!(listener.accept_queue().unwrap().backlog, cap);
}

#[test]
fn nonblocking_connect_completes_when_writable() {
    let listener = listen(any_v4());
    let stream = TcpStream::connect_nonblocking(listener.local_addr().unwrap()).unwrap();
    let epoll = Epoll::new().unwrap();
    let mut events = Events::with_capacity(4);
    epoll.add(&stream, Token(1), Interest::WRITABLE).unwrap();
    let (_, writable, _) = wait_for(&epoll, &mut events, Token(1));
    assert!(writable);
    assert!(
        stream.take_error().unwrap().is_none(),
        "connected without error"
    );
    assert_eq!(stream.peer_addr().unwrap(), listener.local_addr().unwrap());
}

#[test]
fn connect_to_a_closed_port_is_refused() {
    // Bind a port, learn its number, close it: nothing listens there now.
    let addr = listen(any_v4()).local_addr().unwrap();
    let err = TcpStream::connect(addr).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);

    // The nonblocking form reports the same error through SO_ERROR once writable.
    let stream = TcpStream::connect_nonblocking(addr).unwrap();
    let epoll = Epoll::new().unwrap();
    let mut events = Events::with_capacity(4);
    epoll.add(&stream, Token(1), Interest::WRITABLE).unwrap();
    wait_for(&epoll, &mut events, Token(1));
    let err = stream.take_error().unwrap().expect("a pending error");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
}

#[test]
fn writev_gathers_buffers_in_order() {
    let (client, server) = pair();
    let parts = [
        IoSlice::new(b"hello, "),
        IoSlice::new(b""),
        IoSlice::new(b"world"),
    ];
    assert_eq!(client.writev(&parts).unwrap(), 12);
    assert_eq!(util::read_exact_nonblocking(&server, 12), b"hello, world");
}

#[test]
fn shutdown_write_sends_eof_but_keeps_reading() {
    let (client, server) = pair();
    client.shutdown(Shutdown::Write).unwrap();
    server.set_nonblocking(false).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(
        server.read(&mut buf).unwrap(),
        0,
        "the client's FIN reads as EOF"
    );
    // Half-closed: the other direction still works.
    write_all(&server, b"late");
    let mut got = [0u8; 4];
    (&client).read_exact(&mut got).unwrap();
    assert_eq!(&got, b"late");
}

#[test]
fn write_to_a_vanished_peer_fails_without_sigpipe() {
    let (client, server) = pair();
    // RST instead of FIN: the client's socket learns at once that the peer is gone.
    server.set_linger_zero().unwrap();
    drop(server);
    let start = Instant::now();
    let err = loop {
        match client.write(b"anyone there?") {
            // Data sent before the RST arrived is accepted by the local buffer.
            Ok(_) => assert!(start.elapsed() < DEADLINE, "writes kept succeeding"),
            Err(e) => break e,
        }
        thread::sleep(Duration::from_millis(1));
    };
    assert!(
        matches!(
            err.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        ),
        "{err:?}"
    );
    // Once the error is consumed, later writes report EPIPE. The test process is still alive;
    // tests/sigpipe.rs shows the signal would really have been raised without MSG_NOSIGNAL.
    let err = client.write(b"again").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    let err = client.writev(&[IoSlice::new(b"again")]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
}

#[test]
fn socket_options_round_trip() {
    let (client, _server) = pair();
    client.set_nodelay(true).unwrap();
    assert!(client.nodelay().unwrap());
    client.set_nodelay(false).unwrap();
    assert!(!client.nodelay().unwrap());
    client.set_recv_buffer_size(64 * 1024).unwrap();
    client.set_send_buffer_size(64 * 1024).unwrap();
    assert!(client.take_error().unwrap().is_none());
    assert_eq!(
        client
            .set_read_timeout(Some(Duration::ZERO))
            .unwrap_err()
            .kind(),
        io::ErrorKind::InvalidInput
    );
}

#[test]
fn read_timeout_ends_a_blocking_read() {
    let (client, _server) = pair();
    client
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 8];
    let err = client.read(&mut buf).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    assert!(start.elapsed() >= Duration::from_millis(40));
    client.set_read_timeout(None).unwrap();
}

#[test]
fn reuse_port_lets_two_listeners_share_a_port() {
    let opts = ListenOptions {
        reuse_port: true,
        ..ListenOptions::default()
    };
    let first = TcpListener::bind(any_v4(), &opts).unwrap();
    let addr = first.local_addr().unwrap();
    let second = TcpListener::bind(addr, &opts).unwrap();
    assert_eq!(second.local_addr().unwrap(), addr);
    // Without SO_REUSEPORT the same bind fails.
    let err = TcpListener::bind(addr, &ListenOptions::default()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
}

#[test]
fn streams_convert_to_and_from_owned_fds() {
    use std::os::fd::{AsRawFd, OwnedFd};
    let (client, server) = pair();
    let raw = server.as_raw_fd();
    let fd: OwnedFd = server.into();
    assert_eq!(fd.as_raw_fd(), raw);
    let server = TcpStream::from(fd);
    write_all(&client, b"ok");
    assert_eq!(util::read_exact_nonblocking(&server, 2), b"ok");
    assert!(format!("{server:?}").contains("TcpStream"));
}
