//! The two experiments on a listener's kernel queues, run inside a [`PrivateNet`]:
//!
//! - [`backlog()`]: the server is frozen with SIGSTOP (its accept loop cannot run, nothing else
//!   changes: no server flag, no code path of its own), a burst of clients connects, and the
//!   accept queue fills up to the backlog. Past it, the kernel drops the SYNs
//!   (`ListenOverflows`, `ListenDrops`) and the clients retransmit them a second or more later.
//!   SIGCONT lets the server drain the queue and the retransmitted SYNs get in.
//! - [`synflood()`]: spoofed SYNs ([`crate::synflood`]) fill the SYN queue with handshakes that
//!   never complete, while legitimate clients try to connect, with `tcp_syncookies` 0, 1 or 2.
//!
//! Both sample the listener's queues and the `TcpExt` counters every few milliseconds
//! ([`crate::netstat`]) on a thread of their own, from before the first client to after the
//! last, and record every client ([`crate::clients`]). The server is `echo-server --model
//! event-loop --protocol lines`, tied to this process ([`RunningServer::start_tied`]): if the
//! experiment dies, SIGKILL ends the server too, stopped or not, and the namespace goes.

use std::collections::BTreeMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};
use serde::{Deserialize, Serialize};

use crate::clients::{self, ClientRecord, Plan};
use crate::netns::PrivateNet;
use crate::netstat::{self, Counters, ListenerQueues};
use crate::server::{RunningServer, ServerSpec};
use crate::synflood::{self, FloodConfig, FloodReport, SynFlood};

/// How long the server may take to print its address, and to exit.
const SERVER_TIMEOUT: Duration = Duration::from_secs(10);
/// Sampling before the experiment acts, so the charts start from a quiet listener.
const LEAD_IN: Duration = Duration::from_millis(200);

/// The queues and counters at one instant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the experiment's start.
    pub t_s: f64,
    /// The listener's queues (zero once it is gone).
    #[serde(flatten)]
    pub queues: ListenerQueues,
    /// Each counter's increase since the start.
    pub counters: Counters,
}

/// The `backlog` experiment's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BacklogConfig {
    /// `echo-server --backlog`.
    pub backlog: u32,
    /// Clients in the burst.
    pub burst: usize,
    /// How long the server stays stopped after the burst starts.
    pub hold_s: f64,
    /// `net.ipv4.tcp_abort_on_overflow`.
    pub abort_on_overflow: bool,
    /// How long a client may take, from its connect, to get its echo.
    pub deadline_s: f64,
    /// Sampling period.
    pub sample_s: f64,
}

/// Everything one `backlog` run saw.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BacklogRun {
    /// Its settings.
    pub config: BacklogConfig,
    /// The namespace's relevant sysctls during the run.
    pub sysctls: BTreeMap<String, u64>,
    /// When the burst started (the server was stopped just before).
    pub burst_at_s: f64,
    /// When SIGCONT was sent.
    pub resumed_at_s: f64,
    /// The queues over time.
    pub samples: Vec<Sample>,
    /// Every client of the burst.
    pub clients: Vec<ClientRecord>,
    /// Each counter's increase over the whole run.
    pub counters: Counters,
}

/// The `synflood` experiment's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SynfloodConfig {
    /// `net.ipv4.tcp_syncookies`: 0 never, 1 when the SYN queue is full, 2 always.
    pub syncookies: u8,
    /// `echo-server --backlog`, which also bounds the SYN queue.
    pub backlog: u32,
    /// SYNs per second.
    pub rate: u32,
    /// At most this many SYNs.
    pub packets: u64,
    /// For at most this long.
    pub flood_s: f64,
    /// Legitimate clients, started at even intervals while the flood lasts.
    pub clients: usize,
    /// How long a legitimate client may take, from its connect, to get its echo.
    pub deadline_s: f64,
    /// Sampling period.
    pub sample_s: f64,
}

