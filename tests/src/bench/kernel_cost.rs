//! In-kernel cost of netd's programs per packet, next to a null TC program (`netd_null`, which
//! returns TC_ACT_OK at once), so that "ns above null" removes what running any program costs.
//!
//! Two methods, because not everything can be looped (docs/performance.md#in-kernel-cost):
//! - `BPF_PROG_TEST_RUN` with repeat >= 1e6 for runs that leave the packet as it was: the null
//!   program, local delivery (a redirect, packet untouched) and the uplink's pass verdict. The
//!   kernel re-runs the program on the same skb, so an encap or decap would compound (and an encap
//!   after the first fails with -EALREADY), and an ARP reply would answer itself.
//! - `bpf_stats` (`run_time_ns / run_cnt`, enabled through BPF_ENABLE_STATS, which switches itself
//!   off when this process lets go of the descriptor, also if it dies) on live traffic in a netd
//!   two-host lab for encap, decap+deliver and the ARP reply; the null program is attached to the
//!   sending container's eth0 egress, where it sees exactly the packets from-endpoint sees. The
//!   stats clock reads are part of every live figure, null included: subtract, don't compare
//!   live with TEST_RUN.
//!
//! A redirect's own work (the peer switch, the uplink transmit) happens after the program
//! returns, so it is in the end-to-end numbers, not here.

use std::{net::Ipv4Addr, time::Duration};

use anyhow::Context as _;
use aya::{
    Ebpf,
    programs::{SchedClassifier, TcAttachType, TestRun as _, TestRunOptions},
    sys::Stats,
};
use etherparse::PacketBuilder;
use netd::datapath::Hook;

use super::{
    Config, interrupt, metrics,
    path::Endpoints,
    profile::{self, ProgramProfile},
    stats::{Summary, summarize},
};
use crate::{
    lab::{CONTAINER_IPS, CONTAINER_MACS, TwoHostLab},
    netns::Netns,
    pkt::RawSocket,
    testrun::{self, PacketLab, TC_ACT_OK, TC_ACT_REDIRECT},
};

const NULL_PROGRAM: &str = "netd_null";
pub const LIVE_ENCAP: &str = "live-encap";
pub const LIVE_DECAP: &str = "live-decap-deliver";
pub const LIVE_NULL: &str = "live-null";

pub const FRESH_ENCAP: &str = "fresh-encap";
pub const FRESH_DECAP: &str = "fresh-decap-deliver";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// One TEST_RUN call looping `repeat` times over the same packet.
    TestRun,
    /// TEST_RUN calls of one run each, every one on a fresh copy of the packet (median).
    TestRunFresh,
    Live,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Self::TestRun => "TEST_RUN",
            Self::TestRunFresh => "TEST_RUN x1",
            Self::Live => "bpf_stats",
        }
    }
}

/// One program on one kind of packet, one value per repetition.
pub struct CostRow {
    pub key: &'static str,
    pub label: &'static str,
    pub method: Method,
    pub ns: Vec<f64>,
    /// Minus the null program of the same method in the same repetition (empty for the nulls).
    pub above_null: Vec<f64>,
}

impl CostRow {
    fn new(key: &'static str, label: &'static str, method: Method) -> Self {
        Self {
            key,
            label,
            method,
            ns: Vec::new(),
            above_null: Vec::new(),
        }
    }

    pub fn ns(&self) -> Option<Summary> {
        summarize(self.ns.iter().copied())
    }

    pub fn above_null(&self) -> Option<Summary> {
        summarize(self.above_null.iter().copied())
    }

    fn push(&mut self, ns: f64, null: Option<f64>) {
        self.ns.push(ns);
        if let Some(null) = null {
            self.above_null.push(ns - null);
        }
    }
}

pub struct KernelCosts {
    pub repeat: u32,
    pub rows: Vec<CostRow>,
    /// `--profile`: where from-endpoint's and from-uplink's time went in the fresh-packet phase.
    pub profiles: Vec<ProgramProfile>,
}

