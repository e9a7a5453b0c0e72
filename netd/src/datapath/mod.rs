//! The eBPF datapath: the only module that touches aya.
//!
//! [`Datapath::load`] loads the embedded object (reusing pinned maps after checking their layout),
//! [`Datapath::attach`] hooks a program to an interface (TCX links, pinned, on Linux ≥ 6.6; clsact
//! and netlink before), and [`Datapath::apply`] makes the maps hold a planned [`MapState`].
//! [`inspect`] decodes pinned maps without loading anything, for `netd maps`.

mod attach;
mod error;
pub mod events;
mod features;
pub mod inspect;
pub mod layout;
pub mod state;

use std::path::{Path, PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray},
    programs::SchedClassifier,
};
use netd_common::maps::{DatapathConfig, LAYOUTS, MapDef, def};

pub use self::{
    attach::{AttachMethod, Hook},
    error::DatapathError,
    features::KernelFeatures,
    layout::Capacities,
    state::{ApplyStats, Change, ChangeSet, MapOutcome, MapState, WriteError},
};

/// The compiled programs, built by netd/build.rs from netd-ebpf.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netd-ebpf"));

/// The embedded object, for loading programs netd itself does not (the benchmark's null program).
pub fn object() -> &'static [u8] {
    OBJECT
}

/// What the kernel says about a loaded program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramSize {
    pub name: &'static str,
    /// BPF instructions after the kernel's rewrites (`xlated_prog_len / 8`).
    pub instructions: Option<u32>,
    pub jited_bytes: u32,
    /// Instructions the verifier processed to prove the program safe (`verified_insns`).
    pub verified_instructions: Option<u32>,
}

/// Where the datapath keeps its state.
#[derive(Clone, Debug, Default)]
pub struct DatapathOptions {
    /// Pin maps and links here (a bpffs directory, e.g. `/sys/fs/bpf/netd`). `None`: nothing is
    /// pinned and everything goes away with the [`Datapath`] (tests).
    pub pin_dir: Option<PathBuf>,
    /// Sizes of the maps that grow with the cluster.
    pub capacities: Capacities,
    /// How programs are hooked to TC.
    pub attach: AttachMethod,
}

/// A loaded datapath: both programs and all maps of one host.
pub struct Datapath {
    ebpf: Ebpf,
    pin_dir: Option<PathBuf>,
    capacities: Capacities,
    /// [`AttachMethod::Auto`] until the first attach found the kernel's.
    attach_method: AttachMethod,
    /// What the kernel's BPF took when probed at load.
    features: KernelFeatures,
    /// Links this value owns (unpinned datapaths only); dropping them detaches.
    links: Vec<attach::OwnedLink>,
}

impl Datapath {
    /// Loads the programs into the kernel. With a pin directory, maps already pinned there are
    /// reused (after a layout check) so that their entries survive a restart; new ones are pinned.
    pub fn load(options: DatapathOptions) -> Result<Self, DatapathError> {
        let mut loader = EbpfLoader::new();
        let capacities = options.capacities;
        for layout in &LAYOUTS {
            loader.map_max_entries(layout.name, capacities.of(layout));
        }
        if let Some(dir) = &options.pin_dir {
            crate::bpffs::ensure_pin_dir(dir)?;
            layout::renew_resized(dir, &capacities)?;
            layout::check_pins(dir, &capacities)?;
            for layout in &LAYOUTS {
                loader.map_pin_path(layout.name, dir.join(layout.name));
            }
        }
        let mut ebpf = loader.load(OBJECT)?;
        // The object's maps are made from the same table as LAYOUTS: one missing is a build
        // that mixed two versions of it.
        if let Some(missing) = LAYOUTS.iter().find(|l| ebpf.map(l.name).is_none()) {
            return Err(DatapathError::MissingMap(missing.name));
        }
        let features = features::probe(&mut ebpf)?;
        for name in Hook::ALL.map(Hook::program_name) {
            let program: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or(DatapathError::MissingProgram(name))?
                .try_into()
                .map_err(|source| DatapathError::Program { name, source })?;
            program
                .load()
                .map_err(|source| DatapathError::Program { name, source })?;
        }
        Ok(Self {
            ebpf,
            pin_dir: options.pin_dir,
            capacities,
            attach_method: options.attach,
            features,
            links: Vec::new(),
        })
    }

    /// The capacities the maps were made with.
    pub fn capacities(&self) -> Capacities {
        self.capacities
    }

    /// The pin directory, if this datapath is pinned.
    pub fn pin_dir(&self) -> Option<&Path> {
        self.pin_dir.as_deref()
    }

    /// A loaded program, for `BPF_PROG_TEST_RUN` and benchmarks.
    pub fn program(&self, hook: Hook) -> Result<&SchedClassifier, DatapathError> {
        let name = hook.program_name();
        self.ebpf
            .program(name)
            .ok_or(DatapathError::MissingProgram(name))?
            .try_into()
            .map_err(|source| DatapathError::Program { name, source })
    }

    /// Size and verifier cost of each loaded program, as the kernel reports them.
    pub fn program_sizes(&self) -> Result<Vec<ProgramSize>, DatapathError> {
        Hook::ALL
            .into_iter()
            .map(|hook| {
                let name = hook.program_name();
                let info = self
                    .program(hook)?
                    .info()
                    .map_err(|source| DatapathError::Program { name, source })?;
                Ok(ProgramSize {
                    name,
                    instructions: info.size_translated().map(|bytes| bytes / 8),
                    jited_bytes: info.size_jitted(),
                    verified_instructions: info.verified_instruction_count(),
                })
            })
            .collect()
    }

    /// Writes the per-host settings the programs read on every packet.
    pub fn set_config(&mut self, config: &DatapathConfig) -> Result<(), DatapathError> {
        let mut array: Array<_, <def::Config as MapDef>::Value> =
            self.typed_mut::<def::Config, _>()?;
        array.set(0, config, 0).map_err(map_error::<def::Config>)
    }

    /// What the kernel's BPF took when probed at load.
    pub fn features(&self) -> KernelFeatures {
        self.features
    }

    /// The `DatapathConfig::flags` for this kernel.
    pub fn config_flags(&self) -> u32 {
        self.features.config_flags()
    }

    /// Summed per-CPU counters by name, in counter order.
    pub fn counters(&self) -> Result<Vec<(&'static str, u64)>, DatapathError> {
        let name = <def::Stats as MapDef>::LAYOUT.name;
        let map = self.ebpf.map(name).ok_or(DatapathError::MissingMap(name))?;
        inspect::sum_counters(&PerCpuArray::try_from(map).map_err(map_error::<def::Stats>)?)
    }

    /// Map `D` of the object as aya's type `T` for it (`HashMap<_, D::Key, D::Value>`, ...).
    fn typed_mut<'a, D: MapDef, T>(&'a mut self) -> Result<T, DatapathError>
    where
        T: TryFrom<&'a mut Map, Error = MapError>,
    {
        let name = D::LAYOUT.name;
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(DatapathError::MissingMap(name))?;
        T::try_from(map).map_err(map_error::<D>)
    }

    fn hash_map<D: MapDef>(
        &mut self,
    ) -> Result<HashMap<&mut MapData, D::Key, D::Value>, DatapathError> {
        self.typed_mut::<D, _>()
    }
}

/// An error of map `D`.
fn map_error<D: MapDef>(source: MapError) -> DatapathError {
    DatapathError::Map {
        name: D::LAYOUT.name,
        source,
    }
}
