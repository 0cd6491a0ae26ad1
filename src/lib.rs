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
//! - [`server`]: start-up shared by all models (signals, limits, bind, the `listening on` line).
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
