//! The lab's own pinning and its model table, end to end: with `--server-cpus` every server's
//! threads are allowed on those CPUs only (read back from `/proc` by the lab and recorded per
//! run), and an entry the server's `--help` does not offer is skipped with a note while the
//! others still run.

mod util;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use echo_bench::pin::current_thread_cpus;
use echo_bench::results::LabFile;

fn lab(out: &Path, server_bin: &Path, extra: &[&str]) -> LabFile {
    let status = Command::new(env!("CARGO_BIN_EXE_echo-bench"))
        .args(["lab", "--quick", "--scenarios", "pingpong"])
        .args(extra)
        .arg("--server-bin")
        .arg(server_bin)
        .arg("--out")
        .arg(out)
        .status()
        .expect("run echo-bench lab");
    assert!(status.success());
    LabFile::read(&out.join("results.json")).unwrap()
}

#[test]
fn servers_run_on_the_server_cpus_only() {
    let out = std::env::temp_dir().join(format!("echo-bench-pins-{}", std::process::id()));
    // The last CPU this process may use for the servers, the first for the generator: on a
    // one-CPU machine both are the same CPU, and the server's mask is still checked.
    let own = current_thread_cpus().unwrap();
    let server_cpu = own.cpus().last().unwrap().to_string();
    let generator_cpu = own.cpus().next().unwrap().to_string();
    let file = lab(
        &out,
        &util::echo_server_bin(),
        &[
            "--models",
            "event-loop,reactor-pool,prefork",
            "--server-cpus",
            &server_cpu,
            "--generator-cpus",
            &generator_cpu,
        ],
    );
    assert_eq!(
        file.lab.server_cpus.as_ref().unwrap().to_string(),
        server_cpu
    );
    for model in ["event-loop", "reactor-pool", "prefork"] {
        let run = &file.find("pingpong", model).unwrap().runs[0];
        assert!(run.ok, "{model}: {:?}", run.failure);
        let seen = run.server_cpus.as_ref().expect("affinity read back");
        assert_eq!(seen.to_string(), server_cpu, "{model} ran outside its CPU");
    }
    let markdown = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(
        markdown.contains(&format!("servers on CPU {server_cpu}")),
        "{markdown}"
    );
    assert!(markdown.contains("--no-pin"), "{markdown}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_model_the_server_does_not_offer_is_skipped_with_a_note() {
    let out = std::env::temp_dir().join(format!("echo-bench-skip-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    // The real echo-server behind a wrapper whose --help no longer lists reactor-offload,
    // as a branch without that model would.
    let wrapper = out.join("echo-server-without-offload");
    let real = util::echo_server_bin();
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = --help ]; then\n  '{0}' --help | sed 's/reactor-offload/hidden-model/'\n  exit 0\nfi\nexec '{0}' \"$@\"\n",
        real.display()
    );
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = lab(
        &out,
        &wrapper,
        &["--models", "event-loop,reactor-offload", "--syscall-stats"],
    );
    assert_eq!(file.skipped.len(), 1, "{:?}", file.skipped);
    assert_eq!(file.skipped[0].name, "reactor-offload");
    assert!(file.skipped[0]
        .reason
        .contains("no model `reactor-offload`"));
    assert!(file.find("pingpong", "reactor-offload").is_none());
    let run = &file.find("pingpong", "event-loop").unwrap().runs[0];
    assert!(run.ok, "{:?}", run.failure);
    // --syscall-stats reached the server, and its final stats line reached the results.
    let syscalls = run
        .syscalls_per_msg
        .last()
        .expect("syscalls_per_msg recorded");
    assert!(
        syscalls.contains("read:") && syscalls.contains("write:"),
        "{syscalls}"
    );
    let markdown = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(
        markdown.contains("skipped: `reactor-offload`"),
        "{markdown}"
    );
    assert!(markdown.contains("server syscalls/msg"), "{markdown}");
    std::fs::remove_dir_all(&out).unwrap();
}
