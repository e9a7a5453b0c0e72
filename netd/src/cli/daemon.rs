//! `netd daemon`.

use std::{net::Ipv4Addr, path::PathBuf, time::Duration};

use clap::Args;
use netd::daemon::DaemonOptions;

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Cluster store: etcd://HOST:PORT[,HOST:PORT...] (etcd+https://... for TLS),
    /// consul://HOST:PORT[,HOST:PORT...][/PREFIX] (consul+https://...; token from
    /// CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE) or file:///PATH (default: the embedded store
    /// in /var/lib/netd).
    #[arg(long, env = "NETD_STORE", default_value = "file:///var/lib/netd")]
    store: String,
    /// PEM file of the CA that signed the store's certificate, the only one trusted (default:
    /// the system's roots; Consul: CONSUL_CACERT).
    #[arg(long, env = "NETD_STORE_CACERT", value_name = "FILE")]
    store_cacert: Option<PathBuf>,
    /// PEM file of this host's client certificate, for a store that requires one (Consul:
    /// CONSUL_CLIENT_CERT).
    #[arg(long, env = "NETD_STORE_CERT", value_name = "FILE")]
    store_cert: Option<PathBuf>,
    /// PEM file of the private key of --store-cert (Consul: CONSUL_CLIENT_KEY).
    #[arg(long, env = "NETD_STORE_KEY", value_name = "FILE")]
    store_key: Option<PathBuf>,
    /// This host's VTEP address (Docker's cluster-advertise).
    #[arg(long)]
    advertise: Ipv4Addr,
    /// Underlay interface (default: the one that holds the --advertise address).
    #[arg(long)]
    uplink: Option<netd::api::IfName>,
    /// UDP port of VXLAN.
    #[arg(long, default_value_t = netd_common::VXLAN_PORT_DEFAULT)]
    vxlan_port: u16,
    /// Directory of the API socket.
    #[arg(long, default_value = "/run/netd")]
    run_dir: PathBuf,
    /// Name of this host in the cluster (default: the system hostname).
    #[arg(long)]
    hostname: Option<String>,
    /// Seconds the other hosts keep this host's endpoints after it stops renewing its lease.
    #[arg(long, default_value_t = 15)]
    lease_ttl: u64,
    /// Remove the endpoint records and address claims of a host whose lease has been gone this
    /// many seconds, as `netd host rm` does (default: never; give a grace longer than any
    /// planned downtime: a host back after it finds its endpoints gone).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    remove_dead_hosts_after: Option<u64>,
    /// Directory where Docker discovers plugins; netd serves `netd.sock` there.
    #[arg(long, default_value = "/run/docker/plugins")]
    docker_plugin_dir: PathBuf,
    /// Docker Engine API socket (default: DOCKER_HOST if unix://, else /var/run/docker.sock).
    #[arg(long)]
    docker_host: Option<PathBuf>,
    /// This host's parent interface for macvlan networks (replaces the network's parent name;
    /// its VLAN is kept).
    #[arg(long)]
    macvlan_parent: Option<netd::api::IfName>,
    /// Serve network namespaces only: no Docker plugin, no Engine connection.
    #[arg(long)]
    no_docker: bool,
    /// Where netd answers DNS in each namespace it serves (and in the host's): give it to
    /// Docker as `"dns": ["169.254.53.53"]` in daemon.json for names across hosts.
    #[arg(long, default_value_t = netd::dns::DEFAULT_ADDRESS)]
    dns_address: std::net::Ipv4Addr,
    /// DNS servers for the names netd does not answer, comma-separated IP[:PORT] (default: the
    /// nameservers of /etc/resolv.conf).
    #[arg(long, value_delimiter = ',', value_parser = parse_upstream)]
    dns_upstream: Vec<std::net::SocketAddr>,
    /// Answer no DNS.
    #[arg(long, conflicts_with = "dns_upstream")]
    no_dns: bool,
    /// Endpoints this host can hold (the NETD_ENDPOINTS map).
    #[arg(long, default_value_t = netd_common::maps::capacity::ENDPOINTS, value_parser = clap::value_parser!(u32).range(1..))]
    max_local_endpoints: u32,
    /// Endpoints, this host's and its peers', of the networks this host has endpoints in (the
    /// NETD_FDB and NETD_NEIGH maps).
    #[arg(long, default_value_t = netd_common::maps::capacity::FDB, value_parser = clap::value_parser!(u32).range(1..))]
    max_endpoints: u32,
    /// How programs are hooked to TC: tcx (Linux >= 6.6), netlink (clsact and cls_bpf), or
    /// auto: TCX if the kernel takes it.
    #[arg(long, value_enum, default_value_t = TcAttach::Auto)]
    tc_attach: TcAttach,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (default: off).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_address: Option<std::net::SocketAddr>,
    /// Keep no flow-based vxlan device (netd_vxlan) on the VXLAN port: without its socket the
    /// kernel does no GRO for VXLAN, and TCP from a NIC is received packet by packet.
    #[arg(long)]
    no_gro_device: bool,
    /// (host, network) pairs that may send to this host (the NETD_VTEPS map).
    #[arg(long, default_value_t = netd_common::maps::capacity::VTEPS, value_parser = clap::value_parser!(u32).range(1..))]
    max_vteps: u32,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum TcAttach {
    Auto,
    Tcx,
    Netlink,
}

