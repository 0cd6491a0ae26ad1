//! Process helpers that are safe to exercise inside the multi-threaded test harness: fork
//! refuses, the RLIMIT_NOFILE round trip, getpid, and reaping with no children. The
//! single-threaded paths (a fork that succeeds, SIGCHLD, SIGTERM) live in tests/signal.rs,
//! which runs without the harness.

use std::io;
use std::sync::{Arc, Barrier};
use std::thread;

use reactor::process::{self, Pid};

#[test]
fn fork_refuses_in_a_multithreaded_process() {
    // libtest already runs tests on worker threads, but do not rely on it: hold a second
    // thread of our own alive across the call.
    let barrier = Arc::new(Barrier::new(2));
    let helper = {
        let barrier = Arc::clone(&barrier);
        thread::spawn(move || {
            barrier.wait();
            barrier.wait();
        })
    };
    barrier.wait();
    // If this check were missing, fork would succeed here and two copies of the test binary
    // would carry on; `Parent`/`Child` results both fail the test.
    let err = process::fork().expect_err("fork must refuse with more than one thread");
    assert_eq!(err.kind(), io::ErrorKind::Other);
    assert!(err.to_string().contains("threads"), "{err}");
    barrier.wait();
    helper.join().unwrap();
}

#[test]
fn nofile_limit_round_trips() {
    let (soft, hard) = process::nofile_limit().unwrap();
    assert!(soft <= hard);
    let lower = soft.min(512);
    process::set_nofile_limit(lower).unwrap();
    assert_eq!(process::nofile_limit().unwrap(), (lower, hard));

    // Above the hard limit is refused (raising it needs CAP_SYS_RESOURCE); unlimited is skipped.
    if hard != u64::MAX {
        let err = process::set_nofile_limit(hard + 1).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    }

    let raised = process::raise_nofile_limit().unwrap();
    assert_eq!(process::nofile_limit().unwrap().0, raised);
    assert!(raised >= lower);
    if hard != u64::MAX {
        assert_eq!(raised, hard);
    }
    process::set_nofile_limit(soft).unwrap();
    assert_eq!(process::nofile_limit().unwrap(), (soft, hard));
}

#[test]
fn getpid_matches_std() {
    assert_eq!(process::getpid(), Pid(std::process::id() as i32));
}

#[test]
fn reap_any_without_children_is_none() {
    // No test in this binary starts a child process, so waitpid reports ECHILD, mapped to None.
    assert_eq!(process::reap_any().unwrap(), None);
}

#[test]
fn kill_a_missing_process_is_esrch() {
    // Pid 2^22 + 1 is above the kernel's pid_max ceiling (kernel/pid.c PID_MAX_LIMIT), so it
    // can never exist.
    let err = process::kill(Pid((1 << 22) + 1), reactor::Signal::Terminate).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ESRCH));
}
