//! The `bpf_skb_adjust_room` flags of VXLAN encap and decap, as this kernel takes them. Two flags
//! are younger than the kernels netd runs on (docs/kernels.md): `ENCAP_L2_ETH` (Linux 5.13) and
//! `DECAP_L3_IPV4` (6.3), and a kernel refuses the whole call for a flag it does not know. The
//! loader finds out by test-running [`crate::probe`]'s programs and sets `config_flags`; the
//! programs here only read the answer, so no packet pays for a refused call.

use aya_ebpf::bindings::{
    BPF_F_ADJ_ROOM_DECAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L2_ETH, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4,
    BPF_F_ADJ_ROOM_ENCAP_L4_UDP, BPF_F_ADJ_ROOM_FIXED_GSO,
};
use netd_common::{
    maps::{DatapathConfig, config_flags},
    packet::ETH_HLEN,
};

/// Encap without `ENCAP_L2_ETH`. FIXED_GSO keeps gso_size as the inner MSS: without it every
/// GSO segment comes out 50 bytes short (docs/architecture.md, calico#11252). The inner
/// Ethernet length (`ENCAP_L2(14)`) still puts the inner network header where segmentation
/// looks for it.
pub const ENCAP_BASE: u64 = BPF_F_ADJ_ROOM_FIXED_GSO as u64
    | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 as u64
    | BPF_F_ADJ_ROOM_ENCAP_L4_UDP as u64
    | ((ETH_HLEN as u64) << 56); // BPF_F_ADJ_ROOM_ENCAP_L2(14)
/// Encap that also marks the inner protocol as Ethernet (`ETH_P_TEB`), as the kernel's own
/// VXLAN device does.
pub const ENCAP_FULL: u64 = ENCAP_BASE | BPF_F_ADJ_ROOM_ENCAP_L2_ETH as u64;

pub const DECAP_BASE: u64 = BPF_F_ADJ_ROOM_FIXED_GSO as u64;
/// Decap that also clears the tunnel's GSO state for the removed outer IPv4 header.
pub const DECAP_FULL: u64 = DECAP_BASE | BPF_F_ADJ_ROOM_DECAP_L3_IPV4 as u64;

#[inline(always)]
pub fn encap_flags(config: &DatapathConfig) -> u64 {
    if config.flags & config_flags::ENCAP_L2_ETH != 0 {
        ENCAP_FULL
    } else {
        ENCAP_BASE
    }
}

#[inline(always)]
pub fn decap_flags(config: &DatapathConfig) -> u64 {
    if config.flags & config_flags::DECAP_L3_IPV4 != 0 {
        DECAP_FULL
    } else {
        DECAP_BASE
    }
}