impl KernelCosts {
    pub fn row(&self, key: &str) -> Option<&CostRow> {
        self.rows.iter().find(|r| r.key == key)
    }
}

/// Whether someone already turned on `kernel.bpf_stats_enabled` (then every program, netd's in
/// the rounds included, pays for the timing).
pub fn stats_already_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|v| v.trim() == "1")
}

pub fn measure(config: &Config) -> anyhow::Result<KernelCosts> {
    let mut null = NullProgram::load()?;
    let mut rows = test_runs(config, null.program()?)?;
    let recording = config.profile.then(profile::Recording::start).transpose()?;
    rows.extend(fresh_runs(config, null.program()?)?);
    let profiles = match recording {
        Some(recording) => {
            recording.finish(&[Hook::Endpoint.program_name(), Hook::Uplink.program_name()])?
        }
        None => Vec::new(),
    };
    rows.extend(live(config, &mut null)?);
    Ok(KernelCosts {
        repeat: config.repeat,
        rows,
        profiles,
    })
}

/// The embedded object loaded again, with only the null program loaded (its maps are created and
/// freed with it; netd's programs in it stay unloaded).
struct NullProgram {
    ebpf: Ebpf,
}

impl NullProgram {
    fn load() -> anyhow::Result<Self> {
        let mut ebpf = Ebpf::load(netd::datapath::object()).context("cannot load netd's object")?;
        let program: &mut SchedClassifier = ebpf
            .program_mut(NULL_PROGRAM)
            .with_context(|| format!("no {NULL_PROGRAM} in the object"))?
            .try_into()?;
        program.load().context("cannot load the null program")?;
        Ok(Self { ebpf })
    }

    fn program(&self) -> anyhow::Result<&SchedClassifier> {
        Ok(self
            .ebpf
            .program(NULL_PROGRAM)
            .context("null program gone")?
            .try_into()?)
    }

    /// Attaches at TC egress of `ifname` in `netns` (detached when this drops).
    fn attach_egress(&mut self, netns: &Netns, ifname: &str) -> anyhow::Result<()> {
        let program: &mut SchedClassifier = self
            .ebpf
            .program_mut(NULL_PROGRAM)
            .context("null program gone")?
            .try_into()?;
        let _inside = netd::netns::enter(&netns.path())?;
        program
            .attach(ifname, TcAttachType::Egress)
            .with_context(|| format!("cannot attach the null program to {ifname}"))?;
        Ok(())
    }
}

/// A UDP frame with a 64-byte payload, as iperf3 -l 64 sends.
fn udp64(
    src: ([u8; 6], Ipv4Addr),
    dst: ([u8; 6], Ipv4Addr),
    dport: u16,
) -> anyhow::Result<Vec<u8>> {
    let builder = PacketBuilder::ethernet2(src.0, dst.0)
        .ipv4(src.1.octets(), dst.1.octets(), 64)
        .udp(40000, dport);
    let payload = [0x5a_u8; 64];
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder
        .write(&mut frame, &payload)
        .map_err(|e| anyhow::anyhow!("cannot build a frame: {e:?}"))?;
    Ok(frame)
}

/// ns per run of `program` on `frame` arriving on `ifindex`, over `repeat` runs in the kernel.
fn test_run_ns(
    program: &SchedClassifier,
    frame: &[u8],
    ifindex: u32,
    repeat: u32,
    verdict: u32,
) -> anyhow::Result<f64> {
    // struct __sk_buff: only ifindex (offset 40) set; the kernel requires the rest zero.
    let mut ctx = [0u8; 192];
    ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
    let mut out = vec![0u8; frame.len() + 256];
    let result = program.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in: Some(&ctx),
        repeat,
        ..TestRunOptions::default()
    })?;
    // The wrong verdict means the packet took another branch than the one being timed.
    anyhow::ensure!(
        result.return_value == verdict,
        "verdict {} instead of {verdict}",
        result.return_value
    );
    // The kernel reports the mean per run in whole ns.
    Ok(result.duration.as_nanos() as f64)
}

