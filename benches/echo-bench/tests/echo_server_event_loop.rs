//! Against rawloop's own `echo-server --model event-loop`: no error in any scenario's shape,
//! and the server's CPU time per message is measured from its process tree.

mod util;

use echo_bench::{Protocol, RunConfig};
use util::{quick_config, EchoServer};

#[test]
fn event_loop_echoes_every_byte_and_its_cpu_is_measured() {
    let server = EchoServer::start("event-loop", &[]);
    let pid = Some(server.child.id());
    for (size, depth) in [(64, 1), (4096, 16)] {
        let cfg = RunConfig {
            size,
            depth,
            server_pid: pid,
            ..quick_config(server.addr)
        };
        let report = echo_bench::run(&cfg).unwrap();
        assert!(report.ok(), "{}", report.human());
        assert!(report.messages > 0);
        let usage = report.server.expect("server usage with --server-pid");
        // On a machine too busy to sample /proc on time the figure is left out, with a note
        // saying so; otherwise it must be there.
        let measured = usage.cpu_us_per_msg > 0.0 && usage.switches_per_msg >= 0.0;
        assert!(measured || !report.notes.is_empty(), "{}", report.human());
        assert!(usage.mem_before.rss > 0);
    }
}

#[test]
fn event_loop_lines_with_greedy_clients_and_idle_connections() {
    let server = EchoServer::start("event-loop", &["--protocol", "lines"]);
    let cfg = RunConfig {
        conns: 6,
        greedy: 1,
        idle: 100,
        protocol: Protocol::Lines,
        work_us: 500,
        server_pid: Some(server.child.id()),
        ..quick_config(server.addr)
    };
    let report = echo_bench::run(&cfg).unwrap();
    assert!(report.ok(), "{}", report.human());
    assert_eq!(report.idle_established, 100);
    assert!(report.greedy_latency.is_some() && report.cheap_latency.is_some());
    let usage = report.server.unwrap();
    assert!(usage.mem_loaded.rss >= usage.mem_before.rss, "{usage:?}");
}
