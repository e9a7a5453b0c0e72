//! The measurements run on every path, and the metrics they report.
//!
//! - TCP single stream: `iperf3 -c -t N -J`, receiver's bits/s. CPU-bound on this machine, so
//!   it compares CPU efficiency more than link speed.
//! - UDP 64-byte packets: `iperf3 -u -l 64 -b 0`, packets the receiver got per second. One sender
//!   is sender-bound here (docs/performance.md), which is why the CPU figure sits next to it.
//! - Request-response: `sockperf ping-pong` with 64-byte messages, UDP and TCP; sockperf reports
//!   half the round trip, p50 and p99.
//! - CPU: busy cores (0 to 2 here) from /proc/stat over each run.

use std::time::Duration;

use anyhow::Context as _;

use super::{cpu::CpuSample, path::Endpoints, process};

const IPERF_PORT: u16 = 5201;
const SOCKPERF_PORT: u16 = 11111;
/// iperf3's and sockperf's payload size for the packet-rate and latency runs.
const SMALL: &str = "64";

/// What is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measurement {
    Tcp,
    Udp,
    UdpRr,
    TcpRr,
}

/// What is reported. Order here is table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    TcpGbps,
    UdpKpps,
    UdpP50,
    UdpP99,
    TcpP50,
    TcpP99,
    TcpCpu,
    UdpCpu,
    UdpRrCpu,
    TcpRrCpu,
}

impl Measurement {
    pub const ALL: [Self; 4] = [Self::Tcp, Self::Udp, Self::UdpRr, Self::TcpRr];

    pub fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp-64B",
            Self::UdpRr => "udp-rr",
            Self::TcpRr => "tcp-rr",
        }
    }

    fn cpu_metric(self) -> Metric {
        match self {
            Self::Tcp => Metric::TcpCpu,
            Self::Udp => Metric::UdpCpu,
            Self::UdpRr => Metric::UdpRrCpu,
            Self::TcpRr => Metric::TcpRrCpu,
        }
    }
}

impl Metric {
    pub const ALL: [Self; 10] = [
        Self::TcpGbps,
        Self::UdpKpps,
        Self::UdpP50,
        Self::UdpP99,
        Self::TcpP50,
        Self::TcpP99,
        Self::TcpCpu,
        Self::UdpCpu,
        Self::UdpRrCpu,
        Self::TcpRrCpu,
    ];

    /// Stable key for JSON.
    pub fn key(self) -> &'static str {
        match self {
            Self::TcpGbps => "tcp_gbit_s",
            Self::UdpKpps => "udp_64b_kpps",
            Self::UdpP50 => "udp_rr_p50_us",
            Self::UdpP99 => "udp_rr_p99_us",
            Self::TcpP50 => "tcp_rr_p50_us",
            Self::TcpP99 => "tcp_rr_p99_us",
            Self::TcpCpu => "tcp_cpu_cores",
            Self::UdpCpu => "udp_cpu_cores",
            Self::UdpRrCpu => "udp_rr_cpu_cores",
            Self::TcpRrCpu => "tcp_rr_cpu_cores",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::TcpGbps => "TCP 1 stream",
            Self::UdpKpps => "UDP 64 B received",
            Self::UdpP50 => "UDP req-resp p50 (half RTT)",
            Self::UdpP99 => "UDP req-resp p99 (half RTT)",
            Self::TcpP50 => "TCP req-resp p50 (half RTT)",
            Self::TcpP99 => "TCP req-resp p99 (half RTT)",
            Self::TcpCpu => "CPU during TCP stream",
            Self::UdpCpu => "CPU during UDP 64 B",
            Self::UdpRrCpu => "CPU during UDP req-resp",
            Self::TcpRrCpu => "CPU during TCP req-resp",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Self::TcpGbps => "Gbit/s",
            Self::UdpKpps => "kpps",
            Self::UdpP50 | Self::UdpP99 | Self::TcpP50 | Self::TcpP99 => "us",
            Self::TcpCpu | Self::UdpCpu | Self::UdpRrCpu | Self::TcpRrCpu => "cores",
        }
    }

    pub fn higher_is_better(self) -> bool {
        matches!(self, Self::TcpGbps | Self::UdpKpps)
    }

    /// Whether a lower value is better (latency); CPU figures are context, neither.
    pub fn lower_is_better(self) -> bool {
        matches!(
            self,
            Self::UdpP50 | Self::UdpP99 | Self::TcpP50 | Self::TcpP99
        )
    }
}

