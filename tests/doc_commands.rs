//! Runs the shell commands of the documentation, so that a documented command that fails, hangs,
//! leaves a process behind or names a file that does not exist breaks CI instead of a reader's
//! afternoon. The idea is rustdoc's doctests, for shell: the prose keeps the commands, the test
//! keeps them true.
//!
//! A block of `README.md` or `docs/*.md` is runnable when the line right before its ```` ```sh ````
//! fence is the marker `<!-- runnable -->` (an HTML comment: invisible on GitHub). The marker
//! may carry settings: `<!-- runnable timeout=90 needs=root,nft -->`, a timeout in seconds
//! (default [`DEFAULT_TIMEOUT`]) and what the block needs: `root`, or tools that must be on the
//! `PATH`. A block whose needs are not met here prints "skipped: ..." and counts as passed; CI
//! runs as root with every tool installed.
//!
//! Each block runs from the repository root as one `bash -e -o pipefail` script, so any
//! failing line fails it. A block that starts a server must be self-contained: start it in the
//! background, talk to it, stop it. When the test runs as root it puts each block in a private
//! network namespace of its own (`unshare --net`, loopback up), so the documented fixed ports
//! (7007, 7070) never meet another test's or a developer's server.
//!
//! The blocks use the release binaries as the docs do (`target/release/echo-server`,
//! `target/release/echo-bench`), built by `cargo build --release -p rawloop -p echo-bench`,
//! which `scripts/test.sh` runs before the tests; the test says so if they are missing.
//!
//! The `sh` blocks not marked, and why (```` ```console ```` and ```` ```text ```` blocks show
//! output, not commands):
//! - README "Two commands": `cargo run ... echo-server` holds the terminal by design (the reader
//!   talks to it from a second one), and `scripts/test.sh` is the suite that runs this test.
//! - README "Measure", "Longer runs": `echo-bench lab --peers` takes about 15 minutes,
//!   `lab --quick` a minute (`scripts/test.sh` runs it anyway), `cargo bench` several minutes.
//! - `docs/scaling.md` section 5, the commands "from a second terminal": interactive (`socat -`
//!   waits for typing) and they need the pid the script printed; the runnable block below them
//!   is the same failover demo as one script.
//! - `docs/scaling.md` section 7, the full measurement (`scripts/scale-bench.sh --rounds 5`) is
//!   prose, not a block: about four minutes. A one-round, one-second run of the same script is
//!   runnable.
//! - `docs/profiling.md`: `scripts/flamegraph.sh` needs `perf`, kernel frames
//!   (`perf_event_paranoid`), a second full build (the `profiling` profile) and network access
//!   for `cargo install inferno`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long a block may run unless its marker says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long processes a block started may take to exit after the block's shell has ended.
const LEFTOVER_GRACE: Duration = Duration::from_secs(3);
/// The marker, on the line before the fence.
const MARKER: &str = "<!-- runnable";

#[test]
fn every_runnable_block_of_the_docs_succeeds() {
    let root = repo_root();
    for bin in ["echo-server", "echo-bench"] {
        assert!(
            root.join("target/release").join(bin).exists(),
            "target/release/{bin} is missing: the documented commands run the release binaries. \
             Run `cargo build --release -p rawloop -p echo-bench` first (scripts/test.sh does)."
        );
    }
    let mut docs = vec![root.join("README.md")];
    docs.extend(markdown_files(&root.join("docs")));
    let mut problems = Vec::new();
    let mut n_blocks = 0;
    for doc in &docs {
        let (blocks, bad_markers) = parse(&root, doc);
        problems.extend(bad_markers);
        for block in blocks {
            n_blocks += 1;
            problems.extend(check(&root, &block));
        }
    }
    // README and docs/scaling.md hold several: finding fewer means the markers were lost.
    assert!(
        n_blocks >= 5,
        "found only {n_blocks} runnable blocks in {docs:?}"
    );
    assert!(
        problems.is_empty(),
        "documented commands are broken:\n\n{}",
        problems.join("\n\n")
    );
}

