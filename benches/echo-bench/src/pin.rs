//! Pinning the lab to CPUs: CPU lists (`0`, `0,2`, `1-3`) and sched_setaffinity(2).
//!
//! On a two-core machine an unpinned lab mostly measures the scheduler: the generator's thread
//! and the server's threads move between the cores, and a single-threaded server shares its core
//! with the generator whenever the scheduler says so. `lab --server-cpus 0 --generator-cpus 1`
//! keeps the two sides apart, which is how single-threaded models are compared fairly.
//!
//! How the affinity reaches each side, without `unsafe` and without the `taskset` binary:
//!
//! - **The generator.** The lab sets the affinity of its own main thread before it starts any
//!   generator thread. A new thread inherits its creator's CPU affinity mask (pthread_create(3)),
//!   so every worker thread and the control loop run on the generator's CPUs.
//! - **The servers.** [`spawn_on`] spawns the server from a short-lived thread whose own mask is
//!   first set to the server's CPUs. A child created by fork(2) inherits the mask of the thread
//!   that forked it and keeps it across execve(2) (sched_setaffinity(2), "NOTES"), which is
//!   exactly what `taskset -c LIST command` does. The server then holds the mask from its first
//!   instruction, and every thread and process it creates inherits it; setting the mask after
//!   the spawn would race with the threads the server starts at once.
//!
//! The lab reads the mask back from `/proc` for every run ([`crate::procfs::tree_cpus_allowed`])
//! and fails a run whose server ran outside its list.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::process::{Child, Command};
use std::str::FromStr;
use std::thread;

use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};
use serde::{Deserialize, Serialize};

/// A non-empty set of CPU numbers, written in the kernel's list format (cpuset(7), "List
/// format"): `0-2,5` is CPUs 0, 1, 2 and 5. The same syntax as `taskset -c`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CpuList(BTreeSet<usize>);

impl CpuList {
    /// The CPUs, in increasing order.
    pub fn cpus(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().copied()
    }

    /// How many CPUs the list holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a list holds at least one CPU.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every CPU of `other` is in this list.
    pub fn contains_all(&self, other: &CpuList) -> bool {
        other.0.is_subset(&self.0)
    }

    /// The CPUs of both lists.
    pub fn intersection(&self, other: &CpuList) -> Option<CpuList> {
        CpuList::from_set(self.0.intersection(&other.0).copied().collect())
    }

    /// A list from a set, `None` when the set is empty.
    pub fn from_set(cpus: BTreeSet<usize>) -> Option<CpuList> {
        (!cpus.is_empty()).then_some(CpuList(cpus))
    }
}

impl FromStr for CpuList {
    type Err = String;

    fn from_str(text: &str) -> Result<CpuList, String> {
        let bad = || format!("bad CPU list {text:?} (e.g. 0, 0,2 or 0-3)");
        let mut cpus = BTreeSet::new();
        for part in text.split(',').map(str::trim) {
            let (first, last) = part.split_once('-').unwrap_or((part, part));
            let first: usize = first.trim().parse().map_err(|_| bad())?;
            let last: usize = last.trim().parse().map_err(|_| bad())?;
            if first > last || last >= CpuSet::MAX_CPU {
                return Err(bad());
            }
            cpus.extend(first..=last);
        }
        CpuList::from_set(cpus).ok_or_else(bad)
    }
}

impl fmt::Display for CpuList {
    /// The shortest list form: runs of consecutive CPUs become ranges (`0-3,6`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut cpus = self.cpus().peekable();
        let mut first_range = true;
        while let Some(start) = cpus.next() {
            let mut end = start;
            while cpus.peek() == Some(&(end + 1)) {
                end = cpus.next().unwrap_or(end);
            }
            let comma = if first_range { "" } else { "," };
            first_range = false;
            match end > start {
                true => write!(f, "{comma}{start}-{end}")?,
                false => write!(f, "{comma}{start}")?,
            }
        }
        Ok(())
    }
}

impl TryFrom<String> for CpuList {
    type Error = String;

    fn try_from(text: String) -> Result<CpuList, String> {
        text.parse()
    }
}

impl From<CpuList> for String {
    fn from(list: CpuList) -> String {
        list.to_string()
    }
}

/// Restricts the calling thread to `cpus` (sched_setaffinity(2) with pid 0: this thread only).
/// Threads it creates afterwards inherit the mask.
pub fn pin_current_thread(cpus: &CpuList) -> io::Result<()> {
    let mut set = CpuSet::new();
    for cpu in cpus.cpus() {
        set.set(cpu);
    }
    // EINVAL when no CPU of the set is one this process may use (another cpuset, offline).
    sched_setaffinity(None, &set).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("sched_setaffinity({cpus}): {e}"),
        )
    })
}

/// The CPUs the calling thread may run on (sched_getaffinity(2)).
pub fn current_thread_cpus() -> io::Result<CpuList> {
    let set = sched_getaffinity(None)?;
    let cpus = (0..CpuSet::MAX_CPU)
        .filter(|&cpu| set.is_set(cpu))
        .collect();
    CpuList::from_set(cpus).ok_or_else(|| io::Error::other("empty CPU affinity mask"))
}

/// Spawns `command` restricted to `cpus` (or with the caller's own mask when `None`): the
/// spawn happens on a helper thread pinned first, so the child inherits the mask through fork
/// and keeps it through exec, and the caller's own mask never changes.
pub fn spawn_on(cpus: Option<&CpuList>, command: &mut Command) -> io::Result<Child> {
    let Some(cpus) = cpus else {
        return command.spawn();
    };
    thread::scope(|scope| {
        let spawner = thread::Builder::new()
            .name("echo-bench-spawn".into())
            .spawn_scoped(scope, || {
                pin_current_thread(cpus)?;
                command.spawn()
            })?;
        spawner
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the spawning thread panicked")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    #[test]
    fn cpu_lists_parse_and_print_in_the_kernel_format() {
        let list: CpuList = "3, 0-1,5-6,2".parse().unwrap();
        assert_eq!(list.cpus().collect::<Vec<_>>(), [0, 1, 2, 3, 5, 6]);
        assert_eq!(list.to_string(), "0-3,5-6");
        assert_eq!("1".parse::<CpuList>().unwrap().to_string(), "1");
        for bad in ["", "a", "2-1", "1,", "-1", "0-99999"] {
            assert!(bad.parse::<CpuList>().is_err(), "{bad:?} accepted");
        }
        let json = serde_json::to_string(&list).unwrap();
        assert_eq!(json, "\"0-3,5-6\"");
        assert_eq!(serde_json::from_str::<CpuList>(&json).unwrap(), list);
    }

    #[test]
    fn a_spawned_child_keeps_the_mask_and_the_caller_keeps_its_own() {
        let before = current_thread_cpus().unwrap();
        let first: CpuList = before.cpus().next().unwrap().to_string().parse().unwrap();
        let mut sleeper = Command::new("sleep");
        sleeper.arg("5").stdout(Stdio::null());
        let mut child = spawn_on(Some(&first), &mut sleeper).unwrap();
        let seen = crate::procfs::tree_cpus_allowed(child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(CpuList::from_set(seen.unwrap()), Some(first));
        assert_eq!(
            current_thread_cpus().unwrap(),
            before,
            "the caller was not re-pinned"
        );
    }
}
