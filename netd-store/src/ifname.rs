//! Interface names, checked once where they enter (a CLI flag, an API request, a network's
//! options) by the kernel's own rules, so that nothing the kernel would refuse or misread
//! reaches it or the store.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The kernel's IFNAMSIZ less the NUL that ends a name.
pub const IFNAME_MAX: usize = 15;

/// An interface name the kernel takes as written: 1 to 15 bytes, not `.` or `..`, with no
/// `/`, `:`, whitespace or NUL (`dev_valid_name` in the kernel's net/core/dev.c; a NUL would
/// end the name early, so `eth0\0x` would name `eth0`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IfName(String);

/// Why a name is not an interface name; the message names the name and the rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid interface name {name:?}: {rule}")]
pub struct IfNameError {
    name: String,
    rule: &'static str,
}

/// The kernel's `isspace`, which counts vertical tab and non-breaking space (0xA0) too.
fn kernel_space(byte: u8) -> bool {
    byte.is_ascii_whitespace() || byte == 0x0b || byte == 0xa0
}

impl IfNameError {
    /// The rule the name breaks.
    pub fn rule(&self) -> &'static str {
        self.rule
    }
}

impl IfName {
    pub fn new(name: impl Into<String>) -> Result<Self, IfNameError> {
        let name = name.into();
        let rule = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > IFNAME_MAX {
            Some("longer than 15 bytes")
        } else if name == "." || name == ".." {
            Some("`.` and `..` are not interface names")
        } else if name.bytes().any(|b| b == 0) {
            Some("it holds a NUL byte")
        } else if name.bytes().any(|b| b == b'/' || b == b':') {
            Some("it holds `/` or `:`")
        } else if name.bytes().any(kernel_space) {
            Some("it holds whitespace")
        } else {
            None
        };
        match rule {
            Some(rule) => Err(IfNameError { name, rule }),
            None => Ok(Self(name)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IfName {
    type Error = IfNameError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::new(name)
    }
}

impl From<IfName> for String {
    fn from(name: IfName) -> Self {
        name.0
    }
}

impl std::str::FromStr for IfName {
    type Err = IfNameError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::new(name)
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for IfName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_rules() {
        for good in ["eth0", "a", "veth-1_x.10", "fifteen_bytes_x", "ü"] {
            assert_eq!(IfName::new(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "sixteen_bytes_xx",
            ".",
            "..",
            "eth0\0x",
            "a/b",
            "eth0:1",
            "a b",
            "a\tb",
            "a\x0bb",
            "à", // its UTF-8 holds 0xA0, which the kernel reads as a space
        ] {
            assert!(IfName::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn json_refuses_what_new_refuses() {
        let e = serde_json::from_str::<IfName>(r#""eth0\u0000x""#).unwrap_err();
        assert!(e.to_string().contains("NUL"), "{e}");
        let name: IfName = serde_json::from_str(r#""eth0""#).unwrap();
        assert_eq!(serde_json::to_string(&name).unwrap(), r#""eth0""#);
    }

    #[test]
    fn the_error_names_the_name_and_the_rule() {
        assert_eq!(
            IfName::new("eth0:1").unwrap_err().to_string(),
            r#"invalid interface name "eth0:1": it holds `/` or `:`"#
        );
    }
}
