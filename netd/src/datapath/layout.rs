//! Refuses to reuse a pinned map whose layout differs from the one this build expects.
//!
//! aya reuses whatever is pinned under a map's name without looking at it; a map pinned by an
//! older netd with another value size would then be read and written with the wrong layout.

use std::path::Path;

use aya::maps::{MapData, MapType};
use netd_common::maps::{LAYOUTS, MapLayout, map_type};

use super::DatapathError;

fn aya_map_type(kind: u32) -> Option<MapType> {
    match kind {
        map_type::HASH => Some(MapType::Hash),
        map_type::ARRAY => Some(MapType::Array),
        map_type::PERCPU_ARRAY => Some(MapType::PerCpuArray),
        map_type::LRU_HASH => Some(MapType::LruHash),
        _ => None,
    }
}

fn describe(kind: impl std::fmt::Debug, key: u32, value: u32, max: u32) -> String {
    format!("{kind:?}, key {key} B, value {value} B, {max} entries")
}

/// Checks one pinned map against its expected layout.
pub fn check_pin(path: &Path, layout: &MapLayout) -> Result<(), DatapathError> {
    let map = MapData::from_pin(path).map_err(|source| DatapathError::Map {
        name: layout.name,
        source,
    })?;
    let info = map.info().map_err(|source| DatapathError::Map {
        name: layout.name,
        source,
    })?;
    let found_type = info.map_type().ok();
    let expected_type = aya_map_type(layout.map_type);
    let matches = found_type.is_some()
        && found_type == expected_type
        && info.key_size() == layout.key_size
        && info.value_size() == layout.value_size
        && info.max_entries() == layout.max_entries;
    if matches {
        return Ok(());
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
            layout.max_entries,
        ),
    })
}

/// Checks every map already pinned in `dir`; maps not pinned yet are fine (they get created).
pub fn check_pins(dir: &Path) -> Result<(), DatapathError> {
    for layout in &LAYOUTS {
        let path = dir.join(layout.name);
        if path.exists() {
            check_pin(&path, layout)?;
        }
    }
    Ok(())
}
