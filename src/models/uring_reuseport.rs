//! `uring-reuseport`: N pinned threads, each with its own io_uring and its own SO_REUSEPORT
//! listener.
//!
//! Thread-per-core, as monoio and glommio run it: each thread creates its ring itself (a ring
//! is driven by the thread that created it, `IORING_SETUP_SINGLE_ISSUER`), accepts from its own
//! listener (the kernel spreads connections over the SO_REUSEPORT group by a hash of the
//! 4-tuple, or by CPU with `--reuseport-steer cpu`), and serves its connections start to end.
//! Nothing is shared between the threads but the counters, so it is `reuseport` with
//! completions instead of readiness, and `uring` times N.
//!
//! The supervisor on the main thread reads the signals and prints the stats; it stops a loop
//! through its mailbox, whose eventfd the loop reads through its ring, so a loop blocks only in
//! `io_uring_enter(2)`. `worker_conns=` and `worker_msgs=` in the stats line show how the
//! kernel spread the load.

use std::io;
use std::sync::{Arc, Weak};

use log::error;
use reactor::{Signals, TcpListener};

use crate::config::Settings;
use crate::conn::RingCounters;
use crate::runtime::accept::AcceptGate;
use crate::runtime::mailbox::Mailbox;
use crate::runtime::names;
use crate::runtime::supervisor::{supervise, Supervised};
use crate::runtime::tally::Tally;
use crate::runtime::uring_loop::{self, Parts, Role};
use crate::stats::Stats;
use crate::{report, server};

/// Binds `--workers` listeners on one port, runs an io_uring loop per listener, supervises.
pub fn run(settings: &Settings, signals: Signals) -> io::Result<()> {
    let listeners = server::bind_group(settings, settings.workers)?;
    server::announce(&listeners[0])?;
    let stats = Stats::new();
    let settings = Arc::new(settings.clone());
    let mut mailboxes = Vec::new();
    let mut threads = Vec::new();
    // Weak, as in `reuseport`: a loop that drops its listener at shutdown really closes it.
    let watch: Vec<Weak<TcpListener>> = listeners.iter().map(Arc::downgrade).collect();
    let tally = Tally::new(settings.workers);
    let counters = Arc::new(RingCounters::default());
    for (i, listener) in listeners.into_iter().enumerate() {
        let slot = tally.slot(i);
        let mailbox = Mailbox::stop_only()?;
        mailboxes.push(Arc::clone(&mailbox));
        let (settings, stats) = (Arc::clone(&settings), Arc::clone(&stats));
        let counters = Arc::clone(&counters);
        threads.push(pool::spawn_pinned(
            names::event_loop(i),
            i,
            settings.pin,
            move || {
                let parts = Parts {
                    gate: AcceptGate::new(listener, settings.args.max_conns),
                    role: Role::Worker { mailbox, slot },
                    counters,
                };
                if let Err(e) = uring_loop::run(&settings, &stats, parts) {
                    error!("io_uring loop {i} failed: {e}");
                }
            },
        )?);
    }
    let report = || {
        let first = watch.iter().find_map(Weak::upgrade);
        let line = report::line(&settings, &stats, first.as_deref(), None);
        let [conns, msgs] = tally.fields();
        report::with_fields(line, &[conns, msgs, counters.field()])
    };
    let stop = || mailboxes.iter().for_each(|m| m.request_stop());
    supervise(Supervised::new(&settings, signals, &report, &stop, threads))
}
