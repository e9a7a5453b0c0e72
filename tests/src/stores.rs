//! The store servers the tests run against, started as a user starts them: etcd as one member
//! or three, Consul as one server or three, each inside a network namespace, on an address of
//! it, with the server's own defaults. A setting a test changes is that test's subject: it
//! passes it here explicitly ([`ConsulSettings`]) and says why.
//!
//! A store that serves TLS gets its certificates made when it starts (`consul tls` for Consul,
//! as its docs make them; [`crate::pki`] for etcd), and says which files a client needs
//! ([`StoreServer::client_files`]: the daemons get them as `--store-cacert`, `--store-cert`,
//! `--store-key`).
//!
//! [`StoreServer::start`] starts one kind on the labs' switch (tests/src/cluster.rs);
//! [`StoreLab`] starts one in a namespace of its own for the store's own tests
//! (tests/tests/store.rs), whose code then runs inside that namespace.

use std::{
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use netd_store::tls::TlsFiles;

use crate::{
    cluster::tempdir,
    netns::Netns,
    pki::{CertFiles, Pki},
    sh, wait_until,
};

/// The single store server's address on the labs' switch.
pub const STORE_IP: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 254);

/// The members of the three-member store clusters, on the switch.
pub const STORE_MEMBERS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(10, 201, 0, 251),
    Ipv4Addr::new(10, 201, 0, 252),
    Ipv4Addr::new(10, 201, 0, 253),
];

/// How long a store server gets to take writes after it started. A Consul server at its
/// defaults (`raft_multiplier = 5`) elects itself after about 9 s, three of them a little later.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// Which store the daemons share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Etcd,
    Consul,
    Embedded,
    /// Three etcd members; the daemons are given all three.
    EtcdCluster,
    /// Three Consul servers; the daemons are given all three.
    ConsulCluster,
}

/// Consul settings a test changes from the server's defaults: each is the subject of the test
/// that sets it, which says why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsulSettings {
    /// `performance { raft_multiplier = N }` (Consul's default is 5, for small dev VMs; it
    /// advises 1 for production servers).
    pub raft_multiplier: Option<u8>,
    /// Serve HTTPS only (port 8501), with a CA and server certificate made by `consul tls`.
    pub tls: bool,
    /// ACLs on, denying by default, with this management ("master") token.
    pub acl_master_token: Option<String>,
    /// With `tls`: require a client certificate signed by the CA (`verify_incoming`), one made
    /// by `consul tls cert create -client` for the clients. One server: the servers of a
    /// cluster each make their own CA.
    pub verify_incoming: bool,
}

/// etcd settings a test changes from the server's defaults: each is the subject of the test
/// that sets it, which says why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EtcdSettings {
    /// Serve clients over HTTPS only (`--cert-file`, `--key-file`), with a certificate for its
    /// address signed by a CA made for the lab (`etcd+https://`).
    pub tls: bool,
    /// With `tls`: require a client certificate signed by that CA (`--client-cert-auth
    /// --trusted-ca-file`), one made for the clients.
    pub client_cert_auth: bool,
}

/// A store kind and the settings its servers get (none but the defaults unless a test says so).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreSetup {
    pub kind: StoreKind,
    pub consul: ConsulSettings,
    pub etcd: EtcdSettings,
}

impl From<StoreKind> for StoreSetup {
    fn from(kind: StoreKind) -> Self {
        Self {
            kind,
            consul: ConsulSettings::default(),
            etcd: EtcdSettings::default(),
        }
    }
}

/// A running store server (one, or the members of a cluster), which the outage tests stop and
/// start again.
pub enum StoreServer {
    Etcd(Etcd),
    Consul(Consul),
    EtcdCluster(Vec<Etcd>),
    ConsulCluster(Vec<Consul>),
}

