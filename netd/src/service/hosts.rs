//! Removing what a host that is gone for good left in the store: its endpoint records and its
//! address claims. A live host's lease holds its record; while it does, nothing is removed.

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
        for kv in self.store.list(keys::ENDPOINTS).await?.kvs {
            let Some(keys::Key::Endpoint { network, id }) = keys::parse(&kv.key) else {
                continue;
            };
            // A record that does not decode is no host's: `netd status` counts it as invalid.
            let Ok(record) = schema::decode::<EndpointRecord>(&kv.value) else {
                continue;
            };
            if record.host != name {
                continue;
            }
            let deleted = ipam::delete_releasing(
                &self.store,
                std::slice::from_ref(&kv.key),
                network,
                Some(record.ip),
                id,
            )
            .await?;
            removed.endpoints += 1;
            removed.claims += deleted.saturating_sub(1);
        }
        // Addresses it handed to Docker, bound to an endpoint or not.
        for kv in self.store.list(keys::IPAM).await?.kvs {
            let Some(keys::Key::Ipam { network, ip }) = keys::parse(&kv.key) else {
                continue;
            };
            let (Ok(ip), Ok(owner)) = (ip.parse(), std::str::from_utf8(&kv.value)) else {
                continue;
            };
            if ipam::docker_claim(name, &kv.value).is_some()
                && ipam::release(&self.store, network, ip, owner).await?
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
