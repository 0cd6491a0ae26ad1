//! The synchronization primitives the ring and its parking are built from, swapped for
//! [loom]'s model-checked twins under `RUSTFLAGS="--cfg loom"`.
//!
//! Loom runs a test body many times, once per possible interleaving of its threads and per
//! value each relaxed or acquire load may legally return, and fails the test when any of them
//! panics, deadlocks or touches an `UnsafeCell` without a happens-before edge. For that it must
//! see every atomic access, every cell access and every lock, so the code under test names its
//! primitives through this module and never `std::sync` directly (the pattern of tokio's
//! `loom` shim module and crossbeam's `primitive` module).
//!
//! The ring (`ring.rs`), its blocking wrapper (`blocking.rs`) and the per-connection
//! `RunState` (`sched.rs`) go through here. The counters, the pool and core pinning use `std`
//! directly: they are exercised by ordinary threaded tests, and their threads could not run
//! inside a loom model anyway.
//!
//! [loom]: https://docs.rs/loom

#[cfg(loom)]
pub(crate) use loom::{
    cell::UnsafeCell,
    sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize},
    sync::{Condvar, Mutex, MutexGuard},
};

#[cfg(not(loom))]
pub(crate) use std::sync::{
    atomic::{fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize},
    Condvar, Mutex, MutexGuard,
};

/// Tells the processor (or loom's scheduler) that this thread is busy-waiting.
///
/// On x86_64 `spin_loop` emits `pause`, which stops the core from flooding the memory system
/// with speculative loads and lets its hyper-thread sibling run. Under loom a spinning thread
/// must yield instead, or the model checker would explore an unbounded loop.
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// Locks `mutex`, ignoring poisoning.
///
/// The data behind our mutexes is a plain count that no code path can leave half-updated (no
/// code panics while holding the lock), so a poisoned lock still guards a consistent value.
pub(crate) fn lock<S>(mutex: &Mutex<S>) -> MutexGuard<'_, S> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Blocks on `condvar`, ignoring poisoning for the same reason as [`lock`].
pub(crate) fn wait<'a, S>(condvar: &Condvar, guard: MutexGuard<'a, S>) -> MutexGuard<'a, S> {
    condvar
        .wait(guard)
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `std`'s `UnsafeCell` with loom's closure-based API, so `ring.rs` is written once.
///
/// Loom's cell cannot hand out a raw pointer that outlives the access, because it records the
/// start and end of each access to detect data races; `with` and `with_mut` mark both.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    /// Wraps `value`.
    pub(crate) const fn new(value: T) -> UnsafeCell<T> {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a shared raw pointer to the contents.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with a mutable raw pointer to the contents.
    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}
