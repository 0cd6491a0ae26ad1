//! `Ring<T>`: a bounded lock-free multi-producer multi-consumer queue, Dmitry Vyukov's
//! "Bounded MPMC queue" with one sequence number per slot.
//!
//! Source: <https://www.1024cores.net/home/lock-free-algorithms/queues/bounded-mpmc-queue>.
//! crossbeam-queue's `ArrayQueue` is the same algorithm with the lap packed into the index
//! ("stamp"); ours keeps Vyukov's original form, a power-of-two capacity and a plain sequence
//! number, because it is the shortest correct version to read.
//!
//! # How it works
//!
//! The buffer holds `capacity` slots; slot `i` starts with sequence number `seq = i`. Two
//! free-running counters, `tail` (next position to push) and `head` (next position to pop),
//! only ever grow; position `pos` lives in slot `pos & mask`. A slot's `seq` says whose turn
//! it is:
//!
//! - `seq == pos`: the slot is empty and waits for the producer of position `pos`.
//! - `seq == pos + 1`: the slot holds the item of position `pos`; its consumer may take it.
//! - after the pop, `seq = pos + capacity`: empty again, for the producer one lap later.
//!
//! A producer claims position `tail` with a compare-and-swap, writes its value, then
//! publishes it by storing `seq = pos + 1`. A consumer claims `head` the same way, reads the
//! value, then frees the slot with `seq = pos + capacity`. Producers never touch `head` and
//! consumers never touch `tail`, so the two kinds of threads only meet on the slots, one
//! slot at a time.
//!
//! # Progress: lock-free in the index, not wait-free
//!
//! A producer that is preempted (or faults on a page) between its compare-and-swap on `tail`
//! and its store of `seq` holds a claimed-but-unpublished slot. Other producers carry on with
//! later slots, but consumers that reach that slot see "not published yet" and report the
//! ring empty (`try_pop` returns `None`) even if later slots hold items, until the producer is
//! scheduled again. Dmitry Vyukov says as much on the page cited above: the queue is not
//! lock-free in the strict sense. For the reactor this means a worker can stall for one
//! scheduler time slice (milliseconds) behind a preempted submitter; on a 2-core machine with
//! more runnable threads than cores that is a real source of tail latency, and it is one
//! reason the pool pins one worker per core and keeps its producers few.
//!
//! # Memory orderings, in one paragraph
//!
//! The only data handed between threads is the slot's value, and every hand-off goes through
//! that slot's `seq`: a `Release` store of `seq` after the write (push) or the read (pop),
//! and an `Acquire` load of `seq` before touching the value. That pair makes the previous
//! owner's access to the value happen-before the next owner's. The counters `head` and
//! `tail` carry no data, only "which position is mine", so they are read and swapped with
//! `Relaxed`: the compare-and-swap is atomic whatever its ordering, and that atomicity is
//! all mutual exclusion between two producers (or two consumers) needs.
//!
//! # Teaching switch: `--cfg rawloop_weak_ordering`
//!
//! Building with `rawloop_weak_ordering` weakens the producer's publishing store of `seq`
//! from `Release` to `Relaxed`. Ordinary tests will most likely still pass on x86_64, whose
//! stores all behave as release stores in hardware, but the language no longer promises that
//! the consumer sees the value written (the compiler may even sink the write below the
//! store), and loom proves it. From the workspace root:
//!
//! ```text
//! RUSTFLAGS="--cfg loom --cfg rawloop_weak_ordering" \
//!     cargo test -p pool --release --target-dir target-loom --test loom
//! ```
//!
//! Every model in `tests/loom.rs` then fails within a second with loom's
//! `Causality violation: Concurrent read and write accesses`: the consumer's read of the
//! slot's `UnsafeCell` is not ordered after the producer's write. Drop the second `--cfg` and
//! the same models pass.

use std::fmt;
use std::mem::MaybeUninit;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::Arc;

