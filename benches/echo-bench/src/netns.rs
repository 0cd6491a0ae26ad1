//! A private network namespace for the experiments that touch the kernel's state.
//!
//! The counters of `/proc/net/netstat` (`ListenOverflows`, `TCPReqQFullDrop`...), the sysctls
//! of `net.ipv4` and `net.core`, netfilter rules and raw sockets all belong to a network
//! namespace (network_namespaces(7)). An experiment that runs in a namespace of its own gets
//! counters nobody else moves, may set `tcp_syncookies` or `tcp_abort_on_overflow` without
//! changing the machine's, and cannot send a packet anywhere: the new namespace has one
//! interface, `lo`, and no route out. When its last process exits the namespace disappears,
//! with its sockets, sysctls and rules, however the experiment ended.
//!
//! [`PrivateNet::create`] is the only way to get a [`PrivateNet`], and it makes the namespace
//! itself: `unshare(CLONE_NEWNET)` (in [`crate::sys`]), loopback up, a check that `lo` is the
//! only interface. The SYN generator and the sysctl writer take a `&PrivateNet`, so code that
//! did not create a namespace cannot call them, and each re-checks that the calling thread is
//! still inside it. Creating one needs root (`CAP_SYS_ADMIN`); without it the error says
//! [`NEEDS_ROOT`] and the lab skips the experiment.
//!
//! This is what `scripts/scale-out.sh --via nft` does with `unshare --net` and a re-exec;
//! here the process that runs the experiment unshares itself, first thing, before it starts
//! any thread (`echo-bench kernel ...`, which the lab starts once per experiment).

use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::sys;

/// Why a namespace experiment did not run, when the machine cannot run it.
pub const NEEDS_ROOT: &str = "needs root (network namespace)";

/// Exit status of `echo-bench kernel` when the experiment cannot run on this machine (not
/// root, a tool missing): the lab reports it as skipped, not failed. 77 is the "skipped"
/// status of automake's test harness.
pub const EXIT_SKIPPED: u8 = 77;

/// Why [`PrivateNet::create`] failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetnsError {
    /// This machine cannot run it (not root, `ip` missing): skip, with this reason.
    Unavailable(String),
    /// It should have worked and did not.
    Failed(String),
}

impl std::fmt::Display for NetnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetnsError::Unavailable(why) => write!(f, "skipped: {why}"),
            NetnsError::Failed(why) => write!(f, "{why}"),
        }
    }
}

/// Proof that the calling process created, and its main thread entered, a network namespace
/// of its own, with loopback up and no other interface.
#[derive(Debug)]
pub struct PrivateNet {
    /// The namespace we started in (its inode number), never to be touched.
    host: u64,
    /// Ours.
    own: u64,
}

impl PrivateNet {
    /// Leaves the current network namespace for a new one and brings its loopback up. Call it
    /// from the main thread before starting any other: threads started earlier stay behind.
    pub fn create() -> Result<PrivateNet, NetnsError> {
        let host = namespace_id().map_err(|e| NetnsError::Failed(e.to_string()))?;
        if let Err(e) = sys::unshare_network_namespace() {
            return Err(match e.kind() {
                io::ErrorKind::PermissionDenied => NetnsError::Unavailable(NEEDS_ROOT.into()),
                _ => NetnsError::Failed(format!("unshare(CLONE_NEWNET): {e}")),
            });
        }
        // Root first: without it, that is the reason to give, whatever else is missing.
        require_tool("ip", "iproute2")?;
        let own = namespace_id().map_err(|e| NetnsError::Failed(e.to_string()))?;
        let net = PrivateNet { host, own };
        net.ensure_inside().map_err(NetnsError::Failed)?;
        // A new namespace's loopback is down: 127.0.0.1 would be unreachable.
        run("ip", &["link", "set", "lo", "up"], None).map_err(NetnsError::Failed)?;
        match interfaces() {
            Ok(names) if names == ["lo"] => Ok(net),
            Ok(names) => Err(NetnsError::Failed(format!(
                "the new namespace has interfaces {names:?}, expected only lo"
            ))),
            Err(e) => Err(NetnsError::Failed(format!(
                "/proc/thread-self/net/dev: {e}"
            ))),
        }
    }

    /// Checks that the calling thread is in this namespace, and that it is not the one the
    /// process started in.
    pub fn ensure_inside(&self) -> Result<(), String> {
        let now = namespace_id().map_err(|e| e.to_string())?;
        if now == self.own && now != self.host {
            Ok(())
        } else {
            Err(format!(
                "refusing: this thread is in network namespace {now}, not in the private \
                 namespace {} this process created (started in {})",
                self.own, self.host
            ))
        }
    }

