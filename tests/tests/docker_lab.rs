#![allow(clippy::unwrap_used, clippy::expect_used, reason = "integration test")]
//! Two simulated hosts (network namespaces joined by a veth), a real Docker 20.10 engine in each
//! (`netd_tests::docker::DockerHost`): both answer with their own names, run containers, find
//! remote plugins in their own plugin directory, keep containers across a daemon restart
//! (live-restore), and leave nothing behind.
//!
//! Needs root and `apt-get install docker.io busybox-static iperf3`.

use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::net::UnixListener,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use netd_tests::{
    docker::{DockerHost, IMAGE},
    ip,
    netns::Netns,
    sh,
};

const ADDRS: [&str; 2] = ["10.231.0.1", "10.231.0.2"];

/// What must be gone once the hosts are dropped.
struct Footprint {
    netns: Vec<String>,
    dirs: Vec<PathBuf>,
    container_pids: Vec<u32>,
}

/// Global paths Docker 20.10 writes to regardless of its data-root; the fixture keeps them
/// inside each host's private mount namespace.
const GLOBAL_PATHS: [&str; 4] = [
    "/run/docker",
    "/run/containerd",
    "/etc/docker/key.json",
    "/var/lib/docker",
];

#[test]
fn two_docker_hosts_live_restore_and_cleanup() {
    let globals_before: Vec<bool> = GLOBAL_PATHS.iter().map(|p| Path::new(p).exists()).collect();
    let footprint = run_lab();
    assert_nothing_left(&footprint);
    let globals_after: Vec<bool> = GLOBAL_PATHS.iter().map(|p| Path::new(p).exists()).collect();
    assert_eq!(
        globals_before, globals_after,
        "{GLOBAL_PATHS:?} appeared or vanished"
    );
}

fn run_lab() -> Footprint {
    let started = Instant::now();
    let ns = [Netns::new("dk").unwrap(), Netns::new("dk").unwrap()];
    ip(&[
        "link",
        "add",
        "ul",
        "netns",
        &ns[0].name,
        "type",
        "veth",
        "peer",
        "name",
        "ul",
        "netns",
        &ns[1].name,
    ])
    .unwrap();
    for (n, addr) in ns.iter().zip(ADDRS) {
        n.ip(&["addr", "add", &format!("{addr}/24"), "dev", "ul"])
            .unwrap();
        n.ip(&["link", "set", "ul", "up"]).unwrap();
    }
    // Declared after the namespaces: dropped (and cleaned up) before them.
    let mut hosts = [
        DockerHost::start(&ns[0].name, "dk-host1")
            .expect("dockerd in netns 1 (needs root and docker.io)"),
        DockerHost::start(&ns[1].name, "dk-host2").expect("dockerd in netns 2"),
    ];
    eprintln!("two docker hosts up in {:?}", started.elapsed());
    let mut footprint = Footprint {
        netns: ns.iter().map(|n| n.name.clone()).collect(),
        dirs: hosts.iter().map(|h| h.dir().to_owned()).collect(),
        container_pids: Vec::new(),
    };

    // Each engine is its own "host": own name, own ID.
    let info: Vec<String> = hosts
        .iter()
        .map(|h| {
            h.docker(&["info", "--format", "{{.Name}} {{.ID}}"])
                .unwrap()
        })
        .collect();
    assert!(info[0].starts_with("dk-host1 "), "{}", info[0]);
    assert!(info[1].starts_with("dk-host2 "), "{}", info[1]);
    assert_ne!(
        info[0].split_whitespace().nth(1),
        info[1].split_whitespace().nth(1),
        "same engine ID"
    );
    for h in &hosts {
        let live = h
            .docker(&["info", "--format", "{{.LiveRestoreEnabled}}"])
            .unwrap();
        assert_eq!(live.trim(), "true");
    }

    // The hosts reach each other over the underlay, and the image has its tools.
    ns[0]
        .exec("ping", &["-c", "1", "-W", "2", ADDRS[1]])
        .unwrap();
    for h in &hosts {
        let out = h
            .docker(&[
                "run",
                "--rm",
                "--network",
                "none",
                IMAGE,
                "sh",
                "-c",
                "echo ok",
            ])
            .unwrap();
        assert_eq!(out.trim(), "ok", "{}", h.hostname());
    }
    let tools = hosts[0]
        .docker(&[
            "run",
            "--rm",
            "--network",
            "none",
            IMAGE,
            "sh",
            "-c",
            "iperf3 --version && ping -c 1 127.0.0.1",
        ])
        .unwrap();
    assert!(
        tools.contains("iperf 3") && tools.contains("1 packets received"),
        "{tools}"
    );

    // A remote plugin socket in host 1's plugin_dir is found by dockerd 1 (which activates it),
    // and is not even visible to dockerd 2. (Asking dockerd 2 for a missing plugin would take
    // ~15 s: 20.10 retries the lookup with backoff, "Unable to locate plugin: netd, retrying".)
    eprintln!("[{:?}] containers ran", started.elapsed());
    let sees_plugin = |h: &DockerHost| {
        let pid = h.dockerd_pid().unwrap().to_string();
        let path = "/run/docker/plugins/netd.sock";
        sh("nsenter", &["-t", &pid, "-m", "test", "-S", path]).is_ok()
    };
    let request = fake_plugin(hosts[0].plugin_dir(), || {
        assert!(sees_plugin(&hosts[0]) && !sees_plugin(&hosts[1]));
        // The fake plugin implements nothing, so this fails after activating it.
        let _ = hosts[0].docker(&["network", "create", "-d", "netd", "viaplugin"]);
    });
    assert!(request.starts_with("POST /Plugin.Activate"), "{request:?}");
    eprintln!("[{:?}] plugin discovery checked", started.elapsed());

    // live-restore: the container keeps running, untouched, across a daemon restart.
    let id = hosts[0]
        .docker(&["run", "-d", "--network", "none", IMAGE, "sleep", "1000"])
        .unwrap();
    let id = id.trim();
    let pid_before = hosts[0]
        .docker(&["inspect", "--format", "{{.State.Pid}}", id])
        .unwrap();
    let dockerd_before = hosts[0].dockerd_pid();
    hosts[0].restart().unwrap();
    eprintln!("[{:?}] dockerd restarted", started.elapsed());
    assert_ne!(
        dockerd_before,
        hosts[0].dockerd_pid(),
        "dockerd was not restarted"
    );
    let ps = hosts[0]
        .docker(&[
            "ps",
            "--filter",
            &format!("id={id}"),
            "--format",
            "{{.ID}} {{.Status}}",
        ])
        .unwrap();
    assert!(
        ps.starts_with(&id[..12]) && ps.contains(" Up "),
        "after restart: {ps:?}"
    );
    let pid_after = hosts[0]
        .docker(&["inspect", "--format", "{{.State.Pid}}", id])
        .unwrap();
    assert_eq!(pid_before, pid_after, "the container was restarted");
    assert_eq!(
        hosts[0]
            .docker(&["exec", id, "echo", "alive"])
            .unwrap()
            .trim(),
        "alive"
    );
    footprint
        .container_pids
        .push(pid_after.trim().parse().unwrap());
    // Also one on host 2 that is still running when the host is dropped.
    let id2 = hosts[1]
        .docker(&["run", "-d", "--network", "none", IMAGE, "sleep", "1000"])
        .unwrap();
    let pid2 = hosts[1]
        .docker(&["inspect", "--format", "{{.State.Pid}}", id2.trim()])
        .unwrap();
    footprint.container_pids.push(pid2.trim().parse().unwrap());

    // A stopped daemon still gets cleaned up, with its container.
    hosts[1].stop();

    let cleanup = Instant::now();
    drop(hosts);
    drop(ns);
    eprintln!(
        "cleaned up in {:?}, whole lab {:?}",
        cleanup.elapsed(),
        started.elapsed()
    );
    footprint
}

