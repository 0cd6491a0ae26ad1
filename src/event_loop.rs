//! The single-threaded event loop: one epoll set, many connections, everything inline.
//!
//! This is the Node.js model of our design notes, and the building block of four models:
//! `event-loop` runs one of these; `reuseport` runs one per pinned thread, each with its own
//! SO_REUSEPORT listener; `prefork` runs one per process; `listener-pool` runs one per worker,
//! fed with accepted sockets through a ring instead of a listener; and `reactor-offload` runs
//! one with an [`Offload`] pool behind it: when [`Conn::serve`] stops at a costly request, the
//! connection leaves the loop for a worker and comes back through the same inbox ring.
//!
//! One turn of the loop is `epoll_wait(2)`, then for each ready descriptor:
//!
//! | token | what is ready | what we do |
//! |---|---|---|
//! | [`LISTENER`] | the accept queue is not empty | [`accept_batch`], register each socket |
//! | [`CONTROL`] | another thread wrote our eventfd | take sockets from the inbox; stop if asked |
//! | [`SIGNALS`] | SIGINT / SIGTERM (signalfd) | begin the graceful drain; a second one exits |
//! | [`TICK`] | the timerfd expired | idle sweep, un-pause accept, periodic stats |
//! | `CONN_BASE + key` | a client socket | [`Conn::serve`], then re-register if the interest changed |
//!
//! Every descriptor is level-triggered: a connection that hit its read budget, or a listener
//! that hit its accept batch, is simply reported again by the next `epoll_wait`. Edge triggering
//! would save nothing here (we already stop at short reads) and would make "forgot to drain"
//! bugs silent.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use pool::counters::Counter;
use pool::{Pool, PoolBuilder, Ring};
use reactor::{Epoll, Events, Interest, Signals, TcpListener, TcpStream, Timer, Token, Waker};

use crate::accept::{accept_batch, AcceptState};
use crate::config::Settings;
use crate::conn::{Conn, Costly, Scratch, Status};
use crate::report;
use crate::slab::Slab;
use crate::stats::Stats;

/// Token of the listening socket.
pub const LISTENER: Token = Token(0);
/// Token of the [`Control`] eventfd.
pub const CONTROL: Token = Token(1);
/// Token of the signalfd.
pub const SIGNALS: Token = Token(2);
/// Token of the tick timerfd.
pub const TICK: Token = Token(3);
/// Connection tokens start here: token = `CONN_BASE + slab key`.
pub const CONN_BASE: u64 = 16;

/// Prefix of the pool's worker threads: `rawloop-pool-<i>`. Linux keeps 15 bytes of a thread
/// name (`pthread_setname_np(3)`), and `top` and `perf` show only those, so the names are kept
/// short enough to tell the workers apart there.
pub const POOL_THREAD_NAME: &str = "rawloop-pool";

/// How often the loop wakes for housekeeping (idle sweep, accept un-pause, stats).
pub const TICK_PERIOD: Duration = Duration::from_millis(250);

/// Events returned by one `epoll_wait`: enough to amortise the syscall, small enough to stay
/// in cache.
const EVENTS_PER_WAIT: usize = 256;

/// What other threads hand to a loop through its inbox.
pub enum Handoff {
    /// A socket accepted by the listener thread (`listener-pool`).
    Accepted(TcpStream),
    /// A connection coming back from an offload worker, with what it wants next.
    Returned {
        /// Its slab key, kept reserved while it was away.
        key: usize,
        /// The connection itself (boxed: the ring moves a pointer, not the whole state).
        conn: Box<Conn>,
        /// The status the worker's `serve` returned.
        status: Status,
    },
}

/// A way for other threads to reach a loop blocked in `epoll_wait`: set a flag or push to the
/// inbox, then wake the loop's eventfd.
pub struct Control {
    stop: AtomicBool,
    waker: Waker,
    /// Sockets and connections handed to this loop; `None` when nobody hands any.
    inbox: Option<Ring<Handoff>>,
}

impl Control {
    /// A control block; with `inbox_capacity` > 0 it carries a ring of sockets.
    pub fn new(inbox_capacity: usize) -> io::Result<Arc<Control>> {
        Ok(Arc::new(Control {
            stop: AtomicBool::new(false),
            waker: Waker::new()?,
            inbox: (inbox_capacity > 0).then(|| Ring::new(inbox_capacity)),
        }))
    }

