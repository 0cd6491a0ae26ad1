//! The kernel lab end to end, in small bounded forms: the `backlog` and `synflood` experiments
//! in their own network namespaces (real listeners, real overflows, real spoofed SYNs), the
//! SYN generator's refusals, and the `fairness` scenario's per-worker counts for every model.
//!
//! The namespace experiments need root. Without it each test prints "skipped: needs root
//! (network namespace)" and checks instead that the command says so and exits with the
//! skipped status; CI runs as root, with `ip` and `nft` installed, and runs them for real.

mod util;

use std::net::SocketAddrV4;
use std::process::{Command, Output};
use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::Duration;

use echo_bench::clients::{self, Outcome};
use echo_bench::kernel_lab::KernelFile;
use echo_bench::netns::{NetnsError, PrivateNet, EXIT_SKIPPED, NEEDS_ROOT};
use echo_bench::netstat::{self, Counter};
use echo_bench::queues::{BacklogRun, SynfloodRun};
use echo_bench::synflood::{FloodConfig, SynFlood};

/// `echo-bench kernel ARGS --json` against the real echo-server.
fn kernel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_echo-bench"))
        .arg("kernel")
        .args(args)
        .arg("--json")
        .arg("--server-bin")
        .arg(util::echo_server_bin())
        .output()
        .expect("run echo-bench kernel")
}

/// The run's JSON, or `None` (with the skip checked) when this machine cannot run it.
fn parsed<T: serde::de::DeserializeOwned>(out: &Output) -> Option<T> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(i32::from(EXIT_SKIPPED)) {
        assert!(stderr.starts_with("skipped: "), "{stderr}");
        eprintln!("{}", stderr.trim());
        return None;
    }
    assert!(out.status.success(), "{}: {stderr}", out.status);
    Some(serde_json::from_slice(&out.stdout).expect("the run's JSON"))
}

#[test]
fn a_small_backlog_overflows_and_every_client_ends_as_the_sysctl_says() {
    let burst = 64;
    for abort in ["0", "1"] {
        let out = kernel(&[
            "backlog",
            "--backlog",
            "16",
            "--burst",
            "64",
            "--hold",
            "1200ms",
            "--deadline",
            "10s",
            "--abort-on-overflow",
            abort,
        ]);
        let Some(run) = parsed::<BacklogRun>(&out) else {
            return;
        };
        // The kernel admits one connection past the backlog before it calls the queue full.
        let peak = run.samples.iter().map(|s| s.queues.accept_queue).max();
        assert_eq!(peak, Some(17), "abort {abort}");
        let overflows = run.counters[&Counter::ListenOverflows];
        assert!(
            overflows >= (burst - 17) as u64,
            "abort {abort}: {overflows} overflows"
        );
        assert!(run.counters[&Counter::ListenDrops] >= overflows);
        let echoed = clients::count(&run.clients, Outcome::Echoed);
        let reset = clients::count(&run.clients, Outcome::Reset);
        match abort {
            // Dropped SYNs and ACKs are retransmitted: everyone gets in, late.
            "0" => assert_eq!(echoed, burst, "{:?}", run.clients),
            // A reset is the sysctl's answer to an ACK that found the queue full.
            _ => assert_eq!(echoed + reset, burst, "{:?}", run.clients),
        }
        // Those beyond the queue waited for a retransmitted SYN: at least a second.
        let late = run
            .clients
            .iter()
            .filter(|c| c.connect_s.is_some_and(|s| s >= 0.9));
        assert!(late.count() >= burst - 17 - 16, "abort {abort}");
        assert!((run.resumed_at_s - run.burst_at_s - 1.2).abs() < 0.3);
    }
}

