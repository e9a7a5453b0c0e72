//! The two ways an endpoint's veth pair is made, each undone completely when a step fails.

use netd_store::schema::Mac;
use rtnetlink::Handle;

use super::{
    EndpointLink, NetlinkError, alias, host_ifname,
    link::{self, Lookup, Veth},
    route, runner,
};

fn parse_mac(text: &str) -> Result<[u8; 6], NetlinkError> {
    text.parse::<Mac>()
        .map(|mac| mac.0)
        .map_err(NetlinkError::InvalidMac)
}

/// Deletes what a failed creation made; the first error is the one worth reporting, so a
/// failure here is only logged.
async fn undo(handle: &Handle, host: &str) {
    if let Err(error) = link::delete(handle, host).await {
        tracing::warn!(%error, link = host, "cannot remove a half-made endpoint");
    }
}

pub(super) fn create_endpoint(spec: &EndpointLink<'_>) -> Result<String, NetlinkError> {
    let host = host_ifname(spec.network, spec.endpoint);
    // The peer gets a temporary name: `eth0` may exist in this namespace.
    let peer = format!("{host}p");
    let mac = parse_mac(spec.mac)?;
    let netns = spec.netns.to_path_buf();

    runner::here({
        let (host, peer, netns) = (host.clone(), peer.clone(), netns.clone());
        let (alias, mtu) = (alias(spec.network, spec.endpoint), spec.mtu);
        move |handle| async move {
            let veth = Veth {
                host: &host,
                peer: &peer,
                mtu,
                peer_mac: None,
            };
            // A failed add made nothing (and an existing link of that name is not ours to
            // delete).
            link::add_veth(&handle, &veth).await?;
            let made = async {
                link::set_alias(&handle, &host, &alias).await?;
                link::move_to_netns(&handle, &peer, &netns).await
            };
            if let Err(e) = made.await {
                undo(&handle, &host).await;
                return Err(e);
            }
            Ok(())
        }
    })?;

    let inside = Inside {
        peer,
        ifname: spec.ifname.to_string(),
        mac,
        address: spec.address,
        prefix_len: spec.prefix_len,
        gateway: spec.gateway,
    };
    let finished = runner::in_netns(&netns, move |handle| async move {
        inside.configure(&handle).await
    })
    .and_then(|()| {
        let host = host.clone();
        runner::here(move |handle| async move { link::set_up(&handle, &host).await })
    });
    if let Err(e) = finished {
        // Deleting the host end takes the peer along, in whatever namespace it now is.
        let host = host.clone();
        let _ = runner::here(move |handle| async move {
            undo(&handle, &host).await;
            Ok(())
        });
        return Err(e);
    }
    Ok(host)
}

/// The container side's configuration, applied from inside its namespace.
struct Inside {
    peer: String,
    ifname: String,
    mac: [u8; 6],
    address: std::net::Ipv4Addr,
    prefix_len: u8,
    gateway: Option<std::net::Ipv4Addr>,
}

impl Inside {
    async fn configure(self, handle: &Handle) -> Result<(), NetlinkError> {
        // By index from here on: the name changes with the first request.
        let index = link::get(handle, Lookup::Name(&self.peer))
            .await?
            .header
            .index;
        let name = &self.ifname;
        link::rename_and_set_mac(handle, index, &self.peer, name, self.mac).await?;
        route::add_address(handle, index, name, self.address, self.prefix_len).await?;
        link::set_up_index(handle, index, name).await?;
        link::set_up(handle, "lo").await?;
        if let Some(gateway) = self.gateway {
            // Like Docker: the gateway is the default route, unless the namespace has one.
            match route::add_default_route(handle, index, name, gateway).await {
                Ok(()) | Err(NetlinkError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

pub(super) fn create_docker_endpoint(
    network: &str,
    endpoint: &str,
    mac: &str,
    mtu: u16,
) -> Result<(String, String), NetlinkError> {
    let host = host_ifname(network, endpoint);
    let peer = format!("{host}p");
    let mac = parse_mac(mac)?;
    let alias = alias(network, endpoint);
    runner::here(move |handle| async move {
        // A leftover from a crash between create and delete: start clean.
        link::delete(&handle, &host).await?;
        let veth = Veth {
            host: &host,
            peer: &peer,
            mtu,
            peer_mac: Some(mac),
        };
        link::add_veth(&handle, &veth).await?;
        let made = async {
            link::set_alias(&handle, &host, &alias).await?;
            link::set_up(&handle, &host).await
        };
        if let Err(e) = made.await {
            undo(&handle, &host).await;
            return Err(e);
        }
        Ok((host, peer))
    })
}
