//! Helpers shared by the `pool` integration tests: spinning push/pop, a drop-counting item,
//! and a watchdog that turns a hang into a test failure.
#![allow(dead_code)] // Each test binary uses a different subset.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use pool::Ring;

/// Pushes `value`, yielding while the ring is full.
pub fn push_spinning<T>(ring: &Ring<T>, mut value: T) {
    while let Err(back) = ring.try_push(value) {
        value = back;
        thread::yield_now();
    }
}

/// Pops a value, yielding while the ring is empty.
pub fn pop_spinning<T>(ring: &Ring<T>) -> T {
    loop {
        if let Some(value) = ring.try_pop() {
            return value;
        }
        thread::yield_now();
    }
}

/// An item that counts its drops in a shared counter.
#[derive(Debug)]
pub struct DropCounter<'a>(&'a AtomicUsize);

impl<'a> DropCounter<'a> {
    pub fn new(drops: &'a AtomicUsize) -> Self {
        DropCounter(drops)
    }
}

impl Drop for DropCounter<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Relaxed);
    }
}

/// Runs `f` on its own thread and fails the test if it does not finish within `limit`:
/// a lost wakeup or a stuck shutdown shows up as a clear failure, not a hung test run.
pub fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, finished) = mpsc::channel();
    let worker = thread::spawn(move || {
        let value = f();
        let _ = done.send(());
        value
    });
    match finished.recv_timeout(limit) {
        Ok(()) => worker.join().expect("test body panicked"),
        // The body panicked: join to propagate its message.
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("did not finish within {limit:?}"),
    }
}

/// Polls `condition` every millisecond until it holds, failing after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}
