//! Creating a ring, and finding out whether io_uring can be used here at all.
//!
//! io_uring is often *not* there: a kernel built without it (`ENOSYS`), a container whose
//! seccomp profile blocks its syscalls (Docker's default since 2023: `EPERM`), the sysctl
//! `kernel.io_uring_disabled` (Linux 6.6: 1 = only root and `kernel.io_uring_group`, 2 = no one),
//! or an older kernel missing an opcode or flag we use. [`Unavailable`] names each cause in
//! words, so a server or a test can say *why* it falls back or skips.
//!
//! Setup asks for the flags of liburing's `examples/echo-server.c`, best first:
//! `SINGLE_ISSUER | DEFER_TASKRUN` (6.1) so that completion work runs only when the loop asks
//! for events, on its own thread; else `COOP_TASKRUN` (5.19), which at least spares the
//! inter-processor interrupt; else nothing. `SUBMIT_ALL` keeps one bad SQE from stopping a batch,
//! `CQSIZE` makes the CQ larger than the SQ (multishot operations post many CQEs per SQE), and
//! `CLAMP` turns an oversized request into the kernel's maximum instead of `EINVAL`.
//!
//! Then every opcode we use is checked with `IORING_REGISTER_PROBE`. Flags cannot be probed
//! that way, so each one is *tried* on a throwaway eventfd, in one batch: a kernel that does not
//! know a flag fails the SQE's preparation with `EINVAL`, while one that knows it gets as far as
//! noticing that an eventfd is not a socket (`ENOTSOCK`) or matches nothing (`ENOENT`).

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::abi;
use crate::epoll::Token;
use crate::sys::uring::{io_uring_setup, Op, RawRing};
use crate::Waker;

/// Sizes of a new ring.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RingOptions {
    /// SQ entries (rounded up to a power of two by the kernel): how many SQEs one enter can
    /// submit. More can be queued; they go in over several enters.
    pub sq_entries: u32,
    /// CQ entries (a power of two, at least `sq_entries`). Multishot operations post many CQEs
    /// per SQE, so it is larger; overflow is survived but costs extra enters.
    pub cq_entries: u32,
}

impl Default for RingOptions {
    /// 256 SQEs and a CQ eight times larger, as liburing's echo-server example.
    fn default() -> RingOptions {
        RingOptions {
            sq_entries: 256,
            cq_entries: 2048,
        }
    }
}

/// What the kernel granted a ring.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct Features {
    /// `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN` were accepted.
    pub defer_taskrun: bool,
    /// `IORING_SETUP_COOP_TASKRUN` was used instead (kernels 5.19 and 6.0).
    pub coop_taskrun: bool,
    /// The ring fd is registered (`IORING_REGISTER_RING_FDS`) and enters use its index.
    pub registered_ring: bool,
    /// `IORING_TIMEOUT_MULTISHOT` (6.4) works, so [`Ring::tick`](super::Ring::tick) does.
    pub multishot_timeout: bool,
    /// A multishot recv takes a byte limit (`sqe->optlen`, 6.17), so
    /// [`Ring::recv_multishot_limited`](super::Ring::recv_multishot_limited) works.
    pub recv_limit: bool,
    /// One mapping serves both rings (`IORING_FEAT_SINGLE_MMAP`).
    pub single_mmap: bool,
    /// SQ and CQ sizes the kernel chose.
    pub sq_entries: u32,
    /// See `sq_entries`.
    pub cq_entries: u32,
}

