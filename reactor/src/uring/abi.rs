//! The io_uring ABI: the structs and constants of the kernel's `include/uapi/linux/io_uring.h`,
//! written out by hand because `libc` does not carry them (it has only the syscall numbers).
//!
//! Only what rawloop uses is here, with the Linux version that introduced each item, so a
//! reader can tell which kernel a feature needs. Layouts are `#[repr(C)]` copies of the header;
//! the `const` assertions at the bottom check every size against the header, so a typo in a
//! field fails the build instead of corrupting a ring. tokio-rs/io-uring generates the same
//! definitions with bindgen (`src/sys/sys.rs`); writing them out keeps them readable.

// ---------------------------------------------------------------------------------------------
// io_uring_setup(2)
// ---------------------------------------------------------------------------------------------

/// `IORING_SETUP_CQSIZE` (5.5): `Params::cq_entries` sets the CQ size (else it is 2 x SQ).
pub(crate) const SETUP_CQSIZE: u32 = 1 << 3;
/// `IORING_SETUP_CLAMP` (5.6): clamp sizes above the kernel's maximum instead of `EINVAL`.
pub(crate) const SETUP_CLAMP: u32 = 1 << 4;
/// `IORING_SETUP_SUBMIT_ALL` (5.18): one bad SQE does not stop the rest of the batch.
pub(crate) const SETUP_SUBMIT_ALL: u32 = 1 << 7;
/// `IORING_SETUP_COOP_TASKRUN` (5.19): no IPI to interrupt the task for completion work; it
/// runs at the task's next transition into the kernel.
pub(crate) const SETUP_COOP_TASKRUN: u32 = 1 << 8;
/// `IORING_SETUP_SINGLE_ISSUER` (6.0): one task submits; the kernel drops some locking.
pub(crate) const SETUP_SINGLE_ISSUER: u32 = 1 << 12;
/// `IORING_SETUP_DEFER_TASKRUN` (6.1): completion work runs only inside `io_uring_enter` with
/// `GETEVENTS`, on the submitter's thread. Requires `SINGLE_ISSUER`.
pub(crate) const SETUP_DEFER_TASKRUN: u32 = 1 << 13;

/// `IORING_FEAT_SINGLE_MMAP` (5.4): the SQ and CQ rings share one mapping.
pub(crate) const FEAT_SINGLE_MMAP: u32 = 1 << 0;
/// `IORING_FEAT_NODROP` (5.5): a full CQ overflows into a kernel list instead of dropping.
pub(crate) const FEAT_NODROP: u32 = 1 << 1;
/// `IORING_FEAT_EXT_ARG` (5.11): `io_uring_enter` takes a timeout (`GeteventsArg`).
pub(crate) const FEAT_EXT_ARG: u32 = 1 << 8;

/// Offsets into the ring descriptor for mmap(2) (io_uring_setup(2)).
pub(crate) const OFF_SQ_RING: i64 = 0;
pub(crate) const OFF_CQ_RING: i64 = 0x800_0000;
pub(crate) const OFF_SQES: i64 = 0x1000_0000;

/// `IORING_SQ_CQ_OVERFLOW`, in the SQ ring's flags: CQEs wait in the kernel's overflow list.
pub(crate) const SQ_CQ_OVERFLOW: u32 = 1 << 1;

/// `struct io_sqring_offsets`: where each SQ ring field lives in the mapping.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub(crate) struct SqringOffsets {
    pub head: u32,
    pub tail: u32,
    pub ring_mask: u32,
    pub ring_entries: u32,
    pub flags: u32,
    pub dropped: u32,
    pub array: u32,
    pub resv1: u32,
    pub user_addr: u64,
}

/// `struct io_cqring_offsets`: where each CQ ring field lives in the mapping.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub(crate) struct CqringOffsets {
    pub head: u32,
    pub tail: u32,
    pub ring_mask: u32,
    pub ring_entries: u32,
    pub overflow: u32,
    pub cqes: u32,
    pub flags: u32,
    pub resv1: u32,
    pub user_addr: u64,
}

/// `struct io_uring_params`: sizes and flags in, offsets and features out.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub(crate) struct Params {
    pub sq_entries: u32,
    pub cq_entries: u32,
    pub flags: u32,
    pub sq_thread_cpu: u32,
    pub sq_thread_idle: u32,
    pub features: u32,
    pub wq_fd: u32,
    pub resv: [u32; 3],
    pub sq_off: SqringOffsets,
    pub cq_off: CqringOffsets,
}

// ---------------------------------------------------------------------------------------------
// Submission and completion entries
// ---------------------------------------------------------------------------------------------

