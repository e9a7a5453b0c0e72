//! A DNS flood from inside one namespace (a "container"), for the flood lab and
//! `netd-bench --dns-flood`: TCP connections held open to the DNS address (re-opened when the
//! server closes them, as an attacker would), and UDP queries as fast as one thread sends them
//! (or at a given rate) for names that go upstream. And the daemon's RSS and CPU, sampled from
//! /proc while it lasts.

use std::{
    io::{ErrorKind, Read as _},
    net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query},
    rr::{Name, RecordType},
};

use crate::netns::Netns;

/// What to send.
#[derive(Clone, Debug)]
pub struct FloodConfig {
    pub target: Ipv4Addr,
    /// TCP connections to keep open.
    pub tcp_connections: usize,
    /// UDP queries per second; 0: as fast as one thread sends.
    pub udp_rate: u32,
}

/// What the flood did so far.
#[derive(Debug, Default)]
pub struct FloodCounts {
    /// TCP connections opened (re-opened ones included).
    pub tcp_opened: AtomicU64,
    /// TCP connections open now.
    pub tcp_open: AtomicU64,
    pub udp_sent: AtomicU64,
    pub udp_answered: AtomicU64,
}

/// A running flood; stops when dropped.
pub struct Flood {
    pub counts: Arc<FloodCounts>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Flood {
    pub fn start(ns: &Netns, config: &FloodConfig) -> anyhow::Result<Self> {
        let counts = Arc::new(FloodCounts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let path = ns.path();
        {
            let (counts, stop, path, config) =
                (counts.clone(), stop.clone(), path.clone(), config.clone());
            threads.push(std::thread::spawn(move || {
                if let Ok(_inside) = netd::netns::enter(&path) {
                    hold_tcp(&config, &counts, &stop);
                }
            }));
        }
        let socket = {
            let _inside = netd::netns::enter(&path)?;
            UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?
        };
        socket.set_read_timeout(Some(Duration::from_millis(1)))?;
        let receiver = socket.try_clone()?;
        {
            let (counts, stop, config) = (counts.clone(), stop.clone(), config.clone());
            threads.push(std::thread::spawn(move || {
                send_udp(&socket, &config, &counts, &stop);
            }));
        }
        {
            let (counts, stop) = (counts.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                receive_udp(&receiver, &counts, &stop);
            }));
        }
        Ok(Self {
            counts,
            stop,
            threads,
        })
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Opens connections up to the count, then checks them every 200 ms and re-opens those the
/// server closed.
fn hold_tcp(config: &FloodConfig, counts: &FloodCounts, stop: &AtomicBool) {
    let target = SocketAddr::from((config.target, 53));
    let mut held: Vec<TcpStream> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        held.retain(|stream| {
            let mut byte = [0u8; 1];
            match stream.peek(&mut byte) {
                Ok(0) => false,
                Ok(_) => true,
                Err(e) => e.kind() == ErrorKind::WouldBlock,
            }
        });
        while held.len() < config.tcp_connections && !stop.load(Ordering::Relaxed) {
            // The server's backlog full: SYNs wait for their retransmission; try again later.
            let Ok(stream) = TcpStream::connect_timeout(&target, Duration::from_millis(100)) else {
                break;
            };
            let _ = stream.set_nonblocking(true);
            held.push(stream);
            counts.tcp_opened.fetch_add(1, Ordering::Relaxed);
        }
        counts.tcp_open.store(held.len() as u64, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(200));
    }
    // Reading what is left makes the close quiet.
    for mut stream in held {
        let _ = stream.read(&mut [0u8; 64]);
    }
}

fn send_udp(socket: &UdpSocket, config: &FloodConfig, counts: &FloodCounts, stop: &AtomicBool) {
    let target = SocketAddr::from((config.target, 53));
    let started = Instant::now();
    let mut sent: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        if config.udp_rate > 0 {
            let due = started.elapsed().as_secs_f64() * f64::from(config.udp_rate);
            if (sent as f64) >= due {
                std::thread::sleep(Duration::from_micros(500));
                continue;
            }
        }
        let query = query(sent);
        if socket.send_to(&query, target).is_ok() {
            sent += 1;
            counts.udp_sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn receive_udp(socket: &UdpSocket, counts: &FloodCounts, stop: &AtomicBool) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        if socket.recv_from(&mut buf).is_ok() {
            counts.udp_answered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A query for a name netd does not know (it goes upstream), a new one each time.
fn query(n: u64) -> Vec<u8> {
    let mut message = Message::new((n & 0xffff) as u16, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    let name = Name::from_ascii(format!("flood-{n}.example.test.")).unwrap_or_default();
    message.add_query(Query::query(name, RecordType::A));
    message.to_vec().unwrap_or_default()
}

/// A process's resident memory (KiB) and CPU time (user + system, in clock ticks), from /proc.
#[derive(Clone, Copy, Debug)]
pub struct ProcessSample {
    pub at: Instant,
    pub rss_kib: u64,
    pub cpu_ticks: u64,
    pub fds: usize,
}

pub fn sample(pid: u32) -> anyhow::Result<ProcessSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/{pid}/status"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow::anyhow!("cannot parse /proc/{pid}/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> u64 { fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0) };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(Iterator::count)
        .unwrap_or(0);
    Ok(ProcessSample {
        at: Instant::now(),
        rss_kib,
        cpu_ticks: ticks(11) + ticks(12),
        fds,
    })
}

/// CPU used between two samples, in % of one core.
pub fn cpu_percent(from: &ProcessSample, to: &ProcessSample) -> f64 {
    // SAFETY: sysconf only reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let seconds = to.at.duration_since(from.at).as_secs_f64();
    if seconds <= 0.0 {
        return 0.0;
    }
    (to.cpu_ticks.saturating_sub(from.cpu_ticks) as f64 / hz) / seconds * 100.0
}
