//! `reactor`: a minimal epoll reactor built from raw Linux syscalls.
//!
//! Placeholder until the foundation lands.
