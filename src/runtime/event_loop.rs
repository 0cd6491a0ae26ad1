//! The single-threaded event loop: one epoll set, many connections, everything inline.
//!
//! This is the Node.js model of our design notes, and the building block of five models:
//! `event-loop` runs one as the whole server; `reuseport` runs one per pinned thread, each with
//! its own SO_REUSEPORT listener; `prefork` runs one per process; `listener-pool` runs one per
//! worker, fed with accepted connections through its [`Mailbox`] instead of a listener; and
//! `reactor-offload` runs one with its pool plugged in as a [`Hook`].
//!
//! A loop has a [`Role`]: [`Standalone`] when it is the whole server (it owns the signalfd and
//! prints the stats lines), [`UnderSupervisor`] when it is one worker among several (the
//! supervisor on the main thread does both).
//!
//! One turn of the loop is `epoll_wait(2)`, then for each ready descriptor:
//!
//! | token | what is ready | what we do |
//! |---|---|---|
//! | [`LISTENER`] | the accept queue is not empty | the [`AcceptGate`] accepts a batch; each connection is registered |
//! | [`MAILBOX`] | another thread wrote our eventfd | register the connections handed over; drain if asked to stop |
//! | [`SIGNALS`] | SIGINT / SIGTERM (signalfd) | begin the drain; a second one exits |
//! | [`TICK`] | the timerfd expired | idle sweep, accept un-pause, periodic stats |
//! | a connection's token | a client socket | [`Conn::serve`], then re-register if the interest changed |
//!
//! and last, the connections that yielded in the previous turn (their `WORK` budget ran out with
//! input set aside) are served once more. A turn serves each connection at most once, so the
//! loop reads its signals, and serves the neighbours, at least once per `WORK` request.
//!
//! **Level or edge** (`--epoll-trigger`, epoll(7)). Level-triggered, a connection is registered
//! for what it wants now (`EPOLLIN`, plus `EPOLLOUT` while replies are queued) and re-registered
//! when that changes; one that hit its read budget is simply reported again by the next
//! `epoll_wait`. The kernel pays for that convenience: after reporting a level-triggered socket
//! it puts it back on the ready list, so the next `epoll_wait` polls it again (`ep_item_poll`)
//! even when it has nothing new. Edge-triggered, the same interests are registered with
//! `EPOLLET`: no re-poll, but the loop must itself come back to a connection whose read budget
//! ran out ([`Status::More`]), because no new edge will say so. (Watching writability always,
//! as mio does, would save the `epoll_ctl` when backpressure starts and ends but turn every ACK
//! from the client into an event; it is asked for only while replies are queued.) The listener
//! and the loop's own descriptors stay level-triggered. Edge is the default: in a pinned
//! 64-connection ping-pong it costs about 10% less server CPU per message than level
//! (`docs/models.md` has the figures).
//!
//! A connection in the ready list (it yielded, or must be served again) is served once per
//! turn, from that list; an event for it meanwhile is skipped.

use std::io;
use std::mem;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use pool::counters::Counter;
use pool::PoolStats;
use reactor::{Epoll, Event, Events, Interest, Signals, Timer};

use super::accept::AcceptGate;
use super::mailbox::{Arrival, Mailbox};
use super::shutdown::{read_stop_signals, Drain};
use super::tally::{Tally, WorkerSlot};
use super::{conn_key, conn_token, names, LISTENER, MAILBOX, SIGNALS, TICK, TICK_PERIOD};
use crate::config::{Settings, Trigger};
use crate::conn::{Conn, Costly, Scratch, Status};
use crate::report::{self, StatsClock};
use crate::slab::Slab;
use crate::stats::{messages_on_this_thread, SharedCounts, Stats};

/// Events returned by one `epoll_wait`: enough to amortise the syscall, small enough to stay
/// in cache.
const EVENTS_PER_WAIT: usize = 256;

/// What a loop is, besides a server of connections: the whole server, or one worker.
pub trait Role {
    /// Adds the role's own descriptors to the loop's epoll set.
    fn register(&self, _epoll: &Epoll) -> io::Result<()> {
        Ok(())
    }

    /// The signalfd is readable: returns true to begin the drain (a second stop signal exits
    /// inside). `final_line` is the stats line to print on the way out.
    fn on_signals(
        &mut self,
        _draining: bool,
        _final_line: &dyn Fn() -> String,
    ) -> io::Result<bool> {
        Ok(false)
    }

    /// The tick: prints a stats line when one is due.
    fn on_tick(&mut self, _now: Instant, _stats: &Stats, _line: &dyn Fn() -> String) {}

