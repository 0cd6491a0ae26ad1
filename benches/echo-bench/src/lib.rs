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
//!
//! The kernel lab (`lab --scenarios backlog,synflood,fairness`, `echo-bench kernel`):
//! - [`kernel`]: `echo-bench kernel backlog|synflood`, one experiment in its own namespace.
//! - [`netns`]: the private network namespace, and the checks that keep experiments in it.
//! - [`sys`]: the crate's only `unsafe` code: `unshare(2)` and the parent-death signal.
//! - [`queues`]: the `backlog` and `synflood` experiments.
//! - [`netstat`]: the listener's queues and the `TcpExt` counters, from `/proc`.
//! - [`packet`]: an IPv4 + TCP SYN built byte by byte, with its checksums.
//! - [`synflood`]: the bounded raw-socket SYN generator.
//! - [`clients`]: one-shot clients (connect, one line, its echo) with their timings.
//! - [`fairness`]: which worker gets the connection, per model, and Jain's index.
//! - [`kernel_lab`]: the three scenarios in the lab and `kernel.json`.
//! - [`kernel_md`]: `kernel.md`, the page a person reads.
//! - [`kernel_charts`]: which charts the kernel lab draws, and their words.
//! - [`plot`]: line charts, plain bars and per-worker shares with `plotters`.

#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod chart;
pub mod charts;
pub mod clients;
pub mod conn;
pub mod fairness;
pub mod histo;
pub mod kernel;
pub mod kernel_charts;
pub mod kernel_lab;
pub mod kernel_md;
pub mod lab;
pub mod load;
pub mod markdown;
pub mod models;
pub mod netns;
pub mod netstat;
pub mod packet;
pub mod pin;
pub mod plot;
pub mod procfs;
pub mod queues;
pub mod report;
pub mod results;
pub mod scenario;
pub mod server;
pub mod synflood;
#[allow(unsafe_code)]
pub mod sys;

pub mod verify;
pub mod worker;

pub use load::{run, RunConfig};
pub use report::{ErrorKind, RunReport};
pub use verify::Protocol;
