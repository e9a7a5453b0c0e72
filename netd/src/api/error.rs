//! What went wrong, as one kind the daemon, the CLI and the Docker frontend all match on, and
//! its one mapping to an HTTP status (the API's answers) and to the CLI's exit code.
//!
//! | kind                | meaning                                            | HTTP | exit |
//! | ------------------- | -------------------------------------------------- | ---- | ---- |
//! | (success)           | 201 for what a POST created                        | 200  | 0    |
//! | `internal`          | a bug, the kernel refusing, anything not below     | 500  | 1    |
//! | `invalid`           | bad input: flag, name, address, malformed request  | 400  | 2    |
//! | `not_found`         | no such network, endpoint, namespace, interface    | 404  | 3    |
//! | `already_exists`    | the network or endpoint named exists already       | 409  | 4    |
//! | `in_use`            | taken (address, MAC, VNI) or still used            | 409  | 4    |
//! | `unavailable`       | store unreachable, daemon still syncing: try again | 503  | 5    |
//! | `refused`           | the store answered and refused the request         | 502  | 6    |
//! | `permission_denied` | the caller may not use the API (root only)         | 403  | 7    |
//!
//! Exit code 2 is also what a command line clap cannot parse exits with, as with every clap
//! tool: bad input is bad input, whether the CLI or the daemon finds it.

use serde::{Deserialize, Serialize};

/// Why a request failed: what a caller can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Bad input: fix the request.
    Invalid,
    /// What the request names does not exist.
    NotFound,
    /// What the request would create exists already.
    AlreadyExists,
    /// Something the request needs is taken by another, or what it would remove is still used.
    InUse,
    /// The store or the daemon cannot answer now: try again.
    Unavailable,
    /// The store answered, and refused the request.
    Refused,
    /// The caller may not use the API.
    PermissionDenied,
    /// Anything else. A kind this build does not know (from a newer daemon) reads as this.
    #[serde(other)]
    Internal,
}

impl ErrorKind {
    /// Every kind, for tables and tests.
    pub const ALL: [Self; 8] = [
        Self::Internal,
        Self::Invalid,
        Self::NotFound,
        Self::AlreadyExists,
        Self::InUse,
        Self::Unavailable,
        Self::Refused,
        Self::PermissionDenied,
    ];

    /// The HTTP status the API answers with.
    pub const fn http_status(self) -> u16 {
        match self {
            Self::Invalid => 400,
            Self::PermissionDenied => 403,
            Self::NotFound => 404,
            Self::AlreadyExists | Self::InUse => 409,
            Self::Internal => 500,
            // The daemon stands between the caller and the store: the store's refusal is an
            // upstream's answer, not this server's failure.
            Self::Refused => 502,
            Self::Unavailable => 503,
        }
    }

    /// The CLI's exit code (see the module's table).
    pub const fn exit_code(self) -> u8 {
        match self {
            Self::Internal => 1,
            Self::Invalid => 2,
            Self::NotFound => 3,
            Self::AlreadyExists | Self::InUse => 4,
            Self::Unavailable => 5,
            Self::Refused => 6,
            Self::PermissionDenied => 7,
        }
    }

    /// The name in answers (`"not_found"`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::NotFound => "not_found",
            Self::AlreadyExists => "already_exists",
            Self::InUse => "in_use",
            Self::Unavailable => "unavailable",
            Self::Refused => "refused",
            Self::PermissionDenied => "permission_denied",
            Self::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed request as the API answers it: `{"kind": "not_found", "message": "..."}`, with
/// the kind's HTTP status. The message is one sentence the CLI prints as it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_status_and_exit_code() {
        let table: Vec<(ErrorKind, u16, u8)> = ErrorKind::ALL
            .iter()
            .map(|k| (*k, k.http_status(), k.exit_code()))
            .collect();
        assert_eq!(
            table,
            [
                (ErrorKind::Internal, 500, 1),
                (ErrorKind::Invalid, 400, 2),
                (ErrorKind::NotFound, 404, 3),
                (ErrorKind::AlreadyExists, 409, 4),
                (ErrorKind::InUse, 409, 4),
                (ErrorKind::Unavailable, 503, 5),
                (ErrorKind::Refused, 502, 6),
                (ErrorKind::PermissionDenied, 403, 7),
            ]
        );
        // No kind exits 0 (success) or with a code outside what a shell keeps apart.
        assert!(
            ErrorKind::ALL
                .iter()
                .all(|k| (1..=7).contains(&k.exit_code()))
        );
    }

    #[test]
    fn kinds_are_named_as_answers_spell_them() {
        for kind in ErrorKind::ALL {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind.name());
            assert_eq!(serde_json::from_value::<ErrorKind>(json).unwrap(), kind);
        }
        let newer: ErrorKind = serde_json::from_str("\"quota_exceeded\"").unwrap();
        assert_eq!(newer, ErrorKind::Internal);
    }

    #[test]
    fn the_error_body_is_kind_and_message() {
        let e = ApiError::new(ErrorKind::NotFound, "network \"x\" not found");
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({ "kind": "not_found", "message": "network \"x\" not found" })
        );
        assert_eq!(e.to_string(), "network \"x\" not found");
    }
}
