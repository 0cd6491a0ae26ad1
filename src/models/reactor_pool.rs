//! `reactor-pool`, the flagship: one reactor thread detects readiness, pinned workers do the I/O.
//!
//! ```text
//!             epoll_wait              ring (Vyukov MPMC)          read / echo / write
//!  sockets ──────────────▶ reactor ───────────────────▶ worker 0
//!  (edge-triggered,        thread   notify() → push    worker 1   ... until EAGAIN, then
//!   no re-arm)                      (one wake a batch)            finish(): idle, or again
//! ```
//!
//! This is the card's shape and our second note's "poll + service queue + pool sized to the
//! cores". The reactor owns the epoll set and the listener; it never reads a client socket. For
//! each ready connection it pushes the connection's key into the lock-free ring; a worker pops
//! it and serves the connection ([`Conn::serve`]).
//!
//! **One connection, one worker at a time, no event lost, no re-arm.** Each socket is
//! registered edge-triggered (epoll(7)) for reading, and touched again by `epoll_ctl` only when
//! backpressure starts or ends (writability wanted or not; watching it always would turn every
//! ACK from the client into an event). Who may serve it is decided in user space by its slot's [`RunState`], one
//! atomic per connection (idle, queued, running, notified-while-running; see `pool::RunState`):
//! the reactor pushes a key only when its event moves the connection from idle to queued; an
//! event that arrives while a worker serves it only marks it notified, and the worker, after
//! serving to EAGAIN, serves again if it was notified, else returns it to idle with a
//! compare-and-swap. This is the idea of tokio's `ScheduledIo` and of the kernel workqueue's
//! pending bit, and a loom model in `pool/tests/loom.rs` checks both halves (no double run, no
//! lost notification). The slot's `Mutex` is what makes sharing the `Conn` sound in Rust;
//! thanks to the `RunState` it is never contended, and a worker that finds it locked counts an
//! `overlaps` (it stays 0).
//!
//! `--arm oneshot` keeps the classic alternative for comparison: `EPOLLONESHOT` disarms the
//! socket after each event and the worker re-arms it with `epoll_ctl(EPOLL_CTL_MOD)` after
//! serving (epoll(7), "Q6"), one extra system call per message. The hidden `--no-oneshot`
//! switch drops both protections (level-triggered, every event pushed) so the `overlaps`
//! counter can be watched catching two workers on one connection.
//!
//! **Batched hand-off.** The reactor collects the keys of one `epoll_wait` and hands them over
//! with one `Pool::submit_batch`, which wakes at most one parked worker; a woken worker that
//! sees more jobs and more sleepers wakes the next. No thundering herd, and while every worker
//! is busy a hand-off costs no system call at all. An idle worker spins only while jobs have
//! been arriving quickly (`--spin adaptive`), then parks.
//!
//! **A full ring loses nothing.** Keys the ring refuses stay in the reactor's backlog, in
//! order, and go first on the next turn. The backlog is bounded by the number of connections,
//! because a key is queued only on the idle-to-queued transition.
//!
//! **Fair turns.** A turn that ran out of its read budget or its `WORK` budget puts the
//! connection back at the end of the ring (an edge-triggered socket will not say again that
//! unread input is waiting), so a greedy connection cannot keep a worker to itself.
//!
//! **Closing.** A worker closes a connection it serves. The reactor, on its tick, claims idle
//! connections (`RunState::try_claim`) to close those past `--idle-timeout`; at a drain it
//! starts every connection's lingering close (idle ones it claims and queues; busy ones see the
//! drain deadline at their next turn), and at the drain deadline closes whatever is left.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError, Weak};
use std::time::{Duration, Instant};

use log::{debug, error, warn};
use pool::counters::Counter;
use pool::{Finish, Pool, PoolBuilder, RunState, WorkerContext};
use reactor::{Epoll, Events, Interest, Signals, TcpListener, TcpStream, Timer};

