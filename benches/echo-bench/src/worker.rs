//! A generator worker thread: one epoll loop over its share of the connections.
//!
//! The loop is the reactor pattern the server itself uses (epoll(7), level-triggered): wait for
//! readiness, then for each ready connection read and check what arrived, top its pipeline back
//! up to `depth` messages and write. Closed loop, a message is sent as soon as an echo frees a
//! slot; open loop (`--rate`), message `k` of a connection is due at a fixed instant of a
//! schedule, is sent when due and a slot is free, and its latency counts from the instant it was
//! due: if the server falls behind, the wait for the slot is part of the latency, as Gil Tene
//! explains in "How NOT to measure latency" (coordinated omission; wrk2 measures the same way).
//!
//! The connect-only test (`--connect-only N`) runs a different loop over the same connection
//! type: `conns` slots, each cycling connect / one echo / close until the N cycles are claimed.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reactor::{Epoll, Event, Events, Token};

use crate::conn::{Conn, Failure, InFlight, Role, State};
use crate::load::{RunConfig, Shared, Times, WorkerResult};
use crate::report::ErrorKind;
use crate::verify::MessageFormat;

/// Handshakes in progress at once per worker: enough to connect thousands of sockets in well
/// under a second on loopback, few enough not to overflow the server's accept queue (whose
/// overflow drops SYNs and costs a one-second retransmission, tcp(7)).
const MAX_PENDING_CONNECTS: usize = 128;

/// Size of the read buffer shared by a worker's connections.
const SCRATCH: usize = 64 * 1024;

/// How many error messages a worker keeps for the report.
const MAX_SAMPLES: usize = 5;

/// Runs worker `worker_idx` to completion and returns what it measured.
pub fn run(
    worker_idx: usize,
    cfg: &RunConfig,
    fmt: &MessageFormat,
    shared: &Shared,
) -> WorkerResult {
    let mut worker = match Worker::new(worker_idx, cfg, fmt, shared) {
        Ok(worker) => worker,
        Err(e) => {
            let mut result = WorkerResult::default();
            result.errors.add(ErrorKind::Connect, 1);
            result.samples.push(format!("epoll_create: {e}"));
            shared.ready.fetch_add(1, Ordering::Release);
            shared.finished.fetch_add(1, Ordering::Release);
            return result;
        }
    };
    if cfg.connect_only.is_none() {
        worker.setup(Instant::now() + cfg.setup_timeout);
    }
    shared.ready.fetch_add(1, Ordering::Release);
    let wait = cfg.setup_timeout + Duration::from_secs(10);
    if let Some(times) = shared
        .wait_start(wait)
        .filter(|_| !shared.abort.load(Ordering::Relaxed))
    {
        match cfg.connect_only {
            Some(_) => worker.churn(times),
            None => worker.load(times),
        }
    }
    worker.publish_progress();
    shared.finished.fetch_add(1, Ordering::Release);
    worker.result
}

struct Worker<'a> {
    worker_idx: usize,
    cfg: &'a RunConfig,
    fmt: &'a MessageFormat,
    shared: &'a Shared,
    epoll: Epoll,
    events: Events,
    /// Reused copy of `events` (see `take_batch`).
    batch: Vec<Event>,
    /// Indexed by token. Dead connections keep their slot (connect-only reuses slots).
    conns: Vec<Conn>,
    scratch: Vec<u8>,
    result: WorkerResult,
    /// Echo and error counts already added to the shared progress counters.
    published: (u64, u64),
    completed: u64,
}

