//! `prefork`: N single-threaded processes, each an event loop on its own SO_REUSEPORT listener.
//!
//! Our first note's "many single-threaded instances" without the containers: each child is a
//! complete `event-loop` server (the shared [`event_loop`] as a standalone), and the kernel spreads connections over their listeners by
//! SO_REUSEPORT hashing. Processes share nothing, not even an address space, so a crash takes
//! down one child's connections only. The parent does not serve: it forks the children, forwards
//! SIGINT/SIGTERM to them, restarts a child that dies, and exits 0 once all are gone after a stop.
//!
//! The parent binds all N listeners before forking (so the port is known, and printed, before
//! any child runs), gives each child its own, and closes its copies right after each fork: a
//! listener left open in the parent would stay in the SO_REUSEPORT group and receive a share of
//! the connections that nobody would ever accept. The parent stays single-threaded, which is
//! what makes `fork` safe (see `process_per_conn`).
//!
//! **Stats.** Each child prints its own lines, labelled `child=<i>`, and stores its counts in
//! slot `i` of a table in `MAP_SHARED` memory made before the first fork ([`SharedCounts`]) on
//! every tick and at exit; the parent prints the total, last. A child killed by SIGKILL cannot
//! publish at its end, so the total misses what it served since its last tick (250 ms).
//!
//! A child does not reuse the parent's signalfd: signalfd(2) notes that epoll readiness of an
//! inherited signalfd follows the process that registered it, so the child drops it and opens
//! its own (the blocked mask itself is inherited, so nothing slips through in between).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use log::{error, info, warn};
use reactor::process::{self, Fork, Pid};
use reactor::{Epoll, Events, Interest, Signal, Signals, TcpListener, Timer};

use crate::config::Settings;
use crate::runtime::accept::AcceptGate;
use crate::runtime::event_loop::{self, Inline, Parts, Standalone};
use crate::runtime::mailbox::Mailbox;
use crate::runtime::{SIGNALS, TICK};
use crate::stats::{Counts, SharedCounts, Stats};
use crate::{report, server};

/// Runs the parent; in each child, runs an event loop and exits.
pub fn run(settings: &Settings, signals: Signals) -> io::Result<()> {
    let listeners = server::bind_group(settings, settings.workers)?;
    let addr = server::announce(&listeners[0])?;
    let mut parent = Parent {
        settings,
        addr,
        signals,
        children: HashMap::new(),
        stopping: false,
        // One slot per child, and one for what children that died had served.
        counts: Arc::new(SharedCounts::new(settings.workers + 1)?),
    };
    let listeners = listeners.into_iter().enumerate().collect::<Vec<_>>();
    if let Some(child) = parent.start(listeners)? {
        return serve_child(settings, parent, child);
    }
    match parent.supervise()? {
        None => Ok(()),
        Some(child) => serve_child(settings, parent, child),
    }
}

/// In a freshly forked child: drop the parent's state, run one event loop, exit.
fn serve_child(
    settings: &Settings,
    parent: Parent<'_>,
    child: (usize, Arc<TcpListener>),
) -> io::Result<()> {
    let counts = Arc::clone(&parent.counts);
    drop(parent); // closes the inherited signalfd (and nothing else is open)
    let _ = process::set_parent_death_signal(Signal::Kill);
    let (index, listener) = child;
    if settings.pin {
        // One child per core, like `reuseport`'s threads: with `--reuseport-steer cpu` the
        // child of CPU `i` owns listener `i`, so a connection never changes core.
        pool::pin_current_thread(index);
    }
    let signals = Signals::new(&[Signal::Interrupt, Signal::Terminate])?;
    let parts = Parts {
        gate: Some(AcceptGate::new(listener, settings.args.max_conns)),
        mailbox: Mailbox::stop_only()?,
        role: Standalone::new(signals, settings.stats_interval).child(index, counts),
        hook: Inline,
        worker: None,
    };
    // Counters of our own: the parent's memory, copied by fork, holds none worth keeping.
    let code = match event_loop::run(settings, &Stats::new(), parts) {
        Ok(()) => 0,
        Err(e) => {
            error!("prefork child {index} failed: {e}");
            1
        }
    };
    process::exit_now(code)
}

