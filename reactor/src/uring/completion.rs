//! What comes back from the ring: [`Completion`]s, the [`OpId`] that names a submitted
//! operation, and the provided buffers ([`ProvidedBuf`]) a multishot recv lends the caller.
//!
//! A completion is io_uring's `struct io_uring_cqe` (io_uring(7), "Reading completion events")
//! decoded: the caller's [`Token`] instead of the raw `user_data`, the result as an
//! `io::Result`, the flags as `more()` and `buffer_id()`, and, on an operation's *final*
//! completion, the resources the ring held for the kernel (a send's `Vec`, a read's filled
//! buffer). Ownership moves back to the caller only then, as in tokio-uring and monoio.

use std::io;
use std::os::fd::OwnedFd;

use super::abi;
use crate::epoll::Token;

/// Names one submitted operation, for [`Ring::cancel`](super::Ring::cancel). It is the kernel's
/// `user_data`: a slot of the ring's in-flight table (low 32 bits) and that slot's generation
/// (high 32 bits), so an `OpId` kept after its operation finished matches nothing.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct OpId(pub(crate) u64);

/// Which kind of operation a completion belongs to.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// `IORING_OP_NOP`.
    Nop,
    /// Multishot `IORING_OP_ACCEPT`.
    Accept,
    /// Multishot `IORING_OP_RECV` into a provided-buffer group.
    Recv,
    /// `IORING_OP_SEND` with `MSG_NOSIGNAL`.
    Send,
    /// `IORING_OP_READ` into an owned buffer.
    Read,
    /// `IORING_OP_CLOSE`.
    Close,
    /// `IORING_OP_TIMEOUT`, one-shot or multishot.
    Timeout,
    /// `IORING_OP_ASYNC_CANCEL`.
    Cancel,
}

/// A provided-buffer group, registered with
/// [`Ring::add_buffer_group`](super::Ring::add_buffer_group).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct BufGroup(pub(crate) u16);

/// A provided buffer the kernel filled and lent to the caller. Read its bytes with
/// [`Ring::buffer`](super::Ring::buffer), then give it back with
/// [`Ring::recycle`](super::Ring::recycle). Neither `Clone` nor `Copy`, so it is recycled at
/// most once; a `ProvidedBuf` that is dropped instead is lost to the ring for good.
#[must_use = "a provided buffer not given back with Ring::recycle is lost to the ring"]
#[derive(Debug, PartialEq, Eq)]
pub struct ProvidedBuf {
    pub(crate) group: u16,
    pub(crate) bid: u16,
    pub(crate) len: u32,
}

impl ProvidedBuf {
    /// The buffer's id in its group (the upper 16 bits of the CQE's flags).
    pub fn id(&self) -> u16 {
        self.bid
    }

    /// The group it belongs to.
    pub fn group(&self) -> BufGroup {
        BufGroup(self.group)
    }

    /// How many bytes the kernel received into it.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One CQE, decoded. See the module doc.
#[derive(Debug)]
pub struct Completion {
    pub(crate) id: OpId,
    pub(crate) token: Token,
    pub(crate) kind: OpKind,
    pub(crate) res: i32,
    pub(crate) flags: u32,
    pub(crate) buf: Option<Vec<u8>>,
    pub(crate) provided: Option<ProvidedBuf>,
    pub(crate) accepted: Option<OwnedFd>,
}

impl Completion {
    /// The token the caller gave when submitting the operation.
    pub fn token(&self) -> Token {
        self.token
    }

    /// The operation this completion belongs to.
    pub fn id(&self) -> OpId {
        self.id
    }

    /// The kind of operation.
    pub fn kind(&self) -> OpKind {
        self.kind
    }

    /// The raw result, `cqe.res`: what the syscall would have returned, or `-errno`.
    pub fn res(&self) -> i32 {
        self.res
    }

    /// The result as `io::Result`: `Ok(res)` when `res >= 0`, else the `errno`. A timeout that
    /// expires reports `ETIME` (`IORING_OP_TIMEOUT` treats expiry as its error).
    pub fn result(&self) -> io::Result<u32> {
        match self.res {
            res if res >= 0 => Ok(res as u32),
            res => Err(io::Error::from_raw_os_error(-res)),
        }
    }

    /// The raw `cqe.flags`.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// `IORING_CQE_F_MORE`: the operation is still armed and will complete again. A multishot
    /// completion without it is the operation's last: the caller must re-arm it to go on.
    pub fn more(&self) -> bool {
        self.flags & abi::CQE_F_MORE != 0
    }

    /// The operation's final completion (`!more()`): its resources come back with this one.
    pub fn is_final(&self) -> bool {
        !self.more()
    }

    /// `IORING_CQE_F_BUFFER`: the id of the provided buffer holding this completion's bytes.
    pub fn buffer_id(&self) -> Option<u16> {
        (self.flags & abi::CQE_F_BUFFER != 0)
            .then_some((self.flags >> abi::CQE_BUFFER_SHIFT) as u16)
    }

    /// On a send's or read's final completion, the buffer the ring held: for a send the `Vec`
    /// as given (send again from `offset + res` if the send was short); for a read the `Vec`
    /// with `res` more bytes at its end.
    pub fn take_buf(&mut self) -> Option<Vec<u8>> {
        self.buf.take()
    }

    /// On a recv completion that carries data, the provided buffer it landed in. Recycle it
    /// with [`Ring::recycle`](super::Ring::recycle) once its bytes are copied or sent.
    pub fn take_provided(&mut self) -> Option<ProvidedBuf> {
        self.provided.take()
    }

    /// On a successful accept completion, the new connection (`SOCK_NONBLOCK | SOCK_CLOEXEC`).
    /// Dropping the completion without taking it closes the connection.
    pub fn take_accepted(&mut self) -> Option<OwnedFd> {
        self.accepted.take()
    }
}