/// The tools the measurements run (`cargo xtask setup` installs them).
pub fn check_tools() -> anyhow::Result<()> {
    for tool in ["iperf3", "sockperf", "nsenter", "ss", "ping"] {
        anyhow::ensure!(
            crate::on_path(tool),
            "{tool} not found (cargo xtask setup installs it)"
        );
    }
    Ok(())
}

/// What one measurement gave.
pub struct Measured {
    /// Its metrics, the CPU figure (busy cores, summed) included.
    pub values: Vec<(Metric, f64)>,
    /// Busy fraction of each core over the run.
    pub per_core: Vec<f64>,
}

/// Runs one measurement between the endpoints.
pub fn measure(kind: Measurement, ep: &Endpoints, seconds: u32) -> anyhow::Result<Measured> {
    let addr = ep.server_addr.to_string();
    let secs = seconds.to_string();
    // Generous: start-up, sockperf's warm-up, and a loaded machine.
    let deadline = Duration::from_secs(u64::from(seconds) * 2 + 20);
    let port = IPERF_PORT.to_string();
    let sport = SOCKPERF_PORT.to_string();
    let (server_args, client_prog, client_args): (Vec<&str>, &str, Vec<&str>) = match kind {
        Measurement::Tcp => (
            vec!["-s", "-1", "-p", &port],
            "iperf3",
            vec!["-c", &addr, "-p", &port, "-t", &secs, "-J"],
        ),
        Measurement::Udp => (
            vec!["-s", "-1", "-p", &port],
            "iperf3",
            vec![
                "-c", &addr, "-p", &port, "-t", &secs, "-J", "-u", "-l", SMALL, "-b", "0",
            ],
        ),
        Measurement::UdpRr => (
            vec!["sr", "-i", &addr, "-p", &sport],
            "sockperf",
            vec!["pp", "-i", &addr, "-p", &sport, "-t", &secs, "-m", SMALL],
        ),
        Measurement::TcpRr => (
            vec!["sr", "-i", &addr, "-p", &sport, "--tcp"],
            "sockperf",
            vec![
                "pp", "-i", &addr, "-p", &sport, "-t", &secs, "-m", SMALL, "--tcp",
            ],
        ),
    };
    let server_prog = client_prog;
    let (listen_port, udp_listener) = match kind {
        // iperf3's control connection is TCP even for a UDP test.
        Measurement::Tcp | Measurement::Udp => (IPERF_PORT, false),
        Measurement::UdpRr => (SOCKPERF_PORT, true),
        Measurement::TcpRr => (SOCKPERF_PORT, false),
    };
    let _server = process::Background::spawn(&ep.server, server_prog, &server_args)?;
    process::wait_listening(&ep.server, listen_port, udp_listener)?;
    let before = CpuSample::now()?;
    let out = process::run(&ep.client, client_prog, &client_args, deadline)?;
    let per_core = CpuSample::now()?.per_core_since(&before);
    let mut values = match kind {
        Measurement::Tcp => vec![(Metric::TcpGbps, iperf_tcp_gbps(&out)?)],
        Measurement::Udp => vec![(
            Metric::UdpKpps,
            iperf_udp_received_pps(&out, SMALL_LEN)? / 1e3,
        )],
        Measurement::UdpRr => sockperf(&out, Metric::UdpP50, Metric::UdpP99)?,
        Measurement::TcpRr => sockperf(&out, Metric::TcpP50, Metric::TcpP99)?,
    };
    values.push((kind.cpu_metric(), per_core.iter().sum()));
    Ok(Measured { values, per_core })
}

const SMALL_LEN: u64 = 64;

