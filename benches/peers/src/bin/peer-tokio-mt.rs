//! `peer-tokio-mt`: the idiomatic tokio echo server on the multi-thread (work-stealing) runtime.
//!
//! One task per connection (`tokio::spawn`), the shape of tokio's own `examples/echo.rs`.
//! `--workers N` sets the runtime's worker threads (tokio's default: one per core).

use clap::Parser;
use peers::{bind_and_announce, exit_on_signal, serve_tokio, Args};

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = bind_and_announce(&args)?;
    listener.set_nonblocking(true)?;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = args.workers {
        builder.worker_threads(workers.max(1));
    }
    let runtime = builder.enable_io().build()?;
    let protocol = args.protocol;
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("register listener");
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve_tokio(stream, protocol));
                }
                // EMFILE and friends: log and keep serving the connections we have.
                Err(err) => eprintln!("accept: {err}"),
            }
        }
    });
    exit_on_signal()
}
