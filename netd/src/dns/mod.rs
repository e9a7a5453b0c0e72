//! Names across hosts: a DNS server in every namespace netd serves.
//!
//! Docker's embedded DNS (127.0.0.11) answers the names of the containers of its own host and
//! forwards the rest to the container's upstream servers, from inside the container's
//! namespace. With `"dns": ["169.254.53.53"]` in daemon.json (the one line of host
//! configuration), that upstream is netd: netd puts 169.254.53.53 on the `lo` of each
//! namespace that has a netd endpoint (a container's, or one attached with `netd endpoint
//! add`) and answers there, so it knows exactly which networks the asker is on. Names of those
//! networks, on every host, come from the endpoints' store records; every other name is
//! forwarded to the host's own resolvers. The host's own namespace gets the address too, for
//! the containers that are on no netd network (Docker hands them the same upstream): they get
//! the forwarding only.

mod access;
mod answer;
pub mod limits;
mod serve;
mod steer;
mod upstream;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fs,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
};

use anyhow::Context as _;
use nix::sys::socket::{self as sock, sockopt};
use tokio::{
    net::{TcpListener, UdpSocket},
    task::AbortHandle,
};

use self::{
    access::{Access, HostSources},
    limits::{Budget, Shared},
    serve::Serving,
};
use crate::{control::Control, netlink, netns};

/// Where netd answers DNS in every namespace it serves (link-local: never routed anywhere).
pub const DEFAULT_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 53, 53);
const PORT: u16 = 53;
/// Where namespace endpoints are remembered across restarts (Docker's are found again from
/// the engine).
const STATE_FILE: &str = "dns-namespaces.json";

#[derive(Clone, Debug)]
pub struct DnsOptions {
    pub address: Ipv4Addr,
    /// Servers for the names netd does not answer; empty: the host's resolv.conf ones.
    pub upstream: Vec<SocketAddr>,
}

impl DnsOptions {
    /// The upstream servers: the ones given, else the host's resolv.conf's.
    fn upstream(&self) -> Vec<SocketAddr> {
        if !self.upstream.is_empty() {
            return self.upstream.clone();
        }
        let text = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        upstream::from_resolv_conf(&text, IpAddr::V4(self.address))
    }
}

/// The server of one namespace.
struct Listener {
    netns: PathBuf,
    /// (network, endpoint) of the namespace's netd endpoints.
    endpoints: BTreeSet<(String, String)>,
    serving: Arc<Serving>,
    tasks: Vec<AbortHandle>,
    /// Whether to remember it across restarts (namespace endpoints).
    persist: bool,
}

