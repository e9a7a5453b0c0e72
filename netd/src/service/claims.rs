//! Address claims, unique across all hosts.
//!
//! A host claims an address by creating a key of its own (under its prefix in the per-host
//! layout, so that the store's access control can confine it) and then reading every host's
//! claims of that address from its watched state, once that state has reached the claim's
//! create revision: every earlier claim is in it by then. The earliest claim holds the address
//! on every host ([`crate::control::sources`]); a host whose claim came later takes it back
//! and tries the next address. Network, broadcast, gateway and aux addresses are never handed
//! out.

use std::{collections::HashSet, net::Ipv4Addr};

use netd_store::{Backend, Expect, ipam::IpamError, keys, schema::NetworkRecord};

use super::{APPLY_TIMEOUT, Service, ServiceError};
use crate::control::Claim;

impl Service {
    /// Where this host writes its endpoints and claims now: the shared layout while a host
    /// whose netd reads nothing else is alive, its own prefix otherwise.
    pub fn layout(&self) -> keys::Layout {
        if self.control.summary().shared_layout_hosts.is_empty() {
            keys::Layout::PerHost
        } else {
            keys::Layout::Shared
        }
    }

    /// Claims `requested`, or the first free address of the network's pools, for `owner`.
    pub async fn claim_address(
        &self,
        network: &NetworkRecord,
        owner: &str,
        requested: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, ServiceError> {
        let name = network.name.clone();
        let taken: HashSet<Ipv4Addr> = self.control.taken(&name).await?.into_iter().collect();
        if let Some(ip) = requested {
            let subnet = network.subnet_of(ip).ok_or(IpamError::OutsideSubnet {
                ip,
                network: name.clone(),
            })?;
            if let Some(range) = subnet.ip_range
                && !range.contains(&ip)
            {
                return Err(IpamError::OutsideRange {
                    ip,
                    range,
                    network: name,
                }
                .into());
            }
            if subnet.is_reserved(ip) {
                return Err(IpamError::Reserved { ip, network: name }.into());
            }
            if taken.contains(&ip) || !self.try_claim(&name, ip, owner).await? {
                return Err(IpamError::Taken { ip, network: name }.into());
            }
            return Ok(ip);
        }
        for subnet in &network.subnets {
            for ip in subnet.pool().hosts() {
                if taken.contains(&ip) || subnet.is_reserved(ip) {
                    continue;
                }
                // Another host may have claimed it since: then try the next one.
                if self.try_claim(&name, ip, owner).await? {
                    return Ok(ip);
                }
            }
        }
        Err(IpamError::Exhausted(name).into())
    }

    /// Creates this host's claim of `ip` and keeps it if it is the earliest of every host's.
    async fn try_claim(
        &self,
        network: &str,
        ip: Ipv4Addr,
        owner: &str,
    ) -> Result<bool, ServiceError> {
        let key = self.layout().claim(&self.host.name, network, ip);
        let value = owner.as_bytes();
        if !self.store.put_if(&key, value, None, Expect::Absent).await? {
            return Ok(false);
        }
        match self.holds(network, ip, &key).await {
            Ok(true) => Ok(true),
            held => {
                // Lost to an earlier claim, or not known: either way, not ours to keep.
                self.store.delete_with_claim(&[], &key, value).await?;
                held
            }
        }
    }

    /// Whether this host's claim under `key` holds `ip`, judged once the reconciler has applied
    /// its create revision.
    async fn holds(&self, network: &str, ip: Ipv4Addr, key: &str) -> Result<bool, ServiceError> {
        if !self.wait_created_key_applied(key).await? {
            return Ok(false);
        }
        let claims = self.control.claims_of(network, ip).await?;
        Ok(claims.first().is_some_and(|c| c.key == key))
    }

    /// Waits until the reconciler has applied the creation of `key` (so every key created
    /// before it is in its state too); `false` when the key is gone.
    pub(super) async fn wait_created_key_applied(&self, key: &str) -> Result<bool, ServiceError> {
        let Some(kv) = self.store.get(key).await? else {
            return Ok(false);
        };
        self.control
            .wait_applied(kv.create_revision, APPLY_TIMEOUT)
            .await?;
        Ok(true)
    }

    /// This host's claims of `ip` made for `owner`, in either layout.
    pub async fn own_claims(
        &self,
        network: &str,
        ip: Ipv4Addr,
        owner: impl Fn(&str) -> bool,
    ) -> Result<Vec<Claim>, ServiceError> {
        let claims = self.control.claims_of(network, ip).await?;
        Ok(claims
            .into_iter()
            .filter(|c| self.is_own_key(&c.key) && owner(&c.owner))
            .collect())
    }

    /// Whether this host may have written `key`: one under its prefix, or one of the shared
    /// layout (whose value then says whose it is).
    fn is_own_key(&self, key: &str) -> bool {
        match keys::parse(key) {
            Some(keys::Key::Claim { host, .. } | keys::Key::Endpoint { host, .. }) => {
                host.is_none_or(|h| h == self.host.name)
            }
            _ => false,
        }
    }

    /// Deletes `records` (an endpoint's keys) and, in the same transaction, `owner`'s claim of
    /// `ip` if it still holds it; a second claim of the same owner (one in each layout, while
    /// they move) goes after. Returns how many keys went.
    pub async fn delete_releasing(
        &self,
        records: &[String],
        network: &str,
        ip: Option<Ipv4Addr>,
        owner: &str,
    ) -> Result<usize, ServiceError> {
        let claims = match ip {
            Some(ip) => self.own_claims(network, ip, |o| o == owner).await?,
            None => Vec::new(),
        };
        let value = owner.as_bytes();
        let mut deleted = match claims.first() {
            Some(claim) => {
                self.store
                    .delete_with_claim(records, &claim.key, value)
                    .await?
            }
            None => self.store.delete_all(records).await?,
        };
        for claim in claims.iter().skip(1) {
            deleted += self.store.delete_with_claim(&[], &claim.key, value).await?;
        }
        Ok(deleted)
    }

    /// Frees `owner`'s claim of `ip` (idempotent; never another owner's claim).
    pub async fn release_address(
        &self,
        network: &str,
        ip: Ipv4Addr,
        owner: &str,
    ) -> Result<bool, ServiceError> {
        Ok(self.delete_releasing(&[], network, Some(ip), owner).await? > 0)
    }
}
