//! State shared by the daemon's tasks.

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
    time::{Instant, SystemTime},
};

use netd_store::{Store, keys};

use super::DaemonOptions;
use crate::{
    datapath::{ApplyStats, Datapath},
    reconcile::{Cluster, View},
};

/// What `netd status` reports.
#[derive(Debug, Default)]
pub struct Status {
    /// `None` while the store answers; otherwise the last error and since when.
    pub store_error: Option<(String, SystemTime)>,
    pub last_sync_revision: i64,
    pub synced_once: bool,
    pub invalid_total: u64,
    pub last_apply: ApplyStats,
    pub lease: Option<i64>,
    /// Docker integration state, `None` when disabled.
    pub docker: Option<String>,
}

pub struct Shared {
    pub options: DaemonOptions,
    pub store: Store,
    pub uplink: String,
    pub uplink_mtu: u16,
    pub started: Instant,
    datapath: Mutex<Datapath>,
    view: Mutex<View>,
    cluster: Mutex<Arc<Cluster>>,
    /// This host's endpoints: (network, endpoint) -> host-side ifname.
    local: Mutex<HashMap<(String, String), String>>,
    status: Mutex<Status>,
    /// (key, mod revision) of invalid values already logged, so each is logged once.
    invalid_seen: Mutex<HashSet<(String, String)>>,
    parents: Mutex<super::parents::Parents>,
}

/// Locks, recovering from a poisoned mutex (a panicking handler must not wedge the daemon).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    pub fn new(
        options: DaemonOptions,
        store: Store,
        datapath: Datapath,
        local: HashMap<(String, String), String>,
        uplink: String,
        uplink_mtu: u16,
    ) -> Self {
        Self {
            options,
            store,
            uplink,
            uplink_mtu,
            started: Instant::now(),
            datapath: Mutex::new(datapath),
            view: Mutex::new(View::default()),
            cluster: Mutex::new(Arc::new(Cluster::default())),
            local: Mutex::new(local),
            status: Mutex::new(Status::default()),
            invalid_seen: Mutex::new(HashSet::new()),
            parents: Mutex::new(super::parents::Parents::default()),
        }
    }

    pub fn socket_path(&self) -> PathBuf {
        self.options.run_dir.join(crate::api::SOCKET_NAME)
    }

    pub fn datapath(&self) -> MutexGuard<'_, Datapath> {
        lock(&self.datapath)
    }

    pub fn view(&self) -> MutexGuard<'_, View> {
        lock(&self.view)
    }

    pub fn status(&self) -> MutexGuard<'_, Status> {
        lock(&self.status)
    }

    pub fn local(&self) -> MutexGuard<'_, HashMap<(String, String), String>> {
        lock(&self.local)
    }

    /// The store's contents as of the last reconcile.
    pub fn cluster(&self) -> Arc<Cluster> {
        lock(&self.cluster).clone()
    }

    pub fn set_docker_state(&self, state: String) {
        let mut status = self.status();
        if status.docker.as_deref() != Some(&state) {
            tracing::info!(docker = %state, "Docker engine");
            status.docker = Some(state);
        }
    }

    pub fn store_ok(&self) {
        let mut status = self.status();
        if status.store_error.take().is_some() {
            tracing::info!("store reachable again");
        }
    }

    pub fn store_failed(&self, error: &dyn std::fmt::Display) {
        let mut status = self.status();
        if status.store_error.is_none() {
            tracing::warn!(%error, "store unreachable; the datapath keeps forwarding what it has");
            status.store_error = Some((error.to_string(), SystemTime::now()));
        }
    }

    /// Makes the maps equal to the desired state derived from the current view.
    pub fn reconcile(&self) -> anyhow::Result<()> {
        let cluster = Arc::new(Cluster::from_view(&self.view()));
        self.note_invalid(&cluster);
        let local_ifindex: HashMap<(String, String), u32> = self
            .local()
            .iter()
            .filter_map(|(k, ifname)| Some((k.clone(), crate::netlink::ifindex(ifname)?)))
            .collect();
        for ep in cluster
            .endpoints
            .iter()
            .filter(|e| e.record.host == self.options.host_name)
        {
            if !local_ifindex.contains_key(&(ep.network.clone(), ep.id.clone())) {
                tracing::debug!(network = %ep.network, endpoint = %ep.id, "endpoint of this host has no interface here");
            }
        }
        // Parent name -> whether any network on it has host access (which needs its egress hook).
        let parent_names = std::cell::RefCell::new(std::collections::BTreeMap::new());
        let parent_of = |net: &netd_store::schema::NetworkRecord| {
            let port = self.parent_port(net)?;
            let host_access = net.macvlan().is_some_and(|spec| spec.host_access);
            *parent_names.borrow_mut().entry(port.0).or_insert(false) |= host_access;
            Some(port.1)
        };
        let desired = cluster.desired_maps(&self.options.host_name, &local_ifindex, &parent_of);
        let stats = {
            let mut dp = self.datapath();
            // Hooks first: a parent's program must be there before entries point frames at it.
            lock(&self.parents).sync(&mut dp, &parent_names.borrow(), &self.options.run_dir);
            let current = dp.read_state()?;
            dp.apply(&current, &desired)?
        };
        if stats.written + stats.deleted > 0 {
            tracing::info!(
                written = stats.written,
                deleted = stats.deleted,
                "maps updated"
            );
        }
        *lock(&self.cluster) = cluster;
        self.status().last_apply = stats;
        Ok(())
    }

    /// The parent interface (name, port) a macvlan network uses on this host.
    pub fn parent_port(
        &self,
        net: &netd_store::schema::NetworkRecord,
    ) -> Option<(String, crate::reconcile::ParentPort)> {
        let spec = net.macvlan()?;
        let name = self.options.macvlan_parent.clone().unwrap_or(spec.parent);
        let ifindex = crate::netlink::ifindex(&name)?;
        let info = crate::netlink::link_info(&name).ok()?;
        Some((
            name,
            crate::reconcile::ParentPort {
                ifindex,
                vlan: spec.vlan,
                mac: info.mac,
            },
        ))
    }

    fn note_invalid(&self, cluster: &Cluster) {
        let mut seen = lock(&self.invalid_seen);
        for (key, reason) in &cluster.invalid {
            // An endpoint whose host is gone is a normal transient state, not a bad value.
            if reason.contains("is not registered") && key.starts_with(keys::ENDPOINTS) {
                continue;
            }
            if seen.insert((key.clone(), reason.clone())) {
                tracing::warn!(%key, %reason, "invalid value in the store skipped");
                self.status().invalid_total += 1;
            }
        }
    }
}
