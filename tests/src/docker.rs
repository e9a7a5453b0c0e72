//! A real Docker engine (Debian's docker.io 20.10, or trixie's 26.1 that `cargo xtask setup`
//! unpacks into the tools folder) running inside a network namespace that plays a "host",
//! several at once, cleaned up on drop.
//!
//! Each [`DockerHost`] gets its own private *mount* and *UTS* namespace on top of the caller's
//! network namespace. A small keeper process (`sleep infinity`) holds these namespaces for the
//! whole life of the host, and every dockerd of the host is started inside them with `nsenter`.
//! Keeping one mount namespace across dockerd restarts matters for `--live-restore`: the
//! containers' rootfs mounts and the sandbox netns bind mounts under the exec-root live in that
//! namespace, and a restarted dockerd that saw a fresh mount namespace could not restore them.
//!
//! Inside that namespace (see [`SETUP_SCRIPT`]):
//! * the cgroup hierarchies are mounted again under `/sys/fs/cgroup` (`ip netns exec` hides them
//!   behind a fresh sysfs, and dockerd refuses to start without them);
//! * a per-host directory is bind-mounted over `/run`. Docker 20.10 has hard-coded paths there:
//!   the remote-plugin socket directory `/run/docker/plugins` (`socketsPath` in moby's
//!   `pkg/plugins/discovery.go`, not configurable), the managed-plugin exec root (same path,
//!   `getPluginExecRoot` in `daemon/daemon_linux.go`) and containerd's shim sockets in
//!   `/run/containerd/s/`. So each host has its own plugin directory ([`DockerHost::plugin_dir`])
//!   and nothing of it leaks into the real `/run`;
//! * a per-host directory is bind-mounted over `/etc/docker`, so the daemon's `key.json` (its
//!   engine ID, path not configurable either) is per host and nothing is written to the real
//!   `/etc/docker`;
//! * the hostname is set (libnetwork and swarm use it as the node name; hosts must differ).
//!
//! The daemon itself gets its own data-root, exec-root, pidfile, API socket and cgroup parent,
//! all under the host's temporary directory.
//!
//! Needs root and `apt-get install docker.io busybox-static` (and `iperf3`, which is copied into
//! the image when present).

use std::{
    fs,
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use anyhow::{Context, bail};

use crate::{sh, unique_name, wait_until};

/// Which Docker engine a host runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// Debian 12's docker.io, installed system-wide.
    V20,
    /// Debian trixie's docker.io, docker-cli and containerd, unpacked into the tools folder
    /// (its runc needs a newer glibc: the system's runc serves it).
    V26,
}

/// Where `cargo xtask setup` puts tools from other Debian suites.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("NETD_TOOLS_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools"),
        PathBuf::from,
    )
}

impl Engine {
    pub const ALL: [Self; 2] = [Self::V20, Self::V26];

    pub fn version(self) -> &'static str {
        match self {
            Self::V20 => "20.10",
            Self::V26 => "26.1",
        }
    }

    fn root(self) -> PathBuf {
        match self {
            Self::V20 => PathBuf::from("/"),
            Self::V26 => tools_dir().join("docker-26"),
        }
    }

    pub fn dockerd(self) -> PathBuf {
        self.root().join("usr/sbin/dockerd")
    }

    /// The engine's own CLI (the `docker` first in PATH may be another client).
    pub fn cli(self) -> PathBuf {
        self.root().join("usr/bin/docker")
    }

    /// PATH for dockerd: its own containerd, shims and docker-proxy first, then the system's
    /// (runc).
    fn path(self) -> std::ffi::OsString {
        let root = self.root();
        let mut dirs = vec![root.join("usr/bin"), root.join("usr/sbin")];
        dirs.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        std::env::join_paths(dirs).unwrap_or_default()
    }

    fn install_hint(self) -> &'static str {
        match self {
            Self::V20 => "apt-get install docker.io (cargo xtask setup)",
            Self::V26 => "cargo xtask setup unpacks it",
        }
    }
}

/// How a [`DockerHost`] is started.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub engine: Engine,
    /// dockerd flags on top of the per-host paths and `--live-restore`.
    pub args: Vec<String>,
    /// The host's daemon.json.
    pub daemon_json: serde_json::Value,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            engine: Engine::V20,
            args: Vec::new(),
            daemon_json: serde_json::json!({}),
        }
    }
}

