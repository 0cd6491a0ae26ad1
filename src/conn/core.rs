//! The connection state machine without I/O: bytes in, bytes out, and what it wants next.
//!
//! [`Core`] knows everything the server remembers about one client (the protocol's parser, the
//! replies the kernel has not taken yet, where the connection is in its life) and performs no
//! syscall at all. A *driver* owns the socket, moves bytes between it and the core, and asks the
//! core what to do next. This is the shape of smoltcp's sockets and of quinn-proto ("sans-I/O"):
//! the logic can be driven from a readiness loop (`epoll_wait(2)`, then `recv`), from a
//! completion loop (io_uring hands over bytes the kernel already received), from a blocking
//! thread, or from a property test that splits input and refuses writes at random.
//!
//! The driver's side of the conversation:
//! - **bytes in**: [`Core::receive`] with what the socket delivered, [`Core::received_eof`] at
//!   the client's FIN, [`Core::resume`] to continue input that an earlier call set aside;
//! - **bytes out**: the core hands replies to a [`Transmit`] (the driver's "send what you can
//!   now"); what it does not take waits in the core until [`Core::flush`] (readiness drivers) or
//!   [`Core::take_output`] (completion drivers, which own the buffer while the kernel sends it);
//! - **what next**: [`Core::next`] says read, write, yield, offload or close, and
//!   [`Core::fin_due`] says when to send our FIN.
//!
//! The guarantees, whoever drives it:
//! - **RFC 862 echo**: "any data received is sent back", in order, nothing added, nothing lost;
//!   with `--protocol lines` every line is answered in order (see [`crate::protocol`]).
//! - **Bounded memory.** Output the kernel has not taken waits in `out`. Input processing stops
//!   as soon as pending output reaches the high-water mark, *whatever the request-to-reply
//!   ratio* (a 5-byte `WORK\n` earns a 47-byte `ERR`): the rest of the input is set aside in
//!   `stash`, and reading stops until output falls to the low-water mark. So a client that never
//!   reads holds at most `high_water + max_line` bytes of replies (the request that crosses the
//!   mark is answered whole), plus one read of set-aside input, plus one unfinished line:
//!   [`memory_bound`]. The rest stays in kernel buffers, where TCP flow control pushes back.
//! - **Fair turns.** One call spends at most [`TURN_WORK_BUDGET`] of `WORK` CPU (after at least
//!   one request) before it stops and says [`Next::Yield`]: a pipeline of costly requests cannot
//!   hold a thread (and the signals it reads) for longer than one request. This is tokio's
//!   cooperative budget, for the same reason.
//! - **Lazy buffers**: `out` and `stash` are allocated only while they hold bytes; line replies
//!   are assembled in a buffer of the calling thread. An idle connection holds no buffer.
//! - **Half-close**: after the client's FIN every pending byte is still flushed.
//! - **Lingering close**: when the server ends a connection (drain, `ERR line too long`) it
//!   answers what it had already read, echoes nothing new, flushes, sends FIN, and discards
//!   input until the client's FIN or a deadline. Closing with unread input makes Linux send RST, and an RST destroys the echo bytes
//!   still queued; nginx's `lingering_close` exists for this. We never `shutdown(SHUT_RD)`.

use std::io::{self, Write as _};
use std::mem;
use std::time::{Duration, Instant};

use log::debug;
use pool::counters::Counter as _;

use crate::protocol::{burn_cpu, LineParser, Protocol, Request, LINE_TOO_LONG};
use crate::stats::Stats;

/// Size of one read: the most a driver hands to [`Core::receive`] at once, and so the most
/// input the core ever sets aside.
pub const READ_CHUNK: usize = 64 * 1024;

/// How long a connection closed by the server for a protocol error (line too long) may linger,
/// waiting for the client's FIN, before it is closed anyway (nginx's `lingering_time`).
pub const LINGER_TIME: Duration = Duration::from_secs(5);

/// CPU one connection may spend on `WORK` requests in one turn before it yields. The first
/// request of a turn always runs, so one request may take up to its cap
/// ([`crate::protocol::MAX_WORK`]); a pipeline of them takes one per turn.
pub const TURN_WORK_BUDGET: Duration = Duration::from_millis(1);

