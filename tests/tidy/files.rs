//! The files the tidy checks read: those git knows (tracked, or new and not ignored), so a
//! helper's build directory never counts; without git the tree is walked instead.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every Rust file of the repository with its text, by path relative to the root.
pub fn rust_files() -> Vec<(String, String)> {
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

/// Every file of the repository (any kind), by path relative to the root.
pub fn all_files() -> Vec<String> {
    git_files(root(), "*").expect("git ls-files")
}

fn git_rust_files(root: &Path) -> Option<Vec<String>> {
    git_files(root, "*.rs")
}

fn git_files(root: &Path, pattern: &str) -> Option<Vec<String>> {
    let output = Command::new("git")
        .args([
            "ls-files",
            "--cached",
            "--others",
            "--exclude-standard",
            "-z",
            "--",
            pattern,
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
