//! Replays every committed seed under `fuzz/seeds/<target>/` through the same check the fuzz
//! target runs, on stable and without libFuzzer: `cargo test --manifest-path fuzz/Cargo.toml`.
//!
//! An input that once crashed a target is committed there next to a handful of inputs that
//! reach the interesting states (split lines, early stops, full rings, many laps), so each
//! becomes a regression test. Inputs that libFuzzer finds while running live in the gitignored
//! `fuzz/corpus/`; copy the few worth keeping (after `cargo fuzz cmin`) into `seeds/`.

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

use rawloop_fuzz::TARGETS;

#[test]
fn every_committed_seed_passes_its_target() {
    let mut failures = Vec::new();
    for (target, check) in TARGETS {
        let seeds = seeds_of(target);
        assert!(
            seeds.len() >= 3,
            "fuzz/seeds/{target}/ holds {} seeds; commit a few interesting inputs",
            seeds.len()
        );
        for path in seeds {
            let input = fs::read(&path).unwrap();
            if panic::catch_unwind(|| check(&input)).is_err() {
                failures.push(path.display().to_string());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "seeds that fail their target (reproduce with `cargo +nightly fuzz run <target> <file>`):\n{}",
        failures.join("\n")
    );
}

fn seeds_of(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    let mut seeds: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    seeds.sort();
    seeds
}
