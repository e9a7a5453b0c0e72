//! Keeping this host's keys where they belong.
//!
//! - What it wrote in the shared layout (every netd before the per-host one did, and this one
//!   does while a host of that version is alive) moves under its own prefix as soon as no live
//!   host reads only the shared layout: then the store's access control can confine it. Each
//!   key is copied first and the original deleted after, only if unchanged: a reader sees the
//!   record under one key or both (and takes the earlier), never under none, so nothing
//!   leaves the maps; a daemon stopped halfway finishes at its next start.
//! - Its claims of networks that are gone, or were made again since, hold nothing and go: a
//!   `network rm` on another host cannot remove them when the store confines that host.

use std::time::Duration;

use netd_store::{Backend, KeyValue, keys};

use crate::{
    control::Control,
    service::{Service, ServiceError},
};

/// How often this host's keys are looked at (when the store changed since): each look asks
/// the reconciler to go through every endpoint and claim it knows.
const EVERY: Duration = Duration::from_secs(5);

pub async fn run(service: Service, control: Control) -> anyhow::Result<()> {
    let mut interval = tokio::time::interval(EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut looked_at = None;
    loop {
        interval.tick().await;
        let summary = control.summary();
        if !summary.synced || looked_at == Some(summary.revision) {
            continue;
        }
        match tidy(&service, &control).await {
            Ok(()) => looked_at = Some(summary.revision),
            // The store is down, say: looked at again at the next tick.
            Err(error) => tracing::warn!(%error, "cannot tidy this host's keys in the store"),
        }
    }
}

async fn tidy(service: &Service, control: &Control) -> Result<(), ServiceError> {
    let own = control.own_keys().await?;
    if !own.leftover_claims.is_empty() {
        for chunk in own.leftover_claims.chunks(64) {
            service.store.delete_all(chunk).await?;
        }
        tracing::info!(
            claims = own.leftover_claims.len(),
            "removed this host's address claims of networks that are gone"
        );
    }
    if service.layout() == keys::Layout::PerHost && !own.shared.is_empty() {
        let mut moved = 0;
        for key in &own.shared {
            if let Some(kv) = service.store.get(key).await? {
                moved += usize::from(move_key(service, kv).await?);
            }
        }
        tracing::info!(
            keys = moved,
            "moved this host's endpoints and claims under its own prefix in the store"
        );
    }
    Ok(())
}

/// Moves one key of the shared layout to where the per-host layout keeps it; returns whether
/// it went.
async fn move_key(service: &Service, kv: KeyValue) -> Result<bool, ServiceError> {
    let me = service.host.name.as_str();
    let to = match keys::parse(&kv.key) {
        Some(keys::Key::Endpoint {
            host: None,
            network,
            id,
        }) => keys::host_endpoint(me, network, id),
        Some(keys::Key::Claim {
            host: None,
            network,
            ip,
        }) => match ip.parse() {
            Ok(ip) => keys::host_claim(me, network, ip),
            Err(_) => return Ok(false),
        },
        _ => return Ok(false),
    };
    // Written whether or not a move cut short left a copy: only this host writes there, and
    // the original is what the record says now.
    service.store.put(&to, &kv.value).await?;
    // Only if unchanged since it was read: a change made meanwhile is moved at the next look.
    let deleted = service
        .store
        .delete_with_claim(&[], &kv.key, &kv.value)
        .await?;
    Ok(deleted == 1)
}
