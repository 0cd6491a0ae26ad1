//! Client side of the tests: connecting, resetting, byte-exact echo checks, and [`echo_many`],
//! which verifies thousands of connections from one thread.
//!
//! An echo check must never deadlock on its own: a client that writes a large payload before
//! reading would fill both directions' socket buffers and wait forever on a server that is
//! (correctly) applying backpressure. So [`echo_exact`] writes on one thread and reads on
//! another, and [`echo_many`] multiplexes reads and writes with epoll(7), the same way the
//! server does, using the project's own `reactor` crate on the client side.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use reactor::{Epoll, Events, Interest, Token};

use super::wait::{poll_until, poll_until_steady, TimedOut};
use super::IO_TIMEOUT;

/// A blocking connection with [`IO_TIMEOUT`] on reads and writes, Nagle off.
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    set_timeouts(&stream, IO_TIMEOUT)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A blocking connection whose `SO_RCVBUF` and `SO_SNDBUF` are set before connect(2) (see
/// [`super::sys::connect_with_buffers`]), with [`IO_TIMEOUT`] on reads and writes: a client
/// that cannot hide much of a backlog in its own kernel buffers. Panics if it cannot connect.
pub fn connect_buffered(addr: SocketAddr, rcvbuf: usize, sndbuf: usize) -> TcpStream {
    let stream = super::sys::connect_with_buffers(addr, rcvbuf, sndbuf)
        .unwrap_or_else(|e| panic!("connect {addr} with small buffers: {e}"));
    set_timeouts(&stream, IO_TIMEOUT).expect("socket timeouts");
    stream
}

/// Sets both socket timeouts.
pub fn set_timeouts(stream: &TcpStream, timeout: Duration) -> io::Result<()> {
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))
}

/// Closes `stream` with SO_LINGER {1, 0}, so the kernel sends RST instead of FIN (socket(7)):
/// the client vanishes abruptly, as a crashed peer would.
pub fn reset(stream: TcpStream) {
    let stream = reactor::TcpStream::from(OwnedFd::from(stream));
    stream.set_linger_zero().expect("SO_LINGER");
    drop(stream);
}

/// Writes `payload` (from a second thread) while reading its echo here; checks the echo byte
/// for byte. Does not close the connection.
pub fn echo_exact(stream: &TcpStream, payload: &[u8]) -> Result<(), String> {
    std::thread::scope(|s| {
        let writer = s.spawn(|| (&*stream).write_all(payload));
        let read = read_expecting(stream, payload);
        let written = writer.join().expect("writer thread");
        written.map_err(|e| format!("write failed: {e}"))?;
        read
    })
}

/// Reads exactly `expected.len()` bytes and compares them as they arrive; the error says at
/// which offset the echo first differed or stopped.
pub fn read_expecting(stream: &TcpStream, expected: &[u8]) -> Result<(), String> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < expected.len() {
        let want = (expected.len() - got).min(buf.len());
        match (&*stream).read(&mut buf[..want]) {
            Ok(0) => return Err(format!("EOF after {got} of {} bytes", expected.len())),
            Ok(n) => {
                if let Some(i) = (0..n).find(|&i| buf[i] != expected[got + i]) {
                    return Err(format!("byte {} of {} differs", got + i, expected.len()));
                }
                got += n;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read after {got} of {} bytes: {e}", expected.len())),
        }
    }
    Ok(())
}

/// Reads until EOF (each read bounded by the socket's timeout).
pub fn read_to_eof(stream: &TcpStream) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    (&*stream).read_to_end(&mut out)?;
    Ok(out)
}

