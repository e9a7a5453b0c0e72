//! `cargo xtask test`: setup and the lint gate, then every test of the workspace. The privileged
//! tests (kernel packet tests, namespace labs) run one at a time: they load programs and create
//! namespaces. Then the kernel tier: some of the same tests inside older kernels (kernels.rs).

use std::process::Command;

use crate::run::{status, workspace_root};

pub fn run(args: &[String]) -> anyhow::Result<()> {
    crate::setup::run()?;
    // Before the long tests: a formatting slip or a lint fails in a minute, not after them.
    crate::lint::run()?;
    crate::build_ebpf::run()?;
    let host = status(
        Command::new("cargo")
            // The default members: everything but netd-ebpf, which only builds for BPF (and
            // was just built by build-ebpf).
            .args(["test", "--no-fail-fast", "--", "--test-threads=1"])
            .args(args)
            .current_dir(workspace_root()),
    );
    // A filter asks for particular tests: the kernel tier is not one of them.
    if !args.is_empty() {
        return host;
    }
    // Also after a failure here: which kernels fail too says where to look.
    let kernels = crate::kernels::run();
    host.and(kernels)
}
