//! Who gets the connection: the lab's `fairness` scenario, after Cloudflare's experiment on
//! why one nginx worker takes most of the load ("Why does one NGINX worker take all the
//! load?", 2017).
//!
//! N workers, and a closed loop of short connections: each client thread connects, asks for
//! `WORK <micros>` (a few milliseconds of server CPU), reads the echo, closes, and starts again.
//! At the end the server's own stats lines say how many connections and jobs each worker took:
//! `worker_conns=` and `worker_msgs=` (`listener-pool`, `reuseport`, `shared-accept`),
//! `worker_jobs=` (`reactor-pool`, whose workers take ready connections from a shared ring, so
//! connections are not theirs), and for `prefork` each child's own final line (`child=i`,
//! `accepted=`, `messages=`). The clients record each connection's latency (connect to echo).
//!
//! How evenly the work spread is summed up by Jain's fairness index over the per-worker
//! counts x₁..xₙ: (Σx)² / (n·Σx²). It is 1 when every worker took the same share and 1/n when
//! one worker took everything, whatever the totals (Jain, Chiu and Hawe, "A Quantitative
//! Measure of Fairness and Discrimination for Resource Allocation in Shared Computer Systems",
//! DEC-TR-301, 1984).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The models the scenario compares, by lab name (see [`crate::models::TABLE`]).
pub const MODELS: [&str; 6] = [
    "listener-pool",
    "reuseport",
    "reuseport-steer-cpu",
    "reactor-pool",
    "prefork",
    "shared-accept",
];

/// The load of one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Load {
    /// Server workers (`--workers`).
    pub workers: usize,
    /// Client threads, each a closed loop of one-request connections.
    pub clients: usize,
    /// CPU each request asks for (`WORK <micros>`).
    pub work_us: u64,
    /// How long each client waits between two connections (its think time), so the server
    /// is busy but not saturated and which worker takes a connection matters.
    #[serde(default)]
    pub pause_us: u64,
    /// How long the clients keep going.
    pub duration_s: f64,
}

/// What one worker took.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerShare {
    /// Connections it accepted or was handed (`None` where connections are not a worker's).
    pub conns: Option<u64>,
    /// Requests (messages, or ring jobs) it served.
    pub jobs: u64,
}

/// Latency of the connections, connect to echo, in milliseconds.
#[derive(Copy, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    /// Connections measured.
    pub count: u64,
    /// Fastest.
    pub min_ms: f64,
    /// Mean.
    pub avg_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Standard deviation.
    pub stdev_ms: f64,
}

/// One model's run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FairnessRun {
    /// Per worker, in worker order.
    pub workers: Vec<WorkerShare>,
    /// The connections' latency.
    pub latency: LatencyStats,
    /// Jain's index of the connections per worker, where workers own connections.
    pub jain_conns: Option<f64>,
    /// Jain's index of the jobs per worker.
    pub jain_jobs: Option<f64>,
    /// Connections that failed (refused, reset, wrong echo, timed out).
    pub errors: u64,
    /// The first few error messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_samples: Vec<String>,
}

/// Jain's fairness index of `shares`: 1 for equal shares, 1/n when one takes all; `None` for
/// no shares or all zero.
pub fn jain(shares: &[f64]) -> Option<f64> {
    let n = shares.len() as f64;
    let sum: f64 = shares.iter().sum();
    let squares: f64 = shares.iter().map(|x| x * x).sum();
    (n > 0.0 && squares > 0.0).then(|| sum * sum / (n * squares))
}

/// Per-worker shares from a server's stdout lines (after `listening on`): the final stats
/// line's `worker_conns=`/`worker_msgs=`/`worker_jobs=`, or for `prefork` each child's final
/// line. Empty when the server printed none of them.
pub fn shares_from_stats(lines: &[String]) -> Vec<WorkerShare> {
    let finals: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("stats") && l.split_whitespace().any(|w| w == "final=1"))
        .collect();
    let mut children: Vec<(u64, WorkerShare)> = finals
        .iter()
        .filter_map(|l| {
            let child = field(l, "child")?.parse().ok()?;
            let share = WorkerShare {
                conns: field(l, "accepted")?.parse().ok(),
                jobs: field(l, "messages")?.parse().ok()?,
            };
            Some((child, share))
        })
        .collect();
    if !children.is_empty() {
        children.sort_by_key(|(i, _)| *i);
        return children.into_iter().map(|(_, s)| s).collect();
    }
    let Some(last) = finals.last() else {
        return Vec::new();
    };
    let list = |key| -> Option<Vec<u64>> {
        field(last, key)?
            .split(',')
            .map(|v| v.parse().ok())
            .collect()
    };
    let jobs = list("worker_msgs")
        .or_else(|| list("worker_jobs"))
        .unwrap_or_default();
    let conns = list("worker_conns");
    jobs.iter()
        .enumerate()
        .map(|(i, &jobs)| WorkerShare {
            conns: conns.as_ref().and_then(|c| c.get(i).copied()),
            jobs,
        })
        .collect()
}

/// Runs the clients of `load` against `addr` and returns the latency summary, the errors and
/// their first messages.
pub fn drive(addr: SocketAddr, load: &Load) -> (LatencyStats, u64, Vec<String>) {
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..load.clients)
        .map(|i| {
            let stop = Arc::clone(&stop);
            let (work_us, pause) = (load.work_us, Duration::from_micros(load.pause_us));
            thread::spawn(move || client_loop(addr, i, work_us, pause, &stop))
        })
        .collect();
    thread::sleep(Duration::from_secs_f64(load.duration_s));
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let (mut errors, mut samples) = (0, Vec::new());
    for handle in handles {
        let Ok((lat, errs)) = handle.join() else {
            errors += 1;
            continue;
        };
        latencies.extend(lat);
        errors += errs.len() as u64;
        samples.extend(errs.into_iter().take(3usize.saturating_sub(samples.len())));
    }
    (stats(&latencies), errors, samples)
}