/// Expects end-of-file (the server closed) within `within`, with no data before it. An RST
/// (`ECONNRESET`) also counts as closed.
pub fn expect_closed(stream: &TcpStream, within: Duration) -> Result<(), String> {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    let result = match (&*stream).read(&mut buf) {
        Ok(0) => Ok(()),
        Ok(n) => Err(format!(
            "expected EOF, got {n} bytes: {:?}",
            String::from_utf8_lossy(&buf[..n])
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(()),
        Err(e) if is_timeout(&e) => Err(format!("still open after {within:?}")),
        Err(e) => Err(format!("read: {e}")),
    };
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    result
}

/// Expects the connection to stay open and silent for `quiet`.
pub fn expect_open(stream: &TcpStream, quiet: Duration) -> Result<(), String> {
    stream.set_read_timeout(Some(quiet)).unwrap();
    let mut buf = [0u8; 256];
    let result = match (&*stream).read(&mut buf) {
        Ok(0) => Err("closed by the server".to_string()),
        Ok(n) => Err(format!("unexpected {n} bytes")),
        Err(e) if is_timeout(&e) => Ok(()),
        Err(e) => Err(format!("read: {e}")),
    };
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    result
}

/// True for the errors a socket timeout produces (EAGAIN or ETIMEDOUT).
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// What [`echo_many`] does once a connection's payload is written.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Finish {
    /// Half-close (`shutdown(SHUT_WR)`) and require EOF right after the last echoed byte.
    HalfClose,
    /// Keep the connection open; it is done when its whole echo has arrived.
    KeepOpen,
    /// Half-close after writing, as `HalfClose`, but the server may end the connection early
    /// (a shutdown drain): EOF or a reset at any point ends it, and what arrived must be a
    /// prefix of the payload. A failed write just stops the writing.
    UntilServerCloses,
}

/// Sends `payloads[i]` on `streams[i]` and checks every echo byte for byte, all connections
/// at once, from this one thread, driven by epoll. Gives the streams back (in blocking mode,
/// with timeouts) so a test can keep them open.
pub fn echo_many<P: AsRef<[u8]>>(
    streams: Vec<TcpStream>,
    payloads: &[P],
    finish: Finish,
    within: Duration,
) -> Result<Vec<TcpStream>, String> {
    let written = vec![0; streams.len()];
    echo_many_from(streams, payloads, &written, finish, within)
}

/// [`echo_many`] for connections that already wrote `written[i]` bytes of their payload
/// (without reading any echo): writes the rest, and checks the whole echo from its start.
pub fn echo_many_from<P: AsRef<[u8]>>(
    streams: Vec<TcpStream>,
    payloads: &[P],
    written: &[usize],
    finish: Finish,
    within: Duration,
) -> Result<Vec<TcpStream>, String> {
    let conns = drive(streams, payloads, written, finish, within)?;
    Ok(conns
        .into_iter()
        .map(|c| {
            c.stream.set_nonblocking(false).expect("blocking mode");
            c.stream
        })
        .collect())
}

/// [`echo_many`] with [`Finish::UntilServerCloses`]: returns how many echoed bytes each
/// connection received (each a checked prefix of its payload) before the server ended it.
pub fn echo_until_server_closes<P: AsRef<[u8]>>(
    streams: Vec<TcpStream>,
    payloads: &[P],
    within: Duration,
) -> Result<Vec<usize>, String> {
    let written = vec![0; streams.len()];
    let conns = drive(
        streams,
        payloads,
        &written,
        Finish::UntilServerCloses,
        within,
    )?;
    Ok(conns.iter().map(|c| c.matched).collect())
}

/// The epoll loop behind [`echo_many`] and [`echo_until_server_closes`].
fn drive<P: AsRef<[u8]>>(
    streams: Vec<TcpStream>,
    payloads: &[P],
    written: &[usize],
    finish: Finish,
    within: Duration,
) -> Result<Vec<Pending>, String> {
    assert_eq!(streams.len(), payloads.len());
    assert_eq!(streams.len(), written.len());
    let epoll = Epoll::new().expect("epoll_create1");
    let mut conns = Vec::with_capacity(streams.len());
    for (i, stream) in streams.into_iter().enumerate() {
        stream.set_nonblocking(true).expect("O_NONBLOCK");
        epoll
            .add(
                &stream,
                Token(i as u64),
                Interest::READABLE.add(Interest::WRITABLE),
            )
            .expect("epoll_ctl(ADD)");
        conns.push(Pending {
            index: i as u64,
            stream,
            written: written[i],
            matched: 0,
            done: false,
            writing: true,
        });
    }
    let mut left = conns.len();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + within;
    while left > 0 {
        if Instant::now() > deadline {
            return Err(describe_stuck(&conns, payloads, within));
        }
        epoll
            .wait(&mut events, Some(Duration::from_millis(500)))
            .expect("epoll_wait");
        for event in events.iter() {
            let i = event.token().0 as usize;
            let conn = &mut conns[i];
            if conn.done {
                continue;
            }
            conn.step(&epoll, payloads[i].as_ref(), finish, &mut buf)
                .map_err(|e| format!("connection {i} of {}: {e}", payloads.len()))?;
            if conn.done {
                let _ = epoll.delete(&conn.stream);
                left -= 1;
            }
        }
    }
    Ok(conns)
}

/// One connection's progress inside [`echo_many`].
struct Pending {
    /// Its position in `echo_many`'s vector, which is also its epoll token.
    index: u64,
    stream: TcpStream,
    written: usize,
    /// Echoed bytes received so far, all equal to the payload's prefix.
    matched: usize,
    done: bool,
    writing: bool,
}

impl Pending {
    /// Writes what the socket takes, then reads and checks what has arrived.
    fn step(
        &mut self,
        epoll: &Epoll,
        payload: &[u8],
        finish: Finish,
        buf: &mut [u8],
    ) -> Result<(), String> {
        self.write_some(epoll, payload, finish)?;
        self.read_some(payload, finish, buf)
    }

    /// Writes until EAGAIN; after the last byte, half-closes (unless `KeepOpen`) and stops
    /// asking for writability.
    fn write_some(&mut self, epoll: &Epoll, payload: &[u8], finish: Finish) -> Result<(), String> {
        while self.writing && self.written < payload.len() {
            match (&self.stream).write(&payload[self.written..]) {
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) if finish == Finish::UntilServerCloses => {
                    // The server has gone (EPIPE, ECONNRESET): read what it sent.
                    self.written = payload.len();
                    break;
                }
                Err(e) => return Err(format!("write after {} bytes: {e}", self.written)),
            }
        }
        if self.writing && self.written == payload.len() {
            self.writing = false;
            if finish != Finish::KeepOpen {
                let shut = self.stream.shutdown(Shutdown::Write);
                // After a reset there is nothing left to shut down.
                if finish == Finish::HalfClose {
                    shut.map_err(|e| format!("shutdown: {e}"))?;
                }
            }
            epoll
                .modify(&self.stream, Token(self.index), Interest::READABLE)
                .map_err(|e| format!("epoll_ctl(MOD): {e}"))?;
        }
        Ok(())
    }

    /// Reads until EAGAIN, checking each byte against the payload; marks the connection done
    /// at the EOF (or the full echo) that `finish` expects.
    fn read_some(&mut self, payload: &[u8], finish: Finish, buf: &mut [u8]) -> Result<(), String> {
        loop {
            match (&self.stream).read(buf) {
                Ok(0) if self.matched == payload.len() && finish == Finish::HalfClose => {
                    self.done = true;
                    return Ok(());
                }
                Ok(0) if finish == Finish::UntilServerCloses => {
                    self.done = true;
                    return Ok(());
                }
                Ok(0) => {
                    return Err(format!(
                        "EOF after {} of {} echoed bytes",
                        self.matched,
                        payload.len()
                    ))
                }
                Ok(n) => {
                    let expected = &payload[self.matched..];
                    if n > expected.len() {
                        return Err(format!("{} bytes more than were sent", n - expected.len()));
                    }
                    if let Some(j) = (0..n).find(|&j| buf[j] != expected[j]) {
                        return Err(format!(
                            "echo byte {} of {} differs",
                            self.matched + j,
                            payload.len()
                        ));
                    }
                    self.matched += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e)
                    if e.kind() == io::ErrorKind::ConnectionReset
                        && finish == Finish::UntilServerCloses =>
                {
                    self.done = true;
                    return Ok(());
                }
                Err(e) => return Err(format!("read after {} echoed bytes: {e}", self.matched)),
            }
        }
        if self.matched == payload.len() && finish == Finish::KeepOpen && !self.writing {
            self.done = true;
        }
        Ok(())
    }
}