#[test]
fn a_failing_hanging_leaking_or_broken_block_is_reported() {
    let dir = std::env::temp_dir().join(format!("rawloop-doc-commands-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let doc = dir.join("bad.md");
    let text = "# Test input\n\n\
        <!-- runnable -->\n```sh\necho fine\n```\n\n\
        <!-- runnable -->\n```sh\nfalse\necho never\n```\n\n\
        <!-- runnable timeout=1 -->\n```sh\nsleep 30\n```\n\n\
        <!-- runnable -->\n```sh\nbash scripts/no-such-script.sh --out target/not-checked\n```\n\n\
        <!-- runnable -->\n```sh\nsleep 30 &\n```\n\n\
        <!-- runnable -->\n```console\n$ echo not a sh block\n```\n\n\
        <!-- runnable needs=no-such-tool-anywhere -->\n```sh\nfalse\n```\n";
    fs::write(&doc, text).unwrap();
    let root = repo_root();
    let (blocks, mut problems) = parse(&root, &doc);
    assert_eq!(blocks.len(), 6, "{problems:?}");
    for block in &blocks {
        problems.extend(check(&root, block));
    }
    let _ = fs::remove_dir_all(&dir);
    let report = problems.join("\n");
    let expect = |line: usize, what: &str| {
        let found = problems
            .iter()
            .any(|p| p.contains(&format!("bad.md:{line}")) && p.contains(what));
        assert!(found, "no `{what}` reported at line {line}:\n{report}");
    };
    // Line numbers are those of the fences (or of the wrong fence).
    expect(9, "failed");
    expect(15, "hung past its timeout of 1s");
    expect(20, "refers to a missing file: scripts/no-such-script.sh");
    expect(25, "left processes running");
    expect(30, "not followed by a ```sh fence");
    assert_eq!(problems.len(), 5, "one problem per bad block:\n{report}");
}

/// One runnable block: where it is, its text, and its marker's settings.
#[derive(Debug)]
struct Block {
    /// `path:line` of the fence's first line, for messages.
    at: String,
    script: String,
    timeout: Duration,
    needs: Vec<String>,
}

/// The runnable blocks of one Markdown file, and a problem for each marker that is not right
/// above a ```` ```sh ```` fence.
fn parse(root: &Path, doc: &Path) -> (Vec<Block>, Vec<String>) {
    let name = doc.strip_prefix(root).unwrap_or(doc).display().to_string();
    let text = fs::read_to_string(doc).unwrap_or_else(|e| panic!("read {name}: {e}"));
    let lines: Vec<&str> = text.lines().collect();
    let (mut blocks, mut problems) = (Vec::new(), Vec::new());
    for (i, line) in lines.iter().enumerate() {
        let Some(settings) = line.trim().strip_prefix(MARKER) else {
            continue;
        };
        let fence = i + 1;
        if lines.get(fence).map(|l| l.trim_end()) != Some("```sh") {
            problems.push(format!(
                "{name}:{}: the marker is not followed by a ```sh fence",
                fence + 1
            ));
            continue;
        }
        let body: Vec<&str> = lines[fence + 1..]
            .iter()
            .take_while(|l| l.trim_end() != "```")
            .copied()
            .collect();
        let (timeout, needs) = marker_settings(settings.trim_end_matches("-->"));
        blocks.push(Block {
            at: format!("{name}:{}", fence + 1),
            script: body.join("\n") + "\n",
            timeout,
            needs,
        });
    }
    (blocks, problems)
}

fn marker_settings(settings: &str) -> (Duration, Vec<String>) {
    let (mut timeout, mut needs) = (DEFAULT_TIMEOUT, Vec::new());
    for word in settings.split_whitespace() {
        if let Some(secs) = word.strip_prefix("timeout=") {
            timeout = Duration::from_secs(secs.parse().expect("timeout=<seconds>"));
        } else if let Some(list) = word.strip_prefix("needs=") {
            needs.extend(list.split(',').map(String::from));
        } else {
            panic!("unknown marker setting {word:?} (timeout=<seconds>, needs=<a,b>)");
        }
    }
    (timeout, needs)
}

/// Everything wrong with one block: missing files, then (if its needs are met) how it ran.
fn check(root: &Path, block: &Block) -> Vec<String> {
    let missing = missing_files(root, &block.script);
    if !missing.is_empty() {
        return missing
            .iter()
            .map(|path| format!("{}: refers to a missing file: {path}", block.at))
            .collect();
    }
    if let Some(unmet) = block.needs.iter().find(|need| !need_met(need)) {
        eprintln!("skipped: {} needs {unmet}", block.at);
        return Vec::new();
    }
    let started = Instant::now();
    let outcome = run(root, block);
    eprintln!(
        "ran {} in {:.1}s",
        block.at,
        started.elapsed().as_secs_f64()
    );
    outcome.err().into_iter().collect()
}

/// Repository paths the block names that do not exist: every word with a `/` whose first part
/// is a top-level entry of the repository (`scripts/...`, `target/release/...`, `docs/...`),
/// except the word after an output option or a redirection, which the block creates.
fn missing_files(root: &Path, script: &str) -> Vec<String> {
    let mut missing = Vec::new();
    for line in script.lines() {
        let code = strip_comment(line).replace('>', " > ");
        let words: Vec<&str> = code
            .split(|c: char| c.is_whitespace() || ";|&()'\"`".contains(c))
            .filter(|w| !w.is_empty())
            .collect();
        for (i, word) in words.iter().enumerate() {
            let is_output = i > 0 && matches!(words[i - 1], ">" | "--out" | "-o");
            let first = word.split('/').next().unwrap_or("");
            let names_repo_path = word.contains('/')
                && !word.contains(['$', '*', ':', '='])
                && !first.is_empty()
                && root.join(first).exists();
            if names_repo_path && !is_output && !root.join(word).exists() {
                missing.push(word.to_string());
            }
        }
    }
    missing
}

/// The line up to a `#` that starts a word outside quotes.
fn strip_comment(line: &str) -> &str {
    let (mut quote, mut previous) = (None, ' ');
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '#' && previous.is_whitespace() => return &line[..i],
            None => {}
        }
        previous = c;
    }
    line
}

