//! Entering a network namespace for the current thread, and coming back.
//!
//! `setns(CLONE_NEWNET)` only changes the calling thread, and keeps its mounts (unlike
//! `ip netns exec`, which remounts /sys and hides the pins in /sys/fs/bpf: docs/architecture.md).

use std::{fs::File, io, os::fd::AsFd as _, path::Path};

use nix::sched::{CloneFlags, setns};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot open network namespace {path}: {source}")]
    Open { path: String, source: io::Error },
    #[error("cannot enter network namespace {path}: {source}")]
    Enter { path: String, source: nix::Error },
}

/// While alive, the current thread is in another network namespace; dropping it returns the thread
/// to the namespace it was in.
#[must_use = "the thread leaves the namespace when this is dropped"]
pub struct NetnsGuard {
    original: File,
}

fn open(path: &Path) -> Result<File, NetnsError> {
    File::open(path).map_err(|source| NetnsError::Open {
        path: path.display().to_string(),
        source,
    })
}

/// Path of a namespace made by `ip netns add NAME`.
pub fn named(name: &str) -> std::path::PathBuf {
    Path::new("/run/netns").join(name)
}

/// Moves the current thread into the namespace at `path` (e.g. `/run/netns/NAME`).
pub fn enter(path: &Path) -> Result<NetnsGuard, NetnsError> {
    let original = open(Path::new("/proc/thread-self/ns/net"))?;
    let target = open(path)?;
    setns(target.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
        path: path.display().to_string(),
        source,
    })?;
    Ok(NetnsGuard { original })
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        // Failing to return would leave the thread in a namespace that may soon be deleted;
        // nothing better can be done in drop than to report it.
        if let Err(error) = setns(self.original.as_fd(), CloneFlags::CLONE_NEWNET) {
            tracing::error!(%error, "cannot return to the original network namespace");
        }
    }
}