fn describe_stuck<P: AsRef<[u8]>>(conns: &[Pending], payloads: &[P], within: Duration) -> String {
    let stuck: Vec<usize> = (0..conns.len()).filter(|&i| !conns[i].done).collect();
    let i = stuck[0];
    format!(
        "{} of {} connections unfinished after {within:?}; e.g. connection {i}: wrote {} of {}, \
         got {} echoed bytes",
        stuck.len(),
        conns.len(),
        conns[i].written,
        payloads[i].as_ref().len(),
        conns[i].matched
    )
}

/// Writes as much of each payload as the kernel takes without reading any echo, round after
/// round, until no connection has made progress for `quiet` (or `within` passes). Returns how
/// much of each payload was written: the state of a crowd of clients that do not read.
pub fn write_without_reading<P: AsRef<[u8]>>(
    streams: &[TcpStream],
    payloads: &[P],
    quiet: Duration,
    within: Duration,
) -> Vec<usize> {
    let mut written = vec![0usize; streams.len()];
    let round = |written: &mut Vec<usize>| -> usize {
        for (i, s) in streams.iter().enumerate() {
            written[i] += write_until_blocked(s, &payloads[i].as_ref()[written[i]..])
                .unwrap_or_else(|e| {
                    panic!("connection {i}: write after {} bytes: {e}", written[i])
                });
        }
        written.iter().sum()
    };
    let every = Duration::from_millis(5);
    // Still moving at `within`: take what was written by then.
    let _ = poll_until_steady(within, quiet, every, || round(&mut written));
    for s in streams {
        s.set_nonblocking(false).expect("blocking mode");
    }
    written
}

