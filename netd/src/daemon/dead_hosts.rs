//! `--remove-dead-hosts-after`: what `netd host rm` does, done by the daemons themselves for
//! hosts whose lease has been gone for the grace period.
//!
//! A host is counted as absent from the moment this daemon sees endpoint records naming it but
//! no host record (its lease ended). Every daemon with the setting keeps its own clock, so the
//! first one whose grace passes removes the host; the removal is made of compare-and-delete
//! writes, so two daemons doing it at once remove each record once. A host that comes back
//! within the grace period stops the clock; one back after it finds its records gone.
//!
//! Hosts known only by the address claims they handed to Docker (no endpoint record left) are
//! not seen here: `netd host rm` removes those.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use crate::{control::Control, service::Service};

/// How often the absent hosts are looked at: often enough that a removal comes at most a
/// tenth of the grace period late, never more often than once a second.
fn check_every(grace: Duration) -> Duration {
    (grace / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

pub async fn run(service: Service, control: Control, grace: Duration) -> anyhow::Result<()> {
    let mut absent_since: HashMap<String, Instant> = HashMap::new();
    let mut interval = tokio::time::interval(check_every(grace));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let summary = control.summary();
        // Before the first listing every host would look absent.
        if !summary.synced {
            continue;
        }
        absent_since.retain(|host, _| summary.absent_hosts.contains(host));
        let now = Instant::now();
        for host in summary.absent_hosts.iter() {
            let since = *absent_since.entry(host.clone()).or_insert(now);
            if now.duration_since(since) < grace {
                continue;
            }
            match service.host_rm(host).await {
                Ok(_) => {
                    absent_since.remove(host);
                }
                // Back in the meantime (refused as alive), or the store is down: looked at
                // again at the next check.
                Err(error) => tracing::warn!(host, %error, "cannot remove a dead host"),
            }
        }
    }
}
