//! Refuses to reuse a pinned map whose layout differs from the one this build expects.
//!
//! aya reuses whatever is pinned under a map's name without looking at it; a map pinned by an
//! older netd with another value size would then be read and written with the wrong layout.

use std::path::Path;

use aya::maps::{MapData, MapType};
use netd_common::maps::{LAYOUTS, MapLayout, capacity, map_type, names};

use super::DatapathError;

fn aya_map_type(kind: u32) -> Option<MapType> {
    match kind {
        map_type::HASH => Some(MapType::Hash),
        map_type::ARRAY => Some(MapType::Array),
        map_type::PERCPU_ARRAY => Some(MapType::PerCpuArray),
        map_type::LRU_HASH => Some(MapType::LruHash),
        map_type::LRU_PERCPU_HASH => Some(MapType::LruPerCpuHash),
        map_type::RINGBUF => Some(MapType::RingBuf),
        _ => None,
    }
}

fn describe(kind: impl std::fmt::Debug, key: u32, value: u32, max: u32) -> String {
    format!("{kind:?}, key {key} B, value {value} B, {max} entries")
}

/// What the kernel says about a pinned map.
fn pin_info(path: &Path, layout: &MapLayout) -> Result<aya::maps::MapInfo, DatapathError> {
    let map_error = |source| DatapathError::Map {
        name: layout.name,
        source,
    };
    MapData::from_pin(path)
        .map_err(map_error)?
        .info()
        .map_err(map_error)
}

/// Checks one pinned map against its expected layout: type, key and value size, and the
/// capacity when `max_entries` is given (a reader such as `netd maps` takes any capacity).
/// Returns the pin's capacity.
pub fn check_pin(
    path: &Path,
    layout: &MapLayout,
    max_entries: Option<u32>,
) -> Result<u32, DatapathError> {
    let info = pin_info(path, layout)?;
    let found_type = info.map_type().ok();
    let expected_type = aya_map_type(layout.map_type);
    let matches = found_type.is_some()
        && found_type == expected_type
        && info.key_size() == layout.key_size
        && info.value_size() == layout.value_size
        && max_entries.is_none_or(|max| info.max_entries() == max);
    if matches {
        return Ok(info.max_entries());
    }
    Err(DatapathError::IncompatiblePin {
        path: path.to_path_buf(),
        found: describe(
            found_type,
            info.key_size(),
            info.value_size(),
            info.max_entries(),
        ),
        expected: describe(
            expected_type,
            layout.key_size,
            layout.value_size,
            max_entries.unwrap_or(info.max_entries()),
        ),
    })
}

/// A planned migration: the counters array grows when a release adds counters. Its pin is
/// dropped so that the loader makes a bigger one (the programs still attached keep the old
/// array until the new programs replace them, so nothing is lost but the old counts). Returns
/// whether it did.
pub fn renew_counters(dir: &Path) -> Result<bool, DatapathError> {
    let Some(layout) = LAYOUTS.iter().find(|l| l.name == names::STATS) else {
        return Ok(false);
    };
    let path = dir.join(layout.name);
    if !path.exists() {
        return Ok(false);
    }
    let info = pin_info(&path, layout)?;
    let same_shape = info.key_size() == layout.key_size && info.value_size() == layout.value_size;
    if !same_shape || info.max_entries() == layout.max_entries {
        return Ok(false);
    }
    std::fs::remove_file(&path).map_err(|source| DatapathError::LinkPin {
        path: path.clone(),
        source,
    })?;
    tracing::info!(
        old = info.max_entries(),
        new = layout.max_entries,
        "counters array resized for this release; counting starts again"
    );
    Ok(true)
}

/// Checks every map already pinned in `dir` against the layout and the capacity this daemon
/// asks for; maps not pinned yet are fine (they get created).
pub fn check_pins(dir: &Path, capacities: &Capacities) -> Result<(), DatapathError> {
    for layout in &LAYOUTS {
        let path = dir.join(layout.name);
        if path.exists() {
            check_pin(&path, layout, Some(capacities.of(layout)))?;
        }
    }
    Ok(())
}

/// How many entries the maps whose size depends on the cluster hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacities {
    /// NETD_ENDPOINTS: endpoints on this host.
    pub local_endpoints: u32,
    /// NETD_FDB and NETD_NEIGH: endpoints, local and remote, of the networks this host has
    /// endpoints in.
    pub endpoints: u32,
    /// NETD_VTEPS: (host, network) pairs that may send to this host.
    pub vteps: u32,
}

impl Default for Capacities {
    fn default() -> Self {
        Self {
            local_endpoints: capacity::ENDPOINTS,
            endpoints: capacity::FDB,
            vteps: capacity::VTEPS,
        }
    }
}

impl Capacities {
    /// The capacity of a map: configured for the three above, fixed for the others.
    pub fn of(&self, layout: &MapLayout) -> u32 {
        match layout.name {
            names::ENDPOINTS | names::TRAFFIC => self.local_endpoints,
            names::FDB | names::NEIGH => self.endpoints,
            names::VTEPS => self.vteps,
            _ => layout.max_entries,
        }
    }
}
