//! Running one check against every concurrency model: the table-driven style of the Go
//! standard library's tests and of rust-analyzer's `check` helpers, where the case list is data
//! and the failure names the case.
//!
//! The list of models is the CLI's own (`rawloop::config::Model`, a clap `ValueEnum`), so a
//! model added to `echo-server --model` is tested everywhere at once, and [`VARIANTS`] adds
//! runs of a model with extra flags. A test that concerns only some models filters the list
//! with a predicate below.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use clap::ValueEnum;
use rawloop::config::Model;

use super::server::{Exit, Server, ServerBuilder};

/// Extra runs of every model-wide check: a model plus flags that change how it works. Each
/// runs wherever its model would, and failures name it as `model flag ...`.
pub const VARIANTS: &[(&str, &[&str])] = &[
    // The classic EPOLLONESHOT hand-off beside the default edge-triggered one.
    ("reactor-pool", &["--arm", "oneshot"]),
    // The other registration style of the event loop (every event-loop model shares it).
    ("event-loop", &["--epoll-trigger", "level"]),
];

/// Which models (and variants) a test runs against, how many at a time, and how long each
/// server may take to exit at the end. [`Models::ALL`] is every model and variant, 4 at a time.
#[derive(Clone, Copy)]
pub struct Models {
    only: fn(Model) -> bool,
    parallel: usize,
    exit_within: Duration,
}

/// One run of a check: a model and the extra flags of its variant (none for the model itself).
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// The model.
    pub model: Model,
    /// The variant's flags, passed after the test's own.
    pub extra: &'static [&'static str],
}

/// What an [`each_model`] check asks of the server's exit, beyond a clean one (exit 0, a final
/// stats line, no panic): nothing (`()`), or a closure `move |exit: &Exit| ...` that inspects
/// the final stats.
pub trait ExitCheck {
    /// Runs the check on the exit of the server.
    fn check_exit(self, exit: &Exit);
}

/// For every model and variant: starts a server with `args`, runs `check`, then SIGTERMs the
/// server and asserts a clean exit (see [`ExitCheck`]). 4 models at a time; failures name the
/// model. [`Models`] selects fewer models or changes the pace.
pub fn each_model<R: ExitCheck>(args: &[&str], check: impl Fn(&Server) -> R + Sync) {
    Models::ALL.each_model(args, check)
}

impl Models {
    /// Every model of `echo-server --model` and every variant, 4 at a time, 20 s to exit.
    pub const ALL: Models = Models {
        only: any_model,
        parallel: 4,
        exit_within: Duration::from_secs(20),
    };

    /// Only the models (and their variants) for which `pred` holds.
    pub fn only(self, pred: fn(Model) -> bool) -> Models {
        Models { only: pred, ..self }
    }

    /// At most `n` models at a time (heavy tests, or tests that measure CPU).
    pub fn parallel(self, n: usize) -> Models {
        Models {
            parallel: n.max(1),
            ..self
        }
    }

    /// How long each server may take to exit after the final SIGTERM.
    pub fn exit_within(self, within: Duration) -> Models {
        Models {
            exit_within: within,
            ..self
        }
    }

    /// The models and variants selected, models first, in the enum's order.
    pub fn targets(&self) -> Vec<Target> {
        let models = Model::value_variants()
            .iter()
            .map(|&model| Target { model, extra: &[] });
        let variants = VARIANTS.iter().map(|&(name, extra)| Target {
            model: Model::from_str(name, false)
                .unwrap_or_else(|e| panic!("VARIANTS names no model `{name}`: {e}")),
            extra,
        });
        models
            .chain(variants)
            .filter(|t| (self.only)(t.model))
            .collect()
    }

    /// [`each_model`] with this selection.
    pub fn each_model<R: ExitCheck>(&self, args: &[&str], check: impl Fn(&Server) -> R + Sync) {
        self.each_server(|server| server.args(args), check)
    }

    /// [`each_model`] for servers that need more than flags (`--bind`, a descriptor limit):
    /// `setup` receives a builder with the model and variant set.
    pub fn each_server<R: ExitCheck>(
        &self,
        setup: impl Fn(ServerBuilder) -> ServerBuilder + Sync,
        check: impl Fn(&Server) -> R + Sync,
    ) {
        self.each(|target| {
            let server = setup(target.builder()).start();
            let after = check(&server);
            let exit = server.terminate(self.exit_within);
            exit.assert_clean();
            after.check_exit(&exit);
        })
    }

    /// The bare table runner, for tests that manage the server's life themselves (shutdown)
    /// or start none: runs `check` for every target, `parallel` at a time, each on a thread
    /// named after it. Every target runs even if another fails; then, if any failed, panics
    /// with one line per failing target, so the message says which models broke.
    pub fn each(&self, check: impl Fn(&Target) + Sync) {
        let targets = self.targets();
        let queue = Mutex::new(targets.iter().collect::<VecDeque<_>>());
        let failures = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..self.parallel.min(targets.len()) {
                s.spawn(|| loop {
                    // Its own statement: a guard in a `while let` scrutinee would hold the
                    // lock for the whole check and run the models one at a time.
                    let next = queue.lock().unwrap().pop_front();
                    let Some(target) = next else { return };
                    if let Err(failure) = run_named(target, &check) {
                        failures.lock().unwrap().push(failure);
                    }
                });
            }
        });
        let failures = failures.into_inner().unwrap();
        assert!(
            failures.is_empty(),
            "{} of {} models failed:\n{}",
            failures.len(),
            targets.len(),
            failures.join("\n")
        );
    }

    /// How many targets are selected (to scale a watchdog).
    pub fn count(&self) -> u32 {
        self.targets().len() as u32
    }
}

