//! The unix-socket API server.

use std::{fs, os::unix::fs::PermissionsExt as _, path::Path, sync::Arc};

use anyhow::Context as _;
use tokio::net::{UnixListener, UnixStream};

use super::{Shared, handlers};
use crate::api::{self, Response};

pub fn bind(run_dir: &Path) -> anyhow::Result<UnixListener> {
    fs::create_dir_all(run_dir).with_context(|| format!("cannot create {}", run_dir.display()))?;
    fs::set_permissions(run_dir, fs::Permissions::from_mode(0o700))?;
    let path = run_dir.join(api::SOCKET_NAME);
    // A socket left by a killed daemon: binding needs the path free.
    let _ = fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub async fn serve(listener: UnixListener, shared: Arc<Shared>) -> anyhow::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(handle(stream, shared.clone()));
    }
}

async fn handle(mut stream: UnixStream, shared: Arc<Shared>) {
    let response = match stream.peer_cred() {
        Ok(cred) if cred.uid() == 0 => match api::read_request(&mut stream).await {
            Ok(request) => match handlers::handle(&shared, request).await {
                Ok(value) => Response::Ok(value),
                Err(error) => Response::Error(format!("{error:#}")),
            },
            Err(error) => Response::Error(error),
        },
        Ok(_) => Response::Error("permission denied: the netd API is root-only".into()),
        Err(error) => Response::Error(format!("cannot check the caller's credentials: {error}")),
    };
    if let Err(error) = api::write_response(&mut stream, &response).await {
        tracing::debug!(%error, "client went away");
    }
}
