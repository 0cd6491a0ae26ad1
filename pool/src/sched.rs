//! `RunState`: one atomic per connection that says who may run it, so a connection is served
//! by one worker at a time and no readiness event is ever lost, without `EPOLLONESHOT` and its
//! `epoll_ctl(EPOLL_CTL_MOD)` re-arm after every message.
//!
//! # The problem
//!
//! A reactor thread turns epoll events into jobs; pinned workers run them. With a socket
//! registered edge-triggered (`EPOLLET`, epoll(7)) and never re-armed, an event can arrive
//! while a worker is still serving the same connection. Pushing the key again would let a
//! second worker serve the connection concurrently; dropping the event would lose the bytes
//! that arrived after the first worker's last `read(2)` returned `EAGAIN`. `EPOLLONESHOT` avoids
//! both by disabling the socket until the worker re-arms it, at the price of one `epoll_ctl`
//! per message. `RunState` does the same bookkeeping in user space with one atomic
//! read-modify-write per event.
//!
//! # The states
//!
//! ```text
//!   who        call          from                 to          then
//!   reactor    notify()      Idle                 Queued      returns true: push the key
//!                            Queued               Queued      false: already queued
//!                            Running              Notified    false: the owner serves again
//!                            Closed               Closed      false: stale event, ignored
//!   worker     start()       Queued               Running     after popping the key
//!   owner      finish()      Running              Idle        Finish::Idle: no longer ours
//!                            Notified             Running     Finish::Again: serve again
//!   owner      requeue()     Running, Notified    Queued      push the key
//!   reactor    try_claim()   Idle                 Running     (else false): sweep, drain
//!   owner      close()       Running, Notified    Closed      drop the conn, free the key
//!   reactor    open()        Closed               Idle        a new connection in the slot
//! ```
//!
//! - **Idle**: nobody holds the connection and it is in no queue. Only `notify` (an event) or
//!   `try_claim` (the reactor sweeping idle timeouts) leaves this state.
//! - **Queued**: its key is in the pool's ring or in the reactor's backlog, exactly once.
//!   Further events change nothing: the worker that will run it has not read the socket yet,
//!   so it will see whatever the events announced.
//! - **Running**: one worker (or a claimer) owns the connection and may touch its state.
//! - **Notified**: running, and an event arrived during the run. The owner's `finish` sees
//!   it and serves again itself, without a trip through the ring.
//! - **Closed**: the slot holds no connection; events for it (stale ones from the same
//!   `epoll_wait` batch) are ignored until `open` hands the slot to a new connection.
//!
//! The rule that makes one-runner-at-a-time hold: **only `notify` returning `true` entitles
//! the caller to push the key**, and only a thread that moved the state to Running
//! (`start`, `try_claim`) touches the connection, until it leaves Running with `finish`,
//! `requeue` or `close`. The rule that makes no event lost: **the owner leaves Running only
//! with a compare-and-swap**, so an event that lands between its last `read(2)` and its
//! `finish` turns the swap into "serve again" instead of being overwritten.
//!
//! # Encoding and prior art
//!
//! Two bits, `SCHEDULED` and `RUNNING`, plus `CLOSED`: Queued is `SCHEDULED`, Notified is
//! `RUNNING | SCHEDULED`. `notify` is then a single `fetch_or(SCHEDULED)` whose previous value
//! says whether the caller must push. This is the shape of async-task's `state.rs` (smol's
//! executor: `SCHEDULED` and `RUNNING` bits, "it can be set while the task is running, in which
//! case it will be rescheduled as soon as polling finishes") and of tokio's task state
//! (`runtime/task/state.rs`, `RUNNING` and `NOTIFIED`); tokio's `ScheduledIo`
//! (`runtime/io/scheduled_io.rs`) packs readiness, a driver tick and a shutdown bit into one
//! atomic per I/O resource in the same spirit, and clears readiness only if no new event came
//! in between (the tick), which is our compare-and-swap in `finish`. The Linux kernel's
//! workqueue does it with `WORK_STRUCT_PENDING_BIT` (`kernel/workqueue.c`): `queue_work`
//! does a `test_and_set_bit` and queues the item only when the bit was clear, so queueing an
//! already-pending item is a no-op. The kernel clears the bit *before* running the function,
//! so an event during the run queues the item again (and a collision check keeps it off other
//! CPUs); we keep the owner and let it loop, which saves a trip through the ring.
//!
//! # Memory orderings: what each Release publishes
//!
//! The connection's state (buffers, counters, its socket's position in the byte stream) is
//! written by whoever runs it and must be visible to the next runner, which may be another
//! worker on another core. Every hand-off goes through this atomic or the ring:
//!
//! - `finish` → Idle is a **Release**: it publishes this run's writes. The next `notify`
//!   acquires them (**AcqRel**) before its caller pushes the key, the ring's Release/Acquire
//!   carries them to the worker that pops the key, and that worker's `start` (**Acquire**)
//!   would see them even if the key travelled by some other, unordered path.
//! - `notify`'s **Release** half publishes what the notifier knew (the event itself: the
//!   kernel had queued the bytes before `epoll_wait(2)` returned) to the runner, whose
//!   `start` or `finish` → Again (**Acquire**) reads the value `notify` wrote. Because
//!   `notify` always *writes* (even Queued → Queued), the runner's next read-modify-write is
//!   ordered after it; a plain load in `notify` would leave the reactor's "bytes arrived,
//!   look at the state" and the worker's "state changed, look at the bytes" as Dekker's
//!   store-buffer pattern, where both sides may miss each other.
//! - `try_claim` (**Acquire**) pairs with `finish`'s Release; `close` (**Release**) publishes
//!   the teardown to `open` (**Acquire**), so a reused slot starts from a finished past.
//!
//! # Closing and key reuse
//!
//! Only the owner closes (a worker that saw end-of-file, or the reactor after `try_claim`),
//! or anyone once no worker can run (after the pool has been joined). After `close` the
//! owner drops the connection (which removes the socket from the epoll set) and returns the
//! key to the free list; `open` makes the slot Idle for the next connection. An event for the
//! old connection already returned by `epoll_wait` and handled after the close finds the slot
//! Closed and is ignored; handled after the reuse, it is a spurious `notify` of the new
//! connection: one run that reads `EAGAIN` and finishes. That is harmless because a run always
//! reads until `EAGAIN`. A server that wants to filter such events can put a generation
//! number next to the key in the epoll token, as tokio does with its token's generation bits.
//!
//! A runner that panics leaves the slot Running for good: every later `notify` returns
//! `false` and the connection is never served again. The pool catches the panic and carries
//! on, so the job itself must close the slot on the way out (a drop guard that calls `close`
//! and frees the key), or the server must accept the leak of one wedged connection.
//!
//! # Teaching switches
//!
//! `--cfg rawloop_relaxed_finish` weakens `finish`'s Release to Relaxed: the next worker's
//! read of the connection is no longer ordered after this worker's writes, and loom reports a
//! causality violation on the model's `UnsafeCell`. `--cfg rawloop_lost_notify` replaces the
//! compare-and-swap in `finish` with a load and a plain store, so an event landing between
//! them is overwritten: loom finds the run where the last bytes are never read. See
//! `tests/loom.rs` for the commands and what loom prints.