impl StoreServer {
    /// Starts `setup`'s servers in `netns` (one at `single`, a cluster at [`STORE_MEMBERS`],
    /// which must be addresses of the namespace), their data under `dir`; returns them (none for
    /// the embedded store) and the `--store` URL that reaches them.
    pub fn start(
        setup: &StoreSetup,
        netns: &Netns,
        single: Ipv4Addr,
        dir: &Path,
    ) -> anyhow::Result<(Option<Self>, String)> {
        Ok(match setup.kind {
            StoreKind::Etcd => {
                let etcd = Etcd::start_in(netns, single, dir.join("etcd"), &[], &setup.etcd)?;
                let url = etcd.url();
                (Some(Self::Etcd(etcd)), url)
            }
            StoreKind::Consul => {
                let consul =
                    Consul::start_in(netns, single, dir.join("consul"), setup.consul.clone())?;
                let url = consul.url();
                (Some(Self::Consul(consul)), url)
            }
            StoreKind::Embedded => (None, format!("file://{}", dir.join("store").display())),
            StoreKind::EtcdCluster => {
                let members = Etcd::cluster_in(netns, &STORE_MEMBERS, dir, &setup.etcd)?;
                let urls = STORE_MEMBERS.map(|ip| format!("{ip}:2379")).join(",");
                let scheme = etcd_scheme(&setup.etcd);
                (
                    Some(Self::EtcdCluster(members)),
                    format!("{scheme}://{urls}"),
                )
            }
            StoreKind::ConsulCluster => {
                let servers = Consul::cluster_in(netns, &STORE_MEMBERS, dir, &setup.consul)?;
                let urls = servers
                    .iter()
                    .map(|s| s.address())
                    .collect::<Vec<_>>()
                    .join(",");
                (
                    Some(Self::ConsulCluster(servers)),
                    format!("{}://{urls}", servers_scheme(&setup.consul)),
                )
            }
        })
    }

    /// The files a client of these servers needs (`--store-cacert`, and `--store-cert` and
    /// `--store-key` where the servers require a client certificate); none for plain http.
    pub fn client_files(&self) -> TlsFiles {
        match self {
            Self::Etcd(s) => s.client_files(),
            Self::Consul(s) => s.client_files(),
            Self::EtcdCluster(m) => m.first().map(Etcd::client_files).unwrap_or_default(),
            Self::ConsulCluster(m) => m.first().map(Consul::client_files).unwrap_or_default(),
        }
    }

    /// The etcd server, if that is what runs (the first member of a cluster).
    pub fn etcd(&self) -> Option<&Etcd> {
        match self {
            Self::Etcd(etcd) => Some(etcd),
            Self::EtcdCluster(members) => members.first(),
            _ => None,
        }
    }

    /// The Consul server, if that is what runs (the first server of a cluster).
    pub fn consul(&self) -> Option<&Consul> {
        match self {
            Self::Consul(consul) => Some(consul),
            Self::ConsulCluster(servers) => servers.first(),
            _ => None,
        }
    }

    pub fn stop(&mut self) {
        match self {
            Self::Etcd(s) => s.stop(),
            Self::Consul(s) => s.stop(),
            Self::EtcdCluster(m) => m.iter_mut().for_each(Etcd::stop),
            Self::ConsulCluster(m) => m.iter_mut().for_each(Consul::stop),
        }
    }

    pub fn restart(&mut self) -> anyhow::Result<()> {
        match self {
            Self::Etcd(s) => s.restart(),
            Self::Consul(s) => s.restart(),
            Self::EtcdCluster(m) => m.iter_mut().try_for_each(Etcd::restart),
            Self::ConsulCluster(m) => m.iter_mut().try_for_each(Consul::restart),
        }
    }

    /// Kills the member at `ip` of a store cluster.
    pub fn stop_member(&mut self, ip: Ipv4Addr) {
        match self {
            Self::EtcdCluster(m) => m.iter_mut().filter(|e| e.ip == ip).for_each(Etcd::stop),
            Self::ConsulCluster(m) => m.iter_mut().filter(|c| c.ip == ip).for_each(Consul::stop),
            Self::Etcd(_) | Self::Consul(_) => {}
        }
    }

    /// Starts the member at `ip` again.
    pub fn restart_member(&mut self, ip: Ipv4Addr) -> anyhow::Result<()> {
        match self {
            Self::EtcdCluster(m) => m
                .iter_mut()
                .filter(|e| e.ip == ip)
                .try_for_each(Etcd::restart),
            Self::ConsulCluster(m) => m
                .iter_mut()
                .filter(|c| c.ip == ip)
                .try_for_each(Consul::restart),
            Self::Etcd(_) | Self::Consul(_) => Ok(()),
        }
    }
}

