//! Reading `netd monitor`'s events from the pinned ring buffer, and arming the programs to
//! write them (`netd_common::monitor` has the protocol).
//!
//! The ring buffer has one consumer position: two readers at once would lose and garble each
//! other's events, so `netd monitor` takes a lock first (cli/monitor.rs).

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    path::Path,
    time::Duration,
};

use aya::maps::{Array, Map, MapData, MapError, RingBuf};
use netd_common::{
    maps::{MapDef, def},
    monitor::{ARM_NS, Event, MonitorControl, SAMPLE_BYTES},
};

use super::{DatapathError, inspect, map_error};

/// Which events a monitor asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    pub drops: bool,
    pub traces: bool,
}

pub struct EventReader {
    ring: RingBuf<MapData>,
    control: Array<MapData, <def::Monitor as MapDef>::Value>,
}

/// The pin of map `D`, checked, as aya's type `T` for it.
fn open_pin<D: MapDef, T>(dir: &Path) -> Result<T, DatapathError>
where
    T: TryFrom<Map, Error = MapError>,
{
    let layout = D::LAYOUT;
    let path = dir.join(layout.name);
    if !inspect::is_pinned(&path)? {
        if !inspect::is_pinned(&dir.join(<def::Stats as MapDef>::LAYOUT.name))? {
            return Err(DatapathError::NoPins(dir.to_path_buf()));
        }
        // Pinned by a netd from before monitoring existed.
        return Err(DatapathError::NoEvents(dir.to_path_buf()));
    }
    let (map, _) = inspect::open_pin(&path, &layout)?;
    T::try_from(map).map_err(map_error::<D>)
}

impl EventReader {
    /// Opens the event ring and the switches of the datapath pinned in `dir`.
    pub fn open(dir: &Path) -> Result<Self, DatapathError> {
        Ok(Self {
            ring: open_pin::<def::Events, _>(dir)?,
            control: open_pin::<def::Monitor, _>(dir)?,
        })
    }

    /// Arms the programs for [`ARM_NS`] from now (call again within it to keep them armed);
    /// kinds not wanted are left as they are.
    pub fn arm(&mut self, wanted: Wanted) -> Result<(), DatapathError> {
        let until = monotonic_ns() + ARM_NS;
        let mut control = self.control_now()?;
        if wanted.drops {
            control.drops_until_ns = control.drops_until_ns.max(until);
        }
        if wanted.traces {
            control.trace_until_ns = control.trace_until_ns.max(until);
        }
        self.set_control(control)
    }

    /// Turns the wanted kinds off at once.
    pub fn disarm(&mut self, wanted: Wanted) -> Result<(), DatapathError> {
        let mut control = self.control_now()?;
        if wanted.drops {
            control.drops_until_ns = 0;
        }
        if wanted.traces {
            control.trace_until_ns = 0;
        }
        self.set_control(control)
    }

    fn control_now(&self) -> Result<MonitorControl, DatapathError> {
        self.control.get(&0, 0).map_err(map_error::<def::Monitor>)
    }

    fn set_control(&mut self, control: MonitorControl) -> Result<(), DatapathError> {
        self.control
            .set(0, control, 0)
            .map_err(map_error::<def::Monitor>)
    }

    /// The events written so far, waiting up to `timeout` for the first one.
    pub fn read(&mut self, timeout: Duration) -> Result<Vec<Event>, DatapathError> {
        let mut events = self.drain();
        if events.is_empty() {
            wait_readable(self.ring.as_fd().as_raw_fd(), timeout)?;
            events = self.drain();
        }
        Ok(events)
    }

    fn drain(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(item) = self.ring.next() {
            if let Some(event) = decode(&item) {
                events.push(event);
            }
        }
        events
    }
}

/// An event from its bytes in the ring (the layout of `#[repr(C)] Event`).
fn decode(bytes: &[u8]) -> Option<Event> {
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    let sample_len = u32_at(12)?.min(SAMPLE_BYTES as u32);
    let mut sample = [0u8; SAMPLE_BYTES];
    let n = sample_len as usize;
    sample[..n].copy_from_slice(bytes.get(16..16 + n)?);
    Some(Event {
        kind: *bytes.first()?,
        hook: *bytes.get(1)?,
        reason: u16::from_ne_bytes(bytes.get(2..4)?.try_into().ok()?),
        ifindex: u32_at(4)?,
        len: u32_at(8)?,
        sample_len,
        sample,
    })
}

fn wait_readable(fd: i32, timeout: Duration) -> Result<(), DatapathError> {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd, for the duration of the call.
    let ready = unsafe { libc::poll(&mut poll, 1, ms) };
    if ready < 0 {
        let error = std::io::Error::last_os_error();
        // A signal (Ctrl-C) interrupts the wait: the caller's loop decides what next.
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(DatapathError::Poll(error));
        }
    }
    Ok(())
}

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_decodes_from_its_c_layout() {
        assert_eq!(size_of::<Event>(), 16 + SAMPLE_BYTES);
        let mut bytes = vec![1u8, 4];
        bytes.extend(29u16.to_ne_bytes());
        bytes.extend(7u32.to_ne_bytes());
        bytes.extend(98u32.to_ne_bytes());
        bytes.extend(3u32.to_ne_bytes());
        bytes.extend([0xaa, 0xbb, 0xcc]);
        bytes.resize(16 + SAMPLE_BYTES, 0xff);
        let event = decode(&bytes).unwrap();
        assert_eq!((event.kind, event.hook, event.reason), (1, 4, 29));
        assert_eq!((event.ifindex, event.len, event.sample_len), (7, 98, 3));
        assert_eq!(&event.sample[..4], &[0xaa, 0xbb, 0xcc, 0]);
        // Cut short: refused, not misread.
        assert!(decode(&bytes[..10]).is_none());
    }
}