use crate::config::{Arm, Settings};
use crate::conn::{with_scratch, Conn, Costly, Status};
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
            .spin(settings.args.spin.policy())
            .capacity(settings.args.ring_capacity)
            .spawn(move |key: usize, _worker: &WorkerContext| worker_shared.run(key))?,
    );
    let _ = shared.pool.set(Arc::downgrade(&pool));
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
        let listener = Weak::upgrade(&watch);
        let line = report::line(
            &shared.settings,
            &shared.stats,
            listener.as_deref(),
            Some(&pool.stats()),
        );
        format!(
            "{line} overlaps={}",
            shared.overlaps.load(Ordering::Relaxed)
        )
    };
    let stop = || mailbox.request_stop();
    supervise(Supervised::new(
        settings,
        signals,
        &report,
        &stop,
        vec![reactor],
    ))
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

/// How the connections reach the workers: `--arm`, or the hidden teaching switch.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Mode {
    /// Edge-triggered, registered once; the `RunState` decides who serves.
    Edge,
    /// `EPOLLONESHOT`, re-armed by the worker after each turn; the `RunState` too.
    Oneshot,
    /// `--no-oneshot`: level-triggered, every event pushed. Wrong on purpose.
    Racy,
}

/// A connection's place: the `Conn` behind an (uncontended) lock, and who may run it.
struct Slot {
    conn: Mutex<Option<Entry>>,
    run: RunState,
    /// The reactor saw `EPOLLRDHUP` (the client's FIN) for this connection; the next turn
    /// reads to the end of the stream. Set before `notify`, whose Release carries it to the
    /// runner.
    peer_closed: AtomicBool,
}

/// A registered connection and what epoll watches it for now.
struct Entry {
    conn: Conn,
    interest: Interest,
}

/// What the reactor and the workers share.
struct Shared {
    epoll: Epoll,
    slots: Box<[Slot]>,
    /// Keys of empty slots. The reactor pops one per accepted connection; whoever closes a
    /// connection pushes its key back.
    free: Mutex<Vec<usize>>,
    settings: Settings,
    stats: Arc<Stats>,
    mode: Mode,
    /// Turns that found their connection's lock taken: two runners at once. Stays 0.
    overlaps: AtomicU64,
    /// The drain deadline, once the server is stopping: every turn starts a lingering close.
    drain: OnceLock<Instant>,
    /// The pool, for a worker that puts a connection back at the end of the ring.
    pool: OnceLock<Weak<Pool<usize>>>,
}

/// What a worker does after one turn of a connection.
enum After {
    /// Leave it with `finish()`: idle, or serve again if an event came meanwhile.
    Finish,
    /// Put it back at the end of the ring (its budget ran out with input waiting).
    Requeue,
    /// It was closed.
    Closed,
}

impl Shared {
    fn new(settings: &Settings) -> io::Result<Shared> {
        let capacity = settings.args.max_conns;
        let slots = (0..capacity)
            .map(|_| Slot {
                conn: Mutex::new(None),
                run: RunState::closed(),
                peer_closed: AtomicBool::new(false),
            })
            .collect();
        let mode = match (settings.args.no_oneshot, settings.args.arm) {
            (true, _) => Mode::Racy,
            (false, Arm::Edge) => Mode::Edge,
            (false, Arm::Oneshot) => Mode::Oneshot,
        };
        Ok(Shared {
            epoll: Epoll::new()?,
            slots,
            free: Mutex::new((0..capacity).rev().collect()),
            settings: settings.clone(),
            stats: Stats::new(),
            mode,
            overlaps: AtomicU64::new(0),
            drain: OnceLock::new(),
            pool: OnceLock::new(),
        })
    }

    /// `interest` in this mode's registration style.
    fn registration(&self, interest: Interest) -> Interest {
        match self.mode {
            Mode::Edge => interest.edge(),
            Mode::Oneshot => interest.oneshot(),
            Mode::Racy => interest,
        }
    }

    /// A worker's job: own the connection in slot `key` and serve it until it is idle.
    fn run(&self, key: usize) {
        let slot = &self.slots[key];
        if self.mode != Mode::Racy {
            slot.run.start();
        }
        loop {
            match self.turn(key) {
                After::Closed => return,
                After::Requeue if self.requeue(key) => return,
                // The ring refused it: serve it again ourselves rather than lose it.
                After::Requeue => continue,
                After::Finish => {}
            }
            if self.mode == Mode::Racy || slot.run.finish() == Finish::Idle {
                return;
            }
        }
    }

