//! Helpers shared by the echo-server integration tests (mio's and polling's `tests/util`
//! layout): a [`Server`] guard around a real `echo-server` process, [`each_model`] to run a
//! check against every concurrency model, one way to wait ([`poll_until`]), a watchdog, and a
//! seeded PRNG.
//!
//! Everything here drives the real binary over real loopback sockets; the kernel is never
//! mocked. Deadlines are generous because they only bound a failure: a passing test returns
//! as soon as the kernel delivers.
//!
//! # Layout
//! - `server`: [`Server`] (spawn, `listening on`, signals, exit and stats, SIGKILL on drop),
//!   [`Exit`], [`Stats`], [`run_to_exit`].
//! - `models`: [`each_model`] and [`Models`] (which models, how many at a time), [`VARIANTS`],
//!   and the predicates that pick models (`counts_traffic`, `no_greedy_neighbour`, ...).
//! - `wait`: [`poll_until`] and [`poll_until_steady`], the only waiting loops of the tests.
//! - [`client`]: client sockets, byte-exact echo checks, and [`client::echo_many`], an
//!   epoll-driven client that verifies thousands of connections from one thread.
//! - [`procfs`]: process tree, RSS, descriptors, threads and CPU time from `/proc`.
//! - `rng`: [`Rng`], a seeded SplitMix64, so every run sends the same bytes.
//! - [`sys`]: the only `unsafe` of the tests (pre-exec limits, pre-connect socket options).
//!
//! # A test
//! ```ignore
//! #[test]
//! fn half_close_without_data_gets_a_prompt_eof() {
//!     let _watchdog = Watchdog::new(Duration::from_secs(120));
//!     each_model(&[], |server| {
//!         let stream = server.connect();
//!         stream.shutdown(Shutdown::Write).unwrap();
//!         expect_closed(&stream, Duration::from_secs(5)).unwrap();
//!     });
//! }
//! ```

#![allow(dead_code)] // Each test binary uses a different subset of the helpers.
#![allow(unused_imports)] // Re-exported for the test files; not every one of them uses each.

pub mod client;
mod models;
pub mod procfs;
mod rng;
mod server;
pub mod sys;
mod wait;

pub use models::{
    any_model, built_for_c10k, counts_on_one_thread, counts_traffic, each_model, final_lines,
    holds_many_client_fds, no_greedy_neighbour, uses_io_uring, ExitCheck, Models, Target, VARIANTS,
};
pub use rawloop::config::Model;
pub use rng::{seed_for, Rng};
pub use server::{kill_tree, run_to_exit, Exit, Server, ServerBuilder, Stats};
pub use wait::{poll_until, poll_until_steady, Deadline, TimedOut};

use std::sync::mpsc;
use std::time::Duration;

/// How long a socket read or write may block before the test declares the server stuck.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// An overall deadline for one test. If the guard is still alive after `limit`, the test is
/// stuck somewhere no socket timeout reaches: the watchdog says so and aborts the test
/// process, which also kills every server through its parent-death signal.
pub struct Watchdog {
    done: Option<mpsc::Sender<()>>,
}

impl Watchdog {
    /// Arms a watchdog named after the current test: libtest runs each test on a thread named
    /// after it, so the name is the thread's.
    pub fn new(limit: Duration) -> Watchdog {
        let current = std::thread::current();
        let test = current
            .name()
            .unwrap_or("(unnamed test thread)")
            .to_string();
        let (done, rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!("watchdog: test `{test}` still running after {limit:?}; aborting");
                std::process::abort();
            }
        });
        Watchdog { done: Some(done) }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Dropping the sender wakes the watchdog thread with `Disconnected`.
        self.done.take();
    }
}

/// Raises this test process's soft RLIMIT_NOFILE to its hard limit (as the server does at
/// start) and panics, saying why, if that still leaves fewer than `needed` descriptors.
pub fn ensure_nofile(needed: u64) {
    let soft = reactor::process::raise_nofile_limit().expect("raise RLIMIT_NOFILE");
    assert!(
        soft >= needed,
        "this test holds {needed} client sockets but RLIMIT_NOFILE allows {soft}; \
         raise the hard limit (ulimit -Hn) to run it"
    );
}
