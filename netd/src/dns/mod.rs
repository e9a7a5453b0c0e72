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

mod answer;
mod upstream;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fs,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
};

use anyhow::Context as _;
use hickory_proto::op::ResponseCode;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream, UdpSocket},
    task::AbortHandle,
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

/// What a serving loop needs.
struct Serving {
    control: Control,
    upstream: Vec<SocketAddr>,
    /// The networks the namespace's endpoints are on.
    networks: RwLock<Vec<String>>,
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
    upstream: Vec<SocketAddr>,
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
    /// served.
    pub async fn start(
        control: Control,
        options: DnsOptions,
        run_dir: &Path,
    ) -> anyhow::Result<Self> {
        let upstream = options.upstream();
        if upstream.is_empty() {
            tracing::warn!(
                "no upstream DNS server (resolv.conf has none): only netd's names resolve"
            );
        }
        let host = listen(&control, &upstream, None, options.address, Vec::new())
            .await
            .context("cannot serve DNS in the host namespace")?;
        let dns = Self {
            inner: Arc::new(Inner {
                control,
                upstream,
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
            let (serving, tasks) = listen(
                &self.inner.control,
                &self.inner.upstream,
                Some(netns),
                self.inner.options.address,
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
    pub fn withdraw(&self, network: &str, endpoint: &str) {
        let key = (network.to_string(), endpoint.to_string());
        {
            let mut listeners = self.lock();
            listeners.retain(|_, listener| {
                if listener.endpoints.remove(&key) {
                    update_networks(listener);
                }
                !listener.endpoints.is_empty()
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

/// Binds the DNS address's UDP and TCP port in the namespace at `netns` (this one when `None`),
/// giving its `lo` the address first, and starts serving.
async fn listen(
    control: &Control,
    upstream: &[SocketAddr],
    netns: Option<&Path>,
    address: Ipv4Addr,
    networks: Vec<String>,
) -> anyhow::Result<(Arc<Serving>, Vec<AbortHandle>)> {
    let path = netns.map(Path::to_path_buf);
    let (udp, tcp) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        netlink::add_loopback_address(path.as_deref(), address)?;
        // Sockets belong to the namespace they are made in: make them there.
        let _inside = path.as_deref().map(netns::enter).transpose()?;
        let udp = std::net::UdpSocket::bind((address, PORT))
            .with_context(|| format!("cannot bind {address}:{PORT}/udp"))?;
        let tcp = std::net::TcpListener::bind((address, PORT))
            .with_context(|| format!("cannot bind {address}:{PORT}/tcp"))?;
        udp.set_nonblocking(true)?;
        tcp.set_nonblocking(true)?;
        Ok((udp, tcp))
    })
    .await??;
    let serving = Arc::new(Serving {
        control: control.clone(),
        upstream: upstream.to_vec(),
        networks: RwLock::new(networks),
    });
    let udp = UdpSocket::from_std(udp)?;
    let tcp = TcpListener::from_std(tcp)?;
    let tasks = vec![
        tokio::spawn(serve_udp(udp, serving.clone())).abort_handle(),
        tokio::spawn(serve_tcp(tcp, serving.clone())).abort_handle(),
    ];
    Ok((serving, tasks))
}

async fn serve_udp(socket: UdpSocket, serving: Arc<Serving>) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let query = buf[..len].to_vec();
        let (socket, serving) = (socket.clone(), serving.clone());
        tokio::spawn(async move {
            let reply = respond(&serving, &query, false).await;
            let _ = socket.send_to(&reply, from).await;
        });
    }
}

async fn serve_tcp(listener: TcpListener, serving: Arc<Serving>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(serve_connection(stream, serving.clone()));
    }
}

/// Queries on one TCP connection, each with its 2-byte length, until the client closes it.
async fn serve_connection(mut stream: TcpStream, serving: Arc<Serving>) {
    loop {
        let Ok(len) = stream.read_u16().await else {
            return;
        };
        let mut query = vec![0u8; usize::from(len)];
        if stream.read_exact(&mut query).await.is_err() {
            return;
        }
        let reply = respond(&serving, &query, true).await;
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            return;
        };
        if stream.write_all(&reply_len.to_be_bytes()).await.is_err()
            || stream.write_all(&reply).await.is_err()
        {
            return;
        }
    }
}

/// The answer to one query: netd's own names, else the upstream servers'.
async fn respond(serving: &Serving, query: &[u8], tcp: bool) -> Vec<u8> {
    let question = match answer::question(query) {
        Ok(q) => q,
        Err(()) => return answer::failure(query, ResponseCode::FormErr),
    };
    if let Some(question) = question {
        let networks = serving
            .networks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if !networks.is_empty()
            && let Ok(addresses) = serving
                .control
                .resolve(networks, question.name.clone())
                .await
            && !addresses.is_empty()
            && let Some(reply) = answer::known(&question, &addresses)
        {
            return reply;
        }
    }
    let forwarded = if tcp {
        upstream::forward_tcp(&serving.upstream, query).await
    } else {
        upstream::forward_udp(&serving.upstream, query).await
    };
    forwarded.unwrap_or_else(|| answer::failure(query, ResponseCode::ServFail))
}
