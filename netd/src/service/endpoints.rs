//! Publishing and withdrawing an endpoint of this host, for the local API and Docker alike.
//!
//! Publish: address, interface, programmed (the reconciler), record in the store. Each step is
//! undone when a later one fails, so a failed add leaves no record, no interface and no claim:
//! an address is released only together with the record that used it (one store transaction),
//! and never handed out twice.

use std::{net::Ipv4Addr, path::PathBuf};

use netd_store::{
    Backend, keys,
    schema::{self, EndpointRecord, Mac, MacvlanMode, NetworkRecord, SCHEMA_VERSION},
};

use super::{APPLY_TIMEOUT, Service, ServiceError, blocking};
use crate::{
    control::{Attach, Record},
    netlink,
};

/// Where an endpoint's address comes from.
#[derive(Clone, Debug)]
pub enum Address {
    /// Claimed here for the endpoint's name (the given address, or the first free one), and
    /// released if the endpoint cannot be published.
    Allocate(Option<Ipv4Addr>),
    /// Already claimed by the caller (Docker's IPAM), who releases it.
    Given(Ipv4Addr),
}

/// How the endpoint's interface is made.
#[derive(Clone, Debug)]
pub enum Plumbing {
    /// A veth pair whose peer goes into a network namespace, addressed and routed there.
    Namespace { netns: PathBuf, ifname: String },
    /// A veth pair left in this namespace; Docker moves the peer into the container at Join.
    Docker,
}

#[derive(Clone, Debug)]
pub struct NewEndpoint {
    pub network: String,
    pub id: String,
    pub address: Address,
    pub mac: Option<Mac>,
    pub plumbing: Plumbing,
    /// The DNS names it answers to in its network.
    pub names: Vec<String>,
}

/// A published endpoint.
#[derive(Clone, Debug)]
pub struct Published {
    pub network: NetworkRecord,
    pub ip: Ipv4Addr,
    pub mac: Mac,
    /// The host-side veth.
    pub host_if: String,
}

fn exists(id: &str, network: &str) -> ServiceError {
    ServiceError::already_exists(format!(
        "endpoint {id:?} already exists in network {network:?}"
    ))
}

/// What a failed publish has to take back, filled in as the steps succeed.
#[derive(Default)]
struct Undo {
    claimed: Option<Ipv4Addr>,
    host_if: Option<String>,
    attached: bool,
    record: bool,
}

impl Service {
    /// Publishes an endpoint of this host.
    pub async fn endpoint_publish(&self, new: NewEndpoint) -> Result<Published, ServiceError> {
        if !keys::valid_name(&new.id) {
            return Err(ServiceError::invalid(format!(
                "invalid endpoint name {:?} (letters, digits, '-', '_', '.'; at most 64)",
                new.id
            )));
        }
        let (network, kv) = self.network_load(&new.network).await?;
        self.check_parent(&network)?;
        // The reconciler must know the network before it can program an endpoint of it.
        self.control
            .wait_applied(kv.mod_revision, APPLY_TIMEOUT)
            .await?;
        let key = self
            .layout()
            .endpoint(&self.host.name, &network.name, &new.id);
        if !self
            .control
            .endpoint_keys(&network.name, &new.id)
            .await?
            .is_empty()
            || self.store.get(&key).await?.is_some()
        {
            return Err(exists(&new.id, &network.name));
        }
        if let Some(m) = new.mac {
            if !m.is_unicast() {
                return Err(ServiceError::invalid(format!(
                    "MAC {m} is not a unicast address"
                )));
            }
            if network.gateway_macs().any(|g| g == m) {
                return Err(ServiceError::invalid(format!(
                    "MAC {m} is the gateway's of network {:?}",
                    network.name
                )));
            }
            if self.control.mac_in_use(&network.name, m).await? {
                return Err(ServiceError::in_use(format!(
                    "MAC {m} is already used in network {:?}",
                    network.name
                )));
            }
        }
        let mut undo = Undo::default();
        let result = self.publish_steps(&new, &network, &key, &mut undo).await;
        if result.is_err() {
            self.undo(&new, &key, undo).await;
        }
        if let (Ok(_), Plumbing::Namespace { netns, .. }, Some(dns)) =
            (&result, &new.plumbing, &self.dns)
        {
            // Names are a service on top: an endpoint that cannot have them still works.
            if let Err(error) = dns.serve(netns, &network.name, &new.id, true).await {
                tracing::warn!(error = %format!("{error:#}"), endpoint = %new.id, "no DNS in the endpoint's namespace");
            }
        }
        result
    }

