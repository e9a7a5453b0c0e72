//! The CLI's behaviour on bad input and without a daemon: one clear line on stderr and the exit
//! code of the failure's kind (the table in `netd::api::error`).

use std::{
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::PathBuf,
    process::Command,
};

use netd::api::ErrorKind;

struct Run {
    /// The exit code (`None`: killed by a signal).
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn netd(args: &[&str]) -> Run {
    netd_with(args, &[])
}

/// `netd` with these environment variables set.
fn netd_with(args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_netd"))
        .args(args)
        .envs(env.iter().copied())
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
fn missing_pins_are_not_found() {
    for args in [&["maps", "ls"][..], &["maps", "dump", "fdb"], &["monitor"]] {
        let run = netd(&[args, &["--pin-dir", "/nonexistent/netd-pins"]].concat());
        assert_fails(
            &run,
            ErrorKind::NotFound,
            "no pinned maps in /nonexistent/netd-pins",
        );
    }
}

#[test]
fn an_unknown_map_or_drop_reason_is_invalid() {
    // Found before the pins are looked at: the directory does not matter.
    let run = netd(&["maps", "dump", "nosuchmap", "--pin-dir", "/nonexistent"]);
    assert_fails(&run, ErrorKind::Invalid, "unknown map \"nosuchmap\"");
    assert!(run.stderr.contains("netd maps ls"), "{}", run.stderr);
    let run = netd(&[
        "monitor",
        "--reason",
        "spoofed-mac,nosuchreason",
        "--pin-dir",
        "/nonexistent",
    ]);
    assert_fails(
        &run,
        ErrorKind::Invalid,
        "unknown drop reason \"nosuchreason\"",
    );
    // The control: a known reason gets as far as the pins.
    let run = netd(&[
        "monitor",
        "--reason",
        "spoofed-mac",
        "--pin-dir",
        "/nonexistent",
    ]);
    assert_fails(&run, ErrorKind::NotFound, "no pinned maps in /nonexistent");
}

/// A directory of this test's, removed when dropped (also when the test fails).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A pin directory this user may not read (as netd's is, 0700 root's) is permission denied,
/// not "no pins". Run as root, the commands run as nobody, for whom root's mode bits hold.
#[test]
fn a_pin_directory_the_user_may_not_read_is_permission_denied() {
    let dir =
        TempDir(std::env::temp_dir().join(format!("netd-cli-test-pins-{}", std::process::id())));
    std::fs::create_dir(&dir.0).unwrap();
    let pins = dir.0.to_str().unwrap();
    let as_user = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_netd"));
        command.args(args).args(["--pin-dir", pins]);
        if nix::unistd::geteuid().is_root() {
            command.uid(65534).gid(65534);
        }
        let out = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run netd: {e}"));
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    let commands = [&["maps", "ls"][..], &["maps", "dump", "fdb"], &["monitor"]];

    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o700)).unwrap();
    if !nix::unistd::geteuid().is_root() {
        // Its owner may read it: take the read and search bits away from everyone.
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    for args in commands {
        assert_fails(
            &as_user(args),
            ErrorKind::PermissionDenied,
            &format!("permission denied reading {pins}/NETD_"),
        );
    }

    // The control: the same directory, readable, is found to hold no pins.
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    for args in commands {
        assert_fails(
            &as_user(args),
            ErrorKind::NotFound,
            &format!("no pinned maps in {pins}"),
        );
    }
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
            &[
                "network",
                "create",
                "--subnet",
                "10.9.0.0/24",
                "-o",
                "mut=1200",
                "n",
            ],
            "unknown option \"mut\" (netd knows mtu, vni, parent,",
        ),
        (
            &[
                "endpoint",
                "add",
                "--network",
                "n",
                "--netns",
                "x",
                "--ifname",
                "eth0:1",
                "e",
            ],
            "invalid interface name \"eth0:1\": it holds `/` or `:`",
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

/// The store's TLS files are read when the daemon starts, before anything is touched: a file
/// that cannot be used, half a client certificate, or files for a store without TLS stop it in
/// one line naming the store (the environment variables too, Consul's own for consul+https).
/// The positive control gets past the store to the next check (`--advertise`, which no
/// interface holds), as a user without root may run it.
#[test]
fn store_tls_files_that_cannot_be_used_stop_the_daemon_in_one_line() {
    fn daemon<'a>(store: &'a str, more: &[&'a str]) -> Vec<&'a str> {
        [
            &["daemon", "--store", store, "--advertise", "192.0.2.1"],
            more,
        ]
        .concat()
    }
    let https = "etcd+https://127.0.0.1:2379";
    for (args, env, text) in [
        (
            daemon(
                "etcd://127.0.0.1:2379",
                &["--store-cacert", "/nonexistent/ca.pem"],
            ),
            &[][..],
            "store etcd://127.0.0.1:2379: TLS files are given for a plain http store: use \
             etcd+https://",
        ),
        (
            daemon(https, &["--store-cert", "/nonexistent/c.pem"]),
            &[],
            "--store-cert is given without its pair: a client certificate needs both \
             --store-cert and --store-key",
        ),
        (
            daemon(https, &[]),
            &[("NETD_STORE_CACERT", "/nonexistent/ca.pem")],
            "store etcd+https://127.0.0.1:2379: cannot read --store-cacert /nonexistent/ca.pem",
        ),
        (
            daemon("consul+https://127.0.0.1:8501", &[]),
            &[
                ("CONSUL_CLIENT_CERT", "/nonexistent/c.pem"),
                ("CONSUL_CLIENT_KEY", "/nonexistent/k.pem"),
            ],
            "cannot read CONSUL_CLIENT_CERT /nonexistent/c.pem",
        ),
        (
            daemon(https, &[]),
            &[],
            "no interface holds --advertise 192.0.2.1",
        ),
    ] {
        let run = netd_with(&args, env);
        assert_fails(&run, ErrorKind::Internal, text);
    }
}

/// A Consul ACL token with `consul://` goes over plain http: the daemon says so once in its
/// log, without the token; with `consul+https://` (the control) nothing is said.
#[test]
fn an_acl_token_over_plain_http_is_warned_once() {
    let token = [("CONSUL_HTTP_TOKEN", "5f0c3e3a-secret")];
    let warning = "the Consul ACL token goes to the store over plain http";
    for (store, warned) in [
        ("consul://127.0.0.1:8500", 1),
        ("consul+https://127.0.0.1:8501", 0),
    ] {
        let run = netd_with(
            &["daemon", "--store", store, "--advertise", "192.0.2.1"],
            &token,
        );
        assert_eq!(
            run.stderr.matches(warning).count(),
            warned,
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains("5f0c3e3a-secret"), "{}", run.stderr);
        let last = run.stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("netd: no interface holds --advertise"),
            "{}",
            run.stderr
        );
    }
}
