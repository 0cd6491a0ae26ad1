//! CPU time and memory of a process tree, read from `/proc` (proc(5)).
//!
//! On a two-core machine the generator and the server share the cores, so messages per second
//! says as much about the generator as about the server. CPU time per message does not: it is
//! what serving one echo costs, whoever else runs. So the generator samples the server's CPU
//! time before and after the measured window and divides by the messages echoed in it.
//!
//! "The server" is a process *tree*: `process-per-conn` forks a child per connection and
//! `prefork` forks its workers, and their CPU time must count. We sum, over the server and
//! every live descendant, `utime + stime` (fields 14 and 15 of `/proc/PID/stat`, which cover all
//! threads of the process, dead ones included) plus `cutime + cstime` (fields 16 and 17: the
//! time of children already reaped with wait(2)). A child that exits between two samples moves
//! from its own `utime` to its parent's `cutime`, so nothing is lost or counted twice.
//!
//! Descendants come from `/proc/PID/task/TID/children` when the kernel has it
//! (`CONFIG_PROC_CHILDREN`), else from a scan of every `/proc/PID/stat` for its parent (field 4).
//!
//! Times in `/proc/PID/stat` are in clock ticks of `USER_HZ`, which the kernel fixes at 100 per
//! second in its user-space ABI on every architecture (`sysconf(_SC_CLK_TCK)` reports it; this
//! crate has no libc to ask). A tick is 10 ms and the kernel truncates each process's time to
//! whole ticks, which is ruinous for `process-per-conn`: 64 children that each ran 3 ms show
//! 0 ticks between them. So for the live threads we read `/proc/PID/task/TID/schedstat` instead,
//! whose first field is the thread's time on the CPU in nanoseconds (sched-stats.rst), and take
//! per process the larger of that sum and `utime + stime` (which alone includes threads that
//! have already exited). For a single-threaded process (a `process-per-conn` child, a `prefork`
//! worker) that is exact. For a multi-threaded one it is within one tick of the truth: when a
//! thread exits its nanoseconds leave the live sum, but the tick count still holds them, less at
//! most one truncated tick. Deltas are taken with saturating subtraction for that reason.
//!
//! Memory is the resident set (`VmRSS` in `/proc/PID/status`), summed over the tree. For forked
//! servers that sum counts pages shared copy-on-write once per process, so it overstates their
//! memory; `Pss` (`/proc/PID/smaps_rollup`) divides shared pages among their sharers and is
//! reported next to it. Neither includes socket buffers, which are kernel memory.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::time::Duration;

/// Clock ticks per second in `/proc/PID/stat` (USER_HZ, fixed by the kernel ABI).
pub const USER_HZ: u64 = 100;

/// Nanoseconds in one clock tick.
const TICK_NANOS: u64 = 1_000_000_000 / USER_HZ;

/// CPU time and process count of a process tree at one instant.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeCpu {
    /// Total CPU time (user + system, live processes and reaped children) in nanoseconds.
    pub nanos: u64,
    /// Processes in the tree, the root included.
    pub processes: usize,
}

impl TreeCpu {
    /// CPU time in microseconds.
    pub fn micros(&self) -> u64 {
        self.nanos / 1_000
    }
}

/// Memory of a process tree at one instant, in bytes.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeMemory {
    /// Sum of `VmRSS`.
    pub rss: u64,
    /// Sum of `Pss` (0 when `smaps_rollup` is missing).
    pub pss: u64,
    /// Processes in the tree.
    pub processes: usize,
}

/// The CPU time of `pid` and its live descendants, plus their reaped children.
pub fn tree_cpu(pid: u32) -> io::Result<TreeCpu> {
    let mut total = TreeCpu::default();
    for member in tree(pid)? {
        // A descendant may exit between listing and reading: it then shows up in its
        // parent's cutime at the next sample, so skipping it here is right.
        let Ok(stat) = Stat::read(member) else {
            continue;
        };
        total.nanos += process_nanos(member, &stat) + (stat.cutime + stat.cstime) * TICK_NANOS;
        total.processes += 1;
    }
    if total.processes == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no process {pid}"),
        ));
    }
    Ok(total)
}

/// The resident memory of `pid` and its live descendants.
pub fn tree_memory(pid: u32) -> io::Result<TreeMemory> {
    let mut total = TreeMemory::default();
    for member in tree(pid)? {
        let Ok(status) = fs::read_to_string(format!("/proc/{member}/status")) else {
            continue;
        };
        total.rss += kib_field(&status, "VmRSS:").unwrap_or(0) * 1024;
        if let Ok(rollup) = fs::read_to_string(format!("/proc/{member}/smaps_rollup")) {
            total.pss += kib_field(&rollup, "Pss:").unwrap_or(0) * 1024;
        }
        total.processes += 1;
    }
    Ok(total)
}

