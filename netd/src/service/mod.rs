//! What netd does for a user, whoever asks: the local API (`netd network ...`, `netd endpoint
//! ...`) and the Docker frontend call the same operations here. Each one is a sequence of
//! store writes and intents to the reconciler, undone in reverse when a step fails.

mod claims;
pub mod endpoints;
mod error;
pub mod hosts;
mod networks;

pub use error::ServiceError;

use std::{net::Ipv4Addr, sync::Arc, time::Duration};

use netd_store::Store;

use crate::{control::Control, dns::Dns};

/// How long an operation waits for the reconciler to catch up with the store before it says
/// the daemon is still syncing.
pub const APPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// This host, as operations publish it.
#[derive(Clone, Debug)]
pub struct Host {
    pub name: String,
    pub vtep: Ipv4Addr,
    pub uplink_mtu: u16,
    /// This host's parent for macvlan networks, replacing the network's own name for it.
    pub macvlan_parent: Option<String>,
}

/// The operations' shared handles; cheap to clone.
#[derive(Clone)]
pub struct Service {
    pub store: Arc<Store>,
    pub control: Control,
    pub host: Arc<Host>,
    /// Names across hosts, unless the daemon runs without (`--no-dns`).
    pub dns: Option<Dns>,
}

impl Service {
    pub fn new(store: Arc<Store>, control: Control, host: Host, dns: Option<Dns>) -> Self {
        Self {
            store,
            control,
            host: Arc::new(host),
            dns,
        }
    }
}

/// Runs blocking interface plumbing off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::netlink::NetlinkError> + Send + 'static,
) -> Result<T, ServiceError> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

/// Default inner MTU of an overlay network on a host with this uplink MTU.
pub fn default_inner_mtu(uplink_mtu: u16) -> u16 {
    uplink_mtu.saturating_sub(netd_common::VXLAN_OVERHEAD)
}
