//! Removing what a host that is gone for good left in the store: its endpoint records and its
//! address claims, under its own prefix and in the shared layout. A live host's lease holds
//! its record; while it does, nothing is removed.

use netd_store::{
    Backend, ipam, keys,
    schema::{self, EndpointRecord},
};

use super::{Service, ServiceError};

/// What `host_rm` removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostRemoval {
    pub endpoints: usize,
    pub claims: usize,
}

impl Service {
    /// Removes host `name`'s endpoint records (each with its address claim, if the endpoint
    /// still holds it) and the claims of addresses it handed to Docker. Refused while the
    /// host's record lives (its lease is renewed): a live daemon would program, and keep
    /// publishing, what this removes.
    pub async fn host_rm(&self, name: &str) -> Result<HostRemoval, ServiceError> {
        if !keys::valid_name(name) {
            return Err(ServiceError::invalid(format!("invalid host name {name:?}")));
        }
        if name == self.host.name || self.store.get(&keys::host(name)).await?.is_some() {
            return Err(ServiceError::in_use(format!(
                "host {name:?} is alive (its lease is renewed): stop its netd and wait for \
                 its --lease-ttl to pass"
            )));
        }
        let mut removed = HostRemoval::default();
        // Its own prefix: everything under it is its.
        let own = self.store.list(&keys::host_prefix(name)).await?.kvs;
        for kv in &own {
            match keys::parse(&kv.key) {
                Some(keys::Key::Endpoint { .. }) => removed.endpoints += 1,
                Some(keys::Key::Claim { .. }) => removed.claims += 1,
                _ => {}
            }
        }
        let own: Vec<String> = own.into_iter().map(|kv| kv.key).collect();
        // Keys at a time, as a transaction takes them (etcd's default --max-txn-ops is 128).
        for chunk in own.chunks(64) {
            self.store.delete_all(chunk).await?;
        }
        // What it wrote in the shared layout (a netd from before the per-host one, or one that
        // has not moved its keys yet).
        for kv in self.store.list(keys::ENDPOINTS).await?.kvs {
            let Some(keys::Key::Endpoint { network, id, .. }) = keys::parse(&kv.key) else {
                continue;
            };
            // A record that does not decode is no host's: `netd status` counts it as invalid.
            let Ok(record) = schema::decode::<EndpointRecord>(&kv.value) else {
                continue;
            };
            if record.host != name {
                continue;
            }
            let claim = keys::ipam(network, record.ip);
            let deleted = self
                .store
                .delete_with_claim(std::slice::from_ref(&kv.key), &claim, id.as_bytes())
                .await?;
            removed.endpoints += 1;
            removed.claims += deleted.saturating_sub(1);
        }
        // Addresses it handed to Docker, bound to an endpoint or not.
        for kv in self.store.list(keys::IPAM).await?.kvs {
            if ipam::docker_claim(name, &kv.value).is_some()
                && self
                    .store
                    .delete_with_claim(&[], &kv.key, &kv.value)
                    .await?
                    == 1
            {
                removed.claims += 1;
            }
        }
        tracing::info!(
            host = name,
            endpoints = removed.endpoints,
            claims = removed.claims,
            "removed a host that is gone"
        );
        Ok(removed)
    }
}
