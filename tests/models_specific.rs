//! What only one model promises: prefork restarts a dead child, process-per-conn leaves no
//! zombie, reactor-pool never lets two workers serve one connection (and the `--no-oneshot`
//! switch shows the counter catching it when that guarantee is removed), listener-pool deals
//! connections round-robin, and thread-per-conn gives its threads back.

mod util;

use std::time::{Duration, Instant};

use reactor::process::Pid;
use reactor::Signal;
use util::client::{echo_exact, Finish};
use util::{final_lines, poll_until, procfs, seed_for, Model, Rng, Server, Watchdog};

#[test]
fn prefork_restarts_a_killed_child() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    let server = Server::start(Model::Prefork, &["--workers", "2"]);
    let children = || -> Vec<i32> { server.processes().iter().skip(1).map(|p| p.pid).collect() };
    let before = children();
    assert_eq!(
        before.len(),
        2,
        "prefork --workers 2 runs two children: {before:?}"
    );
    let early = server.clients(20);
    for c in &early {
        echo_exact(c, b"before\n").unwrap();
    }
    // A child publishes its counts for the parent's total on every tick (250 ms); one killed
    // by SIGKILL cannot publish its last ones, so let a tick pass first.
    std::thread::sleep(Duration::from_millis(600));
    let victim = before[0];
    reactor::process::kill(Pid(victim), Signal::Kill).unwrap();
    let after = poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
        let now = children();
        if now.len() == 2 && !now.contains(&victim) {
            Ok(now)
        } else {
            Err(format!("a replacement child (children now {now:?})"))
        }
    })
    .unwrap();
    assert!(
        after.contains(&before[1]),
        "the surviving child must be left alone: {before:?} -> {after:?}"
    );
    // The victim's clients lose their connection (EOF or reset); the survivor's still echo.
    let survivors = early
        .iter()
        .filter(|c| echo_exact(c, b"after\n").is_ok())
        .count();
    assert!(
        survivors > 0,
        "no connection on the surviving child still echoes"
    );
    // New clients are served, by both children.
    let payloads: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 10_000]).collect();
    server.echo_clients(&payloads, Finish::HalfClose, Duration::from_secs(30));
    drop(early);
    let exit = server.terminate(Duration::from_secs(20));
    exit.assert_clean();
    assert_eq!(
        exit.final_stats().len(),
        final_lines(Model::Prefork, 2),
        "one final line per live child, then the parent's total: {:?}",
        exit.stdout
    );
    let children: u64 = exit.final_stats()[..2]
        .iter()
        .map(|s| s.get("accepted"))
        .sum();
    let total = exit.final_sum("accepted");
    assert!(
        total > children,
        "the parent's total ({total}) adds the killed child's connections to the live \
         children's ({children})"
    );
}

#[test]
fn process_per_conn_leaves_no_zombies() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    let server = Server::start(Model::ProcessPerConn, &["--stats-interval", "0.25"]);
    let mut rng = Rng::new(7);
    for i in 0..40 {
        let c = server.connect();
        echo_exact(&c, &rng.bytes(1000 + i)).unwrap();
    }
    let payloads: Vec<Vec<u8>> = (0..30).map(|_| rng.bytes(50_000)).collect();
    let together = server.echo_clients(&payloads, Finish::KeepOpen, Duration::from_secs(30));
    let live = server.processes().len() - 1;
    assert_eq!(live, 30, "one child per open connection");
    drop(together);
    poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        let tree = procfs::tree(server.pid());
        let zombies: Vec<i32> = tree
            .iter()
            .filter(|p| p.state == 'Z')
            .map(|p| p.pid)
            .collect();
        match tree.len() {
            1 => Ok(()),
            n => Err(format!(
                "no child left after the last client ({} children, zombies {zombies:?})",
                n.saturating_sub(1)
            )),
        }
    })
    .unwrap();
    let stats = server.wait_stats(Duration::from_secs(5), |s| {
        s.get("open") == 0 && s.get("children") == 0
    });
    let stats = stats.expect("a periodic stats line with no open connection and no child");
    assert_eq!(stats.get("closed"), 70);
    server.terminate(Duration::from_secs(20)).assert_clean();
}

#[test]
fn reactor_pool_never_serves_a_connection_twice() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    let (overlaps, panics) = hammer_reactor_pool(&[]);
    assert_eq!(
        overlaps, 0,
        "EPOLLONESHOT must keep each connection on one worker at a time"
    );
    assert_eq!(panics, 0);
}

#[test]
fn without_oneshot_the_overlap_counter_catches_double_dispatch() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    // The counterexample: drop EPOLLONESHOT and the level-triggered socket is reported again
    // while a worker still holds it. The echo stays correct (the slot's Mutex serialises the
    // two workers) but the invariant is broken, and the counter must say so.
    let (overlaps, _) = hammer_reactor_pool(&["--no-oneshot"]);
    assert!(
        overlaps > 0,
        "--no-oneshot under load should produce overlaps, got 0"
    );
}

/// 40 connections streaming many small messages through reactor-pool; returns the final
/// `overlaps` and `worker_panics`.
fn hammer_reactor_pool(extra: &[&str]) -> (u64, u64) {
    let server = Server::builder(Model::ReactorPool)
        .args(&["--workers", "2"])
        .args(extra)
        .start();
    std::thread::scope(|s| {
        for t in 0..40u64 {
            let server = &server;
            s.spawn(move || {
                let mut rng = Rng::new(seed_for("hammer") ^ t);
                let c = server.connect();
                let deadline = Instant::now() + Duration::from_secs(2);
                while Instant::now() < deadline {
                    let len = rng.below(2000) as usize + 1;
                    let msg = rng.bytes(len);
                    echo_exact(&c, &msg).unwrap();
                }
            });
        }
    });
    let exit = server.terminate(Duration::from_secs(20));
    exit.assert_clean();
    let last = exit.last_final();
    (last.get("overlaps"), last.get("worker_panics"))
}

#[test]
fn listener_pool_deals_connections_round_robin() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    let server = Server::start(Model::ListenerPool, &["--workers", "2"]);
    for _ in 0..101 {
        let c = server.connect();
        echo_exact(&c, b"deal\n").unwrap();
    }
    let exit = server.terminate(Duration::from_secs(20));
    exit.assert_clean();
    let per_worker = exit.last_final().list("worker_conns");
    assert_eq!(per_worker.iter().sum::<u64>(), 101, "{per_worker:?}");
    assert!(
        per_worker.iter().all(|&n| n == 50 || n == 51),
        "round-robin over 2 workers: {per_worker:?}"
    );
}

#[test]
fn thread_per_conn_gives_its_threads_back() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    let server = Server::start(Model::ThreadPerConn, &[]);
    // Connection threads are named `rawloop-conn` (their comm in /proc/PID/task/TID/comm).
    let conn_threads = || procfs::threads_named(server.pid(), "rawloop-conn");
    assert_eq!(conn_threads(), 0);
    let payloads: Vec<Vec<u8>> = (0..60u8).map(|i| vec![i; 1000]).collect();
    let conns = server.echo_clients(&payloads, Finish::KeepOpen, Duration::from_secs(30));
    assert_eq!(conn_threads(), 60, "one thread per open connection");
    drop(conns);
    poll_until(
        Duration::from_secs(10),
        Duration::from_millis(20),
        || match conn_threads() {
            0 => Ok(()),
            n => Err(format!(
                "every connection thread gone after the clients left ({n} left)"
            )),
        },
    )
    .unwrap();
    server.terminate(Duration::from_secs(20)).assert_clean();
}
