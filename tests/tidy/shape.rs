//! The shape rule: no function over [`MAX_FN_LINES`] lines in the crates' sources.
//!
//! A function is found by the `fn` keyword followed by a name (so `fn(&str)` pointer types and
//! `Fn` bounds are not functions), in code with comments and literals blanked; its length runs
//! from that line to the line of the brace that closes its body. A declaration without a body
//! (a trait method ending in `;`) has no length.

use crate::lexer::blank_comments_and_literals;

/// The longest a function may be, signature and closing brace included.
pub const MAX_FN_LINES: usize = 60;

/// Functions allowed to be longer: `(path, fn name, why)`. Empty is the goal.
pub const LONG_FN_EXCEPTIONS: &[(&str, &str, &str)] = &[];

/// Every function of `text` longer than `max` lines, as `(name, first line, length)` with
/// 1-based line numbers.
pub fn long_functions(text: &str, max: usize) -> Vec<(String, usize, usize)> {
    let code = blank_comments_and_literals(text);
    let lines: Vec<&str> = code.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = fn_name(line) else { continue };
        if let Some(end) = body_end(&lines, i) {
            let length = end - i + 1;
            if length > max {
                found.push((name, i + 1, length));
            }
        }
    }
    found
}

/// The name after a `fn` keyword on this line, if any.
fn fn_name(line: &str) -> Option<String> {
    let words: Vec<&str> = line
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    let at = words.iter().position(|w| *w == "fn")?;
    let name = words.get(at + 1)?;
    // `fn(` has no name: the next word is then on the far side of the parenthesis.
    let after_fn = line.split_once("fn")?.1.trim_start();
    after_fn.starts_with(name).then(|| name.to_string())
}

/// The index of the line whose `}` closes the body of the function declared on line `start`,
/// or `None` if the declaration ends with `;` first.
fn body_end(lines: &[&str], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut opened = false;
    for (k, line) in lines.iter().enumerate().skip(start) {
        for c in line.chars() {
            match c {
                ';' if !opened && depth == 0 => return None,
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' if opened => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(k);
                    }
                }
                _ => {}
            }
        }
    }
    None
}

#[test]
fn the_length_checker_measures_bodies_only() {
    let text = "//! x\nfn short() {\n    a();\n}\ntrait T {\n    fn decl(&self);\n}\n\
                fn long(\n    x: u8,\n) -> u8 {\n    let f: fn(u8) = g;\n    // }\n    \"}\";\n    x\n}\n";
    assert_eq!(long_functions(text, 3), vec![("long".to_string(), 8, 8)]);
    assert!(long_functions(text, 8).is_empty());
}
