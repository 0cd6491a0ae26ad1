//! `peer-std-threads`: one OS thread per connection with blocking `std::net` I/O.
//!
//! The oldest server shape there is, and the yardstick of rawloop's `thread-per-conn` model:
//! simple code, a kernel-scheduled thread (and its stack) for every connection. `--workers` is
//! accepted for the shared contract and ignored, as there is nothing to size.

use clap::Parser;
use peers::{bind_and_announce, exit_on_signal, serve_std, Args};

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = bind_and_announce(&args)?;
    let protocol = args.protocol;
    std::thread::Builder::new()
        .name("acceptor".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        // A small stack: an echo loop needs a 64 KiB heap buffer and little
                        // else, and 10,000 idle threads should not reserve 80 GiB of address space.
                        let spawned = std::thread::Builder::new()
                            .stack_size(128 * 1024)
                            .spawn(move || serve_std(stream, protocol));
                        if let Err(err) = spawned {
                            eprintln!("spawn: {err}");
                        }
                    }
                    Err(err) => eprintln!("accept: {err}"),
                }
            }
        })?;
    exit_on_signal()
}