/// Why io_uring cannot be used here. `Display` names the cause in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// `EPERM` while sysctl `kernel.io_uring_disabled` is 1 (root and `io_uring_group` only)
    /// or 2 (nobody).
    DisabledBySysctl(u32),
    /// `EPERM` with the sysctl allowing it: a seccomp filter or a security module.
    NotPermitted,
    /// `ENOSYS`: a kernel built without `CONFIG_IO_URING`, or a seccomp filter saying so.
    NoSyscall,
    /// `ENOMEM` at setup: before 5.12 rings were charged to `RLIMIT_MEMLOCK`.
    OutOfMemory,
    /// An opcode the probe says this kernel lacks (`IORING_OP_*`).
    MissingOpcode(&'static str),
    /// A flag or feature this kernel lacks, with the version that brought it.
    MissingFeature(&'static str),
    /// Any other failure, as text.
    Other(String),
}

impl Unavailable {
    /// The cause of an `io_uring_setup(2)` failure with `errno`, given the value of sysctl
    /// `kernel.io_uring_disabled` if it could be read.
    pub fn from_setup_errno(errno: i32, io_uring_disabled: Option<u32>) -> Unavailable {
        match errno {
            libc::EPERM => match io_uring_disabled {
                Some(level @ 1..=2) => Unavailable::DisabledBySysctl(level),
                _ => Unavailable::NotPermitted,
            },
            libc::ENOSYS => Unavailable::NoSyscall,
            libc::ENOMEM => Unavailable::OutOfMemory,
            errno => Unavailable::Other(format!(
                "io_uring_setup(2) failed: {}",
                io::Error::from_raw_os_error(errno)
            )),
        }
    }

    /// The `Unavailable` inside an error returned by [`Ring::new`](super::Ring::new), if that
    /// is what it carries.
    pub fn from_io(err: &io::Error) -> Option<Unavailable> {
        err.get_ref()?.downcast_ref::<Unavailable>().cloned()
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::DisabledBySysctl(2) => {
                write!(
                    f,
                    "io_uring is disabled by sysctl kernel.io_uring_disabled=2"
                )
            }
            Unavailable::DisabledBySysctl(level) => write!(
                f,
                "io_uring is disabled by sysctl kernel.io_uring_disabled={level} \
                 for processes outside kernel.io_uring_group"
            ),
            Unavailable::NotPermitted => {
                write!(
                    f,
                    "io_uring_setup(2) is not permitted here (EPERM: seccomp or sysctl)"
                )
            }
            Unavailable::NoSyscall => write!(
                f,
                "io_uring_setup(2) does not exist here (ENOSYS: kernel without CONFIG_IO_URING, \
                 or seccomp)"
            ),
            Unavailable::OutOfMemory => write!(
                f,
                "io_uring_setup(2) ran out of memory (ENOMEM: before Linux 5.12, \
                 RLIMIT_MEMLOCK too low)"
            ),
            Unavailable::MissingOpcode(op) => write!(f, "kernel lacks {op}"),
            Unavailable::MissingFeature(what) => write!(f, "kernel lacks {what}"),
            Unavailable::Other(text) => f.write_str(text),
        }
    }
}

impl std::error::Error for Unavailable {}

impl From<Unavailable> for io::Error {
    fn from(cause: Unavailable) -> io::Error {
        let kind = match cause {
            Unavailable::DisabledBySysctl(_) | Unavailable::NotPermitted => {
                io::ErrorKind::PermissionDenied
            }
            Unavailable::OutOfMemory => io::ErrorKind::OutOfMemory,
            Unavailable::Other(_) => io::ErrorKind::Other,
            _ => io::ErrorKind::Unsupported,
        };
        io::Error::new(kind, cause)
    }
}

/// Whether this process can run the io_uring models: creates a small ring on the calling
/// thread with everything [`Ring::new`](super::Ring::new) checks, registers one provided
/// buffer, and drops it all. Costs a few syscalls; call it once at start-up (or per test).
pub fn available() -> Result<(), Unavailable> {
    let small = RingOptions {
        sq_entries: 4,
        cq_entries: 8,
    };
    let cause =
        |e: io::Error| Unavailable::from_io(&e).unwrap_or(Unavailable::Other(e.to_string()));
    let mut ring = super::Ring::new(&small).map_err(cause)?;
    ring.add_buffer_group(1, 64).map_err(cause)?;
    Ok(())
}

/// Creates, maps and checks a ring (see the module doc). Errors carry an [`Unavailable`] when
/// io_uring cannot be used here.
pub(crate) fn open(opts: &RingOptions) -> io::Result<(RawRing, Features)> {
    assert!(opts.sq_entries > 0, "a ring needs at least one SQ entry");
    let (fd, params) = setup_with_fallback(opts)?;
    let required = [
        (abi::FEAT_NODROP, "IORING_FEAT_NODROP (Linux 5.5)"),
        (abi::FEAT_EXT_ARG, "IORING_FEAT_EXT_ARG (Linux 5.11)"),
    ];
    for (bit, name) in required {
        if params.features & bit == 0 {
            return Err(Unavailable::MissingFeature(name).into());
        }
    }
    let mut raw = RawRing::map(fd, &params)?;
    let probe = raw.probe().map_err(|e| match e.raw_os_error() {
        Some(libc::EINVAL) => {
            Unavailable::MissingFeature("IORING_REGISTER_PROBE (Linux 5.6)").into()
        }
        _ => e,
    })?;
    for (op, name) in abi::OPCODES_USED {
        let entry = probe.ops[usize::from(op)];
        if op > probe.last_op || entry.flags & abi::IO_URING_OP_SUPPORTED == 0 {
            return Err(Unavailable::MissingOpcode(name).into());
        }
    }
    // Optional (5.18): without it every enter names the ring by its fd, which works as well.
    let registered_ring = raw.register_ring_fd().is_ok();
    let Optional {
        multishot_timeout,
        recv_limit,
    } = try_flags(&mut raw)?;
    let (sq_entries, cq_entries) = raw.sizes();
    let features = Features {
        defer_taskrun: params.flags & abi::SETUP_DEFER_TASKRUN != 0,
        coop_taskrun: params.flags & abi::SETUP_COOP_TASKRUN != 0,
        registered_ring,
        multishot_timeout,
        recv_limit,
        single_mmap: params.features & abi::FEAT_SINGLE_MMAP != 0,
        sq_entries,
        cq_entries,
    };
    Ok((raw, features))
}

