//! `echo-bench lab` end to end on one model and two scenarios: it starts and stops the server,
//! exits 0, and writes the JSON, the Markdown table and the SVG charts.

mod util;

use std::process::Command;

#[test]
fn quick_lab_writes_results_and_charts() {
    let out = std::env::temp_dir().join(format!("echo-bench-lab-{}", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_echo-bench"))
        .args([
            "lab",
            "--quick",
            "--models",
            "event-loop",
            "--scenarios",
            "pingpong,idle-memory",
        ])
        .arg("--server-bin")
        .arg(util::echo_server_bin())
        .arg("--out")
        .arg(&out)
        .status()
        .expect("run echo-bench lab");
    assert!(status.success());
    let markdown = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(markdown.contains("| event-loop |"), "{markdown}");
    assert!(markdown.contains("None: every echoed byte"), "{markdown}");
    let json = std::fs::read_to_string(out.join("results.json")).unwrap();
    assert!(json.contains("\"name\": \"idle-memory\""));
    for chart in [
        "pingpong-msgs-per-sec.svg",
        "pingpong-p99-us.svg",
        "idle-memory-server-rss-bytes-per-conn.svg",
    ] {
        let svg = std::fs::read_to_string(out.join(chart)).unwrap();
        assert!(svg.contains("<svg"), "{chart}");
    }
    std::fs::remove_dir_all(&out).unwrap();
}
