//! Synthetic clusters written straight into the store, as a thousand real hosts would have
//! written them: host records, networks and endpoints (record + IPAM claim), in bulk
//! transactions. The scale tests and `cargo xtask bench --scale` use it.
//!
//! Network `j` is `syn<j>`, VNI 1000 + j, subnet 10.(100 + j).0.0/16 (so at most 100 of them);
//! endpoint `k` lives in network `k % networks` on host `(k / networks) % hosts`, from the
//! 257th address of its subnet on (the first 256 stay free for real endpoints).

use std::{net::Ipv4Addr, ops::Range, sync::Arc};

use crate::records;
use netd_store::{
    Backend, Store, keys,
    schema::{self, Mac, NetworkRecord},
};

/// etcd's default `--max-txn-ops` is 128: an endpoint is two keys.
const ENDPOINTS_PER_TXN: usize = 64;

#[derive(Clone, Copy, Debug)]
pub struct Synthetic {
    pub hosts: usize,
    pub networks: usize,
}

impl Synthetic {
    pub fn new(hosts: usize, networks: usize) -> Self {
        assert!(
            networks <= 100 && hosts <= 60_000,
            "outside the synthetic address plan"
        );
        Self { hosts, networks }
    }

    pub fn network_name(j: usize) -> String {
        format!("syn{j}")
    }

    pub fn host_name(h: usize) -> String {
        format!("syn-h{h}")
    }

    /// Synthetic VTEPs: 10.212.0.0/16, never reachable (nothing is sent to them).
    pub fn vtep(h: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 212, (h / 250) as u8, (h % 250 + 1) as u8)
    }

    pub fn network(j: usize) -> NetworkRecord {
        records::overlay_network(
            &Self::network_name(j),
            1000 + j as u32,
            &format!("10.{}.0.0/16", 100 + j),
        )
    }

    /// (network, endpoint name, address, host) of endpoint `k`.
    pub fn endpoint(&self, k: usize) -> (String, String, Ipv4Addr, usize) {
        let j = k % self.networks;
        let index = k / self.networks + 256;
        let ip = Ipv4Addr::new(10, 100 + j as u8, (index / 256) as u8, (index % 256) as u8);
        (
            Self::network_name(j),
            format!("s{k}"),
            ip,
            (k / self.networks) % self.hosts,
        )
    }

    /// The two keys an endpoint takes, under its host's prefix: its record and its address
    /// claim.
    pub fn endpoint_kvs(&self, k: usize) -> [(String, Vec<u8>); 2] {
        let (network, id, ip, h) = self.endpoint(k);
        let host = Self::host_name(h);
        let record = records::endpoint(&id, ip, Mac::from_ipv4(ip).0, &host, Self::vtep(h));
        [
            (
                keys::host_endpoint(&host, &network, &id),
                schema::encode(&record),
            ),
            (keys::host_claim(&host, &network, ip), id.into_bytes()),
        ]
    }

    /// Writes the networks (with their VNIs) and the hosts' records (without a lease: they
    /// stay until the store goes).
    pub async fn write_networks_and_hosts(&self, store: &Store) -> anyhow::Result<()> {
        let mut kvs = Vec::new();
        for j in 0..self.networks {
            let net = Self::network(j);
            kvs.push((keys::vni(net.vni), net.name.clone().into_bytes()));
            kvs.push((keys::network(&net.name), schema::encode(&net)));
        }
        for h in 0..self.hosts {
            let record = records::host(Self::vtep(h), "synthetic");
            kvs.push((keys::host(&Self::host_name(h)), schema::encode(&record)));
        }
        for chunk in kvs.chunks(128) {
            store.put_all(chunk).await?;
        }
        Ok(())
    }

    /// Writes endpoints `range`, `parallel` transactions at a time; returns the last revision.
    pub async fn write_endpoints(
        &self,
        store: Arc<Store>,
        range: Range<usize>,
        parallel: usize,
    ) -> anyhow::Result<i64> {
        let batches: Vec<Range<usize>> = range
            .clone()
            .step_by(ENDPOINTS_PER_TXN)
            .map(|start| start..(start + ENDPOINTS_PER_TXN).min(range.end))
            .collect();
        let mut tasks = tokio::task::JoinSet::new();
        let mut last = 0;
        for batch in batches {
            if tasks.len() >= parallel
                && let Some(done) = tasks.join_next().await
            {
                last = last.max(done??);
            }
            let (store, synthetic) = (store.clone(), *self);
            tasks.spawn(async move {
                let kvs: Vec<(String, Vec<u8>)> =
                    batch.flat_map(|k| synthetic.endpoint_kvs(k)).collect();
                anyhow::Ok(store.put_all(&kvs).await?)
            });
        }
        while let Some(done) = tasks.join_next().await {
            last = last.max(done??);
        }
        Ok(last)
    }

    /// Deletes endpoints `range` (records and claims).
    pub async fn delete_endpoints(&self, store: &Store, range: Range<usize>) -> anyhow::Result<()> {
        let keys: Vec<String> = range
            .flat_map(|k| self.endpoint_kvs(k).map(|(key, _)| key))
            .collect();
        for chunk in keys.chunks(128) {
            store.delete_all(chunk).await?;
        }
        Ok(())
    }
}
