//! netd: one shared network for containers on many Linux hosts, with an eBPF VXLAN datapath.
//!
//! - [`datapath`]: the only code that touches aya: load, pin, attach, typed map operations,
//!   and decoding pinned maps for inspection;
//! - [`bpffs`]: the bpf filesystem the pins live on;
//! - [`netns`]: entering network namespaces (attach happens in the interface's namespace);
//! - [`netlink`]: veth pairs, addresses and routes for endpoints; [`gro`]: the vxlan device
//!   kept for its socket's GRO;
//! - [`control`]: the reconciler, the one owner of the desired state and the datapath;
//! - [`service`]: what netd does for a user (networks, endpoints), for the API and Docker;
//! - [`accept`]: what a server's accept loop does when accept fails;
//! - [`daemon`] and [`api`]: `netd daemon` (wiring, liveness, the store watcher, the local
//!   API server) and the local API the CLI uses; [`health`]: the links `netd status` shows;
//! - [`docker`]: Docker's network and IPAM plugin protocol, and following the Engine;
//! - [`dns`]: the names of every host's endpoints, answered in each namespace netd serves;
//! - [`metrics`]: what `netd daemon --metrics-address` serves to Prometheus; [`monitor`]: the
//!   datapath events `netd monitor` shows, decoded and filtered.

pub mod accept;
pub mod api;
pub mod bpffs;
pub mod control;
pub mod daemon;
pub mod datapath;
pub mod dns;
pub mod docker;
pub mod gro;
pub mod health;
pub mod metrics;
pub mod monitor;
pub mod netlink;
pub mod netns;
pub mod service;

/// Default directory for pinned maps and links.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/netd";