/// Per-connection limits (`--high-water`, `--max-line`, ...).
#[derive(Copy, Clone, Debug)]
pub struct Limits {
    /// Stop processing input when this many reply bytes wait to be sent (default 64 KiB).
    pub high_water: usize,
    /// Resume when pending replies fall to this (default 16 KiB).
    pub low_water: usize,
    /// Longest accepted line for `--protocol lines` (default 64 KiB).
    pub max_line: usize,
    /// Reads per turn before yielding to other connections. A blocking driver uses 1, or a turn
    /// would block on a second read.
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

/// The most server memory one connection can hold in replies, set-aside input and a partial
/// line, whatever its client sends and however little it reads (the `Core` itself aside).
pub fn memory_bound(limits: &Limits) -> usize {
    let reply = limits.max_line.max(64); // the longest reply: a line, or an `ERR ...` text
    limits.high_water + reply + READ_CHUNK + limits.max_line
}

/// Where a costly request (`WORK`) runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Costly {
    /// On the thread that drives the connection (every model but `reactor-offload`'s reactor).
    Inline,
    /// Stop before it and return [`Next::Offload`]; a worker resumes with `Costly::Inline`.
    Defer,
}

/// Where a connection is in its life.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Reading and echoing.
    Open,
    /// Pending replies reached the high-water mark: no input is processed until they fall to
    /// the low-water mark.
    Paused,
    /// The client sent FIN: flush what is pending, then close (by `deadline` at the latest, when
    /// the server is draining).
    ReadClosed {
        /// The drain deadline, if the server is stopping.
        deadline: Option<Instant>,
    },
    /// The server is ending the connection: nothing new is echoed; flush, send FIN, then read and
    /// discard until the client's FIN or `deadline`.
    Lingering {
        /// When to stop waiting for the client's FIN.
        deadline: Instant,
        /// Our FIN is out (`shutdown(SHUT_WR)`).
        fin_sent: bool,
    },
    /// Ended by the server without ceremony (idle timeout): close at once.
    Aborted,
}

/// Why [`Core::expired`] says a connection must be closed by a timer.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// No byte moved for `--idle-timeout`.
    Idle,
    /// Lingering (or flushing after the client's FIN) past its deadline.
    Deadline,
}

/// Why a connection ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed its side and every byte was echoed, or a lingering close completed.
    Finished,
    /// The connection failed (reset, broken pipe, ...) or was aborted.
    Error,
}

/// What the driver should do next.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Wait until the socket is readable (`read`) or writable (`write`), then drive again.
    Wait {
        /// Input is welcome.
        read: bool,
        /// Replies are queued.
        write: bool,
    },
    /// The turn's budget ran out with input set aside: drive again soon, without waiting for
    /// the socket (the bytes are in the core, not in the kernel).
    Yield,
    /// A costly request is next (`Costly::Defer`): hand the connection to a worker.
    Offload,
    /// Done: drop the connection.
    Close(CloseReason),
}

/// Why processing stopped before the end of the input (the rest is set aside).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Pending replies reached the high-water mark.
    HighWater,
    /// The turn's `WORK` budget is spent.
    Budget,
    /// A costly request under `Costly::Defer`.
    Offload,
}

/// How far `receive_lines` got through its input.
enum Processed {
    /// To the end.
    All,
    /// It stopped after `used` bytes; `deferred` is a request it stopped before (offload).
    Stopped {
        stop: Stop,
        used: usize,
        deferred: Vec<u8>,
    },
}

/// What [`Core::receive`] did with its input.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Received {
    /// Every byte was processed.
    All,
    /// Processing stopped; the rest of the input is set aside for [`Core::resume`].
    Stopped(Stop),
}

/// The driver's send path: "hand these bytes to the kernel now, as many as it takes".
pub trait Transmit {
    /// Sends what it can of `bytes` without blocking and returns how many went (0 when the
    /// kernel would block, or when the driver sends only from buffers it owns).
    fn transmit(&mut self, bytes: &[u8]) -> io::Result<usize>;
}

/// A [`Transmit`] that sends nothing now: every reply is queued in the core. Completion drivers
/// use it, then take the queue with [`Core::take_output`].
pub struct QueueOnly;

impl Transmit for QueueOnly {
    fn transmit(&mut self, _bytes: &[u8]) -> io::Result<usize> {
        Ok(0)
    }
}

