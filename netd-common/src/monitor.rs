//! Datapath events for `netd monitor`: what a program writes into the `NETD_EVENTS` ring buffer
//! and the switches that say when it may.
//!
//! Nothing is written while no monitor listens: a monitor arms [`MonitorControl`] with a
//! deadline a few seconds ahead and renews it while it runs, so a monitor that dies stops the
//! events by itself. Drops cost the check only when a packet is dropped; traces (every
//! forwarded packet) cost one array read per packet, and the rest only while armed. Each CPU may
//! write at most [`EVENTS_PER_SECOND_PER_CPU`]; what the limit or a full ring refuses is counted
//! ([`Counter::MonitorRateLimited`], [`Counter::MonitorRingFull`]), so a monitor can say how
//! many it missed.
//!
//! [`Counter::MonitorRateLimited`]: crate::stats::Counter::MonitorRateLimited
//! [`Counter::MonitorRingFull`]: crate::stats::Counter::MonitorRingFull

/// Packet bytes copied into an event, from the start of the frame: Ethernet, IPv4, ports, and
/// for VXLAN the inner frame's headers too (14 + 20 + 8 + 8 + 14 + 20 + 8 = 92).
pub const SAMPLE_BYTES: usize = 128;

/// Size of the ring buffer (a power-of-2 multiple of the page size): about 1,800 events.
pub const RING_BYTES: u32 = 256 * 1024;

/// Events one CPU may write per second; a flood of drops beyond it is counted, not written.
pub const EVENTS_PER_SECOND_PER_CPU: u64 = 2000;

/// How far ahead a monitor arms the switches; it renews them every second.
pub const ARM_NS: u64 = 3_000_000_000;

/// `Event::kind`.
pub mod kind {
    pub const DROP: u8 = 1;
    /// A packet a program forwarded (redirected).
    pub const TRACE: u8 = 2;
}

/// `Event::hook`: which program saw the packet.
pub mod hook {
    pub const ENDPOINT: u8 = 1;
    pub const UPLINK: u8 = 2;
    pub const PARENT: u8 = 3;
    pub const TO_PARENT: u8 = 4;
    pub const TUNNEL: u8 = 5;
    pub const TO_UPLINK: u8 = 6;

    pub const fn name(hook: u8) -> &'static str {
        match hook {
            ENDPOINT => "from-endpoint",
            UPLINK => "from-uplink",
            PARENT => "from-parent",
            TO_PARENT => "to-parent",
            TUNNEL => "from-tunnel",
            TO_UPLINK => "to-uplink",
            _ => "?",
        }
    }
}

/// One event, as the ring buffer carries it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Event {
    pub kind: u8,
    pub hook: u8,
    /// The index of a drop's [`DropReason`](crate::stats::DropReason) (`DropReason::index`), 0
    /// for a trace.
    pub reason: u16,
    /// The interface the packet was on (`__sk_buff.ifindex`).
    pub ifindex: u32,
    /// The packet's length (`__sk_buff.len`).
    pub len: u32,
    /// How many bytes of `sample` are the packet's.
    pub sample_len: u32,
    pub sample: [u8; SAMPLE_BYTES],
}

/// `NETD_MONITOR[0]`: until when (CLOCK_MONOTONIC, as `bpf_ktime_get_ns`) each kind of event is
/// written; 0 for off.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MonitorControl {
    pub drops_until_ns: u64,
    pub trace_until_ns: u64,
}

/// `NETD_EVENT_BUDGET[0]`, per CPU: events written in the current one-second window.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EventBudget {
    pub window_start_ns: u64,
    pub written: u64,
}
