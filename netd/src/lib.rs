//! netd: one shared network for containers on many Linux hosts, with an eBPF VXLAN datapath.
//!
//! - [`datapath`]: the only code that touches aya: load, pin, attach, typed map operations,
//!   and decoding pinned maps for inspection;
//! - [`bpffs`]: the bpf filesystem the pins live on;
//! - [`netns`]: entering network namespaces (attach happens in the interface's namespace);
//! - [`netlink`]: veth pairs, addresses and routes for endpoints;
//! - [`reconcile`]: from the store's contents to the maps' desired contents;
//! - [`daemon`] and [`api`]: `netd daemon` and the local API the CLI uses.

pub mod api;
pub mod bpffs;
pub mod daemon;
pub mod datapath;
pub mod docker;
pub mod netlink;
pub mod netns;
pub mod reconcile;

/// Default directory for pinned maps and links.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/netd";
