//! What the tests read about a running server from `/proc` (proc(5)): its process tree,
//! resident memory, open descriptors and CPU time.
//!
//! The process models (`prefork`, `process-per-conn`) are several processes, so every figure
//! is available per process and summed over the tree rooted at the server's pid. The tree is
//! found by scanning `/proc/[pid]/stat` for parent pids: `/proc/[pid]/task/*/children` would
//! be cheaper but is only as complete as `CONFIG_PROC_CHILDREN` makes it.

use std::collections::HashMap;
use std::fs;
use std::time::{Duration, Instant};

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

/// Reads `/proc/[pid]/stat`; `None` if the process is gone.
pub fn proc_info(pid: i32) -> Option<ProcInfo> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may itself contain spaces and
    // parentheses, so split after the LAST ')' (proc_pid_stat(5)).
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): ppid is field 4, utime 14 and stime 15.
    let num = |field: usize| fields.get(field - 3)?.parse::<u64>().ok();
    Some(ProcInfo {
        pid,
        ppid: num(4)? as i32,
        state: fields.first()?.chars().next()?,
        cpu_ticks: num(14)? + num(15)?,
    })
}

/// `root` and all its descendants (zombies included), root first.
pub fn tree(root: i32) -> Vec<ProcInfo> {
    let mut by_parent: HashMap<i32, Vec<ProcInfo>> = HashMap::new();
    let mut root_info = None;
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Some(info) = proc_info(pid) else { continue };
        if pid == root {
            root_info = Some(info.clone());
        }
        by_parent.entry(info.ppid).or_default().push(info);
    }
    let Some(root_info) = root_info else {
        return Vec::new();
    };
    let mut out = vec![root_info];
    let mut i = 0;
    while i < out.len() {
        if let Some(children) = by_parent.remove(&out[i].pid) {
            out.extend(children);
        }
        i += 1;
    }
    out
}

/// Live (non-zombie) processes of the tree.
pub fn live_tree(root: i32) -> Vec<ProcInfo> {
    tree(root).into_iter().filter(|p| p.state != 'Z').collect()
}

/// `VmRSS` of one process in bytes (proc_pid_status(5)); `None` if gone or a zombie.
pub fn rss_bytes(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Open descriptors of one process (entries of `/proc/[pid]/fd`); `None` if gone.
pub fn fd_count(pid: i32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// What each descriptor of one process points to (`socket:[inode]`, `anon_inode:[eventpoll]`,
/// ...), for failure messages about leaks.
pub fn fd_targets(pid: i32) -> Vec<String> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut out: Vec<String> = dir
        .flatten()
        .map(|e| {
            let target = fs::read_link(e.path()).map(|t| t.display().to_string());
            format!(
                "{}->{}",
                e.file_name().to_string_lossy(),
                target.unwrap_or_default()
            )
        })
        .collect();
    out.sort();
    out
}

/// Clock ticks per second for `cpu_ticks` (`sysconf(_SC_CLK_TCK)`). It is 100 on every Linux
/// ABI the tests run on (USER_HZ is fixed by the kernel ABI, see time(7)).
pub const CLOCK_TICKS_PER_SEC: u64 = 100;

/// CPU time the whole tree used over `window`, as a fraction of one core.
pub fn cpu_fraction(root: i32, window: Duration) -> f64 {
    let ticks = |pid| -> u64 { tree(pid).iter().map(|p| p.cpu_ticks).sum() };
    let before = ticks(root);
    let start = Instant::now();
    std::thread::sleep(window);
    let used = ticks(root).saturating_sub(before);
    used as f64 / CLOCK_TICKS_PER_SEC as f64 / start.elapsed().as_secs_f64()
}