    /// One turn of connection `key`, on the thread that owns it. The slot's lock is released
    /// before the caller's `finish`, so the next owner never waits on it.
    fn turn(&self, key: usize) -> After {
        let mut guard = self.lock_for_turn(key);
        let Some(entry) = guard.as_mut() else {
            return After::Closed;
        };
        if let Some(&deadline) = self.drain.get() {
            entry.conn.begin_close(deadline);
        }
        if self.slots[key].peer_closed.swap(false, Ordering::Relaxed) {
            entry.conn.peer_closed();
        }
        let limits = &self.settings.limits;
        let status = with_scratch(|s| entry.conn.serve(s, limits, Costly::Inline, &self.stats));
        let (interest, after) = match (self.mode, status) {
            (_, Status::Close(_) | Status::Offload) => {
                self.close(key, guard);
                return After::Closed;
            }
            // Edge-triggered: no new edge will announce the input already waiting.
            (Mode::Edge, Status::More(interest)) => (interest, After::Requeue),
            (Mode::Edge, Status::Yield) => (entry.interest, After::Requeue),
            // Re-arming for writability too makes epoll report the socket at once (its send
            // buffer has room): the connection goes to the back of the ring.
            (_, Status::Yield) => (Interest::READABLE | Interest::WRITABLE, After::Finish),
            (_, Status::Wait(interest) | Status::More(interest)) => (interest, After::Finish),
        };
        // Edge-triggered, the registration changes only when backpressure starts or ends
        // (writability wanted or not); one-shot, every turn re-arms.
        if interest != entry.interest || self.mode == Mode::Oneshot {
            let registration = self.registration(interest);
            let stream = entry.conn.stream();
            if let Err(e) = self.epoll.modify(stream, conn_token(key), registration) {
                debug!("re-arm failed: {e}");
                self.close(key, guard);
                return After::Closed;
            }
            entry.interest = interest;
        }
        after
    }

