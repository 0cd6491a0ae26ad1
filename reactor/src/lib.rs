//! `reactor`: a minimal epoll reactor built from raw Linux syscalls.
//!
//! A *reactor* is the loop at the heart of every event-driven server (nginx, Redis, tokio's
//! I/O driver): register many descriptors with the kernel once, sleep until some of them are
//! ready, then *react* by running the nonblocking read or write that will now make progress,
//! never blocking on any single client. The pattern is Douglas Schmidt's "Reactor" (1995);
//! Linux's primitive for it is `epoll(7)`.
//!
//! This crate is the bottom layer of rawloop: every piece the loop needs, each a thin owner of
//! one descriptor, so that a server is just an [`Epoll`], some [`Token`]s and a `match`:
//!
//! ```no_run
//! use reactor::{Epoll, Events, Interest, ListenOptions, TcpListener, Token};
//!
//! let listener = TcpListener::bind("127.0.0.1:7000".parse().unwrap(), &ListenOptions::default())?;
//! let epoll = Epoll::new()?;
//! epoll.add(&listener, Token(0), Interest::READABLE)?;
//! let mut events = Events::with_capacity(256);
//! loop {
//!     epoll.wait(&mut events, None)?;
//!     for event in events.iter() {
//!         if event.token() == Token(0) {
//!             while let Ok((stream, peer)) = listener.accept() {
//!                 // register `stream` with its own token, echo when it is readable...
//!                 # drop((stream, peer));
//!             }
//!         }
//!     }
//! }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! It is deliberately not a framework: there is no task, future or callback, only descriptors
//! and readiness. The application decides what to do with each event.
//!
//! # Layout
//!
//! - `sys` (private): the only module with `unsafe`. A mio-style `syscall!` macro
//!   and one thin safe wrapper per raw libc call, each with a `// SAFETY:` comment citing its man
//!   page; `sys/uring.rs` holds io_uring's syscalls, mapped rings and in-flight table.
//! - [`epoll`]: [`Epoll`], [`Interest`], [`Token`], [`Events`]: the readiness queue, epoll(7).
//! - [`net`]: [`TcpListener`] and [`TcpStream`] from socket(2) up, plus the accept-queue depth
//!   read from `TCP_INFO`.
//! - [`waker`]: [`Waker`], an eventfd(2) that wakes a blocked `epoll_wait` from another thread.
//! - [`signal`]: [`Signals`], SIGINT/SIGTERM/SIGCHLD as epoll events through signalfd(2).
//! - [`timer`]: [`Timer`], timerfd_create(2) timers that are just more descriptors in the set.
//! - [`process`]: fork (refused when multi-threaded), reaping, kill, RLIMIT_NOFILE.
//! - [`shm`]: [`SharedCounters`], atomics in memory that forked children share with their
//!   parent.
//! - [`uring`]: [`uring::Ring`], io_uring(7) from raw syscalls: submission and completion
//!   rings, provided-buffer rings, multishot accept and recv, owned-buffer send and read,
//!   timeouts and cancels, behind a safe API that owns what the kernel touches until the final
//!   completion. Its kernel side (`sys::uring`) holds the mmaps and every `unsafe` block.
//! - [`syscalls`]: opt-in counters of the syscalls made through this crate.
//!
//! # Raw libc, or nix
//!
//! The calls that are the lesson are made raw, through `libc`: epoll, `accept4` and socket
//! options, eventfd, signalfd, timerfd, `TCP_INFO`, io_uring, shared memory. Those whose raw form
//! teaches nothing (`fork`, `kill`, `getpid`, signal masks, `prctl`, rlimits) go through the
//! `nix` crate. The line between `sys` and the other modules is drawn by `unsafe`, not by the
//! crate called: whatever needs `unsafe` (every raw call, and nix's `fork`) lives in `sys`
//! behind a `// SAFETY:` comment, and a safe nix call is made in the module that owns its
//! concept ([`process`], [`signal`]), where a reader looks for it. The `sys` module doc says
//! which process calls stay raw and why.
//!
//! Linux only. Every descriptor is an [`OwnedFd`](std::os::fd::OwnedFd) created with
//! `CLOEXEC`.

#![deny(unsafe_code)]
#![deny(missing_docs)]

#[allow(unsafe_code)]
mod sys;

pub mod epoll;
pub mod net;
pub mod process;
pub mod shm;
pub mod signal;
pub mod syscalls;
pub mod timer;
pub mod uring;
pub mod waker;

pub use epoll::{Epoll, Event, Events, Interest, Token};
pub use net::{somaxconn, AcceptQueue, ListenOptions, TcpListener, TcpStream};
pub use shm::SharedCounters;
pub use signal::{Signal, Signals};
pub use std::net::Shutdown;
pub use timer::Timer;
pub use waker::Waker;
