//! The only `unsafe` code of echo-bench: entering a network namespace of our own, and tying
//! the processes started inside it to the life of the process that started them.
//!
//! Both are system calls that `rustix` exposes as `unsafe` only because of flags and contexts we
//! do not use; each block below says which guarantee makes our use sound. Everything else of
//! the kernel lab ([`crate::netns`], [`crate::synflood`]) is safe code over these two.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

use rustix::process::Signal;
use rustix::thread::UnshareFlags;

/// Moves the calling thread into a new, empty network namespace: `unshare(CLONE_NEWNET)`
/// (unshare(2), network_namespaces(7)). Threads and processes it starts afterwards inherit the
/// namespace; threads started before keep the old one, so call it first, while the process is
/// still single-threaded, and every later socket, `/proc/self/net` file and `net.*` sysctl is
/// the new namespace's. Needs `CAP_SYS_ADMIN` (root): `EPERM` otherwise.
pub fn unshare_network_namespace() -> io::Result<()> {
    // SAFETY: rustix marks unshare(2) unsafe because `CLONE_FILES` could leave other threads
    // holding descriptors the caller no longer shares (see `unshare_unsafe`). We pass
    // `CLONE_NEWNET` alone, which changes no descriptor table, memory mapping or filesystem
    // context: existing sockets stay valid in their old namespace (network_namespaces(7)).
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET) }.map_err(io::Error::from)
}

/// Makes the process `command` will start receive SIGKILL when the thread that starts it
/// exits (prctl(2) `PR_SET_PDEATHSIG`, kept across execve(2)). A server left stopped by
/// SIGSTOP cannot act on a SIGTERM or a Ctrl-C; SIGKILL works on stopped processes too, so
/// whatever way the lab ends, its servers end with it and the namespace they hold disappears.
/// Start the command from a thread that lives as long as the process (the main thread).
pub fn kill_with_parent(command: &mut Command) {
    // SAFETY: the closure runs in the child between fork(2) and execve(2), where only
    // async-signal-safe operations are allowed (signal-safety(7)). It makes one raw prctl(2)
    // system call through rustix, with no allocation, lock or shared state, and returns its
    // error as a value (std reports it to the parent as a spawn error).
    unsafe {
        command.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
                .map_err(io::Error::from)
        });
    }
}