    /// Locks slot `key` for a turn. The `RunState` guarantees nobody else holds it; if
    /// someone does (only possible with `--no-oneshot`), that is an overlap: counted, logged,
    /// then waited for.
    fn lock_for_turn(&self, key: usize) -> MutexGuard<'_, Option<Entry>> {
        match self.slots[key].conn.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {
                self.overlaps.fetch_add(1, Ordering::Relaxed);
                warn!("connection {key} is being served by two workers at once");
                self.lock(key)
            }
        }
    }

    fn lock(&self, key: usize) -> MutexGuard<'_, Option<Entry>> {
        // A panic while serving poisons the lock; the connection inside is still a valid
        // value, and the pool has already counted and logged the panic.
        self.slots[key]
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Puts connection `key`, which we own, at the end of the ring. False if the ring (or the
    /// pool) refused: the caller still owns it.
    fn requeue(&self, key: usize) -> bool {
        let Some(pool) = self.pool.get().and_then(Weak::upgrade) else {
            return false;
        };
        self.slots[key].run.requeue();
        match pool.submit(key) {
            Ok(()) => true,
            Err(_) => {
                self.slots[key].run.start();
                false
            }
        }
    }

    /// Closes the connection we own in slot `key` and frees the slot.
    fn close(&self, key: usize, mut guard: MutexGuard<'_, Option<Entry>>) {
        let conn = guard.take();
        drop(guard);
        self.slots[key].run.close();
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
    /// Keys to hand over: those of this turn's events, then whatever the ring refused.
    backlog: Backlog<usize>,
    drain: Drain,
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
        })
    }

    fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = self.backlog.cap_timeout(self.drain.time_left());
            self.shared.epoll.wait(&mut events, timeout)?;
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.on_listener(),
                    MAILBOX => self.on_mailbox()?,
                    TICK => self.on_tick(),
                    token => {
                        if let Some(key) = conn_key(token) {
                            self.on_ready(key, event.is_read_closed());
                        }
                    }
                }
            }
            // Every ready key of this `epoll_wait` at once: at most one futex wake.
            self.pool.submit_batch(self.backlog.items());
            if self.drain.is_draining()
                && (self.shared.stats.open() == 0 || self.drain.is_overdue(Instant::now()))
            {
                self.close_all();
                return Ok(());
            }
        }
    }

    /// An event for connection `key`: queue it, unless a worker holds or will hold it anyway.
    /// `read_closed`: the event says the client sent FIN (`EPOLLRDHUP`).
    fn on_ready(&mut self, key: usize, read_closed: bool) {
        let slot = &self.shared.slots[key];
        if read_closed {
            slot.peer_closed.store(true, Ordering::Relaxed);
        }
        if self.shared.mode == Mode::Racy || slot.run.notify() {
            self.backlog.queue(key);
        }
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
        if self.mailbox.stop_requested() {
            if let Some(deadline) = self.drain.begin(self.shared.settings.drain_timeout) {
                let _ = self.shared.drain.set(deadline);
                if let Some(gate) = self.gate.take() {
                    gate.close(&self.shared.epoll);
                }
                self.close_gracefully();
            }
        }
        Ok(())
    }

    /// Starts the lingering close of every idle connection: claimed, told, queued, so that a
    /// worker flushes it, sends its FIN and lingers until the client's FIN. Connections that
    /// workers hold or will hold see the drain deadline at their next turn; one that slipped
    /// back to idle in between is caught by the next tick.
    fn close_gracefully(&mut self) {
        let Some(deadline) = self.drain.deadline() else {
            return;
        };
        for (key, slot) in self.shared.slots.iter().enumerate() {
            if slot.run.try_claim() {
                if let Some(entry) = self.shared.lock(key).as_mut() {
                    entry.conn.begin_close(deadline);
                }
                slot.run.requeue();
                self.backlog.queue(key);
            }
        }
    }

    fn on_tick(&mut self) {
        let _ = self.tick.read();
        if let Some(gate) = &mut self.gate {
            gate.on_tick(&self.shared.epoll);
        }
        if self.drain.is_draining() {
            return self.close_gracefully();
        }
        let (now, idle_timeout) = (Instant::now(), self.shared.settings.idle_timeout);
        for (key, slot) in self.shared.slots.iter().enumerate() {
            // Only idle connections: one that a worker holds or will hold is not idle.
            if !slot.run.try_claim() {
                continue;
            }
            let guard = self.shared.lock(key);
            let expired = guard
                .as_ref()
                .and_then(|e| e.conn.core().expired(now, idle_timeout, &self.shared.stats));
            match expired {
                Some(_) => self.shared.close(key, guard),
                None => {
                    drop(guard);
                    if slot.run.finish() == Finish::Again {
                        // An event came while we looked: it is ours to hand over.
                        slot.run.requeue();
                        self.backlog.queue(key);
                    }
                }
            }
        }
    }

    /// The drain deadline passed: close every connection no worker holds; the ones a worker
    /// holds it closes at its next turn, which sees the deadline passed.
    fn close_all(&mut self) {
        let open = self.shared.stats.open();
        if open > 0 {
            warn!("drain deadline passed: closing {open} connections");
        }
        for (key, slot) in self.shared.slots.iter().enumerate() {
            if slot.run.try_claim() {
                let guard = self.shared.lock(key);
                self.shared.close(key, guard);
            }
        }
    }
}

/// Takes a free slot for a new connection and registers it (on the reactor thread, the only
/// one that calls `epoll_wait`, so no event for it can be handled before this returns).
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
    let interest = Interest::READABLE;
    let registration = shared.registration(interest);
    if let Err(e) = shared
        .epoll
        .add(conn.stream(), conn_token(key), registration)
    {
        warn!("epoll_ctl(ADD) failed: {e}");
        shared
            .free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(key);
        shared.stats.closed.incr();
        return;
    }
    *shared.lock(key) = Some(Entry { conn, interest });
    shared.slots[key].run.open();
}
