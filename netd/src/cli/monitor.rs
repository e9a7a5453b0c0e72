//! `netd monitor`: the datapath's drops (and, asked for, every forwarded packet) as they
//! happen, read from the pinned ring buffer of the running daemon's datapath.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use netd::{
    api::ErrorKind,
    datapath::{
        events::{EventReader, Wanted},
        inspect,
    },
    monitor::{Described, Filter, HostView, drop_reason},
    netlink,
};
use netd_common::stats::Counter;
use serde_json::json;

use super::output::Format;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EventType {
    /// Every dropped packet, with its reason.
    Drop,
    /// Every packet a program forwarded (costs a little on every packet while on).
    Trace,
}

#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// Which events: drop, trace, or both (drop,trace).
    #[arg(
        long = "type",
        value_enum,
        value_delimiter = ',',
        default_value = "drop"
    )]
    types: Vec<EventType>,
    /// Only events of this endpoint of this host (its name).
    #[arg(long)]
    endpoint: Option<String>,
    /// Only events in this network.
    #[arg(long)]
    network: Option<String>,
    /// Only these drop reasons (`spoofed-mac` or `drop-spoofed-mac`), comma-separated.
    #[arg(long, value_delimiter = ',')]
    reason: Vec<String>,
}

/// Why `netd monitor` could not start, where the datapath's own errors do not say.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("another netd monitor is reading the datapath in {0} (one reader at a time)")]
    AnotherReader(PathBuf),
    #[error("unknown drop reason {0:?} (`netd maps dump stats` lists them)")]
    UnknownReason(String),
    #[error("cannot take the monitor lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl MonitorError {
    /// Its kind, for the exit code (the table in `netd::api::error`).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::AnotherReader(_) => ErrorKind::InUse,
            Self::UnknownReason(_) => ErrorKind::Invalid,
            Self::Lock { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                ErrorKind::PermissionDenied
            }
            Self::Lock { .. } => ErrorKind::Internal,
        }
    }
}

/// Takes the one reader's place of the datapath pinned in `pin_dir`: a ring buffer has one
/// consumer position, and two readers moving it would lose and garble each other's events.
/// The lock is the pin directory's own, which netd keeps root's alone (0700): a lock file in a
/// world-writable directory (/run/lock) let any user hold it and keep every monitor out.
/// The lock goes with the process (also on kill -9).
fn take_reader_lock(pin_dir: &Path) -> Result<std::fs::File, MonitorError> {
    let dir = std::fs::File::open(pin_dir).map_err(|source| MonitorError::Lock {
        path: pin_dir.into(),
        source,
    })?;
    // SAFETY: flock(2) on a descriptor this function owns.
    if unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&dir),
            libc::LOCK_EX | libc::LOCK_NB,
        )
    } != 0
    {
        return Err(MonitorError::AnotherReader(pin_dir.into()));
    }
    Ok(dir)
}

/// How often the switches are renewed and the lost-event counters read.
const RENEW_EVERY: Duration = Duration::from_secs(1);

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Ctrl-C and SIGTERM end the loop, so that the switches are turned off on the way out.
fn stop_on_signals() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, on_signal as *const () as libc::sighandler_t) };
    }
}

/// Events the programs could not write: (rate limited, ring full) so far.
fn lost(pin_dir: &Path) -> anyhow::Result<(u64, u64)> {
    let counters = inspect::counters(pin_dir)?;
    let get = |counter: Counter| {
        counters
            .iter()
            .find(|(n, _)| *n == counter.name())
            .map_or(0, |(_, v)| *v)
    };
    Ok((
        get(Counter::MonitorRateLimited),
        get(Counter::MonitorRingFull),
    ))
}

fn host_view(pin_dir: &Path) -> anyhow::Result<HostView> {
    let config = inspect::config(pin_dir)?;
    let interfaces = netlink::interfaces().context("cannot list this host's interfaces")?;
    Ok(HostView::new(
        &inspect::endpoints(pin_dir)?,
        &interfaces,
        config.vxlan_port,
    ))
}

