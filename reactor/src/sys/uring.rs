//! io_uring's kernel side, from raw syscalls: `io_uring_setup(2)`, `io_uring_enter(2)` and
//! `io_uring_register(2)`, the rings they share with the kernel through mmap(2), and the table
//! that keeps every piece of memory the kernel may touch alive until the operation's final
//! completion.
//!
//! This family is bigger than the others in `sys` because io_uring *shares memory* with the
//! kernel instead of passing it for the length of one call. An SQE carries raw addresses (a send
//! buffer, a timespec) that the kernel reads or writes later, asynchronously; a provided-buffer
//! ring hands the kernel memory to fill whenever data arrives. Whether those addresses stay valid
//! is a memory-safety question, so the code that guarantees it sits here, next to the `unsafe`
//! blocks that rely on it: the in-flight table (`sys/uring/slab.rs`), the buffer rings' lending
//! bookkeeping (`sys/uring/buf_ring.rs`), the mappings (`sys/uring/mmap.rs`) and the
//! leak-on-doubt `Drop` below. Policy (flag fallbacks, probing, `EINTR`, counting, overflow
//! draining) lives one level up, in `crate::uring`.
//!
//! The memory-ordering rules come from io_uring(7) and from the comment at the top of the
//! kernel's `io_uring/io_uring.c`, quoted at each load and store that implements them:
//!
//! - submit: load the SQ head with Acquire, write SQEs, store the SQ tail with Release, enter;
//! - reap: load the CQ tail with Acquire, read CQEs, store the CQ head with Release;
//! - buffer ring: write entries, store the 16-bit tail (entry 0's `resv`) with Release.
//!
//! The ring layout and the steps follow tokio-rs/io-uring (`src/lib.rs`, `squeue.rs`,
//! `cqueue.rs`, `types.rs`) and liburing's `src/setup.c`, rewritten in our own terms.

mod buf_ring;
mod mmap;
mod slab;

use std::collections::VecDeque;
use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::owned;
use crate::epoll::Token;
use crate::uring::abi::{self, Cqe, GeteventsArg, Params, Probe, Sqe, Timespec};
use crate::uring::{Completion, OpId, OpKind};
use buf_ring::BufRing;
use mmap::Mmap;
use slab::Slab;

/// `io_uring_setup(entries, params)`: a new ring; `params` comes back with the offsets of every
/// ring field and the kernel's feature bits. The kernel always creates the ring's descriptor
/// with `O_CLOEXEC` (`io_uring_install_fd` in io_uring.c), so it needs no flag for that.
pub(crate) fn io_uring_setup(entries: u32, params: &mut Params) -> io::Result<OwnedFd> {
    // SAFETY: `params` is a valid, writable io_uring_params; the kernel reads the sizes and flags
    // we set and writes back sizes, offsets and features, nothing beyond the struct
    // (io_uring_setup(2)).
    let fd = syscall!(unsafe {
        libc::syscall(libc::SYS_io_uring_setup, entries, params as *mut Params)
    })?;
    Ok(owned(fd as RawFd))
}

/// Operations whose memory a dropped ring leaked because their final CQE never came.
pub(crate) static LEAKED_OPS: AtomicU64 = AtomicU64::new(0);