use crate::cache_padded::CachePadded;
use crate::sync::{AtomicUsize, UnsafeCell};

/// The largest capacity `Ring::new` accepts: 2^62 on 64-bit targets.
///
/// Positions are compared by the signed distance `seq - pos`, which must stay far from
/// `isize::MAX` for wrap-around to be read correctly; a quarter of the address space leaves
/// a wide margin. No machine has the memory for such a ring anyway: this bound only makes
/// the arithmetic checked instead of silently wrong.
pub const MAX_CAPACITY: usize = 1 << (usize::BITS - 2);

/// A bounded lock-free MPMC queue (Vyukov). See the module documentation.
///
/// `Ring<T>` is `Send` and `Sync` when `T: Send`: items move between threads, but no two
/// threads ever access the same item at once, so `T` need not be `Sync`.
pub struct Ring<T> {
    /// Next position to pop. Written only by consumers (compare-and-swap).
    head: CachePadded<AtomicUsize>,
    /// Next position to push. Written only by producers (compare-and-swap), or by the single
    /// `Producer` handle (plain store) when the ring was made with `with_single_producer`.
    tail: CachePadded<AtomicUsize>,
    /// `capacity - 1`; the capacity is a power of two, so `pos & mask` is `pos % capacity`.
    mask: usize,
    /// True when a `Producer` handle owns the tail; `try_push` then refuses to run.
    single_producer: bool,
    /// The slots, allocated once in `new` and never resized.
    buffer: Box<[Slot<T>]>,
}

/// A push handle that owns the ring's tail: the optional single-producer fast path.
///
/// When exactly one thread pushes (the reactor handing connections to workers), claiming a
/// position needs no compare-and-swap: the producer reads its own tail and stores the next
/// one. `try_push` takes `&mut self`, and the handle is not `Clone`, so the type system
/// guarantees one pusher; the ring's own `try_push` panics on such a ring.
pub struct Producer<T> {
    ring: Arc<Ring<T>>,
    /// Our copy of `ring.tail`, which no other thread writes.
    tail: usize,
}

impl<T> Ring<T> {
    /// Creates a ring holding at least `capacity` items: the capacity is rounded up to a power
    /// of two, and to at least 2 (Vyukov's scheme cannot tell "full" from "empty" with one
    /// slot). This is the only allocation the ring ever makes.
    ///
    /// # Panics
    ///
    /// If `capacity` is 0, or rounds up beyond [`MAX_CAPACITY`].
    pub fn new(capacity: usize) -> Ring<T> {
        Ring::build(capacity, false)
    }

    /// Creates a ring whose only producer is the returned [`Producer`]; consumers share the
    /// `Arc<Ring<T>>`. Capacity rules and panics are those of [`Ring::new`].
    pub fn with_single_producer(capacity: usize) -> (Producer<T>, Arc<Ring<T>>) {
        let ring = Arc::new(Ring::build(capacity, true));
        let producer = Producer {
            ring: Arc::clone(&ring),
            tail: 0,
        };
        (producer, ring)
    }

