//! Provided-buffer rings (`IORING_REGISTER_PBUF_RING`, Linux 5.19): memory the kernel fills
//! when data arrives for a multishot recv, lent to the caller buffer by buffer and given back
//! with a Release store of the ring's tail.
//!
//! The kernel picks a buffer from the ring's head (which it keeps to itself), receives into it,
//! and names it in the CQE (`IORING_CQE_F_BUFFER`, buffer id in the upper 16 bits of the
//! flags). From then until `recycle` the buffer is the caller's: a `lent` bitmap records it, so
//! reading a buffer that is not lent, or recycling one twice, panics instead of racing the
//! kernel. liburing's `io_uring_buf_ring_add`/`_advance` and tokio-rs/io-uring's `buf_ring.rs`
//! do the same steps.

use std::io;
use std::mem;
use std::ptr;
use std::sync::atomic::{AtomicU16, Ordering};

use super::mmap::Mmap;
use super::RawRing;
use crate::uring::abi::{self, BufEntry, BufReg};
use crate::uring::{BufGroup, ProvidedBuf};

impl RawRing {
    /// `IORING_REGISTER_PBUF_RING`: registers a ring of `count` buffers of `size` bytes each as
    /// the next buffer group, and puts every buffer in it.
    pub(crate) fn add_buffer_group(&mut self, count: u16, size: u32) -> io::Result<BufGroup> {
        assert!((1..=32768).contains(&count), "1..=32768 buffers per group");
        assert!(size > 0, "a provided buffer holds at least one byte");
        let group = u16::try_from(self.groups.len()).expect("at most 65536 buffer groups");
        // The kernel wants a power of two below 65536; extra entries simply stay unused.
        let entries = count.next_power_of_two();
        let ring = Mmap::anonymous(usize::from(entries) * mem::size_of::<BufEntry>())?;
        // Populated at once: the kernel hands buffers out in ring order, so under traffic every
        // one is soon touched; paying for them up front makes a group's memory a fixed cost of
        // its thread, visible in RSS from the start, not a slow growth that looks like a leak.
        let storage = Mmap::anonymous_populated(usize::from(count) * size as usize)?;
        let mut reg = BufReg {
            ring_addr: ring.ptr.as_ptr() as u64,
            ring_entries: u32::from(entries),
            bgid: group,
            ..BufReg::default()
        };
        let arg = (&mut reg as *mut BufReg).cast();
        // SAFETY: `reg` is a valid io_uring_buf_reg read during the call. The ring it names is a
        // page-aligned anonymous mapping that `BufRing` keeps mapped until the kernel has let
        // go of it (IORING_UNREGISTER_PBUF_RING in `Drop`), or forever if that fails
        // (io_uring_register(2), IORING_REGISTER_PBUF_RING).
        unsafe { self.register(abi::REGISTER_PBUF_RING, arg, 1) }?;
        let mut buf_ring = BufRing {
            ring,
            storage,
            mask: entries - 1,
            size,
            tail: 0,
            lent: vec![false; usize::from(count)],
            n_lent: 0,
        };
        for bid in 0..count {
            buf_ring.push(bid);
        }
        buf_ring.publish();
        self.groups.push(buf_ring);
        Ok(BufGroup(group))
    }

    /// The bytes the kernel received into a provided buffer it lent us.
    pub(crate) fn provided_bytes(&self, buf: &ProvidedBuf) -> &[u8] {
        let ring = &self.groups[usize::from(buf.group)];
        assert!(
            ring.lent[usize::from(buf.bid)],
            "buffer {} of group {} is not lent out (recycled, or from another ring)",
            buf.bid,
            buf.group
        );
        let len = (buf.len as usize).min(ring.size as usize);
        let start = ring.buffer_ptr(buf.bid);
        // SAFETY: the range is buffer `bid` of `storage` (bid < count, len <= size). The kernel
        // lent it to us (a CQE with F_BUFFER) and cannot pick it again until `recycle` puts it
        // back in the ring, which takes `&mut self` and so cannot run while the returned borrow
        // of `self` lives. Its bytes are initialised: an anonymous mapping starts zeroed
        // (mmap(2)) and the kernel wrote the first `len`.
        unsafe { std::slice::from_raw_parts(start, len) }
    }

    /// Gives a lent buffer back to its ring (and so to the kernel).
    pub(crate) fn recycle(&mut self, buf: ProvidedBuf) {
        let ring = &mut self.groups[usize::from(buf.group)];
        let bid = usize::from(buf.bid);
        assert!(ring.lent[bid], "buffer {} recycled twice", buf.bid);
        ring.lent[bid] = false;
        ring.n_lent -= 1;
        ring.push(buf.bid);
        ring.publish();
    }