/// What the kernel may touch on behalf of one operation until its final CQE.
enum Owned {
    Nothing,
    /// A send's source or a read's destination (the read fills the spare capacity).
    Bytes(Vec<u8>),
    /// A timeout's `struct __kernel_timespec`, boxed so its address is stable. Held, never
    /// read: it only has to outlive the kernel's use of it.
    Time(#[allow(dead_code)] Box<Timespec>),
}

/// One submitted operation, as the in-flight table keeps it.
struct InFlight {
    token: Token,
    kind: OpKind,
    owned: Owned,
    /// The buffer group a multishot recv selects from, to lend the buffers its CQEs name.
    group: Option<u16>,
}

/// An operation to submit, with the resources it hands to the ring. Raw descriptors are read
/// by the kernel when the SQE is submitted (at the next enter), not when it is pushed.
pub(crate) enum Op {
    Nop,
    AcceptMulti {
        fd: RawFd,
    },
    RecvMulti {
        fd: RawFd,
        group: u16,
        /// Total bytes after which the recv ends (0: no limit).
        limit: u32,
    },
    Send {
        fd: RawFd,
        buf: Vec<u8>,
        offset: usize,
    },
    Read {
        fd: RawFd,
        buf: Vec<u8>,
    },
    Close {
        fd: OwnedFd,
    },
    Timeout {
        after: Duration,
        multishot: bool,
        count: u32,
    },
    Cancel {
        target: OpId,
    },
    CancelFd {
        fd: RawFd,
    },
    CancelAny,
}

/// An io_uring instance: its descriptor, its mapped SQ and CQ rings, the SQEs it has not yet
/// handed to the kernel, the in-flight table, and its provided-buffer rings.
///
/// `!Send` and `!Sync` (it holds raw pointers): the registered-ring index is private to the
/// thread that registered it, and `SINGLE_ISSUER`/`DEFER_TASKRUN` bind the ring to its creator.
pub(crate) struct RawRing {
    fd: OwnedFd,
    /// The first argument of io_uring_enter: the ring's fd, or its registered index.
    enter_fd: u32,
    /// `IORING_ENTER_REGISTERED_RING` once the fd is registered, else 0.
    enter_flags: u32,
    registered_index: Option<u32>,
    sq: SubmissionQueue,
    cq: CompletionQueue,
    /// SQEs prepared while the SQ ring was full, written into it by `flush_sq`.
    overflow_sqes: VecDeque<Sqe>,
    ops: Slab,
    groups: Vec<BufRing>,
    // The mappings come last: the raw pointers in `sq` and `cq` point into them.
    _sqes_map: Mmap,
    _cq_map: Option<Mmap>,
    _rings_map: Mmap,
}

struct SubmissionQueue {
    head: *const AtomicU32,
    tail: *const AtomicU32,
    flags: *const AtomicU32,
    mask: u32,
    entries: u32,
    sqes: *mut Sqe,
    /// Our copy of the tail: SQEs below it are written, published or not.
    local_tail: u32,
}

struct CompletionQueue {
    head: *const AtomicU32,
    tail: *const AtomicU32,
    mask: u32,
    entries: u32,
    cqes: *const Cqe,
    /// Our copy of the head: CQEs below it are consumed.
    local_head: u32,
}

impl RawRing {
    /// Maps the rings of a descriptor returned by [`io_uring_setup`] with these `params`, and
    /// fills the SQ index array once as the identity (SQE slot i is always array entry i).
    pub(crate) fn map(fd: OwnedFd, p: &Params) -> io::Result<RawRing> {
        let sq_len = p.sq_off.array as usize + p.sq_entries as usize * mem::size_of::<u32>();
        let cq_len = p.cq_off.cqes as usize + p.cq_entries as usize * mem::size_of::<Cqe>();
        // io_uring_setup(2): with IORING_FEAT_SINGLE_MMAP one mapping at IORING_OFF_SQ_RING,
        // as long as the longer ring, serves both; otherwise the CQ ring has its own.
        let single = p.features & abi::FEAT_SINGLE_MMAP != 0;
        let rings_len = if single { sq_len.max(cq_len) } else { sq_len };
        let rings_map = Mmap::ring(fd.as_fd(), abi::OFF_SQ_RING, rings_len)?;
        let cq_map = match single {
            true => None,
            false => Some(Mmap::ring(fd.as_fd(), abi::OFF_CQ_RING, cq_len)?),
        };
        let sqe_len = p.sq_entries as usize * mem::size_of::<Sqe>();
        let sqes_map = Mmap::ring(fd.as_fd(), abi::OFF_SQES, sqe_len)?;
        let cq_base = cq_map.as_ref().unwrap_or(&rings_map);

        let sq = SubmissionQueue {
            head: rings_map.at(p.sq_off.head),
            tail: rings_map.at(p.sq_off.tail),
            flags: rings_map.at(p.sq_off.flags),
            mask: rings_map.read_u32(p.sq_off.ring_mask),
            entries: rings_map.read_u32(p.sq_off.ring_entries),
            sqes: sqes_map.at::<Sqe>(0),
            local_tail: rings_map.read_u32(p.sq_off.tail),
        };
        let cq = CompletionQueue {
            head: cq_base.at(p.cq_off.head),
            tail: cq_base.at(p.cq_off.tail),
            mask: cq_base.read_u32(p.cq_off.ring_mask),
            entries: cq_base.read_u32(p.cq_off.ring_entries),
            cqes: cq_base.at::<Cqe>(p.cq_off.cqes),
            local_head: cq_base.read_u32(p.cq_off.head),
        };
        let array = rings_map.at::<u32>(p.sq_off.array);
        rings_map.check(
            p.sq_off.array as usize,
            sq.entries as usize * mem::size_of::<u32>(),
        );
        for i in 0..sq.entries {
            // SAFETY: `array` has `entries` u32 slots inside `rings_map` (checked above, and
            // io_uring_setup(2) sizes it so); no SQE is submitted yet, so the kernel is not
            // reading it.
            unsafe { array.add(i as usize).write(i) };
        }
        let fd_number = fd.as_raw_fd() as u32;
        Ok(RawRing {
            fd,
            enter_fd: fd_number,
            enter_flags: 0,
            registered_index: None,
            sq,
            cq,
            overflow_sqes: VecDeque::new(),
            ops: Slab::default(),
            groups: Vec::new(),
            _sqes_map: sqes_map,
            _cq_map: cq_map,
            _rings_map: rings_map,
        })
    }