impl Target {
    /// `model flag ...`, as messages name it.
    pub fn label(&self) -> String {
        let mut label = self.model.name().to_string();
        for flag in self.extra {
            label.push(' ');
            label.push_str(flag);
        }
        label
    }

    /// A server builder with this model and variant.
    pub fn builder(&self) -> ServerBuilder {
        Server::builder(self.model).variant(self.extra)
    }

    /// Starts a server of this target with `args`.
    pub fn start(&self, args: &[&str]) -> Server {
        self.builder().args(args).start()
    }

    /// `--model <name>` and the variant's flags, for [`super::run_to_exit`].
    pub fn argv(&self) -> Vec<&'static str> {
        let mut argv = vec!["--model", self.model.name()];
        argv.extend_from_slice(self.extra);
        argv
    }
}

impl ExitCheck for () {
    fn check_exit(self, _: &Exit) {}
}

impl<F: FnOnce(&Exit)> ExitCheck for F {
    fn check_exit(self, exit: &Exit) {
        self(exit)
    }
}

// Predicates on models. They describe the product, so they would sit in src/config.rs as
// `Model` methods; src/ holds no test-only code, so they live here, by name. Each `match` lists
// every model on purpose: a new model does not compile here until someone decides where it
// stands, instead of silently skipping (or wrongly running) a model-specific check.

/// Every model: the default filter.
pub fn any_model(_: Model) -> bool {
    true
}

/// The final stats line counts bytes, messages and idle closes. Every model today: the process
/// models' children add theirs to counters shared with the parent (`MAP_SHARED`).
pub fn counts_traffic(model: Model) -> bool {
    use Model::*;
    match model {
        EventLoop | ThreadPerConn | ProcessPerConn | ListenerPool | ReactorPool
        | ReactorOffload | Reuseport | Prefork | SharedAccept | Uring | UringReuseport => true,
    }
}

/// Exactly one thread per process counts messages, so the racy counter cannot lose an update.
pub fn counts_on_one_thread(model: Model) -> bool {
    use Model::*;
    match model {
        EventLoop | Prefork | ProcessPerConn | Uring => true,
        ThreadPerConn | ListenerPool | ReactorPool | ReactorOffload | Reuseport | SharedAccept
        | UringReuseport => false,
    }
}

/// One process holds many client descriptors, so RLIMIT_NOFILE binds. Not `process-per-conn`:
/// its parent keeps no client socket (each child holds its one); its analogue is RLIMIT_NPROC.
pub fn holds_many_client_fds(model: Model) -> bool {
    use Model::*;
    match model {
        ProcessPerConn => false,
        EventLoop | ThreadPerConn | ListenerPool | ReactorPool | ReactorOffload | Reuseport
        | Prefork | SharedAccept | Uring | UringReuseport => true,
    }
}

/// A cheap request on one connection does not wait for a costly one on another: the
/// connections are served on several threads or processes, not by one loop each.
pub fn no_greedy_neighbour(model: Model) -> bool {
    use Model::*;
    match model {
        ThreadPerConn | ProcessPerConn | ReactorPool | ReactorOffload => true,
        EventLoop | ListenerPool | Reuseport | Prefork | SharedAccept | Uring | UringReuseport => {
            false
        }
    }
}

/// The epoll models built for ten thousand connections (one thread or process per connection
/// would not be).
pub fn built_for_c10k(model: Model) -> bool {
    use Model::*;
    match model {
        EventLoop | Reuseport | ReactorPool | SharedAccept | Uring | UringReuseport => true,
        ThreadPerConn | ProcessPerConn | ListenerPool | ReactorOffload | Prefork => false,
    }
}

/// The model serves through io_uring (and so needs it: without, it is refused at start).
pub fn uses_io_uring(model: Model) -> bool {
    use Model::*;
    match model {
        Uring | UringReuseport => true,
        EventLoop | ThreadPerConn | ProcessPerConn | ListenerPool | ReactorPool
        | ReactorOffload | Reuseport | Prefork | SharedAccept => false,
    }
}

/// How many `final=1` stats lines a server of `model` prints at exit with `--workers n`: one
/// per process that serves, plus, for `prefork`, the parent's total (printed last).
pub fn final_lines(model: Model, workers: usize) -> usize {
    use Model::*;
    match model {
        Prefork => workers + 1,
        EventLoop | ThreadPerConn | ProcessPerConn | ListenerPool | ReactorPool
        | ReactorOffload | Reuseport | SharedAccept | Uring | UringReuseport => 1,
    }
}

/// Runs `check(target)` on a thread named after the target; a panic becomes
/// `Err("[label] message")`.
fn run_named(target: &Target, check: &(impl Fn(&Target) + Sync)) -> Result<(), String> {
    let label = target.label();
    let joined = std::thread::scope(|s| {
        let thread = std::thread::Builder::new().name(label.clone());
        let handle = thread.spawn_scoped(s, || check(target));
        handle.expect("spawn model thread").join()
    });
    joined.map_err(|payload| format!("[{label}] {}", panic_message(&*payload)))
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.to_string()
    } else {
        "(non-string panic)".to_string()
    }
}
