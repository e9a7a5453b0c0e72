//! `--profile`: where a program's in-kernel time goes, from `perf` samples taken while the
//! fresh-packet TEST_RUN phase runs.
//!
//! `perf record -g` samples this process's threads (TEST_RUN runs the program inside our own
//! `bpf()` call); every sample whose call chain passes through a program is charged to the
//! function that program called (a helper, a map lookup), or to the program itself when it was
//! running its own instructions. That is the breakdown a missed cost goal calls for: how much
//! is netd's code, and how much the kernel helpers it cannot do without.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader},
    os::unix::process::ExitStatusExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use anyhow::Context as _;

/// Helper functions that are one thing to a reader: a hash map lookup is several kernel
/// functions, a clock read two.
const GROUPS: &[(&str, &[&str])] = &[
    (
        "hash map lookups",
        &[
            "__htab_map_lookup_elem",
            "lookup_nulls_elem_raw",
            "lookup_elem_raw",
            "htab_map_hash",
            "htab_map_lookup_elem",
            "htab_lru_map_lookup_elem",
            "__htab_lru_map_lookup_elem",
        ],
    ),
    (
        "clock read (bpf_ktime_get_ns)",
        &["bpf_ktime_get_ns", "ktime_get_mono_fast_ns", "read_tsc"],
    ),
];

/// The program's own JIT-compiled instructions.
pub const OWN_CODE: &str = "the program's own instructions";

/// Samples of one program, by what it was doing.
#[derive(Clone, Debug)]
pub struct ProgramProfile {
    pub program: String,
    pub samples: u64,
    /// (what, samples), largest first.
    pub parts: Vec<(String, u64)>,
}

impl ProgramProfile {
    pub fn share(&self, samples: u64) -> f64 {
        if self.samples == 0 {
            return 0.0;
        }
        100.0 * samples as f64 / self.samples as f64
    }
}

/// A `perf record` of this process, stopped (and its file removed) when dropped.
pub struct Recording {
    child: Option<Child>,
    dir: PathBuf,
}

impl Recording {
    /// Starts sampling this process with call chains.
    pub fn start() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("netd-bench-profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let data = dir.join("perf.data");
        let child = Command::new("perf")
            .args(["record", "-q", "-g", "-e", "cpu-clock", "-F", "5000", "-p"])
            .arg(std::process::id().to_string())
            .arg("-o")
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("--profile needs perf (Debian: apt-get install linux-perf)")?;
        let recording = Self {
            child: Some(child),
            dir,
        };
        // perf needs a moment to attach to every thread before the phase starts.
        std::thread::sleep(std::time::Duration::from_millis(500));
        Ok(recording)
    }

    /// Stops sampling and breaks the samples down for each of `programs` (kernel names).
    pub fn finish(mut self, programs: &[&str]) -> anyhow::Result<Vec<ProgramProfile>> {
        let child = self.child.take().context("recording already finished")?;
        stop(child)?;
        breakdown(&self.dir.join("perf.data"), programs)
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            let _ = stop(child);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// SIGINT makes perf write out what it has and exit.
fn stop(child: Child) -> anyhow::Result<()> {
    let pid = libc::pid_t::try_from(child.id()).context("perf's pid")?;
    // SAFETY: signalling our own child, which has not been reaped yet.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let output = child
        .wait_with_output()
        .context("perf record did not exit")?;
    let stopped_by_us = output.status.signal() == Some(libc::SIGINT);
    if !output.status.success() && !stopped_by_us {
        anyhow::bail!(
            "perf record failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Reads `perf script` of `data` and charges each sample under one of `programs`.
fn breakdown(data: &Path, programs: &[&str]) -> anyhow::Result<Vec<ProgramProfile>> {
    anyhow::ensure!(data.exists(), "perf record wrote no {}", data.display());
    let mut script = Command::new("perf")
        .args(["script", "-F", "ip,sym", "-i"])
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot run perf script")?;
    let stdout = script.stdout.take().context("perf script has no stdout")?;
    let mut tally: Vec<BTreeMap<String, u64>> = vec![BTreeMap::new(); programs.len()];
    let mut frames: Vec<String> = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading perf script")?;
        let line = line.trim();
        if line.is_empty() {
            charge(&frames, programs, &mut tally);
            frames.clear();
            continue;
        }
        // "ffffffff8225fe6b pv_native_safe_halt": the address, then the symbol.
        if let Some((_, symbol)) = line.split_once(' ') {
            frames.push(symbol.trim().to_string());
        }
    }
    charge(&frames, programs, &mut tally);
    script.wait().context("perf script")?;
    Ok(programs
        .iter()
        .zip(tally)
        .map(|(program, by_part)| {
            let samples = by_part.values().sum();
            let mut parts: Vec<(String, u64)> = by_part.into_iter().collect();
            parts.sort_by_key(|part| std::cmp::Reverse(part.1));
            ProgramProfile {
                program: (*program).to_string(),
                samples,
                parts,
            }
        })
        .collect())
}

/// Charges one sample (leaf first) to the program it ran under, if any.
fn charge(frames: &[String], programs: &[&str], tally: &mut [BTreeMap<String, u64>]) {
    for (depth, frame) in frames.iter().enumerate() {
        let Some(index) = programs.iter().position(|p| is_program(frame, p)) else {
            continue;
        };
        let part = match depth.checked_sub(1).map(|callee| &frames[callee]) {
            None => OWN_CODE.to_string(),
            Some(callee) => group_of(callee),
        };
        *tally[index].entry(part).or_default() += 1;
        return;
    }
}

/// JIT symbols read `bpf_prog_<tag>_<name>`.
fn is_program(symbol: &str, program: &str) -> bool {
    symbol.starts_with("bpf_prog_") && symbol.ends_with(program)
}

fn group_of(function: &str) -> String {
    // A BPF subprogram (the compiler's memmove, say) is netd's code too.
    if function.starts_with("bpf_prog_") {
        return OWN_CODE.to_string();
    }
    GROUPS
        .iter()
        .find(|(_, members)| members.contains(&function))
        .map_or_else(|| function.to_string(), |(group, _)| (*group).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(symbols: &[&str]) -> Vec<String> {
        symbols.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn samples_are_charged_to_the_function_the_program_called() {
        let programs = ["netd_from_endpoint", "netd_from_uplink"];
        let mut tally = vec![BTreeMap::new(); 2];
        let in_lookup = frames(&[
            "htab_map_hash",
            "__htab_map_lookup_elem",
            "bpf_prog_665a4e739069161b_netd_from_endpoint",
            "bpf_test_run",
        ]);
        let own = frames(&["bpf_prog_f1e737f4b21a2c91_netd_from_uplink", "bpf_test_run"]);
        let in_subprogram = frames(&[
            "bpf_prog_62f0517ee3d81067_memmove",
            "bpf_prog_f1e737f4b21a2c91_netd_from_uplink",
        ]);
        let elsewhere = frames(&["pv_native_safe_halt", "default_idle"]);
        charge(&in_lookup, &programs, &mut tally);
        charge(&own, &programs, &mut tally);
        charge(&in_subprogram, &programs, &mut tally);
        charge(&elsewhere, &programs, &mut tally);
        assert_eq!(tally[0].get("hash map lookups"), Some(&1));
        assert_eq!(tally[0].len(), 1);
        assert_eq!(tally[1].get(OWN_CODE), Some(&2));
        assert_eq!(tally[1].len(), 1);
    }
}
