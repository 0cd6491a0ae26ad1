//! `reactor-pool`, the flagship: one reactor thread detects readiness, pinned workers do the I/O.
//!
//! ```text
//!             epoll_wait                ring (Vyukov MPMC)            read / echo / write
//!  sockets ──────────────▶ reactor ──────────────────────▶ worker 0 ─┐
//!     ▲                    thread   push(key)      pop     worker 1 ─┤ epoll_ctl(MOD, ONESHOT)
//!     └──────────────────────────────────────────────────────────────┘   re-arms the socket
//! ```
//!
//! This is the card's shape and our second note's "poll + service queue + pool sized to the
//! cores". The reactor owns the epoll set and the listener; it never reads a client socket.
//! For each ready connection it pushes the connection's key into the lock-free ring; a worker
//! pops it, serves the connection ([`Conn::serve`]), and re-arms it.
//!
//! **One connection, one worker at a time.** Every connection is registered with
//! `EPOLLONESHOT`: after one event, epoll disables it until `epoll_ctl(EPOLL_CTL_MOD)` re-arms it
//! (epoll(7), "Q: ... EPOLLONESHOT"). Only the worker holding the event re-arms, after serving,
//! so no second event for the same connection can exist while one is being handled. The reactor
//! checks this: it marks a slot `dispatched` when it pushes the key and the worker clears it
//! just before re-arming; a second dispatch of a slot still marked is counted in `overlaps`
//! (and logged). It stays 0; the hidden `--no-oneshot` flag drops `EPOLLONESHOT` to show the
//! counter catching the bug. The slot's `Mutex` is what makes sharing the `Conn` sound in Rust;
//! thanks to ONESHOT it is uncontended.
//!
//! **A full ring loses nothing.** `Pool::submit` never blocks; when the ring is full the reactor
//! keeps the key in a local backlog and retries on its next turn. The backlog is bounded by the
//! number of connections, because ONESHOT allows at most one outstanding event per connection.
//!
//! **Closing.** Workers close connections (they hold the event). The reactor ends a connection
//! early (idle timeout) by shutting its socket down, which makes the socket ready; the worker
//! that gets the event then sees end-of-file or an error and closes it. At a drain it starts
//! every connection's lingering close, and at the drain deadline it closes whatever is left
//! itself.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use log::{debug, error, warn};
use pool::counters::Counter;
use pool::{Pool, PoolBuilder, WorkerContext};
use reactor::{Epoll, Events, Interest, Signals, TcpListener, TcpStream, Timer};

use crate::config::Settings;
use crate::conn::{with_scratch, Conn, Costly, Expiry, Status};
use crate::runtime::accept::AcceptGate;
use crate::runtime::backlog::Backlog;
use crate::runtime::mailbox::Mailbox;
use crate::runtime::shutdown::Drain;
use crate::runtime::supervisor::{supervise, Supervised};
use crate::runtime::{conn_key, conn_token, names, LISTENER, MAILBOX, TICK, TICK_PERIOD};
use crate::stats::Stats;
use crate::{report, server};

/// Runs the reactor thread and the pool, supervised.
pub fn run(settings: &Settings, signals: Signals) -> io::Result<()> {
    let listener = Arc::new(server::bind(settings, settings.args.bind, false)?);
    server::announce(&listener)?;
    let shared = Arc::new(Shared::new(settings)?);
    let worker_shared = Arc::clone(&shared);
    let pool = Arc::new(
        PoolBuilder::new()
            .workers(settings.workers)
            .name(names::POOL)
            .pin(settings.pin)
            // A short spin: in a ping-pong the next job rarely comes within a few µs, and a
            // long spin burns more CPU per message than the futex wake it saves (measured:
            // 256 spins cost ~15 µs of server CPU per message here, 32 spins ~12.5 µs).
            .spin_limit(32)
            .capacity(settings.args.ring_capacity)
            .spawn(move |key: usize, _worker: &WorkerContext| worker_shared.serve(key))?,
    );
    let mailbox = Mailbox::stop_only()?;
    let watch = Arc::downgrade(&listener);
    let reactor = {
        let (shared, pool, mailbox) =
            (Arc::clone(&shared), Arc::clone(&pool), Arc::clone(&mailbox));
        std::thread::Builder::new()
            .name(names::REACTOR.into())
            .spawn(move || {
                if let Err(e) =
                    Reactor::new(&shared, listener, &mailbox, &pool).and_then(Reactor::run)
                {
                    error!("reactor failed: {e}");
                }
                wait_until_idle(&pool);
            })?
    };
    let report = || {
        let line = report::line(
            &shared.settings,
            &shared.stats,
            Weak::upgrade(&watch).as_deref(),
            Some(&pool.stats()),
        );
        format!(
            "{line} overlaps={}",
            shared.overlaps.load(Ordering::Relaxed)
        )
    };
    let stop = || mailbox.request_stop();
    supervise(Supervised {
        signals,
        stats_interval: settings.stats_interval,
        drain_timeout: settings.drain_timeout,
        report: &report,
        stop: &stop,
        threads: vec![reactor],
    })
}

