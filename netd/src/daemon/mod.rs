//! `netd daemon`: one per host. Registers the host (refusing a name another live host has),
//! loads (or takes over) the datapath, hands it to the reconciler, feeds the reconciler from
//! the store, and serves the local API (and Docker's plugin protocol).
//!
//! Every task is supervised: one that ends unexpectedly ends the daemon with its reason, and
//! a shutdown signal stops them all. Nothing here ever flushes the datapath: programs and maps
//! are pinned, so traffic keeps flowing while the daemon restarts or the store is unreachable.

mod dead_hosts;
pub(crate) mod handlers;
mod host;
mod metrics_server;
mod own_keys;
pub(crate) mod server;
mod uplink;
mod watcher;

use std::{net::Ipv4Addr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context as _, anyhow};
use netd_common::maps::DatapathConfig;
use netd_store::{
    Store, StoreConfig, StoreError,
    schema::{HostRecord, SCHEMA_VERSION},
};
use tokio::task::JoinSet;

use crate::{
    control::{self, Control, Identity},
    datapath::{Capacities, Datapath, DatapathOptions, Hook, ProgramSize},
    health::Health,
    netlink,
    service::{self, Service},
};

/// Everything `netd daemon` is told.
#[derive(Clone, Debug)]
pub struct DaemonOptions {
    /// `etcd://...`, `consul://...` or `file:///...`.
    pub store: String,
    /// `--store-cacert`, `--store-cert`, `--store-key`.
    pub store_tls: netd_store::tls::TlsFiles,
    /// This host's VTEP address.
    pub advertise: Ipv4Addr,
    /// Underlay interface; `None`: the one that holds `advertise`.
    pub uplink: Option<crate::api::IfName>,
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
    /// Sizes of the maps that grow with the cluster.
    pub capacities: Capacities,
    /// How programs are hooked to TC.
    pub tc_attach: crate::datapath::AttachMethod,
    /// Names across hosts, `None` to answer no DNS.
    pub dns: Option<crate::dns::DnsOptions>,
    /// Docker integration, `None` to serve namespaces only.
    pub docker: Option<crate::docker::DockerOptions>,
    /// Remove the records and claims of hosts whose lease has been gone this long, `None`:
    /// only `netd host rm` does.
    pub remove_dead_hosts_after: Option<Duration>,
    /// Where to serve `/metrics` to Prometheus, `None` for nowhere.
    pub metrics_address: Option<std::net::SocketAddr>,
    /// Keep the vxlan device for GRO (`crate::gro`); `false` decapsulates everything in TC.
    pub gro_device: bool,
}

/// How long the start waits for the first registration before going on without it (the
/// store may be down: the datapath must be taken over all the same).
const FIRST_REGISTRATION_WAIT: Duration = Duration::from_secs(5);

/// What the API handlers work with.
pub struct Daemon {
    pub options: DaemonOptions,
    pub service: Service,
    pub health: Arc<Health>,
    pub uplink: String,
    /// How `uplink` was chosen.
    pub uplink_source: crate::api::UplinkSource,
    pub uplink_mtu: u16,
    pub programs: Vec<ProgramSize>,
    /// The TC attach method the kernel took.
    pub tc_attach: crate::datapath::AttachMethod,
    /// What the kernel's BPF took when probed.
    pub features: crate::datapath::KernelFeatures,
    /// Whether the vxlan device for GRO is up (`crate::gro`).
    pub gro_device: bool,
    pub started: std::time::Instant,
}

