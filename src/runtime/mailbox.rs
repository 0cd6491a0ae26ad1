//! How another thread reaches a loop that sleeps in `epoll_wait(2)`: a mailbox.
//!
//! A mailbox is a stop flag, an inbox ring of connections, and an eventfd(2) in the loop's epoll
//! set. A sender writes the flag or pushes a connection, then writes the eventfd; the loop wakes,
//! resets the eventfd, and empties the inbox. The order matters: the push happens before the
//! wake, and the loop empties the inbox after the reset, so a connection pushed while the loop
//! was busy is never stranded (at worst the loop wakes once for nothing).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use log::warn;
use pool::Ring;
use reactor::Waker;

use crate::conn::{Conn, Status};

/// A connection handed to a loop by another thread, with what it wants next: one accepted by a
/// listener thread (`listener-pool`) or one coming back from a worker (`reactor-offload`).
pub struct Arrival {
    /// The connection (boxed: the ring moves a pointer, not the whole state).
    pub conn: Box<Conn>,
    /// What it wants next, as its last `serve` (or a new connection's `Wait(READABLE)`) said.
    pub status: Status,
}

/// A loop's mailbox. See the module docs.
pub struct Mailbox {
    stop: AtomicBool,
    waker: Waker,
    inbox: Ring<Arrival>,
}

impl Mailbox {
    /// A mailbox whose inbox holds up to `capacity` connections (at least 2).
    pub fn new(capacity: usize) -> io::Result<Arc<Mailbox>> {
        Ok(Arc::new(Mailbox {
            stop: AtomicBool::new(false),
            waker: Waker::new()?,
            inbox: Ring::new(capacity.max(2)),
        }))
    }

    /// A mailbox for a loop that only ever needs to be told to stop.
    pub fn stop_only() -> io::Result<Arc<Mailbox>> {
        Mailbox::new(2)
    }

    /// Asks the loop to drain and stop.
    pub fn request_stop(&self) {
        // Release pairs with the Acquire load in `stop_requested`: nothing else is published
        // through this flag, but it keeps the reasoning simple.
        self.stop.store(true, Ordering::Release);
        self.wake();
    }

    /// True once [`request_stop`](Mailbox::request_stop) was called.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Hands a connection to the loop. `Err` gives it back when the inbox is full.
    pub fn send(&self, arrival: Arrival) -> Result<(), Arrival> {
        self.inbox.try_push(arrival)?;
        self.wake();
        Ok(())
    }

    /// Takes the next connection handed over, if any (the loop's side).
    pub fn receive(&self) -> Option<Arrival> {
        self.inbox.try_pop()
    }

    /// The eventfd, to register in the loop's epoll set and to reset when it fires.
    pub fn waker(&self) -> &Waker {
        &self.waker
    }

    fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            warn!("eventfd write failed: {e}");
        }
    }
}
