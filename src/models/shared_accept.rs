//! `shared-accept`: N pinned loops share one listener, each watching it with `EPOLLEXCLUSIVE`.
//!
//! nginx's shape when `reuseport` is off: one listening socket, one accept queue, and every
//! worker's own epoll set watching it. Without care, every new connection would wake every
//! worker (the thundering herd) and all but one would find `accept4` returning EAGAIN.
//! `EPOLLEXCLUSIVE` (Linux 4.5, epoll_ctl(2)) makes the kernel wake one waiter, or a few, per
//! event; nginx uses it when it has several workers and no `reuseport` (`ngx_event.c`).
//!
//! Who gets the connection? Not the least busy worker, but the one the kernel wakes: epoll's
//! wait queue is LIFO, so the worker that went back to `epoll_wait` *last* tends to win, and
//! under light load one worker can take most connections. Cloudflare measured exactly this
//! ("Why does one NGINX worker take all the load?"); the stats line's `worker_conns=` shows it
//! here, and the lab's `fairness` scenario charts it against `reuseport` (a blind hash, one
//! queue per worker) and `listener-pool` (round robin). The upside over `reuseport`: a single
//! accept queue, so a busy worker never holds connections that an idle one could take.
//!
//! Each loop is the shared event loop ([`WorkerLoops`]) under the supervisor, with an accept gate of its own
//! (its own spare descriptor) over the one listener.

use std::io;
use std::sync::Arc;

use reactor::Signals;

use crate::config::Settings;
use crate::runtime::accept::AcceptGate;
use crate::runtime::event_loop::WorkerLoops;
use crate::runtime::supervisor::{supervise, Supervised};
use crate::runtime::tally::Tally;
use crate::stats::Stats;
use crate::{report, server};

/// Binds one listener, runs `--workers` loops that all watch it, supervises.
pub fn run(settings: &Settings, signals: Signals) -> io::Result<()> {
    let listener = Arc::new(server::bind(settings, settings.args.bind, false)?);
    server::announce(&listener)?;
    let stats = Stats::new();
    let settings = Arc::new(settings.clone());
    let tally = Tally::new(settings.workers);
    let max_conns = settings.args.max_conns;
    let gates = (0..settings.workers)
        .map(|_| Some(AcceptGate::shared(Arc::clone(&listener), max_conns)))
        .collect();
    let mut loops = WorkerLoops::spawn(&settings, &stats, &tally, gates, 2)?;
    // The loops hold the listener; once they have all dropped their gates at the drain it
    // closes, so the supervisor keeps only a weak reference for the accept-queue figure.
    let watch = Arc::downgrade(&listener);
    drop(listener);
    let threads = std::mem::take(&mut loops.threads);
    let report = || {
        let line = report::line(&settings, &stats, watch.upgrade().as_deref(), None);
        report::with_fields(line, &tally.fields())
    };
    let stop = || loops.stop_all();
    supervise(Supervised::new(&settings, signals, &report, &stop, threads))
}