fn test_runs(config: &Config, null: &SchedClassifier) -> anyhow::Result<Vec<CostRow>> {
    let lab = PacketLab::new()?;
    let local = udp64(
        (testrun::EP_A.1, testrun::EP_A.0),
        (testrun::EP_B.1, testrun::EP_B.0),
        5201,
    )?;
    // UDP to this host's VTEP but not to the VXLAN port: the longest way to "pass".
    let to_host = udp64(
        (testrun::NEXT_HOP_MAC, testrun::REMOTE_VTEP),
        (lab.uplink_mac, testrun::LOCAL_VTEP),
        5201,
    )?;
    let endpoint = lab.datapath.program(Hook::Endpoint)?;
    let uplink = lab.datapath.program(Hook::Uplink)?;
    let mut null_row = CostRow::new("testrun-null", "null program", Method::TestRun);
    let mut local_row = CostRow::new(
        "testrun-local",
        "from-endpoint: local delivery",
        Method::TestRun,
    );
    let mut pass_row = CostRow::new(
        "testrun-uplink-pass",
        "from-uplink: UDP to host, not VXLAN (pass)",
        Method::TestRun,
    );
    // The helpers look at the lab's devices: run inside its namespace.
    let _inside = netd::netns::enter(&lab.ns.path())?;
    for rep in 0..config.rounds {
        interrupt::check()?;
        let repeat = config.repeat;
        let n = test_run_ns(null, &local, lab.ep_a_ifindex, repeat, TC_ACT_OK)?;
        let l = test_run_ns(endpoint, &local, lab.ep_a_ifindex, repeat, TC_ACT_REDIRECT)
            .context("from-endpoint local delivery")?;
        let p = test_run_ns(
            uplink,
            &to_host,
            lab.uplink_ifindex,
            repeat,
            testrun::TC_ACT_PASS,
        )
        .context("from-uplink pass")?;
        println!(
            "[rep {}/{}] TEST_RUN x{repeat}: null {n:.0} ns, local delivery {l:.0} ns (+{:.0}), uplink pass {p:.0} ns (+{:.0})",
            rep + 1,
            config.rounds,
            l - n,
            p - n
        );
        null_row.push(n, None);
        local_row.push(l, Some(n));
        pass_row.push(p, Some(n));
    }
    Ok(vec![null_row, local_row, pass_row])
}

/// Median ns of single TEST_RUN runs of `program`, each on a fresh copy of `frame`.
///
/// For the programs that change the packet (encap, decap, ARP reply), which a looped run would
/// apply to its own output. The kernel builds each copy with NET_SKB_PAD of headroom, as a
/// NIC driver does, so this is the programs' own cost, helpers included; a container's veth
/// gives less than the 50 bytes an encap needs, and the live rows show that reallocation too.
fn fresh_runs_ns(
    program: &SchedClassifier,
    frame: &[u8],
    ifindex: u32,
    runs: u32,
    verdict: u32,
) -> anyhow::Result<f64> {
    let mut samples = (0..runs)
        .map(|_| test_run_ns(program, frame, ifindex, 1, verdict))
        .collect::<anyhow::Result<Vec<f64>>>()?;
    samples.sort_by(f64::total_cmp);
    samples
        .get(samples.len() / 2)
        .copied()
        .context("no run to take a median of")
}

