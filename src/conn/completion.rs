//! The completion driver: a [`Core`] fed by io_uring completions instead of readiness.
//!
//! The readiness driver asks the kernel *may I read?* and then reads; this one hands the kernel
//! standing orders and is told what happened. Per connection there are at most two operations
//! in flight on its [`reactor::uring::Ring`], never more:
//!
//! - **one multishot recv** into the thread's provided-buffer group: each completion lends a
//!   buffer holding the bytes the kernel already received. They go to [`Core::receive`], which
//!   copies what it keeps, and the buffer goes back to the ring at once (so a connection holds
//!   no buffer of its own while idle: the buffers belong to the thread);
//! - **one send** of the core's queued replies ([`Core::take_output`]), a `Vec` the ring owns
//!   until the send's completion hands it back. Only one: two sends on one socket may complete
//!   out of order, and then bytes would reorder. A short send continues from the same `Vec`
//!   at `offset + n` before anything newer goes out.
//!
//! After the completions of one wait are handled, the loop calls [`RingConn::settle`] once per
//! connection they touched, and the core's wishes become operations: replies queued and no send
//! in flight → send; our FIN due → `shutdown(SHUT_WR)`; input welcome and no recv armed → arm
//! one; input *not* welcome (backpressure past the high-water mark, or input set aside by the
//! turn budget) and a recv armed → cancel it (`IORING_OP_ASYNC_CANCEL`). A cancel is not
//! instant: completions already on their way still arrive, and the core must keep their bytes.
//! What they can carry is bounded by the recv itself: each arm may bring only so many bytes
//! before it ends ([`recv_limit`], Linux 6.17), less than one read of the readiness driver, so
//! the core's [`memory_bound`](super::memory_bound) holds for completions too.
//!
//! Closing is where completion I/O differs most from readiness: the kernel may still hold a
//! buffer of ours, and an operation armed on a socket keeps the socket's file alive even after
//! `close(2)`. So a closing connection cancels whatever it has in flight
//! (`IORING_ASYNC_CANCEL_FD`) and keeps its socket open until the final completion of every
//! operation has come back; only then does [`RingConn::settle`] say
//! [`RingStatus::Closed`], and dropping the `RingConn` closes the socket. The same rule is
//! what tokio-uring and monoio enforce by making a buffer's owner the operation itself.

use std::io;
use std::num::NonZeroU32;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use log::{debug, error};
use pool::counters::Counter;
use reactor::uring::{BufGroup, Completion, OpId, OpKind, Ring};
use reactor::{Shutdown, TcpStream, Token};

use super::core::{CloseReason, Core, Costly, Expiry, Limits, Next, QueueOnly, State, Turn};
use crate::protocol::Protocol;
use crate::stats::Stats;

/// What the loop lends a connection while it handles one of its completions or settles it.
pub struct RingIo<'a> {
    /// The thread's ring, where operations are queued (the loop submits them at its next wait).
    pub ring: &'a mut Ring,
    /// The thread's provided-buffer group, for multishot recvs.
    pub group: BufGroup,
    /// The byte limit of each recv arm, where the kernel takes one (see [`recv_limit`]).
    pub recv_limit: Option<NonZeroU32>,
    /// Per-connection limits.
    pub limits: &'a Limits,
    /// The server's counters.
    pub stats: &'a Stats,
    /// The thread's buffer for line replies (see [`Turn::out`]).
    pub scratch: &'a mut Vec<u8>,
    /// The loop's turn number: the `WORK` budget is per connection and per turn.
    pub turn: u64,
    /// The time at the start of this turn (one clock read per turn, not per completion).
    pub now: Instant,
    /// The process's io_uring event counts.
    pub counters: &'a RingCounters,
    /// The thread's empty send buffers, lent to cores so that sends do not allocate.
    pub spare: &'a mut SpareBuffers,
}