#[test]
fn a_syn_flood_fills_the_syn_queue_unless_cookies_answer() {
    let flood = |cookies: &str| {
        kernel(&[
            "synflood",
            "--syncookies",
            cookies,
            "--backlog",
            "32",
            "--rate",
            "2000",
            "--packets",
            "4000",
            "--duration",
            "2s",
            "--clients",
            "4",
            "--deadline",
            "1500ms",
        ])
    };
    let Some(off) = parsed::<SynfloodRun>(&flood("0")) else {
        return;
    };
    let peak = off
        .samples
        .iter()
        .map(|s| s.queues.syn_queue)
        .max()
        .unwrap();
    assert!(peak >= 32, "the SYN queue should fill up: peak {peak}");
    assert!(off.counters[&Counter::TCPReqQFullDrop] > 0);
    assert_eq!(off.counters[&Counter::SyncookiesSent], 0);
    // Bounded in packets and in time: 2 s at 2000/s ends at about 4000, never past it.
    let tried = off.flood.sent + off.flood.send_errors;
    assert!((3000..=4000).contains(&tried), "{tried} SYNs");
    // Every legitimate client gives up before the flood's half-open entries can expire.
    assert_eq!(
        clients::count(&off.clients, Outcome::Echoed),
        0,
        "{:?}",
        off.clients
    );
    let on = parsed::<SynfloodRun>(&flood("1")).expect("root a moment ago");
    assert_eq!(
        clients::count(&on.clients, Outcome::Echoed),
        4,
        "{:?}",
        on.clients
    );
    assert!(on.counters[&Counter::SyncookiesSent] > 0);
    assert!(on.counters[&Counter::SyncookiesRecv] >= 4);
    assert_eq!(on.counters[&Counter::TCPReqQFullDrop], 0);
}

#[test]
fn the_syn_generator_stays_in_its_namespace_and_the_kernel_accepts_its_syns() {
    // Each test thread has its own network namespace: this one moves into a new one, the
    // test's main thread and every other test stay where they are.
    let inside = thread::spawn(|| {
        let net = match PrivateNet::create() {
            Err(NetnsError::Unavailable(why)) => return Err(why),
            other => other.expect("a private namespace"),
        };
        assert!(net.check_destination("8.8.8.8".parse().unwrap()).is_err());
        let elsewhere = config("10.1.2.3:80".parse().unwrap());
        let refused = SynFlood::new(&net, elsewhere).unwrap_err();
        assert!(refused.contains("outside this namespace"), "{refused}");
        // A listener in the namespace, and a flood of ten SYNs at it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let std::net::SocketAddr::V4(target) = listener.local_addr().unwrap() else {
            unreachable!("bound to IPv4")
        };
        net.nft(&echo_bench::synflood::drop_syn_acks_ruleset())
            .unwrap();
        let errors_before = netstat::tcp_checksum_errors().unwrap();
        let mut flood = SynFlood::new(&net, config(target)).unwrap();
        let report = flood.run(&net, &AtomicBool::new(false)).unwrap();
        assert_eq!(report.sent, 10);
        thread::sleep(Duration::from_millis(200));
        // Well-formed SYNs, checksums included: the kernel answered each (a half-open entry)
        // and counted no checksum error.
        let queues = netstat::listener_queues(target.port()).unwrap().unwrap();
        assert_eq!(queues.syn_queue, 10);
        assert_eq!(netstat::tcp_checksum_errors().unwrap(), errors_before);
        Ok((net, flood))
    });
    let (net, mut flood) = match inside.join().unwrap() {
        Ok(both) => both,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    // This thread never left the starting namespace: the generator refuses to run here.
    let refused = flood.run(&net, &AtomicBool::new(false)).unwrap_err();
    assert!(refused.starts_with("refusing"), "{refused}");
}

fn config(target: SocketAddrV4) -> FloodConfig {
    FloodConfig {
        target,
        rate: 1000,
        max_packets: 10,
        max_duration: Duration::from_secs(5),
    }
}