/// Everything one `synflood` run saw.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SynfloodRun {
    /// Its settings.
    pub config: SynfloodConfig,
    /// The namespace's relevant sysctls during the run.
    pub sysctls: BTreeMap<String, u64>,
    /// When the first spoofed SYN left.
    pub flood_at_s: f64,
    /// When the flood ended.
    pub flood_end_s: f64,
    /// What the generator sent.
    pub flood: FloodReport,
    /// The queues over time.
    pub samples: Vec<Sample>,
    /// Every legitimate client.
    pub clients: Vec<ClientRecord>,
    /// Each counter's increase over the whole run.
    pub counters: Counters,
}

/// Sysctls every run records, whatever it sets.
const RECORDED: [&str; 6] = [
    "net.core.somaxconn",
    "net.ipv4.tcp_abort_on_overflow",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.tcp_max_syn_backlog",
    "net.ipv4.tcp_synack_retries",
    "net.ipv4.tcp_syn_linear_timeouts",
];

/// Freezes a server, bursts clients at it, lets it go after `hold`.
pub fn backlog(
    net: &PrivateNet,
    server_bin: PathBuf,
    cfg: &BacklogConfig,
) -> Result<BacklogRun, String> {
    net.set_sysctl(
        "net.ipv4.tcp_abort_on_overflow",
        u64::from(cfg.abort_on_overflow),
    )?;
    // The backlog asked for must be the one the kernel uses: somaxconn caps it silently.
    net.set_sysctl("net.core.somaxconn", u64::from(cfg.backlog.max(4096)))?;
    let sysctls = recorded_sysctls(net);
    let server = start_server(server_bin, cfg.backlog)?;
    let epoch = Instant::now();
    let sampler = Sampler::start(server.addr, epoch, Duration::from_secs_f64(cfg.sample_s))?;
    thread::sleep(LEAD_IN);
    let pid = Pid::from_raw(server.pid as i32).ok_or("bad server pid")?;
    kill_process(pid, Signal::STOP).map_err(|e| format!("SIGSTOP: {e}"))?;
    thread::sleep(LEAD_IN / 2);
    let burst_at = epoch.elapsed();
    let hold = Duration::from_secs_f64(cfg.hold_s);
    // SIGCONT comes from a thread of its own, on time, while this one runs the clients.
    let resumer = thread::spawn(move || {
        thread::sleep(hold);
        let at = epoch.elapsed();
        kill_process(pid, Signal::CONT).map(|()| at)
    });
    let plan = Plan {
        addr: server.addr,
        starts: vec![burst_at; cfg.burst],
        deadline: Duration::from_secs_f64(cfg.deadline_s),
    };
    let clients = clients::run(&plan, epoch);
    let resumed = resumer.join().map_err(|_| "the SIGCONT thread panicked")?;
    // Whatever happened, the server must run again before it can be stopped.
    let _ = kill_process(pid, Signal::CONT);
    let clients = clients.map_err(|e| format!("clients: {e}"))?;
    let resumed_at = resumed.map_err(|e| format!("SIGCONT: {e}"))?;
    thread::sleep(LEAD_IN);
    let (samples, counters) = sampler.finish()?;
    server.stop(SERVER_TIMEOUT)?;
    Ok(BacklogRun {
        config: cfg.clone(),
        sysctls,
        burst_at_s: burst_at.as_secs_f64(),
        resumed_at_s: resumed_at.as_secs_f64(),
        samples,
        clients,
        counters,
    })
}

