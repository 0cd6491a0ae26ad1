//! The single-threaded io_uring loop: one ring, many connections, everything inline.
//!
//! The completion twin of [`super::event_loop`], and the building block of two models: `uring`
//! runs one as the whole server, `uring-reuseport` one per pinned thread, each with its own
//! SO_REUSEPORT listener, under the supervisor. Where the epoll loop asks *which descriptors
//! are ready?* and then makes each syscall itself, this loop keeps standing orders in its ring
//! and is told what happened:
//!
//! | token | standing order | on its completion |
//! |---|---|---|
//! | [`LISTENER`] | one multishot accept | admit the connection through the [`AcceptGate`] and arm its recv; re-arm when it ends |
//! | [`SIGNALS`] | a read of the signalfd (the whole server) | first SIGINT/SIGTERM: drain; second: exit; read again |
//! | [`MAILBOX`] | a read of the mailbox's eventfd (a worker) | the supervisor asks for a stop: drain |
//! | [`TICK`] | a repeating timeout (`IORING_TIMEOUT_MULTISHOT`) | idle sweep, accept un-pause, stats |
//! | a connection's | a multishot recv, at most one send | [`RingConn::on_completion`] |
//! | [`CANCEL`] | cancels | nothing: the cancelled operation's own completion matters |
//!
//! One turn is one `io_uring_enter(2)` ([`Ring::wait`]): it submits every operation queued
//! since the last turn and waits for at least one completion (or none, when a connection
//! yielded in the last turn and must be served again now). Then every completion is handled,
//! the yielded connections are served once more, and last every connection touched in this
//! turn is *settled* once: what its core wants becomes operations for the next enter. So a
//! connection that received three chunks in one turn sends their echoes in one send. The
//! signalfd and the mailbox are read through the ring, so the loop blocks in exactly one place.
//!
//! Connection tokens carry the connection's slab key in their low 32 bits (as
//! [`super::conn_token`]) and a per-loop connection number in their high 32 bits, so a completion
//! can never be taken for a newer connection in a reused slot. None should ever arrive (a slot
//! is freed only once nothing of its connection is in flight), and one that did would be
//! dropped with its provided buffer given back.

use std::io;
use std::mem;
use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use pool::counters::Counter;
use reactor::uring::{self, BufGroup, Completion, OpId, Ring, RingOptions, SIGINFO_SIZE};
use reactor::{Signal, Signals, TcpStream, Token};

use super::accept::{is_fd_exhaustion, is_transient, AcceptGate};
use super::mailbox::Mailbox;
use super::shutdown::{exit_on_second_signal, Drain};
use super::tally::WorkerSlot;
use super::{
    numbered_conn_key, numbered_conn_token, LISTENER, MAILBOX, SIGNALS, TICK, TICK_PERIOD,
};
use crate::config::Settings;
use crate::conn::completion::CANCEL;
use crate::conn::{recv_limit, RingConn, RingCounters, RingIo, RingStatus, SpareBuffers};
use crate::report::{self, StatsClock};
use crate::slab::Slab;
use crate::stats::{messages_on_this_thread, Stats};

/// What a connection borrows from the loop (fields, not `self`, so that the slab entry can be
/// borrowed beside it).
macro_rules! ring_io {
    ($loop:ident) => {
        RingIo {
            ring: &mut $loop.ring,
            group: $loop.group,
            recv_limit: $loop.recv_limit,
            limits: &$loop.settings.limits,
            stats: $loop.stats,
            scratch: &mut $loop.scratch,
            turn: $loop.turn,
            now: $loop.now,
            counters: &$loop.counters,
            spare: &mut $loop.spare,
        }
    };
}

/// Most SQ entries per ring: one enter submits up to this many operations.
const SQ_ENTRIES: u32 = 1024;

/// What a loop is besides a server of connections: the whole server, or one worker.
pub enum Role {
    /// The whole server (`uring`): reads the signals, prints the stats lines.
    Standalone {
        /// The signalfd, created before any thread existed.
        signals: Signals,
        /// `--stats-interval`.
        stats_interval: Option<Duration>,
    },
    /// One worker of `uring-reuseport`: its supervisor reads the signals, tells it to stop
    /// through `mailbox`, and prints the stats, with this worker's counts in `slot`.
    Worker {
        /// Stop requests (the eventfd is read through the ring).
        mailbox: Arc<Mailbox>,
        /// This worker's place in the per-worker counts.
        slot: WorkerSlot,
    },
}

/// What a loop is given to run.
pub struct Parts {
    /// Accept from this listener.
    pub gate: AcceptGate,
    /// Standalone or under a supervisor.
    pub role: Role,
    /// The process's io_uring event counts (one set for all its loops).
    pub counters: Arc<RingCounters>,
}

