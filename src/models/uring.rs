//! `uring`: the whole server is one thread running one io_uring loop.
//!
//! `event-loop` with completions instead of readiness. One multishot accept brings every new
//! connection; one multishot recv per connection brings its bytes in buffers the thread owns
//! (a provided-buffer ring, so an idle connection holds none); one send per connection is in
//! flight at a time; the tick, the signalfd and the stop all arrive as completions of the same
//! ring, so the thread blocks in one place, `io_uring_enter(2)`, which both submits what the
//! last turn queued and waits. Nothing is shared, so nothing is locked; a costly request stalls
//! the other connections exactly as in `event-loop`.
//!
//! The loop itself is [`crate::runtime::uring_loop`], shared with `uring-reuseport`; this file
//! only decides that it is alone: it owns the listener, the signals and the stats. The ring is
//! created on this thread, the only one that may use it (`IORING_SETUP_SINGLE_ISSUER`).

use std::io;
use std::sync::Arc;

use reactor::Signals;

use crate::config::Settings;
use crate::runtime::accept::AcceptGate;
use crate::runtime::uring_loop::{self, Parts, Role};
use crate::server;
use crate::stats::Stats;

/// Binds, then runs one standalone io_uring loop on the calling thread until it has drained.
pub fn run(settings: &Settings, signals: Signals) -> io::Result<()> {
    let listener = Arc::new(server::bind(settings, settings.args.bind, false)?);
    server::announce(&listener)?;
    // Read only through the ring from now on, and a blocking fd reads right on every kernel
    // (see `Signals::set_nonblocking`).
    signals.set_nonblocking(false)?;
    let parts = Parts {
        gate: AcceptGate::new(listener, settings.args.max_conns),
        role: Role::Standalone {
            signals,
            stats_interval: settings.stats_interval,
        },
        counters: Arc::default(),
    };
    uring_loop::run(settings, &Stats::new(), parts)
}
