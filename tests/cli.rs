//! Command-line errors: a bad flag is refused at once with exit status 2 and a message naming
//! it, before anything is bound or announced (`listening on` must never be printed for a
//! server that is not going to serve).

mod util;

use std::time::Duration;

use util::{run_to_exit, Watchdog};

#[test]
fn bad_flags_exit_2_with_a_message() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    let cases: &[(&[&str], &str)] = &[
        (&["--model", "no-such-model"], "no-such-model"),
        (&["--high-water", "1"], "high-water"),
        (&["--max-line", "0"], "max-line"),
        (&["--max-conns", "0"], "max-conns"),
        (&["--workers", "0"], "workers"),
        (&["--idle-timeout=-1"], "idle-timeout"),
        (&["--drain-timeout", "nan"], "drain-timeout"),
        (&["--ring-capacity", "1"], "ring-capacity"),
        (&["--bind", "not-an-address"], "not-an-address"),
        (&["--protocol", "http"], "http"),
    ];
    for (args, mention) in cases {
        // Never the default port: a flag that is wrongly accepted must not collide.
        let mut argv = args.to_vec();
        if !args.contains(&"--bind") {
            argv.extend_from_slice(&["--bind", "127.0.0.1:0"]);
        }
        let out = run_to_exit(&argv, Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: status {:?}, stderr: {stderr}",
            out.status
        );
        assert!(
            stderr.contains(mention),
            "{args:?}: the message should name `{mention}`: {stderr}"
        );
        assert!(
            out.stdout.is_empty(),
            "{args:?} printed {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn every_numeric_flag_out_of_range_is_refused_with_its_range() {
    let _watchdog = Watchdog::new(Duration::from_secs(120));
    // A value, in each of the forms that once slipped through or got a misleading message
    // (a negative number with a space, a tiny interval, an absurd timeout).
    let cases: &[(&[&str], &str)] = &[
        (&["--stats-interval", "-1"], "from 0.1 to 86400"),
        (&["--stats-interval=1e-9"], "from 0.1 to 86400"),
        (&["--idle-timeout", "1e30"], "from 0.001 to 31536000"),
        (&["--drain-timeout", "-5"], "from 0 to 3600"),
        (&["--backlog", "0"], "from 1 to 65535"),
        (&["--max-conns", "-3"], "from 1 to 1000000"),
        (&["--workers", "5000"], "from 1 to 1024"),
        (&["--max-line", "0"], "from 1 to"),
        (&["--high-water", "1"], "from 2 to"),
        (&["--ring-capacity", "1"], "from 2 to 16777216"),
    ];
    for (args, range) in cases {
        let mut argv = args.to_vec();
        argv.extend_from_slice(&["--bind", "127.0.0.1:0"]);
        let out = run_to_exit(&argv, Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(range),
            "{args:?} should name {range:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?} printed something");
    }
}
