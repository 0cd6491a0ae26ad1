//! `process-per-conn`: accept, then `fork(2)`; a child process serves the one connection.
//!
//! The first design of our second note ("a new process for each client connection"), as
//! inetd and early Apache did it. Isolation is total: a crash or a leak in one child touches no
//! other client. The cost is a `fork` per connection (page tables copied, copy-on-write faults
//! afterwards) and a process per client for the scheduler to juggle.
//!
//! **Why forking a multi-threaded process is dangerous, and how we avoid it.** `fork` copies
//! only the calling thread. Any lock another thread held at that instant (the allocator's, the
//! logger's, stdout's) stays locked forever in the child, which then deadlocks the first time it
//! allocates or logs. POSIX allows only async-signal-safe calls in such a child. So this model
//! keeps its parent strictly single-threaded: accept, fork, reap and signals all run in one
//! epoll loop on the main thread, and [`reactor::process::fork`] refuses outright when the
//! process has more than one thread.
//!
//! **Descriptors.** The child inherits every descriptor of the parent: the listener, the epoll
//! set, and every other child's client socket. It must close all of them, or a sibling's client
//! would never see end-of-file (a socket closes only when its last descriptor does) and a
//! closed listener would keep filling its accept queue. Here the fork happens at the top of the
//! parent loop, which then *returns* in the child, so Rust drops (closes) all of the parent's
//! state before the child serves its connection.
//!
//! **Reaping.** SIGCHLD arrives on the signalfd; the parent calls `waitpid(-1, WNOHANG)` until
//! no child is left to reap (signals coalesce: one SIGCHLD may stand for many exits), so no
//! zombie outlives a loop turn.
//!
//! **Draining.** Children inherit the blocked signal mask, so SIGTERM does not reach them. The
//! parent tells them instead through a socket pair made before the first fork: every child holds
//! one end, only the parent holds the other. At shutdown the parent closes its end, and each
//! child's next check (at least every `POLL_INTERVAL`, see [`crate::conn::blocking`]) reads end-of-file and
//! starts the same lingering close as every other model. The parent closes its copy of each
//! client socket right after the fork, so the child alone decides when the client sees FIN.
//!
//! **Stats.** A child's counters would die with it, so before it exits each child adds what it
//! served to a table in `MAP_SHARED` memory made before the first fork ([`SharedCounts`]); the
//! parent's stats line is its own connection counts plus that table.

use std::collections::HashSet;
use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};
use pool::counters::Counter;
use reactor::process::{self, Fork, Pid};
use reactor::{Epoll, Events, Interest, Signal, Signals, TcpListener, TcpStream, Timer};

use crate::config::Settings;
use crate::conn::blocking::{prepare_blocking, serve_blocking};
use crate::report::{self, StatsClock};
use crate::runtime::accept::AcceptGate;
use crate::runtime::shutdown::{read_stop_signals, Drain};
use crate::runtime::{SIGNALS, TICK, TICK_PERIOD};
use crate::server;
use crate::stats::{SharedCounts, Stats};

/// Runs the single-threaded parent; in each child, serves one connection and exits.
pub fn run(settings: &Settings, signals: Signals) -> io::Result<()> {
    let listener = server::bind(settings, settings.args.bind, false)?;
    server::announce(&listener)?;
    let stats = Stats::new();
    // Made before the first fork, so every child shares it: what children served.
    let served = SharedCounts::new(1)?;
    match Parent::new(settings, &stats, &served, listener, signals)?.run()? {
        Role::Parent => Ok(()),
        Role::Child { stream, drain } => {
            // Everything of the parent is closed by now; only our client's socket is left.
            let _ = process::set_parent_death_signal(Signal::Kill);
            // Counters of our own: the parent's, copied by fork, are not ours to report.
            let own = Stats::default();
            if prepare_blocking(&stream).is_ok() && drain.set_nonblocking(true).is_ok() {
                let deadline = std::cell::Cell::new(None);
                let draining = || {
                    if deadline.get().is_none() && parent_said_stop(&drain) {
                        deadline.set(Some(Instant::now() + settings.drain_timeout));
                    }
                    deadline.get()
                };
                let (protocol, limits) = (settings.args.protocol, &settings.limits);
                let idle = settings.idle_timeout;
                serve_blocking(stream, protocol, limits, idle, &own, draining);
            }
            served.add(0, own.counts());
            process::exit_now(0)
        }
    }
}