/// A thread's empty send buffers: a send's `Vec` comes back with its completion and is kept
/// here, then lent to the next core that receives, instead of being freed and allocated again
/// (a stream of 64 KiB sends would otherwise fault in fresh pages every time). Bounded in count
/// and size, and owned by the thread, never by an idle connection.
#[derive(Debug, Default)]
pub struct SpareBuffers {
    buffers: Vec<Vec<u8>>,
}

impl SpareBuffers {
    /// Most buffers kept.
    const COUNT: usize = 16;
    /// Largest buffer kept.
    const MAX_CAPACITY: usize = 128 * 1024;

    /// Keeps `buf` (emptied) if there is room and it is not too large; frees it otherwise.
    pub fn keep(&mut self, mut buf: Vec<u8>) {
        if self.buffers.len() < Self::COUNT && buf.capacity() <= Self::MAX_CAPACITY {
            buf.clear();
            self.buffers.push(buf);
        }
    }

    /// Lends a kept buffer to `core` if it has none.
    fn lend_to(&mut self, core: &mut Core) {
        if let Some(buf) = self.buffers.pop() {
            if let Some(back) = core.lend_buffer(buf) {
                self.buffers.push(back);
            }
        }
    }
}

/// The ring's rarer events, counted for the stats line (`uring=recv_rearm:3,enobufs:1,...`) so
/// that a reader, or a test, can see that a path was taken: each one is a pitfall of
/// `docs/uring.md` handled. Shared by every loop of the process; `Relaxed`, as statistics.
#[derive(Debug, Default)]
pub struct RingCounters {
    /// Multishot recvs armed again after one ended early with the stream still open (a full
    /// CQ, `ENOBUFS`, a backpressure cancel) or was held back by backpressure.
    pub recv_rearms: AtomicU64,
    /// Multishot recvs that ended because the provided-buffer group ran dry.
    pub enobufs: AtomicU64,
    /// Multishot recvs cancelled because the connection stopped wanting input.
    pub recv_cancels: AtomicU64,
    /// Multishot recvs that ended on their byte limit (re-armed as routine, not counted in
    /// `recv_rearms`).
    pub recv_limited: AtomicU64,
    /// Times a connection's recv, already ended, was not armed again because the connection
    /// stopped wanting input: backpressure without a cancel.
    pub recv_holds: AtomicU64,
    /// Sends the kernel completed short, continued from the same buffer.
    pub short_sends: AtomicU64,
    /// Multishot accepts armed again after one ended.
    pub accept_rearms: AtomicU64,
    /// Completion-queue overflows drained (`IORING_SQ_CQ_OVERFLOW` flushes and `EBUSY` retries).
    pub cq_overflows: AtomicU64,
}

impl RingCounters {
    /// Adds one to `counter`.
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// The `uring=...` field of the stats line.
    pub fn field(&self) -> (&'static str, String) {
        let value = format!(
            "recv_rearm:{},enobufs:{},recv_cancel:{},recv_limited:{},recv_held:{},short_send:{},accept_rearm:{},cq_overflow:{}",
            self.recv_rearms.load(Relaxed),
            self.enobufs.load(Relaxed),
            self.recv_cancels.load(Relaxed),
            self.recv_limited.load(Relaxed),
            self.recv_holds.load(Relaxed),
            self.short_sends.load(Relaxed),
            self.accept_rearms.load(Relaxed),
            self.cq_overflows.load(Relaxed),
        );
        ("uring", value)
    }
}

/// What the loop should do with a connection after [`RingConn::settle`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RingStatus {
    /// Operations are armed: its next completion will bring it back.
    Wait,
    /// Its turn's `WORK` budget ran out with input set aside: call [`RingConn::resume`] in
    /// the next turn (no completion will come for bytes already in the process).
    Yield,
    /// Closing: waiting for the final completions of its cancelled operations.
    Closing,
    /// Nothing in flight any more: drop it, which closes the socket.
    Closed(CloseReason),
}

