//! A cluster on one machine: N host namespaces on a switch (a bridge in its own namespace), a real
//! store server on the switch (tests/src/stores.rs; or the embedded store) and a real
//! `netd daemon` per host, started with `nsenter` so that it keeps the machine's bpffs
//! (docs/architecture.md). Containers are namespaces the tests create.
//!
//! ```text
//!   sw: br0 10.201.0.254/24, etcd :2379
//!    |-- h1: ul 10.201.0.1/24, netd daemon
//!    |-- h2: ul 10.201.0.2/24, netd daemon
//!    ...
//! ```

use std::{
    fs,
    net::{Ipv4Addr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

use anyhow::{Context as _, bail};
use netd::api::{LinkState, Status};
use netd_store::Backend;
use serde::de::DeserializeOwned;

use crate::{ip, netns::Netns, sh};

pub use crate::stores::{
    Consul, ConsulSettings, Etcd, EtcdSettings, STORE_IP, STORE_MEMBERS, StoreKind, StoreServer,
    StoreSetup, consul_bin,
};

/// The seed's network (`docker network create -d overlay --subnet 172.31.0.0/16 --gateway
/// 172.31.0.2 -o mtu=1200 mynet`), as `netd` arguments.
pub const SEED_NETWORK: &[&str] = &[
    "network",
    "create",
    "-d",
    "overlay",
    "--subnet",
    "172.31.0.0/16",
    "--gateway",
    "172.31.0.2",
    "-o",
    "mtu=1200",
    "mynet",
];

/// One simulated host with its daemon.
pub struct ClusterHost {
    pub name: String,
    pub vtep: Ipv4Addr,
    pub run_dir: PathBuf,
    pub pin_dir: PathBuf,
    pub log: PathBuf,
    daemon: Option<Child>,
    daemon_args: Vec<String>,
    pub ns: Netns,
}

pub struct Cluster {
    pub hosts: Vec<ClusterHost>,
    pub store_server: Option<StoreServer>,
    pub store_url: String,
    /// The files the daemons get as `--store-cacert`, `--store-cert`, `--store-key`.
    pub store_tls: netd_store::tls::TlsFiles,
    /// Containers made by [`Cluster::container`]; dropped before the hosts.
    pub containers: Vec<Netns>,
    pub switch: Netns,
    pub dir: tempdir::Dir,
}

/// A temporary directory removed on drop (no extra crate needed).
pub mod tempdir {
    use std::path::PathBuf;

    pub struct Dir(pub PathBuf);

    impl Dir {
        pub fn new(tag: &str) -> std::io::Result<Self> {
            let path = std::env::temp_dir().join(crate::unique_name(&format!("netd-{tag}-")));
            std::fs::create_dir_all(&path)?;
            Ok(Self(path))
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            if std::env::var_os("NETD_KEEP_LAB").is_none() {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }
}

impl Cluster {
    /// `hosts` hosts, their daemons started and registered, sharing `store`. `lease_ttl`:
    /// `netd daemon --lease-ttl`, or `None` for the daemon's default.
    pub fn new(
        tag: &str,
        hosts: usize,
        store: impl Into<StoreSetup>,
        lease_ttl: impl Into<Option<u64>>,
    ) -> anyhow::Result<Self> {
        Self::new_with(tag, hosts, store, lease_ttl, |_, _| {
            Ok(vec!["--no-docker".to_string()])
        })
    }

    /// Like [`Self::new`]; `daemon_args(i, host_netns_name)` runs once the host's namespace exists
    /// and returns extra `netd daemon` arguments (the Docker tests start a dockerd there).
    pub fn new_with(
        tag: &str,
        hosts: usize,
        store: impl Into<StoreSetup>,
        lease_ttl: impl Into<Option<u64>>,
        mut daemon_args: impl FnMut(usize, &str) -> anyhow::Result<Vec<String>>,
    ) -> anyhow::Result<Self> {
        let store = store.into();
        let lease_ttl = lease_ttl.into();
        let dir = tempdir::Dir::new(tag)?;
        let switch = Netns::new(&format!("{tag}s"))?;
        switch.ip(&["link", "add", "br0", "type", "bridge"])?;
        switch.ip(&["addr", "add", &format!("{STORE_IP}/24"), "dev", "br0"])?;
        if matches!(
            store.kind,
            StoreKind::EtcdCluster | StoreKind::ConsulCluster
        ) {
            for ip in STORE_MEMBERS {
                switch.ip(&["addr", "add", &format!("{ip}/24"), "dev", "br0"])?;
            }
        }
        switch.ip(&["link", "set", "br0", "up"])?;
        let (store_server, store_url) = StoreServer::start(&store, &switch, STORE_IP, &dir.0)?;
        let store_tls = store_server
            .as_ref()
            .map(StoreServer::client_files)
            .unwrap_or_default();
        let mut cluster = Self {
            hosts: Vec::new(),
            store_server,
            store_url,
            store_tls,
            containers: Vec::new(),
            switch,
            dir,
        };
        for i in 0..hosts {
            cluster.add_host(i, lease_ttl, &mut daemon_args)?;
        }
        for i in 0..hosts {
            cluster.wait_registered(i, hosts)?;
        }
        Ok(cluster)
    }

    /// Adds a host and starts its daemon (`--no-docker` and `daemon_args`), without waiting for
    /// it to register: for the tests of a store that does not let it. Returns its index.
    pub fn add_unregistered_host(
        &mut self,
        lease_ttl: Option<u64>,
        daemon_args: &[&str],
    ) -> anyhow::Result<usize> {
        let i = self.hosts.len();
        let mut args = vec!["--no-docker".to_string()];
        args.extend(daemon_args.iter().map(|a| a.to_string()));
        self.add_host(i, lease_ttl, &mut |_, _| Ok(args.clone()))?;
        Ok(i)
    }

    fn add_host(
        &mut self,
        i: usize,
        lease_ttl: Option<u64>,
        extra_args: &mut impl FnMut(usize, &str) -> anyhow::Result<Vec<String>>,
    ) -> anyhow::Result<()> {
        let ns = Netns::new("ch")?;
        let port = format!("sw{}", crate::unique_name("").trim_start_matches('x'));
        let port = port.chars().take(15).collect::<String>();
        ip(&[
            "link",
            "add",
            "ul",
            "netns",
            &ns.name,
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            &self.switch.name,
        ])?;
        self.switch
            .ip(&["link", "set", &port, "master", "br0", "up"])?;
        let vtep = Ipv4Addr::new(10, 201, 0, (i + 1) as u8);
        ns.ip(&["addr", "add", &format!("{vtep}/24"), "dev", "ul"])?;
        ns.ip(&["link", "set", "ul", "up"])?;
        ns.exec("sysctl", &["-qw", "net.ipv4.conf.ul.forwarding=1"])?;
        let name = format!("h{}", i + 1);
        let run_dir = self.dir.0.join(&name);
        let pin_dir = PathBuf::from(netd::bpffs::BPFFS_ROOT).join(format!("netd-{}", ns.name));
        let mut daemon_args = vec![
            "daemon".to_string(),
            "--store".into(),
            self.store_url.clone(),
            "--advertise".into(),
            vtep.to_string(),
            "--uplink".into(),
            "ul".into(),
            "--run-dir".into(),
            run_dir.display().to_string(),
            "--pin-dir".into(),
            pin_dir.display().to_string(),
            "--hostname".into(),
            name.clone(),
            "--log-level".into(),
            "info".into(),
        ];
        let tls = &self.store_tls;
        let flags = ["--store-cacert", "--store-cert", "--store-key"];
        for (flag, file) in flags.into_iter().zip([&tls.ca, &tls.cert, &tls.key]) {
            if let Some(file) = file {
                daemon_args.extend([flag.to_string(), file.path.display().to_string()]);
            }
        }
        if let Some(ttl) = lease_ttl {
            daemon_args.extend(["--lease-ttl".into(), ttl.to_string()]);
        }
        daemon_args.extend(extra_args(i, &ns.name)?);
        let mut host = ClusterHost {
            log: self.dir.0.join(format!("{name}.log")),
            name,
            vtep,
            run_dir,
            pin_dir,
            daemon: None,
            daemon_args,
            ns,
        };
        host.start()?;
        self.hosts.push(host);
        Ok(())
    }

    /// Waits until host `i`'s daemon sees `expected` hosts.
    pub fn wait_registered(&self, i: usize, expected: usize) -> anyhow::Result<()> {
        crate::wait_until(
            Duration::from_secs(15),
            || {
                let status: Status = self.netd_as(i, &["status"]).ok()?;
                (status.hosts.len() == expected && status.store.state == LinkState::Connected)
                    .then_some(())
            },
            "the store to be connected",
        )
        .with_context(|| {
            format!(
                "host {} did not see {expected} hosts; log: {}",
                i + 1,
                self.hosts[i].log.display()
            )
        })
    }

    /// Runs the netd CLI against host `i`'s daemon.
    pub fn netd(&self, i: usize, args: &[&str]) -> anyhow::Result<String> {
        let bin = crate::netd_bin()?;
        let socket = self.hosts[i]
            .run_dir
            .join("netd.sock")
            .display()
            .to_string();
        let pins = self.hosts[i].pin_dir.display().to_string();
        let mut all = vec!["--socket", socket.as_str(), "--pin-dir", pins.as_str()];
        all.extend_from_slice(args);
        sh(bin.to_str().context("netd path")?, &all)
    }

    /// Like [`Self::netd`] with `--json`, read as the daemon's answer type: `netd_as::<Status>
    /// (0, &["status"])`, `netd_as::<Vec<Network>>(0, &["network", "ls"])` (`netd::api`).
    pub fn netd_as<T: DeserializeOwned>(&self, i: usize, args: &[&str]) -> anyhow::Result<T> {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.netd(i, &all)?;
        serde_json::from_str(&out)
            .with_context(|| format!("netd {} answered {out}", args.join(" ")))
    }

    /// Runs the CLI on host `i` where it must fail: its exit code (compare with
    /// `ErrorKind::exit_code`, `netd::api::error`) and its stderr.
    pub fn netd_error(&self, i: usize, args: &[&str]) -> anyhow::Result<(u8, String)> {
        let out = Command::new(crate::netd_bin()?)
            .arg("--socket")
            .arg(self.hosts[i].run_dir.join("netd.sock"))
            .arg("--pin-dir")
            .arg(&self.hosts[i].pin_dir)
            .args(args)
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        match out.status.code().map(u8::try_from) {
            Some(Ok(code)) if code != 0 => Ok((code, stderr)),
            _ => bail!(
                "netd {} did not fail: {}: {stderr}",
                args.join(" "),
                out.status
            ),
        }
    }

    /// `POST path` with a JSON `body` straight to host `i`'s API socket, as a client other than
    /// the CLI would send it (the typed client cannot send what the types refuse): the status
    /// code and the body of the answer.
    pub fn api_post(&self, i: usize, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
        post_unix(
            &self.hosts[i].run_dir.join(netd::api::SOCKET_NAME),
            path,
            body,
        )
    }

    /// `netd endpoint add` on host `i`: endpoint `name` of `network` in container `container`
    /// (`extra`: more flags, before the name).
    pub fn endpoint_add(
        &self,
        i: usize,
        network: &str,
        container: usize,
        name: &str,
        extra: &[&str],
    ) -> anyhow::Result<netd::api::Endpoint> {
        let netns = self.containers[container].name.clone();
        let mut args = vec!["endpoint", "add", "--network", network, "--netns", &netns];
        args.extend_from_slice(extra);
        args.push(name);
        self.netd_as(i, &args)
    }

    /// A new container namespace (removed with the cluster).
    pub fn container(&mut self) -> anyhow::Result<usize> {
        self.containers.push(Netns::new("cc")?);
        Ok(self.containers.len() - 1)
    }

    /// The FDB of host `i` as `netd maps dump fdb --json` shows it: one object per entry, keyed
    /// by column (a map dump's rows are built as JSON by `netd::datapath::inspect`, not typed).
    pub fn fdb(&self, i: usize) -> anyhow::Result<Vec<serde_json::Map<String, serde_json::Value>>> {
        self.netd_as(i, &["maps", "dump", "fdb"])
    }
}

/// `POST path` with a JSON `body` over HTTP/1.1 on the unix socket at `socket` (netd's API, or
/// its Docker plugin socket): the status code and the body of the answer.
pub fn post_unix(socket: &Path, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::os::unix::net::UnixStream::connect(socket)
        .with_context(|| format!("connect to {}", socket.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: netd\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    status_and_body(&answer)
}

/// `METHOD path` over HTTP/1.1 from inside the namespace at `netns`, without a body: the
/// status code and the body of the answer (read until the server closes).
pub fn http(
    netns: &Path,
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
) -> anyhow::Result<(u16, String)> {
    let netns = netns.to_path_buf();
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    let answer = thread::spawn(move || -> anyhow::Result<String> {
        use std::io::{Read as _, Write as _};
        let _inside = netd::netns::enter(&netns)?;
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(request.as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the HTTP client thread panicked"))??;
    status_and_body(&answer)
}

/// The status code and the body of an HTTP/1.1 answer read until the server closed.
fn status_and_body(answer: &str) -> anyhow::Result<(u16, String)> {
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .with_context(|| format!("no end of headers in {answer:?}"))?;
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    Ok((code, body.to_string()))
}

impl ClusterHost {
    /// Starts (or restarts) the daemon in the host's namespace and waits for its socket.
    pub fn start(&mut self) -> anyhow::Result<()> {
        let bin = crate::netd_bin()?;
        let socket = self.run_dir.join("netd.sock");
        let _ = fs::remove_file(&socket);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.ns.path().display()))
            .arg(bin)
            .args(&self.daemon_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start netd daemon")?;
        self.daemon = Some(child);
        // Loading the datapath takes about 15 s under the kernel tier's emulation (wait_until
        // stretches the deadline there). A daemon that exits ends the wait at once.
        let daemon = &mut self.daemon;
        let opened = crate::wait_until(
            Duration::from_secs(15),
            || match daemon.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                Some(status) => Some(Err(status)),
                None => socket.exists().then_some(Ok(())),
            },
            "netd daemon to open its socket",
        );
        let log = || fs::read_to_string(&self.log).unwrap_or_default();
        match opened {
            Ok(Ok(())) => {}
            Ok(Err(status)) => bail!("netd daemon exited ({status}); log: {}", log()),
            Err(timeout) => bail!("{timeout:#}; log: {}", log()),
        }
        Ok(())
    }

    /// Sets a `netd daemon` option for the next [`Self::start`] (replacing its value, or adding
    /// it).
    pub fn set_arg(&mut self, flag: &str, value: &str) {
        match self.daemon_args.iter().position(|a| a == flag) {
            Some(i) if i + 1 < self.daemon_args.len() => self.daemon_args[i + 1] = value.into(),
            _ => self
                .daemon_args
                .extend([flag.to_string(), value.to_string()]),
        }
    }

    /// Drops a `netd daemon` option (and its value) for the next [`Self::start`].
    pub fn remove_arg(&mut self, flag: &str) {
        if let Some(i) = self.daemon_args.iter().position(|a| a == flag) {
            let end = (i + 2).min(self.daemon_args.len());
            self.daemon_args.drain(i..end);
        }
    }

    /// The daemon's process id (nsenter execs netd, so it is netd's).
    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    /// Whether the daemon has exited, and how.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.daemon
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM, as systemd stops a service; returns how the daemon exited, `None` if it was
    /// still running after `timeout` (then it is killed).
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.daemon.as_mut()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let exited = crate::wait_until(
            timeout,
            || child.try_wait().ok().flatten(),
            "netd daemon to exit on SIGTERM",
        );
        match exited {
            Ok(status) => {
                self.daemon = None;
                Some(status)
            }
            Err(_) => {
                self.kill();
                None
            }
        }
    }

    /// `kill -9` of the daemon: the datapath stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ClusterHost {
    fn drop(&mut self) {
        self.kill();
        // Unpinning the links detaches the programs, removing the directory frees the maps; the
        // namespace (with the uplink and endpoint veths) goes when `ns` drops after this.
        let _ = fs::remove_dir_all(&self.pin_dir);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Containers first (their veth peers live in the hosts), then hosts, then the store.
        self.containers.clear();
        self.hosts.clear();
        self.store_server = None;
    }
}

impl Cluster {
    /// Runs `work` with a client of the cluster's store, from inside the switch namespace (where
    /// the store listens), as an operator or another host would reach it.
    pub fn with_store<T, F, Fut>(&self, work: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(std::sync::Arc<netd_store::Store>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = anyhow::Result<T>>,
    {
        let config = netd_store::StoreConfig::from_env(&self.store_url, &self.store_tls)?;
        let netns = self.switch.path();
        thread::spawn(move || -> anyhow::Result<T> {
            let _inside = netd::netns::enter(&netns)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let store = std::sync::Arc::new(config.connect().await?);
                work(store).await
            })
        })
        .join()
        .map_err(|_| anyhow::anyhow!("store client panicked"))?
    }

    /// Writes a raw value into the store, bypassing netd (as an operator with etcdctl could).
    pub fn store_put(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        let (key, value) = (key.to_string(), value.to_vec());
        self.with_store(move |store| async move {
            store.put(&key, &value).await?;
            Ok(())
        })
    }

    /// Every endpoint record and address claim in the store, in either key layout, sorted.
    pub fn store_owned(&self) -> anyhow::Result<Vec<Owned>> {
        self.with_store(|store| async move {
            let listing = store.list(netd_store::keys::ROOT).await?;
            let mut owned: Vec<Owned> = listing
                .kvs
                .into_iter()
                .filter_map(|kv| {
                    let (kind, host, network, name) = match netd_store::keys::parse(&kv.key)? {
                        netd_store::keys::Key::Endpoint { host, network, id } => {
                            (OwnedKind::Endpoint, host, network, id)
                        }
                        netd_store::keys::Key::Claim { host, network, ip } => {
                            (OwnedKind::Claim, host, network, ip)
                        }
                        _ => return None,
                    };
                    Some(Owned {
                        kind,
                        under_host: host.map(str::to_string),
                        network: network.to_string(),
                        name: name.to_string(),
                        value: String::from_utf8_lossy(&kv.value).into_owned(),
                    })
                })
                .collect();
            owned.sort();
            Ok(owned)
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum OwnedKind {
    Endpoint,
    Claim,
}

/// An endpoint record or an address claim as the store holds it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Owned {
    pub kind: OwnedKind,
    /// The host whose prefix it is under (`None`: the shared layout).
    pub under_host: Option<String>,
    pub network: String,
    /// The endpoint's name, or the claimed address.
    pub name: String,
    /// The record, or the claim's owner.
    pub value: String,
}