/// What one turn needs from its caller besides the bytes.
pub struct Turn<'a> {
    /// The calling thread's buffer in which line replies are assembled (so that a connection
    /// owns no buffer while idle); its contents do not outlive a call.
    pub out: &'a mut Vec<u8>,
    /// Where costly requests run.
    pub costly: Costly,
    /// The server's counters (messages).
    pub stats: &'a Stats,
    /// `WORK` CPU this turn may still spend; starts at [`TURN_WORK_BUDGET`].
    pub budget: Duration,
    /// At least one costly request ran this turn (the first one always may).
    pub worked: bool,
}

impl<'a> Turn<'a> {
    /// A fresh turn with a full budget.
    pub fn new(out: &'a mut Vec<u8>, costly: Costly, stats: &'a Stats) -> Turn<'a> {
        Turn {
            out,
            costly,
            stats,
            budget: TURN_WORK_BUDGET,
            worked: false,
        }
    }
}

/// One client connection's state, without its socket. See the module docs.
#[derive(Debug)]
pub struct Core {
    state: State,
    /// `Some` for `--protocol lines`.
    lines: Option<LineParser>,
    /// Replies not yet handed to the kernel: `out[sent..]`. Unallocated when empty.
    out: Vec<u8>,
    sent: usize,
    /// Replies a completion driver took with [`Core::take_output`] and the kernel has not
    /// confirmed yet. They count towards the high-water mark like queued ones.
    in_flight: usize,
    /// Input received but not processed yet (see [`Stop`]). At most one read.
    stash: Vec<u8>,
    last_active: Instant,
}

impl Core {
    /// A fresh connection speaking `protocol`.
    pub fn new(protocol: Protocol, limits: &Limits, now: Instant) -> Core {
        Core {
            state: State::Open,
            lines: match protocol {
                Protocol::Raw => None,
                Protocol::Lines => Some(LineParser::new(limits.max_line)),
            },
            out: Vec::new(),
            sent: 0,
            in_flight: 0,
            stash: Vec::new(),
            last_active: now,
        }
    }

    /// Where the connection is in its life.
    pub fn state(&self) -> State {
        self.state
    }

    /// Reply bytes not yet confirmed sent (queued plus in flight).
    pub fn pending_len(&self) -> usize {
        self.queued().len() + self.in_flight
    }

    /// Heap bytes this connection holds beyond its `Core` struct.
    pub fn heap_bytes(&self) -> usize {
        self.out.capacity()
            + self.stash.capacity()
            + self.lines.as_ref().map_or(0, LineParser::heap_bytes)
    }

    /// Records that bytes moved at `now` (the idle clock restarts).
    pub fn touch(&mut self, now: Instant) {
        self.last_active = now;
    }