/// Where the connection's multishot recv is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Recv {
    /// None armed.
    Idle,
    /// Armed: completions arrive while the kernel receives.
    Armed(OpId),
    /// A cancel is on its way; the recv's final completion has not come back yet.
    Cancelling,
    /// None armed, but one was before and ended early (the next arm is a re-arm).
    Ended,
    /// None armed: the last one brought its byte limit ([`recv_limit`]); arming the next is
    /// routine, not a re-arm.
    Spent,
    /// None armed because the core wants no input (backpressure); armed again once it does.
    Held,
}

/// One client connection driven by completions: its socket, its [`Core`], and what it has in
/// flight on the ring. See the module docs.
#[derive(Debug)]
pub struct RingConn {
    socket: TcpStream,
    core: Core,
    recv: Recv,
    /// Bytes the current recv arm has brought (against [`RingIo::recv_limit`]).
    arm_bytes: u32,
    /// `Some(offset)` while a send is in flight: where in its `Vec` it started.
    send_from: Option<usize>,
    /// Set once closing began: nothing is armed again, and the connection goes when nothing
    /// is in flight.
    closing: Option<CloseReason>,
    /// The cancel of everything in flight was queued.
    cancelled: bool,
    /// The turn in which `budget` and `worked` were last used, and their values then.
    turn: u64,
    budget: Duration,
    worked: bool,
}

impl RingConn {
    /// Wraps a socket accepted at `now`; nothing is armed until the first [`settle`](Self::settle).
    pub fn new(socket: TcpStream, protocol: Protocol, limits: &Limits, now: Instant) -> RingConn {
        RingConn {
            socket,
            core: Core::new(protocol, limits, now),
            recv: Recv::Idle,
            arm_bytes: 0,
            send_from: None,
            closing: None,
            cancelled: false,
            turn: 0,
            budget: Duration::ZERO,
            worked: false,
        }
    }

    /// The state machine, for timers.
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// Whether closing has begun (its operations are being cancelled).
    pub fn is_closing(&self) -> bool {
        self.closing.is_some()
    }

    /// Starts a graceful end (server drain): see [`Core::begin_close`]. The next `settle`
    /// does the work.
    pub fn begin_close(&mut self, deadline: Instant) {
        self.core.begin_close(deadline);
    }

    /// A timer expired (idle timeout or lingering deadline): the connection closes at the next
    /// `settle`, without ceremony.
    pub fn expire(&mut self, why: Expiry) {
        match why {
            Expiry::Idle => {
                self.core.abort();
            }
            Expiry::Deadline => self.closing_reason(CloseReason::Finished),
        }
    }

    /// Handles one completion of this connection's operations: bytes in, bytes confirmed out,
    /// or the end of an operation. Queues nothing; [`settle`](Self::settle) decides what next.
    pub fn on_completion(&mut self, mut done: Completion, io: &mut RingIo<'_>) {
        match done.kind() {
            OpKind::Recv => self.on_recv(&mut done, io),
            OpKind::Send => self.on_send(&mut done, io),
            other => debug!("unexpected {other:?} completion for a connection"),
        }
    }

    /// Serves input that an earlier turn set aside (a connection that said
    /// [`RingStatus::Yield`]), unless this turn's budget is already spent.
    pub fn resume(&mut self, io: &mut RingIo<'_>) {
        if self.closing.is_some() || self.budget_spent(io.turn) {
            return;
        }
        io.spare.lend_to(&mut self.core);
        let mut serve = Serve::from(io);
        self.run_core(&mut serve, |core, limits, turn| {
            core.resume(limits, turn, &mut QueueOnly).map(drop)
        });
    }