impl Drop for Listener {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

struct Inner {
    control: Control,
    options: DnsOptions,
    upstream: Arc<Vec<SocketAddr>>,
    /// The daemon's totals, which every listener's budget takes from too.
    shared: Arc<Shared>,
    state_file: PathBuf,
    /// By namespace key (the namespace's path).
    listeners: Mutex<HashMap<PathBuf, Listener>>,
    /// The host namespace's server, for containers on no netd network.
    _host: Listener,
}

/// The DNS servers; cheap to clone.
#[derive(Clone)]
pub struct Dns {
    inner: Arc<Inner>,
}

impl Dns {
    /// Starts the host namespace's server and those of the namespace endpoints an earlier run
    /// served. `uplink`: the host's uplink, whose subnet the host's server does not answer.
    pub async fn start(
        control: Control,
        options: DnsOptions,
        run_dir: &Path,
        uplink: &str,
    ) -> anyhow::Result<Self> {
        let upstream = Arc::new(options.upstream());
        if upstream.is_empty() {
            tracing::warn!(
                "no upstream DNS server (resolv.conf has none): only netd's names resolve"
            );
        }
        let shared = Arc::new(Shared::default());
        let ctx = ListenContext {
            control: &control,
            upstream: &upstream,
            shared: &shared,
            address: options.address,
        };
        let host = listen(
            &ctx,
            None,
            Access::Host(HostSources::new(uplink.to_string())),
            Vec::new(),
        )
        .await
        .context("cannot serve DNS in the host namespace")?;
        let dns = Self {
            inner: Arc::new(Inner {
                control,
                upstream,
                shared,
                state_file: run_dir.join(STATE_FILE),
                listeners: Mutex::new(HashMap::new()),
                _host: Listener {
                    netns: PathBuf::new(),
                    endpoints: BTreeSet::new(),
                    serving: host.0,
                    tasks: host.1,
                    persist: false,
                },
                options,
            }),
        };
        let remembered: BTreeMap<String, PathBuf> = fs::read(&dns.inner.state_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        for (key, netns) in remembered {
            let Some((network, endpoint)) = key.split_once('/') else {
                continue;
            };
            if netns.exists()
                && let Err(error) = dns.serve(&netns, network, endpoint, true).await
            {
                tracing::warn!(%error, netns = %netns.display(), "cannot serve DNS again");
            }
        }
        tracing::info!(address = %dns.inner.options.address, "DNS serving");
        Ok(dns)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Listener>> {
        self.inner
            .listeners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Serves the endpoint `endpoint` of `network` in the namespace at `netns` (starting that
    /// namespace's server if it has none); `persist` remembers it across restarts.
    pub async fn serve(
        &self,
        netns: &Path,
        network: &str,
        endpoint: &str,
        persist: bool,
    ) -> anyhow::Result<()> {
        let key = (network.to_string(), endpoint.to_string());
        let known = {
            let mut listeners = self.lock();
            match listeners.get_mut(netns) {
                Some(listener) => {
                    listener.endpoints.insert(key.clone());
                    listener.persist |= persist;
                    update_networks(listener);
                    true
                }
                None => false,
            }
        };
        if !known {
            let ctx = ListenContext {
                control: &self.inner.control,
                upstream: &self.inner.upstream,
                shared: &self.inner.shared,
                address: self.inner.options.address,
            };
            let (serving, tasks) = listen(
                &ctx,
                Some(netns),
                Access::Namespace,
                vec![network.to_string()],
            )
            .await?;
            let mut listeners = self.lock();
            let listener = listeners.entry(netns.to_path_buf()).or_insert(Listener {
                netns: netns.to_path_buf(),
                endpoints: BTreeSet::new(),
                serving,
                tasks,
                persist,
            });
            listener.endpoints.insert(key);
            update_networks(listener);
        }
        self.save();
        Ok(())
    }

    /// Stops serving an endpoint; a namespace left without endpoints loses its server.
    /// Queries and connections turned away since the daemon started, by reason.
    pub fn turned_away(&self) -> [(&'static str, u64); 5] {
        self.inner.shared.counters.by_reason()
    }

    pub fn withdraw(&self, network: &str, endpoint: &str) {
        let key = (network.to_string(), endpoint.to_string());
        let mut unserved = Vec::new();
        {
            let mut listeners = self.lock();
            listeners.retain(|netns, listener| {
                if listener.endpoints.remove(&key) {
                    update_networks(listener);
                }
                let keep = !listener.endpoints.is_empty();
                if !keep {
                    unserved.push(netns.clone());
                }
                keep
            });
        }
        // A namespace that lives on (a `netd endpoint rm` of a namespace endpoint) gets its
        // port 53 back; one being deleted takes its rule along.
        for netns in unserved {
            tokio::task::spawn_blocking(move || {
                if let Ok(_inside) = netns::enter(&netns)
                    && let Err(error) = steer::remove()
                {
                    tracing::debug!(error = %format!("{error:#}"), "DNS: steering left in place");
                }
            });
        }
        self.save();
    }

    /// Whether an endpoint's namespace is served.
    pub fn serves_endpoint(&self, network: &str, endpoint: &str) -> bool {
        let key = (network.to_string(), endpoint.to_string());
        self.lock().values().any(|l| l.endpoints.contains(&key))
    }

    /// Remembers the namespace endpoints served, for the next start.
    fn save(&self) {
        let remembered: BTreeMap<String, PathBuf> = self
            .lock()
            .values()
            .filter(|l| l.persist)
            .flat_map(|l| {
                l.endpoints
                    .iter()
                    .map(|(n, e)| (format!("{n}/{e}"), l.netns.clone()))
            })
            .collect();
        let text = serde_json::to_vec_pretty(&remembered).unwrap_or_default();
        if let Err(error) = fs::write(&self.inner.state_file, text) {
            tracing::warn!(%error, "cannot remember the DNS namespaces");
        }
    }
}

fn update_networks(listener: &Listener) {
    let networks: BTreeSet<String> = listener.endpoints.iter().map(|(n, _)| n.clone()).collect();
    *listener
        .serving
        .networks
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = networks.into_iter().collect();
}

/// What every listener is made with.
struct ListenContext<'a> {
    control: &'a Control,
    upstream: &'a Arc<Vec<SocketAddr>>,
    shared: &'a Arc<Shared>,
    address: Ipv4Addr,
}

/// Binds the DNS address's UDP and TCP port in the namespace at `netns` (this one when `None`),
/// giving its `lo` the address first, and starts serving. In a served namespace the sockets
/// are bound to `lo` ([`Access::Namespace`]).
async fn listen(
    ctx: &ListenContext<'_>,
    netns: Option<&Path>,
    access: Access,
    networks: Vec<String>,
) -> anyhow::Result<(Arc<Serving>, Vec<AbortHandle>)> {
    let path = netns.map(Path::to_path_buf);
    let address = ctx.address;
    let only_lo = matches!(access, Access::Namespace);
    let (udp, tcp) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        netlink::add_loopback_address(path.as_deref(), address)?;
        // Sockets belong to the namespace they are made in: make them there.
        let _inside = path.as_deref().map(netns::enter).transpose()?;
        if only_lo {
            // Ports the kernel picks, and port 53 steered to them: the namespace's own port
            // 53 stays free for a DNS server of its own (steer.rs).
            match bind_pair(address, 0, true).and_then(|(udp, tcp)| {
                let ports = steer::Ports {
                    udp: local_port(&udp)?,
                    tcp: local_port(&tcp)?,
                };
                steer::install(address, ports)?;
                Ok((udp, tcp))
            }) {
                Ok(pair) => return Ok(pair),
                Err(error) => steer::warn_missing(&error),
            }
        }
        bind_pair(address, PORT, only_lo)
    })
    .await??;
    let (udp, tcp) = (
        std::net::UdpSocket::from(udp),
        std::net::TcpListener::from(tcp),
    );
    let serving = Arc::new(Serving {
        names: ctx.control.names(),
        upstream: ctx.upstream.clone(),
        networks: RwLock::new(networks),
        budget: Budget::new(ctx.shared.clone()),
        access,
    });
    let udp = UdpSocket::from_std(udp)?;
    let tcp = TcpListener::from_std(tcp)?;
    let tasks = vec![
        tokio::spawn(serve::udp(udp, serving.clone())).abort_handle(),
        tokio::spawn(serve::tcp(tcp, serving.clone())).abort_handle(),
    ];
    Ok((serving, tasks))
}

/// How many connections the kernel queues before netd accepts them.
const BACKLOG: i32 = 256;

/// A UDP and a TCP socket on `address`:`port` (0: each one the kernel picks).
fn bind_pair(address: Ipv4Addr, port: u16, only_lo: bool) -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let udp = bind(sock::SockType::Datagram, address, port, only_lo)
        .with_context(|| format!("cannot bind {address}:{port}/udp"))?;
    let tcp = bind(sock::SockType::Stream, address, port, only_lo)
        .with_context(|| format!("cannot bind {address}:{port}/tcp"))?;
    Ok((udp, tcp))
}

fn local_port(fd: &OwnedFd) -> anyhow::Result<u16> {
    let address: sock::SockaddrIn = sock::getsockname(std::os::fd::AsRawFd::as_raw_fd(fd))?;
    Ok(address.port())
}

/// A non-blocking socket on `address`:`port`, bound to `lo` when `only_lo`, listening when it
/// is a stream.
fn bind(kind: sock::SockType, address: Ipv4Addr, port: u16, only_lo: bool) -> nix::Result<OwnedFd> {
    let fd = sock::socket(
        sock::AddressFamily::Inet,
        kind,
        sock::SockFlag::SOCK_NONBLOCK | sock::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // A restarted daemon binds again while its old connections linger in TIME_WAIT.
    sock::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if only_lo {
        sock::setsockopt(&fd, sockopt::BindToDevice, &std::ffi::OsString::from("lo"))?;
    }
    sock::bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &sock::SockaddrIn::from(std::net::SocketAddrV4::new(address, port)),
    )?;
    if kind == sock::SockType::Stream {
        sock::listen(&fd, sock::Backlog::new(BACKLOG)?)?;
    }
    Ok(fd)
}