/// Creates a ring on the calling thread (the only thread that may use it) and runs the loop
/// until it has been asked to stop and has drained.
pub fn run(settings: &Settings, stats: &Stats, parts: Parts) -> io::Result<()> {
    RingLoop::new(settings, stats, parts)?.run()
}

/// Where the multishot accept is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Accept {
    /// Armed: one completion per new connection.
    Armed(OpId),
    /// Not armed: out of descriptors, or a failure; the tick re-arms it.
    Paused,
    /// The drain cancelled it; its final completion closes the listener.
    Cancelling,
}

/// A connection, its number (the high half of its tokens), and whether it waits in `dirty`.
struct Entry {
    conn: RingConn,
    id: u32,
    dirty: bool,
}

struct RingLoop<'a> {
    /// First, so that it is dropped first: dropping a ring submits what is queued (naming
    /// descriptors that must still be open), cancels every operation and waits for their final
    /// completions, all before the sockets, listener, signalfd and eventfd below are closed.
    ring: Ring,
    group: BufGroup,
    /// What one arm of a connection's recv may bring (see [`recv_limit`]).
    recv_limit: Option<NonZeroU32>,
    settings: &'a Settings,
    stats: &'a Stats,
    gate: Option<AcceptGate>,
    accept: Accept,
    role: Role,
    conns: Slab<Entry>,
    /// Connections with completions (or news) this turn, to settle at its end.
    dirty: Vec<usize>,
    /// Connections that yielded, served again next turn.
    ready: Vec<usize>,
    scratch: Vec<u8>,
    spare: SpareBuffers,
    drain: Drain,
    turn: u64,
    now: Instant,
    next_id: u32,
    stats_clock: StatsClock,
    counters: Arc<RingCounters>,
    /// This ring's CQ overflows already added to `counters`.
    overflows_counted: u64,
}

impl<'a> RingLoop<'a> {
    fn new(settings: &'a Settings, stats: &'a Stats, parts: Parts) -> io::Result<Self> {
        let args = &settings.args;
        let opts = RingOptions {
            sq_entries: args.uring_cq_entries.min(SQ_ENTRIES),
            cq_entries: args.uring_cq_entries,
        };
        let mut ring = Ring::new(&opts)?;
        let group = ring.add_buffer_group(args.uring_buffers, args.uring_buffer_size)?;
        debug!("io_uring: {:?}", ring.features());
        let recv_limit = recv_limit(&ring, args.uring_buffer_size);
        // A worker's lines are the supervisor's to print.
        let stats_clock = StatsClock::new(match &parts.role {
            Role::Standalone { stats_interval, .. } => *stats_interval,
            Role::Worker { .. } => None,
        });
        let now = Instant::now();
        let mut this = RingLoop {
            ring,
            group,
            recv_limit,
            settings,
            stats,
            gate: Some(parts.gate),
            accept: Accept::Paused,
            role: parts.role,
            conns: Slab::new(),
            dirty: Vec::new(),
            ready: Vec::new(),
            scratch: Vec::new(),
            spare: SpareBuffers::default(),
            drain: Drain::default(),
            turn: 0,
            now,
            next_id: 0,
            stats_clock,
            counters: parts.counters,
            overflows_counted: 0,
        };
        this.arm_accept();
        this.arm_role(Vec::new());
        this.arm_tick();
        Ok(this)
    }

    fn run(mut self) -> io::Result<()> {
        loop {
            let yielded = mem::take(&mut self.ready);
            let min_complete = u32::from(yielded.is_empty());
            self.ring.wait(min_complete, self.drain.time_left())?;
            self.turn += 1;
            self.now = Instant::now();
            while let Some(done) = self.ring.next_completion() {
                self.on_completion(done);
            }
            for key in yielded {
                self.resume(key);
            }
            self.settle_dirty();
            if self.drain.is_draining()
                && (self.conns.is_empty() || self.drain.is_overdue(Instant::now()))
            {
                return self.finish();
            }
        }
    }

    fn on_completion(&mut self, done: Completion) {
        match done.token() {
            LISTENER => self.on_accept(done),
            SIGNALS | MAILBOX => self.on_role(done),
            TICK => self.on_tick(done),
            CANCEL => {}
            token => self.on_conn(token, done),
        }
    }

    fn on_conn(&mut self, token: Token, mut done: Completion) {
        let entry = match numbered_conn_key(token) {
            Some((key, id)) => self.conns.get_mut(key).filter(|e| e.id == id),
            None => None,
        };
        let Some(entry) = entry else {
            debug!("completion for a connection that is gone: {done:?}");
            if let Some(buf) = done.take_provided() {
                self.ring.recycle(buf);
            }
            return;
        };
        let mut io = ring_io!(self);
        entry.conn.on_completion(done, &mut io);
        mark_dirty(&mut self.dirty, entry, token);
    }

