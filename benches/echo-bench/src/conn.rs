//! One client connection of the generator: nonblocking connect, send queue, echo checker.
//!
//! The connection is a small state machine driven by a worker's epoll loop (level-triggered,
//! epoll(7)): `Connecting` until the socket turns writable and `SO_ERROR` says the handshake
//! succeeded (connect(2), EINPROGRESS), then `Open`, then `Dead` once it fails or is closed.
//!
//! It keeps the messages in flight in a queue, oldest first. Echoed bytes are matched against
//! the head of that queue, byte by byte (see [`crate::verify`]); when the head is complete its
//! latency is reported to the worker and the next message becomes the head. Anything else is an
//! error, never skipped: a wrong byte, bytes when nothing is in flight, end of stream while
//! echoes are due, a reset. The worker counts it and closes the connection.

use std::collections::VecDeque;
use std::io::{self, ErrorKind as IoKind};
use std::net::SocketAddr;
use std::time::Instant;

use reactor::{Epoll, Interest, TcpStream, Token};

use crate::report::ErrorKind;
use crate::verify::{Message, MessageFormat};

/// What a connection does in the run.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Keeps `depth` messages in flight; a greedy one sends costly `WORK` lines.
    Active {
        /// Whether this client sends `WORK` lines.
        greedy: bool,
    },
    /// Echoes one message at set-up, then stays silent for the whole run.
    Idle,
    /// Connect-only test: connects, echoes one message, closes.
    Churn,
}

/// Where the connection is in its life.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// The nonblocking connect is in progress.
    Connecting,
    /// Connected; messages flow.
    Open,
    /// Failed or closed; the descriptor is gone.
    Dead,
}

/// A message sent (or queued to send) and not yet fully echoed.
#[derive(Copy, Clone, Debug)]
pub struct InFlight {
    /// What was sent, enough to rebuild every expected byte.
    pub msg: Message,
    /// Its length on the wire.
    pub len: usize,
    /// When it was sent: the enqueue time in closed loop, the scheduled time in open loop.
    pub sent_at: Instant,
}

/// Why a connection failed, to be counted by kind and shown (the first few) to the user.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The error category it is counted under.
    pub kind: ErrorKind,
    /// What happened, for the report.
    pub detail: String,
}

impl Failure {
    fn new(kind: ErrorKind, detail: String) -> Failure {
        Failure { kind, detail }
    }
}

/// One generator connection.
pub struct Conn {
    /// `None` once dead: dropping the stream closes the descriptor, which also removes it
    /// from the epoll set (epoll(7), "Will closing a file descriptor cause it to be removed").
    stream: Option<TcpStream>,
    /// Life-cycle state.
    pub state: State,
    /// What the connection does.
    pub role: Role,
    /// Index of the connection over the whole run; picks its place in the pattern.
    pub global_idx: usize,
    /// When the connect started (connect-only latency counts from here).
    pub started: Instant,
    /// Last time the connection made progress (bytes arrived, or a wait began): stall detection.
    pub last_progress: Instant,
    /// Messages enqueued so far; the open-loop schedule numbers messages by it.
    pub enqueued: u64,
    /// Set-up is over for this connection (connected; for idle ones, first echo received).
    pub ready: bool,
    /// Bytes queued for sending; `out[out_pos..]` is not yet written.
    out: Vec<u8>,
    out_pos: usize,
    /// Messages not fully echoed, oldest first; `head_pos` bytes of the front one have arrived.
    in_flight: VecDeque<InFlight>,
    head_pos: usize,
    /// Pattern position of the next message's body.
    next_body_pos: u64,
    /// Whether EPOLLOUT is in the registered interest (changed only when needed: epoll_ctl is
    /// a syscall).
    write_registered: bool,
}

impl Conn {
    /// Starts a nonblocking connect and registers it for readiness under `token`.
    pub fn connect(
        addr: SocketAddr,
        global_idx: usize,
        role: Role,
        epoll: &Epoll,
        token: Token,
    ) -> Result<Conn, Failure> {
        let stream = TcpStream::connect_nonblocking(addr)
            .map_err(|e| Failure::new(ErrorKind::Connect, format!("connect to {addr}: {e}")))?;
        // Writable means the handshake finished, one way or the other (connect(2)).
        epoll
            .add(&stream, token, Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| Failure::new(ErrorKind::Connect, format!("epoll add: {e}")))?;
        let now = Instant::now();
        Ok(Conn {
            stream: Some(stream),
            state: State::Connecting,
            role,
            global_idx,
            started: now,
            last_progress: now,
            enqueued: 0,
            ready: false,
            out: Vec::new(),
            out_pos: 0,
            in_flight: VecDeque::new(),
            head_pos: 0,
            next_body_pos: MessageFormat::first_body_pos(global_idx),
            write_registered: true,
        })
    }

