//! `/v1/endpoints`: add, remove and list endpoints in network namespaces.

use std::sync::Arc;

use axum::{extract::State, http::StatusCode};
use netd_store::schema::Mac;

use super::{Answer, answer};
use crate::{
    api::{AddEndpoint, ApiError, Endpoint, Removed},
    control::EndpointView,
    daemon::{
        Daemon,
        server::{Filter, JsonBody, Name},
    },
    netlink,
    service::{
        Service, ServiceError,
        endpoints::{Address, NewEndpoint, Plumbing},
    },
};

pub(super) fn endpoint_view(e: &EndpointView) -> Endpoint {
    Endpoint {
        name: e.id.clone(),
        network: e.network.clone(),
        ip: e.ip,
        mac: e.mac,
        host: e.host.clone(),
        vtep: e.vtep,
        interface: None,
    }
}

pub(super) async fn list(
    State(daemon): State<Arc<Daemon>>,
    Filter(filter): Filter,
) -> Answer<Vec<Endpoint>> {
    let list = daemon
        .service
        .control
        .endpoints(filter.network.as_deref())
        .await
        .map_err(ServiceError::from);
    answer(list.map(|l| l.iter().map(endpoint_view).collect()))
}

pub(super) async fn add(
    State(daemon): State<Arc<Daemon>>,
    JsonBody(request): JsonBody<AddEndpoint>,
) -> Result<(StatusCode, axum::Json<Endpoint>), ApiError> {
    let added = endpoint_add(&daemon.service, request).await?;
    Ok((StatusCode::CREATED, axum::Json(added)))
}

async fn endpoint_add(service: &Service, add: AddEndpoint) -> Result<Endpoint, ServiceError> {
    let mac = add
        .mac
        .as_deref()
        .map(str::parse::<Mac>)
        .transpose()
        .map_err(ServiceError::invalid)?;
    let netns = netlink::netns_path(&add.netns)?;
    let published = service
        .endpoint_publish(NewEndpoint {
            network: add.network,
            id: add.name.clone(),
            address: Address::Allocate(add.ip),
            mac,
            plumbing: Plumbing::Namespace {
                netns,
                ifname: add.ifname.into(),
            },
            // Namespaces resolve each other by endpoint name.
            names: vec![add.name.clone()],
        })
        .await?;
    Ok(Endpoint {
        name: add.name,
        network: published.network.name,
        ip: published.ip,
        mac: published.mac,
        host: service.host.name.clone(),
        vtep: service.host.vtep,
        interface: Some(published.host_if),
    })
}

pub(super) async fn remove(
    State(daemon): State<Arc<Daemon>>,
    Name(name): Name,
    Filter(filter): Filter,
) -> Answer<Removed> {
    answer(endpoint_rm(&daemon.service, name, filter.network.as_deref()).await)
}

async fn endpoint_rm(
    service: &Service,
    name: String,
    network: Option<&str>,
) -> Result<Removed, ServiceError> {
    let (net, ip) = service.local_endpoint(&name, network)?;
    // The record and its address go together; the address only while it is still claimed for
    // this endpoint's name (the service claimed it so).
    service
        .endpoint_withdraw(&net, &name, ip.map(|ip| (ip, name.as_str())))
        .await?;
    Ok(Removed {
        removed: name,
        network: Some(net),
    })
}