fn fresh_runs(config: &Config, null: &SchedClassifier) -> anyhow::Result<Vec<CostRow>> {
    let lab = PacketLab::new()?;
    let (ep, remote) = (testrun::EP_A, testrun::REMOTE);
    let to_remote = udp64((ep.1, ep.0), (remote.1, remote.0), 5201)?;
    let from_remote = crate::pkt::Vxlan {
        src_mac: testrun::NEXT_HOP_MAC,
        dst_mac: lab.uplink_mac,
        src: testrun::REMOTE_VTEP,
        dst: testrun::LOCAL_VTEP,
        sport: 50123,
        dport: testrun::VXLAN_PORT,
        flags: 0x08,
        vni: testrun::VNI,
    }
    .wrap(&udp64((remote.1, remote.0), (ep.1, ep.0), 5201)?);
    let arp = crate::pkt::arp_request(ep.1, ep.0, remote.0);
    let endpoint = lab.datapath.program(Hook::Endpoint)?;
    let uplink = lab.datapath.program(Hook::Uplink)?;
    let method = Method::TestRunFresh;
    let mut null_row = CostRow::new("fresh-null", "null program", method);
    let mut encap_row = CostRow::new(FRESH_ENCAP, "from-endpoint: encap, UDP 64 B", method);
    let mut decap_row = CostRow::new(
        FRESH_DECAP,
        "from-uplink: decap + deliver, UDP 64 B",
        method,
    );
    let mut arp_row = CostRow::new("fresh-arp-reply", "from-endpoint: ARP reply", method);
    // Spread the repeat count over the repetitions: 1e6 runs in all by default.
    let runs = (config.repeat / config.rounds.max(1) as u32).max(1000);
    let _inside = netd::netns::enter(&lab.ns.path())?;
    for rep in 0..config.rounds {
        interrupt::check()?;
        let at = lab.ep_a_ifindex;
        let n = fresh_runs_ns(null, &to_remote, at, runs, TC_ACT_OK)?;
        let e = fresh_runs_ns(endpoint, &to_remote, at, runs, TC_ACT_REDIRECT)
            .context("from-endpoint encap")?;
        let d = fresh_runs_ns(
            uplink,
            &from_remote,
            lab.uplink_ifindex,
            runs,
            TC_ACT_REDIRECT,
        )
        .context("from-uplink decap")?;
        let a = fresh_runs_ns(endpoint, &arp, at, runs, TC_ACT_REDIRECT)
            .context("from-endpoint ARP reply")?;
        println!(
            "[rep {}/{}] TEST_RUN x1, {runs} fresh packets each: null {n:.0} ns, encap {e:.0} ns (+{:.0}), decap+deliver {d:.0} ns (+{:.0}), ARP reply {a:.0} ns (+{:.0})",
            rep + 1,
            config.rounds,
            e - n,
            d - n,
            a - n
        );
        null_row.push(n, None);
        encap_row.push(e, Some(n));
        decap_row.push(d, Some(n));
        arp_row.push(a, Some(n));
    }
    Ok(vec![null_row, encap_row, decap_row, arp_row])
}

/// Cumulative `bpf_stats` of one program.
#[derive(Clone, Copy, Debug)]
struct RunStats {
    ns: u64,
    count: u64,
}

impl RunStats {
    fn of(program: &SchedClassifier) -> anyhow::Result<Self> {
        let info = program.info()?;
        Ok(Self {
            ns: info.run_time().as_nanos() as u64,
            count: info.run_count(),
        })
    }

    /// Mean ns per run since `earlier`; `None` when too few runs to mean anything.
    fn per_run_since(self, earlier: Self) -> Option<f64> {
        let runs = self.count.checked_sub(earlier.count)?;
        (runs >= 1000).then(|| self.ns.saturating_sub(earlier.ns) as f64 / runs as f64)
    }
}

/// The three programs watched live.
#[derive(Clone, Copy)]
struct Snapshot {
    null: RunStats,
    from_endpoint: RunStats,
    from_uplink: RunStats,
}

