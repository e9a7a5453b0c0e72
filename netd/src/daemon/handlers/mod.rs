//! What each API request does, one file per resource: parse, then call the service layer or
//! ask the reconciler. Errors are one clear sentence: the CLI prints them as they are.

mod endpoints;
mod networks;
mod status;

use serde_json::Value;

use super::Daemon;
use crate::api::Request;

pub async fn handle(daemon: &Daemon, request: Request) -> anyhow::Result<Value> {
    let service = &daemon.service;
    match request {
        Request::NetworkCreate {
            name,
            driver,
            subnets,
            mtu,
            vni,
            options,
        } => {
            let new = crate::service::networks::NewNetwork {
                name,
                driver,
                subnets,
                mtu,
                vni,
                options,
            };
            Ok(serde_json::json!(service.network_create(new).await?))
        }
        Request::NetworkLs => networks::network_ls(service).await,
        Request::NetworkInspect { name } => networks::network_inspect(service, &name).await,
        Request::NetworkRm { name } => {
            service.network_rm(&name).await?;
            Ok(serde_json::json!({ "removed": name }))
        }
        Request::EndpointAdd {
            network,
            netns,
            ip,
            mac,
            ifname,
            name,
        } => {
            let add = endpoints::Add {
                network,
                netns,
                ip,
                mac,
                ifname,
                name,
            };
            endpoints::endpoint_add(service, add).await
        }
        Request::EndpointRm { name, network } => {
            endpoints::endpoint_rm(service, &name, network.as_deref()).await
        }
        Request::EndpointLs { network } => {
            endpoints::endpoint_ls(service, network.as_deref()).await
        }
        Request::Status => {
            let member = service.store.member_in_use().await;
            Ok(status::status(daemon, member))
        }
    }
}