/// `IORING_OP_*`: the opcodes rawloop submits, with the kernel that added each.
pub(crate) const OP_NOP: u8 = 0; // 5.1
pub(crate) const OP_TIMEOUT: u8 = 11; // 5.4
pub(crate) const OP_ACCEPT: u8 = 13; // 5.5
pub(crate) const OP_ASYNC_CANCEL: u8 = 14; // 5.5
pub(crate) const OP_CLOSE: u8 = 19; // 5.6
pub(crate) const OP_READ: u8 = 22; // 5.6
pub(crate) const OP_SEND: u8 = 26; // 5.6
pub(crate) const OP_RECV: u8 = 27; // 5.6

/// Every opcode rawloop uses, with its name for error messages; `Ring::new` probes them all.
pub(crate) const OPCODES_USED: [(u8, &str); 8] = [
    (OP_NOP, "IORING_OP_NOP"),
    (OP_TIMEOUT, "IORING_OP_TIMEOUT"),
    (OP_ACCEPT, "IORING_OP_ACCEPT"),
    (OP_ASYNC_CANCEL, "IORING_OP_ASYNC_CANCEL"),
    (OP_CLOSE, "IORING_OP_CLOSE"),
    (OP_READ, "IORING_OP_READ"),
    (OP_SEND, "IORING_OP_SEND"),
    (OP_RECV, "IORING_OP_RECV"),
];

/// `IOSQE_BUFFER_SELECT` (5.7), in `Sqe::flags`: pick the buffer from group `Sqe::buf_group`.
pub(crate) const IOSQE_BUFFER_SELECT: u8 = 1 << 5;
/// `IORING_ACCEPT_MULTISHOT` (5.19), in `Sqe::ioprio` of an accept.
pub(crate) const ACCEPT_MULTISHOT: u16 = 1 << 0;
/// `IORING_RECV_MULTISHOT` (6.0), in `Sqe::ioprio` of a recv.
pub(crate) const RECV_MULTISHOT: u16 = 1 << 1;
/// `IORING_TIMEOUT_MULTISHOT` (6.4), in `Sqe::op_flags` of a timeout.
pub(crate) const TIMEOUT_MULTISHOT: u32 = 1 << 6;
/// `IORING_ASYNC_CANCEL_ALL` (5.19): cancel every match, not only the first.
pub(crate) const ASYNC_CANCEL_ALL: u32 = 1 << 0;
/// `IORING_ASYNC_CANCEL_FD` (5.19): match on the descriptor instead of `user_data`.
pub(crate) const ASYNC_CANCEL_FD: u32 = 1 << 1;
/// `IORING_ASYNC_CANCEL_ANY` (5.19): match every request.
pub(crate) const ASYNC_CANCEL_ANY: u32 = 1 << 2;

/// `IORING_CQE_F_BUFFER`: the upper 16 bits of `Cqe::flags` are a provided buffer's id.
pub(crate) const CQE_F_BUFFER: u32 = 1 << 0;
/// `IORING_CQE_F_MORE`: the operation stays armed and will post more CQEs.
pub(crate) const CQE_F_MORE: u32 = 1 << 1;
/// `IORING_CQE_BUFFER_SHIFT`.
pub(crate) const CQE_BUFFER_SHIFT: u32 = 16;

/// `struct io_uring_sqe`, 64 bytes; the unions of the header are flattened to the one member
/// rawloop uses (`off`, `addr`, `op_flags` for rw/msg/timeout/accept/cancel flags, `buf_group`,
/// `optlen`).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub(crate) struct Sqe {
    pub opcode: u8,
    pub flags: u8,
    pub ioprio: u16,
    pub fd: i32,
    pub off: u64,
    pub addr: u64,
    pub len: u32,
    pub op_flags: u32,
    pub user_data: u64,
    pub buf_group: u16,
    pub personality: u16,
    /// The union of `splice_fd_in`, `file_index` and `optlen`: rawloop uses it as `optlen`,
    /// a multishot recv's byte limit (Linux 6.17).
    pub optlen: u32,
    pub addr3: u64,
    pub pad2: u64,
}

/// `struct io_uring_cqe`, 16 bytes (rawloop never sets `IORING_SETUP_CQE32`).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Cqe {
    pub user_data: u64,
    pub res: i32,
    pub flags: u32,
}

/// `struct __kernel_timespec`, read by `IORING_OP_TIMEOUT` and by `io_uring_enter`'s timeout.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub(crate) struct Timespec {
    pub tv_sec: i64,
    pub tv_nsec: i64,
}

