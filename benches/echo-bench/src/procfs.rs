//! CPU time, context switches and memory of a process tree, read from `/proc` (proc(5)) through
//! the `procfs` crate.
//!
//! On a two-core machine the generator and the server share the cores, so messages per second
//! says as much about the generator as about the server. CPU time per message does not: it is
//! what serving one echo costs, whoever else runs. So the generator samples the server's CPU
//! time before and after the measured window and divides by the messages echoed in it. It does
//! the same with the server's context switches, because a model that hands each message from
//! one thread to another pays a park and an unpark for it, and that count explains its CPU.
//!
//! "The server" is a process *tree*: `process-per-conn` forks a child per connection and
//! `prefork` forks its workers, and their CPU time must count. We sum, over the server and
//! every live descendant, `utime + stime` of `/proc/PID/stat` (all threads of the process, dead
//! ones included) plus `cutime + cstime` (children already reaped with wait(2)). A child that
//! exits between two samples moves from its own `utime` to its parent's `cutime`, so nothing is
//! lost or counted twice. Descendants come from `/proc/PID/task/TID/children` when the kernel
//! has it (`CONFIG_PROC_CHILDREN`), else from a scan of every process for its parent.
//!
//! Those times are in clock ticks (`sysconf(_SC_CLK_TCK)`, 100 per second), and the kernel
//! truncates each process's time to whole ticks, which is ruinous for `process-per-conn`: 64
//! children that each ran 3 ms show 0 ticks between them. So for the live threads we also read
//! `/proc/PID/task/TID/schedstat`, whose first field is the thread's time on the CPU in
//! nanoseconds (sched-stats.rst), and take per process the larger of that sum and the tick
//! count (which alone includes threads that have already exited). For a single-threaded process
//! that is exact; for a multi-threaded one it is within one tick of the truth.
//!
//! Context switches come from the `voluntary_ctxt_switches` and `nonvoluntary_ctxt_switches`
//! lines of `/proc/PID/task/TID/status`: a voluntary one is a thread that blocked (a worker
//! parking on a futex, a loop sleeping in `epoll_wait`), an involuntary one a thread the
//! scheduler preempted. They are per thread, and a thread's counts leave `/proc` when it exits
//! (the kernel keeps them only for getrusage(2) of the process or its parent), so they are exact
//! for servers whose threads outlive the window (every scenario but `accept`) and a lower bound
//! otherwise.
//!
//! Memory is the resident set (`VmRSS` of `/proc/PID/status`) and the proportional set (`Pss`
//! of `/proc/PID/smaps_rollup`), summed over the tree. For forked servers the RSS sum counts
//! every page shared copy-on-write once per process, so it overstates their memory; PSS divides
//! shared pages among their sharers, which is why the lab reports memory as PSS. Neither
//! includes socket buffers, which are kernel memory.
//!
//! The crate parses every file; nothing here reads `/proc` text by hand. What stays in this
//! module is the measure itself: which processes make the tree and how their figures add up.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::time::Duration;

use procfs::process::{Process, Stat};
use procfs::ProcError;
use serde::{Deserialize, Serialize};

/// CPU time, context switches and process count of a process tree at one instant.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeCpu {
    /// Total CPU time (user + system, live processes and reaped children) in nanoseconds.
    pub nanos: u64,
    /// Voluntary context switches of the live threads (they blocked).
    pub voluntary_switches: u64,
    /// Involuntary context switches of the live threads (they were preempted).
    pub involuntary_switches: u64,
    /// Processes in the tree, the root included.
    pub processes: usize,
}

impl TreeCpu {
    /// CPU time in microseconds.
    pub fn micros(&self) -> u64 {
        self.nanos / 1_000
    }

    /// Voluntary plus involuntary context switches.
    pub fn switches(&self) -> u64 {
        self.voluntary_switches + self.involuntary_switches
    }
}

/// Memory of a process tree at one instant, in bytes.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeMemory {
    /// Sum of `VmRSS`.
    pub rss: u64,
    /// Sum of `Pss` (0 when `smaps_rollup` is missing).
    pub pss: u64,
    /// Processes in the tree.
    pub processes: usize,
}

/// The CPU time and context switches of `pid` and its live descendants, plus the CPU time of
/// their reaped children.
pub fn tree_cpu(pid: u32) -> io::Result<TreeCpu> {
    let tick_nanos = 1_000_000_000 / procfs::ticks_per_second().max(1);
    let mut total = TreeCpu::default();
    for process in tree(pid)? {
        // A descendant may exit between listing and reading: it then shows up in its
        // parent's cutime at the next sample, so skipping it here is right.
        let Ok(stat) = process.stat() else {
            continue;
        };
        let threads = live_threads(&process);
        let ticks = (stat.utime + stat.stime) * tick_nanos;
        total.nanos += ticks.max(threads.nanos) + reaped_ticks(&stat) * tick_nanos;
        total.voluntary_switches += threads.voluntary_switches;
        total.involuntary_switches += threads.involuntary_switches;
        total.processes += 1;
    }
    if total.processes == 0 {
        return Err(not_found(pid));
    }
    Ok(total)
}

/// The resident and proportional memory of `pid` and its live descendants.
pub fn tree_memory(pid: u32) -> io::Result<TreeMemory> {
    let mut total = TreeMemory::default();
    for process in tree(pid)? {
        let Ok(status) = process.status() else {
            continue;
        };
        total.rss += status.vmrss.unwrap_or(0) * 1024;
        // smaps_rollup is one pseudo-mapping whose fields are already in bytes.
        if let Ok(rollup) = process.smaps_rollup() {
            let pss = rollup
                .memory_map_rollup
                .iter()
                .next()
                .and_then(|map| map.extension.map.get("Pss").copied());
            total.pss += pss.unwrap_or(0);
        }
        total.processes += 1;
    }
    Ok(total)
}

