//! Tidy checks over every Rust file of the repository, in the manner of rust-analyzer's
//! `tidy.rs`: rules of `STYLE.md` that a reviewer would otherwise have to remember.
//!
//! 1. Every `.rs` file opens with a `//!` doc saying what it is and where its idea comes from.
//! 2. Every `unsafe` block or impl has a `// SAFETY:` comment in the 6 lines above it (a
//!    longer comment counts if it runs into that window), and every `unsafe fn` a `# Safety`
//!    section in its docs.
//! 3. `unsafe` appears only where a crate allows it: `reactor/src/sys/` and
//!    `pool/src/ring.rs`; never in the application (`src/`) or the examples; in any other
//!    crate's `src/` only in a `sys` module. Tests, benches and fuzz targets may use it, with
//!    their `SAFETY:` comments.
//!
//! The files are those git knows (`git ls-files`, tracked or new but not ignored), so a
//! helper's build directory never counts; without git the tree is walked instead. Comments
//! and string literals are blanked before looking for the `unsafe` keyword, so prose and
//! messages that mention it (like this one) are fine, and so are lint names (`unsafe_code`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let offenders: Vec<String> = rust_files()
        .into_iter()
        .filter(|(_, text)| !text.starts_with("//!"))
        .map(|(path, _)| format!("  {path}"))
        .collect();
    assert!(
        offenders.is_empty(),
        "these files must open with a `//!` doc comment saying what the file is and where its \
         idea comes from (STYLE.md, \"Every .rs file opens with //!\"):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn every_unsafe_has_its_safety_comment_and_lives_where_allowed() {
    let (mut offenders, mut n_unsafe) = (Vec::new(), 0);
    for (path, text) in rust_files() {
        n_unsafe += unsafe_lines(&text).len();
        offenders.extend(unsafe_violations(&path, &text));
    }
    // reactor/src/sys/ alone has dozens: finding none would mean the scanner is broken.
    assert!(n_unsafe >= 10, "found only {n_unsafe} lines with `unsafe`");
    assert!(
        offenders.is_empty(),
        "unsafe code breaks the house rules (STYLE.md, \"Unsafe and syscalls\"):\n{}\n\
         Fix: put a `// SAFETY:` comment right above each `unsafe` block or impl naming the \
         guarantee (man page or invariant), a `# Safety` doc section on each `unsafe fn`, and \
         move unsafe code into the crate's `sys` module (allowed files: {ALLOWED_SUMMARY}).",
        offenders.join("\n")
    );
}

#[test]
fn the_checker_sees_what_it_should_and_nothing_else() {
    // Test input, not code: the string holds an `unsafe` block without a SAFETY: comment on
    // purpose, to prove the checker reports it.
    let bad = "//! x\nfn f() {\n    unsafe { g() }\n}\nunsafe fn h() {}\n";
    let found = unsafe_violations("tests/x.rs", bad);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("tests/x.rs:3") && found[0].contains("SAFETY"));
    assert!(found[1].contains("tests/x.rs:5") && found[1].contains("# Safety"));

    let good = "//! x\n/// Does it.\n///\n/// # Safety\n/// `p` is valid.\nunsafe fn h(p: *const u8) {\n    \
                // SAFETY: the caller promised.\n    let _ = unsafe { *p };\n}\n\
                // SAFETY: a long comment,\n// two,\n// three,\n// four,\n// five,\n// six,\n// seven.\n\
                unsafe impl Send for X {}\n";
    assert_eq!(unsafe_violations("tests/x.rs", good), Vec::<String>::new());

    let mentions =
        "//! unsafe\n#![deny(unsafe_code)]\n/* unsafe { */ fn f<'a>(s: &'a str) -> char {\n    \
                    let _ = \"unsafe {\"; let _ = r#\"unsafe fn\"#; '\"'\n}\n";
    assert_eq!(
        unsafe_violations("src/x.rs", mentions),
        Vec::<String>::new()
    );

    let misplaced =
        "//! x\n// SAFETY: fine here, but not in this crate.\nunsafe impl Send for X {}\n";
    assert_eq!(unsafe_violations("src/x.rs", misplaced).len(), 1);
    assert_eq!(unsafe_violations("reactor/src/net.rs", misplaced).len(), 1);
    assert!(unsafe_violations("reactor/src/sys/mod.rs", misplaced).is_empty());
    assert!(unsafe_violations("reactor/src/sys/uring.rs", misplaced).is_empty());
    assert!(unsafe_violations("fuzz/fuzz_targets/x.rs", misplaced).is_empty());
}

