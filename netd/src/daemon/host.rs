//! The host's registration: `/netd/v1/hosts/<name>` under a lease this thread keeps alive.
//! When the daemon and its host die, the lease expires and every other host drops this host's
//! endpoints; a daemon back after its lease ended registers again under a new one.
//!
//! Liveness never waits behind other work: it runs on its own thread, with its own runtime and
//! its own store connection, so neither a busy reconciler nor a watch digesting a bulk write
//! can delay a keep-alive.
//!
//! A host name is taken, never overwritten: a record naming another VTEP under a live lease is
//! another machine with the same name (a cloned VM), and this daemon refuses it. So is a VTEP
//! address another live host's record names: every host refuses the later of two such records.
//!
//! A store this daemon cannot use before it ever registered (it refused this client at the TLS
//! level, or its certificate is not trusted) ends the daemon at start, in one line: retrying
//! cannot fix the files it was given. Later, such a failure is a failing lease, as a refusal.
//!
//! The lease is what the store granted, which may be longer than `--lease-ttl` (Consul's and
//! etcd's minimum TTLs): `netd status` shows the granted one. A store that refuses a request
//! (`StoreError::Refused`) is not down: the lease link is then `failing`, with what was refused.

use std::{net::Ipv4Addr, sync::Arc, time::Duration};

use netd_store::{
    Backend, Expect, Lease, Store, StoreConfig, StoreError, keys,
    schema::{self, HostRecord},
};
use tokio::sync::watch;

use netd_store::backoff::Backoff;

use crate::{control::Identity, health::Health};

/// Where the host's registration is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Registration {
    /// Not registered yet (the store may be unreachable).
    Pending,
    Registered,
    /// Before this daemon ever registered, the name turned out to be another live host's: it
    /// must not run under it.
    Refused(String),
}

#[derive(Debug, thiserror::Error)]
enum RegisterError {
    #[error(
        "host name {name:?} is already registered by VTEP {vtep}, another machine's (a cloned \
         VM?): give this host its own --hostname{hint}"
    )]
    Conflict {
        name: String,
        vtep: Ipv4Addr,
        hint: String,
    },
    #[error(
        "VTEP {vtep} (--advertise) is already host {holder:?}'s: every host needs its own address \
         (if that was this host under another --hostname, its record expires within {expires} s)"
    )]
    VtepTaken {
        vtep: Ipv4Addr,
        holder: String,
        expires: u64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Starts the liveness thread; `registration` follows it (a store that cannot be reached
/// leaves it pending: the thread keeps trying, the datapath keeps forwarding).
pub fn start(
    store: StoreConfig,
    identity: Identity,
    ttl: Duration,
    health: Arc<Health>,
    registration: watch::Sender<Registration>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("netd-liveness".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::error!(%error, "cannot start the liveness runtime");
                    return;
                }
            };
            runtime.block_on(run(store, identity, ttl, health, registration));
        })
}

async fn run(
    config: StoreConfig,
    identity: Identity,
    ttl: Duration,
    health: Arc<Health>,
    registration: watch::Sender<Registration>,
) {
    let store = match super::connect(&config).await {
        Ok(store) => store,
        Err(error) => {
            health.lease_failed(&error.to_string(), false);
            refuse_if_pending(&registration, super::naming_the_store(config.url(), &error));
            return;
        }
    };
    // A failed registration or renewal is retried soon: the host's records are at stake.
    let mut retry = Backoff::new(
        Duration::from_millis(200),
        (ttl / 6).clamp(Duration::from_millis(200), Duration::from_secs(1)),
    );
    // A name another host holds is free at the latest when that host's lease ends.
    let mut conflict_retry = Backoff::new(ttl / 3, ttl);
    let mut failures = Failures::default();
    loop {
        let lease = match register(&store, &identity, ttl).await {
            Ok(lease) => lease,
            Err(RegisterError::Store(error @ StoreError::Tls(_)))
                if *registration.borrow() == Registration::Pending =>
            {
                // The daemon ends with this line: no "retrying" in the log before it.
                health.lease_failed(&error.to_string(), false);
                refuse_if_pending(&registration, super::naming_the_store(config.url(), &error));
                retry.wait().await;
                continue;
            }
            Err(error) => {
                let conflict = matches!(
                    error,
                    RegisterError::Conflict { .. } | RegisterError::VtepTaken { .. }
                );
                failures.report(
                    &health,
                    "cannot register this host",
                    &error.to_string(),
                    unreachable(&error),
                );
                if conflict {
                    // After a lease lost, the name (or address) stays this daemon's to wait
                    // for; before it ever registered, it is someone else's.
                    refuse_if_pending(&registration, error.to_string());
                    conflict_retry.wait().await;
                } else {
                    retry.wait().await;
                }
                continue;
            }
        };
        failures.clear();
        retry.reset();
        conflict_retry.reset();
        health.lease_registered(lease.id.as_str(), lease.ttl);
        tracing::info!(lease = %lease.id, ttl = ?lease.ttl, "host registered");
        registration.send_replace(Registration::Registered);
        keep_alive(&store, &lease, ttl, &mut retry, &mut failures, &health).await;
        health.lease_lost();
        tracing::warn!(
            "host lease expired (the store was out of reach too long); registering again"
        );
    }
}

