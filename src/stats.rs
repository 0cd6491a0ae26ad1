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
//! In the process models each process counts for itself: a forked child's counters die with it,
//! so `process-per-conn` reports connection counts from the parent only.

use std::cell::Cell;
use std::fmt::Write as _;
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
    /// Times `accept4` failed for lack of descriptors (EMFILE / ENFILE).
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

    /// One `key=value` line: stable, greppable, easy to parse in tests and scripts.
    pub fn line(&self, extra: &[(&str, String)]) -> String {
        let messages = self.messages.get();
        let racy = self.messages_racy.get();
        let mut line = format!(
            "stats accepted={} open={} closed={} refused={} idle_closed={} errors={} \
             bytes_in={} bytes_out={} messages={} messages_racy={} lost_updates={} fd_exhausted={}",
            self.accepted.get(),
            self.open(),
            self.closed.get(),
            self.refused.get(),
            self.idle_closed.get(),
            self.errors.get(),
            self.bytes_in.get(),
            self.bytes_out.get(),
            messages,
            racy,
            messages.saturating_sub(racy),
            self.fd_exhausted.get(),
        );
        for (key, value) in extra {
            let _ = write!(line, " {key}={value}");
        }
        line
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