/// Summarises the run: shares, Jain's indexes, and the clients' figures.
pub fn summarise(
    shares: Vec<WorkerShare>,
    driven: (LatencyStats, u64, Vec<String>),
) -> FairnessRun {
    let conns: Option<Vec<f64>> = shares.iter().map(|s| s.conns.map(|c| c as f64)).collect();
    let jobs: Vec<f64> = shares.iter().map(|s| s.jobs as f64).collect();
    let (latency, errors, error_samples) = driven;
    FairnessRun {
        jain_conns: conns.as_deref().and_then(jain),
        jain_jobs: jain(&jobs),
        workers: shares,
        latency,
        errors,
        error_samples,
    }
}

/// One client thread: connect, one `WORK` line, its echo, close; again until `stop`.
fn client_loop(
    addr: SocketAddr,
    i: usize,
    work_us: u64,
    pause: Duration,
    stop: &AtomicBool,
) -> (Vec<f64>, Vec<String>) {
    let (mut latencies, mut errors) = (Vec::new(), Vec::new());
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let line = format!("WORK {work_us} client-{i}-{n}\n");
        let started = Instant::now();
        match one_request(addr, &line) {
            Ok(()) => latencies.push(started.elapsed().as_secs_f64() * 1e3),
            Err(e) => errors.push(e),
        }
        n += 1;
        thread::sleep(pause);
    }
    (latencies, errors)
}

fn one_request(addr: SocketAddr, line: &str) -> Result<(), String> {
    let patience = Duration::from_secs(10);
    let stream =
        TcpStream::connect_timeout(&addr, patience).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(patience))
        .map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    (&stream)
        .write_all(line.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut echo = String::new();
    BufReader::new(&stream)
        .read_line(&mut echo)
        .map_err(|e| format!("read: {e}"))?;
    match echo == line {
        true => Ok(()),
        false => Err(format!("wrong echo {echo:?} for {line:?}")),
    }
}

fn stats(ms: &[f64]) -> LatencyStats {
    if ms.is_empty() {
        return LatencyStats::default();
    }
    let n = ms.len() as f64;
    let avg = ms.iter().sum::<f64>() / n;
    let var = ms.iter().map(|x| (x - avg).powi(2)).sum::<f64>() / n;
    LatencyStats {
        count: ms.len() as u64,
        min_ms: ms.iter().copied().fold(f64::INFINITY, f64::min),
        avg_ms: avg,
        max_ms: ms.iter().copied().fold(0.0, f64::max),
        stdev_ms: var.sqrt(),
    }
}

/// The value of `key=` among a stats line's words.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jains_index_is_one_when_equal_and_one_over_n_when_one_takes_all() {
        assert_eq!(jain(&[5.0, 5.0, 5.0, 5.0]), Some(1.0));
        assert_eq!(jain(&[0.0, 12.0, 0.0, 0.0]), Some(0.25));
        // (1+2+3)² / (3·(1+4+9)) = 36/42.
        assert!((jain(&[1.0, 2.0, 3.0]).unwrap() - 36.0 / 42.0).abs() < 1e-12);
        // Scale does not matter, only the shares.
        assert_eq!(jain(&[10.0, 20.0, 30.0]), jain(&[1.0, 2.0, 3.0]));
        assert_eq!(jain(&[]), None);
        assert_eq!(jain(&[0.0, 0.0]), None);
    }

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn shares_come_from_the_final_line_or_the_children() {
        let pool = lines(
            "stats accepted=6 model=shared-accept worker_conns=0,5,1 worker_msgs=0,4,1\n\
             stats accepted=6 model=shared-accept worker_conns=0,6,0 worker_msgs=0,6,0 final=1",
        );
        let shares = shares_from_stats(&pool);
        assert_eq!(shares.len(), 3);
        assert_eq!(
            shares[1],
            WorkerShare {
                conns: Some(6),
                jobs: 6
            }
        );
        let ring =
            lines("stats model=reactor-pool worker_jobs=5,3,7 worker_parked_ms=1,2,3 final=1");
        let shares = shares_from_stats(&ring);
        assert_eq!(shares.iter().map(|s| s.jobs).collect::<Vec<_>>(), [5, 3, 7]);
        assert!(shares.iter().all(|s| s.conns.is_none()));
        let prefork = lines(
            "stats accepted=1 messages=1 model=prefork child=0\n\
             stats accepted=4 messages=4 model=prefork final=1 child=1\n\
             stats accepted=1 messages=2 model=prefork final=1 child=0\n\
             stats accepted=5 messages=6 model=prefork children=0 final=1",
        );
        let shares = shares_from_stats(&prefork);
        assert_eq!(
            shares,
            [
                WorkerShare {
                    conns: Some(1),
                    jobs: 2
                },
                WorkerShare {
                    conns: Some(4),
                    jobs: 4
                }
            ]
        );
        let run = summarise(shares, (LatencyStats::default(), 0, Vec::new()));
        assert_eq!(run.jain_conns, jain(&[1.0, 4.0]));
        assert!(shares_from_stats(&lines("stats accepted=1 final=1")).is_empty());
    }

    #[test]
    fn latency_statistics() {
        let s = stats(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!((s.count, s.min_ms, s.avg_ms, s.max_ms), (4, 1.0, 2.5, 4.0));
        assert!((s.stdev_ms - 1.25f64.sqrt()).abs() < 1e-12);
    }
}