/// The image every [`DockerHost`] has once started: `/bin/busybox` of busybox-static with all its
/// applets (`sh`, `ping`, `ip`, `nc`, ...), plus `iperf3` and the libraries it links.
pub const IMAGE: &str = "netd-busybox:latest";
/// Daemon flags used by [`DockerHost::start`]: none, so a host has Docker's default networking
/// (the `docker0` bridge, iptables, ip_forward, masquerading), as a real Docker host has. They
/// only touch the host's network namespace.
pub const DEFAULT_ARGS: &[&str] = &[];

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Every CLI call runs under `timeout`, so a wedged daemon fails a test instead of hanging it.
const CLI_TIMEOUT_SECS: &str = "120";

/// Prepares the host's namespaces, then keeps them alive. Run as
/// `ip netns exec NETNS unshare --uts sh setup.sh DIR HOSTNAME`: `ip netns exec` has already
/// entered the network namespace and made a private mount namespace whose `/` is a recursive
/// slave (so no mount made here is seen outside), and `unshare --uts` a private UTS namespace.
/// `@CGROUP_MOUNTS@` is replaced by the commands that repeat the caller's cgroup mounts.
const SETUP_SCRIPT: &str = r#"#!/bin/sh
set -eu
dir=$1
host=$2

# ip netns exec mounted a fresh sysfs on /sys (so /sys/class/net lists this namespace's
# interfaces), which hides the tmpfs and cgroup mounts under /sys/fs/cgroup. dockerd and runc
# need them ("Devices cgroup isn't mounted"): mount the same hierarchies again, as in the
# root mount namespace.
@CGROUP_MOUNTS@

# Docker 20.10 keeps per-daemon state at fixed paths under /run: the remote-plugin socket
# directory /run/docker/plugins, the managed-plugin exec root (same path) and containerd's shim
# sockets /run/containerd/s/. A per-host /run gives each daemon its own plugin directory and keeps
# the real /run clean. (/var/run is a symlink to /run.)
mount --bind "$dir/run" /run

# dockerd writes its identity key to /etc/docker/key.json whatever its data-root: one per host.
mkdir -p /etc/docker
mount --bind "$dir/etc-docker" /etc/docker

# A distinct hostname per host: libnetwork's serf and swarm use it as the node name.
hostname "$host"

touch "$dir/ready"
# Hold the namespaces for the dockerds started in them with nsenter.
exec sleep infinity
"#;

/// A Docker engine inside an existing network namespace. Drop it before that namespace.
pub struct DockerHost {
    netns: String,
    hostname: String,
    dir: PathBuf,
    socket: PathBuf,
    plugin_dir: PathBuf,
    /// `/<name>`: the cgroup under which the containers of this host are created.
    cgroup_parent: String,
    engine: Engine,
    args: Vec<String>,
    daemon_json: serde_json::Value,
    /// Holds the host's mount and UTS namespaces (the network one belongs to the caller).
    keeper: Option<Child>,
    dockerd: Option<Child>,
}

impl DockerHost {
    /// Starts dockerd inside the network namespace `netns_name` (made by the caller with
    /// `ip netns add`) with hostname `hostname` and [`DEFAULT_ARGS`], and waits until it
    /// answers and has [`IMAGE`].
    pub fn start(netns_name: &str, hostname: &str) -> anyhow::Result<Self> {
        Self::start_with(netns_name, hostname, DEFAULT_ARGS)
    }

    /// Like [`Self::start`], with `args` instead of [`DEFAULT_ARGS`] (for example
    /// `["--bridge=none", "--iptables=false", "--ip-forward=false", "--ip-masq=false"]`).
    pub fn start_with(netns_name: &str, hostname: &str, args: &[&str]) -> anyhow::Result<Self> {
        let options = EngineOptions {
            args: args.iter().map(|&a| a.to_owned()).collect(),
            ..EngineOptions::default()
        };
        Self::start_with_options(netns_name, hostname, &options)
    }

