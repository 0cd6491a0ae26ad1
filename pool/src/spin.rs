//! Spin policies: how long an idle worker polls the empty ring before it parks, chosen by the
//! caller at build time so each choice can be measured against the others.
//!
//! Parking costs a `futex(2)` wait on the worker's side and a `futex(2)` wake (a system call
//! of a few microseconds) on the side that has work for it, plus the scheduler's wake-up
//! latency before the job runs. Spinning costs the CPU time it burns and nothing else. So
//! spinning pays when the next job comes sooner than a park/unpark pair would take, and is
//! pure waste otherwise. A fixed spin is right for one traffic pattern only: measured in
//! rawloop's reactor-pool, 256 polls cost more server CPU per message than the futex wakes they
//! saved in a ping-pong, where the next job is a client round trip away.
//!
//! [`SpinPolicy::Adaptive`] spins only while jobs have been arriving soon after the worker ran
//! dry. Each worker keeps a [`Spinner`] with a smoothed estimate of its recent *idle gaps*,
//! the time from finding the ring empty to getting the next job (by spinning, or by parking
//! and being woken). While that estimate is within the cap, the worker spins for about twice
//! the estimate (never more than the cap), which catches a job arriving at the usual pace;
//! once gaps grow beyond the cap it parks at the first empty poll. The estimate follows the
//! traffic both ways because a park's length is itself a gap: a burst of short parks brings
//! spinning back after a few jobs. Each sample is clamped to twice the cap, so one long sleep
//! (a quiet second) weighs no more than a slightly slow job.
//!
//! This is the idea of glibc's adaptive mutex (`PTHREAD_MUTEX_ADAPTIVE_NP`,
//! `nptl/pthread_mutex_lock.c`): spin up to twice the smoothed length of past successful
//! spins, updated by an eighth of the difference each time, bounded by `max_adaptive_count`.
//! Ours measures time rather than iterations (the cost of a `pause` varies tenfold across
//! x86_64 generations), averages by a quarter so it reacts within a few jobs, and also learns
//! from parks, which the mutex cannot observe.
//!
//! Under loom the adaptive policy spins once: loom explores schedules, not time, and a
//! clock-driven loop would not be deterministic.

use std::time::Duration;

use crate::blocking::DEFAULT_SPIN_LIMIT;

/// The adaptive policy's default cap: 10 µs, about the CPU cost of a park/unpark pair
/// (`futex` wait and wake, two context switches) on current x86_64 servers.
pub const DEFAULT_ADAPTIVE_CAP: Duration = Duration::from_micros(10);

/// How an idle worker waits for the next job before parking. See the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpinPolicy {
    /// Park at the first empty poll.
    None,
    /// Poll the empty ring this many more times (a load and a `pause` each) before parking:
    /// what [`PoolBuilder::spin_limit`](crate::PoolBuilder::spin_limit) sets.
    Fixed(u32),
    /// Spin for about twice the recent idle gap, at most `cap`, and not at all once gaps
    /// exceed `cap`.
    Adaptive {
        /// The longest a worker ever spins before parking.
        cap: Duration,
    },
}

/// How long one idle period may spin, as decided by a [`Spinner`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpinBudget {
    /// Poll the ring this many more times.
    Polls(u32),
    /// Poll the ring until this much time has passed since it was found empty.
    For(Duration),
}

/// One worker's spin state: the policy and, for [`SpinPolicy::Adaptive`], the smoothed idle
/// gap. Not shared: each consumer owns one and passes it to
/// [`BlockingRing::pop_with_spinner`](crate::BlockingRing::pop_with_spinner).
#[derive(Clone, Debug)]
pub struct Spinner {
    policy: SpinPolicy,
    /// Smoothed idle gap in nanoseconds, each sample clamped to twice the cap.
    gap_estimate_ns: u64,
}

/// What happened while a consumer waited for one item, reported once per `pop` that found the
/// ring empty at first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Idle {
    /// Time spent polling the empty ring (burning CPU), over every spin of this wait.
    pub spun: Duration,
    /// The item came while spinning, before any park: a park/unpark pair saved.
    pub found_by_spin: bool,
    /// Times the consumer parked (announced itself asleep; most of these sleep in `futex`).
    pub parks: u32,
    /// Time spent parked.
    pub parked: Duration,
    /// Times the consumer was woken by a producer's (or a passed-on) wake: each one a
    /// `futex(2)` wake paid by another thread.
    pub unparks: u32,
}

impl SpinPolicy {
    /// [`SpinPolicy::Adaptive`] with the default cap, [`DEFAULT_ADAPTIVE_CAP`].
    pub const fn adaptive() -> SpinPolicy {
        SpinPolicy::Adaptive {
            cap: DEFAULT_ADAPTIVE_CAP,
        }
    }
}

impl Default for SpinPolicy {
    /// `Fixed(DEFAULT_SPIN_LIMIT)`, the pool's historical behaviour.
    fn default() -> SpinPolicy {
        SpinPolicy::Fixed(DEFAULT_SPIN_LIMIT)
    }
}

impl Spinner {
    /// A fresh spinner. The adaptive estimate starts at half the cap, so a new worker spins
    /// up to the cap until it has seen real gaps.
    pub fn new(policy: SpinPolicy) -> Spinner {
        let gap_estimate_ns = match policy {
            SpinPolicy::Adaptive { cap } => nanos(cap) / 2,
            SpinPolicy::None | SpinPolicy::Fixed(_) => 0,
        };
        Spinner {
            policy,
            gap_estimate_ns,
        }
    }

    /// The policy this spinner follows.
    pub fn policy(&self) -> SpinPolicy {
        self.policy
    }

    /// The smoothed idle gap (adaptive policy; zero for the others).
    pub fn gap_estimate(&self) -> Duration {
        Duration::from_nanos(self.gap_estimate_ns)
    }

    /// How long the next idle period may spin.
    pub fn budget(&self) -> SpinBudget {
        match self.policy {
            SpinPolicy::None => SpinBudget::Polls(0),
            SpinPolicy::Fixed(polls) => SpinBudget::Polls(polls),
            #[cfg(loom)]
            SpinPolicy::Adaptive { .. } => SpinBudget::Polls(1),
            #[cfg(not(loom))]
            SpinPolicy::Adaptive { cap } => {
                let cap = nanos(cap);
                if self.gap_estimate_ns > cap {
                    // Jobs come slower than a park/unpark pair: park at once.
                    SpinBudget::Polls(0)
                } else {
                    // Twice the usual gap catches most jobs at the usual pace; a floor of a
                    // quarter of the cap keeps a very fast stream from spinning too short
                    // to catch a job that is merely a little late.
                    let spin = self.gap_estimate_ns.saturating_mul(2).clamp(cap / 4, cap);
                    SpinBudget::For(Duration::from_nanos(spin))
                }
            }
        }
    }

    /// Learns from one idle period that ended with a job after `gap` (adaptive policy only).
    pub fn record_gap(&mut self, gap: Duration) {
        if let SpinPolicy::Adaptive { cap } = self.policy {
            let sample = nanos(gap).min(nanos(cap).saturating_mul(2));
            // Exponentially weighted moving average with weight 1/4, in integers: the
            // estimate moves a quarter of the way to each new sample.
            let estimate = self.gap_estimate_ns;
            self.gap_estimate_ns = if sample >= estimate {
                estimate + (sample - estimate) / 4
            } else {
                estimate - (estimate - sample) / 4
            };
        }
    }
}

/// A duration in nanoseconds, saturating (a `u64` of nanoseconds lasts 584 years).
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
