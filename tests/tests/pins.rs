#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "integration test: a panic is a failed test"
)]
//! Pinned maps are reused across restarts only when their layout is the one this build expects.

use std::path::PathBuf;

use netd::{
    control::{kernel::conformance, snapshot::Snapshot},
    datapath::{Capacities, Datapath, DatapathError, DatapathOptions, MapState, inspect},
};
use netd_common::maps::{LAYOUTS, MapDef, MapId, def};
use netd_tests::records;

/// A pin directory removed on drop.
struct PinDir(PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pin_dir() -> PinDir {
    PinDir(PathBuf::from(netd::bpffs::BPFFS_ROOT).join(netd_tests::unique_name("netd-pintest-")))
}

/// One endpoint of this host behind ifindex 4242 (no such interface needed: nothing runs).
fn one_endpoint() -> Snapshot {
    let vtep = "192.168.0.1".parse().unwrap();
    let mut records = Snapshot::new("pins", records::host(vtep, "test"));
    records
        .network(&records::overlay_network("n", 300, "10.0.0.0/24"))
        .endpoint(
            "n",
            &records::endpoint(
                "e",
                "10.0.0.1".parse().unwrap(),
                [2, 0, 0, 0, 0, 1],
                "pins",
                vtep,
            ),
        )
        .interface("n", "e", "nd4242", 4242);
    records
}

#[test]
fn a_restarted_datapath_keeps_its_entries() {
    netd_tests::require_root();
    let dir = pin_dir();
    let options = DatapathOptions {
        pin_dir: Some(dir.0.clone()),
        ..Default::default()
    };
    let records = one_endpoint();
    {
        let mut first = Datapath::load(options.clone()).unwrap();
        first
            .apply(&MapState::default(), &records.plan().unwrap())
            .unwrap();
    }
    // The process (here: the value) is gone; the pins are not.
    let mut second = Datapath::load(options).unwrap();
    let state = second.read_state().unwrap();
    assert_eq!(state.endpoints.get(&4242).map(|e| e.vni), Some(300));
    assert_eq!(state.fdb.len(), 1);
    assert_eq!(state.neigh.len(), 1);
}

#[test]
fn a_pin_with_another_layout_is_a_clear_error() {
    netd_tests::require_root();
    let good = pin_dir();
    let bad = pin_dir();
    drop(
        Datapath::load(DatapathOptions {
            pin_dir: Some(good.0.clone()),
            ..Default::default()
        })
        .unwrap(),
    );
    // A map of another shape where NETD_FDB is expected (as an older netd could have left it).
    std::fs::create_dir_all(&bad.0).unwrap();
    std::fs::rename(good.0.join("NETD_NEIGH"), bad.0.join("NETD_FDB")).unwrap();
    let err = match Datapath::load(DatapathOptions {
        pin_dir: Some(bad.0.clone()),
        ..Default::default()
    }) {
        Ok(_) => panic!("an incompatible pin was reused"),
        Err(e) => e,
    };
    assert!(
        matches!(err, DatapathError::IncompatiblePin { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("NETD_FDB") && text.contains("key 8 B") && text.contains("key 12 B"),
        "{text}"
    );
}

/// The kernel's maps keep the rules the reconciler's unit tests rely on (its fake kernel is
/// held to the same check, in netd's unit tests): a full map refuses a new key as full and
/// takes new values for keys it has, deletes of a set run before its writes, deleting a missing
/// key is fine. The capacity is small so that filling the map is quick.
#[test]
fn the_maps_keep_the_rules_the_reconcilers_tests_rely_on() {
    let mut datapath = Datapath::load(DatapathOptions {
        capacities: Capacities {
            local_endpoints: 8,
            ..Capacities::default()
        },
        ..DatapathOptions::default()
    })
    .unwrap();
    conformance::check(&mut datapath).unwrap();
}

/// `netd maps ls` and `netd maps dump` read every map of the table from its pin, with nothing
/// loaded (the datapath value is gone, as after the daemon exits).
#[test]
fn every_pinned_map_is_listed_and_decoded() {
    netd_tests::require_root();
    let dir = pin_dir();
    {
        let mut datapath = Datapath::load(DatapathOptions {
            pin_dir: Some(dir.0.clone()),
            ..Default::default()
        })
        .unwrap();
        datapath
            .apply(&MapState::default(), &one_endpoint().plan().unwrap())
            .unwrap();
    }
    let listed = inspect::list(&dir.0).unwrap();
    let names: Vec<&str> = listed.iter().map(|m| m.name).collect();
    let expected: Vec<&str> = LAYOUTS.iter().map(|l| l.name).collect();
    assert_eq!(names, expected);
    let entries = |id: MapId| {
        listed
            .iter()
            .find(|m| m.name == id.name())
            .map(|m| m.entries)
    };
    assert_eq!(entries(MapId::Endpoints), Some(1));
    assert_eq!(entries(MapId::Fdb), Some(1));
    assert_eq!(entries(MapId::Neigh), Some(1));
    assert_eq!(entries(MapId::Vteps), Some(0));
    assert_eq!(entries(MapId::Stats), Some(netd_common::stats::COUNT));
    for id in MapId::ALL {
        // By the short name, as typed on the command line.
        let short = id.name().trim_start_matches("NETD_").to_lowercase();
        match (id, inspect::dump(&dir.0, &short)) {
            (MapId::Events | MapId::Monitor | MapId::EventBudget, Err(e)) => {
                assert!(
                    matches!(e, DatapathError::NotDumpable { .. }),
                    "{short}: {e}"
                );
            }
            (_, Ok(table)) => {
                for row in &table.rows {
                    for column in &table.columns {
                        assert!(row.contains_key(*column), "{short}: no {column} in {row:?}");
                    }
                }
            }
            (_, Err(e)) => panic!("{short}: {e}"),
        }
    }
    let endpoints = inspect::dump(&dir.0, "endpoints").unwrap();
    assert_eq!(endpoints.rows.len(), 1);
    assert_eq!(endpoints.rows[0]["ifindex"], 4242);
    assert_eq!(endpoints.rows[0]["ipv4"], "10.0.0.1");
    let stats = inspect::dump(&dir.0, "NETD_STATS").unwrap();
    assert_eq!(stats.rows.len(), netd_common::stats::COUNT);
    assert_eq!(stats.rows[8]["counter"], "drop-unknown-endpoint");
}

/// A map whose pin the table marks for renewal (the counters) is made again at this build's
/// size; any other map pinned at another capacity is refused (the control).
#[test]
fn only_the_counters_are_renewed_when_resized() {
    netd_tests::require_root();
    // Pins as a release with fewer counters left them: the object's maps, STATS smaller.
    let dir = pin_dir();
    let stats = <def::Stats as MapDef>::LAYOUT;
    let older = stats.default_entries() - 3;
    std::fs::create_dir_all(&dir.0).unwrap();
    let mut loader = aya::EbpfLoader::new();
    loader.map_max_entries(stats.name, older);
    for layout in &LAYOUTS {
        loader.map_pin_path(layout.name, dir.0.join(layout.name));
    }
    drop(loader.load(netd::datapath::object()).unwrap());
    let pinned = |name: &str| {
        aya::maps::MapData::from_pin(dir.0.join(name))
            .unwrap()
            .info()
            .unwrap()
            .max_entries()
    };
    assert_eq!(pinned(stats.name), older);

    let options = DatapathOptions {
        pin_dir: Some(dir.0.clone()),
        ..Default::default()
    };
    drop(Datapath::load(options.clone()).unwrap());
    assert_eq!(pinned(stats.name), stats.default_entries());

    // The control: a map sized by a daemon flag, pinned at another size, is not replaced.
    let err = match Datapath::load(DatapathOptions {
        capacities: Capacities {
            local_endpoints: 100,
            ..Default::default()
        },
        ..options
    }) {
        Ok(_) => panic!("a pin of another capacity was reused"),
        Err(e) => e,
    };
    assert!(
        matches!(err, DatapathError::IncompatiblePin { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("NETD_ENDPOINTS") && text.contains("set by --max-local-endpoints"),
        "{text}"
    );
}
