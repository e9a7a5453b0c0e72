//! The flow-based vxlan device netd keeps on the VXLAN port, only for the GRO of its socket.
//!
//! A NIC hands the host MTU-sized packets. The kernel merges a TCP flow's packets back into one
//! large skb (GRO), but for VXLAN only when a UDP-tunnel socket is bound on the port: without
//! one, every 1.5 KB packet is decapsulated and delivered on its own, and the container's TCP
//! pays per packet. With this device up, from-uplink still checks every packet (the aggregate's
//! headers are those of all the packets in it) and decapsulates single packets itself; an
//! aggregate it leaves to the device, whose decap also clears the tunnel's GSO state, and
//! from-tunnel delivers what comes out (docs/architecture.md#gro-device).
//!
//! Without the device (the kernel has no vxlan module, the port is another socket's, or
//! `--no-gro-device`) nothing changes but the lost GRO: packets are decapsulated in TC.

use netd_common::maps::config_flags;

use crate::{
    datapath::{Datapath, DatapathError, Hook},
    netlink::{self, NetlinkError},
};

/// The device's name, in the uplink's namespace.
pub const DEVICE: &str = "netd_vxlan";

#[derive(Debug, thiserror::Error)]
pub enum GroDeviceError {
    #[error("cannot keep the GRO device {DEVICE}: {0}")]
    Netlink(#[from] NetlinkError),
    #[error("cannot hook the GRO device {DEVICE}: {0}")]
    Attach(#[from] DatapathError),
}

/// Creates the device on UDP `port` (or keeps the one an earlier run left), hooks from-tunnel
/// to it and brings it up; returns the `config_flags` bit that tells from-uplink it is there.
/// On failure the device is removed again.
pub fn enable(datapath: &mut Datapath, port: u16) -> Result<u32, GroDeviceError> {
    netlink::ensure_flow_vxlan(DEVICE, port)?;
    // Hooked before it is up: the socket exists only while the device is up, and nothing it
    // decapsulates may reach the host stack instead of from-tunnel.
    let hooked = datapath
        .attach(Hook::Tunnel, DEVICE)
        .map_err(GroDeviceError::from)
        .and_then(|()| netlink::bring_up(DEVICE).map_err(GroDeviceError::from));
    if let Err(error) = hooked {
        let _ = datapath.detach(Hook::Tunnel, DEVICE);
        let _ = netlink::delete_link(DEVICE);
        return Err(error);
    }
    Ok(config_flags::GRO_DEVICE)
}

/// Removes the device (a daemon started with `--no-gro-device` after one that kept it).
pub fn disable(datapath: &mut Datapath) -> Result<(), GroDeviceError> {
    if netlink::ifindex(DEVICE).is_some() {
        let _ = datapath.detach(Hook::Tunnel, DEVICE);
        netlink::delete_link(DEVICE)?;
    }
    Ok(())
}
