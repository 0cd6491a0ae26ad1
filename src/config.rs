//! The `echo-server` command line, and the settings every model reads from it.
//!
//! One CLI for every model: a reader can run the same workload through two models by changing
//! one flag, which is the whole point of the comparison.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::conn::Limits;
use crate::protocol::Protocol;

/// The concurrency models of our design notes (see `docs/models.md`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Model {
    /// One thread, one epoll, everything inline: the Node.js model.
    EventLoop,
    /// A listener thread; each connection gets its own thread with blocking I/O.
    ThreadPerConn,
    /// Accept, then fork(2): a child process serves each connection.
    ProcessPerConn,
    /// A listener thread hands each socket through the ring to pinned workers, each with its
    /// own epoll serving many connections.
    ListenerPool,
    /// The flagship: a reactor thread pushes ready connections into the lock-free ring;
    /// pinned workers read, echo, write and re-arm (EPOLLONESHOT).
    ReactorPool,
    /// The reactor reads and classifies requests; cheap ones are answered inline, costly ones
    /// go to the pool ("the listener reads, workers process").
    ReactorOffload,
    /// N pinned threads, each with its own SO_REUSEPORT listener and epoll: shared nothing.
    Reuseport,
    /// N single-threaded processes, each an event loop on a SO_REUSEPORT listener.
    Prefork,
}

impl Model {
    /// The name used on the command line and in stats.
    pub fn name(self) -> &'static str {
        match self {
            Model::EventLoop => "event-loop",
            Model::ThreadPerConn => "thread-per-conn",
            Model::ProcessPerConn => "process-per-conn",
            Model::ListenerPool => "listener-pool",
            Model::ReactorPool => "reactor-pool",
            Model::ReactorOffload => "reactor-offload",
            Model::Reuseport => "reuseport",
            Model::Prefork => "prefork",
        }
    }
}

/// `echo-server`: an RFC 862 echo server that runs every concurrency model of rawloop.
///
/// After binding it prints exactly one line on stdout, `listening on <addr>`, with the real
/// port (so `--bind 127.0.0.1:0` works for scripts). Logs go to stderr (`RUST_LOG=debug`).
/// SIGINT or SIGTERM: stop accepting, drain, print final stats, exit 0; a second signal exits
/// at once.
#[derive(Parser, Debug, Clone)]
#[command(name = "echo-server", version)]
pub struct Args {
    /// Concurrency model. See docs/models.md for how each works and when to choose it.
    #[arg(long, value_enum, default_value = "event-loop")]
    pub model: Model,

    /// Address to listen on. Loopback by default: binding 0.0.0.0 or :: exposes the server on
    /// every interface, so it must be asked for explicitly (and logs a warning).
    #[arg(long, default_value = "127.0.0.1:7007")]
    pub bind: SocketAddr,

    /// listen(2) backlog: how many fully established connections may wait in the kernel's
    /// accept queue. The kernel silently caps it at net.core.somaxconn.
    #[arg(long, default_value_t = 1024)]
    pub backlog: u32,

    /// Most open connections (per process). Past it a new connection is accepted and closed at
    /// once, never left to rot in the accept queue; it is counted as "refused".
    #[arg(long, default_value_t = 10_000)]
    pub max_conns: usize,

    /// Print a stats line to stdout every SECS seconds (0: only at exit).
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    pub stats_interval: f64,

    /// Worker threads or processes for the multi-threaded and multi-process models
    /// (default: one per available core; `reactor-offload`: one fewer, leaving the reactor a
    /// core).
    #[arg(long)]
    pub workers: Option<usize>,

    /// Pin each worker thread to its own core (core_affinity). On by default.
    #[arg(long, overrides_with = "no_pin")]
    pub pin: bool,

    /// Do not pin worker threads.
    #[arg(long)]
    pub no_pin: bool,

    /// Wire protocol: `raw` (RFC 862 echo) or `lines` (`WORK <micros> <payload>` costs CPU).
    #[arg(long, value_enum, default_value = "raw")]
    pub protocol: Protocol,

    /// Longest line accepted by `--protocol lines`; a longer one gets `ERR line too long` and
    /// the connection closes.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    pub max_line: usize,

    /// Stop reading from a connection when this many echoed bytes wait to be sent
    /// (backpressure); resume at a quarter of it.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    pub high_water: usize,

    /// Close a connection after SECS seconds with no traffic in either direction (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 300.0)]
    pub idle_timeout: f64,

    /// On SIGTERM, how long connections may take to receive their in-flight echoes before
    /// they are closed.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub drain_timeout: f64,

    /// Capacity of the lock-free ring between the reactor and the pool (rounded up to a power
    /// of two).
    #[arg(long, default_value_t = 4096)]
    pub ring_capacity: usize,

    /// Count epoll_wait, epoll_ctl, accept4, read, write and wakeups, and print them per
    /// echoed message with the stats.
    #[arg(long)]
    pub syscall_stats: bool,

    /// Teaching switch for `reactor-pool`: register sockets without EPOLLONESHOT, so two
    /// workers can get the same connection, and watch the `overlaps` counter catch it.
    #[arg(long, hide = true)]
    pub no_oneshot: bool,
}

/// Settings derived from [`Args`], shared by every thread of a model.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The parsed command line.
    pub args: Args,
    /// Per-connection limits.
    pub limits: Limits,
    /// Worker threads or processes.
    pub workers: usize,
    /// Whether to pin workers.
    pub pin: bool,
    /// `--idle-timeout`, `None` when 0.
    pub idle_timeout: Option<Duration>,
    /// `--drain-timeout`.
    pub drain_timeout: Duration,
    /// `--stats-interval`, `None` when 0.
    pub stats_interval: Option<Duration>,
}

impl Settings {
    /// Validates the arguments and derives the settings.
    pub fn from_args(args: Args) -> Result<Settings, String> {
        let secs = |name: &str, v: f64| {
            if (0.0..1e9).contains(&v) {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(format!(
                    "--{name} must be a number of seconds >= 0, got {v}"
                ))
            }
        };
        let optional = |d: Duration| (!d.is_zero()).then_some(d);
        let idle_timeout = optional(secs("idle-timeout", args.idle_timeout)?);
        let stats_interval = optional(secs("stats-interval", args.stats_interval)?);
        let drain_timeout = secs("drain-timeout", args.drain_timeout)?;
        if args.high_water < 2 {
            return Err("--high-water must be at least 2 bytes".into());
        }
        if args.max_line == 0 {
            return Err("--max-line must be at least 1 byte".into());
        }
        if args.max_conns == 0 {
            return Err("--max-conns must be at least 1".into());
        }
        if args.ring_capacity < 2 || args.ring_capacity > 1 << 24 {
            return Err("--ring-capacity must be between 2 and 16777216".into());
        }
        let workers = args.workers.unwrap_or_else(pool::available_cores);
        if workers == 0 || workers > 1024 {
            return Err(format!(
                "--workers must be between 1 and 1024, got {workers}"
            ));
        }
        let limits = Limits {
            high_water: args.high_water,
            low_water: args.high_water / 4,
            max_line: args.max_line,
            ..Limits::default()
        };
        Ok(Settings {
            pin: !args.no_pin,
            workers,
            limits,
            idle_timeout,
            drain_timeout,
            stats_interval,
            args,
        })
    }
}
