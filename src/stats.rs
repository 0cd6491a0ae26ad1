//! Server statistics: shared counters, made visible.
//!
//! Every model bumps the same [`Stats`]. Most counters are [`ShardedCounter`]s, because bytes
//! and connections are counted by every thread on every read, and one shared cache line that
//! both cores write would cost more than the counting is worth (see `counter-race` for the
//! numbers). One figure is kept twice on purpose: the message count, once with a correct
//! [`AtomicCounter`] (`fetch_add`) and once with a [`RacyCounter`] (a separate load and store).
//! In a multi-threaded model the two drift apart; their difference is printed as
//! "lost updates", which is the race our design notes describe ("both read 0, increment to 1,
//! and store 1"), happening live.
//!
//! In the process models each process counts for itself, and a forked child's counters would
//! die with it; so children publish theirs to [`SharedCounts`], a table in memory that parent
//! and children share (`MAP_SHARED`), and the parent's line adds them up.

use std::cell::Cell;
use std::fmt::Write as _;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pool::counters::{AtomicCounter, Counter, RacyCounter, ShardedCounter};

/// Counters shared by every thread of one server process.
#[derive(Default)]
pub struct Stats {
    /// Connections accepted (and kept).
    pub accepted: ShardedCounter,
    /// Connections accepted and closed at once because `--max-conns` was reached.
    pub refused: ShardedCounter,
    /// Connections closed, for any reason.
    pub closed: ShardedCounter,
    /// Connections closed by the idle timeout.
    pub idle_closed: ShardedCounter,
    /// Connections closed because the peer reset them or an I/O error occurred.
    pub errors: ShardedCounter,
    /// Bytes read from clients.
    pub bytes_in: ShardedCounter,
    /// Bytes written to clients.
    pub bytes_out: ShardedCounter,
    /// Messages served (a read for `raw`, a line for `lines`), counted correctly.
    pub messages: AtomicCounter,
    /// The same messages, counted with a racy read-modify-write.
    pub messages_racy: RacyCounter,
    /// Times a waiting connection met the descriptor limit (EMFILE / ENFILE) and was shed
    /// (see `AcceptGate::on_fd_exhaustion`).
    pub fd_exhausted: ShardedCounter,
}

impl Stats {
    /// A new, shared, all-zero set of counters.
    pub fn new() -> Arc<Stats> {
        Arc::new(Stats::default())
    }

    /// Counts one served message in both counters, and in the calling thread's own count
    /// (see [`messages_on_this_thread`]).
    #[inline]
    pub fn message(&self) {
        self.messages.incr();
        self.messages_racy.incr();
        THREAD_MESSAGES.with(|n| n.set(n.get() + 1));
    }

    /// Messages served so far (the correct count).
    pub fn messages_total(&self) -> u64 {
        self.messages.get()
    }

    /// Connections currently open.
    pub fn open(&self) -> u64 {
        self.accepted.get().saturating_sub(self.closed.get())
    }

    /// Every counter's value now, as plain numbers.
    pub fn counts(&self) -> Counts {
        Counts {
            accepted: self.accepted.get(),
            refused: self.refused.get(),
            closed: self.closed.get(),
            idle_closed: self.idle_closed.get(),
            errors: self.errors.get(),
            bytes_in: self.bytes_in.get(),
            bytes_out: self.bytes_out.get(),
            messages: self.messages.get(),
            messages_racy: self.messages_racy.get(),
            fd_exhausted: self.fd_exhausted.get(),
        }
    }

    /// One `key=value` line: stable, greppable, easy to parse in tests and scripts.
    pub fn line(&self, extra: &[(&str, String)]) -> String {
        self.counts().line(extra)
    }
}

/// The counters of [`Stats`] at one moment, as plain numbers: what a process publishes to its
/// parent, and what a stats line prints.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// See [`Stats::accepted`].
    pub accepted: u64,
    /// See [`Stats::refused`].
    pub refused: u64,
    /// See [`Stats::closed`].
    pub closed: u64,
    /// See [`Stats::idle_closed`].
    pub idle_closed: u64,
    /// See [`Stats::errors`].
    pub errors: u64,
    /// See [`Stats::bytes_in`].
    pub bytes_in: u64,
    /// See [`Stats::bytes_out`].
    pub bytes_out: u64,
    /// See [`Stats::messages`].
    pub messages: u64,
    /// See [`Stats::messages_racy`].
    pub messages_racy: u64,
    /// See [`Stats::fd_exhausted`].
    pub fd_exhausted: u64,
}

