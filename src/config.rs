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
    /// N pinned loops share one listener, each watching it with EPOLLEXCLUSIVE: nginx's shape
    /// without `reuseport`.
    SharedAccept,
    /// One thread, one io_uring, everything inline: `event-loop` with completions instead of
    /// readiness (multishot accept and recv, provided buffers).
    Uring,
    /// N pinned threads, each with its own io_uring and SO_REUSEPORT listener: thread-per-core,
    /// as monoio and glommio run.
    UringReuseport,
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
            Model::SharedAccept => "shared-accept",
            Model::Uring => "uring",
            Model::UringReuseport => "uring-reuseport",
        }
    }

    /// Whether the model runs on io_uring (and so needs it from the kernel).
    pub fn uses_io_uring(self) -> bool {
        matches!(self, Model::Uring | Model::UringReuseport)
    }
}

/// How stats lines are written (`--stats-format`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum StatsFormat {
    /// `stats time=... key=value ...`: one line, greppable, readable.
    Text,
    /// One JSON object per line, for scripts and dashboards.
    Json,
}

/// How `reactor-pool` hands connections from the reactor to the workers (`--arm`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Arm {
    /// Registered once, edge-triggered; a per-connection `RunState` decides who may serve it.
    /// No `epoll_ctl` per message.
    Edge,
    /// `EPOLLONESHOT`: disarmed after each event, re-armed by the worker with
    /// `epoll_ctl(EPOLL_CTL_MOD)` after serving: one extra system call per message.
    Oneshot,
}

/// How an idle pool worker waits for the next job (`--spin`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Spin {
    /// Spin about twice the recent gap between jobs, up to 10 µs, then park; park at once when
    /// jobs come slower than that.
    Adaptive,
    /// Spin 32 polls, then park.
    Fixed,
    /// Park at once.
    None,
}

impl Spin {
    /// The pool's waiting policy for this choice.
    pub fn policy(self) -> pool::SpinPolicy {
        match self {
            Spin::Adaptive => pool::SpinPolicy::adaptive(),
            // A short spin: in a ping-pong the next job rarely comes within a few µs, and a
            // long fixed spin burns more CPU per message than the futex wake it saves.
            Spin::Fixed => pool::SpinPolicy::Fixed(32),
            Spin::None => pool::SpinPolicy::None,
        }
    }
}

/// How the event loops register connections with epoll (`--epoll-trigger`, epoll(7)).
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Trigger {
    /// Level-triggered: registered for what the connection wants now, re-registered when that
    /// changes; the kernel re-polls a reported socket at the next `epoll_wait`.
    Level,
    /// Edge-triggered (the default): the same interests with `EPOLLET`; no re-poll, and the
    /// loop comes back itself to a connection whose read budget ran out.
    Edge,
}