    /// The SQ and CQ sizes the kernel chose (rounded up to powers of two, maybe clamped).
    pub(crate) fn sizes(&self) -> (u32, u32) {
        (self.sq.entries, self.cq.entries)
    }

    /// `IORING_REGISTER_PROBE`: which opcodes this kernel supports.
    pub(crate) fn probe(&self) -> io::Result<Box<Probe>> {
        // The kernel insists on a zeroed probe (EINVAL otherwise).
        let mut probe = Box::new(Probe {
            last_op: 0,
            ops_len: 0,
            resv: 0,
            resv2: [0; 3],
            ops: [abi::ProbeOp::default(); abi::PROBE_OPS],
        });
        let arg = (&mut *probe as *mut Probe).cast();
        // SAFETY: `probe` is a zeroed io_uring_probe with room for PROBE_OPS ops, the nr_args we
        // pass; the kernel writes at most that many entries, during the call only
        // (io_uring_register(2), IORING_REGISTER_PROBE).
        unsafe { self.register(abi::REGISTER_PROBE, arg, abi::PROBE_OPS as u32) }?;
        Ok(probe)
    }

    /// `IORING_REGISTER_RING_FDS`: from now on io_uring_enter names the ring by a small index
    /// in this thread's table instead of its fd, which spares the kernel an fdget/fdput on
    /// every call. The index is valid in the registering thread only.
    pub(crate) fn register_ring_fd(&mut self) -> io::Result<()> {
        let mut update = abi::RsrcUpdate {
            offset: u32::MAX, // "pick a free slot and tell me which"
            resv: 0,
            data: self.fd.as_raw_fd() as u64,
        };
        let arg = (&mut update as *mut abi::RsrcUpdate).cast();
        // SAFETY: one valid io_uring_rsrc_update, read and written back (its offset) during the
        // call (io_uring_register(2), IORING_REGISTER_RING_FDS).
        unsafe { self.register(abi::REGISTER_RING_FDS, arg, 1) }?;
        self.registered_index = Some(update.offset);
        self.enter_fd = update.offset;
        self.enter_flags = abi::ENTER_REGISTERED_RING;
        Ok(())
    }

