//! What a tier's run came to, and the table `cargo xtask test` ends with: tier, passed, failed,
//! minutes, budget, and which tiers failed or went over their budget.

use std::{fmt::Write as _, time::Duration};

/// The tests of one tier, counted by its runner.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub passed: u32,
    pub failed: u32,
    /// What went wrong besides failed tests: a build that failed, a guest that timed out, a
    /// runner that exited non-zero with no failed test to show for it.
    pub problems: Vec<String>,
}

impl Tally {
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.problems.is_empty()
    }

    /// A tier that could not run its tests at all.
    pub fn broken(problem: String) -> Self {
        Self {
            problems: vec![problem],
            ..Self::default()
        }
    }
}

/// One line of the table.
#[derive(Debug)]
pub struct Row {
    pub name: &'static str,
    /// `None` for setup, which runs no tests.
    pub tally: Option<Tally>,
    pub took: Duration,
    pub budget: Duration,
}

impl Row {
    fn failed(&self) -> bool {
        self.tally.as_ref().is_some_and(|t| !t.ok())
    }

    fn over_budget(&self) -> bool {
        self.took > self.budget
    }
}

fn minutes(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() / 60.0)
}

/// The table, then one line each for the tiers that failed and those over budget.
pub fn table(rows: &[Row], total_budget: Duration) -> String {
    let mut out = String::from(
        "| tier | result | passed | failed | minutes | budget |\n|---|---|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let (result, passed, failed) = match &row.tally {
            None => ("done".to_string(), "-".to_string(), "-".to_string()),
            Some(t) => (
                if t.ok() { "pass" } else { "FAIL" }.to_string(),
                t.passed.to_string(),
                t.failed.to_string(),
            ),
        };
        let result = if row.over_budget() {
            format!("{result}, over budget")
        } else {
            result
        };
        let _ = writeln!(
            out,
            "| {} | {result} | {passed} | {failed} | {} | {} |",
            row.name,
            minutes(row.took),
            minutes(row.budget)
        );
    }
    let took: Duration = rows.iter().map(|r| r.took).sum();
    let tally =
        |f: fn(&Tally) -> u32| -> u32 { rows.iter().filter_map(|r| r.tally.as_ref()).map(f).sum() };
    let _ = writeln!(
        out,
        "| total | {} | {} | {} | {} | {} |",
        if rows.iter().any(Row::failed) {
            "FAIL"
        } else {
            "pass"
        },
        tally(|t| t.passed),
        tally(|t| t.failed),
        minutes(took),
        minutes(total_budget)
    );
    for row in rows.iter().filter(|r| r.failed()) {
        let Some(t) = &row.tally else { continue };
        let mut why = Vec::new();
        if t.failed > 0 {
            why.push(format!("{} failed", t.failed));
        }
        why.extend(t.problems.iter().cloned());
        let _ = writeln!(out, "failed: {} ({})", row.name, why.join("; "));
    }
    for row in rows.iter().filter(|r| r.over_budget()) {
        let _ = writeln!(
            out,
            "over budget: {} took {} of its {} minutes",
            row.name,
            minutes(row.took),
            minutes(row.budget)
        );
    }
    if took > total_budget {
        let _ = writeln!(
            out,
            "over budget: the run took {} of its {} minutes",
            minutes(took),
            minutes(total_budget)
        );
    }
    out
}

/// Adds up libtest's `test result: ok. 12 passed; 1 failed; 0 ignored; ...` lines.
pub fn count_libtest(text: &str) -> Tally {
    let mut tally = Tally::default();
    for line in text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("test result:"))
    {
        let count = |word: &str| -> u32 {
            line.split(';')
                .find_map(|part| {
                    part.trim()
                        .strip_suffix(word)?
                        .split_whitespace()
                        .last()?
                        .parse()
                        .ok()
                })
                .unwrap_or(0)
        };
        tally.passed += count(" passed");
        tally.failed += count(" failed");
    }
    tally
}

/// The counts on the root element of a JUnit report (nextest's: `<testsuites name="nextest-run"
/// tests="40" failures="1" errors="0" ...>`); errors (a test that could not run, or timed out)
/// count as failed.
pub fn count_junit(xml: &str) -> Option<Tally> {
    let start = xml.find("<testsuites")?;
    let element = &xml[start..start + xml[start..].find('>')?];
    let attribute = |name: &str| -> Option<u32> {
        let at = element.find(&format!(" {name}=\""))? + name.len() + 3;
        element[at..].split('"').next()?.parse().ok()
    };
    let tests = attribute("tests")?;
    let failed = attribute("failures")? + attribute("errors").unwrap_or(0);
    Some(Tally {
        passed: tests.saturating_sub(failed),
        failed,
        problems: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_summaries_add_up() {
        let out = "running 3 tests\ntest a ... ok\n\
                   test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s\n\
                   test result: FAILED. 5 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s\n";
        let tally = count_libtest(out);
        assert_eq!((tally.passed, tally.failed), (8, 2));
    }

    #[test]
    fn junit_counts_failures_and_errors_as_failed() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="40" failures="1" errors="2" uuid="x" timestamp="t" time="9.5">
<testsuite name="netd-tests::packets" tests="40" disabled="0" errors="2" failures="1">"#;
        let tally = count_junit(xml).unwrap();
        assert_eq!((tally.passed, tally.failed), (37, 3));
        assert!(count_junit("not a report").is_none());
    }

    #[test]
    fn the_table_names_failed_and_over_budget_tiers() {
        let minute = Duration::from_secs(60);
        let rows = [
            Row {
                name: "setup",
                tally: None,
                took: minute / 2,
                budget: minute,
            },
            Row {
                name: "unit",
                tally: Some(Tally {
                    passed: 10,
                    ..Tally::default()
                }),
                took: minute * 3,
                budget: minute * 2,
            },
            Row {
                name: "labs",
                tally: Some(Tally {
                    passed: 5,
                    failed: 1,
                    problems: vec!["a guest timed out".into()],
                }),
                took: minute,
                budget: minute * 10,
            },
        ];
        let text = table(&rows, minute * 4);
        assert!(
            text.contains("| unit | pass, over budget | 10 | 0 | 3.0 | 2.0 |"),
            "{text}"
        );
        assert!(
            text.contains("| labs | FAIL | 5 | 1 | 1.0 | 10.0 |"),
            "{text}"
        );
        assert!(
            text.contains("| setup | done | - | - | 0.5 | 1.0 |"),
            "{text}"
        );
        assert!(
            text.contains("| total | FAIL | 15 | 1 | 4.5 | 4.0 |"),
            "{text}"
        );
        assert!(
            text.contains("failed: labs (1 failed; a guest timed out)"),
            "{text}"
        );
        assert!(
            text.contains("over budget: unit took 3.0 of its 2.0 minutes"),
            "{text}"
        );
        assert!(
            text.contains("over budget: the run took 4.5 of its 4.0 minutes"),
            "{text}"
        );
    }
}
