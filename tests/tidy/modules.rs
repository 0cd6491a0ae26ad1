//! The layering rule: the application's top-level modules form no cycle.
//!
//! A module's dependencies are read from its `use crate::...` paths (comments blanked), by
//! top-level module (`conn`, `runtime`, `models`...); a cycle means two modules each need the
//! other, which is how a grab-bag module starts. The intended order: `protocol`, `stats`,
//! `config` and `conn` at the bottom, `runtime` on them, `models` on `runtime`, `lib.rs` on top.

use std::collections::{BTreeMap, BTreeSet};

use crate::lexer::blank_comments_and_literals;

/// Top-level module → the top-level modules it uses, for the files of `src/` given as
/// `(path relative to src/, text)`.
pub fn dependencies(files: &[(String, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, text) in files {
        let top = path.split('/').next().unwrap_or("").trim_end_matches(".rs");
        if top == "lib" || top == "main" {
            continue;
        }
        let code = blank_comments_and_literals(text);
        let mut used = BTreeSet::new();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group.split('}').next().unwrap_or("").split(',').collect(),
                None => vec![rest],
            };
            for name in names {
                let name: String = name
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != top {
                    used.insert(name);
                }
            }
        }
        deps.entry(top.to_string()).or_default().extend(used);
    }
    deps
}

/// The dependency edges `a -> b` that close a cycle (b reaches a back).
pub fn cycles(deps: &BTreeMap<String, BTreeSet<String>>) -> Vec<(String, String)> {
    let reaches = |from: &str, to: &str| {
        let (mut seen, mut stack) = (BTreeSet::new(), vec![from.to_string()]);
        while let Some(m) = stack.pop() {
            if m == to {
                return true;
            }
            if seen.insert(m.clone()) {
                stack.extend(deps.get(&m).into_iter().flatten().cloned());
            }
        }
        false
    };
    let mut found = Vec::new();
    for (a, bs) in deps {
        for b in bs {
            if reaches(b, a) {
                found.push((a.clone(), b.clone()));
            }
        }
    }
    found
}

#[test]
fn the_cycle_finder_sees_a_cycle() {
    let file = |path: &str, text: &str| (path.to_string(), text.to_string());
    let files = [
        file("a.rs", "//! a\nuse crate::b::X;\n"),
        file("b/mod.rs", "//! b\nuse crate::{c, a::Y};\n"),
        file("c.rs", "//! c\n// use crate::a; only a comment\n"),
    ];
    let deps = dependencies(&files);
    assert_eq!(
        cycles(&deps),
        vec![("a".into(), "b".into()), ("b".into(), "a".into())]
    );
}