/// Runs the block in its own process group; fails if it exits non-zero, outlives its timeout,
/// or leaves a process of its group running.
fn run(root: &Path, block: &Block) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!(
        "rawloop-doc-block-{}-{}",
        std::process::id(),
        block.at.replace(['/', ':', '.'], "-")
    ));
    fs::create_dir_all(&dir).unwrap();
    let script = dir.join("block.sh");
    fs::write(&script, &block.script).unwrap();
    let output = dir.join("output");
    let mut command = if can_isolate() {
        let mut c = Command::new("unshare");
        c.args(["--net", "--", "bash", "-c"])
            .arg("ip link set lo up && exec bash -e -o pipefail \"$0\"")
            .arg(&script);
        c
    } else {
        let mut c = Command::new("bash");
        c.args(["-e", "-o", "pipefail"]).arg(&script);
        c
    };
    let log = fs::File::create(&output).unwrap();
    let mut child = std::os::unix::process::CommandExt::process_group(&mut command, 0)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn bash");
    let group = child.id();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > block.timeout {
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let leftovers = reap_group(group, status.is_some());
    let printed = fs::read_to_string(&output).unwrap_or_default();
    let _ = fs::remove_dir_all(&dir);
    let verdict = match status {
        None => format!("hung past its timeout of {}s", block.timeout.as_secs()),
        Some(s) if !s.success() => format!("failed ({s})"),
        Some(_) if !leftovers.is_empty() => {
            format!("left processes running (a block must stop what it starts): {leftovers:?}")
        }
        Some(_) => return Ok(()),
    };
    Err(format!(
        "{}: {verdict}\n--- the block\n{}--- its output (last lines)\n{}",
        block.at,
        block.script,
        last_lines(&printed, 40)
    ))
}

/// Processes of the group still running (zombies aside), after a grace period if the block
/// ended on its own; then kills the whole group so nothing outlives the test.
fn reap_group(group: u32, ended: bool) -> Vec<String> {
    let deadline = Instant::now()
        + if ended {
            LEFTOVER_GRACE
        } else {
            Duration::ZERO
        };
    let mut members = group_members(group);
    while !members.is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
        members = group_members(group);
    }
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{group}")])
        .stderr(Stdio::null())
        .status();
    members
}

/// The command lines of the live (not zombie) processes whose process group is `group`, read
/// from `/proc/PID/stat`: after the `(comm)` field come the state, the parent, the group.
fn group_members(group: u32) -> Vec<String> {
    let mut members = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, after_comm)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        if fields.len() > 2 && fields[0] != "Z" && fields[2] == group.to_string() {
            let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
            members.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
        }
    }
    members
}

/// Whether each block can get a private network namespace: root, `unshare` and `ip`.
fn can_isolate() -> bool {
    need_met("root")
        && Command::new("unshare")
            .args(["--net", "ip", "link", "set", "lo", "up"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// `root`: running as uid 0; anything else: a tool on the `PATH`.
fn need_met(need: &str) -> bool {
    if need == "root" {
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        return status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0");
    }
    Command::new("bash")
        .args(["-c", "command -v \"$0\""])
        .arg(need)
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn markdown_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    files.sort();
    files
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n") + "\n"
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
