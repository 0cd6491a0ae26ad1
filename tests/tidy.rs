//! Tidy checks over every Rust file of the repository, in the manner of rust-analyzer's
//! `tidy.rs`: the house rules of `CONTRIBUTING.md` that a reviewer would otherwise have to
//! remember.
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

// The helpers live in `tests/tidy/`; the test root is this file, hence the paths.
#[path = "tidy/docs.rs"]
mod docs;
#[path = "tidy/files.rs"]
mod files;
#[path = "tidy/lexer.rs"]
mod lexer;
#[path = "tidy/modules.rs"]
mod modules;
#[path = "tidy/shape.rs"]
mod shape;

use files::rust_files;
use lexer::blank_comments_and_literals;

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
         idea comes from (CONTRIBUTING.md, rule 1):\n{}",
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
        "unsafe code breaks the house rules (CONTRIBUTING.md, rules 2 and 3):\n{}\n\
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

/// How far above an `unsafe` its `SAFETY:` comment may start (CONTRIBUTING.md: "right above").
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
    // Any other crate's sources: only its `sys` module, as CONTRIBUTING.md asks of every crate.
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

#[test]
fn no_function_is_longer_than_60_lines() {
    let mut offenders = Vec::new();
    for (path, text) in rust_files() {
        let checked = ["src/", "reactor/src/", "pool/src/"];
        if !checked.iter().any(|dir| path.starts_with(dir)) {
            continue;
        }
        for (name, line, length) in shape::long_functions(&text, shape::MAX_FN_LINES) {
            let excused = shape::LONG_FN_EXCEPTIONS
                .iter()
                .any(|(p, f, _why)| *p == path && *f == name);
            if !excused {
                offenders.push(format!("  {path}:{line}: fn {name} is {length} lines"));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "functions over {} lines (CONTRIBUTING.md, rule 4: a long function is usually two \
         ideas; name them, or add an exception with its reason in tests/tidy/shape.rs):\n{}",
        shape::MAX_FN_LINES,
        offenders.join("\n")
    );
}

#[test]
fn the_application_has_no_module_cycle() {
    let files: Vec<(String, String)> = rust_files()
        .into_iter()
        .filter_map(|(path, text)| Some((path.strip_prefix("src/")?.to_string(), text)))
        .collect();
    let deps = modules::dependencies(&files);
    assert!(
        deps.contains_key("conn") && deps.contains_key("models"),
        "{deps:?}"
    );
    let cycles = modules::cycles(&deps);
    assert!(
        cycles.is_empty(),
        "modules of src/ that need each other (CONTRIBUTING.md, layout): {cycles:?}\n{deps:#?}"
    );
}

#[test]
fn the_docs_name_only_what_exists() {
    let files = files::all_files();
    let code: String = rust_files()
        .iter()
        .map(|(_, text)| blank_comments_and_literals(text))
        .collect();
    let words = docs::code_words(&code);
    let help = echo_server_help();
    let flag_text: String = files
        .iter()
        .filter(|f| f.ends_with(".rs") || f.ends_with(".sh") || f.starts_with(".ci/"))
        .filter_map(|f| std::fs::read_to_string(files::root().join(f)).ok())
        .collect();
    let docs: Vec<&String> = files
        .iter()
        .filter(|f| {
            *f == "README.md"
                || *f == "ARCHITECTURE.md"
                || (f.starts_with("docs/") && f.ends_with(".md"))
        })
        .collect();
    let mut offenders = Vec::new();
    for doc in docs {
        let text = std::fs::read_to_string(files::root().join(doc)).unwrap();
        for (line, span) in docs::code_spans(&text) {
            if docs::EXTERNAL.contains(&span.as_str()) {
                continue;
            }
            let ok = match docs::classify(&span) {
                Some(docs::Name::Path(p)) => docs::path_exists(&p, &files),
                Some(docs::Name::Flags(flags)) => flags
                    .iter()
                    .all(|f| help.contains(f.as_str()) || flag_text.contains(f.as_str())),
                Some(docs::Name::Item(segments)) => docs::item_exists(&segments, &words),
                Some(docs::Name::PathItem(path, item)) => {
                    docs::path_exists(&path, &files) && words.contains(&item)
                }
                None => true,
            };
            if !ok {
                offenders.push(format!("  {doc}:{line}: `{span}`"));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "the docs name things that do not exist (CONTRIBUTING.md, rule 5); fix the doc, or list \
         another project's name in tests/tidy/docs.rs EXTERNAL:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_tree_stands_alone() {
    let pointers = ["../shared", "STYLE.md", "research.md"];
    let mut offenders = Vec::new();
    for path in files::all_files() {
        let Ok(text) = std::fs::read_to_string(files::root().join(&path)) else {
            continue; // binary
        };
        if path == "tests/tidy.rs" {
            continue; // names them to forbid them
        }
        for pointer in pointers {
            if text.contains(pointer) {
                offenders.push(format!("  {path}: mentions {pointer}"));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "the repository must stand alone (CONTRIBUTING.md, rule 6): a person who clones it has \
         nothing outside it to open:\n{}",
        offenders.join("\n")
    );
}

/// `echo-server --help`, for the flags the docs may name.
fn echo_server_help() -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_echo-server"))
        .arg("--help")
        .output()
        .expect("run echo-server --help");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
