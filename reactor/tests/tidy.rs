//! Tidy checks on the crate's own source, in the manner of rust-analyzer's tidy test: every
//! `.rs` file opens with a `//!` doc, and `unsafe` code appears in the `src/sys/` module only.

use std::fs;
use std::path::{Path, PathBuf};

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    for path in rust_files(&crate_dir().join("src"))
        .into_iter()
        .chain(rust_files(&crate_dir().join("tests")))
    {
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("//!"),
            "{} must open with a //! doc saying what it is",
            path.display()
        );
    }
}

#[test]
fn unsafe_code_lives_in_sys_only() {
    let files = rust_files(&crate_dir().join("src"));
    let sys = crate_dir().join("src").join("sys");
    assert!(sys.join("mod.rs").exists(), "src/sys/mod.rs not found");
    for path in files.iter().filter(|p| !p.starts_with(&sys)) {
        let text = fs::read_to_string(path).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            // `unsafe {`, `unsafe fn`, `unsafe impl`...; lint names like `unsafe_code` are fine.
            let has_unsafe = code
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .any(|word| word == "unsafe");
            assert!(
                !has_unsafe,
                "{}:{}: unsafe outside src/sys/: {line}",
                path.display(),
                i + 1
            );
        }
    }
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}