use std::fmt;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

use crate::sync::AtomicU8;

/// A connection's scheduling state, one atomic. See the module documentation.
pub struct RunState {
    /// `SCHEDULED`, `RUNNING` and `CLOSED` bits; see [`State`] for the combinations.
    bits: AtomicU8,
}

/// A decoded snapshot of a [`RunState`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Not running, not queued.
    Idle,
    /// The key is queued (in the ring or a backlog) exactly once.
    Queued,
    /// One owner is running the connection.
    Running,
    /// Running, and an event arrived meanwhile: the owner will serve again.
    Notified,
    /// No connection in this slot; events are ignored.
    Closed,
}

/// What [`RunState::finish`] tells the owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "Finish::Again means an event arrived: serve the connection again"]
pub enum Finish {
    /// No event arrived since the run started: the connection is Idle and no longer ours.
    Idle,
    /// An event arrived during the run: we still own the connection (Running) and must serve
    /// it again, or hand it on with [`RunState::requeue`].
    Again,
}

/// Queued, or notified while running.
const SCHEDULED: u8 = 0b001;
/// An owner holds the connection.
const RUNNING: u8 = 0b010;
/// No connection: events are ignored. Dominates the other bits.
const CLOSED: u8 = 0b100;
const IDLE: u8 = 0;

