//! Memory shared across `fork(2)`: an anonymous `MAP_SHARED` mapping of atomic counters.
//!
//! A forked child gets a copy of its parent's memory, so a counter it bumps is invisible to the
//! parent. A mapping made with `MAP_SHARED | MAP_ANONYMOUS` before the fork is the exception:
//! parent and children keep mapping the *same* physical pages (mmap(2): "Updates to the mapping
//! are visible to other processes mapping the same region"), so atomics placed there are shared
//! exactly like atomics shared between threads. That is how the process models
//! (`process-per-conn`, `prefork`) report bytes and messages their children served.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

/// `len` atomic counters, all zero, in a `MAP_SHARED | MAP_ANONYMOUS` mapping that every
/// process forked after its creation shares.
pub struct SharedCounters {
    base: NonNull<AtomicU64>,
    len: usize,
}

// SAFETY: the mapping holds only `AtomicU64`s, which are `Sync`; the struct owns the mapping
// (unmapped once, in `Drop`), so moving or sharing it between threads is as sound as for a
// `Box<[AtomicU64]>`.
unsafe impl Send for SharedCounters {}
// SAFETY: as above: shared access only ever yields `&AtomicU64`.
unsafe impl Sync for SharedCounters {}

impl SharedCounters {
    /// Maps `len` counters (at least one page).
    pub fn new(len: usize) -> io::Result<SharedCounters> {
        let bytes = (len.max(1) * std::mem::size_of::<AtomicU64>()) as libc::size_t;
        // SAFETY: an anonymous mapping touches no existing memory; the kernel picks the address
        // (NULL hint) and returns MAP_FAILED on error (mmap(2)). The pages come zero-filled, and
        // an all-zero AtomicU64 is 0.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<AtomicU64>()).expect("mmap returned NULL");
        Ok(SharedCounters { base, len })
    }

    /// The counters.
    pub fn as_slice(&self) -> &[AtomicU64] {
        // SAFETY: the mapping holds `len` zero-initialised, page-aligned (so 8-byte aligned)
        // AtomicU64s and lives as long as `self`; atomics allow shared access from any process
        // or thread.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), self.len) }
    }
}

impl Drop for SharedCounters {
    fn drop(&mut self) {
        let bytes = self.len.max(1) * std::mem::size_of::<AtomicU64>();
        // SAFETY: `base` and `bytes` are exactly what mmap returned and was asked for, and no
        // reference into the mapping outlives `self` (munmap(2)). Other processes keep their
        // own mapping of the pages.
        unsafe { libc::munmap(self.base.as_ptr().cast(), bytes) };
    }
}