/// `io_uring_setup` with the best flags the kernel accepts; `EINVAL` means "not those flags".
fn setup_with_fallback(opts: &RingOptions) -> io::Result<(OwnedFd, abi::Params)> {
    let base = abi::SETUP_CQSIZE | abi::SETUP_CLAMP;
    let choices = [
        abi::SETUP_SUBMIT_ALL | abi::SETUP_SINGLE_ISSUER | abi::SETUP_DEFER_TASKRUN,
        abi::SETUP_SUBMIT_ALL | abi::SETUP_COOP_TASKRUN,
        0,
    ];
    let mut last_error = None;
    for extra in choices {
        let mut params = abi::Params {
            flags: base | extra,
            cq_entries: opts.cq_entries.max(opts.sq_entries),
            ..abi::Params::default()
        };
        match io_uring_setup(opts.sq_entries, &mut params) {
            Ok(fd) => return Ok((fd, params)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last_error = Some(e),
            Err(e) => {
                let errno = e.raw_os_error().unwrap_or(0);
                return Err(Unavailable::from_setup_errno(errno, io_uring_disabled()).into());
            }
        }
    }
    let e = last_error.expect("at least one attempt");
    Err(Unavailable::Other(format!("io_uring_setup(2) refused every flag set: {e}")).into())
}

/// sysctl `kernel.io_uring_disabled` (Linux 6.6), if this kernel has it.
fn io_uring_disabled() -> Option<u32> {
    let text = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok()?;
    text.trim().parse().ok()
}

/// The features a ring can do without, found by [`try_flags`].
struct Optional {
    multishot_timeout: bool,
    recv_limit: bool,
}

/// Tries, in one batch on a throwaway eventfd, every flag `Ring` uses; `EINVAL` means the
/// kernel does not know it (any other error, such as `ENOTSOCK`, means it got past the
/// checks of the flags). The last two trials are optional features; the others are required.
fn try_flags(raw: &mut RawRing) -> io::Result<Optional> {
    let eventfd = Waker::new()?;
    let fd = eventfd.as_fd().as_raw_fd();
    let trials = [
        (
            Op::AcceptMulti { fd },
            "IORING_ACCEPT_MULTISHOT (Linux 5.19)",
        ),
        (
            Op::RecvMulti {
                fd,
                group: u16::MAX,
                limit: 0,
            },
            "IORING_RECV_MULTISHOT (Linux 6.0)",
        ),
        (Op::CancelFd { fd }, "IORING_ASYNC_CANCEL_FD (Linux 5.19)"),
        (
            Op::Timeout {
                after: Duration::from_nanos(1),
                multishot: true,
                count: 1,
            },
            "IORING_TIMEOUT_MULTISHOT (Linux 6.4)",
        ),
        (
            Op::RecvMulti {
                fd,
                group: u16::MAX,
                limit: 1,
            },
            "a multishot recv's byte limit (Linux 6.17)",
        ),
    ];
    const OPTIONAL: usize = 2;
    let n_trials = trials.len();
    let (ops, names): (Vec<Op>, Vec<&str>) = trials.into_iter().unzip();
    let results = run_trials(raw, ops)?;
    let mut known_optional = Vec::with_capacity(OPTIONAL);
    for (i, (res, name)) in results.into_iter().zip(names).enumerate() {
        let known = match res {
            Some(res) => res != -libc::EINVAL,
            None => {
                return Err(Unavailable::Other(format!("trial of {name} never completed")).into())
            }
        };
        match (i >= n_trials - OPTIONAL, known) {
            (true, known) => known_optional.push(known),
            (false, true) => {}
            (false, false) => return Err(Unavailable::MissingFeature(name).into()),
        }
    }
    Ok(Optional {
        multishot_timeout: known_optional[0],
        recv_limit: known_optional[1],
    })
}

/// Submits the trials and collects the final result of each (by token), for up to 5 s.
fn run_trials(raw: &mut RawRing, trials: Vec<Op>) -> io::Result<Vec<Option<i32>>> {
    let n_trials = trials.len();
    for (i, op) in trials.into_iter().enumerate() {
        raw.push(op, Token(i as u64));
    }
    let mut results = vec![None; n_trials];
    let deadline = Instant::now() + Duration::from_secs(5);
    while results.iter().any(Option::is_none) && Instant::now() < deadline {
        let to_submit = raw.flush_sq();
        match raw.enter(to_submit, 1, true, Some(Duration::from_millis(100))) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
            Err(e) => return Err(e),
        }
        while let Some(cqe) = raw.pop_cqe() {
            if let Some(done) = raw.complete(cqe) {
                if done.is_final() {
                    results[done.token().0 as usize] = Some(done.res());
                }
            }
        }
    }
    Ok(results)
}
