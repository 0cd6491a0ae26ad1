//! The connection state machine, written once and driven by every model.
//!
//! A [`Conn`] owns one client socket and everything the server remembers about it. A model calls
//! [`Conn::serve`] whenever the socket may be ready (after `epoll_wait(2)`, after a worker pops the
//! connection from the ring, or in a loop on a blocking socket) and gets back a [`Status`]: the
//! readiness to wait for next, "hand me to a worker", or "close me". The models differ only in who
//! calls `serve` and where the returned interest goes.
//!
//! What the state machine guarantees, whatever the model:
//! - **RFC 862 echo**: every byte received is sent back, in order, nothing added, nothing lost
//!   (with `--protocol lines`, each line is echoed; see [`crate::protocol`]).
//! - **Bounded memory**: bytes the kernel would not take yet wait in `pending`. When `pending`
//!   reaches the high-water mark the connection stops reading (its interest drops `EPOLLIN`), and
//!   resumes only below the low-water mark. A client that never reads therefore holds at most
//!   `high_water + one read` bytes of server memory; the rest stays in kernel socket buffers and
//!   TCP flow control pushes back on the client.
//! - **Lazy buffers**: reads go into the calling thread's [`Scratch`] buffer, so an idle
//!   connection holds no heap buffer at all; `pending` is allocated only when a write is partial
//!   and freed as soon as it drains.
//! - **Half-close**: after the client's FIN (a read of 0), pending bytes are flushed, then the
//!   socket is closed.
//! - **Lingering close**: when the server ends a connection itself (`ERR line too long`, shutdown
//!   drain), it flushes, sends FIN with `shutdown(SHUT_WR)`, and reads and discards what the
//!   client still sends until the client's own FIN, bounded by a deadline. Closing a socket with
//!   unread input makes Linux send RST (and a socket in FIN-WAIT that was shut for reading answers
//!   new data with RST too), and an RST throws away the echo bytes still in our send queue.
//!   nginx's `lingering_close` exists for exactly this. So we never `shutdown(SHUT_RD)` a
//!   connection we intend to close gracefully.
//! - Errors (ECONNRESET, EPIPE, ...) close this connection only; so would a panic (a bug).

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use log::{debug, error};
use pool::counters::Counter;
use reactor::{Interest, Shutdown, TcpStream};

use crate::protocol::{burn_cpu, LineParser, Protocol, Request, LINE_TOO_LONG};
use crate::stats::Stats;

/// Size of the per-thread read buffer: one read takes at most this much.
pub const READ_CHUNK: usize = 64 * 1024;

/// How long a connection closed by the server for a protocol error (line too long) may linger,
/// waiting for the client's FIN, before it is closed anyway (nginx's `lingering_time`).
pub const LINGER_TIME: Duration = Duration::from_secs(5);

/// Per-connection limits (`--high-water`, `--max-line`, ...).
#[derive(Copy, Clone, Debug)]
pub struct Limits {
    /// Stop reading when this many bytes wait to be sent (default 64 KiB).
    pub high_water: usize,
    /// Resume reading when pending bytes fall to this (default 16 KiB).
    pub low_water: usize,
    /// Longest accepted line for `--protocol lines` (default 64 KiB).
    pub max_line: usize,
    /// Reads per call to [`Conn::serve`] before yielding to other connections. A blocking
    /// model must use 1, or `serve` would block on a second read.
    pub read_budget: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            high_water: 64 * 1024,
            low_water: 16 * 1024,
            max_line: 64 * 1024,
            read_budget: 16,
        }
    }
}

/// Where a costly request (`WORK`) runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Costly {
    /// On the thread that called `serve` (every model but `reactor-offload`'s reactor).
    Inline,
    /// Stop and return [`Status::Offload`]; a worker resumes with `Costly::Inline`.
    Defer,
}

/// What the caller should do with the connection next.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Keep it and call `serve` again when this readiness arrives.
    Wait(Interest),
    /// A costly request is next: hand the connection to a worker (only with `Costly::Defer`).
    Offload,
    /// Done: drop the `Conn`, which closes the socket.
    Close(CloseReason),
}