    async fn publish_steps(
        &self,
        new: &NewEndpoint,
        network: &NetworkRecord,
        key: &str,
        undo: &mut Undo,
    ) -> Result<Published, ServiceError> {
        let mtu = self.endpoint_mtu(network).await?;
        let ip = match new.address {
            Address::Allocate(requested) => {
                let ip = self.claim_address(network, &new.id, requested).await?;
                undo.claimed = Some(ip);
                ip
            }
            Address::Given(ip) => ip,
        };
        let subnet = network.subnet_of(ip).ok_or_else(|| {
            ServiceError::invalid(format!(
                "address {ip} is outside network {:?}",
                network.name
            ))
        })?;
        let mac = new.mac.unwrap_or_else(|| Mac::from_ipv4(ip));
        let host_if = match &new.plumbing {
            Plumbing::Namespace { netns, ifname } => {
                let (network, id) = (network.name.clone(), new.id.clone());
                let (netns, ifname, mac) = (netns.clone(), ifname.clone(), mac.to_string());
                let (prefix_len, gateway) = (subnet.subnet.prefix_len(), subnet.gateway);
                blocking(move || {
                    netlink::create_endpoint(&netlink::EndpointLink {
                        network: &network,
                        endpoint: &id,
                        netns: &netns,
                        ifname: &ifname,
                        mac: &mac,
                        address: ip,
                        prefix_len,
                        gateway,
                        mtu,
                    })
                })
                .await?
            }
            Plumbing::Docker => {
                let (network, id, mac) = (network.name.clone(), new.id.clone(), mac.to_string());
                blocking(move || netlink::create_docker_endpoint(&network, &id, &mac, mtu))
                    .await?
                    .0
            }
        };
        undo.host_if = Some(host_if.clone());
        let record = Record {
            ip,
            mac,
            host: self.host.name.as_str().into(),
            vtep: self.host.vtep,
            names: new
                .names
                .iter()
                .map(|n| n.to_ascii_lowercase().into())
                .collect(),
        };
        self.control
            .attach(Attach {
                network: network.name.clone(),
                id: new.id.clone(),
                ifname: host_if.clone(),
                record,
            })
            .await?;
        undo.attached = true;
        let value = schema::encode(&EndpointRecord {
            version: SCHEMA_VERSION,
            ip,
            mac,
            host: self.host.name.clone(),
            vtep_ip: self.host.vtep,
            name: new.id.clone(),
            names: new.names.clone(),
        });
        // An answer lost in a timeout may hide a record that was written: undo deletes it.
        undo.record = true;
        // Only while the network exists: a `network rm` elsewhere since it was read must not
        // leave a record (and its address) behind under a network that is gone.
        let created = self
            .store
            .create_all_requiring(&[(key.to_string(), value)], &keys::network(&network.name))
            .await?;
        if !created {
            undo.record = false;
            return Err(ServiceError::already_exists(format!(
                "endpoint {:?} already exists in network {:?}, or the network was just removed",
                new.id, network.name
            )));
        }
        // Another host may have added the same name at once, under its own prefix: the
        // earliest record is the endpoint's everywhere.
        if !self.holds_name(&network.name, &new.id, key).await? {
            return Err(exists(&new.id, &network.name));
        }
        Ok(Published {
            network: network.clone(),
            ip,
            mac,
            host_if,
        })
    }

    /// Takes back what a failed publish did, newest first.
    async fn undo(&self, new: &NewEndpoint, key: &str, undo: Undo) {
        if undo.attached
            && let Err(error) = self.control.detach(&new.network, &new.id).await
        {
            tracing::warn!(%error, endpoint = %new.id, "undo: cannot take the endpoint off the maps");
        }
        if let Some(host_if) = undo.host_if
            && let Err(error) = blocking(move || netlink::delete_link(&host_if)).await
        {
            tracing::warn!(error = %format!("{error:#}"), endpoint = %new.id, "undo: cannot delete the interface");
        }
        let records: Vec<String> = if undo.record {
            vec![key.to_string()]
        } else {
            Vec::new()
        };
        if (undo.record || undo.claimed.is_some())
            && let Err(error) = self
                .delete_releasing(&records, &new.network, undo.claimed, &new.id)
                .await
        {
            // The claim stays: the address is lost until someone removes it, never doubled.
            tracing::warn!(%error, endpoint = %new.id, "undo: cannot release the address");
        }
    }