/// Writes `chunk` over and over without reading until the socket has taken nothing for
/// `quiet` (or `max` bytes are written): then the kernel buffers on both sides are full and
/// the server holds whatever else it took. Returns the bytes written.
pub fn fill_without_reading(
    stream: &TcpStream,
    chunk: &[u8],
    quiet: Duration,
    max: usize,
) -> usize {
    let mut sent = 0;
    let fill = || {
        while sent < max {
            match write_until_blocked(stream, chunk) {
                Ok(0) => break,
                Ok(n) => sent += n,
                Err(e) => panic!("write without reading, after {sent} bytes: {e}"),
            }
        }
        sent
    };
    let every = Duration::from_millis(2);
    let sent = poll_until_steady(Duration::from_secs(120), quiet, every, fill)
        .unwrap_or_else(|still_moving| still_moving.last);
    stream.set_nonblocking(false).expect("blocking mode");
    sent
}

/// Writes `bytes` in non-blocking mode until EAGAIN or the end; returns how many were taken.
/// The stream is left non-blocking.
fn write_until_blocked(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    stream.set_nonblocking(true)?;
    let mut done = 0;
    while done < bytes.len() {
        match (&*stream).write(&bytes[done..]) {
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Connects `n` clients one after another. A refused or timed-out connect is retried for up
/// to `within` overall: under a connection storm the kernel may drop a SYN when the accept
/// queue is full, and the retry is what a real client would do.
pub fn connect_many(
    addr: SocketAddr,
    n: usize,
    within: Duration,
) -> Result<Vec<TcpStream>, String> {
    let mut out = Vec::with_capacity(n);
    poll_until(within, Duration::from_millis(10), || {
        while out.len() < n {
            match connect(addr) {
                Ok(s) => out.push(s),
                Err(e) => {
                    if out.len() % 1000 == 0 {
                        eprintln!("connect {} of {n}: {e}; retrying", out.len());
                    }
                    return Err(format!("connect {} of {n}: {e}", out.len()));
                }
            }
        }
        Ok(())
    })
    .map_err(|timeout: TimedOut<String>| timeout.to_string())?;
    Ok(out)
}
