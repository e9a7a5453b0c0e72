//! `/v1/hosts/{name}`: removing what a host that is gone left in the store.

use std::sync::Arc;

use axum::extract::State;

use super::{Answer, answer};
use crate::{
    api::RemovedHost,
    daemon::{Daemon, server::Name},
};

pub(super) async fn remove(
    State(daemon): State<Arc<Daemon>>,
    Name(name): Name,
) -> Answer<RemovedHost> {
    let removed = daemon.service.host_rm(&name).await;
    answer(removed.map(|r| RemovedHost {
        removed: name,
        endpoints: r.endpoints,
        claims: r.claims,
    }))
}
