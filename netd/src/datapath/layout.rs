//! Refuses to reuse a pinned map whose layout differs from the one this build expects, and sizes
//! the maps the daemon's flags size.
//!
//! aya reuses whatever is pinned under a map's name without looking at it; a map pinned by an
//! older netd with another value size would then be read and written with the wrong layout.
//! What each map must look like, and what a restart does with its pin, is its line in
//! `netd_common::maps::for_each_map!`.

use std::path::Path;

use aya::maps::{MapData, MapType};
use netd_common::maps::{Capacity, CapacityFlag, LAYOUTS, MapId, MapKind, MapLayout, Reuse};

use super::DatapathError;

fn aya_map_type(kind: MapKind) -> MapType {
    match kind {
        MapKind::Hash => MapType::Hash,
        MapKind::Array => MapType::Array,
        MapKind::PerCpuArray => MapType::PerCpuArray,
        MapKind::LruHash => MapType::LruHash,
        MapKind::LruPerCpuHash => MapType::LruPerCpuHash,
        MapKind::RingBuf => MapType::RingBuf,
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
    let expected_type = aya_map_type(layout.kind);
    let matches = found_type == Some(expected_type)
        && info.key_size() == layout.key_size
        && info.value_size() == layout.value_size
        && max_entries.is_none_or(|max| info.max_entries() == max);
    if matches {
        return Ok(info.max_entries());
    }
    let mut expected = describe(
        Some(expected_type),
        layout.key_size,
        layout.value_size,
        max_entries.unwrap_or(info.max_entries()),
    );
    if let (Capacity::Flag(flag), Some(_)) = (layout.capacity, max_entries) {
        // The likeliest mismatch: a daemon started with another value of the flag.
        expected.push_str(&format!(" (set by {})", flag.daemon_flag()));
    }
    Err(DatapathError::IncompatiblePin {
        path: path.to_path_buf(),
        found: describe(
            found_type,
            info.key_size(),
            info.value_size(),
            info.max_entries(),
        ),
        expected,
    })
}

/// A planned migration, for the maps whose pin is renewed when this build sizes them otherwise
/// ([`Reuse::RenewOnResize`]: the counters, when a release adds some). Their pin is dropped so
/// that the loader makes a map of the new size (the programs still attached keep the old one
/// until the new programs replace them, so nothing is lost but the old counts). Returns the
/// maps renewed.
pub fn renew_resized(dir: &Path, capacities: &Capacities) -> Result<Vec<MapId>, DatapathError> {
    let mut renewed = Vec::new();
    for layout in LAYOUTS.iter().filter(|l| l.reuse == Reuse::RenewOnResize) {
        let path = dir.join(layout.name);
        if !path.exists() {
            continue;
        }
        let info = pin_info(&path, layout)?;
        let wanted = capacities.of(layout);
        let same_shape =
            info.key_size() == layout.key_size && info.value_size() == layout.value_size;
        if !same_shape || info.max_entries() == wanted {
            continue;
        }
        std::fs::remove_file(&path).map_err(|source| DatapathError::LinkPin {
            path: path.clone(),
            source,
        })?;
        tracing::info!(
            map = layout.name,
            old = info.max_entries(),
            new = wanted,
            "map resized for this release; its pin is renewed and its entries start again"
        );
        renewed.push(layout.id);
    }
    Ok(renewed)
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

/// How many entries the maps sized by the daemon's flags hold ([`CapacityFlag`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacities {
    /// `--max-local-endpoints`: endpoints on this host.
    pub local_endpoints: u32,
    /// `--max-endpoints`: endpoints, local and remote, of the networks this host has endpoints
    /// in.
    pub endpoints: u32,
    /// `--max-vteps`: (host, network) pairs that may send to this host.
    pub vteps: u32,
}

impl Default for Capacities {
    fn default() -> Self {
        Self {
            local_endpoints: CapacityFlag::LocalEndpoints.default_entries(),
            endpoints: CapacityFlag::Endpoints.default_entries(),
            vteps: CapacityFlag::Vteps.default_entries(),
        }
    }
}

impl Capacities {
    /// The capacity of a map: its flag's value, or the fixed one.
    pub fn of(&self, layout: &MapLayout) -> u32 {
        match layout.capacity {
            Capacity::Fixed(entries) => entries,
            Capacity::Flag(flag) => self.flag(flag),
        }
    }

    /// The capacity of a map, by its id.
    pub fn of_map(&self, id: MapId) -> u32 {
        self.of(&id.layout())
    }

    /// What a flag says.
    pub fn flag(&self, flag: CapacityFlag) -> u32 {
        match flag {
            CapacityFlag::LocalEndpoints => self.local_endpoints,
            CapacityFlag::Endpoints => self.endpoints,
            CapacityFlag::Vteps => self.vteps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_size_their_maps_and_the_rest_stay_fixed() {
        let capacities = Capacities {
            local_endpoints: 10,
            endpoints: 20,
            vteps: 30,
        };
        assert_eq!(capacities.of_map(MapId::Endpoints), 10);
        assert_eq!(capacities.of_map(MapId::Traffic), 10);
        assert_eq!(capacities.of_map(MapId::Fdb), 20);
        assert_eq!(capacities.of_map(MapId::Neigh), 20);
        assert_eq!(capacities.of_map(MapId::Vteps), 30);
        assert_eq!(capacities.of_map(MapId::Parents), 256);
        assert_eq!(
            capacities.of_map(MapId::Stats),
            netd_common::stats::COUNT as u32
        );
        // The defaults are the object file's.
        for layout in &LAYOUTS {
            assert_eq!(Capacities::default().of(layout), layout.default_entries());
        }
    }
}