pub async fn run(options: DaemonOptions) -> anyhow::Result<()> {
    raise_nofile_limit();
    // First: a store URL or TLS file that cannot be used, or a port in use, is a mistake to
    // report before anything is touched. The files are read here, once.
    let store_config = StoreConfig::from_env(&options.store, &options.store_tls)?;
    let metrics_listener = match options.metrics_address {
        Some(address) => Some(metrics_server::bind(address).await?),
        None => None,
    };
    let uplink::Uplink {
        name: uplink,
        source: uplink_source,
    } = uplink::choose(options.uplink.as_ref(), options.advertise)?;
    let uplink_ifindex =
        netlink::ifindex(&uplink).with_context(|| format!("uplink {uplink:?} does not exist"))?;
    let uplink_mtu = netlink::mtu(&uplink)?;
    let identity = Identity {
        host: options.host_name.as_str().into(),
        record: HostRecord {
            version: SCHEMA_VERSION,
            vtep_ip: options.advertise,
            uplink_mtu,
            netd: env!("CARGO_PKG_VERSION").into(),
            per_host_keys: true,
        },
    };
    let health = Arc::new(Health::default());

    // The host's name first: a daemon claiming a live host's name stops before touching
    // anything.
    let (registration_tx, mut registration) =
        tokio::sync::watch::channel(host::Registration::Pending);
    let liveness = host::start(
        store_config.clone(),
        identity.clone(),
        options.lease_ttl,
        health.clone(),
        registration_tx,
    )?;
    let refused = {
        let first = tokio::time::timeout(
            FIRST_REGISTRATION_WAIT,
            registration.wait_for(|r| *r != host::Registration::Pending),
        )
        .await;
        match first {
            Ok(Ok(r)) => match &*r {
                host::Registration::Refused(error) => Some(error.clone()),
                _ => None,
            },
            _ => None,
        }
    };
    if let Some(error) = refused {
        return Err(anyhow!(error));
    }

    let mut datapath = Datapath::load(DatapathOptions {
        pin_dir: Some(options.pin_dir.clone()),
        capacities: options.capacities,
        attach: options.tc_attach,
    })
    .context("loading the datapath")?;
    // The uplink's programs before the GRO device's: on an upgrade from a netd whose from-uplink
    // did not mark the aggregates it leaves to the device, the new from-tunnel, which delivers
    // only marked ones, must not see the old from-uplink's. Until `set_config` below they read
    // the pinned configuration of the run before (a first start has none: they pass
    // everything). to-uplink before any endpoint is hooked: from then on only netd's VXLAN
    // leaves from the VTEP.
    datapath.attach(Hook::Uplink, &uplink)?;
    datapath.attach(Hook::UplinkEgress, &uplink)?;
    let gro_flag = gro_device(&mut datapath, &options);
    datapath.set_config(&DatapathConfig {
        local_vtep: options.advertise.octets(),
        uplink_ifindex,
        vxlan_port: options.vxlan_port,
        underlay_mtu: uplink_mtu,
        flags: datapath.config_flags() | traffic_flag(options.metrics_address.is_some()) | gro_flag,
    })?;
    let tc_attach = datapath.attach_method();
    let features = datapath.features();
    tracing::info!(
        method = tc_attach.name(),
        encap_l2_eth = features.encap_l2_eth,
        decap_l3_ipv4 = features.decap_l3_ipv4,
        "programs attached to TC"
    );
    // Endpoints created by an earlier run: take their hooks over (atomic program replacement).
    let local = netlink::local_endpoints()?;
    for ifname in local.values() {
        datapath.attach(Hook::Endpoint, ifname)?;
    }
    let programs = datapath.program_sizes().unwrap_or_default();
    tracing::info!(
        %uplink, uplink_mtu, vtep = %options.advertise, endpoints = local.len(),
        pin_dir = %options.pin_dir.display(), "datapath loaded and attached"
    );

    let batch_duration = crate::metrics::BatchDuration::default();
    let (control, reconciler) = control::start(control::Setup {
        identity,
        datapath,
        local: local.into_iter().collect(),
        macvlan_parent: options.macvlan_parent.clone(),
        run_dir: options.run_dir.clone(),
        batch_duration: Box::new(batch_duration.clone()),
    })?;
    let store = Arc::new(
        connect(&store_config)
            .await
            .map_err(|e| anyhow!(naming_the_store(store_config.url(), &e)))?,
    );
    let dns = match options.dns.clone() {
        Some(dns) => Some(
            crate::dns::Dns::start(control.clone(), dns, &options.run_dir, &uplink)
                .await
                .context("DNS (give another --dns-address, or --no-dns)")?,
        ),
        None => None,
    };
    let service = Service::new(
        store.clone(),
        control.clone(),
        service::Host {
            name: options.host_name.clone(),
            vtep: options.advertise,
            uplink_mtu,
            macvlan_parent: options.macvlan_parent.clone(),
        },
        dns,
    );

    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    {
        let (store, control, health) = (store.clone(), control.clone(), health.clone());
        tasks.spawn(async move {
            watcher::run(store, control, health).await?;
            Ok(())
        });
    }
    tasks.spawn(tick(control.clone()));
    tasks.spawn(own_keys::run(service.clone(), control.clone()));
    if let Some(grace) = options.remove_dead_hosts_after {
        tasks.spawn(dead_hosts::run(service.clone(), control.clone(), grace));
    }
    // A refusal found later (the store was slow at start) ends the daemon all the same.
    tasks.spawn(async move {
        let refused = registration
            .wait_for(|r| matches!(r, host::Registration::Refused(_)))
            .await;
        match refused.as_deref() {
            Ok(host::Registration::Refused(error)) => Err(anyhow!(error.clone())),
            _ => Err(anyhow!("the liveness thread stopped")),
        }
    });
    if let Some(docker) = options.docker.clone() {
        crate::docker::start(service.clone(), health.clone(), docker, &mut tasks)?;
    }
    if let Some(listener) = metrics_listener {
        let sources = crate::metrics::Sources {
            pin_dir: options.pin_dir.clone(),
            control: control.clone(),
            health: health.clone(),
            dns: service.dns.clone(),
        };
        let metrics = Arc::new(crate::metrics::Metrics::new(sources, batch_duration));
        tracing::info!(address = ?options.metrics_address, "serving /metrics");
        tasks.spawn(metrics_server::serve(listener, metrics));
    }
    let listener = server::bind(&options.run_dir)?;
    let daemon = Arc::new(Daemon {
        service,
        health,
        uplink,
        uplink_source,
        uplink_mtu,
        programs,
        tc_attach,
        features,
        gro_device: gro_flag != 0,
        started: std::time::Instant::now(),
        options,
    });
    tracing::info!(
        socket = %daemon.options.run_dir.join(crate::api::SOCKET_NAME).display(),
        host = %daemon.options.host_name,
        "serving"
    );
    // Root only: the API changes the host's interfaces.
    tasks.spawn(server::serve(listener, handlers::router(daemon.clone()), 0));
    supervise(
        tasks,
        [("reconciler", reconciler), ("liveness", liveness)],
        control,
    )
    .await
}