/// One store server alone in a namespace of its own, at 127.0.0.1 there: for the store's own
/// tests, which run their code inside that namespace ([`Self::block_on`]).
pub struct StoreLab {
    /// `None` for the embedded store.
    pub server: Option<StoreServer>,
    /// The URL `netd daemon --store` would be given.
    pub url: String,
    pub netns: Netns,
    pub dir: tempdir::Dir,
}

impl StoreLab {
    /// Starts `setup` (a single server: etcd, Consul or the embedded store).
    pub fn start(tag: &str, setup: impl Into<StoreSetup>) -> anyhow::Result<Self> {
        let setup = setup.into();
        let dir = tempdir::Dir::new(tag)?;
        let netns = Netns::new(tag)?;
        let (server, url) = StoreServer::start(&setup, &netns, Ipv4Addr::LOCALHOST, &dir.0)?;
        Ok(Self {
            server,
            url,
            netns,
            dir,
        })
    }

    /// The files a client of the lab's server needs ([`StoreServer::client_files`]).
    pub fn client_files(&self) -> TlsFiles {
        self.server
            .as_ref()
            .map(StoreServer::client_files)
            .unwrap_or_default()
    }

    /// The Consul server, for the tests that need more than its URL (its CA, its token).
    pub fn consul(&self) -> Option<&Consul> {
        match &self.server {
            Some(StoreServer::Consul(consul)) => Some(consul),
            _ => None,
        }
    }

    /// The etcd server, for the tests that need more than its URL (client certificates of
    /// their own).
    pub fn etcd(&self) -> Option<&Etcd> {
        match &self.server {
            Some(StoreServer::Etcd(etcd)) => Some(etcd),
            _ => None,
        }
    }

    /// Runs `work` inside the lab's namespace, on a runtime of its own (whose threads start
    /// there too), and returns its result; the thread leaves the namespace after.
    pub fn block_on<T>(&mut self, work: impl AsyncFnOnce(&mut Self) -> T) -> T {
        let _inside = netd::netns::enter(&self.netns.path()).expect("enter the lab's namespace");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(work(self))
    }
}

/// Consul (Debian bullseye's 1.8.7, from `cargo xtask setup`).
pub fn consul_bin() -> PathBuf {
    let tools = std::env::var_os("NETD_TOOLS_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tools"),
        PathBuf::from,
    );
    tools.join("consul/usr/bin/consul")
}

fn servers_scheme(settings: &ConsulSettings) -> &'static str {
    if settings.tls {
        "consul+https"
    } else {
        "consul"
    }
}

fn etcd_scheme(settings: &EtcdSettings) -> &'static str {
    if settings.tls { "etcd+https" } else { "etcd" }
}

/// `TlsFiles` of a CA and, if the server wants one, a client certificate.
fn files(ca: PathBuf, client: Option<&CertFiles>) -> TlsFiles {
    TlsFiles::from_flags(
        Some(ca),
        client.map(|c| c.cert.clone()),
        client.map(|c| c.key.clone()),
    )
}

