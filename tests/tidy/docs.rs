//! The docs rule: every file path, `--flag`, and function or type name written in backticks in
//! README.md, ARCHITECTURE.md and docs/*.md exists in the tree (or, for flags, in
//! `echo-server --help`), so a rename cannot leave the docs behind.
//!
//! A backticked span is checked when it looks like one of three things:
//! - a **path**: it contains `/` or ends in a file extension of ours (`.rs`, `.md`, `.sh`...),
//!   and has no placeholder (`<...>`, `*`, `{...}`). It must be a tracked file or folder, from
//!   the root or as the tail of one (`sys/mod.rs` in the reactor's code map);
//! - a **flag**: each `--word` in the span must appear in `echo-server --help` or in a tracked
//!   Rust or shell file (the echo-bench and script flags);
//! - an **item**: a Rust path (`Conn::serve`, `AcceptGate`, `with_scratch()`) with a `::`, a
//!   CamelCase name or a trailing `()`. Each segment must be a word of the tree's Rust code
//!   (comments and literals excluded), so a type that was renamed away fails.
//!
//! Spans inside fenced code blocks are commands and output, checked by `tests/doc_commands.rs`
//! where they are runnable; names of other projects are listed in [`EXTERNAL`] with the reason.

use std::collections::HashSet;

/// Names the docs cite that are not ours: other projects' files and types, kernel counters.
pub const EXTERNAL: &[&str] = &[
    // The Linux kernel's io_uring sources, whose comments define the ring's ordering rules.
    "io_uring/io_uring.c",
    "io_uring/kbuf.c",
    // tokio's per-resource readiness state, the model for pool::RunState.
    "ScheduledIo",
];

/// What a backticked span names.
#[derive(Debug, PartialEq, Eq)]
pub enum Name {
    /// A file or folder of the tree.
    Path(String),
    /// Command-line flags.
    Flags(Vec<String>),
    /// A Rust item path, split into segments.
    Item(Vec<String>),
    /// A file and an item in it.
    PathItem(String, String),
}

/// The inline code spans of a Markdown text outside fenced blocks, with 1-based line numbers.
pub fn code_spans(text: &str) -> Vec<(usize, String)> {
    let mut spans = Vec::new();
    let mut fenced = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut parts = line.split('`');
        parts.next();
        while let (Some(code), Some(_)) = (parts.next(), parts.next()) {
            spans.push((i + 1, code.to_string()));
        }
        // An odd count of backticks leaves a last `code` without its closing tick: ignored.
    }
    spans
}

/// Classifies a span; `None` for everything else (commands, values, prose in code font).
pub fn classify(span: &str) -> Option<Name> {
    let span = span.trim();
    if span.contains("--") {
        let flags: Vec<String> = span
            .split_whitespace()
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(|w| {
                w.split(['=', ',', ')', '`'])
                    .next()
                    .unwrap_or(w)
                    .to_string()
            })
            .collect();
        return (!flags.is_empty()).then_some(Name::Flags(flags));
    }
    if let Some((path, item)) = span.split_once("::").filter(|(p, _)| p.contains('/')) {
        // `tests/uring.rs::a_test`: the file, and the function in it.
        return Some(Name::PathItem(path.to_string(), item.to_string()));
    }
    let placeholder = span.contains(['<', '*', '{', ' ', '$', ':', '=']) && !span.contains("::");
    // Build output (`target/...`) is made by a command, not kept in the tree.
    let generated = span.starts_with("target/");
    if placeholder || generated || span.starts_with('/') || span.starts_with("http") {
        return None;
    }
    let ours = [
        ".rs", ".md", ".sh", ".toml", ".cfg", ".json", ".svg", ".lock",
    ];
    if span.contains('/') || ours.iter().any(|ext| span.ends_with(ext)) {
        return Some(Name::Path(span.trim_start_matches("./").to_string()));
    }
    let item = span.trim_end_matches("()");
    let is_path = !item.is_empty()
        && item
            .split("::")
            .all(|seg| !seg.is_empty() && seg.chars().all(|c| c.is_alphanumeric() || c == '_'))
        && !item.starts_with(|c: char| c.is_ascii_digit());
    let camel = item.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && item.chars().any(|c| c.is_ascii_lowercase());
    if is_path && (item.contains("::") || camel || span.ends_with("()")) {
        return Some(Name::Item(item.split("::").map(str::to_string).collect()));
    }
    None
}

/// Whether `path` is a tracked file or folder, from the root or as the tail of one.
pub fn path_exists(path: &str, files: &[String]) -> bool {
    let dir = path.trim_end_matches('/');
    files.iter().any(|f| {
        f == dir
            || f.starts_with(&format!("{dir}/"))
            || f.ends_with(&format!("/{dir}"))
            || f.contains(&format!("/{dir}/"))
    })
}

/// Whether every segment of an item path is a word of the Rust code in `words` (crate roots
/// and `std` paths aside).
pub fn item_exists(segments: &[String], words: &HashSet<String>) -> bool {
    const ROOTS: &[&str] = &[
        "crate", "self", "super", "std", "core", "rawloop", "reactor", "pool",
    ];
    segments
        .iter()
        .filter(|s| !ROOTS.contains(&s.as_str()))
        .all(|s| words.contains(s))
}

/// The words (identifiers) of Rust code, comments and literals excluded.
pub fn code_words(code: &str) -> HashSet<String> {
    code.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn spans_are_classified_by_shape() {
    let item = |s: &[&str]| Some(Name::Item(s.iter().map(|x| x.to_string()).collect()));
    assert_eq!(
        classify("src/conn/core.rs"),
        Some(Name::Path("src/conn/core.rs".into()))
    );
    assert_eq!(classify("sys/"), Some(Name::Path("sys/".into())));
    assert_eq!(
        classify("echo-server --model x --bind=1"),
        Some(Name::Flags(vec!["--model".into(), "--bind".into()]))
    );
    assert_eq!(classify("Conn::serve"), item(&["Conn", "serve"]));
    assert_eq!(classify("AcceptGate"), item(&["AcceptGate"]));
    assert_eq!(classify("with_scratch()"), item(&["with_scratch"]));
    for other in [
        "epoll_wait",
        "SO_REUSEPORT",
        "flame-<model>.svg",
        "accept_queue=",
        "nc",
        "64 KiB",
    ] {
        assert_eq!(classify(other), None, "{other}");
    }
    let spans = code_spans("a `x/y.rs` b `Foo`\n```sh\n`ignored`\n```\n`--flag`");
    assert_eq!(spans.len(), 3);
}
