//! `rawloop`: the echo application. Placeholder.