    /// Prepares `op` as an SQE whose `user_data` names its slot in the in-flight table, which
    /// now holds everything the kernel may touch. The SQE goes into the SQ ring if there is
    /// room, else into a queue that [`flush_sq`](Self::flush_sq) drains; the kernel sees it at
    /// the next enter.
    pub(crate) fn push(&mut self, op: Op, token: Token) -> OpId {
        let (mut sqe, kind, owned, group) = encode(op);
        let id = self.ops.insert(InFlight {
            token,
            kind,
            owned,
            group,
        });
        sqe.user_data = id.0;
        if self.overflow_sqes.is_empty() && self.sq_space() > 0 {
            self.write_sqe(sqe);
        } else {
            self.overflow_sqes.push_back(sqe);
        }
        id
    }

    /// SQEs prepared but not yet in the SQ ring (it was full).
    pub(crate) fn queued(&self) -> usize {
        self.overflow_sqes.len()
    }

    /// Moves queued SQEs into the SQ ring while it has room, publishes the tail, and returns
    /// how many SQEs the ring holds that the kernel has not consumed: `to_submit` for the next
    /// enter.
    pub(crate) fn flush_sq(&mut self) -> u32 {
        while self.sq_space() > 0 {
            let Some(sqe) = self.overflow_sqes.pop_front() else {
                break;
            };
            self.write_sqe(sqe);
        }
        // SAFETY: `tail` points into `_rings_map`, mapped for as long as `self` lives.
        let tail = unsafe { &*self.sq.tail };
        // Release: every SQE written above is visible before the new tail is; io_uring(7)'s
        // submission example ends with `atomic_store_release(sqring->tail, tail)`. io_uring.c:
        // "the application must use an appropriate smp_wmb() before writing the SQ tail
        // (ordering SQ entry stores with the tail store), which pairs with smp_load_acquire in
        // io_get_sqring (smp_store_release to store the tail will do)". Without SQPOLL the
        // kernel reads the tail only inside our own io_uring_enter, so this is belt and braces;
        // on x86 it is a plain store.
        tail.store(self.sq.local_tail, Ordering::Release);
        self.sq.local_tail.wrapping_sub(self.sq_head())
    }

    /// `io_uring_enter(fd, to_submit, min_complete, flags, arg)`. `getevents` adds
    /// `IORING_ENTER_GETEVENTS` (wait for `min_complete` CQEs, and run deferred completion
    /// work); a `timeout` travels in a `struct io_uring_getevents_arg` (`IORING_ENTER_EXT_ARG`).
    pub(crate) fn enter(
        &mut self,
        to_submit: u32,
        min_complete: u32,
        getevents: bool,
        timeout: Option<Duration>,
    ) -> io::Result<u32> {
        let mut flags = self.enter_flags;
        if getevents {
            flags |= abi::ENTER_GETEVENTS;
        }
        let ts = timeout.map(Timespec::from);
        let arg = ts.as_ref().map(|ts| GeteventsArg {
            ts: ts as *const Timespec as u64,
            ..GeteventsArg::default()
        });
        let (arg_ptr, arg_len) = match &arg {
            Some(arg) => {
                flags |= abi::ENTER_EXT_ARG;
                let ptr: *const GeteventsArg = arg;
                (ptr.cast::<libc::c_void>(), mem::size_of::<GeteventsArg>())
            }
            None => (ptr::null(), 0),
        };
        // SAFETY: every SQE the kernel may consume (between its head and the tail published by
        // `flush_sq`) was written by `push`, whose addresses point into resources held by
        // `self.ops` until the op's final CQE: `complete` is the only place that releases them,
        // and `Drop` leaks them if any op is unfinished. `arg` and `ts` live on this frame for
        // the whole call and the kernel reads them during it only (io_uring_enter(2),
        // IORING_ENTER_EXT_ARG). A registered index is only used on the registering thread:
        // `RawRing` is `!Send`.
        let n = syscall!(unsafe {
            libc::syscall(
                libc::SYS_io_uring_enter,
                self.enter_fd,
                to_submit,
                min_complete,
                flags,
                arg_ptr,
                arg_len,
            )
        })?;
        Ok(n as u32)
    }