    /// Starts the engine `options` name, with its flags and daemon.json.
    pub fn start_with_options(
        netns_name: &str,
        hostname: &str,
        options: &EngineOptions,
    ) -> anyhow::Result<Self> {
        let engine = options.engine;
        for bin in [engine.dockerd(), engine.cli()] {
            anyhow::ensure!(
                bin.is_file(),
                "{} missing: {}",
                bin.display(),
                engine.install_hint()
            );
        }
        anyhow::ensure!(
            !hostname.is_empty()
                && hostname.len() <= 63
                && hostname
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'),
            "bad hostname {hostname:?}"
        );
        let name = unique_name("dk");
        let dir = std::env::temp_dir().join(format!("netd-{name}"));
        // Not create_dir_all: never adopt (nor, on drop, delete) a directory left by a killed
        // run that had the same pid.
        fs::create_dir(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        let mut host = Self {
            netns: netns_name.to_owned(),
            hostname: hostname.to_owned(),
            socket: dir.join("docker.sock"),
            plugin_dir: dir.join("run/docker/plugins"),
            dir,
            cgroup_parent: format!("/netd-{name}"),
            engine,
            args: options.args.clone(),
            daemon_json: options.daemon_json.clone(),
            keeper: None,
            dockerd: None,
        };
        // From here on, Drop cleans up whatever was made.
        host.setup_namespaces()?;
        host.start_dockerd()?;
        host.ensure_image()?;
        Ok(host)
    }

    /// The unix socket of this engine's API.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The directory this dockerd sees as `/run/docker/plugins`: create `netd.sock` here for
    /// THIS dockerd to find the plugin `netd`.
    pub fn plugin_dir(&self) -> &Path {
        &self.plugin_dir
    }

    /// The host's state directory (daemon log in `dockerd.log`), removed on drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    pub fn netns(&self) -> &str {
        &self.netns
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// A `docker` command for this engine (its own CLI, its socket), to spawn directly.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(self.engine.cli());
        cmd.arg("--host")
            .arg(format!("unix://{}", self.socket.display()))
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env("DOCKER_CONFIG", self.dir.join("cli"));
        cmd
    }

    /// PID of the running dockerd, if any.
    pub fn dockerd_pid(&self) -> Option<u32> {
        self.dockerd.as_ref().map(Child::id)
    }

    /// Runs `docker -H unix://SOCKET ARGS...` (the engine's own CLI) and returns its stdout; the error
    /// carries its stderr.
    pub fn docker(&self, args: &[&str]) -> anyhow::Result<String> {
        self.docker_with_stdin(args, None)
    }

    /// Sends SIGTERM to dockerd and waits for it (and its containerd) to exit. Containers keep
    /// running thanks to `--live-restore`. Does nothing when it is not running.
    pub fn stop(&mut self) {
        let Some(mut child) = self.dockerd.take() else {
            return;
        };
        signal(child.id(), libc::SIGTERM);
        let exited = wait_until(
            STOP_TIMEOUT,
            || !matches!(child.try_wait(), Ok(None)),
            "dockerd to exit on SIGTERM",
        );
        if exited.is_err() {
            eprintln!(
                "docker host {}: dockerd ignored SIGTERM, killing it",
                self.hostname
            );
            let _ = child.kill();
        }
        let _ = child.wait();
        // dockerd stops the containerd it started on the way out; a killed one cannot. (Match
        // its config file: the shims, which must survive, name the containerd socket.)
        let config = self.dir.join("exec/containerd/containerd.toml");
        let leftovers = || pids_where(|pid| cmdline(pid).contains(path_str(&config)));
        let _ = wait_until(
            Duration::from_secs(10),
            || leftovers().is_empty(),
            "dockerd's containerd to exit",
        );
        for pid in leftovers() {
            signal(pid, libc::SIGKILL);
        }
    }