/// A store server's process, killed on drop: started with its output in a log file next to its
/// data directory, and waited on until a probe says it serves (or it exits, which ends the wait
/// at once).
struct ServerProcess {
    program: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl ServerProcess {
    fn new(program: &'static str, data_dir: &Path) -> Self {
        Self {
            program,
            child: None,
            log: data_dir.with_extension("log"),
        }
    }

    /// Starts `command`, its stdout and stderr appended to the log.
    fn spawn(&mut self, command: &mut Command) -> anyhow::Result<()> {
        let log = fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.program))?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until `serving` succeeds; fails with `what`, the probe's last answer and the log's
    /// place, or at once when the process has exited.
    fn wait_serving(
        &mut self,
        what: &str,
        mut serving: impl FnMut() -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let (program, child) = (self.program, &mut self.child);
        wait_until(
            READY_WITHIN,
            || -> anyhow::Result<()> {
                if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    // Gone: no point waiting (the deadline's message then carries this).
                    bail!("{program} exited ({status})");
                }
                serving()
            },
            what,
        )
        .with_context(|| format!("see {}", self.log.display()))
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Consul server inside a network namespace, killed on drop: alone, or one of the servers of
/// [`Consul::cluster_in`]. Started as an operator starts a server (`consul agent -server
/// -bootstrap-expect=N -data-dir ...`, joined to the others), with Consul's defaults except
/// what [`ConsulSettings`] asks for.
pub struct Consul {
    process: ServerProcess,
    data_dir: PathBuf,
    netns: String,
    pub ip: Ipv4Addr,
    /// Every server's address (itself included).
    servers: Vec<Ipv4Addr>,
    pub settings: ConsulSettings,
}

impl Consul {
    /// One server at `ip` (HTTP on `:8500`, or HTTPS on `:8501` with `settings.tls`); waits
    /// until it takes writes.
    pub fn start_in(
        netns: &Netns,
        ip: Ipv4Addr,
        data_dir: PathBuf,
        settings: ConsulSettings,
    ) -> anyhow::Result<Self> {
        let mut consul = Self {
            process: ServerProcess::new("consul", &data_dir),
            data_dir,
            netns: netns.name.clone(),
            ip,
            servers: vec![ip],
            settings,
        };
        consul.make_certificates()?;
        consul.restart()?;
        Ok(consul)
    }

    /// One server per address, joined into one cluster; waits until it takes writes.
    pub fn cluster_in(
        netns: &Netns,
        ips: &[Ipv4Addr],
        dir: &Path,
        settings: &ConsulSettings,
    ) -> anyhow::Result<Vec<Self>> {
        let mut servers: Vec<Self> = ips
            .iter()
            .enumerate()
            .map(|(i, &ip)| {
                let data_dir = dir.join(format!("consul{}", i + 1));
                Self {
                    process: ServerProcess::new("consul", &data_dir),
                    data_dir,
                    netns: netns.name.clone(),
                    ip,
                    servers: ips.to_vec(),
                    settings: settings.clone(),
                }
            })
            .collect();
        for server in &mut servers {
            server.make_certificates()?;
            server.spawn()?;
        }
        // All started before any is waited on: there is a leader only with a quorum.
        for server in &mut servers {
            server.wait_ready()?;
        }
        Ok(servers)
    }

    /// `HOST:PORT` of its HTTP (or HTTPS) API.
    pub fn address(&self) -> String {
        let port = if self.settings.tls { 8501 } else { 8500 };
        format!("{}:{port}", self.ip)
    }

    /// The `--store` URL of this server alone.
    pub fn url(&self) -> String {
        format!("{}://{}", servers_scheme(&self.settings), self.address())
    }

