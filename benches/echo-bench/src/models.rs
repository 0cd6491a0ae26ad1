//! The lab's models as data: one table of entries, each a lab name and how to start its server.
//!
//! An entry is either an `echo-server` model with extra arguments (`reactor-pool-oneshot` is
//! `--model reactor-pool --arm oneshot`) or a peer binary of `benches/peers`. New models and
//! variants are one line each. Entries come in three groups, which `--models` selects by name:
//!
//! - `all`: every **model** the server offers (the lab's default);
//! - `variants`: every **variant**, a model run with other settings (`all,variants` runs both);
//! - `peers` (or `--peers`): the tokio and `std` yardsticks.
//!
//! The table may name models and flags that do not exist yet (as `uring` once did): before
//! a run the lab reads `echo-server --help` and skips, with a note in the output, any entry whose
//! model value or flag the help does not list. So the same lab runs on a branch that lacks them
//! and on one that has them, and the table never needs to wait for the code.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

/// Which group an entry belongs to, for `--models all|variants|peers` and for the colours of
/// the charts.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    /// A concurrency model of `echo-server`, with its default settings.
    #[default]
    Model,
    /// A model with other settings (another re-arm strategy, another spin policy...).
    Variant,
    /// A yardstick from `benches/peers` (tokio, `std` threads).
    Peer,
}

/// How to start an entry's server.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Server {
    /// `echo-server --model MODEL ARGS...`.
    Rawloop {
        /// The `--model` value.
        model: &'static str,
        /// Arguments after it.
        args: &'static [&'static str],
    },
    /// A binary of the `benches/peers` workspace.
    Peer {
        /// Its file name.
        bin: &'static str,
    },
}

/// One line of the table.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The name in `--models`, tables and charts.
    pub name: &'static str,
    /// Its group.
    pub group: Group,
    /// How to start it.
    pub server: Server,
}

/// Every entry, in the order the lab reports them: models first (the same model always at the
/// same place in every chart), then variants, then peers.
pub const TABLE: &[Entry] = &[
    model("event-loop"),
    model("thread-per-conn"),
    model("process-per-conn"),
    model("listener-pool"),
    model("reactor-pool"),
    model("reactor-offload"),
    model("reuseport"),
    model("prefork"),
    model("shared-accept"),
    model("uring"),
    model("uring-reuseport"),
    variant(
        "reactor-pool-oneshot",
        "reactor-pool",
        &["--arm", "oneshot"],
    ),
    variant(
        "reactor-pool-spin-fixed",
        "reactor-pool",
        &["--spin", "fixed"],
    ),
    variant(
        "reactor-pool-spin-none",
        "reactor-pool",
        &["--spin", "none"],
    ),
    variant(
        "event-loop-level",
        "event-loop",
        &["--epoll-trigger", "level"],
    ),
    variant(
        "reuseport-steer-cpu",
        "reuseport",
        &["--reuseport-steer", "cpu"],
    ),
    peer("tokio-mt", "peer-tokio-mt"),
    peer("tokio-ct", "peer-tokio-ct"),
    peer("std-threads", "peer-std-threads"),
];

/// An entry the lab did not run, and why (shown in results.md and results.json).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The entry's lab name.
    pub name: String,
    /// Why, in a sentence.
    pub reason: String,
}

/// The entries named by a `--models` list (plus the peers with `--peers`), in table order,
/// before any check against the server. Unknown names are an error.
pub fn named(
    table: &'static [Entry],
    list: &str,
    peers: bool,
) -> Result<Vec<&'static Entry>, String> {
    let mut wanted = vec![false; table.len()];
    for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let group = match word {
            "all" => Some(Group::Model),
            "variants" => Some(Group::Variant),
            "peers" => Some(Group::Peer),
            _ => None,
        };
        let mut found = false;
        for (i, entry) in table.iter().enumerate() {
            if group == Some(entry.group) || entry.name == word {
                wanted[i] = true;
                found = true;
            }
        }
        if !found {
            let names: Vec<&str> = table.iter().map(|e| e.name).collect();
            return Err(format!(
                "unknown model {word:?}; known: all, variants, peers, {}",
                names.join(", ")
            ));
        }
    }
    for (i, entry) in table.iter().enumerate() {
        wanted[i] |= peers && entry.group == Group::Peer;
    }
    Ok(table
        .iter()
        .zip(wanted)
        .filter_map(|(entry, wanted)| wanted.then_some(entry))
        .collect())
}