/// Waits (a second at most) until every worker is parked on an empty ring: then no job is
/// running or queued, and the final stats line counts every job that ran.
fn wait_until_idle(pool: &Pool<usize>) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        let stats = pool.stats();
        if stats.sleeping == pool.workers() && stats.ring_len == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A connection's place: the `Conn` behind an (uncontended) lock, and the dispatch mark.
struct Slot {
    conn: Mutex<Option<Conn>>,
    /// Set by the reactor when it pushes this slot's key, cleared by the worker just before it
    /// re-arms. Finding it already set at dispatch means two events were outstanding.
    dispatched: AtomicBool,
}

/// What the reactor and the workers share.
struct Shared {
    epoll: Epoll,
    slots: Box<[Slot]>,
    /// Keys of empty slots. The reactor pops one per accepted connection; the worker that
    /// closes a connection pushes its key back.
    free: Mutex<Vec<usize>>,
    settings: Settings,
    stats: Arc<Stats>,
    oneshot: bool,
    overlaps: AtomicU64,
}

impl Shared {
    fn new(settings: &Settings) -> io::Result<Shared> {
        let capacity = settings.args.max_conns;
        let slots = (0..capacity)
            .map(|_| Slot {
                conn: Mutex::new(None),
                dispatched: AtomicBool::new(false),
            })
            .collect();
        Ok(Shared {
            epoll: Epoll::new()?,
            slots,
            free: Mutex::new((0..capacity).rev().collect()),
            settings: settings.clone(),
            stats: Stats::new(),
            oneshot: !settings.args.no_oneshot,
            overlaps: AtomicU64::new(0),
        })
    }

    fn interest(&self, interest: Interest) -> Interest {
        if self.oneshot {
            interest.oneshot()
        } else {
            interest
        }
    }

    fn lock(&self, key: usize) -> MutexGuard<'_, Option<Conn>> {
        // A panic while serving poisons the lock; the connection inside is still a valid
        // value, and the pool has already counted and logged the panic.
        self.slots[key]
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A worker's job: serve the connection in slot `key`, then re-arm or close it.
    fn serve(&self, key: usize) {
        let mut guard = self.lock(key);
        let Some(conn) = guard.as_mut() else { return };
        let limits = &self.settings.limits;
        let status =
            with_scratch(|scratch| conn.serve(scratch, limits, Costly::Inline, &self.stats));
        let interest = match status {
            Status::Wait(interest) => interest,
            // Input set aside by the turn's budget: re-arming for writability too makes epoll
            // report the socket at once (its send buffer has room), so the connection goes to
            // the back of the ring and the other connections get their turn first.
            Status::Yield => Interest::READABLE | Interest::WRITABLE,
            Status::Close(_) | Status::Offload => return self.close(key, guard),
        };
        // Clear the mark before re-arming: the next event can only come after it.
        self.slots[key].dispatched.store(false, Ordering::Release);
        if let Err(e) = self
            .epoll
            .modify(conn.stream(), conn_token(key), self.interest(interest))
        {
            debug!("re-arm failed: {e}");
            self.close(key, guard);
        }
    }

    fn close(&self, key: usize, mut guard: MutexGuard<'_, Option<Conn>>) {
        let conn = guard.take();
        self.slots[key].dispatched.store(false, Ordering::Release);
        drop(guard);
        // Dropping the Conn closes the socket and takes it out of the epoll set; only then may
        // the key be reused.
        if conn.is_some() {
            drop(conn);
            self.free
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(key);
            self.stats.closed.incr();
        }
    }
}

/// The reactor thread's state.
struct Reactor<'a> {
    shared: &'a Shared,
    /// `None` once draining.
    gate: Option<AcceptGate>,
    mailbox: &'a Mailbox,
    pool: &'a Pool<usize>,
    tick: Timer,
    backlog: Backlog<usize>,
    drain: Drain,
    /// A stop was requested during this batch of events; the connections are told after the
    /// batch, when no event of the batch is still waiting to be dispatched.
    drain_pending: bool,
}

impl<'a> Reactor<'a> {
    fn new(
        shared: &'a Shared,
        listener: Arc<TcpListener>,
        mailbox: &'a Mailbox,
        pool: &'a Pool<usize>,
    ) -> io::Result<Self> {
        let gate = AcceptGate::new(listener, shared.settings.args.max_conns);
        gate.register(&shared.epoll)?;
        shared
            .epoll
            .add(mailbox.waker(), MAILBOX, Interest::READABLE)?;
        let tick = Timer::new()?;
        tick.set_interval(TICK_PERIOD)?;
        shared.epoll.add(&tick, TICK, Interest::READABLE)?;
        Ok(Reactor {
            shared,
            gate: Some(gate),
            mailbox,
            pool,
            tick,
            backlog: Backlog::new(),
            drain: Drain::default(),
            drain_pending: false,
        })
    }

    fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            self.backlog.retry(|key| self.pool.submit(key));
            let timeout = self.backlog.cap_timeout(self.drain.time_left());
            self.shared.epoll.wait(&mut events, timeout)?;
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.on_listener(),
                    MAILBOX => self.on_mailbox()?,
                    TICK => self.on_tick(),
                    token => {
                        if let Some(key) = conn_key(token) {
                            self.dispatch(key);
                        }
                    }
                }
            }
            if std::mem::take(&mut self.drain_pending) {
                self.close_gracefully();
            }
            if self.drain.is_draining()
                && (self.shared.stats.open() == 0 || self.drain.is_overdue(Instant::now()))
            {
                self.close_all();
                return Ok(());
            }
        }
    }

    fn dispatch(&mut self, key: usize) {
        if self.shared.slots[key]
            .dispatched
            .swap(true, Ordering::AcqRel)
        {
            self.shared.overlaps.fetch_add(1, Ordering::Relaxed);
            warn!("connection {key} got a second event while a worker holds the first");
        }
        self.backlog.push(key, |key| self.pool.submit(key));
    }

    fn on_listener(&mut self) {
        let Some(gate) = &mut self.gate else {
            return;
        };
        let shared = self.shared;
        gate.on_ready(&shared.epoll, &shared.stats, |stream| {
            register(shared, stream)
        });
    }

    fn on_mailbox(&mut self) -> io::Result<()> {
        self.mailbox.waker().reset()?;
        if self.mailbox.stop_requested()
            && self
                .drain
                .begin(self.shared.settings.drain_timeout)
                .is_some()
        {
            self.drain_pending = true;
            if let Some(gate) = self.gate.take() {
                gate.close(&self.shared.epoll);
            }
        }
        Ok(())
    }

    /// Starts the lingering close of every connection. One that no worker holds has no event
    /// coming, so it is re-armed for writability too, which fires at once: a worker then flushes
    /// it, sends its FIN and lingers until the client's FIN.
    fn close_gracefully(&mut self) {
        let Some(deadline) = self.drain.deadline() else {
            return;
        };
        let shared = self.shared;
        for (key, slot) in shared.slots.iter().enumerate() {
            let mut guard = shared.lock(key);
            let Some(conn) = guard.as_mut() else { continue };
            conn.begin_close(deadline);
            if !slot.dispatched.load(Ordering::Acquire) {
                let interest = shared.interest(Interest::READABLE | Interest::WRITABLE);
                if let Err(e) = shared
                    .epoll
                    .modify(conn.stream(), conn_token(key), interest)
                {
                    debug!("re-arm for drain failed: {e}");
                }
            }
        }
    }

    fn on_tick(&mut self) {
        let _ = self.tick.read();
        if let Some(gate) = &mut self.gate {
            gate.on_tick(&self.shared.epoll);
        }
        let (now, idle_timeout) = (Instant::now(), self.shared.settings.idle_timeout);
        let stats = &self.shared.stats;
        // A connection being served right now is not idle: skip it rather than wait. An
        // expired one is shut down; the worker that gets its event closes it.
        self.for_each_conn(|conn| {
            if let Some(why) = conn.core().expired(now, idle_timeout) {
                if conn.abort() && why == Expiry::Idle {
                    stats.idle_closed.incr();
                }
            }
        });
    }

    /// Visits every open connection that no worker is serving right now.
    fn for_each_conn(&self, mut f: impl FnMut(&mut Conn)) {
        for slot in self.shared.slots.iter() {
            if let Ok(mut guard) = slot.conn.try_lock() {
                if let Some(conn) = guard.as_mut() {
                    f(conn);
                }
            }
        }
    }

    fn close_all(&mut self) {
        let open = self.shared.stats.open();
        if open > 0 {
            warn!("drain deadline passed: closing {open} connections");
        }
        for key in 0..self.shared.slots.len() {
            let guard = self.shared.lock(key);
            if guard.is_some() {
                self.shared.close(key, guard);
            }
        }
    }
}

/// Takes a free slot for a new connection and registers it (on the reactor thread).
fn register(shared: &Shared, stream: TcpStream) {
    let Some(key) = shared.free.lock().unwrap_or_else(|p| p.into_inner()).pop() else {
        shared.stats.refused.incr();
        shared.stats.closed.incr();
        return;
    };
    let conn = Conn::new(
        stream,
        shared.settings.args.protocol,
        &shared.settings.limits,
    );
    let mut slot = shared.lock(key);
    let interest = shared.interest(Interest::READABLE);
    match shared.epoll.add(conn.stream(), conn_token(key), interest) {
        Ok(()) => *slot = Some(conn),
        Err(e) => {
            warn!("epoll_ctl(ADD) failed: {e}");
            drop(slot);
            shared
                .free
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(key);
            shared.stats.closed.incr();
        }
    }
}