#[cfg(not(rawloop_relaxed_finish))]
#[cfg_attr(rawloop_lost_notify, allow(dead_code))]
const PUBLISH_RUN: std::sync::atomic::Ordering = Release;
/// The deliberate bug: see "Teaching switches" in the module documentation.
#[cfg(rawloop_relaxed_finish)]
#[cfg_attr(rawloop_lost_notify, allow(dead_code))]
const PUBLISH_RUN: std::sync::atomic::Ordering = Relaxed;

impl RunState {
    /// A connection that is registered and waiting for its first event.
    pub fn idle() -> RunState {
        RunState {
            bits: AtomicU8::new(IDLE),
        }
    }

    /// An empty slot, waiting for [`open`](RunState::open).
    pub fn closed() -> RunState {
        RunState {
            bits: AtomicU8::new(CLOSED),
        }
    }

    /// Records an event (reactor side). Returns `true` when the connection was Idle and is
    /// now Queued: the caller must push its key, exactly once. `false` means there is nothing
    /// to push: it is already queued, the running owner will serve again (Notified), or the
    /// slot is closed.
    #[inline]
    pub fn notify(&self) -> bool {
        // AcqRel, see "Memory orderings": Acquire takes the last run's writes into the push
        // that follows; Release hands the event to whoever runs next. Always a write, so the
        // owner's next read-modify-write is ordered after this event.
        let previous = self.bits.fetch_or(SCHEDULED, AcqRel);
        previous == IDLE
    }

    /// Takes ownership after popping the key (worker side): Queued → Running.
    ///
    /// Call it only for a key you popped; a debug build asserts the slot was Queued.
    #[inline]
    pub fn start(&self) {
        // A swap, not a store: a concurrent `notify` may rewrite SCHEDULED (no change for
        // Queued), and we must read its write so the event it announced is ordered before
        // our run. Acquire: pairs with `notify`'s Release and, through it, the last
        // `finish`.
        let previous = self.bits.swap(RUNNING, Acquire);
        debug_assert_eq!(
            previous,
            SCHEDULED,
            "RunState::start on a slot that was not Queued: {:?}",
            decode(previous)
        );
    }

    /// Gives up ownership after serving until `EAGAIN` (worker side).
    ///
    /// Running → Idle returns [`Finish::Idle`]: the connection is no longer ours. Notified →
    /// Running returns [`Finish::Again`]: an event arrived during the run, so serve again.
    #[inline]
    pub fn finish(&self) -> Finish {
        #[cfg(not(rawloop_lost_notify))]
        {
            self.finish_cas()
        }
        #[cfg(rawloop_lost_notify)]
        {
            self.finish_load_then_store()
        }
    }

    /// Tries to take an Idle connection (Idle → Running) without an event: the reactor uses
    /// it to sweep idle timeouts or start a drain on connections nobody holds. On `true` the
    /// caller owns the connection exactly as a worker after [`start`](RunState::start) does,
    /// and must give it back with [`finish`](RunState::finish) (pushing the key after a
    /// [`requeue`](RunState::requeue) if that returns `Again`) or [`close`](RunState::close).
    #[inline]
    pub fn try_claim(&self) -> bool {
        // Acquire: pairs with the last `finish`, so we see the connection as it was left.
        self.bits
            .compare_exchange(IDLE, RUNNING, Acquire, Relaxed)
            .is_ok()
    }

    /// The owner hands the connection back to the queue (Running or Notified → Queued)
    /// without waiting for an event: to yield after a budget of messages with bytes still
    /// unread, or after a claim whose `finish` returned `Again`. The caller must then push the
    /// key, exactly as after a `notify` that returned `true`.
    #[inline]
    pub fn requeue(&self) {
        // Release: publishes this run's writes to the next runner, like `finish`. A swap so a
        // concurrent `notify` (which only sets SCHEDULED, already set by us) is never lost.
        let previous = self.bits.swap(SCHEDULED, Release);
        debug_assert!(
            previous & RUNNING != 0 && previous & CLOSED == 0,
            "RunState::requeue by a non-owner: {:?}",
            decode(previous)
        );
    }