fn live(config: &Config, null: &mut NullProgram) -> anyhow::Result<Vec<CostRow>> {
    let lab = TwoHostLab::new("bk")?;
    let (sender, receiver) = (&lab.hosts[0], &lab.hosts[1]);
    null.attach_egress(&sender.container, "eth0")?;
    let endpoints = Endpoints::between(&sender.container, &receiver.container);
    let _stats = aya::sys::enable_stats(Stats::RunTime).context("BPF_ENABLE_STATS failed")?;
    let snapshot = |null: &NullProgram| -> anyhow::Result<Snapshot> {
        Ok(Snapshot {
            null: RunStats::of(null.program()?)?,
            from_endpoint: RunStats::of(sender.datapath.program(Hook::Endpoint)?)?,
            from_uplink: RunStats::of(receiver.datapath.program(Hook::Uplink)?)?,
        })
    };
    let arp = ArpSender::new(&sender.container)?;
    let mut null_row = CostRow::new(
        LIVE_NULL,
        "null program (sender's eth0 egress)",
        Method::Live,
    );
    let mut encap_row = CostRow::new(LIVE_ENCAP, "from-endpoint: encap, UDP 64 B", Method::Live);
    let mut decap_row = CostRow::new(
        LIVE_DECAP,
        "from-uplink: decap + deliver, UDP 64 B",
        Method::Live,
    );
    let mut arp_row = CostRow::new("live-arp-reply", "from-endpoint: ARP reply", Method::Live);
    for rep in 0..config.rounds {
        interrupt::check()?;
        let start = snapshot(null)?;
        let kpps = metrics::udp_flood(&endpoints, config.live_seconds)?;
        let flooded = snapshot(null)?;
        interrupt::check()?;
        arp.send(config.arp_requests)?;
        let arped = snapshot(null)?;
        let n = flooded
            .null
            .per_run_since(start.null)
            .context("null program saw no traffic")?;
        let e = flooded
            .from_endpoint
            .per_run_since(start.from_endpoint)
            .context("from-endpoint saw no traffic")?;
        let d = flooded
            .from_uplink
            .per_run_since(start.from_uplink)
            .context("from-uplink saw no traffic")?;
        let n_arp = arped
            .null
            .per_run_since(flooded.null)
            .context("no ARP request left the container")?;
        let a = arped
            .from_endpoint
            .per_run_since(flooded.from_endpoint)
            .context("from-endpoint saw no ARP request")?;
        println!(
            "[rep {}/{}] live ({kpps:.0} kpps): null {n:.0} ns, encap {e:.0} ns (+{:.0}), decap+deliver {d:.0} ns (+{:.0}), ARP reply {a:.0} ns (+{:.0})",
            rep + 1,
            config.rounds,
            e - n,
            d - n,
            a - n_arp
        );
        null_row.push(n, None);
        encap_row.push(e, Some(n));
        decap_row.push(d, Some(n));
        arp_row.push(a, Some(n_arp));
    }
    anyhow::ensure!(
        lab.counter(0, "encap")? > 0 && lab.counter(1, "decap")? > 0,
        "the live traffic was not encapsulated and decapsulated by netd"
    );
    anyhow::ensure!(
        lab.counter(0, "arp-reply")? > 0,
        "netd answered no ARP request"
    );
    Ok(vec![null_row, encap_row, decap_row, arp_row])
}

/// Sends ARP requests from the container's eth0 through a packet socket opened inside its
/// namespace: who-has the other container, tell this one, with the container's own addresses
/// (anything else is dropped as spoofed before the responder is reached).
struct ArpSender {
    socket: RawSocket,
    frame: Vec<u8>,
}

impl ArpSender {
    fn new(container: &Netns) -> anyhow::Result<Self> {
        let socket = RawSocket::open(container, "eth0")?;
        let frame = crate::pkt::arp_request(CONTAINER_MACS[0], CONTAINER_IPS[0], CONTAINER_IPS[1]);
        Ok(Self { socket, frame })
    }

    /// Sends `count` requests as fast as the socket takes them; a full queue (ENOBUFS) is waited
    /// out, since only the requests that reach the program are counted anyway.
    fn send(&self, count: u32) -> anyhow::Result<()> {
        let mut sent = 0;
        while sent < count {
            if let Err(error) = self.socket.send(&self.frame) {
                anyhow::ensure!(
                    error.raw_os_error() == Some(libc::ENOBUFS),
                    "ARP send failed: {error}"
                );
                std::thread::sleep(Duration::from_micros(50));
                continue;
            }
            sent += 1;
        }
        Ok(())
    }
}
