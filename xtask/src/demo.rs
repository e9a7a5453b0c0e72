//! `cargo xtask demo`: the seed's overlay scenario with etcd and two `netd daemon`s in network
//! namespaces, ping and iperf3 across, the network, maps and counters printed, everything
//! removed afterwards.

pub fn run() -> anyhow::Result<()> {
    crate::release::setup_build_and_run("netd-demo", &[])
}