    /// Refuses any destination that is not inside this namespace. With `lo` as its only
    /// interface, the namespace's own addresses are the loopback block 127.0.0.0/8: anything
    /// else would need a route out, and there is none, but the generator does not rely on it.
    pub fn check_destination(&self, ip: Ipv4Addr) -> Result<(), String> {
        self.ensure_inside()?;
        if !ip.is_loopback() {
            return Err(format!(
                "refusing destination {ip}: outside this namespace (only 127.0.0.0/8 on lo is)"
            ));
        }
        match interfaces() {
            Ok(names) if names == ["lo"] => Ok(()),
            Ok(names) => Err(format!("refusing: the namespace has interfaces {names:?}")),
            Err(e) => Err(format!("/proc/thread-self/net/dev: {e}")),
        }
    }

    /// Sets a `net.*` sysctl of this namespace (`net.ipv4.tcp_syncookies`) and reads it back.
    pub fn set_sysctl(&self, key: &str, value: u64) -> Result<(), String> {
        self.ensure_inside()?;
        let path = sysctl_path(key)?;
        fs::write(&path, format!("{value}\n"))
            .map_err(|e| format!("cannot set {key} = {value}: {e}"))?;
        match self.sysctl(key)? {
            v if v == value => Ok(()),
            v => Err(format!("{key}: wrote {value}, reads back {v}")),
        }
    }

    /// Reads a `net.*` sysctl of this namespace.
    pub fn sysctl(&self, key: &str) -> Result<u64, String> {
        let path = sysctl_path(key)?;
        let text = fs::read_to_string(&path).map_err(|e| format!("cannot read {key}: {e}"))?;
        text.trim()
            .parse()
            .map_err(|_| format!("{key} is {:?}, not a number", text.trim()))
    }

    /// Loads an nftables ruleset (`nft -f -`) into this namespace.
    pub fn nft(&self, ruleset: &str) -> Result<(), String> {
        self.ensure_inside()?;
        require_tool("nft", "nftables").map_err(|e| e.to_string())?;
        run("nft", &["-f", "-"], Some(ruleset))
    }
}

/// Fails with [`NetnsError::Unavailable`] when `tool` is not on the PATH.
pub fn require_tool(tool: &str, package: &str) -> Result<(), NetnsError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|dir| dir.join(tool).is_file());
    match found {
        true => Ok(()),
        false => Err(NetnsError::Unavailable(format!("needs {tool} ({package})"))),
    }
}

/// The inode number of the calling thread's network namespace (`net:[4026531840]`): two
/// threads are in the same namespace exactly when the numbers match.
pub fn namespace_id() -> io::Result<u64> {
    let link = fs::read_link("/proc/thread-self/ns/net")?;
    let text = link.to_string_lossy();
    text.strip_prefix("net:[")
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| io::Error::other(format!("unexpected namespace link {text}")))
}

/// The network interfaces of the calling thread's namespace (`/proc/thread-self/net/dev`).
pub fn interfaces() -> io::Result<Vec<String>> {
    let text = fs::read_to_string("/proc/thread-self/net/dev")?;
    Ok(text
        .lines()
        .skip(2)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, _)| name.trim().to_string())
        .collect())
}

/// `net.ipv4.tcp_syncookies` -> `/proc/sys/net/ipv4/tcp_syncookies`; only `net.*` names.
fn sysctl_path(key: &str) -> Result<std::path::PathBuf, String> {
    let ok = key.starts_with("net.")
        && key.split('.').all(|part| {
            !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
    if !ok {
        return Err(format!(
            "refusing sysctl {key:?}: only net.* names are per namespace"
        ));
    }
    Ok(Path::new("/proc/sys").join(key.replace('.', "/")))
}

/// Runs `program args`, feeding `input` on stdin; its stderr becomes the error.
fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<(), String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| format!("{program}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{program}: {e}"))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_net_sysctls_are_written() {
        assert_eq!(
            sysctl_path("net.ipv4.tcp_syncookies").unwrap(),
            Path::new("/proc/sys/net/ipv4/tcp_syncookies")
        );
        for bad in [
            "kernel.panic",
            "net..x",
            "net.ipv4/../../kernel",
            "net.ipv4.a b",
        ] {
            assert!(sysctl_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn this_thread_has_a_namespace_and_loopback() {
        let id = namespace_id().unwrap();
        assert!(id > 0);
        assert!(interfaces().unwrap().iter().any(|n| n == "lo"));
    }
}