    /// Runs Consul's CLI against this server as an operator would, from inside its namespace,
    /// with `token` (`CONSUL_HTTP_TOKEN`) and what its TLS settings ask for (`CONSUL_CACERT`,
    /// and the client certificate with `verify_incoming`); returns its stdout.
    pub fn cli(&self, token: &str, args: &[&str]) -> anyhow::Result<String> {
        let scheme = if self.settings.tls { "https" } else { "http" };
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.netns])
            .arg(consul_bin())
            .args(args)
            .env("CONSUL_HTTP_ADDR", format!("{scheme}://{}", self.address()))
            .env("CONSUL_HTTP_TOKEN", token);
        if self.settings.tls {
            command.env("CONSUL_CACERT", self.ca_file());
        }
        if self.settings.verify_incoming {
            let client = self.client_cert();
            command
                .env("CONSUL_CLIENT_CERT", client.cert)
                .env("CONSUL_CLIENT_KEY", client.key);
        }
        let out = command
            .stdin(Stdio::null())
            .output()
            .context("cannot run consul")?;
        anyhow::ensure!(
            out.status.success(),
            "consul {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The CA that signed the server's certificate (with `settings.tls`).
    pub fn ca_file(&self) -> PathBuf {
        self.tls_dir().join("consul-agent-ca.pem")
    }

    /// The client certificate `consul tls cert create -client` made (with
    /// `settings.verify_incoming`).
    pub fn client_cert(&self) -> CertFiles {
        CertFiles {
            cert: self.tls_dir().join("dc1-client-consul-0.pem"),
            key: self.tls_dir().join("dc1-client-consul-0-key.pem"),
        }
    }

    /// What a client needs ([`StoreServer::client_files`]).
    pub fn client_files(&self) -> TlsFiles {
        if !self.settings.tls {
            return TlsFiles::default();
        }
        let client = self.settings.verify_incoming.then(|| self.client_cert());
        files(self.ca_file(), client.as_ref())
    }

    fn tls_dir(&self) -> PathBuf {
        self.data_dir.with_extension("tls")
    }

    /// With `settings.tls`: a CA and a server certificate for this address, as `consul tls`
    /// makes them, and with `settings.verify_incoming` a client certificate.
    fn make_certificates(&self) -> anyhow::Result<()> {
        if !self.settings.tls {
            return Ok(());
        }
        let dir = self.tls_dir();
        fs::create_dir_all(&dir)?;
        let ip = self.ip.to_string();
        let server = [
            "tls",
            "cert",
            "create",
            "-server",
            "-additional-ipaddress",
            &ip,
        ];
        let mut commands = vec![&["tls", "ca", "create"][..], &server];
        if self.settings.verify_incoming {
            commands.push(&["tls", "cert", "create", "-client"]);
        }
        for args in commands {
            let out = Command::new(consul_bin())
                .args(args)
                .current_dir(&dir)
                .output()
                .context("cannot run consul tls")?;
            anyhow::ensure!(out.status.success(), "consul {args:?}: {out:?}");
        }
        Ok(())
    }

    /// Starts the server (again) on the same data directory; waits until it takes writes.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.spawn()?;
        self.wait_ready()
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let bin = consul_bin();
        if !bin.exists() {
            bail!("{} is missing: run `cargo xtask setup`", bin.display());
        }
        let ip = self.ip.to_string();
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.netns])
            .arg(&bin)
            // The node name must differ between the servers (they share the machine's hostname).
            .args(["agent", "-server", "-node", &format!("lab-{ip}")])
            .arg(format!("-bootstrap-expect={}", self.servers.len()))
            .arg("-data-dir")
            .arg(&self.data_dir)
            .args(["-bind", &ip, "-client", &ip]);
        for other in self.servers.iter().filter(|&&o| o != self.ip) {
            command.arg(format!("-retry-join={other}"));
        }
        for hcl in self.settings_hcl() {
            command.args(["-hcl", &hcl]);
        }
        self.process.spawn(&mut command)
    }

    /// The HCL of [`ConsulSettings`] (nothing for the defaults).
    fn settings_hcl(&self) -> Vec<String> {
        let mut hcl = Vec::new();
        if let Some(multiplier) = self.settings.raft_multiplier {
            hcl.push(format!("performance {{ raft_multiplier = {multiplier} }}"));
        }
        if self.settings.tls {
            let dir = self.tls_dir().display().to_string();
            hcl.push(format!(
                "ca_file = \"{dir}/consul-agent-ca.pem\"\n\
                 cert_file = \"{dir}/dc1-server-consul-0.pem\"\n\
                 key_file = \"{dir}/dc1-server-consul-0-key.pem\"\n\
                 ports {{\n  http = -1\n  https = 8501\n}}\n"
            ));
        }
        if self.settings.verify_incoming {
            hcl.push("verify_incoming = true".to_string());
        }
        if let Some(token) = &self.settings.acl_master_token {
            hcl.push(format!(
                "acl {{\n  enabled = true\n  default_policy = \"deny\"\n  \
                 tokens {{\n    master = \"{token}\"\n  }}\n}}\n"
            ));
        }
        hcl
    }

    /// Waits until the server takes a write (it has a leader), or fails with its log's place.
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let url = format!(
            "{}://{}/v1/kv/netd-ready-probe",
            if self.settings.tls { "https" } else { "http" },
            self.address()
        );
        let mut curl = vec!["-sS", "-m", "1", "-X", "PUT", "-d", "1"];
        let ca = self.ca_file().display().to_string();
        if self.settings.tls {
            curl.extend(["--cacert", &ca]);
        }
        let client = self.client_cert();
        let (cert, key) = (
            client.cert.display().to_string(),
            client.key.display().to_string(),
        );
        if self.settings.verify_incoming {
            curl.extend(["--cert", &cert, "--key", &key]);
        }
        let header = self
            .settings
            .acl_master_token
            .as_ref()
            .map(|token| format!("X-Consul-Token: {token}"));
        if let Some(header) = &header {
            curl.extend(["-H", header]);
        }
        curl.push(&url);
        let netns = self.netns.clone();
        let what = format!("Consul at {} to take writes", self.address());
        self.process.wait_serving(&what, || {
            let mut args = vec!["netns", "exec", &netns, "curl"];
            args.extend(&curl);
            let answer = sh("ip", &args)?;
            anyhow::ensure!(answer.trim() == "true", "answered {answer:?}");
            Ok(())
        })
    }

    pub fn stop(&mut self) {
        self.process.stop();
    }
}

