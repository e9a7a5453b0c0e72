//! macvlan parents on this host: their TC hooks and promiscuous mode follow the networks that
//! use them. A parent is put in promiscuous mode (so the NIC accepts the endpoints' MACs) only
//! when it was not already, and restored when the last network on it goes; the run directory
//! remembers which ones netd changed, across restarts.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use super::kernel::Links;
use crate::datapath::Hook;

/// Parents with netd's hooks attached (by interface name).
#[derive(Debug, Default)]
pub struct Parents {
    attached: BTreeSet<String>,
    /// Those that also have the egress hook: only where a network asks for host access.
    egress: BTreeSet<String>,
}

impl Parents {
    /// The parents an earlier run of the daemon hooked, found by their link pins, so that one
    /// no network needs any more is released (and its promiscuous mode restored) after a
    /// restart too. (Kernels without TCX have no link pins: there the hooks stay until a
    /// network uses the parent again and lets it go.)
    pub fn from_pins(pin_dir: Option<&Path>) -> Self {
        let mut parents = Self::default();
        let Some(entries) = pin_dir.and_then(|d| fs::read_dir(d.join("links")).ok()) else {
            return parents;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(parent) = name.strip_suffix(&format!("@{}", Hook::Parent.label())) {
                parents.attached.insert(parent.to_string());
            } else if let Some(parent) =
                name.strip_suffix(&format!("@{}", Hook::ParentEgress.label()))
            {
                parents.egress.insert(parent.to_string());
            }
        }
        parents
    }
}

fn promisc_marker(run_dir: &Path, parent: &str) -> PathBuf {
    run_dir.join("promisc").join(parent)
}

impl Parents {
    /// Attaches hooks to the parents in `wanted` (name -> whether a network on it has host
    /// access) that lack them and detaches them from the others (restoring promiscuous mode
    /// where netd turned it on).
    pub fn sync(
        &mut self,
        links: &mut impl Links,
        wanted: &BTreeMap<String, bool>,
        run_dir: &Path,
    ) {
        for (parent, &host_access) in wanted {
            let fresh = !self.attached.contains(parent);
            if fresh {
                match attach(links, parent, run_dir) {
                    Ok(()) => {
                        tracing::info!(%parent, "macvlan parent hooked");
                        self.attached.insert(parent.clone());
                    }
                    Err(error) => {
                        tracing::error!(%parent, error = %format!("{error:#}"), "cannot hook macvlan parent");
                        continue;
                    }
                }
            }
            self.sync_egress(links, parent, host_access, fresh);
        }
        let gone: Vec<String> = self
            .attached
            .iter()
            .filter(|p| !wanted.contains_key(*p))
            .cloned()
            .collect();
        for parent in gone {
            let _ = links.detach(Hook::Parent, &parent);
            let _ = links.detach(Hook::ParentEgress, &parent);
            let marker = promisc_marker(run_dir, &parent);
            if marker.exists() {
                if let Err(error) = links.set_promisc(&parent, false) {
                    tracing::warn!(%parent, %error, "cannot restore promiscuous mode");
                }
                let _ = fs::remove_file(marker);
            }
            tracing::info!(%parent, "macvlan parent released");
            self.attached.remove(&parent);
            self.egress.remove(&parent);
        }
    }

    /// The egress hook serves host access only (the host's frames to its own endpoints).
    /// Without it, every frame leaving the parent, the endpoints' and the host's own, would
    /// pay for a program that lets it pass.
    fn sync_egress(&mut self, links: &mut impl Links, parent: &str, wanted: bool, fresh: bool) {
        let has = self.egress.contains(parent);
        if wanted && !has {
            match links.attach(Hook::ParentEgress, parent) {
                Ok(()) => {
                    self.egress.insert(parent.to_string());
                }
                Err(error) => {
                    tracing::error!(%parent, error = %format!("{error:#}"), "cannot hook macvlan parent egress (host access)")
                }
            }
        } else if !wanted && (has || fresh) {
            // `fresh`: a hook pinned by an earlier run of the daemon may still be there.
            let _ = links.detach(Hook::ParentEgress, parent);
            self.egress.remove(parent);
        }
    }
}

fn attach(links: &mut impl Links, parent: &str, run_dir: &Path) -> anyhow::Result<()> {
    links.attach(Hook::Parent, parent)?;
    if !links.link_info(parent)?.promisc {
        links.set_promisc(parent, true)?;
        let marker = promisc_marker(run_dir, parent);
        if let Some(dir) = marker.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(marker, b"netd turned promiscuous mode on\n")?;
    }
    Ok(())
}
