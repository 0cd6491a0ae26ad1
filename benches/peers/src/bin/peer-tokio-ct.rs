//! `peer-tokio-ct`: tokio's current-thread runtime, one per worker thread.
//!
//! The single-threaded shape (`--workers 1`, the default) is the direct yardstick of rawloop's
//! `event-loop` model: one thread, one epoll, every connection a task. With `--workers N` each
//! of N threads runs its own runtime and accepts from a clone of the same listening socket; the
//! kernel wakes every waiting epoll and one wins the `accept` (the others see WouldBlock), the
//! plain "thundering herd" arrangement rawloop's `listener-pool` model explains.

use clap::Parser;
use peers::{bind_and_announce, exit_on_signal, serve_tokio, Args};

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = bind_and_announce(&args)?;
    listener.set_nonblocking(true)?;
    for worker_idx in 0..args.workers.unwrap_or(1).max(1) {
        let listener = listener.try_clone()?;
        let protocol = args.protocol;
        std::thread::Builder::new()
            .name(format!("tokio-ct-{worker_idx}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                    .expect("build runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("register listener");
                    loop {
                        match listener.accept().await {
                            // `tokio::spawn` inside a current-thread runtime keeps the task
                            // on this thread: no work stealing, like an event loop.
                            Ok((stream, _)) => drop(tokio::spawn(serve_tokio(stream, protocol))),
                            Err(err) => eprintln!("accept: {err}"),
                        }
                    }
                });
            })?;
    }
    exit_on_signal()
}
