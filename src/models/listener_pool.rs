//! `listener-pool`: one listener thread accepts; N pinned worker loops serve.
//!
//! The listener hands each accepted connection to a worker through that worker's
//! [`Mailbox`] (a [`pool::Ring`] plus an eventfd to wake it); the worker registers it in its
//! own epoll set and serves it for the rest of its life, alongside many others. This is our
//! notes' "one listener thread + thread pool, each thread many connections".
//!
//! Assignment is round-robin: cheap, fair in connection count, and blind to how busy each
//! connection is, which is exactly the load imbalance our notes warn about; the stats line
//! shows connections per worker (`worker_conns`) so it can be seen. Least-loaded assignment
//! would need every worker to publish its load, and still could not predict a connection that
//! turns greedy after it is assigned. When a worker's mailbox is full the next worker is tried;
//! when all are full the connection is refused (closed and counted), never queued without
//! bound.

use std::io;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use log::{error, warn};
use pool::counters::Counter;
use reactor::{Interest, Signals, TcpStream};

use crate::config::Settings;
use crate::conn::{Conn, Status};
use crate::runtime::accept::{run_listener_thread, AcceptGate};
use crate::runtime::event_loop::WorkerLoops;
use crate::runtime::mailbox::{Arrival, Mailbox};
use crate::runtime::names;
use crate::runtime::supervisor::{supervise, Supervised};
use crate::runtime::tally::Tally;
use crate::stats::Stats;
use crate::{report, server};

/// Connections that may wait in one worker's mailbox before it takes them.
const INBOX_CAPACITY: usize = 1024;

/// Runs the listener thread and the worker loops, supervised.
pub fn run(settings: &Settings, signals: Signals) -> io::Result<()> {
    let listener = Arc::new(server::bind(settings, settings.args.bind, false)?);
    server::announce(&listener)?;
    let stats = Stats::new();
    let settings = Arc::new(settings.clone());
    let tally = Tally::new(settings.workers);
    // No gates: the workers are fed through their mailboxes. The listener thread counts the
    // connections it hands each one; each loop publishes the messages it served.
    let gates = (0..settings.workers).map(|_| None).collect();
    let mut loops = WorkerLoops::spawn(&settings, &stats, &tally, gates, INBOX_CAPACITY)?;
    let listen = Arc::new(Listener {
        settings: Arc::clone(&settings),
        stats: Arc::clone(&stats),
        workers: loops.mailboxes.clone(),
        tally,
    });
    let stop_listener = Mailbox::stop_only()?;
    let watch = Arc::downgrade(&listener);
    let gate = AcceptGate::new(listener, settings.args.max_conns);
    loops
        .threads
        .push(spawn_listener(gate, &listen, &stop_listener)?);
    let threads = std::mem::take(&mut loops.threads);
    let report = || {
        let line = report::line(&settings, &stats, Weak::upgrade(&watch).as_deref(), None);
        report::with_fields(line, &listen.tally.fields())
    };
    let stop = || {
        stop_listener.request_stop();
        loops.stop_all();
    };
    supervise(Supervised::new(&settings, signals, &report, &stop, threads))
}

/// Starts the listener thread: accept, then hand over round-robin, until told to stop.
fn spawn_listener(
    gate: AcceptGate,
    listen: &Arc<Listener>,
    stop: &Arc<Mailbox>,
) -> io::Result<JoinHandle<()>> {
    let (listen, stop) = (Arc::clone(listen), Arc::clone(stop));
    std::thread::Builder::new()
        .name(names::ACCEPT.into())
        .spawn(move || {
            let mut next = 0;
            let result = run_listener_thread(gate, &listen.stats, &stop, |stream| {
                listen.hand_over(stream, &mut next)
            });
            if let Err(e) = result {
                error!("listener thread failed: {e}");
            }
        })
}

/// The listener thread's side: the workers' mailboxes and the per-worker counts.
struct Listener {
    settings: Arc<Settings>,
    stats: Arc<Stats>,
    workers: Vec<Arc<Mailbox>>,
    tally: Arc<Tally>,
}

impl Listener {
    /// Picks a worker round-robin (starting at `*next`) and hands the connection over.
    fn hand_over(&self, stream: TcpStream, next: &mut usize) {
        let conn = Conn::new(stream, self.settings.args.protocol, &self.settings.limits);
        let mut arrival = Arrival {
            conn: Box::new(conn),
            status: Status::Wait(Interest::READABLE),
        };
        let n = self.workers.len();
        for attempt in 0..n {
            let i = (*next + attempt) % n;
            match self.workers[i].send(arrival) {
                Ok(()) => {
                    self.tally.took_conn(i);
                    *next = i + 1;
                    return;
                }
                Err(back) => arrival = back,
            }
        }
        warn!("every worker mailbox is full: refusing a connection");
        self.stats.refused.incr();
        self.stats.closed.incr();
    }
}