    /// Turns what the core wants now into operations on the ring, and says what the loop
    /// should do with the connection (see the module docs).
    pub fn settle(&mut self, io: &mut RingIo<'_>, token: Token) -> RingStatus {
        if self.closing.is_none() && self.core.deadline().is_some_and(|d| io.now >= d) {
            self.closing_reason(CloseReason::Finished);
        }
        if self.closing.is_some() {
            return self.close_step(io);
        }
        let next = self.core.next(io.limits);
        if let Next::Close(reason) = next {
            self.closing_reason(reason);
            return self.close_step(io);
        }
        if self.send_from.is_none() {
            if let Some(out) = self.core.take_output() {
                io.ring.send(&self.socket, out, 0, token);
                self.send_from = Some(0);
            }
        }
        if let Some(unused) = self.core.unused_buffer() {
            io.spare.keep(unused);
        }
        if self.core.fin_due() {
            // ENOTCONN here means the peer is already gone; its recv will say so.
            let _ = self.socket.shutdown(Shutdown::Write);
            self.core.fin_sent();
        }
        match next {
            Next::Wait { read, .. } => {
                self.want_input(read, io, token);
                RingStatus::Wait
            }
            // Input is set aside: nothing more may be read until it is served.
            _ => {
                self.want_input(false, io, token);
                RingStatus::Yield
            }
        }
    }

    /// A recv completion: hand its bytes to the core and its buffer back to the ring; at the
    /// recv's end, note why (end of stream, error, or a reason to re-arm).
    fn on_recv(&mut self, done: &mut Completion, io: &mut RingIo<'_>) {
        if let Some(buf) = done.take_provided() {
            io.stats.bytes_in.add(buf.len() as u64);
            self.arm_bytes = self.arm_bytes.saturating_add(buf.len() as u32);
            self.core.touch(io.now);
            if self.closing.is_none() {
                io.spare.lend_to(&mut self.core);
                let bytes = io.ring.buffer(&buf);
                // `Defer`: a costly request runs next turn, after the enter that submits the
                // replies queued so far (docs/uring.md, "Costly requests wait").
                let mut serve = Serve {
                    limits: io.limits,
                    stats: io.stats,
                    scratch: &mut *io.scratch,
                    turn: io.turn,
                    costly: Costly::Defer,
                };
                if self.budget_spent(io.turn) {
                    // One turn runs at most one costly request past its budget, however many
                    // recv completions one wait returned for this connection.
                    self.core.set_aside(bytes);
                } else {
                    self.run_core(&mut serve, |core, limits, turn| {
                        core.receive(bytes, limits, turn, &mut QueueOnly).map(drop)
                    });
                }
            }
            // The core copied what it keeps: the buffer may go back to the kernel now.
            io.ring.recycle(buf);
        }
        if done.more() {
            return;
        }
        let spent = io
            .recv_limit
            .is_some_and(|limit| self.arm_bytes >= limit.get());
        self.recv = if spent && done.res() > 0 {
            RingCounters::count(&io.counters.recv_limited);
            Recv::Spent
        } else {
            Recv::Ended
        };
        match done.res() {
            0 if self.closing.is_none() => {
                let mut serve = Serve::from(io);
                self.run_core(&mut serve, |core, _, turn| {
                    core.received_eof(turn, &mut QueueOnly)
                });
            }
            // Ended with data (the CQ was full), out of buffers (ENOBUFS), or cancelled by us:
            // `settle` re-arms if input is still welcome.
            res if res == -ENOBUFS => RingCounters::count(&io.counters.enobufs),
            // io_uring may give up polling a socket and pass its EAGAIN on (liburing #364):
            // nothing is wrong with the connection, `settle` re-arms.
            res if res >= 0 || res == -ECANCELED || res == -EAGAIN => {}
            res => self.fail(res, io.stats),
        }
    }

