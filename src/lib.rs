//! `rawloop`: the echo application that runs every concurrency model of our design notes.
//!
//! The two library crates do the systems work: [`reactor`] turns Linux syscalls (epoll,
//! accept4, eventfd, signalfd, timerfd) into a small safe API, and [`pool`] provides the
//! lock-free ring and the pinned worker pool. This crate is the server built on them, and it
//! contains no `unsafe` at all: everything that talks to the kernel goes through `reactor`.
//!
//! The shape to keep in mind: **one connection state machine, many wirings.** [`conn::Conn`]
//! is the only code that reads, echoes and writes a client's bytes, and
//! [`protocol`] the only code that parses them. Each module under [`models`] decides only
//! which thread or process calls [`conn::Conn::serve`], and when.
//!
//! # Layout
//! - [`config`]: the `echo-server` command line and derived settings.
//! - [`server`]: start-up shared by all models (signals, limits, bind, the `listening on` line).
//! - [`protocol`]: RFC 862 echo and the line protocol with costly `WORK` requests.
//! - [`conn`]: the connection state machine (backpressure, lazy buffers, half-close).
//! - [`accept`]: accept batching, `--max-conns`, and surviving EMFILE.
//! - [`event_loop`]: the single-threaded epoll loop that four models reuse.
//! - [`supervisor`]: the main thread of the threaded models (signals, stats, stop).
//! - [`models`]: the eight concurrency models.
//! - [`stats`], [`report`]: counters (correct and racy) and the stats line.
//! - [`slab`]: index-addressed storage for connections.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod accept;
pub mod config;
pub mod conn;
pub mod event_loop;
pub mod models;
pub mod protocol;
pub mod report;
pub mod server;
pub mod slab;
pub mod stats;
pub mod supervisor;
