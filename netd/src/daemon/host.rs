//! The host's registration: `/netd/v1/hosts/<name>` under a lease this thread keeps alive.
//! When the daemon and its host die, the lease expires and every other host drops this host's
//! endpoints; a daemon back after its lease ended registers again under a new one.
//!
//! Liveness never waits behind other work: it runs on its own thread, with its own runtime and
//! its own store connection, so neither a busy reconciler nor a watch digesting a bulk write
//! can delay a keep-alive.
//!
//! A host name is taken, never overwritten: a record naming another VTEP under a live lease is
//! another machine with the same name (a cloned VM), and this daemon refuses it.

use std::{net::Ipv4Addr, sync::Arc, time::Duration};

use netd_store::{
    Expect, LeaseId, Store, StoreError, keys,
    schema::{self, HostRecord},
};
use tokio::sync::watch;

use crate::{control::Identity, health::Health};

/// Where the host's registration is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Registration {
    /// Not registered yet (the store may be unreachable).
    Pending,
    Registered,
    /// Before this daemon ever registered, the name turned out to be another live host's: it
    /// must not run under it.
    Refused(String),
}

#[derive(Debug, thiserror::Error)]
enum RegisterError {
    #[error(
        "host name {name:?} is already registered by VTEP {vtep}, another machine's (a cloned \
         VM?): give this host its own --hostname{hint}"
    )]
    Conflict {
        name: String,
        vtep: Ipv4Addr,
        hint: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Starts the liveness thread; `registration` follows it (a store that cannot be reached
/// leaves it pending: the thread keeps trying, the datapath keeps forwarding).
pub fn start(
    store_url: String,
    identity: Identity,
    ttl: Duration,
    health: Arc<Health>,
    registration: watch::Sender<Registration>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("netd-liveness".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::error!(%error, "cannot start the liveness runtime");
                    return;
                }
            };
            runtime.block_on(run(store_url, identity, ttl, health, registration));
        })
}

async fn run(
    store_url: String,
    identity: Identity,
    ttl: Duration,
    health: Arc<Health>,
    registration: watch::Sender<Registration>,
) {
    let store = super::connect(&store_url).await;
    let store = match store {
        Ok(store) => store,
        Err(error) => {
            health.lease_failed(&error.to_string(), false);
            return;
        }
    };
    let retry = (ttl / 6).clamp(Duration::from_millis(200), Duration::from_secs(1));
    loop {
        let lease = match register(&store, &identity, ttl).await {
            Ok(lease) => lease,
            Err(error) => {
                let conflict = matches!(error, RegisterError::Conflict { .. });
                health.lease_failed(&error.to_string(), !conflict);
                if conflict {
                    tracing::error!(%error, "cannot register this host");
                    // After a lease lost, the name stays this daemon's to wait for; before it
                    // ever registered, it is someone else's.
                    registration.send_if_modified(|r| {
                        let refused = *r == Registration::Pending;
                        if refused {
                            *r = Registration::Refused(error.to_string());
                        }
                        refused
                    });
                    tokio::time::sleep(ttl / 3).await;
                } else {
                    tokio::time::sleep(retry).await;
                }
                continue;
            }
        };
        health.lease_registered(lease.as_str(), ttl);
        tracing::info!(%lease, ?ttl, "host registered");
        registration.send_replace(Registration::Registered);
        keep_alive(&store, &lease, ttl, retry, &health).await;
        health.lease_lost();
        tracing::warn!(
            "host lease expired (the store was out of reach too long); registering again"
        );
    }
}

/// Renews `lease` every third of its TTL (sooner after a failure) until it is gone.
async fn keep_alive(
    store: &Store,
    lease: &LeaseId,
    ttl: Duration,
    retry: Duration,
    health: &Health,
) {
    let mut wait = ttl / 3;
    loop {
        tokio::time::sleep(wait).await;
        match store.keep_alive(lease).await {
            Ok(()) => {
                health.lease_renewed();
                wait = ttl / 3;
            }
            Err(StoreError::LeaseLost(_)) => return,
            Err(error) => {
                tracing::warn!(%error, "lease keep-alive failed; retrying");
                health.lease_failed(&error.to_string(), true);
                wait = retry;
            }
        }
    }
}

/// Grants a lease and writes the host record under it: created if absent, taken over if it is
/// this host's (same VTEP: this daemon before a restart, or before its lease ended), refused if
/// another VTEP has it.
async fn register(
    store: &Store,
    identity: &Identity,
    ttl: Duration,
) -> Result<LeaseId, RegisterError> {
    let key = keys::host(&identity.host);
    let value = schema::encode(&identity.record);
    let lease = store.grant_lease(ttl).await?;
    let result = async {
        loop {
            let expect = match store.get(&key).await? {
                None => Expect::Absent,
                Some(kv) => match schema::decode::<HostRecord>(&kv.value) {
                    Ok(other) if other.vtep_ip != identity.record.vtep_ip => {
                        return Err(RegisterError::Conflict {
                            name: identity.host.to_string(),
                            vtep: other.vtep_ip,
                            hint: format!(
                                " (if that was this host before its --advertise changed, the \
                                 record expires within {} s)",
                                ttl.as_secs()
                            ),
                        });
                    }
                    // This host's own record, or a value nobody can use: take it over.
                    _ => Expect::ModRevision(kv.mod_revision),
                },
            };
            if store.put_if(&key, &value, Some(&lease), expect).await? {
                return Ok(());
            }
            // Written by someone else between the read and the write: look again.
        }
    }
    .await;
    match result {
        Ok(()) => Ok(lease),
        Err(e) => {
            let _ = store.revoke(&lease).await;
            Err(e)
        }
    }
}
