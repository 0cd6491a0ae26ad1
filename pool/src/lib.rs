//! `pool`: a bounded lock-free MPMC ring feeding a core-pinned fixed thread pool.
//!
//! Placeholder until the pool issue lands.