    /// Buffers of `group` currently in the ring (registered minus lent to the caller). The
    /// kernel may have taken some of them for CQEs not reaped yet.
    pub(crate) fn buffers_in_ring(&self, group: BufGroup) -> usize {
        let ring = &self.groups[usize::from(group.0)];
        ring.lent.len() - ring.n_lent
    }

    /// Whether `group` names a registered buffer group of this ring.
    pub(crate) fn has_group(&self, group: BufGroup) -> bool {
        usize::from(group.0) < self.groups.len()
    }

    pub(super) fn lend(&mut self, group: u16, bid: u16, res: i32) -> ProvidedBuf {
        let ring = &mut self.groups[usize::from(group)];
        let lent = &mut ring.lent[usize::from(bid)];
        assert!(
            !*lent,
            "the kernel lent buffer {bid} of group {group} twice"
        );
        *lent = true;
        ring.n_lent += 1;
        ProvidedBuf {
            group,
            bid,
            len: res.max(0) as u32,
        }
    }

    /// `IORING_UNREGISTER_PBUF_RING` for every group, then unmaps it; when ops may still be in
    /// flight (`!drained`) or unregistering fails, the memory is leaked instead.
    pub(super) fn release_buffer_groups(&mut self, drained: bool) {
        for (bgid, ring) in mem::take(&mut self.groups).into_iter().enumerate() {
            let mut reg = BufReg {
                bgid: bgid as u16,
                ..BufReg::default()
            };
            let arg = (&mut reg as *mut BufReg).cast();
            // SAFETY: `reg` is a valid io_uring_buf_reg read during the call
            // (io_uring_register(2), IORING_UNREGISTER_PBUF_RING).
            let released =
                drained && unsafe { self.register(abi::UNREGISTER_PBUF_RING, arg, 1) }.is_ok();
            if !released {
                mem::forget(ring);
            }
        }
    }
}

/// A provided-buffer ring: the entry array the kernel consumes from, the buffers' memory, and
/// which buffers are lent to the caller.
///
/// Why a slot we write is never one the kernel has yet to read: at most `count <= entries`
/// buffers exist, each either lent (to the caller, or taken by the kernel for a CQE not yet
/// reaped) or in the ring once; we only push a lent one, so fewer than `entries` entries are
/// unconsumed when we write at `tail`, and the slot at `tail` was consumed long ago.
pub(super) struct BufRing {
    /// `mask + 1` entries of `struct io_uring_buf`, registered with the kernel.
    ring: Mmap,
    /// `lent.len()` buffers of `size` bytes, back to back.
    storage: Mmap,
    mask: u16,
    size: u32,
    /// Our copy of the tail; the kernel keeps its head to itself.
    tail: u16,
    lent: Vec<bool>,
    n_lent: usize,
}

impl BufRing {
    fn buffer_ptr(&self, bid: u16) -> *const u8 {
        let offset = usize::from(bid) * self.size as usize;
        self.storage.check(offset, self.size as usize);
        self.storage.ptr.as_ptr().wrapping_add(offset)
    }

    /// Writes buffer `bid` into the entry at the tail; `publish` makes it visible.
    fn push(&mut self, bid: u16) {
        let entry = self
            .ring
            .ptr
            .as_ptr()
            .cast::<BufEntry>()
            .wrapping_add(usize::from(self.tail & self.mask));
        let addr = self.buffer_ptr(bid) as u64;
        // SAFETY: `tail & mask` < entries, so `entry` lies inside the ring mapping, aligned
        // (page-aligned base, 16-byte entries); the kernel has consumed that slot (see the type's
        // doc) and cannot read it before `publish`. Fields are written one by one so entry 0's
        // `resv`, which is the ring's tail, is never overwritten (io_uring_register(2),
        // IORING_REGISTER_PBUF_RING).
        unsafe {
            ptr::addr_of_mut!((*entry).addr).write(addr);
            ptr::addr_of_mut!((*entry).len).write(self.size);
            ptr::addr_of_mut!((*entry).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        let tail = self
            .ring
            .ptr
            .as_ptr()
            .wrapping_add(abi::BUF_RING_TAIL_OFFSET)
            .cast::<AtomicU16>();
        // SAFETY: byte 14 of the page-aligned ring is entry 0's `resv`, the ring's u16 tail
        // (struct io_uring_buf_ring), 2-aligned and mapped as long as `self`.
        let tail = unsafe { &*tail };
        // Release: the entries written by `push` are visible before the tail that covers them,
        // pairing with the kernel's smp_load_acquire(&br->tail) when it selects a buffer
        // (io_uring/kbuf.c); the same rule as the SQ tail in io_uring(7) and io_uring.c's
        // ordering comment.
        tail.store(self.tail, Ordering::Release);
    }
}
