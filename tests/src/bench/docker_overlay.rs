//! `docker-overlay`: the real Docker 20.10 classic multi-host overlay, the thing netd replaces.
//!
//! Same underlay as the other paths (two host namespaces on the veth `ul`, 10.201.0.1/.2), and on
//! it what an operator of Docker ≤ 20.10 runs: etcd with the v2 API (`--enable-v2=true`: 20.10's
//! libkv speaks nothing else) in host 1, a dockerd per host with `--cluster-store` and
//! `--cluster-advertise`, one `-d overlay` network and one container on each host at the
//! addresses the other paths use. Docker builds its own datapath (bridge + kernel vxlan device in
//! a sandbox namespace per network, peers learned over serf); the bench only enters the two
//! containers' network namespaces.
//!
//! How this was made to work on this machine: docs/docker.md, "Docker's classic overlay"
//! (hostnames must differ, cluster-advertise is an `IP:port` or a real interface, one long-lived
//! container per host).

use std::{
    path::PathBuf,
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::{
    interrupt,
    path::{BenchPath, Built, DOCKER_OVERLAY, Endpoints},
    process,
};
use crate::{
    cluster::{Etcd, EtcdSettings, tempdir},
    docker::{DockerHost, IMAGE},
    lab::{self, CONTAINER_IPS, VTEPS},
    netns::Netns,
};

const NETWORK: &str = "bench";
const SUBNET: &str = "172.31.0.0/16";
/// Only an identity and serf's bind address for libkv's overlay: nothing listens on it.
const ADVERTISE_PORT: u16 = 2376;
/// Network propagation and serf peer learning take about a second; generous for a loaded box.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct DockerOverlay;

impl BenchPath for DockerOverlay {
    fn name(&self) -> &'static str {
        DOCKER_OVERLAY
    }
    fn describe(&self) -> &'static str {
        "Docker 20.10 classic overlay over etcd (cluster-store): bridge + kernel vxlan in Docker's sandbox netns, peers via serf"
    }
    fn build(&self, tag: &str) -> anyhow::Result<Built> {
        let lab = DockerLab::new(tag)?;
        let endpoints = Endpoints {
            client: lab.container_netns[0].clone(),
            server: lab.container_netns[1].clone(),
            server_addr: CONTAINER_IPS[1],
        };
        Ok(Built::new(endpoints, lab))
    }
}

/// Fields drop in order: the engines (which remove their containers and stop containerd), etcd,
/// its directory, then the host namespaces with the underlay.
struct DockerLab {
    container_netns: [PathBuf; 2],
    _dockers: [DockerHost; 2],
    _etcd: Etcd,
    _dir: tempdir::Dir,
    _hosts: [Netns; 2],
}

impl DockerLab {
    fn new(tag: &str) -> anyhow::Result<Self> {
        // Before making anything (DockerHost checks for dockerd itself), so a machine without
        // etcd gets a one-line "skipped".
        anyhow::ensure!(
            crate::on_path("etcd"),
            "etcd missing: apt-get install etcd-server"
        );
        // Declared in reverse drop order: a failing step drops what the earlier ones made.
        let hosts = lab::underlay(tag)?;
        let dir = tempdir::Dir::new(tag)?;
        let etcd = Etcd::start_in(
            &hosts[0],
            VTEPS[0],
            dir.0.join("etcd"),
            &["--enable-v2=true"],
            &EtcdSettings::default(),
        )?;
        interrupt::check()?;
        let dockers = start_engines(tag, &hosts)?;
        interrupt::check()?;

        dockers[0]
            .docker(&[
                "network", "create", "--driver", "overlay", "--subnet", SUBNET, NETWORK,
            ])
            .context("docker network create -d overlay")?;
        // Global scope: host 2 reads it from etcd.
        wait_for(|| {
            dockers[1]
                .docker(&["network", "inspect", "--format", "{{.Scope}}", NETWORK])
                .map(|scope| scope.trim() == "global")
        })
        .context("host 2 does not see the overlay network")?;

        let mut container_netns = Vec::new();
        for (i, docker) in dockers.iter().enumerate() {
            interrupt::check()?;
            container_netns.push(run_container(docker, i)?);
        }
        let container_netns: [PathBuf; 2] = container_netns
            .try_into()
            .map_err(|_| anyhow::anyhow!("expected two containers"))?;

        // Host 1 learns container 2's MAC and VTEP over serf; the bench's own check gives up
        // after a few seconds, so wait for it here.
        let addr = CONTAINER_IPS[1].to_string();
        wait_for(|| {
            process::run(
                &container_netns[0],
                "ping",
                &["-c", "1", "-W", "1", &addr],
                Duration::from_secs(3),
            )
            .map(|_| true)
        })
        .with_context(|| {
            format!(
                "container 1 cannot ping container 2 ({addr}); dockerd log of host 1:\n{}",
                dockers[0].log_tail(15)
            )
        })?;

        Ok(Self {
            container_netns,
            _dockers: dockers,
            _etcd: etcd,
            _dir: dir,
            _hosts: hosts,
        })
    }
}

