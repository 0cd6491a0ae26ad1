//! Helpers shared by the reactor's integration tests: connected socket pairs on loopback and
//! "wait until this token shows up" loops with generous deadlines.
//!
//! Every helper uses the real kernel: real sockets on 127.0.0.1 or [::1], real epoll sets.
//! Deadlines are generous (seconds) because they only bound a failure; a passing test returns
//! as soon as the kernel delivers.

#![allow(dead_code)] // Each test file uses a different subset.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reactor::{Epoll, Events, ListenOptions, TcpListener, TcpStream, Token};

/// How long a test waits for something that should happen at once before declaring failure.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A short wait used to show that something does NOT happen. Long enough for loopback
/// delivery (microseconds), short enough to keep the suite fast.
pub const QUIET: Duration = Duration::from_millis(100);

/// `127.0.0.1:0`: the kernel picks a free port.
pub fn any_v4() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// `[::1]:0`.
pub fn any_v6() -> SocketAddr {
    "[::1]:0".parse().unwrap()
}

/// A listener on `addr` with default options.
pub fn listen(addr: SocketAddr) -> TcpListener {
    TcpListener::bind(addr, &ListenOptions::default()).expect("bind")
}

/// Accepts one connection, retrying `WouldBlock` until [`DEADLINE`].
pub fn accept_one(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    let start = Instant::now();
    loop {
        match listener.accept() {
            Ok(pair) => return pair,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && start.elapsed() < DEADLINE => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// A connected pair on `addr`'s loopback: (client in blocking mode, server side nonblocking
/// as accepted).
pub fn pair_on(addr: SocketAddr) -> (TcpStream, TcpStream) {
    let listener = listen(addr);
    let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (server, _) = accept_one(&listener);
    (client, server)
}

/// A connected pair on 127.0.0.1.
pub fn pair() -> (TcpStream, TcpStream) {
    pair_on(any_v4())
}

/// Waits until an event for `token` arrives, or panics after [`DEADLINE`]. Returns its
/// readiness as (readable, writable, read_closed).
pub fn wait_for(epoll: &Epoll, events: &mut Events, token: Token) -> (bool, bool, bool) {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        epoll.wait(events, Some(DEADLINE)).expect("epoll_wait");
        if let Some(ev) = events.iter().find(|ev| ev.token() == token) {
            return (ev.is_readable(), ev.is_writable(), ev.is_read_closed());
        }
    }
    panic!("no event for {token:?} within {DEADLINE:?}");
}

/// Whether one wait of [`QUIET`] reports `token`.
pub fn fires_within_quiet(epoll: &Epoll, events: &mut Events, token: Token) -> bool {
    epoll.wait(events, Some(QUIET)).expect("epoll_wait");
    events.iter().any(|ev| ev.token() == token)
}

/// Writes all of `data` to a (blocking) stream.
pub fn write_all(stream: &TcpStream, mut data: &[u8]) {
    while !data.is_empty() {
        let n = stream.write(data).expect("write");
        data = &data[n..];
    }
}

/// Reads exactly `n` bytes from a nonblocking stream, waiting on a private epoll set.
pub fn read_exact_nonblocking(stream: &TcpStream, n: usize) -> Vec<u8> {
    let epoll = Epoll::new().unwrap();
    epoll
        .add(stream, Token(0), reactor::Interest::READABLE)
        .unwrap();
    let mut events = Events::with_capacity(4);
    let mut out = vec![0u8; n];
    let mut got = 0;
    let start = Instant::now();
    while got < n {
        assert!(
            start.elapsed() < DEADLINE,
            "read timed out after {got} of {n} bytes"
        );
        match stream.read(&mut out[got..]) {
            Ok(0) => panic!("EOF after {got} of {n} bytes"),
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                epoll.wait(&mut events, Some(DEADLINE)).unwrap();
            }
            Err(e) => panic!("read: {e}"),
        }
    }
    out
}
