//! What each API route does, one file per resource: parse, then call the service layer or ask
//! the reconciler. Errors are typed where they arise ([`ServiceError`]) and answered with
//! their kind; their message is one clear sentence the CLI prints as it is.

mod endpoints;
mod hosts;
mod networks;
mod status;

use std::sync::Arc;

use axum::{
    Router,
    routing::{delete, get},
};

use super::Daemon;
use crate::{api::routes, service::ServiceError};

/// The API's routes ([`crate::api`] lists them).
pub fn router(daemon: Arc<Daemon>) -> Router {
    Router::new()
        .route(routes::NETWORKS, get(networks::list).post(networks::create))
        .route(
            routes::NETWORK,
            get(networks::inspect).delete(networks::remove),
        )
        .route(routes::ENDPOINTS, get(endpoints::list).post(endpoints::add))
        .route(routes::ENDPOINT, delete(endpoints::remove))
        .route(routes::HOST, delete(hosts::remove))
        .route(routes::STATUS, get(status::get))
        .with_state(daemon)
}

/// What handlers answer.
type Answer<T> = Result<axum::Json<T>, crate::api::ApiError>;

fn answer<T>(result: Result<T, ServiceError>) -> Answer<T> {
    result.map(axum::Json).map_err(Into::into)
}
