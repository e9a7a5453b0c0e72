//! What `netd status` says about the daemon's links: the store watch, the host's lease and the
//! Docker engine, each kept by the task that owns it and read by the status handler.
//!
//! The watch and the lease are separate on purpose: a keep-alive that succeeds says nothing
//! about a watch that cannot list, and the other way round.

use std::{
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use crate::api::{LeaseStatus, LinkStatus};

pub use crate::api::LinkState;

/// Worse states rank higher: the overall state of several links is the worst one.
fn rank(state: LinkState) -> u8 {
    match state {
        LinkState::Connected => 0,
        LinkState::Syncing => 1,
        LinkState::Connecting => 2,
        LinkState::Unreachable => 3,
        LinkState::Failing => 4,
    }
}

#[derive(Clone, Debug)]
pub struct Link {
    pub state: LinkState,
    pub since: Instant,
    pub error: Option<String>,
}

impl Default for Link {
    fn default() -> Self {
        Self {
            state: LinkState::Connecting,
            since: Instant::now(),
            error: None,
        }
    }
}

impl Link {
    fn set(&mut self, state: LinkState, error: Option<String>) {
        if self.state != state {
            self.since = Instant::now();
        }
        self.state = state;
        self.error = error;
    }

    fn status(&self) -> LinkStatus {
        LinkStatus {
            state: self.state,
            for_seconds: self.since.elapsed().as_secs(),
            error: self.error.clone(),
        }
    }
}

/// The host's registration and its renewals.
#[derive(Clone, Debug, Default)]
pub struct Lease {
    pub link: Link,
    pub id: Option<String>,
    pub ttl: Duration,
    pub registrations: u64,
    pub renewals: u64,
    /// Keep-alives that failed, or succeeded later than two thirds of the TTL after the
    /// previous one: each one a step toward the other hosts dropping this one.
    pub missed_renewals: u64,
    pub last_renewal: Option<Instant>,
}

#[derive(Debug, Default)]
struct Inner {
    watch: Link,
    lease: Lease,
    /// Docker engine state and what to tell about it, `None` when the integration is off.
    docker: Option<(LinkState, String)>,
}

#[derive(Debug, Default)]
pub struct Health {
    inner: Mutex<Inner>,
}

impl Health {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn watch_syncing(&self) {
        self.lock().watch.set(LinkState::Syncing, None);
    }

    pub fn watch_connected(&self) {
        let mut inner = self.lock();
        if inner.watch.state != LinkState::Connected && inner.watch.error.is_some() {
            tracing::info!("store watch established again");
        }
        inner.watch.set(LinkState::Connected, None);
    }

    /// The watch failed; `unreachable` for a store that does not answer.
    pub fn watch_failed(&self, error: &str, unreachable: bool) {
        let mut inner = self.lock();
        let state = if unreachable {
            LinkState::Unreachable
        } else {
            LinkState::Failing
        };
        if inner.watch.state != state {
            tracing::warn!(%error, "store watch lost; the datapath keeps forwarding what it has");
        }
        inner.watch.set(state, Some(error.to_string()));
    }

    pub fn lease_registered(&self, id: &str, ttl: Duration) {
        let mut inner = self.lock();
        let lease = &mut inner.lease;
        lease.id = Some(id.to_string());
        lease.ttl = ttl;
        lease.registrations += 1;
        lease.last_renewal = Some(Instant::now());
        lease.link.set(LinkState::Connected, None);
    }

    pub fn lease_renewed(&self) {
        let mut inner = self.lock();
        let lease = &mut inner.lease;
        let now = Instant::now();
        if lease
            .last_renewal
            .is_some_and(|last| now.duration_since(last) > lease.ttl * 2 / 3)
        {
            lease.missed_renewals += 1;
        }
        lease.renewals += 1;
        lease.last_renewal = Some(now);
        lease.link.set(LinkState::Connected, None);
    }

    /// A keep-alive or registration failed; `unreachable` for a store that does not answer,
    /// otherwise the registration cannot work (a name taken by another host).
    pub fn lease_failed(&self, error: &str, unreachable: bool) {
        let mut inner = self.lock();
        let lease = &mut inner.lease;
        if lease.id.is_some() {
            lease.missed_renewals += 1;
        }
        let state = if unreachable {
            LinkState::Unreachable
        } else {
            LinkState::Failing
        };
        lease.link.set(state, Some(error.to_string()));
    }

    /// The lease is gone (expired): registering again.
    pub fn lease_lost(&self) {
        let mut inner = self.lock();
        inner.lease.id = None;
        inner
            .lease
            .link
            .set(LinkState::Connecting, Some("host lease expired".into()));
    }

    /// `detail`: the state as `netd status` says it ("connected to /run/docker.sock").
    pub fn set_docker(&self, state: LinkState, detail: String) {
        let mut inner = self.lock();
        if inner.docker.as_ref().map(|(_, d)| d) != Some(&detail) {
            tracing::info!(docker = %detail, "Docker engine");
            inner.docker = Some((state, detail));
        }
    }

    pub fn lease(&self) -> Lease {
        self.lock().lease.clone()
    }

    pub fn watch(&self) -> Link {
        self.lock().watch.clone()
    }

    /// The Docker engine's state and how `netd status` says it, read together; `None` when
    /// the integration is off.
    pub fn docker_state(&self) -> Option<(LinkState, String)> {
        self.lock().docker.clone()
    }

    /// The watch as `netd status` and the metrics show it: a watch that is up while the
    /// reconciler has not applied a listing yet is still syncing.
    pub fn watch_as_seen(&self, synced: bool) -> Link {
        let mut watch = self.lock().watch.clone();
        if watch.state == LinkState::Connected && !synced {
            watch.state = LinkState::Syncing;
        }
        watch
    }

    /// The store part of `netd status`: the overall state (the worse of watch and lease),
    /// then each. `synced`: whether the reconciler has applied a listing (a watch that is up
    /// while the listing is still being applied is syncing).
    pub fn store_links(&self, synced: bool) -> StoreLinks {
        let watch = self.watch_as_seen(synced);
        let inner = self.lock();
        let lease = &inner.lease;
        let state = if rank(watch.state) >= rank(lease.link.state) {
            watch.state
        } else {
            lease.link.state
        };
        StoreLinks {
            state,
            watch: watch.status(),
            lease: LeaseStatus {
                link: lease.link.status(),
                lease: lease.id.clone(),
                ttl_seconds: lease.ttl.as_secs(),
                registrations: lease.registrations,
                renewals: lease.renewals,
                missed_renewals: lease.missed_renewals,
                last_renewal_ms_ago: lease
                    .last_renewal
                    .map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)),
            },
        }
    }
}

/// The store's links as `netd status` shows them.
pub struct StoreLinks {
    /// The worse of the two.
    pub state: LinkState,
    pub watch: LinkStatus,
    pub lease: LeaseStatus,
}
