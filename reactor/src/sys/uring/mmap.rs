//! One mmap(2) mapping owned by a value: io_uring's rings (shared with the kernel at its magic
//! offsets) and our own anonymous memory (provided-buffer rings and their buffers).

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, Ordering};

/// One mmap(2) mapping, unmapped on drop.
pub(super) struct Mmap {
    pub(super) ptr: NonNull<u8>,
    len: usize,
}

impl Mmap {
    /// Maps `len` bytes of a ring at one of io_uring's magic offsets, shared with the kernel.
    pub(super) fn ring(fd: BorrowedFd<'_>, offset: i64, len: usize) -> io::Result<Mmap> {
        let flags = libc::MAP_SHARED | libc::MAP_POPULATE;
        Mmap::new(len, flags, fd.as_raw_fd(), offset)
    }

    /// `len` zeroed bytes of anonymous, page-aligned memory.
    pub(super) fn anonymous(len: usize) -> io::Result<Mmap> {
        Mmap::new(len, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
    }

    /// [`anonymous`](Self::anonymous) memory whose pages are all faulted in now
    /// (`MAP_POPULATE`), so that it is resident, and counted in RSS, from the start rather than
    /// as traffic happens to touch it.
    pub(super) fn anonymous_populated(len: usize) -> io::Result<Mmap> {
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE;
        Mmap::new(len, flags, -1, 0)
    }

    fn new(len: usize, flags: libc::c_int, fd: RawFd, offset: i64) -> io::Result<Mmap> {
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: a new mapping at an address the kernel picks (null hint) cannot alias any
        // existing Rust object; the arguments are plain values (mmap(2)).
        let ptr = unsafe { libc::mmap(ptr::null_mut(), len, prot, flags, fd, offset) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).expect("mmap(2) never maps page 0");
        Ok(Mmap { ptr, len })
    }

    /// Panics unless `[offset, offset + len)` lies inside the mapping.
    pub(super) fn check(&self, offset: usize, len: usize) {
        let end = offset.checked_add(len);
        assert!(
            end.is_some_and(|end| end <= self.len),
            "offset {offset} outside the mapping"
        );
    }

    /// A pointer to a `T` at `offset`, checked to lie inside the mapping.
    pub(super) fn at<T>(&self, offset: u32) -> *mut T {
        self.check(offset as usize, mem::size_of::<T>());
        self.ptr.as_ptr().wrapping_add(offset as usize).cast()
    }

    /// Reads a u32 the kernel set at setup and never changes (a ring's mask or size).
    pub(super) fn read_u32(&self, offset: u32) -> u32 {
        let field = self.at::<AtomicU32>(offset);
        // SAFETY: inside the mapping (checked by `at`) and 4-aligned (the kernel's offsets are).
        unsafe { &*field }.load(Ordering::Relaxed)
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` is a mapping we made and nothing borrows it any more: the rings'
        // raw pointers die with the `RawRing` that owns this (munmap(2)).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
