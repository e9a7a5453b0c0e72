//! The benchmark's performance targets, judged on this run.
//!
//! netd-overlay's ratio goals are against Docker's overlay; until that path is measured,
//! kernel-vxlan (the same bridge + vxlan datapath Docker builds) stands in, and the goal line says
//! so. netd-macvlan's is against the kernel's macvlan (what Docker's macvlan driver builds).

use super::{
    Results,
    kernel_cost::{FRESH_DECAP, FRESH_ENCAP, LIVE_DECAP, LIVE_ENCAP},
    macvlan::{KERNEL_MACVLAN, NETD_MACVLAN},
    metrics::Metric,
    nic_like,
    path::{DOCKER_OVERLAY, KERNEL_VXLAN, NATIVE, NETD_OVERLAY},
    stats::Summary,
};

/// One target and what this run measured for it.
pub struct Goal {
    pub text: String,
    /// Median (and range) of the within-round ratios, or of the ns above null.
    pub measured: Option<Summary>,
    pub target: f64,
    /// `true`: measured >= target is met; `false`: measured <= target is.
    pub at_least: bool,
    pub unit: &'static str,
}

impl Goal {
    /// `None` when the run could not measure it.
    pub fn met(&self) -> Option<bool> {
        let m = self.measured?.median;
        Some(if self.at_least {
            m >= self.target
        } else {
            m <= self.target
        })
    }

    pub fn verdict(&self) -> &'static str {
        match self.met() {
            Some(true) => "met",
            Some(false) => "not met",
            None => "not measured",
        }
    }

    /// `1.62x (1.55-1.70)` or `278 ns (270-290)`.
    pub fn measured_text(&self) -> String {
        match self.measured {
            None => "-".to_string(),
            Some(s) if self.unit == "x" => format!("{:.2}x ({:.2}-{:.2})", s.median, s.min, s.max),
            Some(s) => format!("{:.0} {} ({:.0}-{:.0})", s.median, self.unit, s.min, s.max),
        }
    }
}

/// Docker's overlay when measured, else the kernel-vxlan stand-in, with the label to print; both
/// with `suffix` (the mode's name ending, see [`ratio_goals`]).
fn docker_reference(results: &Results, suffix: &str) -> (String, String) {
    let docker = format!("{DOCKER_OVERLAY}{suffix}");
    if results.samples.has_path(&docker) {
        (docker.clone(), docker)
    } else {
        let kernel = format!("{KERNEL_VXLAN}{suffix}");
        let label = format!("{kernel} (standing in for {docker})");
        (kernel, label)
    }
}

pub fn evaluate(results: &Results) -> Vec<Goal> {
    let mut goals = ratio_goals(results, "");
    // `--nic-like`: the same targets again, each path against the same mode's references.
    if results.config.nic_like {
        goals.extend(ratio_goals(results, nic_like::SUFFIX));
    }
    let above_null = |key: &str| {
        results
            .kernel
            .as_ref()
            .and_then(|k| k.row(key))
            .and_then(|r| r.above_null())
    };
    // The cost targets are for TEST_RUN figures; the live ones add what a container's veth costs on
    // top (an skb reallocation per encap, for want of headroom): both are shown.
    for (key, what, target, method) in [
        (FRESH_ENCAP, "encap", 70.0, "TEST_RUN, fresh UDP 64 B"),
        (
            FRESH_DECAP,
            "decap+deliver",
            35.0,
            "TEST_RUN, fresh UDP 64 B",
        ),
        (LIVE_ENCAP, "encap", 70.0, "bpf_stats, live UDP 64 B"),
        (
            LIVE_DECAP,
            "decap+deliver",
            35.0,
            "bpf_stats, live UDP 64 B",
        ),
    ] {
        goals.push(Goal {
            text: format!("in-kernel {what} above null <= {target:.0} ns ({method})"),
            measured: above_null(key),
            target,
            at_least: false,
            unit: "ns",
        });
    }
    goals
}

/// What a ratio goal divides netd-overlay's figure by.
#[derive(Clone, Copy)]
enum Base {
    /// Docker's overlay, or kernel-vxlan standing in for it.
    Docker,
    KernelVxlan,
    Native,
}

/// One of netd-overlay's ratio goals.
#[derive(Clone, Copy)]
struct RatioGoal {
    what: &'static str,
    metric: Metric,
    /// `true`: the ratio must be at least `target`; `false`: at most.
    at_least: bool,
    target: f64,
    base: Base,
}

const fn at_least(what: &'static str, metric: Metric, target: f64, base: Base) -> RatioGoal {
    RatioGoal {
        what,
        metric,
        at_least: true,
        target,
        base,
    }
}

const fn at_most(what: &'static str, metric: Metric, target: f64, base: Base) -> RatioGoal {
    RatioGoal {
        at_least: false,
        ..at_least(what, metric, target, base)
    }
}

/// Issue #16's bar against the kernel's vxlan datapath, held in both modes.
const KERNEL_VXLAN_BAR: [RatioGoal; 3] = [
    at_least(
        "UDP 64 B packets/s",
        Metric::UdpKpps,
        1.8,
        Base::KernelVxlan,
    ),
    at_most("UDP latency p50", Metric::UdpP50, 0.8, Base::KernelVxlan),
    at_most("TCP latency p50", Metric::TcpP50, 0.8, Base::KernelVxlan),
];

