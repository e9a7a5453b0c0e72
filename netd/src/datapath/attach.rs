//! Hooking the programs to interfaces.
//!
//! Linux ≥ 6.6: TCX links. With a pin directory each link is pinned as
//! `<pin-dir>/links/<ifname>@<hook>`, so the program stays attached when netd exits or is
//! killed, and a restarted netd swaps its freshly loaded program in atomically
//! (`BPF_LINK_UPDATE`): no packet sees an interface without a program.
//! Older kernels: clsact qdisc + direct-action filter through netlink, which the kernel keeps
//! until it is removed. netd's filter always sits at [`NETLINK_PRIORITY`] / [`NETLINK_HANDLE`],
//! so a restarted netd replaces the program *in* that filter (one `RTM_NEWTFILTER` without
//! `NLM_F_CREATE`): as with TCX, no packet sees the interface without a program.
//!
//! Which of the two a kernel has is found by trying ([`AttachMethod::Auto`]): the first TCX
//! attach that the kernel refuses as unknown (`EINVAL`, `EOPNOTSUPP`) makes netlink the method
//! from then on. `netd status` shows the choice.

use std::{fs, io, path::PathBuf};

use aya::programs::{
    LinkOrder, SchedClassifier, TcAttachType,
    links::{FdLink, PinnedLink},
    tc::{self, SchedClassifierLink, TcAttachOptions},
};
use netd_common::maps::programs;

use super::{Datapath, DatapathError};

/// Which program, hence which kind of interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// TC ingress of a container's host-side veth.
    Endpoint,
    /// TC ingress of the underlay uplink.
    Uplink,
    /// TC egress of the underlay uplink (VXLAN from the VTEP that netd did not encapsulate).
    UplinkEgress,
    /// TC ingress of a macvlan parent (frames from the LAN).
    Parent,
    /// TC egress of a macvlan parent (the host's frames, for host access).
    ParentEgress,
    /// TC ingress of the flow-based vxlan device kept for GRO (what its kernel decap delivers).
    Tunnel,
}

impl Hook {
    pub const fn program_name(self) -> &'static str {
        match self {
            Self::Endpoint => programs::FROM_ENDPOINT,
            Self::Uplink => programs::FROM_UPLINK,
            Self::UplinkEgress => programs::TO_UPLINK,
            Self::Parent => programs::FROM_PARENT,
            Self::ParentEgress => programs::TO_PARENT,
            Self::Tunnel => programs::FROM_TUNNEL,
        }
    }

    pub const ALL: [Self; 6] = [
        Self::Endpoint,
        Self::Uplink,
        Self::UplinkEgress,
        Self::Parent,
        Self::ParentEgress,
        Self::Tunnel,
    ];

    const fn attach_type(self) -> TcAttachType {
        match self {
            Self::ParentEgress | Self::UplinkEgress => TcAttachType::Egress,
            _ => TcAttachType::Ingress,
        }
    }

    /// How the hook's link pins are named: `<ifname>@<label>`.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Endpoint => "endpoint",
            Self::Uplink => "uplink",
            Self::UplinkEgress => "uplink-egress",
            Self::Parent => "parent",
            Self::ParentEgress => "parent-egress",
            Self::Tunnel => "tunnel",
        }
    }
}

/// A link held by an unpinned datapath; dropping it detaches the program.
pub(super) struct OwnedLink {
    hook: Hook,
    ifname: String,
    _link: SchedClassifierLink,
}

/// How programs are hooked to TC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttachMethod {
    /// TCX where the kernel has it (found by trying), netlink otherwise.
    #[default]
    Auto,
    /// TCX links (Linux >= 6.6).
    Tcx,
    /// clsact + cls_bpf filters through netlink.
    Netlink,
}

impl AttachMethod {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Tcx => "tcx",
            Self::Netlink => "netlink",
        }
    }
}

/// netd's cls_bpf filter on every hook: one fixed place, so that a restart replaces the program
/// in it instead of adding a second filter or deleting the first.
pub const NETLINK_PRIORITY: u16 = 0xc000;
pub const NETLINK_HANDLE: tc::TcHandle = tc::TcHandle::new(0, 0x4e44);

