//! `CreateNetwork` and `DeleteNetwork`: a network `docker network create -d netd` made is
//! published to the store (and so appears on every host); one netd mirrored from the store is
//! only bound; `docker network rm` removes the network everywhere.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail};
use ipnet::Ipv4Net;
use serde_json::{Map, Value};

use netd_store::{
    options::{self as netd_options, Frontend, NetworkOptions},
    schema::DRIVER_OVERLAY,
};

use super::{
    protocol::{self, CreateNetworkRequest, Empty, GENERIC_OPTIONS, IpamData, NetworkRequest},
    state::DockerState,
};
use crate::api::{CreateNetwork, ErrorKind, SubnetSpec};

/// How long Docker may take to show a network it just created.
const SHOW_WAIT: Duration = Duration::from_secs(30);

/// Reads the generic options (`-o`) out of `CreateNetwork`'s options, as the CLI's are read
/// (`netd_store::options`): an unknown key is refused, Docker's own `com.docker.*` pass.
fn network_options(options: &Map<String, Value>) -> anyhow::Result<NetworkOptions> {
    let generic = match options.get(GENERIC_OPTIONS) {
        None | Some(Value::Null) => return Ok(NetworkOptions::default()),
        Some(Value::Object(map)) => map,
        Some(other) => bail!("the network options ({GENERIC_OPTIONS}) are not an object: {other}"),
    };
    // The CLI sends strings; the API lets a client send numbers too.
    let pairs: Vec<(&str, String)> = generic
        .iter()
        .map(|(k, v)| {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            (k.as_str(), v)
        })
        .collect();
    Ok(NetworkOptions::parse(
        pairs.iter().map(|(k, v)| (*k, v.as_str())),
        Frontend::Docker,
    )?)
}

/// One subnet as Docker's IPAM gave it; `ip_range` comes from the pool, not from Docker.
fn subnet_spec(data: &IpamData) -> anyhow::Result<(Ipv4Net, SubnetSpec)> {
    let subnet: Ipv4Net = data
        .pool
        .parse()
        .map_err(|_| anyhow!("invalid pool {:?}", data.pool))?;
    let gateway = (!data.gateway.is_empty())
        .then(|| protocol::ipv4_of(&data.gateway))
        .transpose()?;
    let mut aux = Vec::new();
    for (name, address) in &data.aux_addresses {
        let ip = protocol::ipv4_of(address).map_err(|e| anyhow!("aux address {name:?}: {e}"))?;
        aux.push((name.clone(), ip.to_string()));
    }
    let spec = SubnetSpec {
        subnet: subnet.to_string(),
        gateway: gateway.map(|g| g.to_string()),
        ip_range: None,
        aux,
    };
    Ok((subnet, spec))
}

