//! What each API request does, one file per resource. Errors are one clear sentence: the CLI
//! prints them as they are.

mod endpoints;
mod networks;
mod status;

use serde_json::Value;

pub(crate) use self::{
    endpoints::apply_locally,
    networks::{load_network, network_create, network_rm},
};
use super::Shared;
use crate::api::Request;

pub async fn handle(shared: &Shared, request: Request) -> anyhow::Result<Value> {
    match request {
        Request::NetworkCreate {
            name,
            driver,
            subnets,
            mtu,
            vni,
            options,
        } => networks::network_create(shared, name, driver, subnets, mtu, vni, options).await,
        Request::NetworkLs => Ok(networks::network_ls(shared)),
        Request::NetworkInspect { name } => networks::network_inspect(shared, &name).await,
        Request::NetworkRm { name } => networks::network_rm(shared, &name).await,
        Request::EndpointAdd {
            network,
            netns,
            ip,
            mac,
            ifname,
            name,
        } => {
            endpoints::endpoint_add(shared, &network, &netns, ip, mac.as_deref(), &ifname, &name)
                .await
        }
        Request::EndpointRm { name, network } => {
            endpoints::endpoint_rm(shared, &name, network.as_deref()).await
        }
        Request::EndpointLs { network } => Ok(endpoints::endpoint_ls(shared, network.as_deref())),
        Request::Status => status::status(shared),
    }
}
