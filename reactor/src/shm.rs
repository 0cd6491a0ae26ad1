//! Counters shared between a process and the children it forks.
//!
//! Threads share memory by default and processes do not: after `fork(2)` each has its own
//! copy, so a child's counters die with it. [`SharedCounters`] are the exception, an anonymous
//! `MAP_SHARED` mapping (mmap(2)) made before the fork, which parent and children keep sharing;
//! the atomics in it behave across processes as they do across threads. The mapping itself
//! (the only unsafe part) is in `sys::shm`.

pub use crate::sys::SharedCounters;
