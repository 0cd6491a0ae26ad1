//! What the tests read about a running server from `/proc` (proc(5)): its process tree,
//! resident memory, open descriptors, threads and CPU time, through the `procfs` crate, which
//! parses those files (the command name in parentheses of `/proc/[pid]/stat`, the `kB` units of
//! `status`) so the tests do not.
//!
//! The process models (`prefork`, `process-per-conn`) are several processes, so every figure
//! is available per process and summed over the tree rooted at the server's pid. The tree is
//! found by scanning every process's parent pid: `/proc/[pid]/task/*/children`
//! (`Task::children`) would be cheaper but is only as complete as `CONFIG_PROC_CHILDREN`
//! makes it, and procfs(5) warns it can miss children while others exit.
//!
//! The one file read by hand is the `net.ipv4.tcp_wmem` sysctl: the crate parses no
//! `/proc/sys/net` entry.

use std::time::{Duration, Instant};

use ::procfs::process::{all_processes, Process};

/// One process, as its `/proc/[pid]/stat` line describes it.
#[derive(Clone, Debug)]
pub struct ProcInfo {
    /// Its pid.
    pub pid: i32,
    /// Its parent's pid.
    pub ppid: i32,
    /// The one-letter state: `R`, `S`, `D`, `Z` (zombie), ...
    pub state: char,
    /// User plus system CPU time, in clock ticks, summed over its threads.
    pub cpu_ticks: u64,
}

/// `root` and all its descendants (zombies included), root first.
pub fn tree(root: i32) -> Vec<ProcInfo> {
    let all: Vec<ProcInfo> = all_processes()
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|p| info_of(&p))
        .collect();
    let Some(root_info) = all.iter().find(|p| p.pid == root) else {
        return Vec::new();
    };
    let mut out = vec![root_info.clone()];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i].pid;
        out.extend(all.iter().filter(|p| p.ppid == parent).cloned());
        i += 1;
    }
    out
}

/// Whether every thread of process `pid` is stopped (state `T`, after SIGSTOP); false if the
/// process is gone. kill(2) returns before the signal has stopped anything.
pub fn all_threads_stopped(pid: i32) -> bool {
    let Ok(tasks) = Process::new(pid).and_then(|p| p.tasks()) else {
        return false;
    };
    tasks
        .flatten()
        .all(|task| task.stat().is_ok_and(|stat| stat.state == 'T'))
}

/// Live (non-zombie) processes of the tree.
pub fn live_tree(root: i32) -> Vec<ProcInfo> {
    tree(root).into_iter().filter(|p| p.state != 'Z').collect()
}

/// `VmRSS` of one process in bytes (proc_pid_status(5)); `None` if gone or a zombie.
pub fn rss_bytes(pid: i32) -> Option<u64> {
    let kib = Process::new(pid).ok()?.status().ok()?.vmrss?;
    Some(kib * 1024)
}

/// Open descriptors of one process (entries of `/proc/[pid]/fd`); `None` if gone.
pub fn fd_count(pid: i32) -> Option<usize> {
    Process::new(pid).ok()?.fd_count().ok()
}

/// What each descriptor of one process points to (`3->Socket(1234)`,
/// `4->AnonInode("[eventpoll]")`, ...), for failure messages about leaks.
pub fn fd_targets(pid: i32) -> Vec<String> {
    let Ok(fds) = Process::new(pid).and_then(|p| p.fd()) else {
        return Vec::new();
    };
    let mut out: Vec<String> = fds
        .flatten()
        .map(|fd| format!("{}->{:?}", fd.fd, fd.target))
        .collect();
    out.sort();
    out
}

/// Threads of `pid` whose name (`comm`, set by the thread's builder) is `name`.
pub fn threads_named(pid: i32, name: &str) -> usize {
    let Ok(tasks) = Process::new(pid).and_then(|p| p.tasks()) else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| t.stat().is_ok_and(|s| s.comm == name))
        .count()
}

/// CPU time the whole tree used over `window`, as a fraction of one core.
pub fn cpu_fraction(root: i32, window: Duration) -> f64 {
    let ticks = |pid| -> u64 { tree(pid).iter().map(|p| p.cpu_ticks).sum() };
    let before = ticks(root);
    let start = Instant::now();
    std::thread::sleep(window);
    let used = ticks(root).saturating_sub(before);
    used as f64 / ::procfs::ticks_per_second() as f64 / start.elapsed().as_secs_f64()
}

/// The most a TCP socket's send buffer may autotune to (`net.ipv4.tcp_wmem` max, tcp(7)); 4 MiB
/// by default. A slow-reader test must send more than this, or a server that never stops
/// reading could park the whole backlog in its kernel send buffer and look well-behaved.
pub fn kernel_send_buffer_max() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse::<usize>().ok())
        .unwrap_or(4 << 20)
        .min(60 << 20)
}

fn info_of(process: &Process) -> Option<ProcInfo> {
    let stat = process.stat().ok()?;
    Some(ProcInfo {
        pid: stat.pid,
        ppid: stat.ppid,
        state: stat.state,
        cpu_ticks: stat.utime + stat.stime,
    })
}
