//! The runtime every model shares: the pieces a server needs around its connections.
//!
//! A model file wires these pieces and the connection drivers of [`crate::conn`] together; it
//! never reaches into another model's file. Each piece is written once:
//!
//! - [`event_loop`]: the single-threaded epoll loop (listener, mailbox, signals, tick,
//!   connections), run as a standalone server or as a worker under a supervisor, with a
//!   [`event_loop::Hook`] a model may plug in (`reactor-offload` plugs in its pool).
//! - [`supervisor`]: the main thread of the threaded models: signals, stats, orderly stop.
//! - [`accept`]: the accept gate: batches, `--max-conns`, and surviving EMFILE.
//! - [`mailbox`]: how other threads reach a loop blocked in `epoll_wait(2)`.
//! - [`backlog`]: items a full ring refused, retried, never dropped.
//! - [`shutdown`]: the drain deadline and the "a second signal exits at once" rule.
//! - [`tally`]: per-worker counts (connections taken, messages served) for the stats line.
//! - [`uring_loop`]: the single-threaded io_uring loop, the completion twin of [`event_loop`]
//!   (`uring`, `uring-reuseport`).
//!
//! And, here, the names every loop agrees on: epoll tokens, thread names, the tick.

pub mod accept;
pub mod backlog;
pub mod event_loop;
pub mod mailbox;
pub mod shutdown;
pub mod supervisor;
pub mod tally;
pub mod uring_loop;

use std::time::Duration;

use reactor::Token;

/// Token of a loop's listening socket.
pub const LISTENER: Token = Token(0);
/// Token of a loop's [`mailbox::Mailbox`] eventfd.
pub const MAILBOX: Token = Token(1);
/// Token of the signalfd.
pub const SIGNALS: Token = Token(2);
/// Token of the tick timerfd.
pub const TICK: Token = Token(3);
/// Connection tokens start here; below are the loop's own descriptors.
const CONN_BASE: u64 = 16;

/// The epoll token of the connection stored under `key`.
pub fn conn_token(key: usize) -> Token {
    Token(CONN_BASE + key as u64)
}

/// The connection key of `token`, or `None` for one of the loop's own descriptors.
pub fn conn_key(token: Token) -> Option<usize> {
    token.0.checked_sub(CONN_BASE).map(|key| key as usize)
}

/// The token of connection number `id` in slot `key`: the key as [`conn_token`] in the low
/// 32 bits, the number in the high 32. A completion loop names connections this way, so that
/// a completion can never be taken for a newer connection in a reused slot.
pub fn numbered_conn_token(key: usize, id: u32) -> Token {
    Token(conn_token(key).0 | (u64::from(id) << 32))
}

/// The slot and connection number of a [`numbered_conn_token`]; `None` for the loop's own
/// tokens.
pub fn numbered_conn_key(token: Token) -> Option<(usize, u32)> {
    let key = conn_key(Token(token.0 & u64::from(u32::MAX)))?;
    Some((key, (token.0 >> 32) as u32))
}

/// How often a loop wakes for housekeeping: idle sweep, accept un-pause, stats.
pub const TICK_PERIOD: Duration = Duration::from_millis(250);

/// Thread names. Linux keeps 15 bytes of a thread name (`pthread_setname_np(3)`), and `top`
/// and `perf` show only those, so they are short enough to tell the threads apart there.
pub mod names {
    /// The pool's workers: `rawloop-pool-<i>`.
    pub const POOL: &str = "rawloop-pool";
    /// `reactor-pool`'s reactor thread.
    pub const REACTOR: &str = "rawloop-reactor";
    /// A dedicated listener thread.
    pub const ACCEPT: &str = "rawloop-accept";
    /// A `thread-per-conn` connection thread.
    pub const CONN: &str = "rawloop-conn";
    /// The supervisor's helper that joins the worker threads.
    pub const JOINER: &str = "rawloop-joiner";

    /// The name of event loop number `i` of a multi-loop model: `rawloop-loop-<i>`.
    pub fn event_loop(i: usize) -> String {
        format!("rawloop-loop-{i}")
    }
}
