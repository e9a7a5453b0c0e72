//! The bpf filesystem: pins live there, and it is not mounted at boot on every machine.

use std::{
    fs, io,
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _},
    path::Path,
};

use nix::{
    mount::{MsFlags, mount},
    sys::statfs::{BPF_FS_MAGIC, statfs},
};

#[derive(Debug, thiserror::Error)]
pub enum BpffsError {
    #[error("{path} is not on a bpf filesystem (mount one with `mount -t bpf bpf {path}`)")]
    NotBpffs { path: String },
    #[error("cannot mount bpffs at {path}: {source}")]
    Mount { path: String, source: nix::Error },
    #[error("cannot create pin directory {path}: {source}")]
    CreateDir { path: String, source: io::Error },
    #[error(
        "pin directory {path} belongs to uid {uid}, not to this user: someone else made it \
         (and may have put pins in it); remove it (rm -r {path}) and start again"
    )]
    NotOurs { path: String, uid: u32 },
}

/// The standard mount point.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";

fn is_bpffs(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == BPF_FS_MAGIC)
}

/// Makes sure `dir` exists on a bpffs, root-only (0700; pins themselves are created 0600 by the
/// kernel). Mounts bpffs at /sys/fs/bpf first when `dir` is below it and nothing is mounted.
pub fn ensure_pin_dir(dir: &Path) -> Result<(), BpffsError> {
    let root = Path::new(BPFFS_ROOT);
    if dir.starts_with(root) && !is_bpffs(root) {
        mount(
            Some("bpf"),
            root,
            Some("bpf"),
            MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|source| BpffsError::Mount {
            path: BPFFS_ROOT.into(),
            source,
        })?;
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| BpffsError::CreateDir {
            path: dir.display().to_string(),
            source,
        })?;
    // /sys/fs/bpf is often world-writable (1777): anyone could have made the directory first,
    // and its owner could then replace the pinned maps and links whatever its mode.
    let uid = fs::metadata(dir)
        .map_err(|source| BpffsError::CreateDir {
            path: dir.display().to_string(),
            source,
        })?
        .uid();
    if uid != nix::unistd::geteuid().as_raw() {
        return Err(BpffsError::NotOurs {
            path: dir.display().to_string(),
            uid,
        });
    }
    // An existing directory keeps its mode: tighten it.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|source| {
        BpffsError::CreateDir {
            path: dir.display().to_string(),
            source,
        }
    })?;
    if !is_bpffs(dir) {
        return Err(BpffsError::NotBpffs {
            path: dir.display().to_string(),
        });
    }
    Ok(())
}
