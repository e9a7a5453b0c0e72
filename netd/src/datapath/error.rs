use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error(transparent)]
    Bpffs(#[from] crate::bpffs::BpffsError),
    #[error(transparent)]
    Netns(#[from] crate::netns::NetnsError),
    #[error("loading the eBPF object failed: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error(
        "this kernel lacks {} (Linux 5.10 or later has them): netd cannot run here",
        .0.join(", ")
    )]
    KernelTooOld(Vec<&'static str>),
    #[error("program {0} is missing from the eBPF object")]
    MissingProgram(&'static str),
    #[error("map {0} is missing from the eBPF object")]
    MissingMap(&'static str),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("writing map {name} failed: {message}")]
    Write { name: &'static str, message: String },
    #[error(
        "pinned map {path} has an incompatible layout ({found}; this netd expects {expected}); \
         give the capacity it was made with, remove the pin directory (traffic through it \
         stops), or run the netd version that made it"
    )]
    IncompatiblePin {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("no pinned maps in {0} (is netd set up on this host? see --pin-dir)")]
    NoPins(PathBuf),
    #[error(
        "the datapath pinned in {0} has no event ring (made by an older netd; restart the \
         daemon with this version)"
    )]
    NoEvents(PathBuf),
    #[error("{name} is not dumped: {why}")]
    NotDumpable {
        name: &'static str,
        why: &'static str,
    },
    #[error("waiting for events: {0}")]
    Poll(std::io::Error),
    #[error("unknown map {0:?}; `netd maps ls` lists them")]
    UnknownMap(String),
    #[error("interface {0:?} not found")]
    NoSuchInterface(String),
    #[error("link pin {path}: {source}")]
    LinkPin {
        path: PathBuf,
        source: std::io::Error,
    },
}