    /// How long since bytes last moved in either direction.
    pub fn idle_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_active)
    }

    /// The deadline by which the connection closes whatever happens, if it has one.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Lingering { deadline, .. } => Some(deadline),
            State::ReadClosed { deadline } => deadline,
            _ => None,
        }
    }

    /// Whether a timer must close the connection now, and why. Every driver's timer asks
    /// this, so an idle close is counted (`idle_closed`) and logged here, once.
    pub fn expired(
        &self,
        now: Instant,
        idle_timeout: Option<Duration>,
        stats: &Stats,
    ) -> Option<Expiry> {
        if self.deadline().is_some_and(|d| now >= d) {
            Some(Expiry::Deadline)
        } else if idle_timeout.is_some_and(|t| self.idle_for(now) >= t) {
            debug!("closing a connection idle for {idle_timeout:?}");
            stats.idle_closed.incr();
            Some(Expiry::Idle)
        } else {
            None
        }
    }

    /// Starts a graceful end (server drain): answer what was already read (input set aside
    /// included), echo nothing new, flush, send FIN, then discard input until the client's FIN,
    /// all by `deadline`. An earlier deadline already set is kept.
    pub fn begin_close(&mut self, deadline: Instant) {
        let earlier = |d: Option<Instant>| d.map_or(deadline, |d| d.min(deadline));
        self.state = match self.state {
            State::Open | State::Paused => State::Lingering {
                deadline,
                fin_sent: false,
            },
            State::Lingering {
                deadline: d,
                fin_sent,
            } => State::Lingering {
                deadline: earlier(Some(d)),
                fin_sent,
            },
            State::ReadClosed { deadline: d } => State::ReadClosed {
                deadline: Some(earlier(d)),
            },
            State::Aborted => State::Aborted,
        };
    }

    /// Ends the connection without ceremony (idle timeout). Returns false if it already was.
    pub fn abort(&mut self) -> bool {
        let was = self.state != State::Aborted;
        self.state = State::Aborted;
        was
    }

    /// Whether the driver should read now: open, below the water marks, nothing set aside (or
    /// lingering, when input is read only to be dropped).
    pub fn wants_read(&mut self, limits: &Limits) -> bool {
        match self.state {
            State::Open | State::Paused => self.may_process(limits) && self.stash.is_empty(),
            // Input read now is dropped, but only once what was read before is answered.
            State::Lingering { .. } => self.stash.is_empty(),
            State::ReadClosed { .. } | State::Aborted => false,
        }
    }

    /// Processes `input`, just received. Replies go to `tx` first, then to the queue.
    pub fn receive(
        &mut self,
        input: &[u8],
        limits: &Limits,
        turn: &mut Turn<'_>,
        tx: &mut impl Transmit,
    ) -> io::Result<Received> {
        if matches!(self.state, State::Lingering { .. } | State::Aborted) {
            // Lingering: bytes read after the close began are read only to be dropped.
            return Ok(Received::All);
        }
        if !self.stash.is_empty() {
            // Only a completion driver delivers input while some is set aside (its receive was
            // already in flight): keep the order, process it after what came first.
            self.stash_more(input);
            return self.resume(limits, turn, tx);
        }
        if self.lines.is_none() {
            // RFC 862: "any data received is sent back". Straight from the driver's buffer.
            turn.stats.message();
            self.send(input, tx)?;
            return Ok(Received::All);
        }
        match self.receive_lines(input, limits, turn, tx)? {
            Processed::All => Ok(Received::All),
            Processed::Stopped {
                stop,
                used,
                deferred,
            } => {
                self.keep_for_later(&deferred, &input[used..]);
                Ok(Received::Stopped(stop))
            }
        }
    }

    /// Processes input set aside by an earlier call, if any, as far as the water marks and the
    /// turn's budget allow. After the client's FIN, the last unterminated line is answered
    /// once the set-aside input is done.
    pub fn resume(
        &mut self,
        limits: &Limits,
        turn: &mut Turn<'_>,
        tx: &mut impl Transmit,
    ) -> io::Result<Received> {
        if self.stash.is_empty() {
            return Ok(Received::All);
        }
        if !self.may_process(limits) {
            return Ok(Received::Stopped(Stop::HighWater));
        }
        let mut stash = mem::take(&mut self.stash);
        match self.receive_lines(&stash, limits, turn, tx)? {
            Processed::All => {
                if matches!(self.state, State::ReadClosed { .. }) {
                    self.finish_lines(turn, tx)?;
                }
                Ok(Received::All)
            }
            Processed::Stopped {
                stop,
                used,
                deferred,
            } if deferred.is_empty() => {
                // Keep the same buffer: a second one of up to a read would double the
                // set-aside memory for as long as both live.
                if used < stash.len() {
                    stash.drain(..used);
                    self.stash = stash;
                }
                Ok(Received::Stopped(stop))
            }
            Processed::Stopped {
                stop,
                used,
                deferred,
            } => {
                self.keep_for_later(&deferred, &stash[used..]);
                Ok(Received::Stopped(stop))
            }
        }
    }

    /// Sets `input` aside unprocessed, after what is already set aside, for [`Core::resume`].
    /// A completion driver calls it instead of [`Core::receive`] for bytes that arrive after
    /// the connection spent its turn's `WORK` budget: one wait can return several receive
    /// completions for one connection, and `receive` would run one request per call. Bytes
    /// that arrive while the server is ending the connection are dropped, as `receive` does.
    pub fn set_aside(&mut self, input: &[u8]) {
        if !matches!(self.state, State::Lingering { .. } | State::Aborted) {
            self.stash_more(input);
        }
    }

    /// Appends to the set-aside input with no spare capacity: `Vec`'s doubling would let a
    /// stash of one read hold the memory of two, past [`memory_bound`].
    fn stash_more(&mut self, input: &[u8]) {
        self.stash.reserve_exact(input.len());
        self.stash.extend_from_slice(input);
    }

    /// The client sent FIN. A last unterminated line is answered too (once any set-aside input
    /// is processed): nothing received is dropped. A `WORK` line here runs inline even under
    /// `Costly::Defer`: it is the last request of a connection going away, not worth a handoff.
    pub fn received_eof(&mut self, turn: &mut Turn<'_>, tx: &mut impl Transmit) -> io::Result<()> {
        self.state = match self.state {
            State::Open | State::Paused => State::ReadClosed { deadline: None },
            // Lingering: nothing new is echoed, not even a last partial line.
            State::Lingering { deadline, .. } => {
                self.state = State::ReadClosed {
                    deadline: Some(deadline),
                };
                return Ok(());
            }
            State::Aborted | State::ReadClosed { .. } => return Ok(()),
        };
        if self.stash.is_empty() {
            self.finish_lines(turn, tx)?;
        }
        Ok(())
    }

    /// Hands queued replies to `tx` (readiness drivers, when the socket is writable).
    pub fn flush(&mut self, tx: &mut impl Transmit) -> io::Result<()> {
        if self.in_flight > 0 || self.queued().is_empty() {
            return Ok(());
        }
        self.sent += tx.transmit(&self.out[self.sent..])?;
        self.compact();
        Ok(())
    }

    /// Takes every queued reply for a completion driver to send from a buffer it owns; they stay
    /// counted as pending until [`output_sent`](Core::output_sent). `None` when nothing is
    /// queued. Call it only with no send in flight, so that bytes never reorder.
    pub fn take_output(&mut self) -> Option<Vec<u8>> {
        if self.queued().is_empty() {
            return None;
        }
        debug_assert_eq!(self.in_flight, 0, "one send in flight at a time");
        let mut out = mem::take(&mut self.out);
        out.drain(..mem::take(&mut self.sent));
        self.in_flight = out.len();
        Some(out)
    }

    /// Lends the core an empty buffer to queue its next replies in: a completion driver's
    /// buffer from an earlier send, so that a busy connection does not allocate (and fault in)
    /// a new one for every send. Kept only when the core holds no buffer; otherwise given back.
    pub fn lend_buffer(&mut self, mut buf: Vec<u8>) -> Option<Vec<u8>> {
        if self.out.capacity() > 0 {
            return Some(buf);
        }
        buf.clear();
        self.out = buf;
        self.sent = 0;
        None
    }

    /// Takes back the queue's buffer when it holds no reply (a lent one that nothing was
    /// written into), so that an idle connection keeps no buffer.
    pub fn unused_buffer(&mut self) -> Option<Vec<u8>> {
        (self.out.is_empty() && self.out.capacity() > 0).then(|| mem::take(&mut self.out))
    }

    /// The kernel confirmed `n` bytes of the output taken by [`take_output`](Core::take_output).
    pub fn output_sent(&mut self, n: usize) {
        debug_assert!(n <= self.in_flight);
        self.in_flight -= n.min(self.in_flight);
    }

    /// True when the driver should send our FIN now (`shutdown(SHUT_WR)`): lingering and
    /// flushed. Call [`fin_sent`](Core::fin_sent) after.
    pub fn fin_due(&self) -> bool {
        matches!(
            self.state,
            State::Lingering {
                fin_sent: false,
                ..
            }
        ) && self.pending_len() == 0
            && self.stash.is_empty()
    }

    /// Our FIN is out.
    pub fn fin_sent(&mut self) {
        if let State::Lingering { deadline, .. } = self.state {
            self.state = State::Lingering {
                deadline,
                fin_sent: true,
            };
        }
    }

    /// What the driver should do next.
    pub fn next(&mut self, limits: &Limits) -> Next {
        let finished = self.pending_len() == 0 && self.stash.is_empty();
        match self.state {
            State::Aborted => return Next::Close(CloseReason::Error),
            State::ReadClosed { .. } if finished => return Next::Close(CloseReason::Finished),
            _ => {}
        }
        if !self.stash.is_empty() && self.may_process(limits) {
            // Input set aside by the turn's budget: nothing in the kernel will wake us for it.
            return Next::Yield;
        }
        Next::Wait {
            read: self.wants_read(limits),
            write: !self.queued().is_empty(),
        }
    }

    fn queued(&self) -> &[u8] {
        &self.out[self.sent..]
    }

    /// Whether input may be processed now: below the high-water mark, with hysteresis (once
    /// paused at the high-water mark, only at the low-water mark again).
    fn may_process(&mut self, limits: &Limits) -> bool {
        let pending = self.pending_len();
        match self.state {
            State::Open if pending >= limits.high_water => self.state = State::Paused,
            State::Paused if pending <= limits.low_water => self.state = State::Open,
            _ => {}
        }
        match self.state {
            State::Open => true,
            // Finishing what was read before the client's FIN or before the close began.
            State::ReadClosed { .. } | State::Lingering { .. } => pending < limits.high_water,
            State::Paused | State::Aborted => false,
        }
    }

    /// At the client's FIN: answers a last line that had no `\n` (RFC 862 spirit).
    fn finish_lines(&mut self, turn: &mut Turn<'_>, tx: &mut impl Transmit) -> io::Result<()> {
        let Some(parser) = self.lines.as_mut() else {
            return Ok(());
        };
        turn.out.clear();
        parser.finish(|request| {
            turn.stats.message();
            if let Request::Work { cost, .. } = request {
                burn_cpu(cost);
            }
            answer(&request, turn.out);
        });
        let out = mem::take(turn.out);
        let sent = self.send(&out, tx);
        *turn.out = out;
        sent
    }

    /// Answers the lines of `input` until it ends or a [`Stop`] applies; sets the rest aside.
    fn receive_lines(
        &mut self,
        input: &[u8],
        limits: &Limits,
        turn: &mut Turn<'_>,
        tx: &mut impl Transmit,
    ) -> io::Result<Processed> {
        // Replies that still fit under the high-water mark; the one that crosses it is whole.
        let room = limits.high_water.saturating_sub(self.pending_len());
        let parser = self.lines.as_mut().expect("lines protocol");
        let mut stop = None;
        let mut deferred = Vec::new();
        turn.out.clear();
        let fed = parser.feed(input, |request| {
            if let (Request::Work { line, .. }, Costly::Defer) = (&request, turn.costly) {
                deferred = line.to_vec();
                stop = Some(Stop::Offload);
                return false;
            }
            turn.stats.message();
            if let Request::Work { cost, .. } = request {
                burn_cpu(cost);
                turn.budget = turn.budget.saturating_sub(cost);
                turn.worked = true;
            }
            answer(&request, turn.out);
            if turn.out.len() >= room {
                stop = Some(Stop::HighWater);
            } else if turn.worked && turn.budget.is_zero() {
                stop = Some(Stop::Budget);
            }
            stop.is_none()
        });
        let out = mem::take(turn.out);
        let sent = self.send(&out, tx);
        *turn.out = out;
        sent?;
        match (fed, stop) {
            (Err(_too_long), _) => {
                self.send(LINE_TOO_LONG, tx)?;
                // Linger until the client's FIN, so that closing with unread input does not
                // turn into an RST that could destroy the error reply before it is read.
                self.begin_close(Instant::now() + LINGER_TIME);
                Ok(Processed::All)
            }
            (Ok(used), Some(stop)) => Ok(Processed::Stopped {
                stop,
                used,
                deferred,
            }),
            (Ok(_), None) => Ok(Processed::All),
        }
    }

    /// Keeps `deferred` (a request stopped before) then `rest` for [`Core::resume`].
    fn keep_for_later(&mut self, deferred: &[u8], rest: &[u8]) {
        if !(deferred.is_empty() && rest.is_empty()) {
            self.stash = [deferred, rest].concat();
        }
    }

    /// Writes `data` after whatever is already pending, keeping order; what `tx` does not take
    /// now is queued.
    fn send(&mut self, data: &[u8], tx: &mut impl Transmit) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let mut written = 0;
        if self.pending_len() == 0 {
            written = tx.transmit(data)?;
        }
        if written < data.len() {
            self.out.extend_from_slice(&data[written..]);
        }
        Ok(())
    }

    /// After a partial flush: free the buffer once it is empty, so a connection that was once
    /// slow holds nothing when it goes idle; drop the sent half once it dominates.
    fn compact(&mut self) {
        if self.sent == self.out.len() {
            self.out = Vec::new();
            self.sent = 0;
        } else if self.sent > self.out.len() / 2 {
            self.out.drain(..self.sent);
            self.sent = 0;
        }
    }
}

/// The reply to one request, appended to `out`: the line itself (echoed after any `WORK` was
/// done), or `ERR <reason>` for a malformed request.
fn answer(request: &Request<'_>, out: &mut Vec<u8>) {
    match request {
        Request::Line(line) | Request::Work { line, .. } => out.extend_from_slice(line),
        Request::Invalid(reason) => {
            // Writing into a Vec cannot fail.
            let _ = writeln!(out, "ERR {reason}");
        }
    }
}
