//! The options a network is created with (`-o KEY=VALUE`): one list of the keys netd knows,
//! read the same way for `netd network create`, the local API and `docker network create`.
//! A key netd does not know is refused, naming the ones it knows: a typo (`-o mut=1200`) must
//! not create a network as if nothing was said.

use std::collections::BTreeMap;

use crate::ifname::IfName;

/// Inner MTU (68 to 9000).
pub const MTU: &str = "mtu";
/// Docker's own name for the MTU option, taken as [`MTU`].
pub const DOCKER_MTU: &str = "com.docker.network.driver.mtu";
/// VXLAN network identifier (the CLI's `--vni`).
pub const VNI: &str = "vni";
/// macvlan networks: the parent interface, `eth0` or `eth0.10` for VLAN 10.
pub const PARENT: &str = "parent";
/// macvlan networks: bridge, private, vepa or passthru.
pub const MACVLAN_MODE: &str = "macvlan_mode";
/// macvlan networks: whether the host reaches the endpoints.
pub const HOST_ACCESS: &str = "host_access";
/// A network Docker made `--internal`: its mirrors on the other hosts are made internal too.
pub const INTERNAL: &str = "netd.internal";
/// Docker: the netd driver's network kind, `overlay` (the default) or `macvlan` (the CLI's
/// `-d`).
pub const NETWORK_TYPE: &str = "netd.type";
/// Docker: the netd network a Docker network mirrors (driver and IPAM option).
pub const MIRROR_OF: &str = "netd.network";

/// Docker's own keys (it sets some itself): never refused, only [`DOCKER_MTU`] is read.
const DOCKER_PREFIX: &str = "com.docker.";

/// Who gives the options: the keys that only Docker's frontend reads are unknown elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frontend {
    /// `netd network create` and the local API.
    Netd,
    /// `docker network create -d netd`.
    Docker,
}

impl Frontend {
    /// The keys this frontend takes, in the order errors list them.
    pub fn known(self) -> &'static [&'static str] {
        match self {
            Self::Netd => &[MTU, VNI, PARENT, MACVLAN_MODE, HOST_ACCESS, INTERNAL],
            Self::Docker => &[
                MTU,
                VNI,
                NETWORK_TYPE,
                PARENT,
                MACVLAN_MODE,
                HOST_ACCESS,
                MIRROR_OF,
            ],
        }
    }
}

/// A network's options, sorted out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkOptions {
    pub mtu: Option<u16>,
    pub vni: Option<u32>,
    /// [`NETWORK_TYPE`] (Docker only).
    pub network_type: Option<String>,
    /// [`MIRROR_OF`] (Docker only).
    pub mirror_of: Option<String>,
    /// What the network's record keeps: macvlan's options and [`INTERNAL`].
    pub record: BTreeMap<String, String>,
}

/// Why options are refused; the message is one line for the user.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error("unknown option {key:?} (netd knows {})", .known.join(", "))]
    Unknown {
        key: String,
        known: &'static [&'static str],
    },
    #[error("invalid {key} {value:?}: {expected}")]
    Invalid {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("option {key} is given twice, as {first:?} and {second:?}")]
    Twice {
        key: &'static str,
        first: String,
        second: String,
    },
}

fn invalid(key: &'static str, value: &str, expected: &'static str) -> OptionError {
    OptionError::Invalid {
        key,
        value: value.to_string(),
        expected,
    }
}

