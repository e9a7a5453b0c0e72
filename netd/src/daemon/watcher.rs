//! The store watcher: lists, then watches from the next revision, and feeds both to the
//! reconciler. On any watch error it lists again (the reconciler then does a mark-and-sweep).
//!
//! The listing covers only what the reconciler programs (networks, hosts, endpoints), in
//! pages at one revision, handed over page by page so that neither an answer nor the
//! daemon's memory grows with the whole cluster at once. The watch covers the whole prefix
//! (one watch keeps every change in revision order); the keys the reconciler ignores are
//! dropped here.

use std::{sync::Arc, time::Duration};

use netd_store::{Backend, Store, StoreError, Watch, WatchEvent, backoff::Backoff, keys};

use crate::{
    control::{Control, Feed},
    health::Health,
};

/// Retries after a failed list or watch: soon, then up to every 5 s while the store is away.
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(5);
/// A full re-list this often (with a jitter), in case a watch ever stalls without an error.
/// Rare on purpose: a thousand hosts re-listing a hundred thousand endpoints is real load.
const RELIST_EVERY: Duration = Duration::from_secs(600);
/// The prefixes the reconciler needs, in the order it best takes them (networks and hosts
/// before the endpoints that refer to them).
const LISTED: [&str; 4] = [keys::NETWORKS, keys::HOSTS, keys::ENDPOINTS, keys::IPAM];

/// Why the watcher stopped for good.
#[derive(Debug, thiserror::Error)]
#[error("the reconciler stopped")]
pub struct ReconcilerGone;

/// Runs until the reconciler goes away.
pub async fn run(
    store: Arc<Store>,
    control: Control,
    health: Arc<Health>,
) -> Result<(), ReconcilerGone> {
    let mut backoff = Backoff::new(FIRST_RETRY, MAX_RETRY);
    loop {
        match list_and_watch(&store, &control, &health).await {
            Ok(()) => backoff.reset(),
            Err(Failure::Reconciler) => return Err(ReconcilerGone),
            Err(Failure::Store(error)) => {
                // A store that refuses the listing answers: "failing", with what it refused.
                let unreachable = matches!(error, StoreError::Unavailable(_));
                health.watch_failed(&error.to_string(), unreachable);
                backoff.wait().await;
            }
        }
    }
}

enum Failure {
    Store(StoreError),
    Reconciler,
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

async fn feed(control: &Control, feed: Feed) -> Result<(), Failure> {
    control.feed(feed).await.map_err(|_| Failure::Reconciler)
}

/// One list + watch cycle; returns when the watch fails or the re-list period is over.
async fn list_and_watch(store: &Store, control: &Control, health: &Health) -> Result<(), Failure> {
    health.watch_syncing();
    let revision = list(store, control).await?;
    let mut watch = store.watch(keys::ROOT, revision + 1).await?;
    health.watch_connected();
    let jitter = Duration::from_millis(u64::from(std::process::id() % 60_000));
    let relist = tokio::time::sleep(RELIST_EVERY + jitter);
    tokio::pin!(relist);
    loop {
        let mut events = tokio::select! {
            events = watch.next() => events?,
            () = &mut relist => return Ok(()),
        };
        events.retain(relevant);
        if !events.is_empty() {
            feed(control, Feed::Events(events)).await?;
        }
    }
}

/// Lists [`LISTED`] at one revision into the reconciler; returns that revision.
async fn list(store: &Store, control: &Control) -> Result<i64, Failure> {
    let mut attempts = 0;
    loop {
        match list_once(store, control).await {
            // The revision was compacted between two pages: start over at a newer one.
            Err(Failure::Store(StoreError::Compacted(_))) if attempts < 3 => attempts += 1,
            other => return other,
        }
    }
}

async fn list_once(store: &Store, control: &Control) -> Result<i64, Failure> {
    let started = std::time::Instant::now();
    let mut keys = 0;
    let mut revision = None;
    for prefix in LISTED {
        let mut after: Option<String> = None;
        loop {
            let page = store.list_page(prefix, after.as_deref(), revision).await?;
            if revision.is_none() {
                revision = Some(page.revision);
                feed(
                    control,
                    Feed::ListBegin {
                        revision: page.revision,
                    },
                )
                .await?;
            }
            // A page of skipped values only still moves the listing on.
            after = page.last_key().or(after);
            keys += page.kvs.len();
            let more = page.more;
            if !page.oversized.is_empty() {
                feed(control, Feed::ListSkipped(page.oversized)).await?;
            }
            if !page.kvs.is_empty() {
                feed(control, Feed::ListPage(page.kvs)).await?;
            }
            if !more {
                break;
            }
        }
    }
    feed(control, Feed::ListEnd).await?;
    tracing::info!(
        keys,
        revision,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "store listed"
    );
    Ok(revision.unwrap_or_default())
}

/// Whether the reconciler needs an event (IPAM claims and VNI reservations it does not).
fn relevant(event: &WatchEvent) -> bool {
    LISTED.iter().any(|p| event.key().starts_with(p))
}
