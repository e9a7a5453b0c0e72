//! macvlan parents on this host: their TC hooks and promiscuous mode follow the networks that
//! use them. A parent is put in promiscuous mode (so the NIC accepts the endpoints' MACs) only
//! when it was not already, and restored when the last network on it goes; the run directory
//! remembers which ones netd changed, across restarts.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

use crate::{
    datapath::{Datapath, Hook},
    netlink,
};

/// Parents with netd's hooks attached (by interface name).
#[derive(Debug, Default)]
pub struct Parents {
    attached: BTreeSet<String>,
}

fn promisc_marker(run_dir: &Path, parent: &str) -> PathBuf {
    run_dir.join("promisc").join(parent)
}

impl Parents {
    /// Attaches hooks to the parents in `wanted` that lack them and detaches them from the
    /// others (restoring promiscuous mode where netd turned it on).
    pub fn sync(&mut self, datapath: &mut Datapath, wanted: &BTreeSet<String>, run_dir: &Path) {
        for parent in wanted.difference(&self.attached.clone()) {
            match attach(datapath, parent, run_dir) {
                Ok(()) => {
                    tracing::info!(%parent, "macvlan parent hooked");
                    self.attached.insert(parent.clone());
                }
                Err(error) => {
                    tracing::error!(%parent, error = %format!("{error:#}"), "cannot hook macvlan parent")
                }
            }
        }
        for parent in self
            .attached
            .difference(wanted)
            .cloned()
            .collect::<Vec<_>>()
        {
            let _ = datapath.detach(Hook::Parent, &parent);
            let _ = datapath.detach(Hook::ParentEgress, &parent);
            let marker = promisc_marker(run_dir, &parent);
            if marker.exists() {
                if let Err(error) = netlink::set_promisc(&parent, false) {
                    tracing::warn!(%parent, %error, "cannot restore promiscuous mode");
                }
                let _ = fs::remove_file(marker);
            }
            tracing::info!(%parent, "macvlan parent released");
            self.attached.remove(&parent);
        }
    }
}

fn attach(datapath: &mut Datapath, parent: &str, run_dir: &Path) -> anyhow::Result<()> {
    datapath.attach(Hook::Parent, parent)?;
    datapath.attach(Hook::ParentEgress, parent)?;
    if !netlink::link_info(parent)?.promisc {
        netlink::set_promisc(parent, true)?;
        let marker = promisc_marker(run_dir, parent);
        if let Some(dir) = marker.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(marker, b"netd turned promiscuous mode on\n")?;
    }
    Ok(())
}