/// Sets `slot` once: a second, different value for the same option is an error, not a
/// silent choice.
fn set_once<T: PartialEq + ToString>(
    slot: &mut Option<T>,
    key: &'static str,
    value: T,
) -> Result<(), OptionError> {
    match slot {
        Some(first) if *first != value => Err(OptionError::Twice {
            key,
            first: first.to_string(),
            second: value.to_string(),
        }),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

impl NetworkOptions {
    /// Reads `KEY=VALUE` pairs as `frontend` gives them.
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        frontend: Frontend,
    ) -> Result<Self, OptionError> {
        let mut parsed = Self::default();
        for (key, value) in pairs {
            match key {
                MTU | DOCKER_MTU => {
                    let mtu = value
                        .parse::<u16>()
                        .map_err(|_| invalid(MTU, value, "expected a number"))?;
                    if !(68..=9000).contains(&mtu) {
                        return Err(invalid(MTU, value, "outside 68..=9000"));
                    }
                    set_once(&mut parsed.mtu, MTU, mtu)?;
                }
                VNI => {
                    let vni = value
                        .parse::<u32>()
                        .map_err(|_| invalid(VNI, value, "expected a number"))?;
                    set_once(&mut parsed.vni, VNI, vni)?;
                }
                PARENT => {
                    // `eth0.10`: VLAN 10 on eth0; the network's validation reads the VLAN.
                    let name = value.split_once('.').map_or(value, |(name, _)| name);
                    if let Err(e) = IfName::new(name) {
                        return Err(OptionError::Invalid {
                            key: PARENT,
                            value: value.to_string(),
                            expected: e.rule(),
                        });
                    }
                    parsed.record.insert(key.to_string(), value.to_string());
                }
                MACVLAN_MODE | HOST_ACCESS | INTERNAL => {
                    parsed.record.insert(key.to_string(), value.to_string());
                }
                NETWORK_TYPE if frontend == Frontend::Docker => {
                    parsed.network_type = Some(value.to_string());
                }
                MIRROR_OF if frontend == Frontend::Docker => {
                    parsed.mirror_of = Some(value.to_string());
                }
                _ if frontend == Frontend::Docker && key.starts_with(DOCKER_PREFIX) => {}
                _ => {
                    return Err(OptionError::Unknown {
                        key: key.to_string(),
                        known: frontend.known(),
                    });
                }
            }
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)], frontend: Frontend) -> Result<NetworkOptions, OptionError> {
        NetworkOptions::parse(pairs.iter().copied(), frontend)
    }

    #[test]
    fn a_typo_is_refused_naming_what_netd_knows() {
        let e = parse(&[("mut", "1200")], Frontend::Netd).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"unknown option "mut" (netd knows mtu, vni, parent, macvlan_mode, host_access, netd.internal)"#
        );
    }

    #[test]
    fn dockers_own_keys_pass_through_docker_only() {
        let o = parse(
            &[
                (DOCKER_MTU, "1200"),
                ("com.docker.network.enable_ipv6", "false"),
                (NETWORK_TYPE, "macvlan"),
                (PARENT, "eth0.10"),
                (MIRROR_OF, "n"),
            ],
            Frontend::Docker,
        )
        .unwrap();
        assert_eq!(o.mtu, Some(1200));
        assert_eq!(o.network_type.as_deref(), Some("macvlan"));
        assert_eq!(o.mirror_of.as_deref(), Some("n"));
        assert_eq!(o.record.get(PARENT).map(String::as_str), Some("eth0.10"));
        assert!(parse(&[("com.docker.x", "1")], Frontend::Netd).is_err());
        assert!(parse(&[(NETWORK_TYPE, "macvlan")], Frontend::Netd).is_err());
        assert!(parse(&[("nope", "1")], Frontend::Docker).is_err());
    }

    #[test]
    fn values_are_checked() {
        let e = parse(&[(MTU, "abc")], Frontend::Netd).unwrap_err();
        assert_eq!(e.to_string(), r#"invalid mtu "abc": expected a number"#);
        assert!(parse(&[(MTU, "20")], Frontend::Netd).is_err());
        assert!(parse(&[(PARENT, "eth\u{0}0")], Frontend::Netd).is_err());
        let e = parse(&[(MTU, "1200"), (DOCKER_MTU, "1300")], Frontend::Docker).unwrap_err();
        assert!(e.to_string().contains("given twice"), "{e}");
        assert_eq!(
            parse(&[(MTU, "1200"), (MTU, "1200")], Frontend::Netd)
                .unwrap()
                .mtu,
            Some(1200)
        );
    }
}
