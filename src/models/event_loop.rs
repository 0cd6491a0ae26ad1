//! `event-loop`: the whole server is one thread running one epoll loop.
//!
//! The Node.js model of our design notes: accept, read, echo and write all happen inline on one
//! thread, between two `epoll_wait(2)` calls. Nothing is shared, so nothing is locked; the price
//! is that a costly request stalls every other connection for as long as it runs (the greedy
//! neighbour; a connection's turn is bounded by its `WORK` budget, so a pipeline of costly
//! requests stalls the others for one request at a time, not for the whole pipeline).
//!
//! The loop itself is [`crate::runtime::event_loop`], shared with four other models; this file
//! only decides that it is alone: it owns the listener, the signals and the stats.

use std::io;
use std::sync::Arc;

use reactor::Signals;

use crate::config::Settings;
use crate::runtime::accept::AcceptGate;
use crate::runtime::event_loop::{self, Inline, Parts, Standalone};
use crate::runtime::mailbox::Mailbox;
use crate::server;
use crate::stats::Stats;

/// Binds, then runs one standalone event loop on the calling thread until it has drained.
pub fn run(settings: &Settings, signals: Signals) -> io::Result<()> {
    let listener = Arc::new(server::bind(settings, settings.args.bind, false)?);
    server::announce(&listener)?;
    let parts = Parts {
        gate: Some(AcceptGate::new(listener, settings.args.max_conns)),
        mailbox: Mailbox::stop_only()?,
        role: Standalone::new(signals, settings.stats_interval),
        hook: Inline,
        worker: None,
    };
    event_loop::run(settings, &Stats::new(), parts)
}
