//! `echo-server`: the command-line entry point. Everything else lives in the library.

use clap::Parser;
use rawloop::config::{Args, Settings};

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let settings = match Settings::from_args(Args::parse()) {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("echo-server: {message}");
            std::process::exit(2);
        }
    };
    if let Err(e) = rawloop::run(settings) {
        eprintln!("echo-server: {e}");
        std::process::exit(1);
    }
}
