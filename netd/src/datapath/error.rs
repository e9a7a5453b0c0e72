use std::{error::Error, io, path::PathBuf};

use crate::api::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error(transparent)]
    Bpffs(#[from] crate::bpffs::BpffsError),
    #[error(transparent)]
    Netns(#[from] crate::netns::NetnsError),
    #[error("loading the eBPF object failed: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error(
        "this kernel lacks {} (Linux 5.10 or later has them): netd cannot run here",
        .0.join(", ")
    )]
    KernelTooOld(Vec<&'static str>),
    #[error("program {0} is missing from the eBPF object")]
    MissingProgram(&'static str),
    #[error("map {0} is missing from the eBPF object")]
    MissingMap(&'static str),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("writing map {name} failed: {message}")]
    Write { name: &'static str, message: String },
    #[error(
        "pinned map {path} has an incompatible layout ({found}; this netd expects {expected}); \
         give the capacity it was made with, remove the pin directory (traffic through it \
         stops), or run the netd version that made it"
    )]
    IncompatiblePin {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("no pinned maps in {0} (is netd set up on this host? see --pin-dir)")]
    NoPins(PathBuf),
    #[error(
        "map {name} is not pinned in {dir} (pinned by an older netd? restart the daemon with \
         this version)"
    )]
    MissingPin { name: &'static str, dir: PathBuf },
    #[error("permission denied reading {0} (netd's pins are root's: run as root)")]
    PermissionDenied(PathBuf),
    #[error(
        "the datapath pinned in {0} has no event ring (made by an older netd; restart the \
         daemon with this version)"
    )]
    NoEvents(PathBuf),
    #[error("{name} is not dumped: {why}")]
    NotDumpable {
        name: &'static str,
        why: &'static str,
    },
    #[error("waiting for events: {0}")]
    Poll(std::io::Error),
    #[error("unknown map {0:?}; `netd maps ls` lists them")]
    UnknownMap(String),
    #[error("interface {0:?} not found")]
    NoSuchInterface(String),
    #[error("link pin {path}: {source}")]
    LinkPin {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl DatapathError {
    /// What kind of failure it is, for the exit code of the commands that read the pins
    /// themselves (`netd maps`, `netd monitor`; the table is in `netd::api::error`).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NoPins(_) | Self::MissingPin { .. } | Self::NoEvents(_) => ErrorKind::NotFound,
            Self::NoSuchInterface(_) => ErrorKind::NotFound,
            Self::UnknownMap(_) | Self::NotDumpable { .. } => ErrorKind::Invalid,
            Self::PermissionDenied(_) => ErrorKind::PermissionDenied,
            // The kernel refused this user (bpf(2), a pin, a mount): EPERM or EACCES.
            _ if is_denied(self) => ErrorKind::PermissionDenied,
            _ => ErrorKind::Internal,
        }
    }
}

/// Whether `error` comes from the system saying EPERM or EACCES.
fn is_denied(error: &(dyn Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        let denied = e
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::PermissionDenied)
            || e.downcast_ref::<nix::errno::Errno>()
                .is_some_and(|e| matches!(e, nix::errno::Errno::EPERM | nix::errno::Errno::EACCES));
        if denied {
            return true;
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_by_the_kernel_is_permission_denied_wherever_it_is_in_the_chain() {
        let syscall = |errno| DatapathError::Map {
            name: "NETD_FDB",
            source: aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                call: "BPF_OBJ_GET",
                io_error: io::Error::from_raw_os_error(errno),
            }),
        };
        assert_eq!(syscall(libc::EPERM).kind(), ErrorKind::PermissionDenied);
        assert_eq!(syscall(libc::EACCES).kind(), ErrorKind::PermissionDenied);
        // The control: another errno of the same call is not.
        assert_eq!(syscall(libc::EINVAL).kind(), ErrorKind::Internal);
        let mount = |errno| {
            DatapathError::Bpffs(crate::bpffs::BpffsError::Mount {
                path: "/sys/fs/bpf".into(),
                source: errno,
            })
        };
        assert_eq!(
            mount(nix::errno::Errno::EPERM).kind(),
            ErrorKind::PermissionDenied
        );
        assert_eq!(mount(nix::errno::Errno::ENODEV).kind(), ErrorKind::Internal);
    }
}