/// The CPUs that any thread of `pid` or of its live descendants may run on
/// (`Cpus_allowed_list` of `/proc/PID/task/TID/status`, sched_setaffinity(2)).
pub fn tree_cpus_allowed(pid: u32) -> io::Result<BTreeSet<usize>> {
    let mut cpus = BTreeSet::new();
    for process in tree(pid)? {
        let Ok(tasks) = process.tasks() else { continue };
        for task in tasks.flatten() {
            let Some(ranges) = task.status().ok().and_then(|s| s.cpus_allowed_list) else {
                continue;
            };
            for (first, last) in ranges {
                cpus.extend(first as usize..=last as usize);
            }
        }
    }
    Ok(cpus)
}

/// CPU time used so far by this process (all its threads).
pub fn self_cpu() -> io::Result<Duration> {
    let process = Process::myself().map_err(to_io)?;
    let stat = process.stat().map_err(to_io)?;
    let tick_nanos = 1_000_000_000 / procfs::ticks_per_second().max(1);
    let ticks = (stat.utime + stat.stime) * tick_nanos;
    Ok(Duration::from_nanos(
        ticks.max(live_threads(&process).nanos),
    ))
}

/// Sums over the live threads of one process.
#[derive(Default)]
struct ThreadSums {
    nanos: u64,
    voluntary_switches: u64,
    involuntary_switches: u64,
}

/// CPU nanoseconds and context switches of the threads of `process` that are still alive.
fn live_threads(process: &Process) -> ThreadSums {
    let mut sums = ThreadSums::default();
    let Ok(tasks) = process.tasks() else {
        return sums;
    };
    for task in tasks.flatten() {
        if let Ok(schedstat) = task.schedstat() {
            sums.nanos += schedstat.sum_exec_runtime;
        }
        if let Ok(status) = task.status() {
            sums.voluntary_switches += status.voluntary_ctxt_switches.unwrap_or(0);
            sums.involuntary_switches += status.nonvoluntary_ctxt_switches.unwrap_or(0);
        }
    }
    sums
}

/// `cutime + cstime`: ticks of the children this process has reaped (signed in proc(5), never
/// negative in practice).
fn reaped_ticks(stat: &Stat) -> u64 {
    (stat.cutime.max(0) + stat.cstime.max(0)) as u64
}

/// `pid` followed by all its live descendants, parents before children.
fn tree(pid: u32) -> io::Result<Vec<Process>> {
    let root = Process::new(pid as i32).map_err(|_| not_found(pid))?;
    // The root's own thread always exists, so a missing `children` file means the kernel
    // lacks CONFIG_PROC_CHILDREN: find parents by a scan of every process instead.
    let by_scan = match children_from_tasks(&root) {
        Some(_) => None,
        None => Some(children_by_scan()?),
    };
    let mut members = vec![root];
    let mut next = 0;
    while next < members.len() {
        let kids = match &by_scan {
            None => children_from_tasks(&members[next]).unwrap_or_default(),
            Some(map) => map.get(&members[next].pid).cloned().unwrap_or_default(),
        };
        // A child that exits before we open it is simply not part of the tree any more.
        members.extend(kids.into_iter().filter_map(|kid| Process::new(kid).ok()));
        next += 1;
    }
    Ok(members)
}

/// Direct children of `process` from its threads' `children` files, or `None` if unreadable.
fn children_from_tasks(process: &Process) -> Option<Vec<i32>> {
    let mut kids = Vec::new();
    for task in process.tasks().ok()? {
        let children = task.ok()?.children().ok()?;
        kids.extend(children.into_iter().map(|kid| kid as i32));
    }
    Some(kids)
}

/// Parent -> children for every process, from one pass over `/proc/*/stat`.
fn children_by_scan() -> io::Result<HashMap<i32, Vec<i32>>> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for process in procfs::process::all_processes().map_err(to_io)?.flatten() {
        if let Ok(stat) = process.stat() {
            children.entry(stat.ppid).or_default().push(process.pid);
        }
    }
    Ok(children)
}

fn not_found(pid: u32) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no process {pid}"))
}

fn to_io(error: ProcError) -> io::Error {
    match error {
        ProcError::NotFound(_) => io::Error::new(io::ErrorKind::NotFound, error.to_string()),
        other => io::Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn the_tree_includes_children_and_their_cpu() {
        // A shell that burns CPU in a child: the tree of `sh` must see both processes. The
        // child sleeps after burning, so it is still alive when we look however fast the
        // machine is (a child that had already exited would be a flaky failure).
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("(i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; sleep 2) & wait")
            .spawn()
            .unwrap();
        let pid = child.id();
        std::thread::sleep(Duration::from_millis(300));
        let cpu = tree_cpu(pid).unwrap();
        let memory = tree_memory(pid).unwrap();
        let cpus = tree_cpus_allowed(pid).unwrap();
        child.wait().unwrap();
        assert!(cpu.processes >= 2, "{cpu:?}");
        assert!(cpu.nanos > 0, "{cpu:?}");
        // The parent blocked in wait(2) at least once: a voluntary switch.
        assert!(cpu.voluntary_switches > 0, "{cpu:?}");
        assert!(
            memory.rss > 0 && memory.pss > 0 && memory.processes >= 2,
            "{memory:?}"
        );
        assert!(!cpus.is_empty());
        assert!(self_cpu().is_ok());
        assert_eq!(
            tree_cpu(pid).unwrap_err().kind(),
            io::ErrorKind::NotFound,
            "a reaped process has no tree"
        );
    }
}
