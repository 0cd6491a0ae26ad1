//! Named threads pinned to cores with `sched_setaffinity(2)` (through the `core_affinity`
//! crate).
//!
//! A worker that stays on one core keeps its caches warm and never migrates in the middle of
//! a job; on a machine with as many workers as cores it also stops two workers from being
//! stacked on one core while another idles. The cost is flexibility: a pinned thread cannot
//! move away from a core that some other process is hogging, which is why pinning can be
//! turned off (`PoolBuilder::pin(false)`, `--pin=false` in the server).
//!
//! Threads are named (`thread::Builder::name`) so that `top -H`, `perf top` and
//! `/proc/<pid>/task/*/comm` show what they are. Linux keeps only the first 15 bytes of a
//! thread name (`TASK_COMM_LEN` is 16 with the NUL, see `prctl(2)` `PR_SET_NAME`), and the
//! standard library truncates to fit: keep prefixes short, so the index survives.

use std::io;
use std::sync::Once;
use std::thread::{self, JoinHandle};

use log::{debug, warn};

/// How many cores this process may run on: the size of its CPU affinity mask
/// (`sched_getaffinity(2)`, so `taskset` and container CPU sets are honoured), falling back to
/// `std::thread::available_parallelism`, and never less than 1.
pub fn available_cores() -> usize {
    core_affinity::get_core_ids()
        .map(|ids| ids.len())
        .filter(|&n| n > 0)
        .or_else(|| thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
}

/// Spawns a thread named `name` that runs `f`, first pinning itself to core
/// `core_index % cores` when `pin` is true.
///
/// When `core_index >= cores` (more workers than cores), the thread still pins, sharing a core
/// with a lower index, and a warning is logged once per process. When pinning is impossible
/// (no affinity mask readable, or `sched_setaffinity` refused), the thread runs unpinned and a
/// warning is logged once. Errors are those of `std::thread::Builder::spawn`.
pub fn spawn_pinned<F, T>(
    name: String,
    core_index: usize,
    pin: bool,
    f: F,
) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    thread::Builder::new().name(name).spawn(move || {
        if pin {
            pin_current_thread(core_index);
        }
        f()
    })
}

/// Pins the calling thread to core `core_index % cores`, logging (once) when it cannot. For a
/// thread that already exists, such as a forked child's only thread (`prefork`).
pub fn pin_current_thread(core_index: usize) {
    static OVERSUBSCRIBED: Once = Once::new();
    static PIN_FAILED: Once = Once::new();

    let thread_name = thread::current().name().unwrap_or("unnamed").to_owned();
    let Some(cores) = core_affinity::get_core_ids().filter(|ids| !ids.is_empty()) else {
        PIN_FAILED.call_once(|| {
            warn!("cannot read this process's CPU affinity mask: threads run unpinned");
        });
        return;
    };
    if core_index >= cores.len() {
        OVERSUBSCRIBED.call_once(|| {
            warn!(
                "{} cores available but thread index {core_index} asked for pinning: \
                 threads beyond the core count share cores (index modulo {})",
                cores.len(),
                cores.len()
            );
        });
    }
    let core = cores[core_index % cores.len()];
    if core_affinity::set_for_current(core) {
        debug!("{thread_name} pinned to core {}", core.id);
    } else {
        PIN_FAILED.call_once(|| {
            warn!(
                "sched_setaffinity refused to pin {thread_name} to core {}: threads run unpinned",
                core.id
            );
        });
    }
}