/// Starts both engines at once (each takes seconds: daemon start, image import). Host `i`
/// advertises its underlay address; hostnames differ, as serf needs.
fn start_engines(tag: &str, hosts: &[Netns; 2]) -> anyhow::Result<[DockerHost; 2]> {
    let store = format!("--cluster-store=etcd://{}:2379", VTEPS[0]);
    let [first, second] = thread::scope(|scope| {
        let started = [0, 1].map(|i| {
            let store = &store;
            scope.spawn(move || {
                let advertise = format!("--cluster-advertise={}:{ADVERTISE_PORT}", VTEPS[i]);
                // No docker0: the overlay is what is measured.
                let mut args = vec!["--bridge=none"];
                args.extend([store.as_str(), advertise.as_str()]);
                DockerHost::start_with(&hosts[i].name, &format!("{tag}-docker{}", i + 1), &args)
            })
        });
        started.map(|handle| {
            handle
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("dockerd start-up panicked")))
        })
    });
    // If one failed, the other drops (and cleans up) here.
    Ok([first?, second?])
}

/// Runs container `i` (at `CONTAINER_IPS[i]`, kept alive with `sleep`) on the overlay, and
/// returns its network namespace file. The containers stay for the whole run: removing the last
/// one on a host trips 20.10's watchMiss netns leak (docs/docker.md#watchmiss-netns-leak).
fn run_container(docker: &DockerHost, i: usize) -> anyhow::Result<PathBuf> {
    let name = format!("c{}", i + 1);
    let ip = CONTAINER_IPS[i].to_string();
    docker
        .docker(&[
            "run",
            "--detach",
            "--name",
            &name,
            "--network",
            NETWORK,
            "--ip",
            &ip,
            IMAGE,
            "sleep",
            "1000000000",
        ])
        .with_context(|| format!("docker run {name}"))?;
    let pid = docker.docker(&["inspect", "--format", "{{.State.Pid}}", &name])?;
    let pid: u32 = pid
        .trim()
        .parse()
        .with_context(|| format!("pid of {name}: {pid:?}"))?;
    anyhow::ensure!(pid != 0, "{name} is not running");
    Ok(PathBuf::from(format!("/proc/{pid}/ns/net")))
}

/// Polls `check` until it returns `Ok(true)`; fails with its last error after
/// [`CONVERGE_TIMEOUT`], or at once on Ctrl-C.
fn wait_for(mut check: impl FnMut() -> anyhow::Result<bool>) -> anyhow::Result<()> {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        interrupt::check()?;
        let last = match check() {
            Ok(true) => return Ok(()),
            Ok(false) => anyhow::anyhow!("not yet"),
            Err(e) => e,
        };
        if Instant::now() > deadline {
            return Err(last.context(format!("after {CONVERGE_TIMEOUT:?}")));
        }
        thread::sleep(Duration::from_millis(200));
    }
}
