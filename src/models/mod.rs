//! The concurrency models: each file wires the same pieces (the reactor, the ring and pool, the
//! runtime of [`crate::runtime`], and the one connection state machine of [`crate::conn`])
//! differently, and each model is one file. Diff two of them to see what a model really changes.
//!
//! | model | threads / processes | who drives a connection |
//! |---|---|---|
//! | `event-loop` | 1 thread | the loop, inline |
//! | `thread-per-conn` | listener + 1 thread per connection | that thread, blocking I/O |
//! | `process-per-conn` | parent + 1 process per connection | that child, blocking I/O |
//! | `listener-pool` | listener + N pinned loops | the loop the listener chose |
//! | `reactor-pool` | reactor + N pinned workers | whichever worker pops the ready connection |
//! | `reactor-offload` | reactor + N pinned workers | the reactor; a worker for costly requests |
//! | `reuseport` | N pinned loops, N listeners | each loop, for what its listener accepted |
//! | `prefork` | parent + N single-threaded processes | each child's loop |
//! | `shared-accept` | N pinned loops, 1 listener (EPOLLEXCLUSIVE) | the loop the kernel woke |
//! | `uring` | 1 thread, 1 io_uring | the loop, inline, on completions |
//! | `uring-reuseport` | N pinned threads, N io_urings, N listeners | each loop, for what its listener accepted |

mod event_loop;
mod listener_pool;
mod prefork;
mod process_per_conn;
mod reactor_offload;
mod reactor_pool;
mod reuseport;
mod shared_accept;
mod thread_per_conn;
mod uring;
mod uring_reuseport;

use std::io;

use reactor::Signals;

use crate::config::{Model, Settings};

/// Runs the model chosen by `--model`. `signals` was created before any thread existed.
pub fn run(settings: &Settings, signals: Signals) -> io::Result<()> {
    match settings.args.model {
        Model::EventLoop => event_loop::run(settings, signals),
        Model::ThreadPerConn => thread_per_conn::run(settings, signals),
        Model::ProcessPerConn => process_per_conn::run(settings, signals),
        Model::ListenerPool => listener_pool::run(settings, signals),
        Model::ReactorPool => reactor_pool::run(settings, signals),
        Model::ReactorOffload => reactor_offload::run(settings, signals),
        Model::Reuseport => reuseport::run(settings, signals),
        Model::Prefork => prefork::run(settings, signals),
        Model::SharedAccept => shared_accept::run(settings, signals),
        Model::Uring => uring::run(settings, signals),
        Model::UringReuseport => uring_reuseport::run(settings, signals),
    }
}