/// `IP` or `IP:PORT`.
fn parse_upstream(text: &str) -> Result<std::net::SocketAddr, String> {
    text.parse::<std::net::SocketAddr>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(|ip| (ip, 53).into()))
        .map_err(|_| format!("{text:?} is not IP or IP:PORT"))
}

fn system_hostname() -> anyhow::Result<String> {
    let name = nix::unistd::gethostname()?;
    Ok(name.to_string_lossy().into_owned())
}

pub fn run(args: DaemonArgs, pin_dir: PathBuf) -> anyhow::Result<()> {
    let host_name = match args.hostname {
        Some(h) => h,
        None => system_hostname()?,
    };
    anyhow::ensure!(
        netd_store::keys::valid_name(&host_name),
        "invalid host name {host_name:?}; give --hostname"
    );
    anyhow::ensure!(
        args.lease_ttl >= 2,
        "--lease-ttl must be at least 2 seconds"
    );
    let options = DaemonOptions {
        store: args.store,
        store_tls: netd_store::tls::TlsFiles::from_flags(
            args.store_cacert,
            args.store_cert,
            args.store_key,
        ),
        advertise: args.advertise,
        uplink: args.uplink,
        vxlan_port: args.vxlan_port,
        run_dir: args.run_dir,
        pin_dir,
        host_name,
        lease_ttl: Duration::from_secs(args.lease_ttl),
        remove_dead_hosts_after: args.remove_dead_hosts_after.map(Duration::from_secs),
        macvlan_parent: args.macvlan_parent.map(String::from),
        tc_attach: match args.tc_attach {
            TcAttach::Auto => netd::datapath::AttachMethod::Auto,
            TcAttach::Tcx => netd::datapath::AttachMethod::Tcx,
            TcAttach::Netlink => netd::datapath::AttachMethod::Netlink,
        },
        capacities: netd::datapath::Capacities {
            local_endpoints: args.max_local_endpoints,
            endpoints: args.max_endpoints,
            vteps: args.max_vteps,
        },
        dns: (!args.no_dns).then_some(netd::dns::DnsOptions {
            address: args.dns_address,
            upstream: args.dns_upstream,
        }),
        docker: (!args.no_docker).then(|| netd::docker::DockerOptions {
            plugin_dir: args.docker_plugin_dir,
            engine_socket: args.docker_host.unwrap_or_else(|| {
                netd::docker::engine::Engine::from_env()
                    .socket()
                    .to_path_buf()
            }),
        }),
        metrics_address: args.metrics_address,
        gro_device: !args.no_gro_device,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(netd::daemon::run(options));
    // The liveness thread and the watchers of the daemon's threads never end on their own:
    // once the daemon is done, leave them to the process's exit instead of waiting.
    runtime.shutdown_background();
    result
}