/// Before this daemon ever registered: it must not run, for `why`.
fn refuse_if_pending(registration: &watch::Sender<Registration>, why: String) {
    registration.send_if_modified(|r| {
        let refused = *r == Registration::Pending;
        if refused {
            *r = Registration::Refused(why);
        }
        refused
    });
}

/// Whether a registration failed because the store could not be reached (rather than because
/// it refused a request, or the name is taken).
fn unreachable(error: &RegisterError) -> bool {
    matches!(error, RegisterError::Store(StoreError::Unavailable(_)))
}

/// What the log has been told of the failures in a row (to register, or to renew the lease),
/// so that a failure retried every second is logged once, and again when it changes.
#[derive(Default)]
struct Failures {
    last: Option<String>,
}

impl Failures {
    /// `what` failed with `error`: the lease link says so, and the log once per distinct error.
    fn report(&mut self, health: &Health, what: &str, error: &str, unreachable: bool) {
        health.lease_failed(error, unreachable);
        if self.last.as_deref() != Some(error) {
            if unreachable {
                tracing::warn!(%error, "{what}; retrying");
            } else {
                tracing::error!(%error, "{what}; retrying");
            }
            self.last = Some(error.to_string());
        }
    }

    /// After a success; returns whether failures had been reported.
    fn clear(&mut self) -> bool {
        self.last.take().is_some()
    }
}

/// Renews `lease` every third of its TTL (the shorter of the one asked for and the one granted;
/// sooner after a failure) until it is gone.
async fn keep_alive(
    store: &Store,
    lease: &Lease,
    ttl: Duration,
    retry: &mut Backoff,
    failures: &mut Failures,
    health: &Health,
) {
    let every = lease.ttl.min(ttl) / 3;
    let mut wait = every;
    loop {
        tokio::time::sleep(wait).await;
        match store.keep_alive(&lease.id).await {
            Ok(()) => {
                health.lease_renewed();
                if failures.clear() {
                    tracing::info!("host lease renewed again");
                }
                retry.reset();
                wait = every;
            }
            Err(StoreError::LeaseLost(_)) => return,
            Err(error) => {
                let unreachable = matches!(error, StoreError::Unavailable(_));
                failures.report(
                    health,
                    "cannot renew the host lease",
                    &error.to_string(),
                    unreachable,
                );
                wait = retry.next_delay();
            }
        }
    }
}

/// Refuses a VTEP another live host's record names (records live as long as their host's
/// lease). The other hosts would refuse this host's record anyway (the earliest registered
/// holds an address): this says so here, in one line, instead of leaving the host unreachable.
async fn refuse_a_taken_vtep(
    store: &Store,
    identity: &Identity,
    ttl: Duration,
) -> Result<(), RegisterError> {
    for kv in store.list(keys::HOSTS).await?.kvs {
        let Some(keys::Key::Host(name)) = keys::parse(&kv.key) else {
            continue;
        };
        if name == &*identity.host {
            continue;
        }
        if let Ok(other) = schema::decode::<HostRecord>(&kv.value)
            && other.vtep_ip == identity.record.vtep_ip
        {
            return Err(RegisterError::VtepTaken {
                vtep: other.vtep_ip,
                holder: name.to_string(),
                expires: ttl.as_secs(),
            });
        }
    }
    Ok(())
}

/// Grants a lease and writes the host record under it: created if absent, taken over if it is
/// this host's (same VTEP: this daemon before a restart, or before its lease ended), refused if
/// another VTEP has it.
async fn register(
    store: &Store,
    identity: &Identity,
    ttl: Duration,
) -> Result<Lease, RegisterError> {
    let key = keys::host(&identity.host);
    let value = schema::encode(&identity.record);
    let lease = store.grant_lease(ttl).await?;
    let result = async {
        loop {
            let expect = match store.get(&key).await? {
                None => Expect::Absent,
                Some(kv) => match schema::decode::<HostRecord>(&kv.value) {
                    Ok(other) if other.vtep_ip != identity.record.vtep_ip => {
                        return Err(RegisterError::Conflict {
                            name: identity.host.to_string(),
                            vtep: other.vtep_ip,
                            hint: format!(
                                " (if that was this host before its --advertise changed, the \
                                 record expires within {} s)",
                                lease.ttl.as_secs()
                            ),
                        });
                    }
                    // This host's own record, or a value nobody can use: take it over.
                    _ => Expect::ModRevision(kv.mod_revision),
                },
            };
            // After the name: a cloned VM is told about its name, the more likely mistake.
            refuse_a_taken_vtep(store, identity, lease.ttl).await?;
            if store.put_if(&key, &value, Some(&lease.id), expect).await? {
                return Ok(());
            }
            // Written by someone else between the read and the write: look again.
        }
    }
    .await;
    match result {
        Ok(()) => Ok(lease),
        Err(e) => {
            let _ = store.revoke(&lease.id).await;
            Err(e)
        }
    }
}
