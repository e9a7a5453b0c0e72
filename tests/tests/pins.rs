#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "integration test: a panic is a failed test"
)]
//! Pinned maps are reused across restarts only when their layout is the one this build expects.

use std::path::PathBuf;

use netd::{
    control::{kernel::conformance, snapshot::Snapshot},
    datapath::{Capacities, Datapath, DatapathError, DatapathOptions, MapState},
};
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

#[test]
fn a_restarted_datapath_keeps_its_entries() {
    if netd_tests::skip_unprivileged() {
        return;
    }
    let dir = pin_dir();
    let options = DatapathOptions {
        pin_dir: Some(dir.0.clone()),
        ..Default::default()
    };
    // One endpoint of this host behind ifindex 4242 (no such interface needed: nothing runs).
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
    if netd_tests::skip_unprivileged() {
        return;
    }
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
