//! List, then watch from the next revision; on any watch error, list again. The first apply
//! happens only after a full listing, so nothing is deleted on a partial picture.

use std::{sync::Arc, time::Duration};

use netd_store::keys;
use tokio::sync::oneshot;

use super::Shared;
use crate::reconcile::View;

const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A full re-list this often, in case a watch silently stalls.
const RESYNC_EVERY: Duration = Duration::from_secs(60);

/// Starts once the host is registered, so that the first view has it (waiting at most a lease
/// TTL: a host whose registration keeps failing still gets the others' state).
pub async fn run(shared: Arc<Shared>, registered: oneshot::Receiver<()>) {
    let _ = tokio::time::timeout(shared.options.lease_ttl, registered).await;
    let mut backoff = Duration::from_millis(200);
    loop {
        match list_and_watch(&shared).await {
            Ok(()) => backoff = Duration::from_millis(200),
            Err(error) => {
                shared.store_failed(&error);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One list + watch cycle; returns when the watch ends (error) or the resync period is over.
async fn list_and_watch(shared: &Shared) -> anyhow::Result<()> {
    let listing = shared.store.list(keys::ROOT).await?;
    let revision = listing.revision;
    *shared.view() = View::from_listing(listing);
    shared.store_ok();
    if let Err(error) = shared.reconcile() {
        tracing::error!(%error, "applying the desired state failed");
    }
    {
        let mut status = shared.status();
        status.last_sync_revision = revision;
        status.synced_once = true;
    }
    let mut watch = shared.store.watch(keys::ROOT, revision + 1).await?;
    let deadline = tokio::time::Instant::now() + RESYNC_EVERY;
    loop {
        let events = tokio::select! {
            events = watch.next() => events?,
            () = tokio::time::sleep_until(deadline) => return Ok(()),
        };
        let revision = {
            let mut view = shared.view();
            view.apply(&events);
            view.revision
        };
        if let Err(error) = shared.reconcile() {
            tracing::error!(%error, "applying the desired state failed");
        }
        shared.store_ok();
        shared.status().last_sync_revision = revision;
    }
}
