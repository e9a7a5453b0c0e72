//! `netd daemon`: one per host. Loads (or takes over) the datapath, registers the host under a
//! lease, keeps the maps equal to the store's desired state, and serves the local API.
//!
//! Nothing here ever flushes the datapath: programs and maps are pinned, so traffic keeps
//! flowing while the daemon restarts or the store is unreachable.

pub(crate) mod handlers;
mod host;
mod parents;
mod server;
pub(crate) mod shared;
mod sync;

use std::{net::Ipv4Addr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use netd_common::{VXLAN_OVERHEAD, maps::DatapathConfig};
use netd_store::Store;

use crate::{
    datapath::{Datapath, DatapathOptions, Hook},
    netlink,
};

pub use self::shared::Shared;

/// Everything `netd daemon` is told.
#[derive(Clone, Debug)]
pub struct DaemonOptions {
    /// `etcd://...` or `file:///...`.
    pub store: String,
    /// This host's VTEP address.
    pub advertise: Ipv4Addr,
    /// Underlay interface; `None`: the one that routes to `advertise`.
    pub uplink: Option<String>,
    pub vxlan_port: u16,
    pub run_dir: PathBuf,
    pub pin_dir: PathBuf,
    /// Name under `/netd/v1/hosts/`.
    pub host_name: String,
    /// TTL of the host's lease: how long the others keep its endpoints after it stops renewing.
    pub lease_ttl: Duration,
    /// This host's parent interface for macvlan networks, replacing the one the network names
    /// (its VLAN is kept): hosts may call the LAN interface differently.
    pub macvlan_parent: Option<String>,
    /// Docker integration, `None` to serve namespaces only.
    pub docker: Option<crate::docker::DockerOptions>,
}

pub async fn run(options: DaemonOptions) -> anyhow::Result<()> {
    let uplink = match &options.uplink {
        Some(u) => u.clone(),
        None => netlink::route_dev(options.advertise).with_context(|| {
            format!(
                "cannot find the interface that routes to {}; give --uplink",
                options.advertise
            )
        })?,
    };
    let uplink_ifindex =
        netlink::ifindex(&uplink).with_context(|| format!("uplink {uplink:?} does not exist"))?;
    let uplink_mtu = netlink::mtu(&uplink)?;

    let mut datapath = Datapath::load(DatapathOptions {
        pin_dir: Some(options.pin_dir.clone()),
    })
    .context("loading the datapath")?;
    datapath.set_config(&DatapathConfig {
        local_vtep: options.advertise.octets(),
        uplink_ifindex,
        vxlan_port: options.vxlan_port,
        underlay_mtu: uplink_mtu,
        flags: Datapath::default_config_flags(),
    })?;
    datapath.attach(Hook::Uplink, &uplink)?;
    // Endpoints created by an earlier run: take their hooks over (atomic program replacement).
    let local = netlink::local_endpoints()?;
    for ifname in local.values() {
        datapath.attach(Hook::Endpoint, ifname)?;
    }
    tracing::info!(
        %uplink, uplink_mtu, vtep = %options.advertise, endpoints = local.len(),
        pin_dir = %options.pin_dir.display(), "datapath loaded and attached"
    );

    let store = connect(&options.store).await?;
    let shared = Arc::new(Shared::new(
        options, store, datapath, local, uplink, uplink_mtu,
    ));
    // The first listing waits for the host's registration: a daemon back after its lease expired
    // would otherwise take its own endpoints for those of a host that is gone (dropping their
    // entries, listing none, and the Docker reconciler missing those to remove).
    let (registered, first_registration) = tokio::sync::oneshot::channel();
    tokio::spawn(host::run(shared.clone(), registered));
    tokio::spawn(sync::run(shared.clone(), first_registration));
    if let Some(docker) = shared.options.docker.clone() {
        crate::docker::start(shared.clone(), docker)?;
    }
    let server = server::bind(&shared.options.run_dir)?;
    tracing::info!(socket = %shared.socket_path().display(), host = %shared.options.host_name, "serving");
    tokio::select! {
        result = server::serve(server, shared.clone()) => result,
        () = shutdown_signal() => {
            // Programs, maps and the host's lease stay: a restart within the lease TTL is seamless.
            tracing::info!("stopping; the datapath keeps forwarding");
            Ok(())
        }
    }
}

/// Connects to the store, retrying while it is unreachable (the datapath is already forwarding).
async fn connect(url: &str) -> anyhow::Result<Store> {
    let mut delay = Duration::from_millis(200);
    loop {
        match Store::connect(url).await {
            Ok(store) => return Ok(store),
            Err(e @ netd_store::StoreError::BadUrl { .. }) => return Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, "store unreachable, retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

/// Default inner MTU of a network on this host.
pub fn default_inner_mtu(uplink_mtu: u16) -> u16 {
    uplink_mtu.saturating_sub(VXLAN_OVERHEAD)
}
