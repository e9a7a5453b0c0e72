//! The host's registration: `/netd/v1/hosts/<name>` under a lease that this task keeps alive.
//! When the daemon and its host die, the lease expires and every other host drops this host's
//! endpoints. A restarted daemon registers again under a new lease (the key moves to it).

use std::{sync::Arc, time::Duration};

use netd_store::{
    LeaseId, StoreError, keys,
    schema::{self, HostRecord, SCHEMA_VERSION},
};
use tokio::sync::oneshot;

use super::Shared;

/// `registered` is told once the host is first registered.
pub async fn run(shared: Arc<Shared>, registered: oneshot::Sender<()>) {
    let mut registered = Some(registered);
    let ttl = shared.options.lease_ttl;
    let mut backoff = Duration::from_millis(200);
    loop {
        let lease = match register(&shared).await {
            Ok(lease) => lease,
            Err(error) => {
                shared.store_failed(&error);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        shared.status().lease = Some(lease.0);
        tracing::info!(lease = lease.0, ttl = ?ttl, "host registered");
        if let Some(tx) = registered.take() {
            let _ = tx.send(());
        }
        loop {
            tokio::time::sleep(ttl / 3).await;
            match shared.store.keep_alive(lease).await {
                Ok(()) => shared.store_ok(),
                Err(StoreError::LeaseLost(_)) => {
                    tracing::warn!(
                        "host lease expired (store unreachable too long); registering again"
                    );
                    break;
                }
                Err(error) => shared.store_failed(&error),
            }
        }
    }
}

async fn register(shared: &Shared) -> Result<LeaseId, StoreError> {
    let lease = shared.store.grant_lease(shared.options.lease_ttl).await?;
    let record = HostRecord {
        version: SCHEMA_VERSION,
        vtep_ip: shared.options.advertise,
        uplink_mtu: shared.uplink_mtu,
        netd: env!("CARGO_PKG_VERSION").into(),
    };
    shared
        .store
        .put_with_lease(
            &keys::host(&shared.options.host_name),
            &schema::encode(&record),
            lease,
        )
        .await?;
    Ok(lease)
}