    /// Asks the loop to drain and stop.
    pub fn request_stop(&self) {
        // Release pairs with the Acquire load in the loop: nothing else is published through
        // this flag, but it keeps the reasoning simple.
        self.stop.store(true, Ordering::Release);
        self.wake();
    }

    /// Hands something to the loop. `Err` gives it back when the inbox is full (or absent).
    pub fn send(&self, handoff: Handoff) -> Result<(), Handoff> {
        match &self.inbox {
            Some(inbox) => inbox.try_push(handoff)?,
            None => return Err(handoff),
        }
        self.wake();
        Ok(())
    }

    /// True once [`request_stop`](Control::request_stop) was called.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// The eventfd, for threads that run their own epoll set (the listener thread).
    pub fn waker(&self) -> &Waker {
        &self.waker
    }

    fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            warn!("eventfd write failed: {e}");
        }
    }
}

/// What a loop is given to run.
pub struct LoopParts {
    /// Accept from this listener (all models but `listener-pool` workers).
    pub listener: Option<Arc<TcpListener>>,
    /// Stop flag, wakeup and inbox.
    pub control: Arc<Control>,
    /// When the loop is the only thread of its process, it owns the signals too.
    pub signals: Option<Signals>,
    /// Print stats lines (the loop is the whole server: `event-loop`, a `prefork` child).
    pub print_stats: bool,
    /// Workers for costly requests (`reactor-offload`).
    pub offload: Option<Offload>,
}

/// The pool behind `reactor-offload`'s loop.
pub struct Offload {
    pool: Pool<OffloadJob>,
    /// Jobs the full ring refused, retried on every turn: a connection is never dropped.
    backlog: VecDeque<OffloadJob>,
}

struct OffloadJob {
    key: usize,
    conn: Box<Conn>,
}

impl Offload {
    /// Starts the pinned workers. Each serves the connection it is given (running the costly
    /// request and whatever follows, until the socket would block) and sends it back.
    pub fn spawn(
        settings: &Settings,
        workers: usize,
        stats: &Arc<Stats>,
        control: &Arc<Control>,
    ) -> io::Result<Offload> {
        let (limits, stats, control) = (settings.limits, Arc::clone(stats), Arc::clone(control));
        let pool = PoolBuilder::new()
            .workers(workers)
            .name(POOL_THREAD_NAME)
            .pin(settings.pin)
            .capacity(settings.args.ring_capacity)
            .spawn(move |job: OffloadJob, _worker: &pool::WorkerContext| {
                let OffloadJob { key, mut conn } = job;
                let status =
                    with_scratch(|scratch| conn.serve(scratch, &limits, Costly::Inline, &stats));
                let mut handoff = Handoff::Returned { key, conn, status };
                // The inbox holds every connection that can be away at once, so this only
                // waits if that sizing is broken; waiting is still better than losing a client.
                while let Err(back) = control.send(handoff) {
                    handoff = back;
                    std::thread::yield_now();
                }
            })?;
        Ok(Offload {
            pool,
            backlog: VecDeque::new(),
        })
    }

    fn submit(&mut self, job: OffloadJob) {
        if let Err(job) = self.pool.submit(job) {
            self.backlog.push_back(job);
        }
    }

    fn retry_backlog(&mut self) {
        while let Some(job) = self.backlog.pop_front() {
            if let Err(job) = self.pool.submit(job) {
                self.backlog.push_front(job);
                break;
            }
        }
    }
}

/// Runs `f` with this thread's scratch buffers (one set per worker thread, allocated once).
pub fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    thread_local! {
        static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::new());
    }
    SCRATCH.with(|scratch| f(&mut scratch.borrow_mut()))
}

/// Runs the loop until it has been asked to stop (signal or [`Control`]) and has drained.
pub fn run(settings: &Settings, stats: &Stats, parts: LoopParts) -> io::Result<()> {
    EventLoop::new(settings, stats, parts)?.run()
}

/// A slab entry. `conn` is `None` while the connection is away at an offload worker: its key
/// stays reserved and its descriptor is out of the epoll set until it comes back.
struct Entry {
    conn: Option<Conn>,
    interest: Interest,
}

struct EventLoop<'a> {
    settings: &'a Settings,
    stats: &'a Stats,
    epoll: Epoll,
    listener: Option<Arc<TcpListener>>,
    accept_paused: bool,
    control: Arc<Control>,
    signals: Option<Signals>,
    tick: Timer,
    conns: Slab<Entry>,
    scratch: Scratch,
    print_stats: bool,
    last_stats: Instant,
    drain_deadline: Option<Instant>,
    offload: Option<Offload>,
}

