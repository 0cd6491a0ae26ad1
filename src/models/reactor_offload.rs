//! `reactor-offload`: the reactor reads and answers cheap requests; costly ones go to a pool.
//!
//! Our first note's "the listener thread reads, determines the cost, and forwards the request
//! to a worker thread for heavy processing". The reactor is an ordinary event loop
//! ([`crate::runtime::event_loop`]) that serves connections with [`Costly::Defer`]: when the
//! connection core meets a `WORK` request it stops before it and says
//! [`Status::Offload`](crate::conn::Status::Offload). The loop then takes the connection out of
//! its epoll set and hands it to this file's [`Offload`] hook, which pushes it into the pool's
//! ring. A pinned worker pops it, serves it with `Costly::Inline` (the costly request and
//! whatever follows, for one turn: its `WORK` budget bounds how long a worker keeps it), and
//! sends it back through the loop's mailbox with what it wants next; the loop registers it
//! again. One connection is only ever in one place: in the loop's epoll set, in the ring, or in
//! one worker's hands.
//!
//! Cheap requests never wait behind costly ones (they are answered on the reactor), which is
//! what the greedy-neighbour scenario shows. The costs: a connection with a costly request
//! crosses threads twice, and the reactor's core is shared with cheap work only, so the pool
//! gets one core fewer by default.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use pool::{Pool, PoolBuilder, PoolStats, WorkerContext};
use reactor::Signals;

use crate::config::Settings;
use crate::conn::{with_scratch, Conn, Costly};
use crate::runtime::accept::AcceptGate;
use crate::runtime::backlog::Backlog;
use crate::runtime::event_loop::{self, Hook, Parts, Standalone};
use crate::runtime::mailbox::{Arrival, Mailbox};
use crate::runtime::names;
use crate::server;
use crate::stats::Stats;

/// Binds, starts the pool, and runs the reactor loop on the calling thread.
pub fn run(settings: &Settings, signals: Signals) -> io::Result<()> {
    let listener = Arc::new(server::bind(settings, settings.args.bind, false)?);
    server::announce(&listener)?;
    let stats = Stats::new();
    // The mailbox back from the workers holds every connection that can be away at once, so a
    // worker never has to wait to return one.
    let mailbox = Mailbox::new(settings.args.max_conns.max(settings.args.ring_capacity))?;
    // Leave the reactor a core of its own: cheap requests are answered on it, and a pool as
    // large as the machine would let costly requests crowd it out (`--workers` overrides).
    let workers = settings
        .args
        .workers
        .unwrap_or(pool::available_cores().saturating_sub(1).max(1));
    let parts = Parts {
        gate: Some(AcceptGate::new(listener, settings.args.max_conns)),
        hook: Offload::spawn(settings, workers, &stats, &mailbox)?,
        worker: None,
        mailbox,
        role: Standalone::new(signals, settings.stats_interval),
    };
    event_loop::run(settings, &stats, parts)
}

/// The pool behind the reactor loop, as the loop's [`Hook`].
pub struct Offload {
    pool: Pool<Box<Conn>>,
    /// Connections the full ring refused, retried on every turn: none is ever dropped.
    backlog: Backlog<Box<Conn>>,
    /// Connections handed to the pool and not back yet.
    away: usize,
}

impl Offload {
    /// Starts the pinned workers. Each serves the connection it is given for one turn and sends
    /// it back to the loop's `mailbox`.
    pub fn spawn(
        settings: &Settings,
        workers: usize,
        stats: &Arc<Stats>,
        mailbox: &Arc<Mailbox>,
    ) -> io::Result<Offload> {
        let (limits, stats, mailbox) = (settings.limits, Arc::clone(stats), Arc::clone(mailbox));
        let pool = PoolBuilder::new()
            .workers(workers)
            .name(names::POOL)
            .pin(settings.pin)
            .spin(settings.args.spin.policy())
            .capacity(settings.args.ring_capacity)
            .spawn(move |mut conn: Box<Conn>, _worker: &WorkerContext| {
                let status =
                    with_scratch(|scratch| conn.serve(scratch, &limits, Costly::Inline, &stats));
                let mut arrival = Arrival { conn, status };
                // The mailbox holds every connection that can be away at once, so this only
                // waits if that sizing is broken; waiting is still better than losing a client.
                while let Err(back) = mailbox.send(arrival) {
                    arrival = back;
                    std::thread::yield_now();
                }
            })?;
        Ok(Offload {
            pool,
            backlog: Backlog::new(),
            away: 0,
        })
    }
}

impl Hook for Offload {
    fn costly(&self) -> Costly {
        Costly::Defer
    }

    fn offload(&mut self, conn: Box<Conn>) {
        self.away += 1;
        self.backlog.push(conn, |conn| self.pool.submit(conn));
    }

    fn before_wait(&mut self, sleep: Option<Duration>) -> Option<Duration> {
        self.backlog.retry(|conn| self.pool.submit(conn));
        self.backlog.cap_timeout(sleep)
    }

    fn returned(&mut self) {
        self.away = self.away.saturating_sub(1);
    }

    fn away(&self) -> usize {
        self.away
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        Some(self.pool.stats())
    }

    fn finish(mut self) -> Option<PoolStats> {
        // Connections still waiting for a worker are closed with the backlog; the workers
        // finish the turn in hand (bounded by one `WORK` request) and the pool joins them.
        self.backlog.clear();
        Some(self.pool.shutdown())
    }
}