    /// The next CQE from the CQ ring, if any.
    pub(crate) fn pop_cqe(&mut self) -> Option<Cqe> {
        // SAFETY: `tail` and `head` point into a ring mapping that lives as long as `self`.
        let (tail, head) = unsafe { (&*self.cq.tail, &*self.cq.head) };
        // Acquire: the CQEs below the tail are fully written before we read them; io_uring(7),
        // "Reading completion events": `atomic_load_acquire(cqring->tail)`. io_uring.c:
        // "After the application reads the CQ ring tail, it must use an appropriate smp_rmb()
        // to pair with the smp_wmb() the kernel uses before writing the tail (using
        // smp_load_acquire to read the tail will do)".
        if self.cq.local_head == tail.load(Ordering::Acquire) {
            return None;
        }
        let slot = (self.cq.local_head & self.cq.mask) as usize;
        // SAFETY: `slot` < cq entries, the size of the CQE array in the mapping; the entry is
        // below the tail we loaded with Acquire, so the kernel finished writing it, and it will
        // not overwrite it before we move the head past it.
        let cqe = unsafe { self.cq.cqes.add(slot).read() };
        self.cq.local_head = self.cq.local_head.wrapping_add(1);
        // Release: our read of the CQE above happens before the kernel may reuse its slot;
        // io_uring(7): `atomic_store_release(cqring->head, head)`. io_uring.c: "It also needs a
        // smp_mb() before updating CQ head (ordering the entry load(s) with the head store) ...
        // (smp_store_release to store head will do)".
        head.store(self.cq.local_head, Ordering::Release);
        Some(cqe)
    }

    /// Whether the kernel flags CQEs waiting in its overflow list (`IORING_SQ_CQ_OVERFLOW`).
    pub(crate) fn cq_overflowed(&self) -> bool {
        // SAFETY: `flags` points into `_rings_map`, mapped for as long as `self` lives.
        let flags = unsafe { &*self.sq.flags };
        // Relaxed: the flag is only a hint that an io_uring_enter(GETEVENTS) would move CQEs
        // into the ring; we read no data under it, and that syscall orders whatever follows.
        flags.load(Ordering::Relaxed) & abi::SQ_CQ_OVERFLOW != 0
    }

    /// Ops whose final CQE has not arrived yet.
    pub(crate) fn in_flight(&self) -> usize {
        self.ops.live
    }

    /// Turns a CQE into a [`Completion`]: the caller's token, the result, and, on the op's
    /// final CQE (no `IORING_CQE_F_MORE`), the resources the ring held for it. A CQE carrying
    /// `IORING_CQE_F_BUFFER` lends the named provided buffer to the caller. `None` for a CQE
    /// that names no live op (never expected; logged).
    pub(crate) fn complete(&mut self, cqe: Cqe) -> Option<Completion> {
        let id = OpId(cqe.user_data);
        let Some(op) = self.ops.get(id) else {
            log::warn!("io_uring: CQE for unknown user_data {:#x}", cqe.user_data);
            return None;
        };
        let (token, kind, group) = (op.token, op.kind, op.group);
        let provided = (cqe.flags & abi::CQE_F_BUFFER != 0).then(|| {
            let bid = (cqe.flags >> abi::CQE_BUFFER_SHIFT) as u16;
            let group = group.expect("the kernel chose a buffer for an op without a group");
            self.lend(group, bid, cqe.res)
        });
        // accept(2)'s result is a new descriptor, ours from this moment (SOCK_CLOEXEC).
        let accepted = (kind == OpKind::Accept && cqe.res >= 0).then(|| owned(cqe.res));
        let mut buf = None;
        if cqe.flags & abi::CQE_F_MORE == 0 {
            let op = self.ops.remove(id).expect("looked up above");
            buf = match op.owned {
                Owned::Bytes(bytes) if kind == OpKind::Read => Some(finish_read(bytes, cqe.res)),
                Owned::Bytes(bytes) => Some(bytes),
                Owned::Nothing | Owned::Time(_) => None,
            };
        }
        Some(Completion {
            id,
            token,
            kind,
            res: cqe.res,
            flags: cqe.flags,
            buf,
            provided,
            accepted,
        })
    }