impl<'a> EventLoop<'a> {
    fn new(settings: &'a Settings, stats: &'a Stats, parts: LoopParts) -> io::Result<Self> {
        let epoll = Epoll::new()?;
        if let Some(listener) = &parts.listener {
            epoll.add(listener.as_ref(), LISTENER, Interest::READABLE)?;
        }
        epoll.add(&parts.control.waker, CONTROL, Interest::READABLE)?;
        if let Some(signals) = &parts.signals {
            epoll.add(signals, SIGNALS, Interest::READABLE)?;
        }
        let tick = Timer::new()?;
        tick.set_interval(TICK_PERIOD)?;
        epoll.add(&tick, TICK, Interest::READABLE)?;
        Ok(EventLoop {
            settings,
            stats,
            epoll,
            listener: parts.listener,
            accept_paused: false,
            control: parts.control,
            signals: parts.signals,
            tick,
            conns: Slab::new(),
            scratch: Scratch::new(),
            print_stats: parts.print_stats,
            last_stats: Instant::now(),
            drain_deadline: None,
            offload: parts.offload,
        })
    }

    fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_WAIT);
        loop {
            let mut timeout = self
                .drain_deadline
                .map(|d| d.saturating_duration_since(Instant::now()));
            if let Some(offload) = &mut self.offload {
                offload.retry_backlog();
                if !offload.backlog.is_empty() {
                    // The ring was full: come back soon to retry instead of sleeping.
                    timeout = Some(Duration::from_millis(1));
                }
            }
            self.epoll.wait(&mut events, timeout)?;
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.on_listener(),
                    CONTROL => self.on_control()?,
                    SIGNALS => self.on_signals()?,
                    TICK => self.on_tick(),
                    Token(t) => self.on_conn((t - CONN_BASE) as usize),
                }
            }
            if let Some(deadline) = self.drain_deadline {
                if self.conns.is_empty() || Instant::now() >= deadline {
                    self.close_all();
                    // Final counters, read once every worker has been joined.
                    let pool = self.offload.take().map(|offload| offload.pool.shutdown());
                    if self.print_stats {
                        report::print_final(self.settings, self.stats, None, pool.as_ref());
                    }
                    return Ok(());
                }
            }
        }
    }

    fn on_listener(&mut self) {
        let Some(listener) = self.listener.clone() else {
            return;
        };
        let max = self.settings.args.max_conns;
        let state = accept_batch(&listener, self.stats, max, |stream| self.register(stream));
        if state == AcceptState::Pause && !self.accept_paused {
            // Out of descriptors: stop watching the listener until the next tick.
            self.accept_paused = self.epoll.delete(listener.as_ref()).is_ok();
        }
    }

    fn on_control(&mut self) -> io::Result<()> {
        self.control.waker.reset()?;
        let control = Arc::clone(&self.control);
        if let Some(inbox) = &control.inbox {
            while let Some(handoff) = inbox.try_pop() {
                match handoff {
                    Handoff::Accepted(stream) => self.register(stream),
                    Handoff::Returned { key, conn, status } => {
                        self.welcome_back(key, *conn, status)
                    }
                }
            }
        }
        if control.stop.load(Ordering::Acquire) {
            self.begin_drain();
        }
        Ok(())
    }

    fn on_signals(&mut self) -> io::Result<()> {
        let Some(signals) = self.signals.take() else {
            return Ok(());
        };
        let result = self.read_signals(&signals);
        self.signals = Some(signals);
        result
    }

    fn read_signals(&mut self, signals: &Signals) -> io::Result<()> {
        while let Some(signal) = signals.read()? {
            if self.drain_deadline.is_some() {
                warn!("second {signal:?}: exiting without draining");
                let pool = self.offload.as_ref().map(|o| o.pool.stats());
                report::print_final(self.settings, self.stats, None, pool.as_ref());
                std::process::exit(0);
            }
            info!("{signal:?}: draining");
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
        if self.accept_paused {
            if let Some(listener) = &self.listener {
                self.accept_paused = self
                    .epoll
                    .add(listener.as_ref(), LISTENER, Interest::READABLE)
                    .is_err();
            }
        }
        if let (true, Some(every)) = (self.print_stats, self.settings.stats_interval) {
            if now.duration_since(self.last_stats) >= every {
                self.last_stats = now;
                let pool = self.offload.as_ref().map(|o| o.pool.stats());
                let listener = self.listener.as_deref();
                println!(
                    "{}",
                    report::line(self.settings, self.stats, listener, pool.as_ref())
                );
            }
        }
    }

    fn on_conn(&mut self, key: usize) {
        let Some(Entry {
            conn: Some(conn), ..
        }) = self.conns.get_mut(key)
        else {
            return;
        };
        let costly = if self.offload.is_some() {
            Costly::Defer
        } else {
            Costly::Inline
        };
        let status = conn.serve(&mut self.scratch, &self.settings.limits, costly, self.stats);
        self.apply(key, status);
    }

    /// Acts on what `serve` returned: re-register if the interest changed, hand the
    /// connection to a worker, or close it.
    fn apply(&mut self, key: usize, status: Status) {
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        let Some(conn) = &entry.conn else { return };
        let token = Token(CONN_BASE + key as u64);
        match status {
            Status::Wait(interest) if interest == entry.interest => {}
            Status::Wait(interest) => match self.epoll.modify(conn.stream(), token, interest) {
                Ok(()) => entry.interest = interest,
                Err(e) => {
                    debug!("epoll_ctl(MOD) failed: {e}");
                    self.close(key);
                }
            },
            Status::Offload => {
                // Out of the epoll set while away, so no event can arrive for a connection
                // this thread no longer holds.
                let conn = entry.conn.take().expect("checked above");
                let _ = self.epoll.delete(conn.stream());
                match &mut self.offload {
                    Some(offload) => offload.submit(OffloadJob {
                        key,
                        conn: Box::new(conn),
                    }),
                    None => self.close(key),
                }
            }
            Status::Close(_) => self.close(key),
        }
    }

    /// A connection is back from an offload worker: re-register it with what it wants.
    fn welcome_back(&mut self, key: usize, mut conn: Conn, status: Status) {
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        if matches!(status, Status::Close(_)) {
            self.close(key);
            return;
        }
        let token = Token(CONN_BASE + key as u64);
        let draining = self.drain_deadline.is_some();
        if let Some(deadline) = self.drain_deadline {
            conn.begin_close(deadline);
        }
        let interest = match status {
            Status::Wait(interest) => interest,
            _ => Interest::READABLE,
        };
        let added = self.epoll.add(conn.stream(), token, interest);
        entry.conn = Some(conn);
        entry.interest = interest;
        if let Err(e) = added {
            debug!("epoll_ctl(ADD) failed: {e}");
            self.close(key);
        } else if draining {
            self.on_conn(key);
        }
    }

    fn register(&mut self, stream: TcpStream) {
        if self.drain_deadline.is_some() {
            // Handed over after we began draining: close it, it was never served.
            self.stats.closed.incr();
            return;
        }
        let token = Token(CONN_BASE + self.conns.next_key() as u64);
        if let Err(e) = self.epoll.add(&stream, token, Interest::READABLE) {
            warn!("epoll_ctl(ADD) failed: {e}");
            self.stats.closed.incr();
            return;
        }
        let conn = Conn::new(stream, self.settings.args.protocol, &self.settings.limits);
        let key = self.conns.insert(Entry {
            conn: Some(conn),
            interest: Interest::READABLE,
        });
        debug_assert_eq!(Token(CONN_BASE + key as u64), token);
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
            let Some(conn) = self.conns.get_mut(key).and_then(|e| e.conn.as_ref()) else {
                continue;
            };
            if conn.expired(now, idle_timeout) {
                if idle_timeout.is_some_and(|t| conn.idle_for(now) >= t) {
                    debug!("closing connection idle for {:?}", conn.idle_for(now));
                    self.stats.idle_closed.incr();
                }
                self.close(key);
            }
        }
    }

    /// Stop accepting, close the listener, and let every connection flush and linger.
    fn begin_drain(&mut self) {
        if self.drain_deadline.is_some() {
            return;
        }
        let deadline = Instant::now() + self.settings.drain_timeout;
        self.drain_deadline = Some(deadline);
        if let Some(listener) = self.listener.take() {
            let _ = self.epoll.delete(listener.as_ref());
        }
        for key in self.conns.keys() {
            if let Some(conn) = self.conns.get_mut(key).and_then(|e| e.conn.as_mut()) {
                conn.begin_close(deadline);
            }
            // Serve once now: a connection with nothing pending sends its FIN at once.
            self.on_conn(key);
        }
    }

    fn close_all(&mut self) {
        let open = self.conns.len();
        if open > 0 {
            info!("drain deadline passed: closing {open} connections");
        }
        for key in self.conns.keys() {
            self.close(key);
        }
    }
}