/// How the kernel picks a listener of a SO_REUSEPORT group for a new connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Steer {
    /// The kernel's default: a hash of the connection's addresses and ports.
    Hash,
    /// The listener of the CPU that received the connection (a BPF program,
    /// `SO_ATTACH_REUSEPORT_CBPF`), so a connection never changes core.
    Cpu,
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
    #[arg(long, default_value_t = 1024, value_parser = count::<u32>(1, 65_535), allow_negative_numbers = true)]
    pub backlog: u32,

    /// Most open connections (per process). Past it a new connection is accepted and closed at
    /// once, never left to rot in the accept queue; it is counted as "refused".
    #[arg(long, default_value_t = 10_000, value_parser = count::<usize>(1, 1_000_000), allow_negative_numbers = true)]
    pub max_conns: usize,

    /// Print a stats line to stdout every SECS seconds (0: only at exit; at least 0.1).
    #[arg(long, value_name = "SECS", default_value_t = 0.0, value_parser = seconds(0.1, 86_400.0, true), allow_negative_numbers = true)]
    pub stats_interval: f64,

    /// How stats lines are written: `text` (`stats time=... key=value ...`) or `json` (one
    /// object per line). Periodic and final lines carry the same fields; the last has `final`.
    #[arg(long, value_enum, default_value = "text")]
    pub stats_format: StatsFormat,

    /// Worker threads or processes for the multi-threaded and multi-process models
    /// (default: one per available core; `reactor-offload`: one fewer, leaving the reactor a
    /// core).
    #[arg(long, value_parser = count::<usize>(1, 1024), allow_negative_numbers = true)]
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
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024, value_parser = count::<usize>(1, 16 << 20), allow_negative_numbers = true)]
    pub max_line: usize,

    /// Stop reading from a connection when this many echoed bytes wait to be sent
    /// (backpressure); resume at a quarter of it.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024, value_parser = count::<usize>(2, 1 << 30), allow_negative_numbers = true)]
    pub high_water: usize,

    /// Close a connection after SECS seconds with no traffic in either direction (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 300.0, value_parser = seconds(0.001, 31_536_000.0, true), allow_negative_numbers = true)]
    pub idle_timeout: f64,

    /// On SIGTERM, how long connections may take to receive their in-flight echoes before
    /// they are closed.
    #[arg(long, value_name = "SECS", default_value_t = 5.0, value_parser = seconds(0.0, 3_600.0, false), allow_negative_numbers = true)]
    pub drain_timeout: f64,

    /// Capacity of the lock-free ring between the reactor and the pool (rounded up to a power
    /// of two).
    #[arg(long, default_value_t = 4096, value_parser = count::<usize>(2, 1 << 24), allow_negative_numbers = true)]
    pub ring_capacity: usize,

    /// Count epoll_wait, epoll_ctl, accept4, read, write and wakeups, and print them per
    /// echoed message with the stats.
    #[arg(long)]
    pub syscall_stats: bool,

    /// How the event-loop models (event-loop, reuseport, listener-pool, prefork, shared-accept,
    /// reactor-offload) register connections with epoll: `edge` or `level` (see epoll(7)).
    #[arg(long, value_enum, default_value = "edge")]
    pub epoll_trigger: Trigger,

    /// How `reuseport` and `prefork` spread connections over their listeners: `hash` (the
    /// kernel's default) or `cpu` (each connection to the listener of the CPU that received it).
    #[arg(long, value_enum, default_value = "hash")]
    pub reuseport_steer: Steer,

    /// `reactor-pool`: how ready connections reach the workers: `edge` (registered once,
    /// edge-triggered, a scheduling state per connection) or `oneshot` (EPOLLONESHOT, re-armed
    /// after every message).
    #[arg(long, value_enum, default_value = "edge")]
    pub arm: Arm,

    /// `reactor-pool` and `reactor-offload`: how an idle worker waits for a job: `adaptive`,
    /// `fixed` (32 polls) or `none` (park at once).
    #[arg(long, value_enum, default_value = "adaptive")]
    pub spin: Spin,

    /// Teaching switch for `reactor-pool`: level-triggered registration and every event pushed
    /// to the ring, without EPOLLONESHOT or a scheduling state, so two workers can get the same
    /// connection; watch the `overlaps` counter catch it.
    #[arg(long, hide = true)]
    pub no_oneshot: bool,

    /// Test switch for the io_uring models: entries of each ring's completion queue (a power of
    /// two; the SQ gets at most as many). A tiny CQ forces overflow and early ends of
    /// multishot operations.
    #[arg(long, hide = true, default_value_t = 4096, value_parser = count::<u32>(2, 65_536), allow_negative_numbers = true)]
    pub uring_cq_entries: u32,

    /// Test switch for the io_uring models: provided buffers per ring. A few buffers make a
    /// multishot recv run dry (ENOBUFS) under load.
    #[arg(long, hide = true, default_value_t = 256, value_parser = count::<u16>(1, 32_768), allow_negative_numbers = true)]
    pub uring_buffers: u16,

    /// Test switch for the io_uring models: bytes per provided buffer (at most one read chunk).
    #[arg(long, hide = true, default_value_t = 16_384, value_parser = count::<u32>(16, 65_536), allow_negative_numbers = true)]
    pub uring_buffer_size: u32,
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
    /// Derives the settings. Every number was range-checked by clap (see [`count`] and
    /// [`seconds`]), so this cannot fail on a parsed command line; the `Result` is for
    /// [`Args`] built by hand.
    pub fn from_args(args: Args) -> Result<Settings, String> {
        let optional = |secs: f64| (secs > 0.0).then(|| Duration::from_secs_f64(secs));
        if args.model.uses_io_uring() {
            // Refused like a bad flag (exit 2), naming why: sysctl, seccomp, an old kernel.
            reactor::uring::available()
                .map_err(|cause| format!("--model {}: {cause}", args.model.name()))?;
        }
        let workers = args.workers.unwrap_or_else(pool::available_cores);
        if !(1..=1024).contains(&workers) {
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
            idle_timeout: optional(args.idle_timeout),
            drain_timeout: Duration::from_secs_f64(args.drain_timeout.max(0.0)),
            stats_interval: optional(args.stats_interval),
            args,
        })
    }
}

/// A clap value parser for a whole number in `min..=max`, whose error names the range (clap
/// prefixes the flag): "must be a whole number from 1 to 1024".
pub fn count<T>(min: T, max: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync
where
    T: std::str::FromStr + PartialOrd + Copy + std::fmt::Display + Send + Sync + 'static,
{
    move |text: &str| match text.trim().parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(format!("must be a whole number from {min} to {max}")),
    }
}

/// A clap value parser for a number of seconds in `min..=max`, or exactly 0 when `zero_is_off`
/// (the feature is then off). NaN, infinities and negative numbers are refused with the range.
pub fn seconds(
    min: f64,
    max: f64,
    zero_is_off: bool,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync {
    move |text: &str| {
        let value = text.trim().parse::<f64>().ok();
        match value {
            Some(v) if zero_is_off && v == 0.0 => Ok(v),
            Some(v) if (min..=max).contains(&v) => Ok(v),
            _ if zero_is_off => Err(format!(
                "must be 0 (off) or a number of seconds from {min} to {max}"
            )),
            _ => Err(format!("must be a number of seconds from {min} to {max}")),
        }
    }
}
