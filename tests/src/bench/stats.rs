//! Samples per path, metric and round; medians, ranges and within-round ratios.
//!
//! Ratios are taken inside a round first (path / reference, both measured minutes apart under
//! the same background load) and only then summarised, which cancels slow drifts of the machine
//! that a ratio of two medians would keep.

use std::collections::BTreeMap;

use super::metrics::Metric;

/// Median and range of a set of values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

/// `None` for no values; the median of an even count is the mean of the middle two.
pub fn summarize(values: impl IntoIterator<Item = f64>) -> Option<Summary> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Summary {
        median,
        min: v[0],
        max: v[n - 1],
        n,
    })
}

/// One slot per round for every (path, metric); a failed measurement leaves its slot empty.
pub struct Samples {
    paths: Vec<&'static str>,
    rounds: usize,
    values: BTreeMap<(&'static str, Metric), Vec<Option<f64>>>,
}

impl Samples {
    pub fn new(paths: &[&'static str], rounds: usize) -> Self {
        Self {
            paths: paths.to_vec(),
            rounds,
            values: BTreeMap::new(),
        }
    }

    /// Measured paths in table order.
    pub fn paths(&self) -> &[&'static str] {
        &self.paths
    }

    pub fn rounds(&self) -> usize {
        self.rounds
    }

    pub fn has_path(&self, path: &str) -> bool {
        self.paths.contains(&path)
    }

    pub fn set(&mut self, path: &'static str, metric: Metric, round: usize, value: f64) {
        let slots = self
            .values
            .entry((path, metric))
            .or_insert_with(|| vec![None; self.rounds]);
        if let Some(slot) = slots.get_mut(round) {
            *slot = Some(value);
        }
    }

    /// The value of every round (empty slots as `None`).
    pub fn per_round(&self, path: &str, metric: Metric) -> Vec<Option<f64>> {
        self.values
            .iter()
            .find(|((p, m), _)| *p == path && *m == metric)
            .map_or_else(|| vec![None; self.rounds], |(_, v)| v.clone())
    }

    pub fn summary(&self, path: &str, metric: Metric) -> Option<Summary> {
        summarize(self.per_round(path, metric).into_iter().flatten())
    }

    /// `path / base` in each round where both were measured.
    pub fn ratios_per_round(&self, path: &str, base: &str, metric: Metric) -> Vec<Option<f64>> {
        self.per_round(path, metric)
            .into_iter()
            .zip(self.per_round(base, metric))
            .map(|(a, b)| match (a, b) {
                (Some(a), Some(b)) if b != 0.0 => Some(a / b),
                _ => None,
            })
            .collect()
    }

    /// Summary of the within-round ratios `path / base`.
    pub fn ratio(&self, path: &str, base: &str, metric: Metric) -> Option<Summary> {
        summarize(
            self.ratios_per_round(path, base, metric)
                .into_iter()
                .flatten(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(summarize([3.0, 1.0, 2.0]).map(|s| s.median), Some(2.0));
        assert_eq!(summarize([4.0, 1.0, 2.0, 3.0]).map(|s| s.median), Some(2.5));
        assert_eq!(summarize([]), None);
    }

    #[test]
    fn ratios_are_taken_within_rounds() {
        let mut s = Samples::new(&["a", "b"], 3);
        for (round, (a, b)) in [(2.0, 1.0), (6.0, 2.0), (1.0, 1.0)].into_iter().enumerate() {
            s.set("a", Metric::TcpGbps, round, a);
            s.set("b", Metric::TcpGbps, round, b);
        }
        // Per round: 2, 3, 1 -> median 2 (the ratio of medians would be 2/1 = 2 as well, but
        // the range shows the spread).
        let r = s.ratio("a", "b", Metric::TcpGbps).unwrap();
        assert_eq!((r.median, r.min, r.max), (2.0, 1.0, 3.0));
    }

    #[test]
    fn missing_rounds_are_skipped() {
        let mut s = Samples::new(&["a", "b"], 2);
        s.set("a", Metric::UdpKpps, 0, 10.0);
        s.set("b", Metric::UdpKpps, 1, 5.0);
        assert_eq!(s.ratio("a", "b", Metric::UdpKpps), None);
        assert_eq!(s.summary("a", Metric::UdpKpps).map(|x| x.n), Some(1));
    }
}