/// Why a connection ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed its side and every byte was echoed.
    Finished,
    /// The connection failed (reset, broken pipe, ...).
    Error,
}

/// Buffers that belong to a thread, not a connection: this is what makes idle connections
/// cost no buffer memory.
pub struct Scratch {
    read: Box<[u8]>,
    out: Vec<u8>,
}

impl Scratch {
    /// One read chunk plus room for one chunk of line replies.
    pub fn new() -> Scratch {
        Scratch {
            read: vec![0; READ_CHUNK].into_boxed_slice(),
            out: Vec::with_capacity(READ_CHUNK),
        }
    }
}

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch::new()
    }
}

/// One client connection. See the module docs for its guarantees.
pub struct Conn {
    stream: TcpStream,
    /// Bytes accepted from the protocol but not yet taken by the kernel: `pending[sent..]`.
    /// Empty and unallocated whenever everything has been written.
    pending: Vec<u8>,
    sent: usize,
    /// `Some` for `--protocol lines`.
    lines: Option<LineParser>,
    /// Input read but not processed yet, because a costly request was deferred to a worker.
    stashed: Vec<u8>,
    /// Reading is paused by backpressure (set at high water, cleared at low water).
    paused: bool,
    /// The client sent FIN.
    read_closed: bool,
    /// The server is ending the connection: nothing more is echoed (lingering close).
    closing: bool,
    /// When lingering stops waiting for the client's FIN and closes anyway.
    linger_until: Option<Instant>,
    write_shut: bool,
    aborted: bool,
    last_active: Instant,
    /// Bytes moved during the current `serve` call: `last_active` is refreshed once at its end
    /// (one clock read per call instead of one per syscall).
    moved: bool,
}

impl Conn {
    /// Wraps an accepted socket.
    pub fn new(stream: TcpStream, protocol: Protocol, limits: &Limits) -> Conn {
        Conn {
            stream,
            pending: Vec::new(),
            sent: 0,
            lines: match protocol {
                Protocol::Raw => None,
                Protocol::Lines => Some(LineParser::new(limits.max_line)),
            },
            stashed: Vec::new(),
            paused: false,
            read_closed: false,
            closing: false,
            linger_until: None,
            write_shut: false,
            aborted: false,
            last_active: Instant::now(),
            moved: false,
        }
    }

