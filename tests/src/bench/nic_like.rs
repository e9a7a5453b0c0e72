//! `--nic-like`: every selected path a second time with both hosts' underlay veth `ul` made to
//! behave like a NIC (`ethtool -K ul tso off gso off gro on`). On a plain veth a 64 KB GSO packet
//! crosses from host to host unsegmented, so the receiver never sees MTU-sized packets and a
//! per-packet datapath (netd's TC decap) looks cheaper than it is on real hardware (issue #16).
//! The paths' own devices (container veths, bridge, vxlan) are left as they are.
//!
//! The NIC-like variant is a wrapper around the plain path, so both run in the same shuffled
//! rounds (same machine state) and every path builder stays as it is.

use std::path::Path;

use anyhow::Context as _;

use super::{
    metrics::Metric,
    path::{BenchPath, Built},
    stats::{Samples, Summary, summarize},
};

/// What a NIC-like path's name ends with, in the tables, JSON and chart.
pub const SUFFIX: &str = " (nic-like)";

use crate::lab::NIC_LIKE_ETHTOOL as ETHTOOL_ARGS;

/// Fails with one line when ethtool is missing, before anything is built.
pub fn check_tool() -> anyhow::Result<()> {
    anyhow::ensure!(
        crate::on_path("ethtool"),
        "--nic-like needs ethtool, not found (cargo xtask setup installs it)"
    );
    Ok(())
}

/// The registry, each path followed by its NIC-like variant (a second instance of it: paths
/// are stateless values).
pub fn registry_with_variants() -> Vec<Box<dyn BenchPath>> {
    super::path::registry()
        .into_iter()
        .zip(super::path::registry())
        .flat_map(|(plain, copy)| {
            let nic: Box<dyn BenchPath> = Box::new(NicLike::new(copy));
            [plain, nic]
        })
        .collect()
}

/// A registry path, built as usual, then with the underlay made NIC-like.
pub struct NicLike {
    inner: Box<dyn BenchPath>,
    /// `<inner> (nic-like)`; leaked once per path and run, since names are `&'static str`
    /// everywhere the samples are keyed.
    name: &'static str,
}

impl NicLike {
    fn new(inner: Box<dyn BenchPath>) -> Self {
        let name = Box::leak(format!("{}{SUFFIX}", inner.name()).into_boxed_str());
        Self { inner, name }
    }
}

impl BenchPath for NicLike {
    fn name(&self) -> &'static str {
        self.name
    }
    fn describe(&self) -> &'static str {
        self.inner.describe()
    }
    fn build(&self, tag: &str) -> anyhow::Result<Built> {
        let built = self.inner.build(tag)?;
        // On error `built` drops here and tears the topology down.
        make_underlay_nic_like(tag)?;
        Ok(built)
    }
}

/// Applies [`ETHTOOL_ARGS`] in both host namespaces of the path built with `tag`: those named
/// `<tag>h<pid>x<n>` by `lab::underlay`, the one place every path's underlay comes from.
fn make_underlay_nic_like(tag: &str) -> anyhow::Result<()> {
    let prefix = format!("{tag}h");
    let hosts = host_namespaces(Path::new("/run/netns"), &prefix)?;
    anyhow::ensure!(
        hosts.len() == 2,
        "expected 2 host namespaces {prefix}*, found {}",
        hosts.len()
    );
    for host in &hosts {
        let mut args = vec!["netns", "exec", host.as_str(), "ethtool"];
        args.extend(ETHTOOL_ARGS);
        crate::sh("ip", &args).with_context(|| format!("cannot make ul NIC-like in {host}"))?;
    }
    Ok(())
}

/// Names in `dir` that start with `prefix` followed by the pid digits `unique_name` adds.
fn host_namespaces(dir: &Path, prefix: &str) -> anyhow::Result<Vec<String>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            n.strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .collect();
    names.sort();
    Ok(names)
}

/// The reference a path's ratios are taken against: the same mode's (a NIC-like path against
/// the NIC-like reference), so each mode's ratios read as in a plain run.
pub fn base_for(path: &str, base: &str) -> String {
    if path.ends_with(SUFFIX) {
        format!("{base}{SUFFIX}")
    } else {
        base.to_string()
    }
}

/// Busy cores per Gbit/s during the TCP stream, per round (lower is better): what a Gbit/s
/// costs, which a faster stream on a CPU-bound machine hides.
pub fn cpu_per_gbps_per_round(samples: &Samples, path: &str) -> Vec<Option<f64>> {
    samples
        .per_round(path, Metric::TcpCpu)
        .into_iter()
        .zip(samples.per_round(path, Metric::TcpGbps))
        .map(|(cores, gbps)| match (cores, gbps) {
            (Some(c), Some(g)) if g > 0.0 => Some(c / g),
            _ => None,
        })
        .collect()
}

/// Median and range of [`cpu_per_gbps_per_round`].
pub fn cpu_per_gbps(samples: &Samples, path: &str) -> Option<Summary> {
    summarize(cpu_per_gbps_per_round(samples, path).into_iter().flatten())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nic_like_ratios_use_the_nic_like_reference() {
        assert_eq!(
            base_for("netd-overlay (nic-like)", "native"),
            "native (nic-like)"
        );
        assert_eq!(base_for("netd-overlay", "native"), "native");
    }

    #[test]
    fn cpu_per_gbps_divides_within_rounds() {
        let mut s = Samples::new(&["a"], 2);
        s.set("a", Metric::TcpCpu, 0, 1.0);
        s.set("a", Metric::TcpGbps, 0, 5.0);
        s.set("a", Metric::TcpCpu, 1, 2.0);
        assert_eq!(cpu_per_gbps_per_round(&s, "a"), vec![Some(0.2), None]);
    }

    #[test]
    fn host_namespaces_match_the_tag_only() {
        let dir = std::env::temp_dir().join(format!("nic-like-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        for name in ["b1h12x0", "b1h12x1", "b1c12x2", "b10h12x3"] {
            std::fs::write(dir.join(name), "").expect("file");
        }
        let found = host_namespaces(&dir, "b1h").expect("listed");
        std::fs::remove_dir_all(&dir).expect("removed");
        assert_eq!(found, vec!["b1h12x0", "b1h12x1"]);
    }
}