    /// Serves a connection that yielded in the previous turn.
    fn resume(&mut self, key: usize) {
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        let mut io = ring_io!(self);
        entry.conn.resume(&mut io);
        let token = numbered_conn_token(key, entry.id);
        mark_dirty(&mut self.dirty, entry, token);
    }

    /// Settles every connection touched this turn: its core's wishes become operations.
    fn settle_dirty(&mut self) {
        while let Some(key) = self.dirty.pop() {
            let Some(entry) = self.conns.get_mut(key) else {
                continue;
            };
            entry.dirty = false;
            let mut io = ring_io!(self);
            match entry
                .conn
                .settle(&mut io, numbered_conn_token(key, entry.id))
            {
                RingStatus::Wait | RingStatus::Closing => {}
                RingStatus::Yield => self.ready.push(key),
                RingStatus::Closed(_) => {
                    // Nothing of it is in flight: dropping it closes the socket.
                    self.conns.remove(key);
                    self.stats.closed.incr();
                }
            }
        }
    }

    /// A completion of the multishot accept: admit the connection; re-arm if it ended.
    fn on_accept(&mut self, mut done: Completion) {
        if let (Some(fd), Some(gate)) = (done.take_accepted(), &self.gate) {
            if let Some(stream) = gate.admit(TcpStream::from(fd), self.stats) {
                self.welcome(stream);
            }
        }
        if done.more() {
            return;
        }
        self.accept = Accept::Paused;
        match done.result() {
            _ if self.drain.is_draining() => self.gate = None, // closes the listener
            // Ended with a connection (the CQ was full): go on.
            Ok(_) => {
                RingCounters::count(&self.counters.accept_rearms);
                self.arm_accept();
            }
            Err(e) if is_fd_exhaustion(&e) => {
                // io_uring asks for a descriptor before it looks at the accept queue, so an
                // accept re-armed while the table is full fails at once, forever: shed the
                // waiting connections with the spare, then stay paused until the tick.
                if let Some(gate) = &mut self.gate {
                    gate.on_fd_exhaustion(self.stats);
                }
            }
            // A spurious EAGAIN (io_uring gave up polling the listener) is transient too.
            Err(e) if is_transient(&e) || e.kind() == io::ErrorKind::WouldBlock => {
                debug!("accept failed: {e}");
                RingCounters::count(&self.counters.accept_rearms);
                self.arm_accept();
            }
            Err(e) => warn!("accept failed: {e}; trying again at the next tick"),
        }
    }

