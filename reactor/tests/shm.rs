//! `SharedCounters` across a real `fork(2)`: what a child adds, its parent sees. The test forks,
//! so it runs single-threaded as a plain `main` (harness = false, like `signal.rs`).

use std::sync::atomic::Ordering;

use reactor::process::{self, Fork};
use reactor::SharedCounters;

fn main() {
    let counters = SharedCounters::new(3).expect("mmap");
    assert!(counters
        .as_slice()
        .iter()
        .all(|c| c.load(Ordering::Relaxed) == 0));
    let mut children = Vec::new();
    for child in 0..4u64 {
        match process::fork().expect("fork") {
            Fork::Child => {
                counters.as_slice()[1].fetch_add(10 + child, Ordering::Relaxed);
                process::exit_now(0);
            }
            Fork::Parent(pid) => children.push(pid),
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !children.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "children did not exit"
        );
        if let Some((pid, _)) = process::reap_any().expect("waitpid") {
            children.retain(|p| *p != pid);
        } else {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    let seen: Vec<u64> = counters
        .as_slice()
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    assert_eq!(
        seen,
        vec![0, 10 + 11 + 12 + 13, 0],
        "the children's adds are visible"
    );
    println!("test result: ok. 1 passed (shm.rs, single-threaded)");
}
