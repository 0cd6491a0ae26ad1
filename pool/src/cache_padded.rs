//! `CachePadded<T>`: a value alone on its own cache lines, so that two hot atomics written by
//! different cores never share a line ("false sharing").
//!
//! When core A writes a line that core B also writes, the cache-coherence protocol (MESI) must
//! move the line's ownership back and forth between their private caches on every write, tens
//! of nanoseconds each time, even if A and B touch different bytes of it. The ring's `head`
//! (written by consumers) and `tail` (written by producers) are the textbook case; so are the
//! per-thread slots of `ShardedCounter` and the per-worker statistics of the pool.
//!
//! Why 128 bytes and not the 64-byte cache line of x86_64? Since Sandy Bridge, Intel's L2
//! "spatial prefetcher" (the adjacent-line prefetcher) fetches cache lines in aligned pairs:
//! touching one 64-byte line pulls its 128-byte buddy in too, so two values in the same
//! 128-byte block still ping-pong between cores, only a little more slowly. Intel's
//! optimization manual (section 3.7.3, "Hardware Prefetching for Second-Level Cache") describes
//! the prefetcher; crossbeam-utils' `CachePadded` pads to 128 bytes on x86_64 for this reason,
//! and on aarch64 and powerpc64, whose big cores have 128-byte lines outright. We copy that
//! choice (crossbeam-utils `src/cache_padded.rs`) rather than depend on the crate, because this
//! wrapper is ten lines and hand-rolling the ring's building blocks is what `pool` is for.

use std::fmt;
use std::ops::{Deref, DerefMut};

/// Pads and aligns `T` to the length of a cache-line pair (128 bytes on x86_64, aarch64 and
/// powerpc64; 64 bytes elsewhere).
///
/// ```
/// use pool::CachePadded;
/// let padded = CachePadded::new(7u64);
/// assert_eq!(*padded, 7);
/// assert!(std::mem::align_of_val(&padded) >= 64);
/// ```
#[cfg_attr(
    any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "powerpc64"
    ),
    repr(align(128))
)]
#[cfg_attr(
    not(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "powerpc64"
    )),
    repr(align(64))
)]
#[derive(Default)]
pub struct CachePadded<T> {
    value: T,
}

impl<T> CachePadded<T> {
    /// Wraps `value` in its own cache-line pair.
    pub const fn new(value: T) -> CachePadded<T> {
        CachePadded { value }
    }

    /// Unwraps the value.
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> Deref for CachePadded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> DerefMut for CachePadded<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: fmt::Debug> fmt::Debug for CachePadded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CachePadded").field(&self.value).finish()
    }
}