/// The vxlan device for GRO, as asked; the `config_flags` bit that says it is up. A host where it
/// cannot be had works on without it, so a failure is a warning.
fn gro_device(datapath: &mut crate::datapath::Datapath, options: &DaemonOptions) -> u32 {
    if !options.gro_device {
        if let Err(error) = crate::gro::disable(datapath) {
            tracing::warn!(%error, "cannot remove the GRO device of an earlier run");
        }
        return 0;
    }
    match crate::gro::enable(datapath, options.vxlan_port) {
        Ok(flag) => flag,
        Err(error) => {
            tracing::warn!(%error, "VXLAN is received without GRO");
            0
        }
    }
}

/// Per-endpoint counts cost every packet two map lookups: kept only when served.
fn traffic_flag(metrics_served: bool) -> u32 {
    if metrics_served {
        netd_common::maps::config_flags::ENDPOINT_TRAFFIC
    } else {
        0
    }
}

/// Waits for the first of: a task ending (it should not: an error), one of the daemon's own
/// threads ending (a bug: it panicked), a shutdown signal.
async fn supervise(
    mut tasks: JoinSet<anyhow::Result<()>>,
    threads: [(&'static str, std::thread::JoinHandle<()>); 2],
    control: Control,
) -> anyhow::Result<()> {
    let mut joins: JoinSet<(&'static str, String)> = JoinSet::new();
    for (name, thread) in threads {
        joins.spawn_blocking(move || {
            let why = match thread.join() {
                Ok(()) => "it returned".to_string(),
                Err(panic) => panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                    .unwrap_or_else(|| "it panicked".into()),
            };
            (name, why)
        });
    }
    tokio::select! {
        ended = tasks.join_next() => {
            tasks.abort_all();
            match ended {
                Some(Ok(Ok(()))) => Err(anyhow!("a daemon task ended unexpectedly")),
                Some(Ok(Err(error))) => Err(error.context("a daemon task failed")),
                Some(Err(error)) => Err(anyhow!("a daemon task panicked: {error}")),
                None => Err(anyhow!("no daemon task is running")),
            }
        }
        Some(Ok((name, why))) = joins.join_next() => {
            tasks.abort_all();
            Err(anyhow!("the {name} thread stopped: {why}"))
        }
        () = shutdown_signal() => {
            // Programs, maps and the host's lease stay: a restart within the lease TTL is
            // seamless.
            tracing::info!("stopping; the datapath keeps forwarding");
            tasks.abort_all();
            control.stop().await;
            Ok(())
        }
    }
}

/// Asks the reconciler for its periodic check.
async fn tick(control: Control) -> anyhow::Result<()> {
    let mut interval = tokio::time::interval(control::TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        control.tick();
    }
}

/// Connects to the store, retrying while it is unreachable or refuses (the datapath is already
/// forwarding, and someone may fix the store). Each distinct failure is logged once. What
/// retrying cannot fix ends it: a bad URL or TLS files, a TLS handshake that failed (the
/// store's certificate is not trusted, or it refused this client's).
pub(crate) async fn connect(config: &StoreConfig) -> Result<Store, StoreError> {
    let mut backoff =
        netd_store::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut logged = None;
    loop {
        match config.connect().await {
            Ok(store) => return Ok(store),
            Err(e @ (StoreError::BadUrl { .. } | StoreError::BadTls { .. })) => return Err(e),
            Err(e @ StoreError::Tls(_)) => return Err(e),
            Err(e) => {
                let error = e.to_string();
                if logged.as_ref() != Some(&error) {
                    tracing::warn!(%error, "cannot connect to the store; retrying");
                    logged = Some(error);
                }
                backoff.wait().await;
            }
        }
    }
}

/// A store error at start, in the one line the daemon ends with: which store, and why.
pub(crate) fn naming_the_store(url: &str, error: &StoreError) -> String {
    match error {
        // These say which store already.
        StoreError::BadUrl { .. } | StoreError::BadTls { .. } => error.to_string(),
        _ => format!("store {url}: {error}"),
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

/// Raises this process's descriptor limit to its hard limit. The soft limit is often 1024 (a
/// systemd service's, a shell's), while a daemon holds a socket per namespace it serves, per
/// DNS connection and per forwarded query; the hard limit (524288 under systemd) is what the
/// administrator allows. The DNS limits keep a flood far below either ([`crate::dns::limits`]).
fn raise_nofile_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write only the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read the descriptor limit");
        return;
    }
    if limit.rlim_cur >= limit.rlim_max {
        return;
    }
    let soft = limit.rlim_cur;
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0 {
        tracing::debug!(from = soft, to = limit.rlim_max, "descriptor limit raised");
    } else {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot raise the descriptor limit");
    }
}