/// An etcd member inside a network namespace, killed on drop: alone, or one of the members of
/// [`Etcd::cluster_in`]. Started as an operator starts a member (its name, data directory,
/// URLs and the initial cluster), with etcd's defaults for everything else.
pub struct Etcd {
    process: ServerProcess,
    data_dir: PathBuf,
    netns: String,
    pub ip: Ipv4Addr,
    /// `--initial-cluster`: every member's `name=peer URL`.
    initial_cluster: String,
    extra_args: Vec<String>,
    /// With `EtcdSettings::tls`.
    tls: Option<EtcdTls>,
}

/// An etcd member's certificates ([`EtcdSettings`]).
struct EtcdTls {
    ca: PathBuf,
    server: CertFiles,
    /// For the clients, with `client_cert_auth`: the server requires it.
    client: Option<CertFiles>,
    /// The lab's CA, shared by the members of a cluster: it signs more client certificates
    /// for the tests whose subject is who a client is ([`Etcd::client_identity`]).
    pki: std::sync::Arc<Pki>,
}

impl EtcdTls {
    /// The certificates of the members at `ips`, signed by one CA made in `dir`.
    fn make(dir: &Path, ips: &[Ipv4Addr], settings: &EtcdSettings) -> anyhow::Result<Vec<Self>> {
        if !settings.tls {
            return Ok(Vec::new());
        }
        let pki = std::sync::Arc::new(Pki::new(dir, "netd-lab-etcd-ca")?);
        let client = if settings.client_cert_auth {
            Some(pki.client("netd")?)
        } else {
            None
        };
        ips.iter()
            .map(|&ip| {
                Ok(Self {
                    ca: pki.ca.clone(),
                    server: pki.server(&format!("etcd-{ip}"), ip)?,
                    client: client.clone(),
                    pki: pki.clone(),
                })
            })
            .collect()
    }
}

fn etcd_name(ip: Ipv4Addr) -> String {
    format!("lab-{ip}")
}

impl Etcd {
    /// Starts etcd in `netns`, serving clients on `ip:2379` (peers on `:2380`), with its data in
    /// `data_dir` (log next to it, `.log`; certificates in `.tls`), `extra_args` (Docker
    /// 20.10's cluster store needs `--enable-v2=true`) and `settings`; waits until it is
    /// healthy.
    pub fn start_in(
        netns: &Netns,
        ip: Ipv4Addr,
        data_dir: PathBuf,
        extra_args: &[&str],
        settings: &EtcdSettings,
    ) -> anyhow::Result<Self> {
        let tls = EtcdTls::make(&data_dir.with_extension("tls"), &[ip], settings)?;
        let mut etcd = Self {
            process: ServerProcess::new("etcd", &data_dir),
            data_dir,
            netns: netns.name.clone(),
            ip,
            initial_cluster: format!("{}=http://{ip}:2380", etcd_name(ip)),
            extra_args: extra_args.iter().map(|&a| a.to_owned()).collect(),
            tls: tls.into_iter().next(),
        };
        etcd.restart()?;
        Ok(etcd)
    }