/// Floods a server with spoofed SYNs while legitimate clients try to connect.
pub fn synflood(
    net: &PrivateNet,
    server_bin: PathBuf,
    cfg: &SynfloodConfig,
) -> Result<SynfloodRun, String> {
    net.set_sysctl("net.ipv4.tcp_syncookies", u64::from(cfg.syncookies))?;
    net.set_sysctl("net.core.somaxconn", u64::from(cfg.backlog.max(4096)))?;
    net.nft(&synflood::drop_syn_acks_ruleset())?;
    let sysctls = recorded_sysctls(net);
    let server = start_server(server_bin, cfg.backlog)?;
    let SocketAddr::V4(target) = server.addr else {
        return Err(format!("the server listens on {}, not IPv4", server.addr));
    };
    let flood_cfg = FloodConfig {
        target,
        rate: cfg.rate,
        max_packets: cfg.packets,
        max_duration: Duration::from_secs_f64(cfg.flood_s),
    };
    let mut flood = SynFlood::new(net, flood_cfg)?;
    let epoch = Instant::now();
    let sampler = Sampler::start(server.addr, epoch, Duration::from_secs_f64(cfg.sample_s))?;
    thread::sleep(LEAD_IN);
    let flood_at = epoch.elapsed();
    let stop = AtomicBool::new(false);
    let flooding = thread::scope(|scope| {
        let flooder = scope.spawn(|| {
            let report = flood.run(net, &stop);
            (report, epoch.elapsed())
        });
        let clients = legit_clients(target, cfg, flood_at, epoch);
        // The flood runs its course (it is bounded), unless the clients could not run.
        if clients.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        let (report, ended) = flooder.join().map_err(|_| "the flood thread panicked")?;
        Ok::<_, String>((clients, report?, ended))
    });
    let (clients, report, ended) = flooding?;
    thread::sleep(LEAD_IN);
    let (samples, counters) = sampler.finish()?;
    server.stop(SERVER_TIMEOUT)?;
    Ok(SynfloodRun {
        config: cfg.clone(),
        sysctls,
        flood_at_s: flood_at.as_secs_f64(),
        flood_end_s: ended.as_secs_f64(),
        flood: report,
        samples,
        clients: clients?,
        counters,
    })
}

/// The legitimate clients: evenly spread over the flood, the first a little after it starts
/// (by then the SYN queue is full).
fn legit_clients(
    target: SocketAddrV4,
    cfg: &SynfloodConfig,
    flood_at: Duration,
    epoch: Instant,
) -> Result<Vec<ClientRecord>, String> {
    let first = flood_at + Duration::from_millis(100);
    let span = Duration::from_secs_f64(cfg.flood_s).saturating_sub(Duration::from_millis(100));
    let step = span / cfg.clients.max(1) as u32;
    let plan = Plan {
        addr: SocketAddr::V4(target),
        starts: (0..cfg.clients).map(|i| first + step * i as u32).collect(),
        deadline: Duration::from_secs_f64(cfg.deadline_s),
    };
    clients::run(&plan, epoch).map_err(|e| format!("clients: {e}"))
}

fn start_server(program: PathBuf, backlog: u32) -> Result<RunningServer, String> {
    let spec = ServerSpec {
        name: "echo-server".into(),
        program,
        args: ["--model", "event-loop", "--protocol", "lines", "--backlog"]
            .iter()
            .map(|s| s.to_string())
            .chain([backlog.to_string()])
            .collect(),
        cpus: None,
    };
    RunningServer::start_tied(&spec, &[], None, SERVER_TIMEOUT)
}

fn recorded_sysctls(net: &PrivateNet) -> BTreeMap<String, u64> {
    RECORDED
        .iter()
        .filter_map(|key| Some((key.to_string(), net.sysctl(key).ok()?)))
        .collect()
}

/// A thread that samples one listener's queues and the counters until told to stop.
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Result<Vec<Sample>, String>>,
    baseline: Counters,
}

impl Sampler {
    fn start(addr: SocketAddr, epoch: Instant, every: Duration) -> Result<Sampler, String> {
        let baseline = netstat::read_counters().map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, base) = (Arc::clone(&stop), baseline.clone());
        let handle = thread::spawn(move || {
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                samples.push(sample(addr.port(), epoch, &base)?);
                thread::sleep(every);
            }
            Ok(samples)
        });
        Ok(Sampler {
            stop,
            handle,
            baseline,
        })
    }

    /// Stops sampling; returns the samples and the counters' increase since the start.
    fn finish(self) -> Result<(Vec<Sample>, Counters), String> {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.handle.join().map_err(|_| "the sampler panicked")??;
        let now = netstat::read_counters().map_err(|e| e.to_string())?;
        Ok((samples, netstat::delta(&self.baseline, &now)))
    }
}

fn sample(port: u16, epoch: Instant, baseline: &Counters) -> Result<Sample, String> {
    let t_s = epoch.elapsed().as_secs_f64();
    let queues = netstat::listener_queues(port).map_err(|e| e.to_string())?;
    let counters = netstat::read_counters().map_err(|e| e.to_string())?;
    Ok(Sample {
        t_s,
        queues: queues.unwrap_or_default(),
        counters: netstat::delta(baseline, &counters),
    })
}