    /// The socket, for registering with epoll.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// How long since the last byte moved in either direction.
    pub fn idle_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_active)
    }

    /// Bytes waiting to be sent.
    pub fn pending_len(&self) -> usize {
        self.pending.len() - self.sent
    }

    /// Heap bytes this connection holds beyond its `Conn` struct.
    pub fn heap_bytes(&self) -> usize {
        self.pending.capacity()
            + self.stashed.capacity()
            + self.lines.as_ref().map_or(0, LineParser::heap_bytes)
    }

    /// Starts a graceful end (server shutdown): echo nothing new, flush what is pending, send
    /// FIN, then read and discard until the client's FIN or `deadline`, whichever comes first.
    /// The next `serve` call does the work.
    pub fn begin_close(&mut self, deadline: Instant) {
        self.closing = true;
        self.linger_until = Some(self.linger_until.map_or(deadline, |d| d.min(deadline)));
    }

    /// True once the connection should be closed by a timer: idle for `idle_timeout`, or
    /// lingering past its deadline.
    pub fn expired(&self, now: Instant, idle_timeout: Option<Duration>) -> bool {
        self.linger_until.is_some_and(|t| now >= t)
            || idle_timeout.is_some_and(|t| self.idle_for(now) >= t)
    }

    /// Ends the connection abruptly (idle timeout): `shutdown(SHUT_RDWR)` makes the socket
    /// ready and every further read or write fail, so whoever serves it next closes it.
    /// Returns false if it was already aborted.
    pub fn abort(&mut self) -> bool {
        if self.aborted {
            return false;
        }
        self.aborted = true;
        let _ = self.stream.shutdown(Shutdown::Both);
        true
    }

    /// Makes progress on this connection: flush, read, echo. Never blocks on a nonblocking
    /// socket; on a blocking socket, blocks in at most one read (with `read_budget` 1).
    pub fn serve(
        &mut self,
        scratch: &mut Scratch,
        limits: &Limits,
        costly: Costly,
        stats: &Stats,
    ) -> Status {
        // A panic here would be a bug in this crate, never the client's doing; still, it must
        // cost one connection, not the thread that serves thousands. AssertUnwindSafe holds
        // because the connection is closed right after, and the scratch buffers (which a panic
        // may leave half-swapped) are replaced.
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            self.serve_inner(scratch, limits, costly, stats)
        }));
        if std::mem::take(&mut self.moved) {
            self.last_active = Instant::now();
        }
        match result {
            Ok(Ok(status)) => status,
            Ok(Err(err)) => {
                // A reset or broken pipe is the client's business, not the server's: log it
                // quietly and close this connection only.
                debug!("closing connection: {err}");
                stats.errors.incr();
                Status::Close(CloseReason::Error)
            }
            Err(_) => {
                error!("bug: serving a connection panicked; closing that connection only");
                *scratch = Scratch::new();
                stats.errors.incr();
                Status::Close(CloseReason::Error)
            }
        }
    }

    fn serve_inner(
        &mut self,
        scratch: &mut Scratch,
        limits: &Limits,
        costly: Costly,
        stats: &Stats,
    ) -> io::Result<Status> {
        if self.linger_until.is_some_and(|t| Instant::now() >= t) {
            return Ok(Status::Close(CloseReason::Finished));
        }
        self.flush(stats)?;
        if !self.stashed.is_empty() && !self.closing {
            let stashed = std::mem::take(&mut self.stashed);
            if self.process(&stashed, scratch, costly, stats)? {
                return Ok(Status::Offload);
            }
        }
        let mut reads = 0;
        while self.wants_read(limits) && reads < limits.read_budget {
            let n = match self.stream.read(&mut scratch.read) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            };
            reads += 1;
            self.moved = true;
            if n == 0 {
                self.read_closed = true;
                self.finish_lines(scratch, stats)?;
                break;
            }
            stats.bytes_in.add(n as u64);
            if self.closing {
                // Lingering: the client's bytes are read only to be dropped.
                continue;
            }
            let input = std::mem::take(&mut scratch.read);
            let deferred = self.process(&input[..n], scratch, costly, stats);
            scratch.read = input;
            if deferred? {
                return Ok(Status::Offload);
            }
            if n < scratch.read.len() {
                // A short read almost always means the socket is drained. Trying again would
                // cost a read(2) that returns EAGAIN on nearly every message; with level-
                // triggered epoll it is also unnecessary, since leftover or newly arrived data
                // makes the socket readable again (nginx's ngx_unix_recv does the same).
                break;
            }
        }
        if self.closing {
            // Send the FIN now if everything is flushed: no further event may come to do it.
            self.flush(stats)?;
        }
        Ok(self.next_status(limits))
    }

    /// Echoes one chunk of input. Returns `true` when it stopped at a costly request under
    /// `Costly::Defer`, having stashed the rest of the chunk.
    fn process(
        &mut self,
        input: &[u8],
        scratch: &mut Scratch,
        costly: Costly,
        stats: &Stats,
    ) -> io::Result<bool> {
        let Some(parser) = self.lines.as_mut() else {
            // RFC 862: "any data received is sent back". No copy: straight from the read buffer.
            stats.message();
            self.send(input, stats)?;
            return Ok(false);
        };
        let out = &mut scratch.out;
        out.clear();
        let mut deferred: Option<Vec<u8>> = None;
        let fed = parser.feed(input, |request| match request {
            Request::Line(line) => {
                stats.message();
                out.extend_from_slice(line);
                true
            }
            Request::Work { line, .. } if costly == Costly::Defer => {
                deferred = Some(line.to_vec());
                false
            }
            Request::Work { cost, line } => {
                stats.message();
                burn_cpu(cost);
                out.extend_from_slice(line);
                true
            }
            Request::Invalid(reason) => {
                stats.message();
                out.extend_from_slice(format!("ERR {reason}\n").as_bytes());
                true
            }
        });
        let out = std::mem::take(&mut scratch.out);
        let sent = self.send(&out, stats);
        scratch.out = out;
        sent?;
        match fed {
            Ok(used) => {
                if let Some(mut rest) = deferred {
                    rest.extend_from_slice(&input[used..]);
                    self.stashed = rest;
                    return Ok(true);
                }
                Ok(false)
            }
            Err(_too_long) => {
                self.send(LINE_TOO_LONG, stats)?;
                // Linger until the client's FIN, so that closing with unread input does not
                // turn into an RST that could destroy the error reply before it is read.
                self.begin_close(Instant::now() + LINGER_TIME);
                Ok(false)
            }
        }
    }

    /// At the client's FIN, a last unterminated line is answered too: nothing received is
    /// dropped. (A `WORK` line here runs inline even under `Costly::Defer`: it is the last
    /// request of a connection that is going away, not worth a handoff.)
    fn finish_lines(&mut self, scratch: &mut Scratch, stats: &Stats) -> io::Result<()> {
        let (Some(parser), false) = (self.lines.as_mut(), self.closing) else {
            return Ok(());
        };
        let out = &mut scratch.out;
        out.clear();
        parser.finish(|request| {
            stats.message();
            match request {
                Request::Line(line) => out.extend_from_slice(line),
                Request::Work { cost, line } => {
                    burn_cpu(cost);
                    out.extend_from_slice(line);
                }
                Request::Invalid(reason) => {
                    out.extend_from_slice(format!("ERR {reason}\n").as_bytes())
                }
            }
        });
        let out = std::mem::take(&mut scratch.out);
        let sent = self.send(&out, stats);
        scratch.out = out;
        sent
    }

    /// Writes `data` after whatever is already pending, keeping order; what the kernel does not
    /// take now is buffered.
    fn send(&mut self, data: &[u8], stats: &Stats) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let mut written = 0;
        if self.pending_len() == 0 {
            written = self.write_some(data, stats)?;
        }
        if written < data.len() {
            if self.sent > 0 && self.sent == self.pending.len() {
                self.pending.clear();
                self.sent = 0;
            }
            self.pending.extend_from_slice(&data[written..]);
        }
        Ok(())
    }

    /// Writes as much of `pending` as the kernel takes; frees the buffer once it is empty.
    fn flush(&mut self, stats: &Stats) -> io::Result<()> {
        if self.pending_len() > 0 {
            let pending = std::mem::take(&mut self.pending);
            let written = self.write_some(&pending[self.sent..], stats);
            self.pending = pending;
            self.sent += written?;
            if self.sent == self.pending.len() {
                // Drained: give the memory back, so a connection that was once slow holds
                // nothing when it goes idle.
                self.pending = Vec::new();
                self.sent = 0;
            } else if self.sent > self.pending.len() / 2 {
                self.pending.drain(..self.sent);
                self.sent = 0;
            }
        }
        if self.closing && self.pending_len() == 0 && !self.write_shut {
            self.write_shut = true;
            // ENOTCONN here means the peer is already gone; the read side will see it.
            let _ = self.stream.shutdown(Shutdown::Write);
        }
        Ok(())
    }

    /// Loops `write(2)` until all is written or the kernel says EAGAIN.
    fn write_some(&mut self, data: &[u8], stats: &Stats) -> io::Result<usize> {
        let mut written = 0;
        while written < data.len() {
            match self.stream.write(&data[written..]) {
                Ok(n) => {
                    written += n;
                    stats.bytes_out.add(n as u64);
                    self.moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }

    fn wants_read(&mut self, limits: &Limits) -> bool {
        let pending = self.pending_len();
        if self.paused && pending <= limits.low_water {
            self.paused = false;
        } else if !self.paused && pending >= limits.high_water {
            self.paused = true;
        }
        !self.read_closed && !self.paused && self.stashed.is_empty()
    }

    fn next_status(&mut self, limits: &Limits) -> Status {
        let pending = self.pending_len();
        if pending == 0 && self.read_closed {
            return Status::Close(CloseReason::Finished);
        }
        let mut interest = Interest::NONE;
        if self.wants_read(limits) {
            interest = interest | Interest::READABLE;
        }
        if pending > 0 {
            interest = interest | Interest::WRITABLE;
        }
        Status::Wait(interest)
    }
}
