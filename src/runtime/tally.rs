//! Per-worker counts for the stats line: who took which connections, who served which requests.
//!
//! Load imbalance is a property of the *distribution* of work over workers, which a total
//! cannot show. Each multi-loop model gives every worker loop a [`WorkerSlot`]: the loop counts
//! the connections it registers, and publishes the messages its thread served (a thread-local
//! count, [`crate::stats::messages_on_this_thread`]) on every tick. The stats line then carries
//! `worker_conns=a,b,...` and `worker_msgs=x,y,...`, one number per worker, which is what the
//! lab's `fairness` scenario reads (and Jain's index summarises).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pool::CachePadded;

/// The counts of all workers of one process.
pub struct Tally {
    workers: Vec<CachePadded<Counts>>,
}

#[derive(Default)]
struct Counts {
    conns: AtomicU64,
    msgs: AtomicU64,
}

/// One worker's place in a [`Tally`].
#[derive(Clone)]
pub struct WorkerSlot {
    tally: Arc<Tally>,
    index: usize,
}

impl Tally {
    /// A tally of `n` workers, all zero.
    pub fn new(n: usize) -> Arc<Tally> {
        Arc::new(Tally {
            workers: (0..n)
                .map(|_| CachePadded::new(Counts::default()))
                .collect(),
        })
    }

    /// Worker `index`'s slot.
    pub fn slot(self: &Arc<Tally>, index: usize) -> WorkerSlot {
        assert!(index < self.workers.len());
        WorkerSlot {
            tally: Arc::clone(self),
            index,
        }
    }

    /// Worker `index` took a connection. (Relaxed: a statistic, read only for display.)
    pub fn took_conn(&self, index: usize) {
        self.workers[index].conns.fetch_add(1, Ordering::Relaxed);
    }

    /// `worker_conns=...` and `worker_msgs=...` for the stats line.
    pub fn fields(&self) -> [(&'static str, String); 2] {
        let list = |f: fn(&Counts) -> &AtomicU64| {
            let values: Vec<String> = self
                .workers
                .iter()
                .map(|w| f(w).load(Ordering::Relaxed).to_string())
                .collect();
            values.join(",")
        };
        [
            ("worker_conns", list(|c| &c.conns)),
            ("worker_msgs", list(|c| &c.msgs)),
        ]
    }
}

impl WorkerSlot {
    /// This worker took a connection.
    pub fn took_conn(&self) {
        self.tally.took_conn(self.index);
    }

    /// Publishes how many messages this worker's thread has served so far.
    pub fn publish_msgs(&self, msgs: u64) {
        self.counts().msgs.store(msgs, Ordering::Relaxed);
    }

    fn counts(&self) -> &Counts {
        &self.tally.workers[self.index]
    }
}