impl DockerState {
    pub(super) async fn create_network(
        self: &Arc<Self>,
        req: CreateNetworkRequest,
    ) -> anyhow::Result<Empty> {
        let options = network_options(&req.options)?;
        let nid = req.network_id;
        let mut subnets = Vec::new();
        for data in &req.ipv4_data {
            let (subnet, mut spec) = subnet_spec(data)?;
            // The pool Docker got for this subnet: its ip-range, and from now on its
            // addresses are containers'.
            spec.ip_range = self.pools.claim(&nid, subnet).map(|r| r.to_string());
            subnets.push(spec);
        }
        if subnets.is_empty() {
            bail!("netd networks need --ipam-driver netd and an explicit --subnet");
        }
        if let Some(name) = &options.mirror_of {
            self.bind(&nid, name);
            return Ok(Empty {});
        }
        // Docker stores the network (and so its name) after this call returns: finish then.
        let this = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = this.publish_created(&nid, subnets, options).await {
                tracing::error!(network = %nid, error = %format!("{e:#}"), "cannot publish a Docker network to the store");
            }
        });
        Ok(Empty {})
    }

    /// Learns the name of a network the user made with Docker, creates it in the store (or,
    /// when another host made it first, uses that one) and binds it.
    async fn publish_created(
        &self,
        nid: &str,
        subnets: Vec<SubnetSpec>,
        options: NetworkOptions,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + SHOW_WAIT;
        let (name, internal) = loop {
            if let Some(n) = self.engine.network(nid).await? {
                let name = n["Name"].as_str().unwrap_or_default().to_string();
                break (name, n["Internal"].as_bool() == Some(true));
            }
            if Instant::now() > deadline {
                bail!("Docker never showed network {nid}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // From now on an overlapping request can name it, before the store has it.
        self.pools.name(nid, &name);
        // `-o netd.type=macvlan -o parent=eth0`: a macvlan-style network.
        let driver = options
            .network_type
            .unwrap_or_else(|| DRIVER_OVERLAY.to_string());
        let mut record = options.record;
        // Docker keeps `--internal` to itself: the other hosts' mirrors must have it too.
        if internal {
            record.insert(netd_options::INTERNAL.to_string(), "true".to_string());
        }
        let new = CreateNetwork {
            name: name.clone(),
            driver,
            subnets,
            mtu: options.mtu,
            vni: options.vni,
            options: record.into_iter().collect(),
        };
        match self.service.network_create(new).await {
            Ok(_) => tracing::info!(network = %name, "Docker network published to the store"),
            // Made elsewhere first (or by `netd network create`): use it.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        self.bind(nid, &name);
        Ok(())
    }

    pub(super) async fn delete_network(&self, req: NetworkRequest) -> anyhow::Result<Empty> {
        let nid = req.network_id;
        let Some(name) = self.bindings.get(&nid) else {
            tracing::info!(docker_network = %nid, "Docker removed a network netd had not bound");
            return Ok(Empty {});
        };
        tracing::info!(network = %name, "Docker removed the network here: removing it everywhere");
        // `docker network rm` here removes the network everywhere, once nobody uses it; one
        // removed already (from another host) is what was asked.
        if let Err(e) = self.service.network_rm(&name).await
            && e.kind() != ErrorKind::NotFound
        {
            return Err(e.into());
        }
        self.bindings.remove(&nid);
        Ok(Empty {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(generic: Value) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("com.docker.network.enable_ipv6".into(), Value::Bool(false));
        m.insert(GENERIC_OPTIONS.into(), generic);
        m
    }

    #[test]
    fn generic_options_are_sorted_out() {
        let o = network_options(&options(serde_json::json!({
            "com.docker.network.driver.mtu": "1200",
            "netd.type": "macvlan",
            "parent": "eth0",
            "vni": 4242,
        })))
        .unwrap();
        assert_eq!(o.mtu, Some(1200));
        assert_eq!(o.mirror_of, None);
        assert_eq!(o.network_type.as_deref(), Some("macvlan"));
        assert_eq!(o.vni, Some(4242));
        let o = network_options(&options(
            serde_json::json!({ netd_options::MIRROR_OF: "n" }),
        ))
        .unwrap();
        assert_eq!(o.mirror_of.as_deref(), Some("n"));
        assert!(o.record.is_empty());
        assert_eq!(
            network_options(&options(Value::Null)).unwrap(),
            NetworkOptions::default()
        );
        assert_eq!(
            network_options(&Map::new()).unwrap(),
            NetworkOptions::default()
        );
    }

    #[test]
    fn bad_options_are_errors() {
        let e = network_options(&options(serde_json::json!({ "mtu": "abc" }))).unwrap_err();
        assert_eq!(e.to_string(), r#"invalid mtu "abc": expected a number"#);
        let e = network_options(&options(serde_json::json!({ "mtu": "20" }))).unwrap_err();
        assert!(e.to_string().contains("outside 68..=9000"), "{e}");
        assert!(network_options(&options(serde_json::json!("mtu=1200"))).is_err());
        let e = network_options(&options(serde_json::json!({ "mut": "1200" }))).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(r#"unknown option "mut" (netd knows mtu"#),
            "{e}"
        );
    }

    #[test]
    fn subnets_from_ipam_data() {
        let data = IpamData {
            address_space: "netd".into(),
            pool: "172.31.0.0/16".into(),
            gateway: "172.31.0.2/16".into(),
            aux_addresses: [("r".to_string(), "172.31.0.3/16".to_string())].into(),
        };
        let (subnet, spec) = subnet_spec(&data).unwrap();
        assert_eq!(subnet.to_string(), "172.31.0.0/16");
        assert_eq!(spec.gateway.as_deref(), Some("172.31.0.2"));
        assert_eq!(spec.aux, vec![("r".to_string(), "172.31.0.3".to_string())]);
        let bad = IpamData {
            pool: "fd00::/64".into(),
            ..IpamData::default()
        };
        assert!(subnet_spec(&bad).is_err());
    }
}
