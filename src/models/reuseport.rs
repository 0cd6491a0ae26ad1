//! `reuseport`: N pinned threads, each with its own SO_REUSEPORT listener and its own epoll.
//!
//! Shared nothing: with SO_REUSEPORT the kernel keeps one accept queue per socket and spreads
//! incoming connections over them by a hash of the 4-tuple (socket(7), `SO_REUSEPORT`), so the
//! threads never contend for an accept queue, a lock or an epoll set. This is the
//! thread-per-core design of our notes ("several listeners on one port"), and what HAProxy,
//! Envoy and nginx (`reuseport` on `listen`) do. Its cost: the hash is blind to load, so one
//! busy connection stays on its thread however idle the others are (load imbalance, visible in
//! per-loop stats), and connections waiting in a closed socket's queue are reset.

use std::io;
use std::sync::{Arc, Weak};

use log::error;
use reactor::{Signals, TcpListener};

use crate::config::Settings;
use crate::event_loop::{self, Control, LoopParts};
use crate::stats::Stats;
use crate::supervisor::{supervise, Supervised};
use crate::{report, server};

/// Binds `--workers` listeners on one port, runs a loop per listener, supervises.
pub fn run(settings: &Settings, signals: Signals) -> io::Result<()> {
    let listeners = bind_group(settings, settings.workers)?;
    server::announce(&listeners[0])?;
    let stats = Stats::new();
    let settings = Arc::new(settings.clone());
    let mut controls = Vec::new();
    let mut threads = Vec::new();
    let watch: Vec<Weak<TcpListener>> = listeners.iter().map(Arc::downgrade).collect();
    for (i, listener) in listeners.into_iter().enumerate() {
        let control = Control::new(0)?;
        controls.push(Arc::clone(&control));
        let (settings, stats) = (Arc::clone(&settings), Arc::clone(&stats));
        let name = format!("rawloop-loop-{i}");
        threads.push(pool::spawn_pinned(name, i, settings.pin, move || {
            let parts = LoopParts {
                listener: Some(listener),
                control,
                signals: None,
                print_stats: false,
                offload: None,
            };
            if let Err(e) = event_loop::run(&settings, &stats, parts) {
                error!("event loop {i} failed: {e}");
            }
        })?);
    }
    // The supervisor watches the listeners through weak references: when a loop drops its
    // listener at shutdown, the socket really closes instead of lingering here.
    let report = || {
        let first = watch.iter().find_map(Weak::upgrade);
        report::line(&settings, &stats, first.as_deref(), None)
    };
    let stop = || controls.iter().for_each(|c| c.request_stop());
    supervise(Supervised {
        signals,
        stats_interval: settings.stats_interval,
        report: &report,
        stop: &stop,
        threads,
    })
}

/// Binds `n` SO_REUSEPORT listeners on `--bind`; the first picks the port when it is 0.
pub fn bind_group(settings: &Settings, n: usize) -> io::Result<Vec<Arc<TcpListener>>> {
    let first = server::bind(settings, settings.args.bind, true)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![Arc::new(first)];
    for _ in 1..n {
        listeners.push(Arc::new(server::bind(settings, addr, true)?));
    }
    Ok(listeners)
}