    /// The loop has ended; `final_line` counts everything it did.
    fn on_exit(&mut self, _stats: &Stats, _final_line: String) {}
}

/// The whole server (`event-loop`, a `prefork` child): owns the signals, prints the stats.
pub struct Standalone {
    signals: Signals,
    stats_clock: StatsClock,
    /// A `prefork` child: its number (labels its lines), and where it publishes its counts
    /// for the parent's total.
    child: Option<(usize, Arc<SharedCounts>)>,
}

impl Standalone {
    /// A standalone role reading `signals`, printing stats every `stats_interval`.
    pub fn new(signals: Signals, stats_interval: Option<Duration>) -> Standalone {
        Standalone {
            signals,
            stats_clock: StatsClock::new(stats_interval),
            child: None,
        }
    }

    /// The role of child number `index` of a multi-process server: its lines carry
    /// `child=<index>`, and on every tick it stores its counts in slot `index` of `shared`.
    pub fn child(mut self, index: usize, shared: Arc<SharedCounts>) -> Standalone {
        self.child = Some((index, shared));
        self
    }

    fn publish(&self, stats: &Stats) {
        if let Some((index, shared)) = &self.child {
            shared.store(*index, stats.counts());
        }
    }

    fn labelled(&self, line: String) -> String {
        match &self.child {
            Some((index, _)) => format!("{line} child={index}"),
            None => line,
        }
    }
}

impl Role for Standalone {
    fn register(&self, epoll: &Epoll) -> io::Result<()> {
        epoll.add(&self.signals, SIGNALS, Interest::READABLE)
    }

    fn on_signals(&mut self, draining: bool, final_line: &dyn Fn() -> String) -> io::Result<bool> {
        let labelled = || self.labelled(final_line());
        read_stop_signals(&self.signals, draining, &labelled, || {}, || {})
    }

    fn on_tick(&mut self, now: Instant, stats: &Stats, line: &dyn Fn() -> String) {
        self.publish(stats);
        if self.stats_clock.due(now) {
            report::emit(&self.labelled(line()));
        }
    }

    fn on_exit(&mut self, stats: &Stats, final_line: String) {
        self.publish(stats);
        report::emit(&self.labelled(final_line));
    }
}

/// One worker loop of a multi-threaded model: its supervisor reads the signals, tells it to
/// stop through its mailbox, and prints the stats.
pub struct UnderSupervisor;

impl Role for UnderSupervisor {}

/// What a model may plug into the loop: somewhere else for costly requests to run. The default
/// methods describe a loop that runs everything inline ([`Inline`]).
pub trait Hook {
    /// Where costly requests run.
    fn costly(&self) -> Costly {
        Costly::Inline
    }

    /// A connection stopped before a costly request: it is out of the loop's epoll set, and
    /// the hook owns it until it comes back through the loop's mailbox.
    fn offload(&mut self, conn: Box<Conn>) {
        drop(conn);
    }

    /// Before each `epoll_wait`: retry what waits, and cap the loop's `sleep` if the hook
    /// needs to come back sooner.
    fn before_wait(&mut self, sleep: Option<Duration>) -> Option<Duration> {
        sleep
    }

    /// A connection came back through the loop's mailbox.
    fn returned(&mut self) {}

    /// Connections away from the loop: the drain waits for them to come back.
    fn away(&self) -> usize {
        0
    }

    /// Counters of the hook's pool, for the stats line.
    fn pool_stats(&self) -> Option<PoolStats> {
        None
    }

    /// The loop is done (drained, or past its deadline): give up work not started, wait for
    /// work in progress, and return the pool's final counters.
    fn finish(self) -> Option<PoolStats>
    where
        Self: Sized,
    {
        None
    }
}

/// The default [`Hook`]: every request runs on the loop's thread.
pub struct Inline;

impl Hook for Inline {}

/// What a loop is given to run.
pub struct Parts<R, H> {
    /// Accept from this listener (`None` for `listener-pool` workers, fed by their mailbox).
    pub gate: Option<AcceptGate>,
    /// Stop requests and handed-over connections.
    pub mailbox: Arc<Mailbox>,
    /// Standalone or under a supervisor.
    pub role: R,
    /// Where costly requests run.
    pub hook: H,
    /// This loop's place in its model's per-worker counts, if it is one worker of several.
    pub worker: Option<WorkerSlot>,
}

