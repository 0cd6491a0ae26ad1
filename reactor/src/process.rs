//! Processes: `fork(2)` (refused when unsafe), reaping children, signals, and the descriptor
//! limit.
//!
//! The pre-fork concurrency model (one listener, N forked workers, as in classic Apache or
//! nginx) needs `fork`. In Rust `fork` is only sound in a single-threaded process: the child
//! gets a copy of the whole address space but only of the calling thread, so any lock another
//! thread held at that instant (the allocator's, stdout's, the logger's) stays locked forever in
//! the child, and the child's next `malloc` may deadlock (fork(2) NOTES; POSIX allows only
//! async-signal-safe calls after a multi-threaded fork). So [`fork`] checks the thread count
//! first and refuses rather than leave a trap.
//!
//! The descriptor limit matters because every connection is a descriptor: with the common
//! default soft limit of 1024, the 1021st connection fails `accept4` with `EMFILE`.
//! [`raise_nofile_limit`] lifts the soft limit to the hard one, which an unprivileged process
//! may always do (getrlimit(2)).
//!
//! Only [`fork`], [`reap_any`] and [`exit_now`] go through `sys`, because they need `unsafe`
//! (see `sys/mod.rs` for why `waitpid` and `_exit` stay raw libc). The rest are safe calls of
//! the `nix` crate, made here where the concept lives: a raw `kill(2)` or `setrlimit(2)` would
//! teach nothing but how to fill a C struct.

use std::io;

use nix::sys::prctl;
use nix::sys::resource::{self, Resource, RLIM_INFINITY};
use nix::unistd::{self, ForkResult};

use crate::sys;
use crate::Signal;

/// A process id.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pid(pub i32);

/// Which side of a [`fork`] this is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Fork {
    /// The original process; holds the child's pid.
    Parent(Pid),
    /// The new process.
    Child,
}

/// fork(2). Safe to expose because it REFUSES (ErrorKind::Other with a clear message) unless
/// the calling process has exactly one thread (reads `Threads:` in /proc/self/status): forking a
/// multi-threaded process leaves locks held by the vanished threads locked forever in the child.
///
/// The check cannot race: with one thread, the only thread that could start another is the one
/// calling `fork`. A child should end with [`exit_now`], not by returning from `main`, so it
/// does not run the parent's atexit handlers or flush its copy of the parent's stdio buffers.
pub fn fork() -> io::Result<Fork> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(io::Error::other(format!(
            "refusing to fork: this process has {threads} threads, and a forked child \
             would inherit locks held by threads that do not exist in it; fork before \
             spawning any thread"
        )));
    }
    match sys::fork()? {
        ForkResult::Child => Ok(Fork::Child),
        ForkResult::Parent { child } => Ok(Fork::Parent(Pid(child.as_raw()))),
    }
}

/// How a child ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// It called `exit`/`_exit` (or returned from `main`) with this code.
    Exited(i32),
    /// A signal with this number ended it.
    Signaled(i32),
}

/// waitpid(-1, WNOHANG): Ok(None) when no child has exited (or there are no children: ECHILD).
/// Call it in a loop until `None`: one `SIGCHLD` may stand for several exits (signal(7)).
pub fn reap_any() -> io::Result<Option<(Pid, ExitStatus)>> {
    loop {
        match sys::waitpid_any_nohang() {
            Ok(None) => return Ok(None),
            Ok(Some((pid, sys::RawExit::Exited(code)))) => {
                return Ok(Some((Pid(pid), ExitStatus::Exited(code))))
            }
            Ok(Some((pid, sys::RawExit::Signaled(sig)))) => {
                return Ok(Some((Pid(pid), ExitStatus::Signaled(sig))))
            }
            // Stops and continues are only reported when asked for (WUNTRACED, WCONTINUED),
            // which we never do; skip one defensively rather than report it as an exit.
            Ok(Some((_, sys::RawExit::Other))) => continue,
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// kill(2): sends `sig` to `pid`. `ESRCH` if there is no such process.
pub fn kill(pid: Pid, sig: Signal) -> io::Result<()> {
    let pid = unistd::Pid::from_raw(pid.0);
    Ok(nix::sys::signal::kill(pid, sig.to_nix())?)
}

/// getpid(2): this process's id.
pub fn getpid() -> Pid {
    Pid(unistd::getpid().as_raw())
}

/// _exit(2): for a forked child, skips atexit handlers and stdio flushes inherited from the
/// parent (which would otherwise print the parent's buffered output twice). Destructors do not
/// run; the kernel closes the descriptors.
pub fn exit_now(code: i32) -> ! {
    sys::exit_now(code)
}

/// prctl(PR_SET_PDEATHSIG): this process gets `sig` when its parent thread dies.
///
/// Note "thread": the signal fires when the thread that forked us exits, even if the parent
/// process lives on (prctl(2)), another reason to fork from the main thread. A worker sets
/// `Signal::Kill` or `Signal::Terminate` so it never outlives a crashed supervisor. If the
/// parent died before this call, the signal never comes: compare the parent pid afterwards.
pub fn set_parent_death_signal(sig: Signal) -> io::Result<()> {
    Ok(prctl::set_pdeathsig(sig.to_nix())?)
}

/// getrlimit(RLIMIT_NOFILE): (soft, hard). `u64::MAX` means unlimited.
pub fn nofile_limit() -> io::Result<(u64, u64)> {
    Ok(resource::getrlimit(Resource::RLIMIT_NOFILE)?)
}

/// setrlimit(RLIMIT_NOFILE) with a new soft limit, keeping the hard limit. `EINVAL` if `soft`
/// exceeds the hard limit (raising the hard limit needs CAP_SYS_RESOURCE).
pub fn set_nofile_limit(soft: u64) -> io::Result<()> {
    let (_, hard) = nofile_limit()?;
    Ok(resource::setrlimit(Resource::RLIMIT_NOFILE, soft, hard)?)
}

/// Soft := hard, returns the new soft limit.
///
/// If the hard limit is unlimited, the soft limit goes to `fs.nr_open` instead (the kernel's
/// per-process ceiling, default 1048576): RLIMIT_NOFILE may not exceed it (getrlimit(2)).
pub fn raise_nofile_limit() -> io::Result<u64> {
    let (soft, hard) = nofile_limit()?;
    let target = if hard == RLIM_INFINITY {
        nr_open().unwrap_or(soft)
    } else {
        hard
    };
    if target > soft {
        resource::setrlimit(Resource::RLIMIT_NOFILE, target, hard)?;
    }
    Ok(target.max(soft))
}

/// The number of threads in this process, from the `Threads:` line of /proc/self/status
/// (proc_pid_status(5)).
fn thread_count() -> io::Result<usize> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no Threads: line in /proc/self/status"))
}

/// `/proc/sys/fs/nr_open`, the largest RLIMIT_NOFILE the kernel accepts.
fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}
