//! Builds netd-ebpf for the BPF target (nightly, -Z build-std=core, bpf-linker, BTF) so that a
//! plain `cargo build -p netd` embeds the programs. `cargo xtask build-ebpf` builds the same
//! object on its own; `cargo xtask setup` installs what this needs.

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let ebpf_dir = std::path::Path::new(&manifest_dir).join("../netd-ebpf");
    let ebpf_dir = ebpf_dir.to_str().context("netd-ebpf path is not UTF-8")?;
    let package = aya_build::Package {
        name: "netd-ebpf",
        root_dir: ebpf_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::Nightly).context(
        "building netd-ebpf failed; `cargo xtask setup` installs nightly rust-src and bpf-linker",
    )
}
