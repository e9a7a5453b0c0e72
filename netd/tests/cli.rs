//! The CLI's behaviour on bad input and without a daemon: one clear line on stderr and the exit
//! code of the failure's kind (the table in `netd::api::error`).

use std::process::Command;

use netd::api::ErrorKind;

struct Run {
    /// The exit code (`None`: killed by a signal).
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn netd(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_netd"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run netd: {e}"));
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Asserts that `run` failed with `kind`'s exit code and one line on stderr containing `text`.
fn assert_fails(run: &Run, kind: ErrorKind, text: &str) {
    assert_eq!(
        run.code,
        Some(i32::from(kind.exit_code())),
        "{kind}: {}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.starts_with("netd: "), "{}", run.stderr);
    assert!(run.stderr.contains(text), "{}", run.stderr);
}

#[test]
fn missing_pin_directory_is_a_clear_error() {
    let run = netd(&["maps", "ls", "--pin-dir", "/nonexistent/netd-pins"]);
    assert_fails(
        &run,
        ErrorKind::Internal,
        "no pinned maps in /nonexistent/netd-pins",
    );
}

#[test]
fn unknown_map_names_the_valid_ones() {
    let run = netd(&["maps", "dump", "nosuchmap", "--pin-dir", "/nonexistent"]);
    assert!(run.code.is_some_and(|c| c != 0), "{}", run.stderr);
    assert!(
        run.stderr.contains("unknown map \"nosuchmap\""),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("netd maps ls"), "{}", run.stderr);
}

/// A socket path nothing listens on: its directory does not exist.
const NO_DAEMON: &str = "/nonexistent/netd-cli-test/netd.sock";

#[test]
fn no_daemon_is_unavailable() {
    for args in [
        &["status"][..],
        &["network", "ls"],
        &["endpoint", "rm", "web"],
    ] {
        let run = netd(&[&["--socket", NO_DAEMON], args].concat());
        assert_fails(
            &run,
            ErrorKind::Unavailable,
            &format!("cannot reach the netd daemon at {NO_DAEMON}: "),
        );
        assert!(
            run.stderr
                .trim_end()
                .ends_with("(is `netd daemon` running? see --socket)"),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn bad_input_is_invalid_before_the_daemon_is_asked() {
    // The daemon is not there: these fail before asking it, with the usage exit code.
    for (args, text) in [
        (
            &[
                "network",
                "create",
                "--subnet",
                "10.9.0.0/24",
                "--aux-address",
                "r",
                "n",
            ][..],
            "invalid --aux-address \"r\": expected name=IP",
        ),
        (
            &["network", "create", "--gateway", "10.9.0.1", "n"],
            "each --gateway and --ip-range needs a --subnet before it",
        ),
        (
            &[
                "network",
                "create",
                "--subnet",
                "10.9.0.0/24",
                "-o",
                "mtu=big",
                "n",
            ],
            "invalid mtu \"big\": expected a number",
        ),
        (
            &[
                "endpoint",
                "add",
                "--network",
                "n",
                "--netns",
                "x",
                "--ip",
                "300.1.1.1",
                "e",
            ],
            "invalid value '300.1.1.1' for '--ip <IP>'",
        ),
        (
            &["network", "frobnicate"],
            "unrecognized subcommand 'frobnicate'",
        ),
    ] {
        let run = netd(&[&["--socket", NO_DAEMON], args].concat());
        assert_fails(&run, ErrorKind::Invalid, text);
    }
    // The positive control: the same command with good input gets as far as the socket.
    let run = netd(&[
        "--socket",
        NO_DAEMON,
        "network",
        "create",
        "--subnet",
        "10.9.0.0/24",
        "--aux-address",
        "r=10.9.0.3",
        "n",
    ]);
    assert_fails(&run, ErrorKind::Unavailable, "cannot reach the netd daemon");
}