    /// A send completion: confirm the bytes, continue a short send from the same `Vec`.
    fn on_send(&mut self, done: &mut Completion, io: &mut RingIo<'_>) {
        let from = self.send_from.take().unwrap_or(0);
        let buf = done.take_buf().unwrap_or_default();
        match done.res() {
            n if n > 0 => {
                let n = n as usize;
                self.core.output_sent(n);
                self.core.touch(io.now);
                io.stats.bytes_out.add(n as u64);
                let next = from + n;
                if next < buf.len() && self.closing.is_none() {
                    // Short: the rest goes first, before any newer reply.
                    RingCounters::count(&io.counters.short_sends);
                    io.ring.send(&self.socket, buf, next, done.token());
                    self.send_from = Some(next);
                } else {
                    io.spare.keep(buf);
                }
            }
            res if res == -ECANCELED && self.closing.is_some() => {}
            // A spurious EAGAIN (see `on_recv`): the same bytes again, from the same offset.
            res if res == -EAGAIN && self.closing.is_none() && from < buf.len() => {
                io.ring.send(&self.socket, buf, from, done.token());
                self.send_from = Some(from);
            }
            // 0 bytes of a non-empty buffer would repeat forever: a failure too.
            0 => self.fail(-EPIPE, io.stats),
            res => self.fail(res, io.stats),
        }
    }

    /// Runs `f` on the core with this connection's turn (its budget restored if it already
    /// ran in this loop turn), catching a panic as the readiness driver does: a bug in this
    /// crate, never the client's doing, costs this connection only.
    fn run_core(
        &mut self,
        serve: &mut Serve<'_>,
        f: impl FnOnce(&mut Core, &Limits, &mut Turn<'_>) -> io::Result<()>,
    ) {
        let mut turn = Turn::new(serve.scratch, serve.costly, serve.stats);
        if self.turn == serve.turn {
            (turn.budget, turn.worked) = (self.budget, self.worked);
        }
        let (core, limits) = (&mut self.core, serve.limits);
        let result = panic::catch_unwind(AssertUnwindSafe(|| f(core, limits, &mut turn)));
        (self.turn, self.budget, self.worked) = (serve.turn, turn.budget, turn.worked);
        // With `QueueOnly` nothing in the core can fail with an I/O error; only a panic.
        if result.is_err() {
            error!("bug: serving a connection panicked; closing that connection only");
            // The scratch buffer may be left half-swapped: replace it.
            *serve.scratch = Vec::new();
            serve.stats.errors.incr();
            self.closing_reason(CloseReason::Error);
        }
    }

    fn budget_spent(&self, turn: u64) -> bool {
        self.turn == turn && self.worked && self.budget.is_zero()
    }

    /// Arms the multishot recv when input is welcome and none is armed; cancels it when input
    /// is not welcome (backpressure, or input set aside).
    fn want_input(&mut self, read: bool, io: &mut RingIo<'_>, token: Token) {
        match (read, self.recv) {
            (true, Recv::Idle | Recv::Ended | Recv::Spent | Recv::Held) => {
                if matches!(self.recv, Recv::Ended | Recv::Held) {
                    RingCounters::count(&io.counters.recv_rearms);
                }
                self.arm_bytes = 0;
                let limited = io.recv_limit.map(|limit| {
                    io.ring
                        .recv_multishot_limited(&self.socket, io.group, limit, token)
                });
                let id = match limited {
                    Some(Ok(id)) => id,
                    // No limit (the kernel predates it): the recv runs until cancelled.
                    None | Some(Err(_)) => io.ring.recv_multishot(&self.socket, io.group, token),
                };
                self.recv = Recv::Armed(id);
            }
            (false, Recv::Armed(id)) => {
                RingCounters::count(&io.counters.recv_cancels);
                io.ring.cancel(id, CANCEL);
                self.recv = Recv::Cancelling;
            }
            (false, Recv::Ended | Recv::Spent) if self.core.state() == State::Paused => {
                RingCounters::count(&io.counters.recv_holds);
                self.recv = Recv::Held;
            }
            _ => {}
        }
    }

    /// Closing: cancel everything in flight (once), and report `Closed` when nothing is left.
    fn close_step(&mut self, io: &mut RingIo<'_>) -> RingStatus {
        let recv_in_flight = matches!(self.recv, Recv::Armed(_) | Recv::Cancelling);
        let in_flight = recv_in_flight || self.send_from.is_some();
        if !in_flight {
            return RingStatus::Closed(self.closing.unwrap_or(CloseReason::Error));
        }
        if !self.cancelled {
            // IORING_ASYNC_CANCEL_FD | _ALL: the recv and the send, whatever their state. The
            // socket stays open until their final completions (the kernel looks the fd up
            // when it runs the cancel, at the next submit).
            io.ring.cancel_fd(&self.socket, CANCEL);
            self.cancelled = true;
        }
        RingStatus::Closing
    }

    /// Begins closing (the first reason stands).
    fn closing_reason(&mut self, reason: CloseReason) {
        self.closing.get_or_insert(reason);
    }

    /// An operation failed with `-errno` (a reset, a broken pipe): close this connection only.
    fn fail(&mut self, res: i32, stats: &Stats) {
        if self.closing.is_none() {
            debug!("closing connection: {}", io::Error::from_raw_os_error(-res));
            stats.errors.incr();
        }
        self.closing_reason(CloseReason::Error);
    }
}

/// The part of [`RingIo`] the core needs, borrowed apart from the ring (whose buffer holds the
/// bytes being served).
struct Serve<'b> {
    limits: &'b Limits,
    stats: &'b Stats,
    scratch: &'b mut Vec<u8>,
    turn: u64,
    /// Where a `WORK` request met here runs (see [`RingConn::on_recv`]).
    costly: Costly,
}

