//! `rawloop`: the echo application that runs every concurrency model of our design notes.
//!
//! The two library crates do the systems work: [`reactor`] turns Linux syscalls (epoll,
//! accept4, eventfd, signalfd, timerfd) into a small safe API, and [`pool`] provides the
//! lock-free ring and the pinned worker pool. This crate is the server built on them, and it
//! contains no `unsafe` at all: everything that talks to the kernel goes through `reactor`.
//!
//! The shape to keep in mind: **one connection state machine, many wirings.**
//! [`conn::Core`] is the only code that decides what happens to a client's bytes (it performs
//! no I/O), the drivers in [`conn`] the only code that moves them between a socket and the core,
//! and [`protocol`] the only code that parses them. Each file under [`models`] decides only
//! which thread or process drives a connection, and when, using the shared pieces of
//! [`runtime`].
//!
//! # Layout
//! - [`config`]: the `echo-server` command line and derived settings.
//! - [`run`] (here): start-up (signals, limits) and the chosen model.
//! - [`server`]: binding shared by all models (the listeners, the `listening on` line).
//! - [`protocol`]: RFC 862 echo and the line protocol with costly `WORK` requests.
//! - [`conn`]: the sans-I/O connection state machine ([`conn::core`]) and its drivers
//!   (readiness, blocking).
//! - [`runtime`]: what every model shares: the event loop, the supervisor, the accept gate,
//!   the mailbox, the backlog, the shutdown rules, tokens and thread names.
//! - [`models`]: the concurrency models, one file each.
//! - [`stats`], [`report`]: counters (correct and racy) and the stats line.
//! - [`slab`]: index-addressed storage for connections.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
pub mod conn;
pub mod models;
pub mod protocol;
pub mod report;
pub mod runtime;
pub mod server;
pub mod slab;
pub mod stats;

use std::io;

use log::{info, warn};
use reactor::{Signal, Signals};

use crate::config::Settings;

/// Runs the server described by `settings` until it is stopped.
pub fn run(settings: Settings) -> io::Result<()> {
    // Signals first, before any thread exists: the blocked mask is inherited by every thread
    // spawned later, so SIGINT/SIGTERM/SIGCHLD are only ever delivered through the signalfd.
    let signals = Signals::new(&[Signal::Interrupt, Signal::Terminate, Signal::Child])?;
    if settings.args.syscall_stats {
        reactor::syscalls::enable();
    }
    report::set_format(settings.args.stats_format);
    match reactor::process::raise_nofile_limit() {
        Ok(limit) => info!("descriptor limit: {limit}"),
        Err(e) => warn!("could not raise RLIMIT_NOFILE: {e}"),
    }
    models::run(&settings, signals)
}
