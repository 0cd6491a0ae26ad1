//! Runs the examples in `examples/` as the reader would, as real processes on 127.0.0.1:
//! an example that compiles but no longer works would teach the wrong thing.
//!
//! `cargo test` builds every example before it runs any test, but `cargo test --test examples`
//! does not, so each test first runs `cargo build --example` with the same cargo, profile and
//! target directory (a no-op when the example is up to date).

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::Duration;

use util::poll_until;

/// Generous: debug builds on a loaded 2-core machine.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn minimal_reactor_echoes_a_late_reader_exactly_then_exits_with_once() {
    let mut server = KillOnDrop(
        Command::new(example("minimal_reactor"))
            .arg("--once")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdout = BufReader::new(server.0.stdout.take().unwrap());
    let mut first_line = String::new();
    stdout.read_line(&mut first_line).unwrap();
    let addr = first_line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line was {first_line:?}"))
        .trim();

    // More than the loopback socket buffers hold in both directions, and the client does not
    // read until it has written it all: the server must stop reading when its writes would
    // block (WRITABLE), then resume, and lose nothing.
    let sent: Vec<u8> = (0..(32u32 << 20)).map(|i| (i % 251) as u8).collect();
    let client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(EXIT_TIMEOUT)).unwrap();
    let writer = {
        let (client, sent) = (client.try_clone().unwrap(), sent.clone());
        thread::spawn(move || {
            (&client).write_all(&sent).unwrap();
            client.shutdown(Shutdown::Write).unwrap();
        })
    };
    thread::sleep(Duration::from_millis(300));
    let mut echoed = Vec::with_capacity(sent.len());
    (&client).read_to_end(&mut echoed).unwrap();
    writer.join().unwrap();
    assert_eq!(echoed.len(), sent.len(), "echoed byte count");
    assert!(echoed == sent, "echoed bytes differ from those sent");
    drop(client);
    assert!(
        wait(&mut server.0).success(),
        "--once must exit 0 after the client"
    );
}

#[test]
fn ring_pool_runs_every_job_once_and_reports_each_worker() {
    let Output { status, stdout, .. } = Command::new(example("ring_pool"))
        .arg("5000")
        .output()
        .unwrap();
    let stdout = String::from_utf8(stdout).unwrap();
    assert!(status.success(), "ring_pool failed:\n{stdout}");
    assert!(
        stdout.contains("refused [4]"),
        "ring demo output:\n{stdout}"
    );
    assert!(stdout.contains("sum of 1..=5000 = 12502500"), "{stdout}");
    let per_worker: u64 = stdout
        .lines()
        .filter_map(|l| {
            l.strip_prefix("worker ")?
                .split(": ")
                .nth(1)?
                .split(' ')
                .next()
        })
        .map(|jobs| jobs.parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        per_worker, 5000,
        "per-worker job counts must add up:\n{stdout}"
    );
}

/// The example's binary, built by cargo next to this test's own binary.
fn example(name: &str) -> PathBuf {
    // This test runs as `<target>/<profile>/deps/examples-<hash>`.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let mut build = Command::new(env!("CARGO"));
    build.args(["build", "--quiet", "--example", name, "--target-dir"]);
    build.arg(profile_dir.parent().unwrap());
    // `<target>/debug` is the dev profile; any other directory is named after its profile.
    let profile = profile_dir.file_name().and_then(|name| name.to_str());
    if let Some(profile) = profile.filter(|&name| name != "debug") {
        build.args(["--profile", profile]);
    }
    let status = build
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success(), "cargo build --example {name} failed");
    profile_dir.join("examples").join(name)
}

/// Kills the child if the test fails before it exits, so no server outlives its test.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits up to [`EXIT_TIMEOUT`] for the example to exit; kills it and panics past that.
fn wait(child: &mut Child) -> std::process::ExitStatus {
    let exited = poll_until(EXIT_TIMEOUT, Duration::from_millis(20), || {
        child.try_wait().unwrap().ok_or("the example to exit")
    });
    exited.unwrap_or_else(|timeout| {
        child.kill().unwrap();
        panic!("{timeout}")
    })
}