    fn sq_head(&self) -> u32 {
        // SAFETY: `head` points into `_rings_map`, mapped for as long as `self` lives.
        let head = unsafe { &*self.sq.head };
        // Acquire: once the head has moved past a slot, the kernel has finished reading that
        // SQE and we may overwrite it (io_uring(7) leaves barriers to the kernel's comment).
        // io_uring.c: "it needs a barrier ordering the SQ head
        // load before writing new SQ entries (smp_load_acquire to read head will do)".
        head.load(Ordering::Acquire)
    }

    fn sq_space(&self) -> u32 {
        self.sq.entries - self.sq.local_tail.wrapping_sub(self.sq_head())
    }

    fn write_sqe(&mut self, sqe: Sqe) {
        debug_assert!(self.sq_space() > 0);
        let slot = (self.sq.local_tail & self.sq.mask) as usize;
        // SAFETY: `slot` < sq entries, the size of the SQE array mapping; there is space, so the
        // slot lies below the head we loaded with Acquire and the kernel is done with it; it
        // cannot read the new SQE before `flush_sq` publishes the tail.
        unsafe { self.sq.sqes.add(slot).write(sqe) };
        self.sq.local_tail = self.sq.local_tail.wrapping_add(1);
    }

    /// # Safety
    ///
    /// `arg` must point to what `opcode` expects, `nr_args` entries of it, valid for the
    /// kernel's reads and writes during the call; memory the registration lets the kernel keep
    /// using afterwards (a buffer ring) must stay valid until it is unregistered.
    unsafe fn register(
        &self,
        opcode: u32,
        arg: *mut libc::c_void,
        nr_args: u32,
    ) -> io::Result<i32> {
        // SAFETY: the caller vouches for `arg` (io_uring_register(2)); `fd` is our open ring.
        let rc = syscall!(unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                self.fd.as_raw_fd(),
                opcode,
                arg,
                nr_args,
            )
        })?;
        Ok(rc as i32)
    }
}

impl Drop for RawRing {
    /// Frees what the kernel is done with and leaks the rest: a leak is safe, freeing memory the
    /// kernel may still write is not. `crate::uring::Ring` cancels and drains every op first, so
    /// normally nothing is leaked.
    fn drop(&mut self) {
        let drained = self.ops.live == 0;
        if !drained {
            log::warn!(
                "io_uring: dropped with {} ops in flight; leaking their memory",
                self.ops.live
            );
            mem::forget(mem::take(&mut self.ops.slots));
        }
        self.release_buffer_groups(drained);
        if let Some(index) = self.registered_index {
            let mut update = abi::RsrcUpdate {
                offset: index,
                ..abi::RsrcUpdate::default()
            };
            let arg = (&mut update as *mut abi::RsrcUpdate).cast();
            // SAFETY: one valid io_uring_rsrc_update read during the call; this is the thread
            // that registered the index (`RawRing` is `!Send`). Without it the registered file
            // reference would keep the ring alive until the thread exits.
            let _ = unsafe { self.register(abi::UNREGISTER_RING_FDS, arg, 1) };
        }
    }
}

/// Builds the SQE for `op` (all but `user_data`) and separates what the ring must own.
fn encode(op: Op) -> (Sqe, OpKind, Owned, Option<u16>) {
    let mut sqe = Sqe::default();
    let (kind, owned) = match op {
        Op::Send { fd, buf, offset } => {
            assert!(offset <= buf.len(), "send offset {offset} past the end");
            sqe.opcode = abi::OP_SEND;
            sqe.fd = fd;
            // The heap block of a Vec does not move when the Vec does.
            sqe.addr = buf.as_ptr().wrapping_add(offset) as u64;
            sqe.len = (buf.len() - offset).min(u32::MAX as usize) as u32;
            sqe.op_flags = libc::MSG_NOSIGNAL as u32;
            (OpKind::Send, Owned::Bytes(buf))
        }
        Op::Read { fd, mut buf } => {
            sqe.opcode = abi::OP_READ;
            sqe.fd = fd;
            sqe.addr = buf.spare_capacity_mut().as_mut_ptr() as u64;
            sqe.len = (buf.capacity() - buf.len()).min(u32::MAX as usize) as u32;
            sqe.off = u64::MAX; // -1: the file position, like read(2) (IORING_FEAT_RW_CUR_POS)
            (OpKind::Read, Owned::Bytes(buf))
        }
        Op::Timeout {
            after,
            multishot,
            count,
        } => {
            let ts = Box::new(Timespec::from(after));
            sqe.opcode = abi::OP_TIMEOUT;
            sqe.addr = &*ts as *const Timespec as u64;
            sqe.len = 1;
            sqe.off = u64::from(count); // 0: a pure timer; with MULTISHOT, the repeats
            sqe.op_flags = if multishot { abi::TIMEOUT_MULTISHOT } else { 0 };
            (OpKind::Timeout, Owned::Time(ts))
        }
        Op::Close { fd } => {
            sqe.opcode = abi::OP_CLOSE;
            sqe.fd = fd.into_raw_fd(); // the kernel closes it now
            (OpKind::Close, Owned::Nothing)
        }
        op => return encode_without_memory(op),
    };
    (sqe, kind, owned, None)
}

