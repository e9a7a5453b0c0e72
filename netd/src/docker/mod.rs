//! Docker integration: netd as Docker's `netd` network and IPAM driver (remote plugin protocol
//! on a unix socket in Docker's plugin directory), networks mirrored between the cluster store
//! and every host's Docker, and the Engine's events followed to release what Docker forgot.
//!
//! Each module uses only those before it in this list, so data and calls flow one way:
//! `lock`, `protocol` (the plugin messages), `engine` (the Engine API client); the tables
//! `bindings` and `pools`; `state`, which holds them; the handlers `ipam`, `network`,
//! `endpoint` and `names`; then `driver` (the plugin socket's routes) and `sync`.

mod bindings;
pub mod driver;
mod endpoint;
pub mod engine;
mod ipam;
mod lock;
mod names;
mod network;
mod pools;
pub mod protocol;
mod state;
mod sync;
#[cfg(test)]
mod temp_dir;

use std::{os::unix::fs::PermissionsExt as _, path::PathBuf, sync::Arc};

use anyhow::Context as _;
use tokio::{net::UnixListener, task::JoinSet};

use self::{engine::Engine, state::DockerState};
use crate::{health::Health, service::Service};

/// Socket name Docker discovers the plugin by (`netd` = the driver name users pass to `-d`).
pub const PLUGIN_SOCKET: &str = "netd.sock";

#[derive(Clone, Debug)]
pub struct DockerOptions {
    /// Where Docker looks for plugin sockets (`/run/docker/plugins`).
    pub plugin_dir: PathBuf,
    /// The Engine API socket.
    pub engine_socket: PathBuf,
}

/// Serves the plugin socket and keeps Docker and the store in step; returns once started.
pub fn start(
    service: Service,
    health: Arc<Health>,
    options: DockerOptions,
    tasks: &mut JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&options.plugin_dir)
        .with_context(|| format!("cannot create {}", options.plugin_dir.display()))?;
    let path = options.plugin_dir.join(PLUGIN_SOCKET);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    // dockerd runs as root; nobody else needs the plugin.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let engine = Engine::new(options.engine_socket.clone());
    health.set_docker(
        crate::health::LinkState::Connecting,
        format!("connecting to {}", options.engine_socket.display()),
    );
    let state = Arc::new(DockerState::new(service, health, engine));
    tracing::info!(plugin = %path.display(), engine = %options.engine_socket.display(), "Docker plugin listening");
    let plugin = driver::router(state.clone());
    tasks.spawn(async move {
        // dockerd keeps its connections alive; hyper serves each one's calls in turn.
        axum::serve(listener, plugin)
            .await
            .context("the Docker plugin socket failed")
    });
    tasks.spawn(sync::run(state));
    Ok(())
}
