//! Keeps idle cores polling instead of sleeping for the run, through the kernel's PM QoS file
//! `/dev/cpu_dma_latency`: a request of 0 µs, held for as long as the file stays open, leaves
//! cpuidle only its polling state. On this VM (the `haltpoll` cpuidle driver) an idle vCPU
//! otherwise halts, and waking it on a packet cost about 45 µs: every path's request-response
//! latency jumped between about 15 µs and 60 µs from round to round, and the fixed wakeup
//! squeezed every ratio toward 1 (`cargo xtask bench --nic-like --paths
//! kernel-vxlan,docker-overlay,netd-overlay`: every p50 median 55-70 µs; with the request held,
//! 13-31 µs). It is what tuned's latency-performance profile does (`force_latency`). A polling
//! core counts as idle in /proc/stat, so the CPU columns do not count it.

use std::{fs::File, io::Write as _};

use anyhow::Context as _;

const PM_QOS_FILE: &str = "/dev/cpu_dma_latency";

/// While alive, idle cores poll; dropping it (closing the file) withdraws the request.
pub struct NoCpuSleep {
    _request: File,
}

impl NoCpuSleep {
    /// Asks the kernel for an idle exit latency of 0 µs.
    pub fn hold() -> anyhow::Result<Self> {
        let mut request = File::options()
            .write(true)
            .open(PM_QOS_FILE)
            .with_context(|| format!("open {PM_QOS_FILE}"))?;
        // The file takes the limit as a native-endian 32-bit count of microseconds.
        request
            .write_all(&0i32.to_ne_bytes())
            .with_context(|| format!("write {PM_QOS_FILE}"))?;
        Ok(Self { _request: request })
    }

    /// The note the results carry: what the run's idle cores did (`None`: `--allow-cpu-sleep`).
    pub fn note(held: Option<&anyhow::Result<Self>>) -> String {
        match held {
            Some(Ok(_)) => format!(
                "idle cores polled instead of sleeping ({PM_QOS_FILE} held at 0 us; --allow-cpu-sleep to measure with sleep states)"
            ),
            Some(Err(e)) => format!(
                "idle cores could sleep ({e:#}): latencies include waking a core, as on a host without tuning"
            ),
            None => "idle cores could sleep (--allow-cpu-sleep): latencies include waking a core"
                .to_string(),
        }
    }
}