    /// One member per address, in one cluster, with `settings` (one CA for all); waits until
    /// every member is healthy.
    pub fn cluster_in(
        netns: &Netns,
        ips: &[Ipv4Addr],
        dir: &Path,
        settings: &EtcdSettings,
    ) -> anyhow::Result<Vec<Self>> {
        let mut tls = EtcdTls::make(&dir.join("etcd.tls"), ips, settings)?.into_iter();
        let initial_cluster = ips
            .iter()
            .map(|&ip| format!("{}=http://{ip}:2380", etcd_name(ip)))
            .collect::<Vec<_>>()
            .join(",");
        let mut members: Vec<Self> = ips
            .iter()
            .enumerate()
            .map(|(i, &ip)| {
                let data_dir = dir.join(format!("etcd{}", i + 1));
                Self {
                    process: ServerProcess::new("etcd", &data_dir),
                    data_dir,
                    netns: netns.name.clone(),
                    ip,
                    initial_cluster: initial_cluster.clone(),
                    extra_args: Vec::new(),
                    tls: tls.next(),
                }
            })
            .collect();
        // All started before any is waited on: a member is healthy only with a quorum.
        for member in &mut members {
            member.spawn()?;
        }
        for member in &mut members {
            member.wait_healthy()?;
        }
        Ok(members)
    }

    /// `etcd://IP:2379` (`etcd+https://` with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "etcd+https"
        } else {
            "etcd"
        };
        format!("{scheme}://{}:2379", self.ip)
    }

    /// What a client needs ([`StoreServer::client_files`]).
    pub fn client_files(&self) -> TlsFiles {
        match &self.tls {
            Some(tls) => files(tls.ca.clone(), tls.client.as_ref()),
            None => TlsFiles::default(),
        }
    }

    /// What a client whose certificate names `name` (its common name) needs: the CA and a
    /// client certificate signed by the lab's CA. etcd with `--client-cert-auth` and auth
    /// enabled takes that name as the client's user (tests/src/access.rs). `None` without TLS.
    pub fn client_identity(&self, name: &str) -> anyhow::Result<Option<TlsFiles>> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        let client = tls.pki.client(name)?;
        Ok(Some(files(tls.ca.clone(), Some(&client))))
    }

    /// `http://IP:2379`, or `https://`.
    pub fn client_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}:2379", self.ip)
    }

    /// Starts etcd (again) on the same data directory.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.spawn()?;
        self.wait_healthy()
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let client = self.client_url();
        let peer = format!("http://{}:2380", self.ip);
        let mut tls_args: Vec<&std::ffi::OsStr> = Vec::new();
        if let Some(tls) = &self.tls {
            tls_args.extend([
                "--cert-file".as_ref(),
                tls.server.cert.as_os_str(),
                "--key-file".as_ref(),
                tls.server.key.as_os_str(),
            ]);
            if tls.client.is_some() {
                tls_args.extend([
                    "--client-cert-auth".as_ref(),
                    "--trusted-ca-file".as_ref(),
                    tls.ca.as_os_str(),
                ]);
            }
        }
        self.process.spawn(
            Command::new("ip")
                .args(["netns", "exec", &self.netns, "etcd", "--name"])
                .arg(etcd_name(self.ip))
                .arg("--data-dir")
                .arg(&self.data_dir)
                .args([
                    "--listen-client-urls",
                    &client,
                    "--advertise-client-urls",
                    &client,
                ])
                .args([
                    "--listen-peer-urls",
                    &peer,
                    "--initial-advertise-peer-urls",
                    &peer,
                ])
                .args(["--initial-cluster", &self.initial_cluster])
                .args(tls_args)
                .args(&self.extra_args),
        )
    }

    /// Waits until etcd says it is healthy (it accepts connections before raft is ready, so
    /// its `/health` is asked, not its port).
    fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let url = format!("{}/health", self.client_url());
        let mut args: Vec<String> = ["netns", "exec", &self.netns, "curl", "-sS", "-m", "1"]
            .map(String::from)
            .into();
        if let Some(tls) = &self.tls {
            args.extend(["--cacert".into(), tls.ca.display().to_string()]);
            if let Some(client) = &tls.client {
                args.extend([
                    "--cert".into(),
                    client.cert.display().to_string(),
                    "--key".into(),
                    client.key.display().to_string(),
                ]);
            }
        }
        args.push(url);
        let what = format!("etcd at {} to be healthy", self.ip);
        self.process.wait_serving(&what, || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let body = sh("ip", &args)?;
            anyhow::ensure!(body.contains("\"health\":\"true\""), "answered {body:?}");
            Ok(())
        })
    }

    /// Kills etcd (the outage tests restart it).
    pub fn stop(&mut self) {
        self.process.stop();
    }
}
