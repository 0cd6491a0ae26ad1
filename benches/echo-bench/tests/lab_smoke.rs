//! `echo-bench lab` end to end on one model and two scenarios: it starts and stops the server,
//! exits 0, and writes the JSON, the Markdown table and the SVG charts; `--replot` reads the
//! JSON back and writes the same Markdown again.

mod util;

use std::process::Command;

use echo_bench::results::LabFile;

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
    // One run per model: no promise of medians and ranges, and µs, never "us".
    assert!(
        markdown.contains("single run, indicative only"),
        "{markdown}"
    );
    assert!(!markdown.contains("median with the range"), "{markdown}");
    let mut words = markdown.split(|c: char| !c.is_alphanumeric());
    assert!(
        markdown.contains("p99 µs") && !words.any(|w| w == "us"),
        "{markdown}"
    );
    assert!(markdown.contains("server switches/msg"), "{markdown}");
    let file = LabFile::read(&out.join("results.json")).expect("results.json reads back");
    assert_eq!(file.reps(), 1);
    let pingpong = file.find("pingpong", "event-loop").expect("pingpong ran");
    let report = pingpong.runs[0].report.as_ref().unwrap();
    let server = report.server.unwrap();
    // Left out (with a note) only when the machine was too busy to sample /proc on time.
    assert!(
        server.switches_per_msg.is_finite() || !report.notes.is_empty(),
        "{server:?}"
    );
    assert!(file.find("idle-memory", "event-loop").is_some());
    for chart in [
        "pingpong-msgs-per-sec.svg",
        "pingpong-p99-us.svg",
        "pingpong-server-switches-per-msg.svg",
        "idle-memory-server-pss-bytes-per-conn.svg",
    ] {
        let svg = std::fs::read_to_string(out.join(chart)).unwrap();
        assert!(svg.contains("<svg"), "{chart}");
        assert!(
            svg.contains("is better") && svg.contains("single run"),
            "{chart}"
        );
    }
    let replot = Command::new(env!("CARGO_BIN_EXE_echo-bench"))
        .args(["lab", "--replot", "--out"])
        .arg(&out)
        .output()
        .expect("run echo-bench lab --replot");
    assert!(replot.status.success());
    let again = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert_eq!(
        again, markdown,
        "replot from results.json draws the same page"
    );
    std::fs::remove_dir_all(&out).unwrap();
}
