//! The unix-socket API server.

use std::{fs, os::unix::fs::PermissionsExt as _, path::Path, sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::net::{UnixListener, UnixStream};

use super::{Daemon, handlers};
use crate::api::{self, Response};

/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

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

pub async fn serve(listener: UnixListener, daemon: Arc<Daemon>) -> anyhow::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(handle(stream, daemon.clone()));
    }
}

async fn handle(mut stream: UnixStream, daemon: Arc<Daemon>) {
    // The request is read before the caller is checked: answering first and closing would
    // make a client still writing see "broken pipe" instead of the answer.
    let request = tokio::time::timeout(READ_TIMEOUT, api::read_request(&mut stream)).await;
    let response = match (stream.peer_cred(), request) {
        (Ok(cred), _) if cred.uid() != 0 => {
            Response::Error("permission denied: the netd API is root-only".into())
        }
        (Err(error), _) => {
            Response::Error(format!("cannot check the caller's credentials: {error}"))
        }
        (Ok(_), Err(_)) => Response::Error("no request received in time".into()),
        (Ok(_), Ok(Err(error))) => Response::Error(error),
        (Ok(_), Ok(Ok(request))) => match handlers::handle(&daemon, request).await {
            Ok(value) => Response::Ok(value),
            Err(error) => Response::Error(format!("{error:#}")),
        },
    };
    if let Err(error) = api::write_response(&mut stream, &response).await {
        tracing::debug!(%error, "client went away");
    }
}
