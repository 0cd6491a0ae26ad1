//! `echo-bench`: a load generator that checks every echoed byte, and the lab that runs it
//! against every concurrency model of `echo-server` (and against tokio peers) side by side.
//!
//! The question it answers is the one users bring: "which model should my server use, and what
//! does it cost?". Throughput alone cannot answer it on a small machine where the generator and
//! the server share the cores, so every run also reports latency percentiles from an HDR
//! histogram, the server's CPU microseconds per message, and its memory per connection.
//!
//! The generator is built on rawloop's own `reactor` (epoll, nonblocking sockets), with no
//! async runtime: each worker thread runs an epoll loop over its share of the connections.
//! It never trusts the server: every byte is checked, and every error fails the run.
//!
//! # Layout
//! - [`load`]: one run: configuration, threads, the timeline of phases, `/proc` samples.
//! - [`worker`]: a generator thread's epoll loop (closed loop, open loop, connect-only).
//! - [`conn`]: one client connection: nonblocking connect, send queue, echo checking.
//! - [`verify`]: the payload pattern and the byte-for-byte checker.
//! - [`histo`]: latency histograms (HdrHistogram), medians.
//! - [`procfs`]: CPU time, context switches and memory of a server's process tree.
//! - [`report`]: a run's figures and errors, as a table or JSON (serde).
//! - [`lab`]: the lab: scenarios x models, interleaved and repeated.
//! - [`scenario`]: the lab's scenarios and their generator settings.
//! - [`models`]: the lab's table of models, variants and peers, checked against the server.
//! - [`pin`]: CPU lists and affinity for `--server-cpus` and `--generator-cpus`.
//! - [`server`]: starting and stopping a server under test.
//! - [`results`]: every run's record, medians and ranges, `results.json` (serde).
//! - [`markdown`]: the page a person reads, `results.md`.
//! - [`charts`]: which charts the lab draws, and their words.
//! - [`chart`]: SVG bar charts with `plotters`, on a scale that shows every bar.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod chart;
pub mod charts;
pub mod conn;
pub mod histo;
pub mod lab;
pub mod load;
pub mod markdown;
pub mod models;
pub mod pin;
pub mod procfs;
pub mod report;
pub mod results;
pub mod scenario;
pub mod server;

pub mod verify;
pub mod worker;

pub use load::{run, RunConfig};
pub use report::{ErrorKind, RunReport};
pub use verify::Protocol;
