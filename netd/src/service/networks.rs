//! Creating, reading and removing networks: the store is the only place they live; every
//! host's reconciler follows it.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use netd_store::{
    Backend, KeyValue, keys,
    options::{Frontend, NetworkOptions},
    schema::{
        self, DRIVER_MACVLAN, DRIVER_OVERLAY, NetworkRecord, SCHEMA_VERSION, SubnetRecord,
        VNI_FIRST_AUTO, VNI_MAX,
    },
};

use super::{APPLY_TIMEOUT, Service, ServiceError};
use crate::api::{CreateNetwork, SubnetSpec};

fn parse_cidr(text: &str, what: &str) -> Result<Ipv4Net, ServiceError> {
    text.parse::<Ipv4Net>().map_err(|_| {
        ServiceError::invalid(format!(
            "invalid {what} {text:?}: expected an IPv4 CIDR such as 172.31.0.0/16"
        ))
    })
}

fn parse_ip(text: &str, what: &str) -> Result<Ipv4Addr, ServiceError> {
    text.parse::<Ipv4Addr>().map_err(|_| {
        ServiceError::invalid(format!("invalid {what} {text:?}: expected an IPv4 address"))
    })
}

/// Address ranges a network's subnet may not touch: packets to them never reach an endpoint
/// (or, link-local, collide with netd's DNS address, 169.254.53.53).
const UNUSABLE: [(Ipv4Net, &str); 5] = [
    (
        Ipv4Net::new_assert(Ipv4Addr::new(0, 0, 0, 0), 8),
        "\"this network\"",
    ),
    (
        Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8),
        "loopback",
    ),
    (
        Ipv4Net::new_assert(Ipv4Addr::new(169, 254, 0, 0), 16),
        "link-local",
    ),
    (
        Ipv4Net::new_assert(Ipv4Addr::new(224, 0, 0, 0), 4),
        "multicast",
    ),
    (
        Ipv4Net::new_assert(Ipv4Addr::new(240, 0, 0, 0), 4),
        "reserved",
    ),
];

fn check_usable(subnet: Ipv4Net) -> Result<Ipv4Net, ServiceError> {
    let overlaps = |range: &Ipv4Net| range.contains(&subnet.network()) || subnet.contains(range);
    match UNUSABLE.iter().find(|(range, _)| overlaps(range)) {
        Some((range, what)) => Err(ServiceError::invalid(format!(
            "subnet {subnet} is {what} ({range}): no endpoint can use it"
        ))),
        None => Ok(subnet),
    }
}

fn build_subnets(specs: &[SubnetSpec]) -> Result<Vec<SubnetRecord>, ServiceError> {
    specs
        .iter()
        .map(|s| {
            Ok(SubnetRecord {
                subnet: check_usable(parse_cidr(&s.subnet, "subnet")?)?,
                gateway: s
                    .gateway
                    .as_deref()
                    .map(|g| parse_ip(g, "gateway"))
                    .transpose()?,
                ip_range: s
                    .ip_range
                    .as_deref()
                    .map(|r| parse_cidr(r, "ip-range"))
                    .transpose()?,
                aux: s
                    .aux
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), parse_ip(v, "aux address")?)))
                    .collect::<Result<_, ServiceError>>()?,
            })
        })
        .collect()
}

/// A value given both as a field (`--vni`) and as an option (`-o vni=`): the two must agree.
fn either<T: PartialEq + std::fmt::Display>(
    field: Option<T>,
    option: Option<T>,
    what: &str,
) -> Result<Option<T>, ServiceError> {
    match (field, option) {
        (Some(a), Some(b)) if a != b => Err(ServiceError::invalid(format!(
            "{what} is given twice, as {a} and {b}"
        ))),
        (field, option) => Ok(field.or(option)),
    }
}

fn exists(name: &str) -> ServiceError {
    ServiceError::already_exists(format!("network {name:?} already exists"))
}

impl Service {
    /// Creates a network (`netd network create`, or a Docker network published) with the given
    /// VNI, or the lowest free one from 256; returns its record.
    pub async fn network_create(&self, new: CreateNetwork) -> Result<NetworkRecord, ServiceError> {
        let CreateNetwork {
            name,
            driver,
            subnets,
            mtu,
            vni,
            options,
        } = new;
        if driver != DRIVER_OVERLAY && driver != DRIVER_MACVLAN {
            return Err(ServiceError::invalid(format!(
                "driver {driver:?} is not supported (-d overlay or -d macvlan)"
            )));
        }
        if subnets.is_empty() {
            return Err(ServiceError::invalid(
                "a network needs at least one --subnet",
            ));
        }
        // Every option is read here, whoever sent the request: `-o mtu=` and `-o vni=` are
        // the same as the fields, an unknown key is refused.
        let parsed = NetworkOptions::parse(
            options.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            Frontend::Netd,
        )
        .map_err(|e| ServiceError::invalid(e.to_string()))?;
        let mtu = either(mtu, parsed.mtu, "the MTU")?;
        let vni = either(vni, parsed.vni, "the VNI")?;
        let mut record = NetworkRecord {
            version: SCHEMA_VERSION,
            name: name.clone(),
            driver,
            vni: vni.unwrap_or(VNI_FIRST_AUTO),
            subnets: build_subnets(&subnets)?,
            mtu,
            options: parsed.record,
        };
        record
            .validate(&name)
            .map_err(|e| ServiceError::invalid(e.to_string()))?;
        let store = &self.store;
        if let Some(vni) = vni {
            if store
                .create_all(&[
                    (keys::network(&name), schema::encode(&record)),
                    (keys::vni(vni), name.clone().into_bytes()),
                ])
                .await?
            {
                return Ok(record);
            }
            return Err(self.creation_conflict(&name, vni).await);
        }
        // A race with another host's create just moves on to the next VNI.
        let used = store.list(keys::VNIS).await?;
        let mut taken: std::collections::HashSet<u32> = used
            .kvs
            .iter()
            .filter_map(|kv| kv.key.strip_prefix(keys::VNIS)?.parse().ok())
            .collect();
        for candidate in VNI_FIRST_AUTO..=VNI_MAX {
            if taken.contains(&candidate) {
                continue;
            }
            record.vni = candidate;
            let kvs = [
                (keys::network(&name), schema::encode(&record)),
                (keys::vni(candidate), name.clone().into_bytes()),
            ];
            if store.create_all(&kvs).await? {
                return Ok(record);
            }
            if store.get(&keys::network(&name)).await?.is_some() {
                return Err(exists(&name));
            }
            taken.insert(candidate);
        }
        Err(ServiceError::in_use("no free VNI left"))
    }