/// Whether a failed TCX attach means the kernel has no TCX (rather than a problem with the
/// interface or the program).
fn tcx_unsupported(error: &aya::programs::ProgramError) -> bool {
    match error {
        aya::programs::ProgramError::SyscallError(e) => {
            // aya names the TCX link create "bpf_mprog_attach" (BPF_LINK_CREATE with a TCX
            // attach type); 5.10 and 6.1 answer it with EINVAL (docs/kernels.md).
            matches!(e.call, "bpf_mprog_attach" | "bpf_link_create")
                && matches!(
                    e.io_error.raw_os_error(),
                    Some(libc::EINVAL | libc::EOPNOTSUPP)
                )
        }
        _ => false,
    }
}

fn program_error(hook: Hook) -> impl FnOnce(aya::programs::ProgramError) -> DatapathError {
    move |source| DatapathError::Program {
        name: hook.program_name(),
        source,
    }
}

impl Datapath {
    fn link_pin_path(&self, hook: Hook, ifname: &str) -> Option<PathBuf> {
        let dir = self.pin_dir.as_ref()?;
        Some(dir.join("links").join(format!("{ifname}@{}", hook.label())))
    }

    fn classifier_mut(&mut self, hook: Hook) -> Result<&mut SchedClassifier, DatapathError> {
        let name = hook.program_name();
        self.ebpf
            .program_mut(name)
            .ok_or(DatapathError::MissingProgram(name))?
            .try_into()
            .map_err(|source| DatapathError::Program { name, source })
    }

    /// The method in use: [`AttachMethod::Auto`] until the first attach has found it.
    pub fn attach_method(&self) -> AttachMethod {
        self.attach_method
    }

    /// Attaches `hook`'s program to TC ingress of `ifname` (in the calling thread's network
    /// namespace). Idempotent: attaching again replaces the program in place.
    pub fn attach(&mut self, hook: Hook, ifname: &str) -> Result<(), DatapathError> {
        if nix::net::if_::if_nametoindex(ifname).is_err() {
            return Err(DatapathError::NoSuchInterface(ifname.into()));
        }
        match self.attach_method {
            AttachMethod::Netlink => self.attach_netlink(hook, ifname),
            AttachMethod::Tcx => self.attach_tcx(hook, ifname),
            AttachMethod::Auto => match self.attach_tcx(hook, ifname) {
                Ok(()) => {
                    self.attach_method = AttachMethod::Tcx;
                    Ok(())
                }
                Err(DatapathError::Program { source, .. }) if tcx_unsupported(&source) => {
                    tracing::info!(
                        error = %source,
                        "the kernel has no TCX: attaching through clsact and netlink"
                    );
                    self.attach_method = AttachMethod::Netlink;
                    self.attach_netlink(hook, ifname)
                }
                Err(error) => Err(error),
            },
        }
    }

    fn attach_tcx(&mut self, hook: Hook, ifname: &str) -> Result<(), DatapathError> {
        let pin = self.link_pin_path(hook, ifname);
        if let Some(pin) = &pin
            && pin.exists()
        {
            match self.replace_pinned(hook, pin) {
                Ok(()) => return Ok(()),
                Err(error) => {
                    // A link left pinned for an interface that went away (a namespace deleted
                    // with its veth) cannot be updated: the name now belongs to a new interface.
                    // Drop the dead link and attach afresh.
                    tracing::debug!(%error, pin = %pin.display(), "stale link pin replaced");
                    fs::remove_file(pin).map_err(|source| DatapathError::LinkPin {
                        path: pin.clone(),
                        source,
                    })?;
                }
            }
        }
        if pin.is_none() {
            // An unpinned datapath replaces its own earlier link, if any.
            self.links
                .retain(|l| !(l.hook == hook && l.ifname == ifname));
        }
        let program = self.classifier_mut(hook)?;
        let id = program
            .attach_with_options(
                ifname,
                hook.attach_type(),
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            )
            .map_err(program_error(hook))?;
        let link = program.take_link(id).map_err(program_error(hook))?;
        match pin {
            Some(pin) => {
                let fd_link = FdLink::try_from(link).map_err(|e| DatapathError::LinkPin {
                    path: pin.clone(),
                    source: io::Error::other(e),
                })?;
                if let Some(dir) = pin.parent() {
                    fs::create_dir_all(dir).map_err(|source| DatapathError::LinkPin {
                        path: dir.to_path_buf(),
                        source,
                    })?;
                }
                fd_link.pin(&pin).map_err(|e| DatapathError::LinkPin {
                    path: pin.clone(),
                    source: io::Error::other(e),
                })?;
            }
            None => self.links.push(OwnedLink {
                hook,
                ifname: ifname.into(),
                _link: link,
            }),
        }
        // A filter an earlier netd attached through netlink would run the program a second
        // time: now that the link is in place, it goes.
        let _none = tc::qdisc_detach_program(ifname, hook.attach_type(), hook.program_name());
        Ok(())
    }

