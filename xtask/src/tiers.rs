//! The tiers of `cargo xtask test`: what each runs, whether it needs root, what setup it needs,
//! and its time budget. The budgets live here and nowhere else.

use std::time::Duration;

use clap::ValueEnum;

use crate::setup::Part;

/// In the order `cargo xtask test` runs them: quick and unprivileged first, so that a slip
/// shows in minutes, then the privileged tiers from the fastest to the slowest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Tier {
    /// rustfmt and clippy (warnings are errors) on every crate, netd-ebpf included.
    Lint,
    /// Plain `cargo test` of the default members: no root, no namespaces, no servers.
    Unit,
    /// BPF_PROG_TEST_RUN tests of the programs (netd-tests: packets, corpus, pins, and the
    /// fixtures' own unit tests).
    Packets,
    /// Namespaces, real etcd and Consul, daemons (netd-tests: cluster, control_plane, store, ...).
    Labs,
    /// Real dockerd 20.10 and 26.1 with netd as their network plugin.
    Docker,
    /// Some packets, cluster and nic_offloads tests inside Debian's 5.10, 6.1 and 6.12 (qemu).
    Kernels,
}

/// How a tier runs its tests.
pub enum Runner {
    Lint,
    /// `cargo test` of the workspace's default members.
    CargoTest,
    /// `cargo nextest run -p netd-tests --profile <tier>` of these test binaries, and of
    /// netd-tests' own unit tests (its fixtures') when `lib`.
    Nextest {
        binaries: &'static [&'static str],
        lib: bool,
    },
    /// qemu guests (kernels.rs).
    Kernels,
}

/// Minutes per tier on this 2-core machine: together with setup's, the whole run's
/// [`TOTAL_BUDGET_MINUTES`]. A tier's minutes include the compiling it starts (clippy's check
/// build for lint, the test build of the default members for unit, netd-tests' binaries for
/// packets). docs/testing.md has the measured minutes each budget was sized from; the rest of
/// each budget is the room planned for the next issues (security, packaging, IPv6, multicast,
/// encryption, 4.x kernels), which add packet tests, labs, Docker tests and kernel-tier tests:
/// most in labs (a lab or two per feature) and kernels (older kernels are
/// more guests on the same two cores).
///
/// Over budget is reported (the table says which tier, and by how much) but does not fail the
/// run: the minutes depend on the machine's load as much as on the change, and a hung test is
/// ended by its own deadline (.config/nextest.toml), not by a budget.
const BUDGET_MINUTES: [(Tier, u64); 6] = [
    (Tier::Lint, 4),
    (Tier::Unit, 5),
    (Tier::Packets, 2),
    (Tier::Labs, 12),
    (Tier::Docker, 6),
    (Tier::Kernels, 10),
];

/// Setup when everything is present (a `dpkg-query`, version checks, markers in target/tools),
/// or a fresh clone's fetch of Docker 26, Consul and the kernels (36 s measured).
pub const SETUP_BUDGET_MINUTES: u64 = 1;

/// The whole run, setup included: within the 45 minutes with a margin for a busier
/// machine (CI's job timeout is 90).
pub const TOTAL_BUDGET_MINUTES: u64 = 40;

impl Tier {
    pub const ALL: [Tier; 6] = [
        Tier::Lint,
        Tier::Unit,
        Tier::Packets,
        Tier::Labs,
        Tier::Docker,
        Tier::Kernels,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Tier::Lint => "lint",
            Tier::Unit => "unit",
            Tier::Packets => "packets",
            Tier::Labs => "labs",
            Tier::Docker => "docker",
            Tier::Kernels => "kernels",
        }
    }

    pub fn runner(self) -> Runner {
        match self {
            Tier::Lint => Runner::Lint,
            Tier::Unit => Runner::CargoTest,
            Tier::Packets => Runner::Nextest {
                binaries: &["packets", "corpus", "pins"],
                lib: true,
            },
            Tier::Labs => Runner::Nextest {
                binaries: &[
                    "cluster",
                    "confinement",
                    "control_plane",
                    "macvlan",
                    "names",
                    "netlink",
                    "nic_offloads",
                    "overlay_netns",
                    "store",
                ],
                lib: false,
            },
            Tier::Docker => Runner::Nextest {
                binaries: &["docker", "docker_lab"],
                lib: false,
            },
            Tier::Kernels => Runner::Kernels,
        }
    }

    /// Why the tier needs root, or `None` when it does not.
    pub fn needs_root(self) -> Option<&'static str> {
        match self {
            Tier::Lint | Tier::Unit => None,
            Tier::Packets => Some("it loads eBPF programs and creates network namespaces"),
            Tier::Labs => {
                Some("it creates network namespaces and runs daemons that load eBPF programs")
            }
            Tier::Docker => Some("it runs dockerd and netd in network and mount namespaces"),
            Tier::Kernels => {
                Some("its qemu guests run the privileged tests on this machine's root filesystem")
            }
        }
    }

    /// What `cargo xtask setup` must have prepared.
    pub fn setup(self) -> &'static [Part] {
        match self {
            Tier::Lint | Tier::Unit => &[Part::Build],
            Tier::Packets => &[Part::Build, Part::Tests],
            Tier::Labs => &[Part::Build, Part::Tests, Part::Consul],
            Tier::Docker => &[Part::Build, Part::Tests, Part::Docker],
            Tier::Kernels => &[Part::Build, Part::Tests, Part::Kernels],
        }
    }

    /// Whether a test filter (`cargo xtask test -- FILTER`) applies: the lint gate has no tests
    /// to choose, and the kernel tier runs its own list.
    pub fn takes_filter(self) -> bool {
        matches!(self.runner(), Runner::CargoTest | Runner::Nextest { .. })
    }

    pub fn budget(self) -> Duration {
        let minutes = BUDGET_MINUTES
            .iter()
            .find_map(|&(tier, minutes)| (tier == self).then_some(minutes))
            .unwrap_or(0);
        Duration::from_secs(minutes * 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tier_has_a_budget_and_they_fit_the_run() {
        let tiers: u64 = Tier::ALL
            .iter()
            .map(|t| {
                assert!(!t.budget().is_zero(), "{} has no budget", t.name());
                t.budget().as_secs() / 60
            })
            .sum();
        assert!(
            SETUP_BUDGET_MINUTES + tiers <= TOTAL_BUDGET_MINUTES,
            "{SETUP_BUDGET_MINUTES} + {tiers} minutes > {TOTAL_BUDGET_MINUTES}"
        );
    }

    /// A test binary in no tier would never run; one in two would run twice.
    #[test]
    fn every_privileged_test_binary_is_in_exactly_one_tier() {
        let dir = crate::cmd::workspace_root().join("tests/tests");
        let mut binaries: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_suffix(".rs").map(str::to_string)
            })
            .collect();
        binaries.sort();
        assert!(!binaries.is_empty(), "no tests in {}", dir.display());
        for binary in binaries {
            let tiers: Vec<&str> = Tier::ALL
                .iter()
                .filter(|t| {
                    matches!(t.runner(), Runner::Nextest { binaries, .. } if binaries.contains(&binary.as_str()))
                })
                .map(|t| t.name())
                .collect();
            assert_eq!(
                tiers.len(),
                1,
                "tests/tests/{binary}.rs is in tiers {tiers:?}: name it in exactly one (xtask/src/tiers.rs)"
            );
        }
    }
}