/// What `echo-server --help` offers: its options and, for those that list them, their
/// possible values.
#[derive(Clone, Debug, Default)]
pub struct ServerHelp {
    /// `--flag` -> its possible values (empty when it takes free text or nothing).
    options: HashMap<String, Vec<String>>,
}

impl ServerHelp {
    /// Runs `program --help`.
    pub fn of(program: &Path) -> Result<ServerHelp, String> {
        let output = Command::new(program)
            .arg("--help")
            .output()
            .map_err(|e| format!("cannot run {} --help: {e}", program.display()))?;
        if !output.status.success() {
            return Err(format!(
                "{} --help failed: {}",
                program.display(),
                output.status
            ));
        }
        Ok(ServerHelp::parse(&String::from_utf8_lossy(&output.stdout)))
    }

    /// Parses clap's long help: an option starts on a line indented by at most six spaces
    /// with `-x, --flag` or `--flag`; its possible values follow either as `- value: ...` lines
    /// under `Possible values:` or as `[possible values: a, b]`.
    pub fn parse(help: &str) -> ServerHelp {
        let mut options: HashMap<String, Vec<String>> = HashMap::new();
        let mut current: Option<String> = None;
        let mut in_values = false;
        for line in help.lines() {
            let indent = line.len() - line.trim_start().len();
            let text = line.trim();
            if indent <= 6 && text.starts_with('-') {
                current = text
                    .split([' ', ','])
                    .find(|word| word.starts_with("--"))
                    .map(|word| word.split(['=', '<']).next().unwrap_or(word).to_string());
                if let Some(flag) = &current {
                    options.entry(flag.clone()).or_default();
                }
                in_values = false;
                continue;
            }
            let Some(values) = current.as_ref().and_then(|flag| options.get_mut(flag)) else {
                continue;
            };
            if let Some(start) = text.find("[possible values: ") {
                let list = &text[start + "[possible values: ".len()..];
                let list = list.split(']').next().unwrap_or("");
                values.extend(list.split(", ").map(str::to_string));
            } else if text == "Possible values:" {
                in_values = true;
            } else if let Some((value, _)) = text.strip_prefix("- ").and_then(|v| v.split_once(':'))
            {
                if in_values {
                    values.push(value.trim().to_string());
                }
            } else if text.is_empty() {
                in_values = false;
            }
        }
        ServerHelp { options }
    }

    /// Why `server` cannot run on this `echo-server`, or `None` when it can: its model must be
    /// a possible value of `--model`, each of its flags an option, and each word value of a
    /// flag with listed values one of them.
    pub fn missing(&self, server: &Server) -> Option<String> {
        let Server::Rawloop { model, args } = server else {
            return None;
        };
        if !self.accepts("--model", model) {
            return Some(format!("echo-server --help lists no model `{model}`"));
        }
        let mut flag: Option<&str> = None;
        for arg in args.iter() {
            if arg.starts_with("--") {
                if !self.options.contains_key(*arg) {
                    return Some(format!("echo-server --help lists no flag `{arg}`"));
                }
                flag = Some(arg);
            } else if let Some(flag) = flag.filter(|f| !self.accepts(f, arg)) {
                return Some(format!("echo-server --help lists no `{flag} {arg}`"));
            }
        }
        None
    }

    /// Whether the help lists `flag` (with any value when it lists none).
    pub fn has(&self, flag: &str) -> bool {
        self.options.contains_key(flag)
    }

    fn accepts(&self, flag: &str, value: &str) -> bool {
        match self.options.get(flag) {
            None => false,
            Some(values) => values.is_empty() || values.iter().any(|v| v == value),
        }
    }
}

/// The repository root: this crate lives in `benches/echo-bench`.
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    here.canonicalize().unwrap_or(here)
}

/// Builds `echo-server` in release mode (a no-op when up to date) and returns its path. A lab
/// run against a stale binary would measure yesterday's code, so it is always rebuilt; if cargo
/// is missing but a binary exists, that binary is used with a warning.
pub fn build_echo_server(root: &Path) -> Result<PathBuf, String> {
    let bin = target_dir(root.join("target")).join("release/echo-server");
    cargo(root, &["build", "--release", "--bin", "echo-server"], &bin)?;
    Ok(bin)
}

