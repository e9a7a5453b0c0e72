//! Docker integration: netd as Docker's `netd` network and IPAM driver (remote plugin protocol
//! on a unix socket in Docker's plugin directory), networks mirrored between the cluster store
//! and every host's Docker, and the Engine's events followed to release what Docker forgot.

mod bindings;
pub mod driver;
mod endpoint;
pub mod engine;
mod http;
mod ipam;
mod names;
mod network;
pub mod protocol;
mod sync;

use std::{os::unix::fs::PermissionsExt as _, path::PathBuf, sync::Arc};

use anyhow::Context as _;
use tokio::{
    io::BufReader,
    net::{UnixListener, UnixStream},
    task::JoinSet,
};

use self::{driver::Driver, engine::Engine};
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
    let driver = Arc::new(Driver::new(service, health, engine));
    tracing::info!(plugin = %path.display(), engine = %options.engine_socket.display(), "Docker plugin listening");
    tasks.spawn(serve(listener, driver.clone()));
    tasks.spawn(sync::run(driver));
    Ok(())
}

async fn serve(listener: UnixListener, driver: Arc<Driver>) -> anyhow::Result<()> {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, driver.clone()));
            }
            Err(error) => {
                tracing::error!(%error, "plugin socket accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

/// One keep-alive connection from dockerd: requests one after the other.
async fn connection(stream: UnixStream, driver: Arc<Driver>) {
    let mut stream = BufReader::new(stream);
    loop {
        let request = match http::read_request(&mut stream).await {
            Ok(r) => r,
            Err(http::HttpError::Closed) => return,
            Err(error) => {
                tracing::debug!(%error, "bad plugin request");
                return;
            }
        };
        tracing::debug!(method = %request.method, path = %request.path, "plugin call");
        let response = driver.handle(&request.path, &request.body).await;
        let body = serde_json::to_vec(&response).unwrap_or_default();
        if http::write_json_response(stream.get_mut(), 200, &body)
            .await
            .is_err()
        {
            return;
        }
    }
}
