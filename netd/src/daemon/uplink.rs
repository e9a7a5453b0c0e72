//! Which interface is the underlay: the one `--uplink` names, else the one that holds the
//! `--advertise` address. Not the one that routes to it: the route to a host's own address is
//! the local route, through `lo`.

use std::net::Ipv4Addr;

use anyhow::{Context as _, bail};

use crate::{
    api::{IfName, UplinkSource},
    netlink,
};

/// The underlay interface and how it was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uplink {
    pub name: String,
    pub source: UplinkSource,
}

pub fn choose(flag: Option<&IfName>, advertise: Ipv4Addr) -> anyhow::Result<Uplink> {
    if let Some(name) = flag {
        return Ok(Uplink {
            name: name.to_string(),
            source: UplinkSource::Flag,
        });
    }
    let holder = netlink::address_holder(advertise)
        .with_context(|| format!("looking for the interface that holds {advertise}"))?;
    match holder {
        Some(name) if name != "lo" => Ok(Uplink {
            name,
            source: UplinkSource::Advertise,
        }),
        Some(_) => bail!(
            "--advertise {advertise} is on lo, which cannot carry VXLAN to other hosts; \
             give --uplink"
        ),
        None => bail!("no interface holds --advertise {advertise}; give --uplink"),
    }
}