/// True once the parent has closed its end of the drain socket pair (end-of-file), or is gone.
fn parent_said_stop(mut drain: &UnixStream) -> bool {
    let mut byte = [0u8; 1];
    !matches!(drain.read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Which side of a `fork` returned from the parent loop.
enum Role {
    Parent,
    Child {
        /// The client to serve.
        stream: TcpStream,
        /// The child's end of the drain socket pair.
        drain: UnixStream,
    },
}

struct Parent<'a> {
    settings: &'a Settings,
    stats: &'a Stats,
    /// What the children served, added by each one as it exits.
    served: &'a SharedCounts,
    epoll: Epoll,
    /// `None` once draining.
    gate: Option<AcceptGate>,
    signals: Signals,
    tick: Timer,
    children: HashSet<Pid>,
    /// The parent's end of the drain pair (closed to tell children to drain) and the end every
    /// child inherits.
    drain_tx: Option<UnixStream>,
    drain_rx: UnixStream,
    drain: Drain,
    stats_clock: StatsClock,
}

impl<'a> Parent<'a> {
    fn new(
        settings: &'a Settings,
        stats: &'a Stats,
        served: &'a SharedCounts,
        listener: TcpListener,
        signals: Signals,
    ) -> io::Result<Self> {
        let epoll = Epoll::new()?;
        let gate = AcceptGate::new(Arc::new(listener), settings.args.max_conns);
        gate.register(&epoll)?;
        epoll.add(&signals, SIGNALS, Interest::READABLE)?;
        let tick = Timer::new()?;
        tick.set_interval(TICK_PERIOD)?;
        epoll.add(&tick, TICK, Interest::READABLE)?;
        let (drain_tx, drain_rx) = UnixStream::pair()?;
        Ok(Parent {
            settings,
            stats,
            served,
            epoll,
            gate: Some(gate),
            signals,
            tick,
            children: HashSet::new(),
            drain_tx: Some(drain_tx),
            drain_rx,
            drain: Drain::default(),
            stats_clock: StatsClock::new(settings.stats_interval),
        })
    }

    fn run(mut self) -> io::Result<Role> {
        let mut events = Events::with_capacity(16);
        let mut accepted = Vec::new();
        loop {
            self.epoll.wait(&mut events, self.drain.time_left())?;
            for event in events.iter() {
                match event.token() {
                    SIGNALS => self.on_signals()?,
                    TICK => self.on_tick(),
                    _ => {
                        if let Some(gate) = &mut self.gate {
                            gate.on_ready(&self.epoll, self.stats, |s| accepted.push(s));
                        }
                    }
                }
            }
            // Fork outside the accept batch: a child must never go on accepting.
            for stream in accepted.drain(..) {
                if let Some(role) = self.fork(stream) {
                    return Ok(role);
                }
            }
            if self.drain.is_draining()
                && (self.children.is_empty() || self.drain.is_overdue(Instant::now()))
            {
                self.kill_all();
                report::emit(&report::final_line(self.line(None)));
                return Ok(Role::Parent);
            }
        }
    }

    /// Forks a child for `stream`. Returns `Some(Role::Child)` in the child.
    fn fork(&mut self, stream: TcpStream) -> Option<Role> {
        match process::fork() {
            // In the child: keep a duplicate of the drain end; returning drops everything
            // else of the parent, including its end of the pair and its listener.
            Ok(Fork::Child) => match self.drain_rx.try_clone() {
                Ok(drain) => Some(Role::Child { stream, drain }),
                Err(_) => process::exit_now(1),
            },
            Ok(Fork::Parent(pid)) => {
                // The child owns the client now; our copy would delay its FIN.
                drop(stream);
                self.children.insert(pid);
                None
            }
            Err(e) => {
                warn!("fork failed, dropping the connection: {e}");
                self.stats.closed.incr();
                None
            }
        }
    }

    fn on_signals(&mut self) -> io::Result<()> {
        let final_line = || report::final_line(self.line(None));
        let children: Vec<Pid> = self.children.iter().copied().collect();
        let mut child_exited = false;
        let begin = read_stop_signals(
            &self.signals,
            self.drain.is_draining(),
            &final_line,
            || child_exited = true,
            || kill(&children),
        )?;
        if child_exited {
            self.reap();
        }
        if begin {
            info!("draining {} children", self.children.len());
            self.begin_drain();
        }
        Ok(())
    }

    fn reap(&mut self) {
        loop {
            match process::reap_any() {
                Ok(Some((pid, status))) => {
                    if self.children.remove(&pid) {
                        self.stats.closed.incr();
                    }
                    log::debug!("child {pid:?} exited: {status:?}");
                }
                Ok(None) => return,
                Err(e) => {
                    warn!("waitpid failed: {e}");
                    return;
                }
            }
        }
    }

    fn on_tick(&mut self) {
        let _ = self.tick.read();
        if let Some(gate) = &mut self.gate {
            gate.on_tick(&self.epoll);
        }
        if self.stats_clock.due(Instant::now()) {
            let listener = self.gate.as_ref().map(|g| &**g.listener());
            report::emit(&self.line(listener));
        }
    }

    fn begin_drain(&mut self) {
        if self.drain.begin(self.settings.drain_timeout).is_none() {
            return;
        }
        if let Some(gate) = self.gate.take() {
            gate.close(&self.epoll);
        }
        // Closing our end of the pair is the message: every child reads end-of-file.
        self.drain_tx = None;
    }

    /// The stats line: the parent's own counts (connections) plus what the children served,
    /// and how many children serve now.
    fn line(&self, listener: Option<&TcpListener>) -> String {
        let counts = self.stats.counts() + self.served.get(0);
        let line = report::line_of(self.settings, counts, listener, None);
        format!("{line} children={}", self.children.len())
    }

    /// SIGKILL whatever is left, then reap it, so no child outlives the parent.
    fn kill_all(&mut self) {
        kill(&self.children.iter().copied().collect::<Vec<_>>());
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.children.is_empty() && Instant::now() < deadline {
            self.reap();
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// SIGKILLs every child in `pids`.
fn kill(pids: &[Pid]) {
    for pid in pids {
        let _ = process::kill(*pid, Signal::Kill);
    }
}