/// CPU time used so far by this process (all its threads).
pub fn self_cpu() -> io::Result<Duration> {
    let pid = std::process::id();
    let stat = Stat::read(pid)?;
    Ok(Duration::from_nanos(process_nanos(pid, &stat)))
}

/// Whether `/proc/PID` exists (the process has not been reaped).
pub fn is_alive(pid: u32) -> bool {
    fs::metadata(format!("/proc/{pid}")).is_ok()
}

/// The fields of `/proc/PID/stat` we use.
#[derive(Copy, Clone, Debug, Default)]
struct Stat {
    ppid: u32,
    utime: u64,
    stime: u64,
    cutime: u64,
    cstime: u64,
}

impl Stat {
    fn read(pid: u32) -> io::Result<Stat> {
        Stat::read_path(&format!("/proc/{pid}/stat"))
    }

    fn read_path(path: &str) -> io::Result<Stat> {
        let text = fs::read_to_string(path)?;
        Stat::parse(&text).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("cannot parse {path}"))
        })
    }

    /// The command name (field 2) is in parentheses and may itself contain spaces and
    /// parentheses, so fields are counted from the LAST `)` (proc(5) advises the same).
    fn parse(text: &str) -> Option<Stat> {
        let after_comm = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        // fields[0] is field 3 (state); field N of proc(5) is fields[N - 3].
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Stat {
            ppid: u32::try_from(field(4)?).ok()?,
            utime: field(14)?,
            stime: field(15)?,
            cutime: field(16)?,
            cstime: field(17)?,
        })
    }
}

/// CPU time of one process, without its reaped children: the larger of its tick count (all
/// threads, dead ones included, truncated to ticks) and its live threads' nanosecond counts.
fn process_nanos(pid: u32, stat: &Stat) -> u64 {
    let ticks = (stat.utime + stat.stime) * TICK_NANOS;
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return ticks;
    };
    let mut threads = 0;
    for task in tasks.flatten() {
        let Ok(text) = fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        threads += text
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
    }
    ticks.max(threads)
}

/// `pid` followed by all its live descendants.
fn tree(pid: u32) -> io::Result<Vec<u32>> {
    if !is_alive(pid) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no process {pid}"),
        ));
    }
    if has_children_files(pid) {
        return Ok(walk_task_files(pid));
    }
    let children = children_by_scan()?;
    let mut members = vec![pid];
    let mut next = 0;
    while next < members.len() {
        if let Some(kids) = children.get(&members[next]) {
            members.extend(kids);
        }
        next += 1;
    }
    Ok(members)
}

/// Breadth-first walk over `/proc/PID/task/*/children`.
fn walk_task_files(pid: u32) -> Vec<u32> {
    let mut members = vec![pid];
    let mut next = 0;
    while next < members.len() {
        members.extend(children_from_task_files(members[next]).unwrap_or_default());
        next += 1;
    }
    members
}

/// Direct children of `pid` from its threads' `children` files, or `None` if unreadable.
fn children_from_task_files(pid: u32) -> Option<Vec<u32>> {
    let mut kids = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("children");
        let text = fs::read_to_string(path).ok()?;
        kids.extend(
            text.split_whitespace()
                .filter_map(|k| k.parse::<u32>().ok()),
        );
    }
    Some(kids)
}

fn has_children_files(pid: u32) -> bool {
    fs::metadata(format!("/proc/{pid}/task/{pid}/children")).is_ok()
}

/// Parent -> children for every process, from one pass over `/proc/*/stat`.
fn children_by_scan() -> io::Result<HashMap<u32, Vec<u32>>> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(stat) = Stat::read(pid) {
            children.entry(stat.ppid).or_default().push(pid);
        }
    }
    Ok(children)
}

/// A `Name:   1234 kB` line's number.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn stat_parsing_survives_odd_command_names() {
        let text = "42 (a (b) c) S 7 42 42 0 -1 4194304 98 0 0 0 11 22 33 44 20 0 1 0 38708";
        let stat = Stat::parse(text).unwrap();
        assert_eq!(stat.ppid, 7);
        assert_eq!(
            (stat.utime, stat.stime, stat.cutime, stat.cstime),
            (11, 22, 33, 44)
        );
    }

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
        child.wait().unwrap();
        assert!(cpu.processes >= 2, "{cpu:?}");
        assert!(cpu.nanos > 0, "{cpu:?}");
        assert!(memory.rss > 0 && memory.processes >= 2, "{memory:?}");
        assert!(self_cpu().is_ok());
    }
}