#[test]
fn without_root_the_experiments_say_skipped() {
    // As root, drop to nobody to see what an ordinary user sees; otherwise we are one.
    let root = rustix_is_root();
    let mut command = match root {
        true => {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
            c.arg(env!("CARGO_BIN_EXE_echo-bench"));
            c
        }
        false => Command::new(env!("CARGO_BIN_EXE_echo-bench")),
    };
    let out = command
        .args(["kernel", "backlog", "--server-bin"])
        .arg(util::echo_server_bin())
        .output();
    let Ok(out) = out else {
        eprintln!("skipped: no setpriv to drop root");
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if root && stderr.contains("Permission denied") {
        eprintln!("skipped: nobody cannot run the test binaries here: {stderr}");
        return;
    }
    assert_eq!(out.status.code(), Some(i32::from(EXIT_SKIPPED)), "{stderr}");
    assert_eq!(stderr.trim(), format!("skipped: {NEEDS_ROOT}"));
}

fn rustix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .is_some_and(|ids| ids.split_whitespace().nth(1) == Some("0"))
}

#[test]
fn bad_knobs_are_refused_before_anything_runs() {
    for args in [
        &["backlog", "--backlog", "0"][..],
        &["backlog", "--burst", "20000"],
        &["backlog", "--hold", "5s", "--deadline", "4s"],
        &["backlog", "--abort-on-overflow", "2"],
        &["synflood", "--syncookies", "3"],
        &["synflood", "--rate", "0"],
        &["synflood", "--packets", "2000000"],
        &["synflood", "--duration", "2m"],
        &["synflood", "--clients", "0"],
    ] {
        let out = kernel(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            !stderr.is_empty() && !stderr.contains("skipped"),
            "{args:?}: {stderr}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_echo-bench"))
        .args(["lab", "--scenarios", "fairness", "--workers", "0"])
        .arg("--server-bin")
        .arg(util::echo_server_bin())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--workers 0"));
}

#[test]
fn fairness_counts_connections_and_jobs_per_worker_for_every_model() {
    let out = std::env::temp_dir().join(format!("echo-bench-fair-{}", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_echo-bench"))
        .args([
            "lab",
            "--quick",
            "--scenarios",
            "fairness",
            "--workers",
            "3",
        ])
        .args(["--duration", "400ms", "--out"])
        .arg(&out)
        .arg("--server-bin")
        .arg(util::echo_server_bin())
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(out.join("kernel.json")).unwrap();
    let file: KernelFile = serde_json::from_str(&text).unwrap();
    let ran: Vec<&str> = file.fairness.iter().map(|f| f.model.as_str()).collect();
    for model in echo_bench::fairness::MODELS {
        let skipped = file.skipped.iter().any(|s| s.name == model);
        assert!(
            skipped || ran.contains(&model),
            "{model} neither ran nor was skipped"
        );
    }
    assert!(ran.contains(&"listener-pool") && ran.contains(&"reactor-pool"));
    for record in &file.fairness {
        let run = &record.runs[0];
        assert_eq!(run.errors, 0, "{}: {:?}", record.model, run.error_samples);
        assert_eq!(run.workers.len(), 3, "{}", record.model);
        assert!(run.latency.count > 0 && run.workers.iter().map(|w| w.jobs).sum::<u64>() > 0);
        let jain = run.jain_jobs.unwrap();
        assert!(
            (1.0 / 3.0 - 1e-9..=1.0 + 1e-9).contains(&jain),
            "{}: {jain}",
            record.model
        );
        // Where workers own connections, their counts add up to every connection served.
        let conns: Option<u64> = run.workers.iter().map(|w| w.conns).sum();
        match record.model.as_str() {
            "reactor-pool" => assert_eq!(conns, None),
            _ => assert!(conns.unwrap() >= run.latency.count, "{}", record.model),
        }
    }
    let page = std::fs::read_to_string(out.join("kernel.md")).unwrap();
    assert!(
        page.contains("## fairness") && page.contains("| listener-pool |"),
        "{page}"
    );
    for chart in ["fairness-jain-jobs.svg", "fairness-worker-conns.svg"] {
        assert!(out.join(chart).is_file(), "{chart}");
    }
    std::fs::remove_dir_all(&out).unwrap();
}
