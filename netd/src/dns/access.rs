//! Whom a listener answers, judged by where the query arrived.
//!
//! - A namespace netd serves (a container's, overlay or macvlan): the namespace itself only.
//!   Its sockets are bound to `lo` (SO_BINDTODEVICE), so the kernel hands them only what the
//!   namespace sent to its own address; a query that comes in through an interface (a peer on
//!   another network with a route to 169.254.53.53 through this container, a LAN host at a
//!   macvlan container's MAC) finds no socket: ICMP port unreachable, or a TCP reset, never an
//!   answer. Nothing in user space runs for it.
//! - The host's namespace: its own processes (a source that is one of its addresses) and the
//!   containers behind its bridges (a source in the subnet of a bridge other than the uplink:
//!   Docker's `docker0` and `br-*`, whose containers Docker hands 169.254.53.53 as upstream).
//!   Anyone else (the LAN, a peer host) gets REFUSED, and nothing is forwarded for them: no
//!   open resolver. A UDP source could be forged, but the answer then goes to the forged,
//!   local address, not to the forger.

use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ipnet::Ipv4Net;

/// A source not in the list makes the list be read again, at most this often (a bridge Docker
/// has just created is then allowed at its first query).
const REREAD_AFTER: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub enum Access {
    /// A served namespace: its sockets see only itself (bound to `lo`).
    Namespace,
    Host(HostSources),
}

impl Access {
    /// Whether `source` may be answered.
    pub async fn allows(&self, source: IpAddr) -> bool {
        match self {
            Self::Namespace => true,
            Self::Host(sources) => sources.allows(source).await,
        }
    }
}

/// The host namespace's allowed sources, read from its interfaces.
#[derive(Debug)]
pub struct HostSources {
    /// The uplink, which may be a bridge: its subnet is the LAN's.
    uplink: String,
    read: Mutex<(Arc<Vec<Ipv4Net>>, Option<Instant>)>,
}

impl HostSources {
    pub fn new(uplink: String) -> Self {
        Self {
            uplink,
            read: Mutex::new((Arc::default(), None)),
        }
    }

    async fn allows(&self, source: IpAddr) -> bool {
        let IpAddr::V4(ip) = source else {
            return source.is_loopback();
        };
        if ip.is_loopback() {
            return true;
        }
        let (list, read_at) = {
            let read = self.lock();
            (read.0.clone(), read.1)
        };
        if list.iter().any(|net| net.contains(&ip)) {
            return true;
        }
        if read_at.is_some_and(|at| at.elapsed() < REREAD_AFTER) {
            return false;
        }
        let list = self.reread().await;
        list.iter().any(|net| net.contains(&ip))
    }

    async fn reread(&self) -> Arc<Vec<Ipv4Net>> {
        // Marked read before the read: concurrent misses do not all read.
        self.lock().1 = Some(Instant::now());
        let uplink = self.uplink.clone();
        let read =
            tokio::task::spawn_blocking(move || crate::netlink::bridged_sources(&uplink)).await;
        match read {
            Ok(Ok(list)) => {
                let list = Arc::new(list);
                self.lock().0 = list.clone();
                list
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "DNS: cannot read the host's addresses");
                self.lock().0.clone()
            }
            Err(error) => {
                tracing::warn!(%error, "DNS: cannot read the host's addresses");
                self.lock().0.clone()
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Arc<Vec<Ipv4Net>>, Option<Instant>)> {
        self.read
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