    /// Whether this host's record under `key` is the endpoint's (the earliest of every
    /// host's), judged once the reconciler has applied its create revision.
    async fn holds_name(&self, network: &str, id: &str, key: &str) -> Result<bool, ServiceError> {
        if !self.wait_created_key_applied(key).await? {
            return Ok(false);
        }
        let keys = self.control.endpoint_keys(network, id).await?;
        Ok(keys.first().is_some_and(|k| k.key == key))
    }

    /// The keys of this host's record of an endpoint (two while it moves to the per-host
    /// layout), never another host's of the same name.
    pub async fn own_endpoint_keys(
        &self,
        network: &str,
        id: &str,
    ) -> Result<Vec<String>, ServiceError> {
        let me = self.host.name.as_str();
        let known = self.control.endpoint_keys(network, id).await?;
        // One the store may have and the reconciler not yet (an add that just failed).
        let current = self.layout().endpoint(me, network, id);
        let unknown = !known.iter().any(|k| k.key == current);
        let mut keys: Vec<String> = known
            .into_iter()
            .filter(|k| k.host.as_deref() == Some(me))
            .map(|k| k.key)
            .collect();
        if unknown {
            keys.push(current);
        }
        Ok(keys)
    }

    /// The MTU of an endpoint of `network` on this host.
    async fn endpoint_mtu(&self, network: &NetworkRecord) -> Result<u16, ServiceError> {
        if let Some(mtu) = network.mtu {
            return Ok(mtu);
        }
        match self.parent_of(network) {
            // On the LAN: no encapsulation, the parent's MTU.
            Some(parent) => blocking(move || netlink::mtu(&parent)).await,
            None => Ok(super::default_inner_mtu(self.host.uplink_mtu)),
        }
    }

    /// The parent interface a macvlan network uses on this host (`None` for overlay ones).
    pub fn parent_of(&self, network: &NetworkRecord) -> Option<String> {
        let spec = network.macvlan()?;
        Some(self.host.macvlan_parent.clone().unwrap_or(spec.parent))
    }

    /// Checks that an endpoint of a macvlan network can be added here: its parent exists,
    /// and a passthru parent has no endpoint yet.
    pub fn check_parent(&self, network: &NetworkRecord) -> Result<(), ServiceError> {
        let Some(spec) = network.macvlan() else {
            return Ok(());
        };
        let parent = self.parent_of(network).unwrap_or(spec.parent);
        if netlink::ifindex(&parent).is_none() {
            return Err(ServiceError::not_found(format!(
                "parent interface {parent} of network {:?} not found on this host (see --macvlan-parent)",
                network.name
            )));
        }
        let summary = self.control.summary();
        if spec.mode == MacvlanMode::Passthru
            && summary.local.iter().any(|e| e.network == network.name)
        {
            return Err(ServiceError::in_use(format!(
                "network {:?} is in passthru mode and its parent {parent} already has an endpoint on this host",
                network.name
            )));
        }
        Ok(())
    }

    /// Withdraws an endpoint of this host: its record (with its address, if `release` names
    /// the claim's owner), its entries and its interface. The store goes first: while it is
    /// unreachable, nothing changes.
    pub async fn endpoint_withdraw(
        &self,
        network: &str,
        id: &str,
        release: Option<(Ipv4Addr, &str)>,
    ) -> Result<(), ServiceError> {
        let records = self.own_endpoint_keys(network, id).await?;
        let (ip, owner) = match release {
            Some((ip, owner)) => (Some(ip), owner),
            None => (None, ""),
        };
        self.delete_releasing(&records, network, ip, owner).await?;
        if let Some(dns) = &self.dns {
            dns.withdraw(network, id);
        }
        self.control.detach(network, id).await?;
        let host_if = netlink::host_ifname(network, id);
        blocking(move || netlink::delete_link(&host_if)).await?;
        Ok(())
    }

    /// This host's endpoint called `id` (in `network`, if given): (network, address).
    pub fn local_endpoint(
        &self,
        id: &str,
        network: Option<&str>,
    ) -> Result<(String, Option<Ipv4Addr>), ServiceError> {
        let summary = self.control.summary();
        let found: Vec<_> = summary
            .local
            .iter()
            .filter(|e| e.id == id && network.is_none_or(|n| e.network == n))
            .collect();
        match found.as_slice() {
            [] => Err(ServiceError::not_found(format!(
                "no endpoint {id:?} on this host"
            ))),
            [one] => Ok((one.network.clone(), one.record.as_ref().map(|r| r.ip))),
            _ => Err(ServiceError::invalid(format!(
                "endpoint {id:?} exists in several networks; give --network"
            ))),
        }
    }
}