/// Where `unsafe` may appear, by path prefix; the first matching prefix decides.
/// `None` means anywhere under that prefix (tests, benches, fuzz targets); an allowed entry
/// ending in `/` allows every file below it.
const UNSAFE_ALLOWED: &[(&str, Option<&[&str]>)] = &[
    // The application is `#![forbid(unsafe_code)]`: everything unsafe goes through `reactor`.
    ("src/", Some(&[])),
    // Examples teach the safe API of the crates.
    ("examples/", Some(&[])),
    // The `sys` module (a folder: one file per family of syscalls) and nothing else.
    ("reactor/src/", Some(&["reactor/src/sys/"])),
    // The pool calls no libc; its only unsafe code is the slot access of Vyukov's ring.
    ("pool/src/", Some(&["pool/src/ring.rs"])),
];

const ALLOWED_SUMMARY: &str = "reactor/src/sys/, pool/src/ring.rs, <crate>/src/sys.rs in \
                               other crates, anywhere in tests, benches and fuzz; none in src/ \
                               and examples/";

/// How far above an `unsafe` its `SAFETY:` comment may start (STYLE.md: "right above").
const SAFETY_WINDOW: usize = 6;

/// Every violation of rules 2 and 3 in one file, as `path:line: problem` lines.
fn unsafe_violations(path: &str, text: &str) -> Vec<String> {
    let raw: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, words) in unsafe_lines(text) {
        let at = words.iter().position(|w| w == "unsafe").unwrap();
        let here = format!("  {path}:{}: {}", i + 1, raw[i].trim());
        if !unsafe_allowed_in(path) {
            found.push(format!("{here}\n      unsafe is not allowed in this file"));
        }
        // `unsafe fn` and `unsafe extern "C" fn` (the ABI string is blanked like any literal).
        let next = |k: usize| words.get(at + k).map(String::as_str);
        let is_fn = next(1) == Some("fn") || (next(1) == Some("extern") && next(2) == Some("fn"));
        if is_fn && !docs_above(&raw, i).contains("# Safety") {
            found.push(format!(
                "{here}\n      unsafe fn without a `# Safety` doc section"
            ));
        } else if !is_fn && !comment_window(&raw, i).contains("SAFETY:") {
            found.push(format!(
                "{here}\n      no `// SAFETY:` comment within {SAFETY_WINDOW} lines above"
            ));
        }
    }
    found
}

/// The lines whose code (comments and literals blanked) has the `unsafe` keyword: index and
/// the words of the line.
fn unsafe_lines(text: &str) -> Vec<(usize, Vec<String>)> {
    let code = blank_comments_and_literals(text);
    let words_of = |line: &str| -> Vec<String> {
        line.split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect()
    };
    code.lines()
        .map(words_of)
        .enumerate()
        .filter(|(_, words)| words.iter().any(|w| w == "unsafe"))
        .collect()
}

fn unsafe_allowed_in(path: &str) -> bool {
    if let Some((_, allowed)) = UNSAFE_ALLOWED.iter().find(|(p, _)| path.starts_with(p)) {
        return match allowed {
            Some(files) => files
                .iter()
                .any(|f| *f == path || (f.ends_with('/') && path.starts_with(f))),
            None => true,
        };
    }
    // Any other crate's sources: only its `sys` module, as STYLE.md asks of every crate.
    match path.split_once("/src/") {
        Some((_, inner)) => inner == "sys.rs" || inner.starts_with("sys/"),
        None => true,
    }
}

/// Line `i` and the `SAFETY_WINDOW` lines above it, extended upwards while a comment that
/// started above the window continues into it.
fn comment_window(raw: &[&str], i: usize) -> String {
    let mut top = i.saturating_sub(SAFETY_WINDOW);
    while top > 0 && is_comment(raw[top]) && is_comment(raw[top - 1]) {
        top -= 1;
    }
    raw[top..=i].join("\n")
}

/// The doc comments and attributes directly above line `i`, however long.
fn docs_above(raw: &[&str], i: usize) -> String {
    let mut top = i;
    while top > 0 && (is_comment(raw[top - 1]) || raw[top - 1].trim_start().starts_with("#[")) {
        top -= 1;
    }
    raw[top..=i].join("\n")
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with("//")
}