impl<'a> Worker<'a> {
    fn new(
        worker_idx: usize,
        cfg: &'a RunConfig,
        fmt: &'a MessageFormat,
        shared: &'a Shared,
    ) -> std::io::Result<Worker<'a>> {
        Ok(Worker {
            worker_idx,
            cfg,
            fmt,
            shared,
            epoll: Epoll::new()?,
            events: Events::with_capacity(1024),
            batch: Vec::with_capacity(1024),
            conns: Vec::new(),
            scratch: vec![0; SCRATCH],
            result: WorkerResult::default(),
            published: (0, 0),
            completed: 0,
        })
    }

    /// Connects this worker's active and idle connections, each echoing one message.
    fn setup(&mut self, deadline: Instant) {
        let (threads, conns) = (self.cfg.threads, self.cfg.conns);
        let mut to_open: VecDeque<(usize, Role)> = (self.worker_idx..conns + self.cfg.idle)
            .step_by(threads)
            .map(|g| match g < conns {
                true => (
                    g,
                    Role::Active {
                        greedy: g < self.cfg.greedy,
                    },
                ),
                false => (g, Role::Idle),
            })
            .collect();
        let mut unsettled = 0;
        while !to_open.is_empty() || unsettled > 0 {
            while unsettled < MAX_PENDING_CONNECTS {
                let Some((global_idx, role)) = to_open.pop_front() else {
                    break;
                };
                if self.open(global_idx, role).is_some() {
                    unsettled += 1;
                }
            }
            if Instant::now() >= deadline || self.shared.abort.load(Ordering::Relaxed) {
                self.fail_unsettled(to_open.len());
                break;
            }
            self.wait(Duration::from_millis(10));
            let batch = self.take_batch();
            for &event in &batch {
                let idx = event.token().0 as usize;
                let was_settled = self.settled(idx);
                self.setup_event(idx, event);
                if !was_settled && self.settled(idx) {
                    unsettled -= 1;
                }
            }
            self.batch = batch;
        }
        for conn in &self.conns {
            match (conn.state, conn.role) {
                (State::Open, Role::Idle) => self.result.idle_established += 1,
                (State::Open, _) => self.result.established += 1,
                _ => {}
            }
        }
    }

    /// The load phases: warm-up, measure, drain.
    fn load(&mut self, times: Times) {
        let now = Instant::now();
        for idx in 0..self.conns.len() {
            self.top_up(idx, now, &times);
        }
        let mut next_check = now;
        let mut next_release = now;
        loop {
            let now = Instant::now();
            let sending = now < times.measure_end;
            if !sending
                && !self
                    .conns
                    .iter()
                    .any(|c| c.in_flight() > 0 && c.state == State::Open)
            {
                break;
            }
            if now >= times.grace_end || self.shared.abort.load(Ordering::Relaxed) {
                self.fail_outstanding("echoes still outstanding at the grace deadline");
                break;
            }
            if now >= next_check {
                self.fail_stalled(now);
                self.publish_progress();
                next_check = now + Duration::from_millis(100);
                // Every connection failed: nothing left to measure, and the errors are counted.
                if self.conns.iter().all(|c| c.state == State::Dead) {
                    break;
                }
            }
            // Open loop releases messages on a 1 ms tick (epoll_wait's resolution).
            let tick = if self.cfg.rate.is_some() { 1 } else { 50 };
            let mut timeout = Duration::from_millis(tick);
            if sending {
                timeout = timeout.min(times.measure_end - now);
            }
            self.wait(timeout);
            let now = Instant::now();
            let batch = self.take_batch();
            for &event in &batch {
                self.load_event(event.token().0 as usize, &times, now);
            }
            self.batch = batch;
            if self.cfg.rate.is_some() && now >= next_release && now < times.measure_end {
                for idx in 0..self.conns.len() {
                    self.top_up(idx, now, &times);
                }
                next_release = now + Duration::from_millis(1);
            }
        }
    }

    /// Connect-only: cycles of connect, one echo, close, `conns` at a time across workers.
    fn churn(&mut self, times: Times) {
        let threads = self.cfg.threads;
        let slots =
            self.cfg.conns / threads + usize::from(self.worker_idx < self.cfg.conns % threads);
        let mut open = 0;
        let mut cycle = 0;
        loop {
            // New connections are opened only between event batches, so a reused slot can
            // never receive an event that was meant for the connection it replaced.
            while open < slots.max(1) && Instant::now() < times.measure_end && self.claim() {
                let global_idx = self.worker_idx + threads * cycle;
                cycle += 1;
                let free = self.conns.iter().position(|c| c.state == State::Dead);
                if self.open_at(free, global_idx, Role::Churn).is_some() {
                    open += 1;
                }
            }
            if open == 0 {
                break;
            }
            if Instant::now() >= times.grace_end || self.shared.abort.load(Ordering::Relaxed) {
                self.fail_outstanding("connect-only cycle unfinished at the deadline");
                break;
            }
            self.wait(Duration::from_millis(10));
            let batch = self.take_batch();
            for &event in &batch {
                let idx = event.token().0 as usize;
                if self.conns[idx].state == State::Dead {
                    continue;
                }
                self.churn_event(idx, event);
                if self.conns[idx].state == State::Dead {
                    open -= 1;
                }
            }
            self.batch = batch;
            self.publish_progress();
        }
    }

    fn setup_event(&mut self, idx: usize, event: Event) {
        let token = Token(idx as u64);
        let (fmt, epoll) = (self.fmt, &self.epoll);
        let conn = &mut self.conns[idx];
        let outcome = match conn.state {
            State::Dead => return,
            // Every connection proves itself with one echo before the clock starts: the server
            // has then really accepted it (a completed handshake only means the kernel queued
            // it) and built whatever it keeps per connection (a thread, a child process).
            State::Connecting => conn.finish_connect(epoll, token).and_then(|()| {
                conn.enqueue(fmt, false, Instant::now());
                conn.flush(epoll, token)
            }),
            State::Open => {
                let mut echoed = false;
                let read = conn.receive(fmt, &mut self.scratch, |_, _| echoed = true);
                if echoed {
                    conn.ready = true;
                }
                read.and_then(|()| match event.is_writable() {
                    true => conn.flush(epoll, token),
                    false => Ok(()),
                })
            }
        };
        if let Err(failure) = outcome {
            self.fail(idx, failure);
        }
    }

    fn load_event(&mut self, idx: usize, times: &Times, now: Instant) {
        if self.conns[idx].state != State::Open {
            return;
        }
        let (fmt, result) = (self.fmt, &mut self.result);
        let completed = &mut self.completed;
        let conn = &mut self.conns[idx];
        let read = conn.receive(fmt, &mut self.scratch, |echo, at| {
            *completed += 1;
            record(result, echo, at, times);
        });
        if let Err(failure) = read {
            return self.fail(idx, failure);
        }
        self.top_up(idx, now, times);
    }

    fn churn_event(&mut self, idx: usize, event: Event) {
        let token = Token(idx as u64);
        let (fmt, epoll) = (self.fmt, &self.epoll);
        let conn = &mut self.conns[idx];
        let outcome = match conn.state {
            State::Connecting => conn.finish_connect(epoll, token).and_then(|()| {
                conn.enqueue(fmt, false, conn.started);
                conn.flush(epoll, token)
            }),
            _ => {
                let (result, completed) = (&mut self.result, &mut self.completed);
                let mut done = false;
                let read = conn.receive(fmt, &mut self.scratch, |echo, at| {
                    *completed += 1;
                    done = true;
                    result.last_echo = Some(at);
                    // Connect-only has no warm-up: every cycle is in the window.
                    record_latency(result, echo, at - echo.sent_at);
                });
                match (read, done) {
                    (Ok(()), true) => {
                        conn.close();
                        Ok(())
                    }
                    (Ok(()), false) if event.is_writable() => conn.flush(epoll, token),
                    (other, _) => other,
                }
            }
        };
        if let Err(failure) = outcome {
            self.fail(idx, failure);
        }
    }

    /// Closed loop: refills the pipeline to `depth`. Open loop: sends what the schedule made
    /// due, within `depth`. Then writes. No new message once the window is over.
    fn top_up(&mut self, idx: usize, now: Instant, times: &Times) {
        let (cfg, fmt) = (self.cfg, self.fmt);
        let conn = &mut self.conns[idx];
        let Role::Active { greedy } = conn.role else {
            return;
        };
        if conn.state != State::Open {
            return;
        }
        while conn.in_flight() < cfg.depth && now < times.measure_end {
            // Greedy clients hog: they stay closed loop even under `--rate`, which schedules
            // the cheap clients only (the greedy-neighbour experiment needs a steady, light
            // cheap load, so their latency shows the neighbour and not our own queueing).
            let sent_at = match cfg.rate {
                Some(_) if greedy => now,
                None => now,
                Some(rate) => {
                    let cheap = cfg.conns - cfg.greedy;
                    let due = scheduled(times.start, rate, cheap, conn.global_idx, conn.enqueued);
                    if due > now || due >= times.measure_end {
                        break;
                    }
                    due
                }
            };
            conn.enqueue(fmt, greedy, sent_at);
        }
        if let Err(failure) = conn.flush(&self.epoll, Token(idx as u64)) {
            self.fail(idx, failure);
        }
    }

    fn open(&mut self, global_idx: usize, role: Role) -> Option<usize> {
        self.open_at(None, global_idx, role)
    }

    /// Starts a connection in slot `at` (or a new slot); a failure is counted at once.
    fn open_at(&mut self, at: Option<usize>, global_idx: usize, role: Role) -> Option<usize> {
        let idx = at.unwrap_or(self.conns.len());
        match Conn::connect(
            self.cfg.addr,
            global_idx,
            role,
            &self.epoll,
            Token(idx as u64),
        ) {
            Ok(conn) if idx == self.conns.len() => self.conns.push(conn),
            Ok(conn) => self.conns[idx] = conn,
            Err(failure) => {
                self.count(failure);
                return None;
            }
        }
        Some(idx)
    }

    fn claim(&self) -> bool {
        let left = &self.shared.churn_left;
        left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    fn settled(&self, idx: usize) -> bool {
        let conn = &self.conns[idx];
        conn.state == State::Dead || conn.ready
    }

    fn fail(&mut self, idx: usize, failure: Failure) {
        self.conns[idx].close();
        self.count(failure);
    }

    fn count(&mut self, failure: Failure) {
        log::debug!(
            "worker {}: {:?}: {}",
            self.worker_idx,
            failure.kind,
            failure.detail
        );
        self.result.errors.add(failure.kind, 1);
        if self.result.samples.len() < MAX_SAMPLES {
            self.result
                .samples
                .push(format!("{}: {}", failure.kind.name(), failure.detail));
        }
    }

    fn fail_unsettled(&mut self, never_opened: usize) {
        for idx in 0..self.conns.len() {
            if !self.settled(idx) {
                let detail = format!(
                    "conn {}: set-up not done by the deadline",
                    self.conns[idx].global_idx
                );
                self.fail(
                    idx,
                    Failure {
                        kind: ErrorKind::Connect,
                        detail,
                    },
                );
            }
        }
        if never_opened > 0 {
            let detail = format!("{never_opened} connections never attempted before the deadline");
            self.result
                .errors
                .add(ErrorKind::Connect, never_opened as u64 - 1);
            self.count(Failure {
                kind: ErrorKind::Connect,
                detail,
            });
        }
    }

    fn fail_stalled(&mut self, now: Instant) {
        for idx in 0..self.conns.len() {
            let conn = &self.conns[idx];
            if conn.state == State::Open
                && conn.in_flight() > 0
                && now - conn.last_progress > self.cfg.stall_timeout
            {
                let detail = format!(
                    "conn {}: no echo byte for {:?} with {} messages in flight",
                    conn.global_idx,
                    now - conn.last_progress,
                    conn.in_flight()
                );
                self.fail(
                    idx,
                    Failure {
                        kind: ErrorKind::Stall,
                        detail,
                    },
                );
            }
        }
    }

    fn fail_outstanding(&mut self, why: &str) {
        for idx in 0..self.conns.len() {
            let conn = &self.conns[idx];
            let waiting = conn.in_flight() > 0 || conn.state == State::Connecting;
            if conn.state != State::Dead && waiting {
                let detail = format!("conn {}: {why}", conn.global_idx);
                self.fail(
                    idx,
                    Failure {
                        kind: ErrorKind::Stall,
                        detail,
                    },
                );
            }
        }
    }

    fn wait(&mut self, timeout: Duration) {
        if let Err(e) = self.epoll.wait(&mut self.events, Some(timeout)) {
            // epoll_wait fails only on programming errors (EBADF, EINVAL, EFAULT); say so and
            // let the deadlines end the run rather than spin.
            log::error!("worker {}: epoll_wait: {e}", self.worker_idx);
            self.events.clear();
            std::thread::sleep(timeout);
        }
    }

    /// The events of the last wait, copied out so handlers may borrow the worker mutably.
    fn take_batch(&mut self) -> Vec<Event> {
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear();
        batch.extend(self.events.iter());
        batch
    }

    fn publish_progress(&mut self) {
        let errors = self.result.errors.total();
        let (completed0, errors0) = self.published;
        self.shared
            .completed
            .fetch_add(self.completed - completed0, Ordering::Relaxed);
        self.shared
            .errors
            .fetch_add(errors - errors0, Ordering::Relaxed);
        self.published = (self.completed, errors);
    }
}

/// Counts an echo completed at `at` if it falls in the measured window.
fn record(result: &mut WorkerResult, echo: &InFlight, at: Instant, times: &Times) {
    if at >= times.warm_end && at < times.measure_end {
        record_latency(result, echo, at.saturating_duration_since(echo.sent_at));
    }
}

fn record_latency(result: &mut WorkerResult, echo: &InFlight, latency: Duration) {
    result.messages += 1;
    result.bytes += echo.len as u64;
    result.all.record(latency);
    if echo.msg.work {
        result.greedy.record(latency);
    } else {
        result.cheap.record(latency);
    }
}

/// Open loop: the instant message `k` of connection `global_idx` is due. Each of the `conns`
/// scheduled (cheap) connections sends `rate / conns` messages per second, the connections'
/// schedules evenly staggered.
fn scheduled(start: Instant, rate: f64, conns: usize, global_idx: usize, k: u64) -> Instant {
    let per_conn = rate / conns as f64;
    let phase = global_idx as f64 / conns as f64;
    start + Duration::from_secs_f64((phase + k as f64) / per_conn)
}
