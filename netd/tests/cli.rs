//! The CLI's behaviour on bad input: one clear line on stderr and a non-zero exit code.

use std::process::Command;

fn netd(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_netd"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run netd: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn missing_pin_directory_is_a_clear_error() {
    let (ok, stdout, stderr) = netd(&["maps", "ls", "--pin-dir", "/nonexistent/netd-pins"]);
    assert!(!ok);
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("no pinned maps in /nonexistent/netd-pins"),
        "{stderr}"
    );
}

#[test]
fn unknown_map_names_the_valid_ones() {
    let (ok, _, stderr) = netd(&["maps", "dump", "nosuchmap", "--pin-dir", "/nonexistent"]);
    assert!(!ok);
    assert!(stderr.contains("unknown map \"nosuchmap\""), "{stderr}");
    assert!(stderr.contains("netd maps ls"), "{stderr}");
}