/// The operations that hand the kernel no memory of ours (provided buffers are the ring's).
fn encode_without_memory(op: Op) -> (Sqe, OpKind, Owned, Option<u16>) {
    let mut sqe = Sqe::default();
    let mut group = None;
    let kind = match op {
        Op::Nop => {
            sqe.opcode = abi::OP_NOP;
            OpKind::Nop
        }
        Op::AcceptMulti { fd } => {
            sqe.opcode = abi::OP_ACCEPT;
            sqe.fd = fd;
            sqe.ioprio = abi::ACCEPT_MULTISHOT;
            // accept4(2) flags for every accepted socket; no peer address is asked for.
            sqe.op_flags = (libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) as u32;
            OpKind::Accept
        }
        Op::RecvMulti {
            fd,
            group: bgid,
            limit,
        } => {
            sqe.opcode = abi::OP_RECV;
            sqe.fd = fd;
            sqe.ioprio = abi::RECV_MULTISHOT;
            // Linux 6.17 ("io_uring/net: support multishot receive len cap"): the recv ends,
            // without F_MORE, once it has received `optlen` bytes in total. Older kernels
            // reject a non-zero value with EINVAL (it was `file_index`), hence the probe.
            sqe.optlen = limit;
            sqe.flags = abi::IOSQE_BUFFER_SELECT;
            sqe.buf_group = bgid;
            group = Some(bgid);
            OpKind::Recv
        }
        Op::Cancel { target } => {
            sqe.opcode = abi::OP_ASYNC_CANCEL;
            sqe.addr = target.0;
            OpKind::Cancel
        }
        Op::CancelFd { fd } => {
            sqe.opcode = abi::OP_ASYNC_CANCEL;
            sqe.fd = fd;
            sqe.op_flags = abi::ASYNC_CANCEL_FD | abi::ASYNC_CANCEL_ALL;
            OpKind::Cancel
        }
        Op::CancelAny => {
            sqe.opcode = abi::OP_ASYNC_CANCEL;
            sqe.fd = -1;
            sqe.op_flags = abi::ASYNC_CANCEL_ANY;
            OpKind::Cancel
        }
        Op::Send { .. } | Op::Read { .. } | Op::Timeout { .. } | Op::Close { .. } => {
            unreachable!("encoded by `encode`")
        }
    };
    (sqe, kind, Owned::Nothing, group)
}

/// A read's final CQE: the kernel wrote `res` bytes into the spare capacity.
fn finish_read(mut buf: Vec<u8>, res: i32) -> Vec<u8> {
    let spare = buf.capacity() - buf.len();
    let n = (res.max(0) as usize).min(spare);
    debug_assert_eq!(
        n,
        res.max(0) as usize,
        "read(2) reported more than it was given"
    );
    // SAFETY: the kernel wrote `n` bytes starting at `len()` (the address we gave the SQE) and
    // never more than the `spare` bytes we allowed, so they are initialised (read(2)).
    unsafe { buf.set_len(buf.len() + n) };
    buf
}