impl From<std::time::Duration> for Timespec {
    fn from(d: std::time::Duration) -> Timespec {
        Timespec {
            tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(d.subsec_nanos()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// io_uring_enter(2)
// ---------------------------------------------------------------------------------------------

/// `IORING_ENTER_GETEVENTS`: wait for `min_complete` CQEs (and, with `DEFER_TASKRUN`, run the
/// deferred completion work).
pub(crate) const ENTER_GETEVENTS: u32 = 1 << 0;
/// `IORING_ENTER_EXT_ARG` (5.11): the last two arguments are a `GeteventsArg` and its size.
pub(crate) const ENTER_EXT_ARG: u32 = 1 << 3;
/// `IORING_ENTER_REGISTERED_RING` (5.18): the fd argument is an index registered with
/// `IORING_REGISTER_RING_FDS`, which saves the fdget/fdput of every call.
pub(crate) const ENTER_REGISTERED_RING: u32 = 1 << 4;

/// `struct io_uring_getevents_arg`. `min_wait_usec` was `pad` before 6.12; we leave it 0.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub(crate) struct GeteventsArg {
    pub sigmask: u64,
    pub sigmask_sz: u32,
    pub min_wait_usec: u32,
    pub ts: u64,
}

// ---------------------------------------------------------------------------------------------
// io_uring_register(2)
// ---------------------------------------------------------------------------------------------

pub(crate) const REGISTER_PROBE: u32 = 8; // 5.6
pub(crate) const REGISTER_RING_FDS: u32 = 20; // 5.18
pub(crate) const UNREGISTER_RING_FDS: u32 = 21; // 5.18
pub(crate) const REGISTER_PBUF_RING: u32 = 22; // 5.19
pub(crate) const UNREGISTER_PBUF_RING: u32 = 23; // 5.19

/// `IO_URING_OP_SUPPORTED`, in `ProbeOp::flags`.
pub(crate) const IO_URING_OP_SUPPORTED: u16 = 1 << 0;

/// How many opcodes a probe asks about: all that fit in the `u8` opcode.
pub(crate) const PROBE_OPS: usize = 256;

/// `struct io_uring_probe_op`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub(crate) struct ProbeOp {
    pub op: u8,
    pub resv: u8,
    pub flags: u16,
    pub resv2: u32,
}

/// `struct io_uring_probe` with room for [`PROBE_OPS`] entries in its flexible array.
#[repr(C)]
#[derive(Copy, Clone, Debug)]
pub(crate) struct Probe {
    pub last_op: u8,
    pub ops_len: u8,
    pub resv: u16,
    pub resv2: [u32; 3],
    pub ops: [ProbeOp; PROBE_OPS],
}

/// `struct io_uring_rsrc_update`, the argument of `IORING_(UN)REGISTER_RING_FDS`. An
/// `offset` of `u32::MAX` asks the kernel to pick a free slot and write its index back.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub(crate) struct RsrcUpdate {
    pub offset: u32,
    pub resv: u32,
    pub data: u64,
}

/// `struct io_uring_buf_reg`, the argument of `IORING_(UN)REGISTER_PBUF_RING`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub(crate) struct BufReg {
    pub ring_addr: u64,
    pub ring_entries: u32,
    pub bgid: u16,
    pub flags: u16,
    pub resv: [u64; 3],
}

/// `struct io_uring_buf`, one entry of a provided-buffer ring. The ring has no header: its
/// 16-bit tail overlays the `resv` field of entry 0 (`struct io_uring_buf_ring`), at byte
/// [`BUF_RING_TAIL_OFFSET`], which is why entries are written field by field, never whole.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub(crate) struct BufEntry {
    pub addr: u64,
    pub len: u32,
    pub bid: u16,
    pub resv: u16,
}

/// Byte offset of the buffer ring's tail: `resv1` (8) + `resv2` (4) + `resv3` (2).
pub(crate) const BUF_RING_TAIL_OFFSET: usize = 14;

// The header's sizes, checked at compile time.
const _: () = assert!(std::mem::size_of::<Sqe>() == 64);
const _: () = assert!(std::mem::size_of::<Cqe>() == 16);
const _: () = assert!(std::mem::size_of::<Params>() == 120);
const _: () = assert!(std::mem::size_of::<GeteventsArg>() == 24);
const _: () = assert!(std::mem::size_of::<ProbeOp>() == 8);
const _: () = assert!(std::mem::size_of::<Probe>() == 16 + 8 * PROBE_OPS);
const _: () = assert!(std::mem::size_of::<RsrcUpdate>() == 16);
const _: () = assert!(std::mem::size_of::<BufReg>() == 40);
const _: () = assert!(std::mem::size_of::<BufEntry>() == 16);
const _: () = assert!(std::mem::offset_of!(BufEntry, resv) == BUF_RING_TAIL_OFFSET);
const _: () = assert!(std::mem::offset_of!(Sqe, user_data) == 32);
const _: () = assert!(std::mem::offset_of!(Sqe, buf_group) == 40);