fn filter(args: &MonitorArgs) -> Result<Filter, MonitorError> {
    let mut reasons = Vec::new();
    for name in &args.reason {
        match drop_reason(name) {
            Some(reason) => reasons.push(reason),
            None => return Err(MonitorError::UnknownReason(name.clone())),
        }
    }
    Ok(Filter {
        endpoint: args.endpoint.clone(),
        network: args.network.clone(),
        reasons,
    })
}

pub fn run(args: MonitorArgs, pin_dir: &Path, format: Format) -> anyhow::Result<()> {
    let filter = filter(&args)?;
    let wanted = Wanted {
        drops: args.types.contains(&EventType::Drop),
        traces: args.types.contains(&EventType::Trace),
    };
    // Its errors say what is missing or refused, with the directory.
    let mut reader = EventReader::open(pin_dir)?;
    let _only_reader = take_reader_lock(pin_dir)?;
    let mut host = host_view(pin_dir)?;
    let (mut rate_limited, mut ring_full) = lost(pin_dir)?;
    stop_on_signals();
    reader.arm(wanted)?;
    eprintln!(
        "netd monitor: {} events of the datapath in {}; Ctrl-C to stop",
        describe_wanted(wanted),
        pin_dir.display()
    );
    let result = watch(
        &mut reader,
        pin_dir,
        wanted,
        &filter,
        format,
        &mut host,
        (&mut rate_limited, &mut ring_full),
    );
    // Whatever ended the loop, nobody listens any more.
    let disarmed = reader.disarm(wanted);
    result?;
    Ok(disarmed?)
}

fn describe_wanted(wanted: Wanted) -> &'static str {
    match (wanted.drops, wanted.traces) {
        (true, true) => "drop and trace",
        (false, true) => "trace",
        _ => "drop",
    }
}

fn watch(
    reader: &mut EventReader,
    pin_dir: &Path,
    wanted: Wanted,
    filter: &Filter,
    format: Format,
    host: &mut HostView,
    lost_so_far: (&mut u64, &mut u64),
) -> anyhow::Result<()> {
    let (rate_limited, ring_full) = lost_so_far;
    let mut renewed = Instant::now();
    let mut host_read = Instant::now();
    while !STOP.load(Ordering::Relaxed) {
        for event in reader.read(Duration::from_millis(200))? {
            let is_drop = event.kind == netd_common::monitor::kind::DROP;
            // A monitor killed before it disarmed may have left the other kind armed for a while.
            if (is_drop && !wanted.drops) || (!is_drop && !wanted.traces) {
                continue;
            }
            // An interface created since the last look: look again (at most once a second).
            if !host.interfaces.contains_key(&event.ifindex) && host_read.elapsed() >= RENEW_EVERY {
                *host = host_view(pin_dir)?;
                host_read = Instant::now();
            }
            let described = netd::monitor::describe(&event, host);
            if filter.matches(&described) {
                print(&described, format)?;
            }
        }
        if renewed.elapsed() >= RENEW_EVERY {
            reader.arm(wanted)?;
            renewed = Instant::now();
            let (now_limited, now_full) = lost(pin_dir)?;
            if (now_limited, now_full) != (*rate_limited, *ring_full) {
                print_lost(now_limited - *rate_limited, now_full - *ring_full, format)?;
                (*rate_limited, *ring_full) = (now_limited, now_full);
            }
        }
    }
    Ok(())
}

fn print(event: &Described, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string(event)?),
        Format::Table => println!("{event}"),
    }
    Ok(())
}

/// Events the programs had to leave out since the last report (of all kinds and hosts'
/// endpoints: the budget is shared).
fn print_lost(rate_limited: u64, ring_full: u64, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => println!(
            "{}",
            json!({"type": "lost", "rate_limited": rate_limited, "ring_full": ring_full})
        ),
        Format::Table => println!(
            "lost {} events ({rate_limited} over the rate limit, {ring_full} with the ring full)",
            rate_limited + ring_full
        ),
    }
    Ok(())
}