/// One progress line's worth: `31.2 Gbit/s, cpu 1.95 cores`.
pub fn describe(values: &[(Metric, f64)]) -> String {
    values
        .iter()
        .map(|(m, v)| match m {
            Metric::TcpCpu | Metric::UdpCpu | Metric::UdpRrCpu | Metric::TcpRrCpu => {
                format!("cpu {v:.2} cores")
            }
            Metric::UdpP50 | Metric::TcpP50 => format!("p50 {v:.2} us"),
            Metric::UdpP99 | Metric::TcpP99 => format!("p99 {v:.2} us"),
            _ => format!("{v:.2} {}", m.unit()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn json(out: &str) -> anyhow::Result<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(out).context("iperf3 printed no JSON")?;
    if let Some(error) = v.get("error").and_then(|e| e.as_str()) {
        anyhow::bail!("iperf3: {error}");
    }
    Ok(v)
}

fn number(v: &serde_json::Value, path: &[&str]) -> anyhow::Result<f64> {
    path.iter()
        .try_fold(v, |v, key| v.get(key))
        .and_then(serde_json::Value::as_f64)
        .with_context(|| format!("iperf3 JSON has no {}", path.join(".")))
}

/// Receiver-side throughput of a TCP test, Gbit/s.
fn iperf_tcp_gbps(out: &str) -> anyhow::Result<f64> {
    Ok(number(&json(out)?, &["end", "sum_received", "bits_per_second"])? / 1e9)
}

/// Packets per second the receiver got in a UDP test. Its byte count over the datagram size:
/// unlike `packets - lost_packets`, that does not count reordered packets as lost and found.
fn iperf_udp_received_pps(out: &str, datagram: u64) -> anyhow::Result<f64> {
    let v = json(out)?;
    let bytes = number(&v, &["end", "sum_received", "bytes"])?;
    let seconds = number(&v, &["end", "sum_received", "seconds"])?;
    anyhow::ensure!(seconds > 0.0, "iperf3 reported a zero-length test");
    Ok(bytes / datagram as f64 / seconds)
}

/// p50 and p99 from sockperf's percentile lines (`---> percentile 50.000 =    6.742`).
fn sockperf(out: &str, p50: Metric, p99: Metric) -> anyhow::Result<Vec<(Metric, f64)>> {
    let find = |label: &str| -> anyhow::Result<f64> {
        out.lines()
            .find(|l| l.contains(label))
            .and_then(|l| l.rsplit('=').next())
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("sockperf printed no '{label}' line"))
    };
    Ok(vec![
        (p50, find("percentile 50.000")?),
        (p99, find("percentile 99.000")?),
    ])
}

/// A UDP 64-byte flood from client to server for the in-kernel phase; the received kpps.
pub fn udp_flood(ep: &Endpoints, seconds: u32) -> anyhow::Result<f64> {
    measure(Measurement::Udp, ep, seconds)?
        .values
        .iter()
        .find(|(m, _)| *m == Metric::UdpKpps)
        .map(|(_, v)| *v)
        .context("no packet rate")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sockperf_percentiles() {
        let out = "sockperf: ---> percentile 99.000 =   15.353\n\
                   sockperf: ---> percentile 90.000 =    7.483\n\
                   sockperf: ---> percentile 50.000 =    6.742\n";
        let v = sockperf(out, Metric::UdpP50, Metric::UdpP99).unwrap();
        assert_eq!(v, vec![(Metric::UdpP50, 6.742), (Metric::UdpP99, 15.353)]);
    }

    #[test]
    fn parses_iperf3_udp_received_rate() {
        let out = r#"{"end":{"sum_received":{"seconds":2.0,"bytes":6400,"packets":120,"lost_packets":20}}}"#;
        assert_eq!(iperf_udp_received_pps(out, 64).unwrap(), 50.0);
    }

    #[test]
    fn reports_iperf3_errors() {
        let err = iperf_tcp_gbps(r#"{"error":"unable to connect"}"#).unwrap_err();
        assert!(err.to_string().contains("unable to connect"), "{err}");
    }
}
