//! Why an operation failed, typed where it fails: the local API answers with the kind (and its
//! HTTP status), the CLI exits with its code, and the Docker frontend decides on it. Nobody
//! reads the message but people.

use netd_store::{StoreError, ipam::IpamError};

use crate::{
    api::{ApiError, ErrorKind},
    control::ControlError,
    netlink::NetlinkError,
};

/// A failed operation: its kind, and one sentence for the user.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    kind: ErrorKind,
    message: String,
}

impl ServiceError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Bad input: a name, an address, an option.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::AlreadyExists, message)
    }

    pub fn in_use(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InUse, message)
    }

    /// Cannot be done now; the same request may work later.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError::new(e.kind, e.message)
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        let kind = match &e {
            StoreError::Unavailable(_) => ErrorKind::Unavailable,
            // A watch's history, not a request's: asking again works.
            StoreError::Compacted(_) => ErrorKind::Unavailable,
            // The store answered and refused: not an outage, and not ours.
            // The store (or this client) refused at the TLS level: the same, before a request.
            StoreError::Refused { .. } | StoreError::Tls(_) => ErrorKind::Refused,
            StoreError::BadUrl { .. }
            | StoreError::BadTls { .. }
            | StoreError::LeaseLost(_)
            | StoreError::Other(_) => ErrorKind::Internal,
        };
        Self::new(kind, e.to_string())
    }
}

impl From<IpamError> for ServiceError {
    fn from(e: IpamError) -> Self {
        let kind = match e {
            IpamError::Store(e) => return e.into(),
            IpamError::OutsideSubnet { .. }
            | IpamError::OutsideRange { .. }
            | IpamError::Reserved { .. } => ErrorKind::Invalid,
            // Every address is taken: as full as a taken address, and freed the same way.
            IpamError::Taken { .. } | IpamError::Exhausted(_) => ErrorKind::InUse,
        };
        Self::new(kind, e.to_string())
    }
}

impl From<ControlError> for ServiceError {
    fn from(e: ControlError) -> Self {
        let kind = match &e {
            // Still syncing with the store: the same request works once it has.
            ControlError::NotApplied { .. } => ErrorKind::Unavailable,
            // The daemon is stopping.
            ControlError::Stopped => ErrorKind::Unavailable,
            ControlError::NoInterface(_)
            | ControlError::NotProgrammed { .. }
            | ControlError::Datapath(_) => ErrorKind::Internal,
        };
        Self::new(kind, e.to_string())
    }
}

impl From<NetlinkError> for ServiceError {
    fn from(e: NetlinkError) -> Self {
        let kind = match &e {
            NetlinkError::NoNetns(_) | NetlinkError::NoSuchLink(_) => ErrorKind::NotFound,
            // An interface of the endpoint's name is there already (left by someone else).
            NetlinkError::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            NetlinkError::InvalidMac(_) => ErrorKind::Invalid,
            NetlinkError::Kernel { .. }
            | NetlinkError::Netns(_)
            | NetlinkError::Io { .. }
            | NetlinkError::Protocol { .. } => ErrorKind::Internal,
        };
        Self::new(kind, e.to_string())
    }
}

impl From<tokio::task::JoinError> for ServiceError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::internal(format!("interface plumbing failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_and_reconciler_failures_keep_their_kind_and_message() {
        let e = ServiceError::from(StoreError::Unavailable("connection refused".into()));
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert_eq!(e.to_string(), "store unreachable: connection refused");
        let e = ServiceError::from(ControlError::NotApplied {
            wanted: 9,
            applied: 3,
        });
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.to_string().ends_with("try again"), "{e}");
        let e = ServiceError::from(StoreError::Other("boom".into()));
        assert_eq!(e.kind(), ErrorKind::Internal);
        let e = ServiceError::from(StoreError::Refused {
            request: "the write of /netd/v1/networks/n".into(),
            reason: "Permission denied".into(),
        });
        assert_eq!(e.kind(), ErrorKind::Refused);
        assert_eq!(
            e.to_string(),
            "store refused the write of /netd/v1/networks/n: Permission denied"
        );
    }

    #[test]
    fn address_failures_say_whose_fault() {
        let ip = std::net::Ipv4Addr::new(10, 0, 0, 5);
        let network = "n".to_string();
        let taken = ServiceError::from(IpamError::Taken {
            ip,
            network: network.clone(),
        });
        assert_eq!(taken.kind(), ErrorKind::InUse);
        assert_eq!(
            taken.to_string(),
            "address 10.0.0.5 is already in use in network n"
        );
        let outside = ServiceError::from(IpamError::OutsideSubnet { ip, network });
        assert_eq!(outside.kind(), ErrorKind::Invalid);
        let lost = ServiceError::from(IpamError::Store(StoreError::Unavailable("x".into())));
        assert_eq!(lost.kind(), ErrorKind::Unavailable);
    }

    #[test]
    fn the_api_answers_with_the_same_kind_and_message() {
        let e = ApiError::from(ServiceError::already_exists("network \"n\" already exists"));
        assert_eq!(
            e,
            ApiError::new(ErrorKind::AlreadyExists, "network \"n\" already exists")
        );
    }
}
