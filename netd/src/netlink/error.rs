//! What can go wrong talking to the kernel, as one closed set callers can match on.

use std::io;

use crate::netns::NetnsError;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("there is no link named {0}")]
    NoSuchLink(String),
    #[error("cannot {op}: it already exists")]
    AlreadyExists { op: String },
    #[error("the kernel refused to {op}: {}", io::Error::from_raw_os_error(*errno))]
    Kernel { op: String, errno: i32 },
    #[error("network namespace {0} does not exist")]
    NoNetns(String),
    #[error(transparent)]
    Netns(NetnsError),
    #[error("cannot {op}: {source}")]
    Io { op: String, source: io::Error },
    #[error("the kernel's answer to {op} was not understood: {detail}")]
    Protocol { op: String, detail: String },
    #[error("{0}")]
    InvalidMac(String),
}

impl NetlinkError {
    pub(super) fn io(op: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            op: op.into(),
            source,
        }
    }

    pub(super) fn protocol(op: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Protocol {
            op: op.into(),
            detail: detail.into(),
        }
    }

    /// Classifies an rtnetlink failure of `op`.
    pub(super) fn from_rtnl(op: impl Into<String>, error: rtnetlink::Error) -> Self {
        let op = op.into();
        match errno(&error) {
            Some(libc::EEXIST) => Self::AlreadyExists { op },
            Some(errno) => Self::Kernel { op, errno },
            None => match error {
                // rtnetlink's only way of saying that its connection task has gone away.
                rtnetlink::Error::RequestFailed => {
                    Self::io(op, io::Error::other("the netlink connection is closed"))
                }
                other => Self::protocol(op, other.to_string()),
            },
        }
    }

    /// Like [`Self::from_rtnl`] for an operation on the link `name`: the kernel's ENODEV becomes
    /// [`Self::NoSuchLink`].
    pub(super) fn on_link(name: &str, op: impl Into<String>, error: rtnetlink::Error) -> Self {
        if errno(&error) == Some(libc::ENODEV) {
            Self::NoSuchLink(name.to_string())
        } else {
            Self::from_rtnl(op, error)
        }
    }

    pub(super) fn from_netns(path: &std::path::Path, error: NetnsError) -> Self {
        match &error {
            NetnsError::Open { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                Self::NoNetns(path.display().to_string())
            }
            _ => Self::Netns(error),
        }
    }
}

/// The errno of a netlink NACK (the kernel sends it negated).
fn errno(error: &rtnetlink::Error) -> Option<i32> {
    match error {
        rtnetlink::Error::NetlinkError(message) => message.code.map(|code| -code.get()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_error_reads_as_one_sentence() {
        let e = NetlinkError::Kernel {
            op: "add address 10.0.0.2/24 to eth0".into(),
            errno: libc::EADDRNOTAVAIL,
        };
        let text = e.to_string();
        assert!(text.starts_with("the kernel refused to add address 10.0.0.2/24 to eth0: "));
        assert!(text.contains("os error 99"), "{text}");
    }
}
