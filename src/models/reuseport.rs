//! `reuseport`: N pinned threads, each with its own SO_REUSEPORT listener and its own epoll.
//!
//! Shared nothing: with SO_REUSEPORT the kernel keeps one accept queue per socket and spreads
//! incoming connections over them by a hash of the 4-tuple (socket(7), `SO_REUSEPORT`), so the
//! threads never contend for an accept queue, a lock or an epoll set. This is the
//! thread-per-core design of our notes ("several listeners on one port"), and what HAProxy,
//! Envoy and nginx (`reuseport` on `listen`) do. Its cost: the hash is blind to load, so one
//! busy connection stays on its thread however idle the others are (load imbalance, visible in
//! per-loop stats), and connections waiting in a closed socket's queue are reset.
//!
//! Each thread runs the shared event loop ([`WorkerLoops`]) under the supervisor, with an [`AcceptGate`] of
//! its own (so each has its own spare descriptor for surviving EMFILE). `worker_conns=` in the
//! stats line shows how the hash spread the connections. `--reuseport-steer cpu` replaces the
//! hash with a BPF program that picks the listener of the CPU that received the connection
//! ([`reactor::TcpListener::steer_by_cpu`]), so with each loop pinned to its core a connection
//! never changes core.

use std::io;
use std::sync::{Arc, Weak};

use reactor::{Signals, TcpListener};

use crate::config::Settings;
use crate::runtime::accept::AcceptGate;
use crate::runtime::event_loop::WorkerLoops;
use crate::runtime::supervisor::{supervise, Supervised};
use crate::runtime::tally::Tally;
use crate::stats::Stats;
use crate::{report, server};

/// Binds `--workers` listeners on one port, runs a loop per listener, supervises.
pub fn run(settings: &Settings, signals: Signals) -> io::Result<()> {
    let listeners = server::bind_group(settings, settings.workers)?;
    server::announce(&listeners[0])?;
    let stats = Stats::new();
    let settings = Arc::new(settings.clone());
    // The supervisor watches the listeners through weak references: when a loop drops its
    // listener at shutdown, the socket really closes instead of lingering here.
    let watch: Vec<Weak<TcpListener>> = listeners.iter().map(Arc::downgrade).collect();
    let tally = Tally::new(settings.workers);
    let gates = listeners
        .into_iter()
        .map(|listener| Some(AcceptGate::new(listener, settings.args.max_conns)))
        .collect();
    let mut loops = WorkerLoops::spawn(&settings, &stats, &tally, gates, 2)?;
    let threads = std::mem::take(&mut loops.threads);
    let report = || {
        let first = watch.iter().find_map(Weak::upgrade);
        let line = report::line(&settings, &stats, first.as_deref(), None);
        report::with_fields(line, &tally.fields())
    };
    let stop = || loops.stop_all();
    supervise(Supervised::new(&settings, signals, &report, &stop, threads))
}