/// Builds the peers workspace and returns the directory of its binaries.
pub fn build_peers(root: &Path) -> Result<PathBuf, String> {
    let manifest = root.join("benches/peers/Cargo.toml");
    let dir = target_dir(root.join("benches/peers/target")).join("release");
    let manifest = manifest.to_string_lossy().into_owned();
    let probe = dir.join("peer-tokio-mt");
    cargo(
        root,
        &["build", "--release", "--manifest-path", &manifest],
        &probe,
    )?;
    Ok(dir)
}

const fn model(name: &'static str) -> Entry {
    Entry {
        name,
        group: Group::Model,
        server: Server::Rawloop {
            model: name,
            args: &[],
        },
    }
}

const fn variant(name: &'static str, model: &'static str, args: &'static [&'static str]) -> Entry {
    Entry {
        name,
        group: Group::Variant,
        server: Server::Rawloop { model, args },
    }
}

const fn peer(name: &'static str, bin: &'static str) -> Entry {
    Entry {
        name,
        group: Group::Peer,
        server: Server::Peer { bin },
    }
}

/// Where cargo puts its output for a manifest under `default`: `CARGO_TARGET_DIR` wins.
fn target_dir(default: PathBuf) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or(default, PathBuf::from)
}

fn cargo(root: &Path, args: &[&str], product: &Path) -> Result<(), String> {
    eprintln!("cargo {}", args.join(" "));
    let status = Command::new("cargo").args(args).current_dir(root).status();
    match status {
        Ok(s) if s.success() => Ok(()),
        _ if product.exists() => {
            log::warn!(
                "cargo {} failed; using the existing {}",
                args.join(" "),
                product.display()
            );
            Ok(())
        }
        Ok(s) => Err(format!("cargo {} failed: {s}", args.join(" "))),
        Err(e) => Err(format!("cannot run cargo: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of clap's long help, cut down: `--model` with documented values, a flag with
    /// inline values, a flag with free text, a switch.
    const HELP: &str = "\
Usage: echo-server [OPTIONS]

Options:
      --model <MODEL>
          Concurrency model

          Possible values:
          - event-loop:       One thread, one epoll
          - reactor-pool:     The flagship: a reactor thread pushes ready connections
          
          [default: event-loop]

      --arm <ARM>
          How workers re-arm a socket [possible values: oneshot, edge]

      --workers <WORKERS>
          Worker threads

      --no-pin
          Do not pin worker threads

  -h, --help
          Print help (see a summary with '-h')
";

    #[test]
    fn the_help_decides_which_entries_can_run() {
        let help = ServerHelp::parse(HELP);
        let ok = |model, args| help.missing(&Server::Rawloop { model, args });
        assert_eq!(ok("event-loop", &[]), None);
        assert_eq!(ok("reactor-pool", &["--arm", "oneshot"]), None);
        assert_eq!(ok("reactor-pool", &["--workers", "3"]), None);
        assert!(ok("uring", &[]).unwrap().contains("no model `uring`"));
        assert!(ok("reactor-pool", &["--spin", "fixed"])
            .unwrap()
            .contains("`--spin`"));
        assert!(ok("reactor-pool", &["--arm", "level"])
            .unwrap()
            .contains("`--arm level`"));
        assert!(help.has("--no-pin") && help.has("--help") && !help.has("--pin"));
        assert_eq!(
            help.missing(&Server::Peer {
                bin: "peer-tokio-mt"
            }),
            None
        );
    }

    #[test]
    fn groups_and_names_select_entries_in_table_order() {
        let names = |list, peers| -> Vec<&str> {
            named(TABLE, list, peers)
                .unwrap()
                .iter()
                .map(|e| e.name)
                .collect()
        };
        let all = names("all", false);
        assert_eq!(all[0], "event-loop");
        assert!(all.contains(&"uring") && !all.contains(&"reactor-pool-oneshot"));
        assert!(names("all,variants", false).contains(&"reactor-pool-oneshot"));
        assert_eq!(
            names("tokio-ct,event-loop", true),
            ["event-loop", "tokio-mt", "tokio-ct", "std-threads"]
        );
        assert_eq!(names("peers", false), names("", true));
        assert!(named(TABLE, "event-lop", false)
            .unwrap_err()
            .contains("unknown model"));
    }
}