    /// Atomic replacement of whatever program a pinned link runs now.
    fn replace_pinned(&mut self, hook: Hook, pin: &std::path::Path) -> Result<(), DatapathError> {
        let pinned = PinnedLink::from_pin(pin).map_err(|e| DatapathError::LinkPin {
            path: pin.to_path_buf(),
            source: io::Error::other(e),
        })?;
        let link = SchedClassifierLink::try_from(FdLink::from(pinned)).map_err(|e| {
            DatapathError::LinkPin {
                path: pin.to_path_buf(),
                source: io::Error::other(e),
            }
        })?;
        let program = self.classifier_mut(hook)?;
        let id = program.attach_to_link(link).map_err(program_error(hook))?;
        // The pin keeps the link; our handle can go.
        drop(program.take_link(id).map_err(program_error(hook))?);
        Ok(())
    }

    fn attach_netlink(&mut self, hook: Hook, ifname: &str) -> Result<(), DatapathError> {
        // EEXIST when the qdisc is already there is fine.
        let _already_there = tc::qdisc_add_clsact(ifname);
        let pinned = self.pin_dir.is_some();
        if !pinned {
            // An unpinned datapath replaces its own earlier link, if any.
            self.links
                .retain(|l| !(l.hook == hook && l.ifname == ifname));
        }
        // First, the program in netd's filter, if there is one (a restart): in place.
        let existing = SchedClassifierLink::attached(
            ifname,
            hook.attach_type(),
            NETLINK_PRIORITY,
            NETLINK_HANDLE,
            None,
        )
        .map_err(|source| DatapathError::LinkPin {
            path: PathBuf::from(ifname),
            source,
        })?;
        let program = self.classifier_mut(hook)?;
        let id = match program.attach_to_link(existing) {
            Ok(id) => id,
            Err(_) => {
                // No filter there yet. One an older netd left at another priority is removed
                // first, so that the program never runs twice.
                let _none_yet =
                    tc::qdisc_detach_program(ifname, hook.attach_type(), hook.program_name());
                let program = self.classifier_mut(hook)?;
                program
                    .attach_with_options(
                        ifname,
                        hook.attach_type(),
                        TcAttachOptions::Netlink(tc::NlOptions {
                            priority: NETLINK_PRIORITY,
                            handle: NETLINK_HANDLE,
                            ..tc::NlOptions::default()
                        }),
                    )
                    .map_err(program_error(hook))?
            }
        };
        let program = self.classifier_mut(hook)?;
        let link = program.take_link(id).map_err(program_error(hook))?;
        if pinned {
            // The kernel keeps the filter (and so the program) after we exit; dropping the link
            // would remove it.
            std::mem::forget(link);
            // A TCX link an earlier netd pinned would run the program first: it goes.
            if let Some(pin) = self.link_pin_path(hook, ifname) {
                let _gone = fs::remove_file(pin);
            }
        } else {
            self.links.push(OwnedLink {
                hook,
                ifname: ifname.into(),
                _link: link,
            });
        }
        Ok(())
    }

    /// Detaches `hook`'s program from `ifname`. Detaching what is not attached is not an error.
    pub fn detach(&mut self, hook: Hook, ifname: &str) -> Result<(), DatapathError> {
        let before = self.links.len();
        self.links
            .retain(|l| !(l.hook == hook && l.ifname == ifname));
        if self.links.len() != before {
            return Ok(());
        }
        if self.attach_method == AttachMethod::Netlink {
            return match tc::qdisc_detach_program(ifname, hook.attach_type(), hook.program_name()) {
                Ok(()) => Ok(()),
                Err(tc::TcError::IoError(e)) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(DatapathError::LinkPin {
                    path: PathBuf::from(ifname),
                    source: io::Error::other(e),
                }),
            };
        }
        if let Some(pin) = self.link_pin_path(hook, ifname) {
            // The link (and the attachment) goes with its last reference: the pin.
            match fs::remove_file(&pin) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(DatapathError::LinkPin { path: pin, source }),
            }
        }
        Ok(())
    }
}