/// The plain run: the project's aims against Docker's overlay and native routing, and the bar.
const PLAIN_GOALS: [RatioGoal; 8] = [
    at_least("UDP 64 B packets/s", Metric::UdpKpps, 2.0, Base::Docker),
    at_least("UDP 64 B packets/s", Metric::UdpKpps, 0.95, Base::Native),
    at_most("UDP latency p50", Metric::UdpP50, 0.7, Base::Docker),
    at_most("TCP latency p50", Metric::TcpP50, 0.7, Base::Docker),
    at_least("TCP single stream", Metric::TcpGbps, 1.3, Base::Docker),
    KERNEL_VXLAN_BAR[0],
    KERNEL_VXLAN_BAR[1],
    KERNEL_VXLAN_BAR[2],
];
/// On a NIC-like underlay (issue #16) TCP must at least match the kernel's and Docker's
/// overlays, and the rest hold the bar.
const NIC_LIKE_GOALS: [RatioGoal; 5] = [
    KERNEL_VXLAN_BAR[0],
    KERNEL_VXLAN_BAR[1],
    KERNEL_VXLAN_BAR[2],
    at_least("TCP single stream", Metric::TcpGbps, 1.0, Base::KernelVxlan),
    at_least("TCP single stream", Metric::TcpGbps, 1.0, Base::Docker),
];

/// The targets that are ratios between paths, for the paths whose names end with `suffix` (`""`
/// for the plain run).
fn ratio_goals(results: &Results, suffix: &str) -> Vec<Goal> {
    let s = &results.samples;
    let (reference, reference_label) = docker_reference(results, suffix);
    let netd = format!("{NETD_OVERLAY}{suffix}");
    let (kernel, native) = (
        format!("{KERNEL_VXLAN}{suffix}"),
        format!("{NATIVE}{suffix}"),
    );
    let table: &[_] = if suffix.is_empty() {
        &PLAIN_GOALS
    } else {
        &NIC_LIKE_GOALS
    };
    let mut goals: Vec<Goal> = table
        .iter()
        .filter_map(|goal| {
            let (base, label) = match goal.base {
                Base::Docker => (reference.as_str(), reference_label.as_str()),
                // Already the stand-in for Docker's: the goal would be there twice.
                Base::KernelVxlan if reference == kernel => return None,
                Base::KernelVxlan => (kernel.as_str(), kernel.as_str()),
                Base::Native => (native.as_str(), native.as_str()),
            };
            let (what, target) = (goal.what, goal.target);
            let op = if goal.at_least { ">=" } else { "<=" };
            Some(Goal {
                text: format!("{netd} {what} {op} {target:.2}x {label}"),
                measured: s.ratio(&netd, base, goal.metric),
                target,
                at_least: goal.at_least,
                unit: "x",
            })
        })
        .collect();
    let (netd_macvlan, kernel_macvlan) = (
        format!("{NETD_MACVLAN}{suffix}"),
        format!("{KERNEL_MACVLAN}{suffix}"),
    );
    goals.push(Goal {
        text: format!("{netd_macvlan} UDP 64 B packets/s >= 1.00x {kernel_macvlan}"),
        measured: s.ratio(&netd_macvlan, &kernel_macvlan, Metric::UdpKpps),
        target: 1.0,
        at_least: true,
        unit: "x",
    });
    goals
}

#[cfg(test)]
mod tests {
    use super::*;

    fn goal(median: f64, at_least: bool) -> Goal {
        Goal {
            text: String::new(),
            measured: Some(Summary {
                median,
                min: median,
                max: median,
                n: 1,
            }),
            target: 1.0,
            at_least,
            unit: "x",
        }
    }

    #[test]
    fn direction_decides() {
        assert_eq!(goal(1.2, true).met(), Some(true));
        assert_eq!(goal(1.2, false).met(), Some(false));
        assert_eq!(goal(0.8, false).met(), Some(true));
    }

    #[test]
    fn macvlan_goal_is_the_median_of_round_ratios() {
        let mut samples = crate::bench::stats::Samples::new(&[KERNEL_MACVLAN, NETD_MACVLAN], 3);
        for (round, (kernel, netd)) in [(100.0, 90.0), (200.0, 220.0), (100.0, 130.0)]
            .into_iter()
            .enumerate()
        {
            samples.set(KERNEL_MACVLAN, Metric::UdpKpps, round, kernel);
            samples.set(NETD_MACVLAN, Metric::UdpKpps, round, netd);
        }
        let results = Results {
            config: crate::bench::Config::quick(1),
            samples,
            descriptions: Vec::new(),
            skipped: Vec::new(),
            kernel: None,
            cpu: Vec::new(),
            notes: Vec::new(),
            elapsed: std::time::Duration::ZERO,
        };
        let goals = evaluate(&results);
        let macvlan = goals
            .iter()
            .find(|g| g.text.starts_with(NETD_MACVLAN))
            .expect("a netd-macvlan goal");
        // Round ratios 0.9, 1.1, 1.3: median 1.1 (the ratio of medians would be 130/100).
        let m = macvlan.measured.expect("measured");
        assert!((m.median - 1.1).abs() < 1e-9, "{m:?}");
        assert_eq!(macvlan.met(), Some(true));
    }
}
