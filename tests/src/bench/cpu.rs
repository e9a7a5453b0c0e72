//! CPU use from /proc/stat: per-core busy time over a measurement. The counters are
//! machine-wide (namespaces do not split them), so they include both simulated hosts, which is
//! the point on a 2-core machine where both share the cores, and anything else running.

use std::time::{Duration, Instant};

use anyhow::Context as _;

/// Below this many busy cores the machine counts as quiet enough to start a measurement.
pub const QUIET_CORES: f64 = 0.25;

/// Cumulative (busy, total) clock ticks of each core.
#[derive(Clone, Debug)]
pub struct CpuSample(Vec<(u64, u64)>);

impl CpuSample {
    pub fn now() -> anyhow::Result<Self> {
        let text = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
        Ok(Self(parse(&text)))
    }

    /// Busy cores between `earlier` and this sample: 0.0 (idle) to the number of cores.
    pub fn busy_cores_since(&self, earlier: &Self) -> f64 {
        self.per_core_since(earlier).iter().sum()
    }

    /// Busy fraction of each core between `earlier` and this sample.
    pub fn per_core_since(&self, earlier: &Self) -> Vec<f64> {
        self.0
            .iter()
            .zip(&earlier.0)
            .map(|(&(busy, total), &(busy0, total0))| {
                let total = total.saturating_sub(total0);
                if total == 0 {
                    0.0
                } else {
                    busy.saturating_sub(busy0) as f64 / total as f64
                }
            })
            .collect()
    }
}

/// The `cpuN` lines of /proc/stat as (busy, total) ticks. Busy is user + nice + system + irq +
/// softirq; idle and iowait are not; steal (time the hypervisor gave to someone else) counts in
/// the total only, so a stolen core does not look busy with our work.
fn parse(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|line| {
            let v: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .take(8)
                .map(|f| f.parse().unwrap_or(0))
                .collect();
            let at = |i: usize| v.get(i).copied().unwrap_or(0);
            let busy = at(0) + at(1) + at(2) + at(5) + at(6);
            (busy, busy + at(3) + at(4) + at(7))
        })
        .collect()
}

/// Waits (at most 2 s) until the machine is quiet, so one measurement's leftovers (TIME_WAIT
/// sockets, softirq backlog) or another tenant do not bleed into the next. Returns the last
/// background load seen, in busy cores.
pub fn wait_for_quiet() -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let before = CpuSample::now()?;
        std::thread::sleep(Duration::from_millis(200));
        let load = CpuSample::now()?.busy_cores_since(&before);
        if load <= QUIET_CORES || Instant::now() >= deadline {
            return Ok(load);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  10 0 10 100 0 0 0 0 0 0\n\
                        cpu0 5 0 5 50 0 0 0 0 0 0\n\
                        cpu1 5 0 5 50 0 0 0 0 0 0\n\
                        intr 1 2 3\n";

    #[test]
    fn parses_per_core_lines_only() {
        assert_eq!(parse(STAT), vec![(10, 60), (10, 60)]);
    }

    #[test]
    fn busy_cores_sum_over_cores() {
        let a = CpuSample(vec![(0, 0), (0, 0)]);
        let b = CpuSample(vec![(50, 100), (100, 100)]);
        assert!((b.busy_cores_since(&a) - 1.5).abs() < 1e-9);
    }
}