    /// A new connection: into the slab, settled at the end of this turn (which arms its recv).
    fn welcome(&mut self, stream: TcpStream) {
        if let Role::Worker { slot, .. } = &self.role {
            slot.took_conn();
        }
        let protocol = self.settings.args.protocol;
        let mut conn = RingConn::new(stream, protocol, &self.settings.limits, self.now);
        if let Some(deadline) = self.drain.deadline() {
            conn.begin_close(deadline);
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let key = self.conns.insert(Entry {
            conn,
            id,
            dirty: true,
        });
        self.dirty.push(key);
    }

    /// The signalfd or the mailbox's eventfd was read.
    fn on_role(&mut self, mut done: Completion) {
        let buf = done.take_buf().unwrap_or_default();
        if let Err(e) = done.result() {
            // Never re-armed after an error: a read that fails at once would spin the loop.
            warn!("reading {:?} through the ring failed: {e}", done.token());
            return;
        }
        match &self.role {
            Role::Standalone { .. } => {
                // SIGCHLD is in the set too (server::run blocks it for every model): ignored.
                let signal = uring::siginfo_signal(&buf);
                if let Some(signal @ (Signal::Interrupt | Signal::Terminate)) = signal {
                    self.on_stop(signal);
                }
            }
            Role::Worker { mailbox, .. } => {
                if mailbox.stop_requested() {
                    self.begin_drain();
                }
            }
        }
        self.arm_role(buf);
    }

    /// SIGINT or SIGTERM: the first drains, a second exits at once.
    fn on_stop(&mut self, signal: Signal) {
        if self.drain.is_draining() {
            let final_line = || report::final_line(self.line());
            exit_on_second_signal(signal, &final_line, || {});
        }
        info!("{signal:?}: draining");
        self.begin_drain();
    }

    fn on_tick(&mut self, done: Completion) {
        if !done.more() {
            // A one-shot timeout (no IORING_TIMEOUT_MULTISHOT), or a tick a full CQ ended.
            self.arm_tick();
        }
        let now = self.now;
        self.count_overflows();
        self.sweep_expired(now);
        if let Some(gate) = &mut self.gate {
            gate.refill_spare();
        }
        if self.accept == Accept::Paused {
            self.arm_accept();
        }
        match &self.role {
            Role::Worker { slot, .. } => slot.publish_msgs(messages_on_this_thread()),
            Role::Standalone { .. } => {
                if self.stats_clock.due(now) {
                    report::emit(&self.line());
                }
            }
        }
    }

    /// Closes connections idle for `--idle-timeout` or lingering past their deadline.
    fn sweep_expired(&mut self, now: Instant) {
        let idle_timeout = self.settings.idle_timeout;
        for key in self.conns.keys() {
            let Some(entry) = self.conns.get_mut(key) else {
                continue;
            };
            if entry.conn.is_closing() {
                continue;
            }
            let Some(why) = entry.conn.core().expired(now, idle_timeout, self.stats) else {
                continue;
            };
            entry.conn.expire(why);
            let token = numbered_conn_token(key, entry.id);
            mark_dirty(&mut self.dirty, entry, token);
        }
    }

    /// Stops accepting, and lets every connection flush and linger until the deadline.
    fn begin_drain(&mut self) {
        let Some(deadline) = self.drain.begin(self.settings.drain_timeout) else {
            return;
        };
        match self.accept {
            Accept::Armed(id) => {
                self.ring.cancel(id, CANCEL);
                self.accept = Accept::Cancelling;
            }
            // Nothing armed names the listener: close it now.
            Accept::Paused => self.gate = None,
            Accept::Cancelling => {}
        }
        for key in self.conns.keys() {
            if let Some(entry) = self.conns.get_mut(key) {
                entry.conn.begin_close(deadline);
                let token = numbered_conn_token(key, entry.id);
                mark_dirty(&mut self.dirty, entry, token);
            }
        }
    }

    /// Drained or past the deadline: close what is left and say so.
    fn finish(mut self) -> io::Result<()> {
        self.count_overflows();
        let RingLoop {
            ring,
            conns,
            gate,
            role,
            settings,
            stats,
            counters,
            ..
        } = self;
        let open = conns.len();
        if open > 0 {
            info!("drain deadline passed: closing {open} connections");
        }
        // The ring first: dropping it cancels every operation and waits for their final
        // completions, so the kernel holds no buffer of ours when the sockets close.
        drop(ring);
        drop(conns);
        stats.closed.add(open as u64);
        drop(gate);
        match role {
            Role::Worker { slot, .. } => slot.publish_msgs(messages_on_this_thread()),
            Role::Standalone { .. } => {
                let line = report::line(settings, stats, None, None);
                let line = report::with_fields(line, &[counters.field()]);
                report::emit(&report::final_line(line));
            }
        }
        Ok(())
    }

    /// The stats line of this loop now (the whole server's, when standalone).
    fn line(&self) -> String {
        let listener = self.gate.as_ref().map(|g| &**g.listener());
        let line = report::line(self.settings, self.stats, listener, None);
        report::with_fields(line, &[self.counters.field()])
    }

    /// Adds this ring's CQ overflows since the last call to the shared counts.
    fn count_overflows(&mut self) {
        let stats = self.ring.stats();
        let total = stats.overflow_flushes + stats.busy_retries;
        let new = total - self.overflows_counted;
        self.overflows_counted = total;
        self.counters.cq_overflows.fetch_add(new, Ordering::Relaxed);
    }

    fn arm_accept(&mut self) {
        if let (Some(gate), false) = (&self.gate, self.drain.is_draining()) {
            let id = self.ring.accept_multishot(&**gate.listener(), LISTENER);
            self.accept = Accept::Armed(id);
        }
    }

    /// Reads the signalfd (standalone) or the mailbox's eventfd (worker) through the ring,
    /// into `buf` (the last read's buffer, reused).
    fn arm_role(&mut self, mut buf: Vec<u8>) {
        buf.clear();
        match &self.role {
            Role::Standalone { signals, .. } => {
                buf.reserve_exact(SIGINFO_SIZE);
                self.ring.read(signals, buf, SIGNALS);
            }
            Role::Worker { mailbox, .. } if !self.drain.is_draining() => {
                buf.reserve_exact(8); // the eventfd's counter
                self.ring.read(mailbox.waker(), buf, MAILBOX);
            }
            Role::Worker { .. } => {}
        }
    }

    fn arm_tick(&mut self) {
        if self.ring.tick(TICK_PERIOD, TICK).is_err() {
            // No IORING_TIMEOUT_MULTISHOT (before Linux 6.4): a one-shot timeout per tick.
            self.ring.timeout(TICK_PERIOD, TICK);
        }
    }
}

/// Puts `entry` on the list of connections to settle at the end of the turn, once.
fn mark_dirty(dirty: &mut Vec<usize>, entry: &mut Entry, token: Token) {
    if !entry.dirty {
        entry.dirty = true;
        if let Some((key, _)) = numbered_conn_key(token) {
            dirty.push(key);
        }
    }
}