    /// Called on the first readiness event while connecting: reads the handshake's outcome.
    pub fn finish_connect(&mut self, epoll: &Epoll, token: Token) -> Result<(), Failure> {
        let stream = self
            .stream
            .as_ref()
            .expect("a connecting conn has a stream");
        match stream.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => return Err(Failure::new(ErrorKind::Connect, e.to_string())),
        }
        // Small messages must leave at once: Nagle's algorithm (RFC 896) would hold a message
        // until the previous one is acknowledged and turn latency into delayed-ACK timers.
        let _ = stream.set_nodelay(true);
        self.state = State::Open;
        self.last_progress = Instant::now();
        self.set_write_interest(epoll, token, false)
    }

    /// Queues one message; `sent_at` is when its latency starts.
    pub fn enqueue(&mut self, fmt: &MessageFormat, work: bool, sent_at: Instant) {
        let msg = Message {
            body_pos: self.next_body_pos,
            work,
        };
        self.next_body_pos = fmt.next_body_pos(self.next_body_pos);
        let len = fmt.len(&msg);
        fmt.append_to(&msg, &mut self.out);
        if self.in_flight.is_empty() {
            // The wait for an echo starts now; before, silence was not a stall.
            self.last_progress = Instant::now();
        }
        self.in_flight.push_back(InFlight { msg, len, sent_at });
        self.enqueued += 1;
    }

    /// Writes as much of the send queue as the socket takes; asks for EPOLLOUT if it is full.
    pub fn flush(&mut self, epoll: &Epoll, token: Token) -> Result<(), Failure> {
        let Some(stream) = self.stream.as_ref() else {
            return Ok(());
        };
        while self.out_pos < self.out.len() {
            match stream.write(&self.out[self.out_pos..]) {
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == IoKind::WouldBlock => break,
                Err(e) => return Err(io_failure("send", e)),
            }
        }
        let blocked = self.out_pos < self.out.len();
        if !blocked {
            self.out.clear();
            self.out_pos = 0;
        }
        self.set_write_interest(epoll, token, blocked)
    }

    /// Reads what has arrived and checks it; `on_echo(message, at)` runs for each message
    /// whose echo is now complete. `scratch` is the worker's shared read buffer.
    pub fn receive(
        &mut self,
        fmt: &MessageFormat,
        scratch: &mut [u8],
        mut on_echo: impl FnMut(&InFlight, Instant),
    ) -> Result<(), Failure> {
        loop {
            let Some(stream) = self.stream.as_ref() else {
                return Ok(());
            };
            let n = match stream.read(scratch) {
                Ok(0) => return Err(self.end_of_stream()),
                Ok(n) => n,
                Err(e) if e.kind() == IoKind::WouldBlock => return Ok(()),
                Err(e) => return Err(io_failure("recv", e)),
            };
            let now = Instant::now();
            self.last_progress = now;
            self.check(fmt, &scratch[..n], now, &mut on_echo)?;
            // A short read drained the socket; reading again would only return EAGAIN.
            if n < scratch.len() {
                return Ok(());
            }
        }
    }

    /// Messages sent and not yet fully echoed.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Closes the descriptor (and so leaves the epoll set); the connection is dead.
    pub fn close(&mut self) {
        self.stream = None;
        self.state = State::Dead;
    }

    /// Matches `data` against the messages in flight, in order.
    fn check(
        &mut self,
        fmt: &MessageFormat,
        mut data: &[u8],
        now: Instant,
        on_echo: &mut impl FnMut(&InFlight, Instant),
    ) -> Result<(), Failure> {
        while !data.is_empty() {
            let Some(&head) = self.in_flight.front() else {
                let detail = format!("{} bytes arrived with no message in flight", data.len());
                return Err(Failure::new(ErrorKind::Mismatch, detail));
            };
            let n = (head.len - self.head_pos).min(data.len());
            if let Err(m) = fmt.check(&head.msg, self.head_pos, &data[..n]) {
                let detail = format!(
                    "conn {} message {}: byte {} of {} is {:#04x}, expected {:#04x}",
                    self.global_idx,
                    self.enqueued - self.in_flight.len() as u64,
                    m.offset,
                    head.len,
                    m.got,
                    m.expected
                );
                return Err(Failure::new(ErrorKind::Mismatch, detail));
            }
            self.head_pos += n;
            data = &data[n..];
            if self.head_pos == head.len {
                self.in_flight.pop_front();
                self.head_pos = 0;
                on_echo(&head, now);
            }
        }
        Ok(())
    }

    /// The peer closed its side: an error either way, but a different one if echoes were due.
    fn end_of_stream(&self) -> Failure {
        match self.in_flight.front() {
            Some(head) => {
                let missing = head.len - self.head_pos
                    + self.in_flight.iter().skip(1).map(|m| m.len).sum::<usize>();
                let detail = format!(
                    "conn {}: server closed with {missing} echo bytes outstanding",
                    self.global_idx
                );
                Failure::new(ErrorKind::Short, detail)
            }
            None => {
                let detail = format!("conn {}: server closed the connection", self.global_idx);
                Failure::new(ErrorKind::Closed, detail)
            }
        }
    }

    fn set_write_interest(&mut self, epoll: &Epoll, token: Token, on: bool) -> Result<(), Failure> {
        if on == self.write_registered {
            return Ok(());
        }
        let Some(stream) = self.stream.as_ref() else {
            return Ok(());
        };
        let interest = if on {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        epoll
            .modify(stream, token, interest)
            .map_err(|e| io_failure("epoll modify", e))?;
        self.write_registered = on;
        Ok(())
    }
}

/// An I/O error on an open connection: a reset, or something rarer counted with resets.
fn io_failure(what: &str, e: io::Error) -> Failure {
    Failure::new(ErrorKind::Reset, format!("{what}: {e}"))
}
