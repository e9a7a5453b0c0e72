//! What this kernel's BPF can do, found by trying rather than from its version number (distros
//! backport, and a version says nothing about a flag): docs/kernels.md has each kernel's answers.
//!
//! - The helpers netd cannot work without (`bpf_redirect_peer`, `bpf_redirect_neigh`, Linux
//!   5.10) are probed by loading a program that calls each: a kernel without them refuses netd
//!   at start, with one line naming what is missing.
//! - `bpf_skb_adjust_room`'s younger flags are probed by test-running a program that uses them
//!   on a VXLAN-sized frame; the answers become `config_flags` the programs read.
//! - TC attach (TCX or netlink) is found at the first attach (`attach.rs`).

use aya::{
    Ebpf,
    programs::{SchedClassifier, TestRun as _, TestRunOptions},
};
use netd_common::maps::config_flags;

use super::DatapathError;

/// What the probes found; shown by `netd status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelFeatures {
    /// `BPF_F_ADJ_ROOM_ENCAP_L2_ETH` (Linux 5.13).
    pub encap_l2_eth: bool,
    /// `BPF_F_ADJ_ROOM_DECAP_L3_IPV4` (Linux 6.3).
    pub decap_l3_ipv4: bool,
}

impl KernelFeatures {
    /// The `DatapathConfig::flags` these features call for.
    pub fn config_flags(&self) -> u32 {
        let mut flags = config_flags::REDIRECT_PEER;
        if self.encap_l2_eth {
            flags |= config_flags::ENCAP_L2_ETH;
        }
        if self.decap_l3_ipv4 {
            flags |= config_flags::DECAP_L3_IPV4;
        }
        flags
    }
}

/// Helpers without which there is no datapath, each with the probe program that calls it.
const REQUIRED_HELPERS: [(&str, &str); 2] = [
    ("bpf_redirect_peer", "netd_probe_redirect_peer"),
    ("bpf_redirect_neigh", "netd_probe_redirect_neigh"),
];
const PROBE_ENCAP: &str = "netd_probe_encap";
const PROBE_DECAP: &str = "netd_probe_decap";

/// Probes the kernel with `ebpf`'s probe programs (loaded and unloaded again here).
pub(super) fn probe(ebpf: &mut Ebpf) -> Result<KernelFeatures, DatapathError> {
    let mut missing = Vec::new();
    for (helper, program) in REQUIRED_HELPERS {
        let loaded = classifier(ebpf, program)?.load();
        if let Err(error) = loaded {
            tracing::debug!(program, %error, "probe refused");
            missing.push(helper);
        } else {
            unload(ebpf, program)?;
        }
    }
    if !missing.is_empty() {
        return Err(DatapathError::KernelTooOld(missing));
    }
    Ok(KernelFeatures {
        encap_l2_eth: accepts(ebpf, PROBE_ENCAP)?,
        decap_l3_ipv4: accepts(ebpf, PROBE_DECAP)?,
    })
}

/// Whether a probe program, run once on a VXLAN-sized IPv4 frame, says the kernel took its call.
fn accepts(ebpf: &mut Ebpf, name: &'static str) -> Result<bool, DatapathError> {
    let program = classifier(ebpf, name)?;
    program
        .load()
        .map_err(|source| DatapathError::Program { name, source })?;
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(&probe_frame()),
            ..TestRunOptions::default()
        })
        .map_err(|source| DatapathError::Program { name, source })?;
    unload(ebpf, name)?;
    Ok(result.return_value == 0)
}

const PROBE_FRAME_LEN: usize = 128;

/// Outer Ethernet + IPv4/UDP + room for VXLAN and an inner frame: `adjust_room` only looks at
/// the protocol and the lengths.
fn probe_frame() -> [u8; PROBE_FRAME_LEN] {
    let mut frame = [0u8; PROBE_FRAME_LEN];
    frame[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    frame[14] = 0x45;
    frame[16..18].copy_from_slice(&((PROBE_FRAME_LEN - 14) as u16).to_be_bytes());
    frame[22] = 64;
    frame[23] = 17; // UDP
    frame
}

fn classifier<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut SchedClassifier, DatapathError> {
    ebpf.program_mut(name)
        .ok_or(DatapathError::MissingProgram(name))?
        .try_into()
        .map_err(|source| DatapathError::Program { name, source })
}

fn unload(ebpf: &mut Ebpf, name: &'static str) -> Result<(), DatapathError> {
    classifier(ebpf, name)?
        .unload()
        .map_err(|source| DatapathError::Program { name, source })
}