struct Parent<'a> {
    settings: &'a Settings,
    addr: SocketAddr,
    signals: Signals,
    /// Live children and the listener index each serves.
    children: HashMap<Pid, usize>,
    stopping: bool,
    /// Slot `i`: the running counts of child `i`, stored by the child on every tick; slot
    /// `workers`: what children that died had served. Shared with the children (`MAP_SHARED`).
    counts: Arc<SharedCounts>,
}

impl Parent<'_> {
    /// Forks one child per listener. Returns `Some` in a child, with its listener; the parent
    /// has closed all of its copies when it returns `None`.
    fn start(
        &mut self,
        listeners: Vec<(usize, Arc<TcpListener>)>,
    ) -> io::Result<Option<(usize, Arc<TcpListener>)>> {
        for (index, listener) in listeners {
            match process::fork()? {
                // The remaining listeners are dropped (closed) with the iterator on return.
                Fork::Child => return Ok(Some((index, listener))),
                Fork::Parent(pid) => {
                    self.children.insert(pid, index);
                }
            }
        }
        Ok(None)
    }

    /// Waits for signals: forwards stops, reaps and restarts children, prints the total of
    /// every child's counts every `--stats-interval` and, last of all, at exit.
    fn supervise(&mut self) -> io::Result<Option<(usize, Arc<TcpListener>)>> {
        let epoll = Epoll::new()?;
        epoll.add(&self.signals, SIGNALS, Interest::READABLE)?;
        let tick = Timer::new()?;
        if let Some(every) = self.settings.stats_interval {
            tick.set_interval(every)?;
        }
        epoll.add(&tick, TICK, Interest::READABLE)?;
        let mut events = Events::with_capacity(4);
        while !(self.stopping && self.children.is_empty()) {
            epoll.wait(&mut events, Some(Duration::from_secs(1)))?;
            if events.iter().any(|e| e.token() == TICK) {
                tick.read()?;
                report::emit(&self.total_line());
            }
            while let Some(signal) = self.signals.read()? {
                match signal {
                    Signal::Child => {
                        if let Some(child) = self.reap_and_restart()? {
                            return Ok(Some(child));
                        }
                    }
                    _ => self.forward(signal),
                }
            }
        }
        info!("all prefork children exited");
        report::emit(&report::final_line(self.total_line()));
        Ok(None)
    }

    /// Every child's counts added up: the server's total.
    fn total_line(&self) -> String {
        let line = report::line_of(self.settings, self.counts.sum(), None, None);
        format!("{line} children={}", self.children.len())
    }

    fn forward(&mut self, signal: Signal) {
        // A second stop is forwarded too: each child exits at once on its own second signal.
        self.stopping = true;
        for pid in self.children.keys() {
            if let Err(e) = process::kill(*pid, signal) {
                warn!("cannot signal child {pid:?}: {e}");
            }
        }
    }

    fn reap_and_restart(&mut self) -> io::Result<Option<(usize, Arc<TcpListener>)>> {
        while let Some((pid, status)) = process::reap_any()? {
            let Some(index) = self.children.remove(&pid) else {
                continue;
            };
            // Its last published counts move to the slot of the departed, so its successor
            // starts from zero and the total loses nothing.
            let last = self.counts.get(index);
            self.counts.add(self.settings.workers, last);
            self.counts.store(index, Counts::default());
            if self.stopping {
                continue;
            }
            warn!("prefork child {index} ({pid:?}) died ({status:?}); restarting it");
            // A fresh listener joins the SO_REUSEPORT group; the dead child's queue is gone.
            let listener = Arc::new(server::bind(self.settings, self.addr, true)?);
            if let Some(child) = self.start(vec![(index, listener)])? {
                return Ok(Some(child));
            }
        }
        Ok(None)
    }
}