/// Serves one request on `<dir>/netd.sock` (answering `Plugin.Activate` with no capabilities)
/// while `trigger` runs, and returns the request line.
fn fake_plugin(dir: &Path, trigger: impl FnOnce()) -> String {
    let sock = dir.join("netd.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let server = thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        let mut length = 0;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            if header.trim().is_empty() {
                break;
            }
            if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let reply = r#"{"Implements": []}"#;
        write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.plugins.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
            reply.len()
        )
        .unwrap();
        request_line
    });
    trigger();
    let request = server.join().unwrap();
    std::fs::remove_file(sock).unwrap();
    request
}

fn assert_nothing_left(footprint: &Footprint) {
    let netns = ip(&["netns", "list"]).unwrap();
    for name in &footprint.netns {
        assert!(
            !netns.split_whitespace().any(|n| n == name),
            "netns {name} left"
        );
    }
    for dir in &footprint.dirs {
        assert!(!dir.exists(), "{} left", dir.display());
        let with_slash = format!("{}/", dir.display());
        let base = dir.file_name().unwrap();
        // Processes: dockerd, containerd and shims all name the state directory.
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            assert!(!cmdline.contains(&with_slash), "process left: {cmdline}");
        }
        // Mounts (the host's mounts live in its private mount namespace, gone with it).
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(&with_slash), "mount left:\n{mounts}");
        // Cgroups: the cgroup parent is named like the state directory.
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let cgroup = hierarchy.path().join(base);
            assert!(!cgroup.exists(), "{} left", cgroup.display());
        }
    }
    // A killed container whose shim is gone too is reparented to PID 1; until that reaps it,
    // it is a zombie: dead, but still in /proc.
    for pid in &footprint.container_pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .next();
        assert!(
            matches!(state, None | Some("Z" | "X")),
            "container process {pid} left: {stat}"
        );
    }
}