    /// Stops dockerd and starts it again on the same state.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.start_dockerd()
    }

    /// The last `lines` lines of the daemon log (also printed on drop when the test panics).
    pub fn log_tail(&self, lines: usize) -> String {
        let log = fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        // Without the gRPC connection chatter between dockerd and containerd.
        let all: Vec<&str> = log.lines().filter(|l| !l.contains("module=grpc")).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Makes the state directory, writes the setup script and starts the keeper.
    fn setup_namespaces(&mut self) -> anyhow::Result<()> {
        for sub in ["run/docker/plugins", "etc-docker", "data", "exec", "cli"] {
            fs::create_dir_all(self.dir.join(sub))
                .with_context(|| format!("mkdir {}", self.dir.display()))?;
        }
        let script = self.dir.join("setup.sh");
        fs::write(
            &script,
            SETUP_SCRIPT.replace("@CGROUP_MOUNTS@", &cgroup_mount_commands()?),
        )?;
        let log = fs::File::create(self.dir.join("setup.log"))?;
        let keeper = Command::new("ip")
            .args(["netns", "exec", &self.netns, "unshare", "--uts", "sh"])
            .arg(&script)
            .arg(&self.dir)
            .arg(&self.hostname)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot run ip netns exec")?;
        let keeper = self.keeper.insert(keeper);
        let ready = self.dir.join("ready");
        // A keeper that exits ends the wait at once.
        let done = wait_until(
            Duration::from_secs(10),
            || match keeper.try_wait() {
                Ok(Some(status)) => Some(Err(status)),
                _ => ready.exists().then_some(Ok(())),
            },
            "the namespace setup",
        );
        let setup_log = || fs::read_to_string(self.dir.join("setup.log")).unwrap_or_default();
        match done {
            Ok(Ok(())) => Ok(()),
            Ok(Err(status)) => bail!(
                "namespace setup for {} failed ({status}): {}",
                self.hostname,
                setup_log()
            ),
            Err(timeout) => bail!("{} {timeout:#}: {}", self.hostname, setup_log()),
        }
    }

    /// Starts dockerd inside the keeper's namespaces and waits until its API answers.
    fn start_dockerd(&mut self) -> anyhow::Result<()> {
        let keeper = self
            .keeper
            .as_ref()
            .map(Child::id)
            .context("no namespace keeper")?;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("dockerd.log"))?;
        let dir = |sub: &str| self.dir.join(sub);
        fs::write(dir("daemon.json"), format!("{}\n", self.daemon_json))?;
        let child = Command::new("nsenter")
            .args([
                "--target",
                &keeper.to_string(),
                "--mount",
                "--uts",
                "--net",
                "--",
            ])
            .arg(self.engine.dockerd())
            .env("PATH", self.engine.path())
            .arg("--data-root")
            .arg(dir("data"))
            .arg("--exec-root")
            .arg(dir("exec"))
            .arg("--pidfile")
            .arg(dir("dockerd.pid"))
            .arg("--host")
            .arg(format!("unix://{}", self.socket.display()))
            // No daemon.json from the real /etc/docker (the per-host one is empty anyway).
            .arg("--config-file")
            .arg(dir("daemon.json"))
            .args(["--cgroup-parent", &self.cgroup_parent, "--live-restore"])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot run nsenter dockerd")?;
        self.dockerd = Some(child);
        // A dockerd that exits ends the wait at once.
        let ready = wait_until(
            READY_TIMEOUT,
            || {
                if let Some(Ok(Some(status))) = self.dockerd.as_mut().map(Child::try_wait) {
                    return Some(Err(status));
                }
                // The server's version, not just a zero exit: newer CLIs exit 0 from `info`
                // while the daemon is not listening yet.
                self.docker(&["version", "--format", "{{.Server.Version}}"])
                    .is_ok_and(|v| !v.trim().is_empty())
                    .then_some(Ok(()))
            },
            "dockerd's API to answer",
        );
        match ready {
            Ok(Ok(())) => Ok(()),
            Ok(Err(status)) => {
                self.dockerd = None;
                bail!(
                    "dockerd of {} exited ({status}):\n{}",
                    self.hostname,
                    self.log_tail(30)
                )
            }
            Err(timeout) => bail!(
                "dockerd of {}: {timeout:#}:\n{}",
                self.hostname,
                self.log_tail(30)
            ),
        }
    }

    /// Imports [`IMAGE`] unless the daemon already has it (after a restart).
    fn ensure_image(&self) -> anyhow::Result<()> {
        if self
            .docker(&["image", "inspect", "--format", "{{.Id}}", IMAGE])
            .is_ok()
        {
            return Ok(());
        }
        let tar = image_tarball()?;
        self.docker_with_stdin(
            &[
                "import",
                "--change",
                r#"CMD ["/bin/sh"]"#,
                "--change",
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "-",
                IMAGE,
            ],
            Some(tar),
        )?;
        Ok(())
    }

    fn docker_with_stdin(
        &self,
        args: &[&str],
        stdin: Option<Arc<Vec<u8>>>,
    ) -> anyhow::Result<String> {
        let mut child = Command::new("timeout")
            .arg(CLI_TIMEOUT_SECS)
            .arg(self.engine.cli())
            .arg("--host")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            // Not root's ~/.docker, which belongs to the newer client.
            .env("DOCKER_CONFIG", self.dir.join("cli"))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", self.engine.cli().display()))?;
        let writer = match (stdin, child.stdin.take()) {
            (Some(data), Some(mut pipe)) => Some(thread::spawn(move || pipe.write_all(&data))),
            _ => None,
        };
        let out = child.wait_with_output()?;
        if let Some(writer) = writer {
            let _ = writer.join();
        }
        if !out.status.success() {
            bail!(
                "docker {} on {} failed ({}): {}",
                args.join(" "),
                self.hostname,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Kills every process of this host: the containers (found by cgroup, they have mount
    /// namespaces of their own), then everything in the host's mount namespace (dockerd,
    /// containerd, shims) or naming its directory, then the keeper.
    fn kill_everything(&mut self) {
        // The keeper's mount namespace, unless it is ours (which would mean everything).
        let own_mnt_ns = fs::read_link("/proc/self/ns/mnt").ok();
        let mnt_ns = self
            .keeper
            .as_ref()
            .and_then(|k| fs::read_link(format!("/proc/{}/ns/mnt", k.id())).ok())
            .filter(|ns| Some(ns) != own_mnt_ns.as_ref());
        let keeper_pid = self.keeper.as_ref().map(Child::id);
        // With the slash: /tmp/netd-dk1x1 must not match /tmp/netd-dk1x10.
        let dir = format!("{}/", self.dir.display());
        let ours = |pid: u32| {
            let in_mnt_ns =
                mnt_ns.is_some() && fs::read_link(format!("/proc/{pid}/ns/mnt")).ok() == mnt_ns;
            Some(pid) != keeper_pid && (in_mnt_ns || cmdline(pid).contains(&dir))
        };
        // Killed until none is left: a dying shim may still start a process.
        let gone = wait_until(
            Duration::from_secs(10),
            || {
                let mut victims = self.cgroup_pids();
                victims.extend(pids_where(ours));
                for &pid in &victims {
                    signal(pid, libc::SIGKILL);
                }
                victims.is_empty()
            },
            "this host's processes to be gone",
        );
        if let Err(e) = gone {
            eprintln!("cleanup: {e:#}");
        }
        if let Some(mut keeper) = self.keeper.take() {
            let _ = keeper.kill();
            let _ = keeper.wait();
        }
    }

    /// This host's cgroup directories, deepest first, in every mounted hierarchy.
    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        for hierarchy in cgroup_hierarchies() {
            collect_dirs(
                &hierarchy.join(self.cgroup_parent.trim_start_matches('/')),
                &mut dirs,
            );
        }
        dirs
    }

    fn cgroup_pids(&self) -> Vec<u32> {
        self.cgroup_dirs()
            .iter()
            .filter_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|procs| {
                procs
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect()
    }
}

impl Drop for DockerHost {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "--- dockerd log of {} (last lines) ---\n{}",
                self.hostname,
                self.log_tail(40)
            );
        }
        if self.dockerd.is_some() {
            match self.docker(&["ps", "--all", "--quiet"]) {
                Ok(ids) => {
                    let ids: Vec<&str> = ids.split_whitespace().collect();
                    if !ids.is_empty() {
                        let mut args = vec!["rm", "--force", "--volumes"];
                        args.extend(ids);
                        if let Err(e) = self.docker(&args) {
                            eprintln!("cleanup: {e}");
                        }
                    }
                }
                Err(e) => {
                    // A dockerd on its way out (Ctrl-C in a terminal reaches it too) no longer
                    // answers. That is no failure: kill_everything below removes its containers.
                    // One that is still running after a while is wedged: worth a line.
                    let exiting = wait_until(
                        Duration::from_secs(3),
                        || {
                            self.dockerd
                                .as_mut()
                                .is_none_or(|d| !matches!(d.try_wait(), Ok(None)))
                        },
                        "dockerd to exit",
                    );
                    if exiting.is_err() {
                        eprintln!("cleanup: {e}");
                    }
                }
            }
        }
        self.stop();
        // Whatever is still running (containers of a stopped daemon, a wedged containerd...),
        // then the keeper: with it, the mount namespace and all the mounts in it go away.
        self.kill_everything();
        // Removing a cgroup fails (EBUSY) while its last tasks are still exiting.
        let removed = wait_until(
            Duration::from_secs(10),
            || {
                let left: Vec<PathBuf> = self
                    .cgroup_dirs()
                    .into_iter()
                    .filter(|d| fs::remove_dir(d).is_err())
                    .collect();
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(anyhow::anyhow!("{left:?} still there"))
                }
            },
            "this host's cgroups to be removed",
        );
        if let Err(e) = removed {
            eprintln!("cleanup: {e:#}");
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("cleanup: rm -r {}: {e}", self.dir.display());
        }
    }
}