    /// Pushes `value`, or returns it in `Err` when the ring is full. Never blocks.
    ///
    /// # Panics
    ///
    /// On a ring made with [`Ring::with_single_producer`]: its tail belongs to the
    /// [`Producer`], and a second, compare-and-swapping pusher would corrupt it.
    pub fn try_push(&self, value: T) -> Result<(), T> {
        assert!(
            !self.single_producer,
            "Ring::try_push on a single-producer ring: push through its Producer"
        );
        // Relaxed: `tail` is only a position counter; the slot's `seq` (acquired below)
        // orders our write after the previous consumer's read.
        let mut pos = self.tail.load(Relaxed);
        loop {
            let slot = self.slot(pos);
            // Acquire: pairs with the consumer's Release store of `seq = pos` (previous lap),
            // so its read of the old value happens-before our write of the new one.
            let seq = slot.seq.load(Acquire);
            let lag = seq.wrapping_sub(pos) as isize;
            if lag == 0 {
                // The slot is free for position `pos`: claim it. Relaxed on both outcomes:
                // the CAS itself makes exactly one producer win `pos`; no data rides on it.
                match self
                    .tail
                    .compare_exchange_weak(pos, pos.wrapping_add(1), Relaxed, Relaxed)
                {
                    Ok(_) => {
                        slot.publish(pos, value);
                        return Ok(());
                    }
                    Err(current) => pos = current,
                }
            } else if lag < 0 {
                // The slot still holds the item from one lap ago: the ring is full.
                return Err(value);
            } else {
                // Another producer already took `pos`; our view of `tail` is stale.
                pos = self.tail.load(Relaxed);
            }
        }
    }

    /// Pops the oldest published item, or `None` when the ring is empty (or when the next
    /// slot's producer has claimed it but not yet published: see the module documentation).
    pub fn try_pop(&self) -> Option<T> {
        let mut pos = self.head.load(Relaxed);
        loop {
            let slot = self.slot(pos);
            // Acquire: pairs with the producer's Release store of `seq = pos + 1`, so its
            // write of the value happens-before our read.
            let seq = slot.seq.load(Acquire);
            let lag = seq.wrapping_sub(pos.wrapping_add(1)) as isize;
            if lag == 0 {
                // Relaxed for the same reason as the producer's CAS on `tail`.
                match self
                    .head
                    .compare_exchange_weak(pos, pos.wrapping_add(1), Relaxed, Relaxed)
                {
                    Ok(_) => return Some(slot.consume(pos, self.capacity())),
                    Err(current) => pos = current,
                }
            } else if lag < 0 {
                // Not published yet for position `pos`: empty (or a producer is mid-push).
                return None;
            } else {
                // Another consumer already took `pos`.
                pos = self.head.load(Relaxed);
            }
        }
    }

    /// The number of slots, a power of two.
    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// How many items the ring holds: a racy snapshot.
    ///
    /// `head` is read before `tail`, and both only grow, so `tail - head` cannot underflow;
    /// but both may move while we read them, so the answer may be stale by the time it is
    /// returned, may count items whose producers have not yet published them, and is clamped
    /// to the capacity. Use it for statistics (the pool's high-water mark), never to decide
    /// whether a push or pop will succeed.
    pub fn len(&self) -> usize {
        let head = self.head.load(Relaxed);
        let tail = self.tail.load(Relaxed);
        tail.wrapping_sub(head).min(self.capacity())
    }

    /// Whether [`len`](Ring::len) is zero: the same racy snapshot.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn build(capacity: usize, single_producer: bool) -> Ring<T> {
        assert!(capacity > 0, "Ring capacity must be at least 1");
        let capacity = capacity
            .max(2)
            .checked_next_power_of_two()
            .filter(|&rounded| rounded <= MAX_CAPACITY)
            .unwrap_or_else(|| {
                panic!("Ring capacity {capacity} rounds up beyond the maximum {MAX_CAPACITY}")
            });
        let buffer = (0..capacity)
            .map(|pos| Slot {
                seq: AtomicUsize::new(pos),
                value: UnsafeCell::new(MaybeUninit::uninit()),
            })
            .collect();
        Ring {
            head: CachePadded::new(AtomicUsize::new(0)),
            tail: CachePadded::new(AtomicUsize::new(0)),
            mask: capacity - 1,
            single_producer,
            buffer,
        }
    }

    #[inline]
    fn slot(&self, pos: usize) -> &Slot<T> {
        let index = pos & self.mask;
        debug_assert!(index < self.buffer.len());
        &self.buffer[index]
    }
}