impl<'b> Serve<'b> {
    fn from(io: &'b mut RingIo<'_>) -> Serve<'b> {
        Serve {
            limits: io.limits,
            stats: io.stats,
            scratch: &mut *io.scratch,
            turn: io.turn,
            costly: Costly::Inline,
        }
    }
}

/// The token of cancel operations: their own completions carry nothing the loop needs.
pub const CANCEL: Token = Token(4);

// Linux errno values (asm-generic/errno.h). Spelled out here because the application does not
// depend on libc: only `reactor` talks to the kernel.
/// How many bytes one arm of a connection's multishot recv may bring, where the kernel can
/// limit it (Linux 6.17; `None` before).
///
/// Once armed, a multishot recv takes whatever the socket holds into the group's buffers, one
/// completion per buffer, within the same `io_uring_enter` that runs its task work: a client
/// that sent 256 KiB brings 16 completions of 16 KiB at once. When the first of them pushes
/// the core past its high-water mark, the rest are already ours, and a cancel comes too late
/// for them; the core must keep their bytes, and a client that never reads would make the
/// server keep everything its socket buffer held. The readiness driver reads at most
/// [`READ_CHUNK`](super::core::READ_CHUNK) per turn, which is what [`super::memory_bound`]
/// allows for; a limit makes an arm bring less than that too, and the loop re-arms at most
/// once per turn. The limit ends a recv after at least `limit` bytes, at most one buffer past
/// it, so an arm brings below `limit + buffer_size`. An arm that ends on its limit is re-armed by [`RingConn::settle`]
/// when the core still wants input, like any other end: an extra SQE every few buffers, no
/// extra syscall.
pub fn recv_limit(ring: &Ring, buffer_size: u32) -> Option<NonZeroU32> {
    if !ring.features().recv_limit {
        return None;
    }
    // One read, less one buffer: an arm then brings less than one read (with the default
    // 16 KiB buffers, at most four of them). Smaller limits cost more than they save: an arm
    // that ends after every buffer is a single-shot recv, and re-arming one costs a new poll
    // registration in the kernel (a 16 KiB limit made `stream` 1.56x dearer in CPU per
    // message; this one, 1.04x, within noise).
    let read = super::core::READ_CHUNK as u32;
    NonZeroU32::new(read.saturating_sub(buffer_size).max(1))
}

const EAGAIN: i32 = 11;
const EPIPE: i32 = 32;
const ENOBUFS: i32 = 105;
const ECANCELED: i32 = 125;