/// Shell commands that mount, under `/sys/fs/cgroup`, what is mounted there in this process's
/// mount namespace (the tmpfs and every cgroup v1/v2 hierarchy, in mount order).
fn cgroup_mount_commands() -> anyhow::Result<String> {
    let mounts = fs::read_to_string("/proc/self/mounts")?;
    let mut commands = Vec::new();
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [source, target, fstype, options, ..] = fields[..] else {
            continue;
        };
        if target == "/sys/fs/cgroup" || target.starts_with("/sys/fs/cgroup/") {
            commands.push(format!(
                "mkdir -p '{target}' && mount -t '{fstype}' -o '{options}' '{source}' '{target}'"
            ));
        }
    }
    anyhow::ensure!(!commands.is_empty(), "nothing mounted under /sys/fs/cgroup");
    Ok(commands.join("\n"))
}

/// Mount points of the cgroup hierarchies (v1 and v2) in this mount namespace.
fn cgroup_hierarchies() -> Vec<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields[..] {
                [_, target, "cgroup" | "cgroup2", ..] => Some(PathBuf::from(target)),
                _ => None,
            }
        })
        .collect()
}

/// `dir` and its subdirectories, deepest first.
fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_dirs(&entry.path(), out);
        }
    }
    out.push(dir.to_owned());
}