impl<T> Producer<T> {
    /// Pushes `value`, or returns it in `Err` when the ring is full. Never blocks.
    pub fn try_push(&mut self, value: T) -> Result<(), T> {
        let pos = self.tail;
        let slot = self.ring.slot(pos);
        // Acquire, as in `Ring::try_push`. No other producer exists, so `seq` is either
        // `pos` (free) or one lap behind (full), never ahead.
        if slot.seq.load(Acquire) != pos {
            return Err(value);
        }
        self.tail = pos.wrapping_add(1);
        // Relaxed: `tail` is read only by `len`, a statistic.
        self.ring.tail.store(self.tail, Relaxed);
        slot.publish(pos, value);
        Ok(())
    }

    /// The ring this producer pushes into.
    pub fn ring(&self) -> &Arc<Ring<T>> {
        &self.ring
    }
}

impl<T> Drop for Ring<T> {
    /// Drops the items still queued. `&mut self` proves no push or pop is in flight, so every
    /// claimed slot has been published and a plain drain finds them all.
    fn drop(&mut self) {
        while self.try_pop().is_some() {}
    }
}

impl<T> fmt::Debug for Ring<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}

impl<T> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("ring", &self.ring)
            .finish()
    }
}

// SAFETY: a `Ring<T>` owns the `T`s it holds and hands each to exactly one consumer, so
// sending the ring to another thread sends those `T`s: sound when `T: Send`.
unsafe impl<T: Send> Send for Ring<T> {}
// SAFETY: through `&Ring<T>` threads move `T`s in and out, but each slot's `seq` protocol
// gives one thread at a time exclusive access to a value (see `Slot`), so `T` is never shared:
// `T: Send` suffices, exactly as for `Mutex<T>`.
unsafe impl<T: Send> Sync for Ring<T> {}

/// One cell of the ring.
struct Slot<T> {
    /// Whose turn it is (see the module documentation): `pos` free for the producer of
    /// `pos`, `pos + 1` full for its consumer, `pos + capacity` free for the next lap.
    seq: AtomicUsize,
    /// Initialized exactly when `seq == pos + 1` for some claimed position `pos`.
    value: UnsafeCell<MaybeUninit<T>>,
}

#[cfg(not(rawloop_weak_ordering))]
const PUBLISH: std::sync::atomic::Ordering = Release;
/// The deliberate bug: see "Teaching switch" in the module documentation.
#[cfg(rawloop_weak_ordering)]
const PUBLISH: std::sync::atomic::Ordering = Relaxed;

impl<T> Slot<T> {
    /// Writes `value` and hands the slot to the consumer of `pos`. The caller must have
    /// claimed `pos` (won the CAS on `tail`, or be the only producer) while `seq == pos`.
    #[inline]
    fn publish(&self, pos: usize, value: T) {
        // SAFETY: the caller observed `seq == pos` (with Acquire, so the previous consumer's
        // read is finished) and then exclusively claimed `pos`; until we store `seq = pos + 1`
        // below, no other thread reads or writes this value.
        self.value.with_mut(|cell| unsafe { (*cell).write(value) });
        // Release: makes the write above visible to the consumer that acquires `seq = pos + 1`.
        self.seq.store(pos.wrapping_add(1), PUBLISH);
    }

    /// Takes the value of position `pos` and frees the slot for the producer one lap later.
    /// The caller must have claimed `pos` on `head` while `seq == pos + 1`.
    #[inline]
    fn consume(&self, pos: usize, capacity: usize) -> T {
        // SAFETY: `seq == pos + 1` was observed with Acquire, so the producer's write of the
        // value happened-before this read and the value is initialized; winning the CAS on
        // `head` for `pos` makes us its only reader. The producer of the next lap cannot write
        // until we store `seq` below.
        let value = self
            .value
            .with(|cell| unsafe { (*cell).assume_init_read() });
        // Release: our read above happens-before the next lap's producer overwrites the value.
        self.seq.store(pos.wrapping_add(capacity), Release);
        value
    }
}