/// `text` with comments, string literals and char literals replaced by spaces (newlines kept,
/// so line numbers still match), enough of Rust's lexer to find keywords in code only.
fn blank_comments_and_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let end = literal_or_comment_end(&chars, i);
        if end == i {
            out.push(chars[i]);
            i += 1;
        } else {
            let end = end.min(chars.len());
            out.extend(
                chars[i..end]
                    .iter()
                    .map(|&c| if c == '\n' { c } else { ' ' }),
            );
            i = end;
        }
    }
    out
}

/// If a comment or literal starts at `i`, the index just past it; otherwise `i`.
fn literal_or_comment_end(chars: &[char], i: usize) -> usize {
    let at = |k: usize| chars.get(k).copied().unwrap_or('\0');
    let ident_before = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
    match (at(i), at(i + 1)) {
        ('/', '/') => (i..chars.len())
            .find(|&k| chars[k] == '\n')
            .unwrap_or(chars.len()),
        ('/', '*') => block_comment_end(chars, i),
        ('"', _) => string_end(chars, i + 1),
        ('r', '"' | '#') if !ident_before || (i > 0 && chars[i - 1] == 'b') => {
            let hashes = (i + 1..chars.len())
                .take_while(|&k| chars[k] == '#')
                .count();
            if at(i + 1 + hashes) != '"' {
                return i;
            }
            let close: String = std::iter::once('"')
                .chain("#".repeat(hashes).chars())
                .collect();
            let body: String = chars[i + 2 + hashes..].iter().collect();
            match body.find(&close) {
                Some(byte) => i + 2 + hashes + body[..byte].chars().count() + close.len(),
                None => chars.len(),
            }
        }
        // An escape (`'\n'`, `'\''`, `'\u{1F600}'`): the closing quote comes after the escaped char.
        ('\'', '\\') => (i + 3..chars.len())
            .find(|&k| chars[k] == '\'')
            .map_or(i, |k| k + 1),
        // `'x'` is a char; `'a` without a closing quote is a lifetime or a label: code.
        ('\'', _) if at(i + 2) == '\'' => i + 3,
        _ => i,
    }
}

fn block_comment_end(chars: &[char], start: usize) -> usize {
    let (mut depth, mut k) = (0usize, start);
    while k + 1 < chars.len() {
        match (chars[k], chars[k + 1]) {
            ('/', '*') => (depth, k) = (depth + 1, k + 2),
            ('*', '/') => {
                (depth, k) = (depth - 1, k + 2);
                if depth == 0 {
                    return k;
                }
            }
            _ => k += 1,
        }
    }
    chars.len()
}

/// `from` is just past the opening quote; returns just past the closing one.
fn string_end(chars: &[char], from: usize) -> usize {
    let mut k = from;
    while k < chars.len() {
        match chars[k] {
            '\\' => k += 2,
            '"' => return k + 1,
            _ => k += 1,
        }
    }
    chars.len()
}

/// Every Rust file of the repository with its text, by path relative to the root.
fn rust_files() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let paths = git_rust_files(root).unwrap_or_else(|| {
        let mut found = Vec::new();
        walk(root, root, &mut found);
        found
    });
    assert!(
        paths.iter().any(|p| p == "src/lib.rs"),
        "the file list is wrong: src/lib.rs is missing"
    );
    let mut files: Vec<(String, String)> = paths
        .into_iter()
        .filter(|p| !p.split('/').next().unwrap_or("").starts_with("target"))
        // Listed but deleted in the working tree: nothing to check.
        .filter_map(|p| Some((fs::read_to_string(root.join(&p)).ok()?, p)))
        .map(|(text, p)| (p, text))
        .collect();
    files.sort();
    files
}

fn git_rust_files(root: &Path) -> Option<Vec<String>> {
    let output = Command::new("git")
        .args([
            "ls-files",
            "--cached",
            "--others",
            "--exclude-standard",
            "-z",
            "--",
            "*.rs",
        ])
        .current_dir(root)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let list = String::from_utf8(output.stdout).ok()?;
    Some(
        list.split('\0')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

/// The fallback without git: every `.rs` file, skipping build output and hidden directories.
fn walk(root: &Path, dir: &Path, found: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path: PathBuf = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            let skip = name.starts_with('.')
                || name.starts_with("target")
                || (dir.ends_with("fuzz") && matches!(name.as_str(), "corpus" | "artifacts"));
            if !skip {
                walk(root, &path, found);
            }
        } else if name.ends_with(".rs") {
            let relative = path.strip_prefix(root).unwrap();
            found.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}