fn pids_where(mut pred: impl FnMut(u32) -> bool) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != std::process::id() && pred(pid))
        .collect()
}

fn cmdline(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .unwrap_or_default()
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap_or("/nonexistent")
}

fn signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) };
}

/// The gzipped rootfs of [`IMAGE`], built once per process.
fn image_tarball() -> anyhow::Result<Arc<Vec<u8>>> {
    static TARBALL: Mutex<Option<Arc<Vec<u8>>>> = Mutex::new(None);
    let mut cached = TARBALL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(tar) = cached.as_ref() {
        return Ok(tar.clone());
    }
    let tar = Arc::new(build_image_tarball()?);
    *cached = Some(tar.clone());
    Ok(tar)
}

/// Removes a directory tree when dropped.
struct TempTree(PathBuf);

impl Drop for TempTree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A rootfs of busybox-static (a symlink per applet), iperf3 with its libraries, and a minimal
/// /etc, as a .tar.gz for `docker import`.
fn build_image_tarball() -> anyhow::Result<Vec<u8>> {
    const BUSYBOX: &str = "/bin/busybox";
    const IPERF3: &str = "/usr/bin/iperf3";
    // ldd fails on a static binary ("not a dynamic executable").
    anyhow::ensure!(
        Path::new(BUSYBOX).is_file() && sh("ldd", &[BUSYBOX]).is_err(),
        "{BUSYBOX} is not a static busybox: apt-get install busybox-static"
    );
    let tree = TempTree(std::env::temp_dir().join(format!("netd-{}", unique_name("dki"))));
    let root = tree.0.join("rootfs");
    let copy = |src: &str| -> anyhow::Result<()> {
        let dst = root.join(src.trim_start_matches('/'));
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::copy(src, &dst).with_context(|| format!("copy {src}"))?;
        Ok(())
    };
    copy(BUSYBOX)?;
    for applet in sh(BUSYBOX, &["--list-full"])?.lines() {
        let link = root.join(applet.trim());
        if link.exists() {
            continue;
        }
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent)?;
        }
        std::os::unix::fs::symlink(BUSYBOX, &link)?;
    }
    if Path::new(IPERF3).is_file() {
        copy(IPERF3)?;
        // `libfoo.so => /lib/x86_64-linux-gnu/libfoo.so (0x...)` and `/lib64/ld-linux... (0x...)`
        for lib in sh("ldd", &[IPERF3])?
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
        {
            copy(lib)?;
        }
    } else {
        eprintln!("note: {IPERF3} not found, {IMAGE} is built without it (apt-get install iperf3)");
    }
    for dir in ["tmp", "root", "proc", "sys", "dev", "etc"] {
        fs::create_dir_all(root.join(dir))?;
    }
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )?;
    fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    let out = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["--numeric-owner", "-czf", "-", "."])
        .output()
        .context("cannot run tar")?;
    anyhow::ensure!(
        out.status.success(),
        "tar failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}
