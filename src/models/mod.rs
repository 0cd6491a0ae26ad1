//! The concurrency models: each file wires the same pieces (reactor, ring, pool, and the one
//! connection state machine in [`crate::conn`]) differently. Diff two of them to see what a
//! model really changes.
//!
//! | model | threads / processes | who calls `Conn::serve` |
//! |---|---|---|
//! | `event-loop` | 1 thread | the loop, inline |
//! | `thread-per-conn` | listener + 1 thread per connection | that thread, blocking I/O |
//! | `process-per-conn` | parent + 1 process per connection | that child, blocking I/O |
//! | `listener-pool` | listener + N pinned loops | the loop the listener chose |
//! | `reactor-pool` | reactor + N pinned workers | whichever worker pops the ready connection |
//! | `reactor-offload` | reactor + N pinned workers | the reactor; a worker for costly requests |
//! | `reuseport` | N pinned loops, N listeners | each loop, for what its listener accepted |
//! | `prefork` | parent + N single-threaded processes | each child's loop |

mod blocking;
mod listener_pool;
mod prefork;
mod process_per_conn;
mod reactor_pool;
mod reuseport;

use std::io;
use std::sync::Arc;

use reactor::Signals;

use crate::config::{Model, Settings};
use crate::event_loop::{self, Control, LoopParts};
use crate::server;
use crate::stats::Stats;

/// Runs the model chosen by `--model`.
pub fn run(settings: &Settings, signals: Signals) -> io::Result<()> {
    match settings.args.model {
        Model::EventLoop => single_event_loop(settings, signals),
        Model::ThreadPerConn => blocking::run(settings, signals),
        Model::ProcessPerConn => process_per_conn::run(settings, signals),
        Model::ListenerPool => listener_pool::run(settings, signals),
        Model::ReactorPool => reactor_pool::run(settings, signals),
        Model::ReactorOffload => event_loop_with_offload(settings, signals),
        Model::Reuseport => reuseport::run(settings, signals),
        Model::Prefork => prefork::run(settings, signals),
    }
}

/// `event-loop`: the whole server is one [`event_loop`] on the main thread.
fn single_event_loop(settings: &Settings, signals: Signals) -> io::Result<()> {
    let listener = Arc::new(server::bind(settings, settings.args.bind, false)?);
    server::announce(&listener)?;
    let parts = LoopParts {
        listener: Some(listener),
        control: Control::new(0)?,
        signals: Some(signals),
        print_stats: true,
        offload: None,
    };
    event_loop::run(settings, &Stats::new(), parts)
}

/// `reactor-offload`: the same loop, with a pool behind it for costly requests.
fn event_loop_with_offload(settings: &Settings, signals: Signals) -> io::Result<()> {
    let listener = Arc::new(server::bind(settings, settings.args.bind, false)?);
    server::announce(&listener)?;
    let stats = Stats::new();
    // The ring back from the workers must hold every connection that can be away at once,
    // so a worker never has to wait to return one.
    let control = Control::new(settings.args.max_conns.max(settings.args.ring_capacity))?;
    // Leave the reactor a core of its own: cheap requests are answered on it, and a pool as
    // large as the machine would let costly requests crowd it out (`--workers` overrides).
    let workers = settings
        .args
        .workers
        .unwrap_or(pool::available_cores().saturating_sub(1).max(1));
    let offload = event_loop::Offload::spawn(settings, workers, &stats, &control)?;
    let parts = LoopParts {
        listener: Some(listener),
        control,
        signals: Some(signals),
        print_stats: true,
        offload: Some(offload),
    };
    event_loop::run(settings, &stats, parts)
}
