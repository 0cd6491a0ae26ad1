//! One client connection: a state machine without I/O, and the drivers that feed it.
//!
//! The echo logic is written once, in [`core`]: [`Core`] takes bytes in, hands replies out and
//! says what it wants next, and never calls the kernel. A *driver* owns the socket and does the
//! syscalls:
//!
//! | driver | socket | used by |
//! |---|---|---|
//! | [`Conn::serve`] ([`readiness`]) | nonblocking; `recv`/`send` after `epoll_wait(2)` says ready | every epoll model |
//! | [`blocking::serve_blocking`] | blocking with a timeout; one `recv` per turn | `thread-per-conn`, `process-per-conn` |
//! | [`RingConn`] ([`completion`]) | io_uring: a multishot recv into the thread's provided buffers, one send in flight | `uring`, `uring-reuseport` |
//!
//! A model decides only which thread runs a driver, and when. A reader following one connection
//! reads `core.rs` (what happens to the bytes), then the driver its model uses.

pub mod blocking;
pub mod completion;
pub mod core;
pub mod readiness;

use std::cell::RefCell;

pub use self::completion::{recv_limit, RingConn, RingCounters, RingIo, RingStatus, SpareBuffers};
pub use self::core::{
    memory_bound, CloseReason, Core, Costly, Expiry, Limits, Next, Received, State, Stop, Transmit,
    Turn, LINGER_TIME, READ_CHUNK, TURN_WORK_BUDGET,
};
pub use self::readiness::{Conn, Status};

/// Buffers that belong to a thread, not a connection: this is what makes idle connections cost
/// no buffer memory.
pub struct Scratch {
    /// One read.
    pub read: Box<[u8]>,
    /// Line replies of one read, assembled before they are sent.
    pub out: Vec<u8>,
}

impl Scratch {
    /// One read chunk plus room for one chunk of line replies.
    pub fn new() -> Scratch {
        Scratch {
            read: vec![0; READ_CHUNK].into_boxed_slice(),
            out: Vec::with_capacity(READ_CHUNK),
        }
    }
}

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch::new()
    }
}

/// Runs `f` with this thread's scratch buffers (one set per thread, allocated on first use).
pub fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    thread_local! {
        static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::new());
    }
    SCRATCH.with(|scratch| f(&mut scratch.borrow_mut()))
}

#[cfg(test)]
mod tests;
