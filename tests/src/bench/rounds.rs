//! The interleaved rounds: every round runs every built path once, in a fresh random order, so
//! a slow drift of the machine (another tenant, thermal or host scheduling changes) spreads over
//! all paths instead of landing on whichever ran last. One progress line per measurement.

use super::{
    BuiltPaths, Config, CpuRecord, cpu, interrupt,
    metrics::{self, Measurement},
    stats::{self, Samples},
};

/// Runs `config.rounds` rounds over the built paths. A failed measurement leaves its slot empty
/// (and says why on its line); Ctrl-C stops at the next measurement.
pub fn run(config: &Config, built: &BuiltPaths) -> anyhow::Result<(Samples, Vec<CpuRecord>)> {
    let names: Vec<&'static str> = built.iter().map(|(path, _)| path.name()).collect();
    let mut samples = Samples::new(&names, config.rounds);
    let mut records = Vec::new();
    let mut order_rng = Shuffle::new(config.seed);
    for round in 0..config.rounds {
        let mut order: Vec<usize> = (0..built.len()).collect();
        order_rng.shuffle(&mut order);
        for &index in &order {
            let (path, topology) = &built[index];
            for measurement in Measurement::ALL {
                interrupt::check()?;
                let background_cores = cpu::wait_for_quiet()?;
                let label = format!(
                    "[round {}/{}] {:<13} {:<8}",
                    round + 1,
                    config.rounds,
                    path.name(),
                    measurement.name()
                );
                match metrics::measure(measurement, &topology.endpoints, config.seconds) {
                    Ok(measured) => {
                        println!("{label} {}", metrics::describe(&measured.values));
                        for &(metric, value) in &measured.values {
                            samples.set(path.name(), metric, round, value);
                        }
                        records.push(CpuRecord {
                            round,
                            path: path.name(),
                            measurement,
                            background_cores,
                            per_core: measured.per_core,
                        });
                    }
                    Err(e) => {
                        interrupt::check()?;
                        println!("{label} failed: {e:#}");
                    }
                }
            }
        }
    }
    Ok((samples, records))
}

/// A note when measurements started on a busy machine: their numbers carry that noise, and their
/// CPU figures include the other load.
pub fn background_note(records: &[CpuRecord]) -> Option<String> {
    let busy = records
        .iter()
        .filter(|r| r.background_cores > cpu::QUIET_CORES)
        .count();
    let median = stats::summarize(records.iter().map(|r| r.background_cores))?.median;
    (busy > 0).then(|| {
        format!(
            "{busy} of {} measurements started while something else kept more than {} cores busy (median background {median:.2} cores): expect noise, and CPU figures that include it",
            records.len(),
            cpu::QUIET_CORES
        )
    })
}

/// A small xorshift generator: enough to shuffle a handful of paths without a dependency.
struct Shuffle(u64);

impl Shuffle {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Fisher-Yates.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Shuffle;

    #[test]
    fn shuffle_is_a_permutation_and_repeatable() {
        let mut a: Vec<u32> = (0..6).collect();
        let mut b = a.clone();
        Shuffle::new(42).shuffle(&mut a);
        Shuffle::new(42).shuffle(&mut b);
        assert_eq!(a, b);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..6).collect::<Vec<_>>());
    }
}