/// The worker loops of a multi-loop model: their mailboxes (to stop them, or to hand them
/// connections) and their threads (for the supervisor to join).
pub struct WorkerLoops {
    /// Loop `i`'s mailbox.
    pub mailboxes: Vec<Arc<Mailbox>>,
    /// The loops' threads.
    pub threads: Vec<JoinHandle<()>>,
}

impl WorkerLoops {
    /// Starts one pinned loop per entry of `gates` (`rawloop-loop-<i>`, on core `i`), each under
    /// the supervisor, with slot `i` of `tally` and a mailbox of `inbox_capacity` connections.
    /// A loop with a gate accepts; one without is fed through its mailbox.
    pub fn spawn(
        settings: &Arc<Settings>,
        stats: &Arc<Stats>,
        tally: &Arc<Tally>,
        gates: Vec<Option<AcceptGate>>,
        inbox_capacity: usize,
    ) -> io::Result<WorkerLoops> {
        let mut loops = WorkerLoops {
            mailboxes: Vec::new(),
            threads: Vec::new(),
        };
        for (i, gate) in gates.into_iter().enumerate() {
            let mailbox = Mailbox::new(inbox_capacity)?;
            loops.mailboxes.push(Arc::clone(&mailbox));
            let (settings, stats) = (Arc::clone(settings), Arc::clone(stats));
            let (pin, worker) = (settings.pin, Some(tally.slot(i)));
            let name = names::event_loop(i);
            loops
                .threads
                .push(pool::spawn_pinned(name, i, pin, move || {
                    let parts = Parts {
                        gate,
                        mailbox,
                        role: UnderSupervisor,
                        hook: Inline,
                        worker,
                    };
                    if let Err(e) = run(&settings, &stats, parts) {
                        error!("event loop {i} failed: {e}");
                    }
                })?);
        }
        Ok(loops)
    }

    /// Asks every loop to drain and stop.
    pub fn stop_all(&self) {
        self.mailboxes.iter().for_each(|m| m.request_stop());
    }
}

/// Runs the loop until it has been asked to stop (signal or mailbox) and has drained.
pub fn run<R: Role, H: Hook>(
    settings: &Settings,
    stats: &Stats,
    parts: Parts<R, H>,
) -> io::Result<()> {
    EventLoop::new(settings, stats, parts)?.run()
}

/// A registered connection and the interest epoll has for it now.
struct Entry {
    conn: Conn,
    interest: Interest,
    /// In the ready list: it will be served at the end of this turn, and an event for it in
    /// the meantime is skipped (one turn, one serve).
    queued: bool,
}

struct EventLoop<'a, R, H> {
    settings: &'a Settings,
    stats: &'a Stats,
    epoll: Epoll,
    gate: Option<AcceptGate>,
    mailbox: Arc<Mailbox>,
    role: R,
    hook: H,
    worker: Option<WorkerSlot>,
    tick: Timer,
    conns: Slab<Entry>,
    /// Connections that yielded this turn, served again in the next one.
    ready: Vec<usize>,
    scratch: Scratch,
    drain: Drain,
    /// `--epoll-trigger`: how connections are registered.
    trigger: Trigger,
}

impl<'a, R: Role, H: Hook> EventLoop<'a, R, H> {
    fn new(settings: &'a Settings, stats: &'a Stats, parts: Parts<R, H>) -> io::Result<Self> {
        let epoll = Epoll::new()?;
        if let Some(gate) = &parts.gate {
            gate.register(&epoll)?;
        }
        epoll.add(parts.mailbox.waker(), MAILBOX, Interest::READABLE)?;
        parts.role.register(&epoll)?;
        let tick = Timer::new()?;
        tick.set_interval(TICK_PERIOD)?;
        epoll.add(&tick, TICK, Interest::READABLE)?;
        Ok(EventLoop {
            settings,
            stats,
            epoll,
            gate: parts.gate,
            mailbox: parts.mailbox,
            role: parts.role,
            hook: parts.hook,
            worker: parts.worker,
            tick,
            conns: Slab::new(),
            ready: Vec::new(),
            scratch: Scratch::new(),
            drain: Drain::default(),
            trigger: settings.args.epoll_trigger,
        })
    }

    fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_WAIT);
        loop {
            let yielded = mem::take(&mut self.ready);
            let sleep = match yielded.is_empty() {
                true => self.drain.time_left(),
                false => Some(Duration::ZERO),
            };
            let timeout = self.hook.before_wait(sleep);
            self.epoll.wait(&mut events, timeout)?;
            for event in events.iter() {
                self.on_event(event)?;
            }
            for key in yielded {
                if let Some(entry) = self.conns.get_mut(key) {
                    entry.queued = false;
                    self.serve(key);
                }
            }
            if self.drain.is_draining()
                && ((self.conns.is_empty() && self.hook.away() == 0)
                    || self.drain.is_overdue(Instant::now()))
            {
                return self.finish();
            }
        }
    }

    fn on_event(&mut self, event: Event) -> io::Result<()> {
        match event.token() {
            LISTENER => self.on_listener(),
            MAILBOX => self.on_mailbox()?,
            SIGNALS => self.on_signals()?,
            TICK => self.on_tick(),
            token => {
                if let Some(key) = conn_key(token) {
                    self.on_ready(key, event.is_read_closed());
                }
            }
        }
        Ok(())
    }

    fn on_listener(&mut self) {
        let Some(gate) = &mut self.gate else {
            return;
        };
        let mut accepted = Vec::new();
        gate.on_ready(&self.epoll, self.stats, |stream| accepted.push(stream));
        for stream in accepted {
            if let Some(worker) = &self.worker {
                worker.took_conn();
            }
            let conn = Conn::new(stream, self.settings.args.protocol, &self.settings.limits);
            self.register(conn, Interest::READABLE);
        }
    }

    fn on_mailbox(&mut self) -> io::Result<()> {
        self.mailbox.waker().reset()?;
        while let Some(Arrival { conn, status }) = self.mailbox.receive() {
            self.hook.returned();
            self.welcome(*conn, status);
        }
        if self.mailbox.stop_requested() {
            self.begin_drain();
        }
        Ok(())
    }

    fn on_signals(&mut self) -> io::Result<()> {
        let (settings, stats, gate, hook) = (self.settings, self.stats, &self.gate, &self.hook);
        let final_line = || final_line(settings, stats, gate.as_ref(), hook.pool_stats());
        if self
            .role
            .on_signals(self.drain.is_draining(), &final_line)?
        {
            self.begin_drain();
        }
        Ok(())
    }

    fn on_tick(&mut self) {
        if let Err(e) = self.tick.read() {
            warn!("timerfd read failed: {e}");
        }
        let now = Instant::now();
        self.sweep_expired(now);
        if let Some(gate) = &mut self.gate {
            gate.on_tick(&self.epoll);
        }
        if let Some(worker) = &self.worker {
            worker.publish_msgs(messages_on_this_thread());
        }
        let (settings, stats, gate, hook) = (self.settings, self.stats, &self.gate, &self.hook);
        let line = || stats_line(settings, stats, gate.as_ref(), hook.pool_stats());
        self.role.on_tick(now, stats, &line);
    }

    /// An event for connection `key`: serve it, unless it waits in the ready list.
    /// `read_closed`: the event says the client sent FIN (`EPOLLRDHUP`).
    fn on_ready(&mut self, key: usize, read_closed: bool) {
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        if read_closed {
            entry.conn.peer_closed();
        }
        if !entry.queued {
            self.serve(key);
        }
    }

    fn serve(&mut self, key: usize) {
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        let costly = self.hook.costly();
        let status = entry
            .conn
            .serve(&mut self.scratch, &self.settings.limits, costly, self.stats);
        self.apply(key, status);
    }

    /// Acts on what `serve` returned: re-register if the interest changed, serve again next
    /// turn, hand the connection to the hook, or close it.
    fn apply(&mut self, key: usize, status: Status) {
        match status {
            Status::Wait(interest) => self.set_interest(key, interest),
            // Level-triggered, epoll reports the unread input again; an edge will not come.
            Status::More(interest) if self.trigger == Trigger::Level => {
                self.set_interest(key, interest)
            }
            Status::More(_) | Status::Yield => self.serve_next_turn(key),
            Status::Offload => {
                let Some(entry) = self.conns.remove(key) else {
                    return;
                };
                // Out of the epoll set while away, so no event can arrive for a connection
                // this thread no longer holds.
                let _ = self.epoll.delete(entry.conn.stream());
                self.hook.offload(Box::new(entry.conn));
            }
            Status::Close(_) => self.close(key),
        }
    }

    /// Puts `key` in the ready list: it is served once more at the end of the next turn.
    fn serve_next_turn(&mut self, key: usize) {
        if let Some(entry) = self.conns.get_mut(key) {
            if !entry.queued {
                entry.queued = true;
                self.ready.push(key);
            }
        }
    }

    fn set_interest(&mut self, key: usize, interest: Interest) {
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        if entry.interest == interest {
            return;
        }
        let registration = registration(self.trigger, interest);
        match self
            .epoll
            .modify(entry.conn.stream(), conn_token(key), registration)
        {
            Ok(()) => entry.interest = interest,
            Err(e) => {
                debug!("epoll_ctl(MOD) failed: {e}");
                self.close(key);
            }
        }
    }

    /// A connection handed over by another thread: register it with what it wants. While
    /// draining it starts its lingering close at once.
    fn welcome(&mut self, mut conn: Conn, status: Status) {
        if let Some(deadline) = self.drain.deadline() {
            conn.begin_close(deadline);
        }
        match status {
            Status::Close(_) => self.stats.closed.incr(),
            Status::Offload => self.hook.offload(Box::new(conn)),
            Status::Wait(interest) | Status::More(interest) => {
                if let Some(key) = self.register(conn, interest) {
                    if matches!(status, Status::More(_)) {
                        self.serve_next_turn(key);
                    }
                }
            }
            Status::Yield => {
                if let Some(key) = self.register(conn, Interest::READABLE) {
                    self.serve_next_turn(key);
                }
            }
        }
    }

    fn register(&mut self, conn: Conn, interest: Interest) -> Option<usize> {
        let key = self.conns.next_key();
        let registration = registration(self.trigger, interest);
        if let Err(e) = self.epoll.add(conn.stream(), conn_token(key), registration) {
            warn!("epoll_ctl(ADD) failed: {e}");
            self.stats.closed.incr();
            return None;
        }
        let inserted = self.conns.insert(Entry {
            conn,
            interest,
            queued: false,
        });
        debug_assert_eq!(inserted, key);
        if self.drain.is_draining() {
            // Serve once now: a connection with nothing pending sends its FIN at once.
            self.serve(key);
        }
        Some(key)
    }

    fn close(&mut self, key: usize) {
        // Dropping the Conn closes the socket, which also removes it from the epoll set
        // (epoll(7): a closed descriptor leaves every set it was in, as long as no duplicate
        // of it is open, and we never duplicate connection descriptors).
        if self.conns.remove(key).is_some() {
            self.stats.closed.incr();
        }
    }

    /// Closes connections idle for `--idle-timeout` or lingering past their deadline.
    fn sweep_expired(&mut self, now: Instant) {
        let idle_timeout = self.settings.idle_timeout;
        for key in self.conns.keys() {
            let Some(entry) = self.conns.get(key) else {
                continue;
            };
            if entry
                .conn
                .core()
                .expired(now, idle_timeout, self.stats)
                .is_some()
            {
                self.close(key);
            }
        }
    }

    /// Stops accepting, closes the listener, and lets every connection flush and linger.
    fn begin_drain(&mut self) {
        let Some(deadline) = self.drain.begin(self.settings.drain_timeout) else {
            return;
        };
        if let Some(gate) = self.gate.take() {
            gate.close(&self.epoll);
        }
        for key in self.conns.keys() {
            if let Some(entry) = self.conns.get_mut(key) {
                entry.conn.begin_close(deadline);
            }
            // Serve once now: a connection with nothing pending sends its FIN at once.
            self.serve(key);
        }
    }

    /// Drained or past the deadline: close what is left, stop the hook, print the last line.
    fn finish(mut self) -> io::Result<()> {
        let open = self.conns.len();
        if open > 0 {
            info!("drain deadline passed: closing {open} connections");
        }
        for key in self.conns.keys() {
            self.close(key);
        }
        let pool = self.hook.finish();
        if let Some(worker) = &self.worker {
            worker.publish_msgs(messages_on_this_thread());
        }
        // Connections that came back while the hook was stopping are closed with the mailbox.
        while self.mailbox.receive().is_some() {
            self.stats.closed.incr();
        }
        let line = final_line(self.settings, self.stats, None, pool);
        self.role.on_exit(self.stats, line);
        Ok(())
    }
}

/// `interest` as registered under `trigger`.
fn registration(trigger: Trigger, interest: Interest) -> Interest {
    match trigger {
        Trigger::Level => interest,
        Trigger::Edge => interest.edge(),
    }
}

/// The stats line of this loop now.
fn stats_line(
    settings: &Settings,
    stats: &Stats,
    gate: Option<&AcceptGate>,
    pool: Option<PoolStats>,
) -> String {
    let listener = gate.map(|g| &**g.listener());
    report::line(settings, stats, listener, pool.as_ref())
}

/// The last stats line: every counter, marked `final=1`.
fn final_line(
    settings: &Settings,
    stats: &Stats,
    gate: Option<&AcceptGate>,
    pool: Option<PoolStats>,
) -> String {
    format!("{} final=1", stats_line(settings, stats, gate, pool))
}
