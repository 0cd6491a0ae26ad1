//! `listener-pool`: one listener thread accepts; N pinned worker loops serve.
//!
//! The listener hands each accepted socket to a worker through that worker's inbox (a
//! [`pool::Ring`] plus an eventfd to wake it); the worker registers the socket in its own epoll
//! set and serves it for the rest of its life, alongside many others. This is our notes' "one
//! listener thread + thread pool, each thread many connections".
//!
//! Assignment is round-robin: cheap, fair in connection count, and blind to how busy each
//! connection is, which is exactly the load imbalance our notes warn about; the stats line
//! shows connections per worker (`worker_conns`) so it can be seen. Least-loaded assignment
//! would need every worker to publish its load, and still could not predict a connection that
//! turns greedy after it is assigned. When a worker's inbox is full the next worker is tried;
//! when all are full the connection is refused (closed and counted), never queued without
//! bound.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use log::{error, warn};
use pool::counters::Counter;
use reactor::{Signals, TcpListener};

use crate::accept::accept_until_stopped;
use crate::config::Settings;
use crate::event_loop::{self, Control, Handoff, LoopParts};
use crate::stats::Stats;
use crate::supervisor::{supervise, Supervised};
use crate::{report, server};

/// Sockets that may wait in one worker's inbox before it takes them.
const INBOX_CAPACITY: usize = 1024;

/// Runs the listener thread and the worker loops, supervised.
pub fn run(settings: &Settings, signals: Signals) -> io::Result<()> {
    let listener = Arc::new(server::bind(settings, settings.args.bind, false)?);
    server::announce(&listener)?;
    let stats = Stats::new();
    let settings = Arc::new(settings.clone());
    let mut workers = Vec::new();
    let mut threads = Vec::new();
    for i in 0..settings.workers {
        let control = Control::new(INBOX_CAPACITY)?;
        workers.push(Arc::clone(&control));
        let (settings, stats) = (Arc::clone(&settings), Arc::clone(&stats));
        threads.push(pool::spawn_pinned(
            format!("rawloop-loop-{i}"),
            i,
            settings.pin,
            move || {
                let parts = LoopParts {
                    listener: None,
                    control,
                    signals: None,
                    print_stats: false,
                    offload: None,
                };
                if let Err(e) = event_loop::run(&settings, &stats, parts) {
                    error!("worker loop {i} failed: {e}");
                }
            },
        )?);
    }
    let assigned: Arc<Vec<AtomicU64>> =
        Arc::new((0..settings.workers).map(|_| AtomicU64::new(0)).collect());
    let stop_listener = Control::new(0)?;
    let watch = Arc::downgrade(&listener);
    {
        let (stats, settings, assigned) = (
            Arc::clone(&stats),
            Arc::clone(&settings),
            Arc::clone(&assigned),
        );
        let (workers, stop) = (workers.clone(), Arc::clone(&stop_listener));
        threads.push(
            std::thread::Builder::new()
                .name("rawloop-accept".into())
                .spawn(move || {
                    if let Err(e) = listen(&settings, &stats, listener, &stop, &workers, &assigned)
                    {
                        error!("listener thread failed: {e}");
                    }
                })?,
        );
    }
    let report = || {
        let counts: Vec<String> = assigned
            .iter()
            .map(|n| n.load(Ordering::Relaxed).to_string())
            .collect();
        let line = report::line(&settings, &stats, Weak::upgrade(&watch).as_deref(), None);
        format!("{line} worker_conns={}", counts.join(","))
    };
    let stop = || {
        stop_listener.request_stop();
        workers.iter().for_each(|w| w.request_stop());
    };
    supervise(Supervised {
        signals,
        stats_interval: settings.stats_interval,
        report: &report,
        stop: &stop,
        threads,
    })
}

/// The listener thread: accept, pick a worker round-robin, hand the socket over.
fn listen(
    settings: &Settings,
    stats: &Stats,
    listener: Arc<TcpListener>,
    stop: &Control,
    workers: &[Arc<Control>],
    assigned: &[AtomicU64],
) -> io::Result<()> {
    let mut next = 0;
    accept_until_stopped(&listener, stats, settings.args.max_conns, stop, |stream| {
        let mut handoff = Handoff::Accepted(stream);
        for attempt in 0..workers.len() {
            let i = (next + attempt) % workers.len();
            match workers[i].send(handoff) {
                Ok(()) => {
                    assigned[i].fetch_add(1, Ordering::Relaxed);
                    next = i + 1;
                    return;
                }
                Err(back) => handoff = back,
            }
        }
        warn!("every worker inbox is full: refusing a connection");
        stats.refused.incr();
        stats.closed.incr();
    })
}