    /// Marks the slot Closed and returns the state it was in. Events are ignored from now on.
    ///
    /// Call it as the owner (Running or Notified; a pending notification is discarded with the
    /// connection), or when no worker can run any more (the pool is joined), in which case a
    /// Queued or Idle slot may be closed too.
    #[inline]
    pub fn close(&self) -> State {
        // AcqRel: Release publishes the teardown to `open`; Acquire, for a closer that was
        // not the owner (after the pool joined), orders the last run before the teardown.
        decode(self.bits.swap(CLOSED, AcqRel))
    }

    /// Makes a Closed slot Idle for a new connection (Closed → Idle). A debug build asserts it
    /// was Closed. Events for the slot count again from here on.
    #[inline]
    pub fn open(&self) {
        // Acquire: pairs with `close`, so the old connection's teardown happens-before the
        // new one is installed. Release: publishes the installation to the first runner
        // (`notify` acquires it). A swap, because a stale `notify` may have set SCHEDULED on
        // the closed slot; that bit means nothing and is cleared here.
        let previous = self.bits.swap(IDLE, AcqRel);
        debug_assert!(
            previous & CLOSED != 0,
            "RunState::open on a slot that was not Closed: {:?}",
            decode(previous)
        );
    }

    /// The current state: a snapshot, stale as soon as it is read unless the caller owns
    /// the connection. For statistics, tests and assertions.
    pub fn state(&self) -> State {
        decode(self.bits.load(Acquire))
    }

    /// The correct `finish`: only a compare-and-swap may leave Running.
    #[cfg_attr(rawloop_lost_notify, allow(dead_code))]
    #[inline]
    fn finish_cas(&self) -> Finish {
        // Guess the common case (no event during the run) so it costs one atomic.
        let mut current = RUNNING;
        loop {
            let (next, outcome) = match current {
                RUNNING => (IDLE, Finish::Idle),
                NOTIFIED => (RUNNING, Finish::Again),
                other => panic!("RunState::finish by a non-owner: {:?}", decode(other)),
            };
            // Success: Release to publish the run (Idle), Acquire to take in the event
            // (Again); both fit AcqRel. Failure: Acquire, the value is the next guess.
            let success = if next == IDLE { PUBLISH_RUN } else { AcqRel };
            match self.bits.compare_exchange(current, next, success, Acquire) {
                Ok(_) => return outcome,
                Err(actual) => current = actual,
            }
        }
    }

    /// The deliberate bug: look, then write what we decided. A `notify` between the two is
    /// overwritten.
    ///
    /// The write is a `swap` whose result is ignored, which is a plain store as far as the
    /// algorithm goes. A `store` would do as well on hardware, but loom orders a plain store
    /// and another thread's read-modify-write only partially, and would first report an
    /// execution no processor can produce; with `swap` it reports the real lost event.
    #[cfg(rawloop_lost_notify)]
    fn finish_load_then_store(&self) -> Finish {
        let (next, outcome) = match self.bits.load(Acquire) {
            NOTIFIED => (RUNNING, Finish::Again),
            _ => (IDLE, Finish::Idle),
        };
        self.bits.swap(next, AcqRel);
        outcome
    }
}

const NOTIFIED: u8 = RUNNING | SCHEDULED;

/// The state the bits stand for; CLOSED dominates (a stale `notify` may add SCHEDULED).
fn decode(bits: u8) -> State {
    match bits {
        _ if bits & CLOSED != 0 => State::Closed,
        IDLE => State::Idle,
        SCHEDULED => State::Queued,
        RUNNING => State::Running,
        _ => State::Notified,
    }
}

impl Default for RunState {
    /// An empty slot ([`RunState::closed`]).
    fn default() -> RunState {
        RunState::closed()
    }
}

impl fmt::Debug for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RunState").field(&self.state()).finish()
    }
}