/// How many numbers a [`Counts`] is.
const N_COUNTS: usize = 10;

impl Counts {
    /// The stats line of these counts, with `extra` fields appended.
    pub fn line(&self, extra: &[(&str, String)]) -> String {
        let mut line = format!(
            "stats accepted={} open={} closed={} refused={} idle_closed={} errors={} \
             bytes_in={} bytes_out={} messages={} messages_racy={} lost_updates={} fd_exhausted={}",
            self.accepted,
            self.accepted.saturating_sub(self.closed),
            self.closed,
            self.refused,
            self.idle_closed,
            self.errors,
            self.bytes_in,
            self.bytes_out,
            self.messages,
            self.messages_racy,
            self.messages.saturating_sub(self.messages_racy),
            self.fd_exhausted,
        );
        for (key, value) in extra {
            let _ = write!(line, " {key}={value}");
        }
        line
    }

    fn to_array(self) -> [u64; N_COUNTS] {
        [
            self.accepted,
            self.refused,
            self.closed,
            self.idle_closed,
            self.errors,
            self.bytes_in,
            self.bytes_out,
            self.messages,
            self.messages_racy,
            self.fd_exhausted,
        ]
    }

    fn from_array(a: [u64; N_COUNTS]) -> Counts {
        let [accepted, refused, closed, idle_closed, errors, bytes_in, bytes_out, messages, messages_racy, fd_exhausted] =
            a;
        Counts {
            accepted,
            refused,
            closed,
            idle_closed,
            errors,
            bytes_in,
            bytes_out,
            messages,
            messages_racy,
            fd_exhausted,
        }
    }
}

impl std::ops::Add for Counts {
    type Output = Counts;

    fn add(self, other: Counts) -> Counts {
        let (a, b) = (self.to_array(), other.to_array());
        Counts::from_array(std::array::from_fn(|i| a[i] + b[i]))
    }
}

/// [`Counts`] that a process's forked children share with it (`process-per-conn`, `prefork`):
/// a table of slots in a `MAP_SHARED` mapping ([`reactor::SharedCounters`]), one per child or
/// one for all, so the parent's stats line counts what its children served.
pub struct SharedCounts {
    table: reactor::SharedCounters,
}

impl SharedCounts {
    /// `slots` all-zero slots, shared with every child forked from now on.
    pub fn new(slots: usize) -> io::Result<SharedCounts> {
        Ok(SharedCounts {
            table: reactor::SharedCounters::new(slots * N_COUNTS)?,
        })
    }

    /// Adds `counts` to `slot` (a child that is done adds its share).
    pub fn add(&self, slot: usize, counts: Counts) {
        for (cell, n) in self.slot(slot).iter().zip(counts.to_array()) {
            // Relaxed: statistics; the parent reads them for display only.
            cell.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Replaces `slot` with `counts` (a live child publishes its running totals).
    pub fn store(&self, slot: usize, counts: Counts) {
        for (cell, n) in self.slot(slot).iter().zip(counts.to_array()) {
            cell.store(n, Ordering::Relaxed);
        }
    }

    /// The counts in `slot`.
    pub fn get(&self, slot: usize) -> Counts {
        let cells = self.slot(slot);
        Counts::from_array(std::array::from_fn(|i| cells[i].load(Ordering::Relaxed)))
    }

    /// Every slot summed.
    pub fn sum(&self) -> Counts {
        let slots = self.table.as_slice().len() / N_COUNTS;
        (0..slots)
            .map(|i| self.get(i))
            .fold(Counts::default(), |a, b| a + b)
    }

    fn slot(&self, slot: usize) -> &[AtomicU64] {
        &self.table.as_slice()[slot * N_COUNTS..(slot + 1) * N_COUNTS]
    }
}

thread_local! {
    /// Messages served by this thread: nobody else writes it, so it needs no atomic and cannot
    /// race. A worker loop publishes it to its [`crate::runtime::tally::Tally`] slot on every
    /// tick, which is how the stats line shows the load of each worker.
    static THREAD_MESSAGES: Cell<u64> = const { Cell::new(0) };
}

/// Messages served by the calling thread since it started.
pub fn messages_on_this_thread() -> u64 {
    THREAD_MESSAGES.with(Cell::get)
}