    async fn creation_conflict(&self, name: &str, vni: u32) -> ServiceError {
        match self.store.get(&keys::network(name)).await {
            Ok(Some(_)) => exists(name),
            // Another network's: the VNI is taken, this network does not exist (the Docker
            // frontend tells the two apart by kind).
            Ok(None) => match self.store.get(&keys::vni(vni)).await {
                Ok(Some(kv)) => ServiceError::in_use(format!(
                    "VNI {vni} is already used by network {:?}",
                    String::from_utf8_lossy(&kv.value)
                )),
                Ok(None) => ServiceError::unavailable(format!(
                    "network {name:?} or VNI {vni} was created concurrently; try again"
                )),
                Err(e) => e.into(),
            },
            Err(e) => e.into(),
        }
    }

    /// Reads a network straight from the store (this host may not have seen a network just
    /// created elsewhere); with its store entry, whose revision says when it was written.
    pub async fn network_load(
        &self,
        name: &str,
    ) -> Result<(NetworkRecord, KeyValue), ServiceError> {
        let kv = self
            .store
            .get(&keys::network(name))
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("network {name:?} not found")))?;
        // Not the caller's input: a value someone else wrote, that no host can use either.
        let corrupt =
            |e| ServiceError::internal(format!("network {name:?} is invalid in the store: {e}"));
        let record: NetworkRecord = schema::decode(&kv.value).map_err(&corrupt)?;
        record.validate(name).map_err(&corrupt)?;
        Ok((record, kv))
    }

    /// Removes a network nobody uses any more, with its VNI and the address claims this host
    /// may remove. Other hosts' claims (under their own prefixes, which a confined host cannot
    /// write) hold nothing once the network is gone, and each host removes its own
    /// (`daemon/own_keys.rs`).
    pub async fn network_rm(&self, name: &str) -> Result<(), ServiceError> {
        let (record, _) = self.network_load(name).await?;
        // Every host's endpoints of it, from the reconciler once it has caught up with now.
        let now = self.store.list(&keys::network(name)).await?.revision;
        self.control.wait_applied(now, APPLY_TIMEOUT).await?;
        let found = self.control.network_keys(name).await?;
        let mut names: Vec<&str> = found
            .endpoints
            .iter()
            .filter_map(|key| key.rsplit('/').next())
            .collect();
        names.sort_unstable();
        names.dedup();
        if !names.is_empty() {
            return Err(ServiceError::in_use(format!(
                "network {name:?} is in use by {} endpoint(s): {}",
                names.len(),
                names.join(", ")
            )));
        }
        self.store
            .delete_all(&[keys::network(name), keys::vni(record.vni)])
            .await?;
        let mine = keys::host_prefix(&self.host.name);
        let claims: Vec<String> = found
            .claims
            .into_iter()
            .filter(|key| key.starts_with(&mine) || key.starts_with(keys::IPAM))
            .collect();
        // etcd takes at most 128 operations per transaction: a big network's claims go in
        // several.
        for chunk in claims.chunks(128) {
            if let Err(error) = self.store.delete_all(chunk).await {
                tracing::warn!(%error, network = name, "network removed; some of its address claims were not (they hold nothing now)");
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_unusable_range_is_named() {
        for (subnet, what) in [
            ("224.1.0.0/16", "multicast"),
            ("127.0.0.0/24", "loopback"),
            ("169.254.53.0/24", "link-local"),
            ("0.0.0.0/0", "\"this network\""),
            ("240.0.0.0/8", "reserved"),
        ] {
            let e = check_usable(subnet.parse().unwrap()).unwrap_err();
            assert!(e.to_string().contains(what), "{subnet}: {e}");
        }
        // The control: private ranges next to them are fine.
        for subnet in [
            "10.0.0.0/8",
            "172.31.0.0/16",
            "169.253.0.0/16",
            "223.255.0.0/16",
        ] {
            assert!(check_usable(subnet.parse().unwrap()).is_ok(), "{subnet}");
        }
    }
}
