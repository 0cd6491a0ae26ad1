//! Items a full ring refused: kept in order and retried, never dropped.
//!
//! A bounded ring says "full" by handing the item back (`Result<(), T>`, as crossbeam's
//! `ArrayQueue::push` does). Dropping it would lose a readiness event or a connection; blocking
//! the producer would stall the reactor that also has to accept and read signals. So the
//! producer keeps what was refused in a local queue and retries it first on every turn, and its
//! loop comes back after [`RETRY_AFTER`] instead of sleeping. The backlog is bounded by what can
//! be outstanding at once (one event per connection under EPOLLONESHOT, one job per connection
//! away at a worker), so it cannot grow without bound either.

use std::collections::VecDeque;
use std::time::Duration;

/// How soon a loop with a non-empty backlog wakes to retry it.
pub const RETRY_AFTER: Duration = Duration::from_millis(1);

/// Items waiting for room in a ring, oldest first.
#[derive(Debug)]
pub struct Backlog<T> {
    items: VecDeque<T>,
}

impl<T> Backlog<T> {
    /// An empty backlog.
    pub fn new() -> Backlog<T> {
        Backlog {
            items: VecDeque::new(),
        }
    }

    /// Offers `item` through `push` behind whatever waits already (order is kept); keeps it
    /// if refused.
    pub fn push(&mut self, item: T, push: impl FnMut(T) -> Result<(), T>) {
        self.items.push_back(item);
        self.retry(push);
    }

    /// Appends `item` without offering it: for a producer that hands a whole batch over at
    /// once (see [`items`](Backlog::items)).
    pub fn queue(&mut self, item: T) {
        self.items.push_back(item);
    }

    /// The waiting items, oldest first, for a batched hand-off such as
    /// `pool::Pool::submit_batch`, which takes what fits and leaves the rest in order.
    pub fn items(&mut self) -> &mut VecDeque<T> {
        &mut self.items
    }

    /// Offers the waiting items, oldest first, until `push` refuses one.
    pub fn retry(&mut self, mut push: impl FnMut(T) -> Result<(), T>) {
        while let Some(item) = self.items.pop_front() {
            if let Err(item) = push(item) {
                self.items.push_front(item);
                return;
            }
        }
    }

    /// How long the owner's loop may sleep: [`RETRY_AFTER`] while items wait, else `sleep`.
    pub fn cap_timeout(&self, sleep: Option<Duration>) -> Option<Duration> {
        if self.items.is_empty() {
            sleep
        } else {
            Some(sleep.map_or(RETRY_AFTER, |s| s.min(RETRY_AFTER)))
        }
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Drops every waiting item (a drain deadline), returning how many there were.
    pub fn clear(&mut self) -> usize {
        let n = self.items.len();
        self.items.clear();
        n
    }
}

impl<T> Default for Backlog<T> {
    fn default() -> Backlog<T> {
        Backlog::new()
    }
}

#[cfg(test)]
mod tests {
    use super::Backlog;

    #[test]
    fn refused_items_wait_in_order_and_go_when_there_is_room() {
        let mut ring: Vec<u32> = Vec::new();
        let room = 1;
        let mut backlog = Backlog::new();
        for item in 0..4 {
            backlog.push(item, |x| {
                if ring.len() < room {
                    ring.push(x);
                    Ok(())
                } else {
                    Err(x)
                }
            });
        }
        assert_eq!((ring.as_slice(), backlog.len()), (&[0][..], 3));
        backlog.retry(|x| {
            ring.push(x);
            Ok(())
        });
        assert_eq!(ring, vec![0, 1, 2, 3]);
        assert!(backlog.is_empty());
    }
}
