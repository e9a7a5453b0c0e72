//! What one asker can take of the DNS server: work in flight, queries per second, TCP
//! connections and their idle time. A container that floods its listener gets its queries
//! dropped and its connections closed, counted; the daemon, its descriptors and the other
//! namespaces' listeners are not affected.
//!
//! Two levels, each a semaphore: a namespace's listener has its own share, and every listener
//! takes from the daemon's total as well, so many namespaces flooding at once still cannot
//! exhaust the process. Names netd knows are answered at once from a snapshot (no permit:
//! they cost no descriptor and no task); a permit is held by what waits on something else, a
//! forwarded query (one socket each) or an open TCP connection.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Forwarded queries waiting on an upstream server, per namespace and in all.
pub const FORWARDS_PER_NAMESPACE: usize = 64;
pub const FORWARDS_TOTAL: usize = 512;
/// Open TCP connections, per namespace and in all.
pub const TCP_PER_NAMESPACE: usize = 64;
pub const TCP_TOTAL: usize = 1024;
/// How long a TCP connection may stay without a complete query before it is closed (RFC 7766
/// 6.2.3 asks servers for an idle timeout "of the order of seconds"; BIND and Unbound keep
/// 30 s: shorter, since a resolver's connection here is one hop over `lo`).
pub const TCP_IDLE: Duration = Duration::from_secs(10);
/// Queries per second one source address may send, sustained, and in a burst. A libc lookup
/// is two queries (A and AAAA), so this is 500 uncached lookups a second from one container.
pub const RATE_PER_SOURCE: u32 = 1000;
pub const BURST_PER_SOURCE: u32 = 2000;
/// Sources whose rate is tracked at once per listener; a flood of spoofed sources meets a
/// full table and is dropped until tracked sources go quiet.
const SOURCES_TRACKED: usize = 4096;

/// What was turned away, for the metrics and the logs.
#[derive(Debug, Default)]
pub struct Counters {
    /// UDP queries dropped: no forwarding permit left.
    pub dropped_busy: AtomicU64,
    /// Queries dropped: over their source's rate.
    pub dropped_rate: AtomicU64,
    /// TCP connections closed at once: no connection permit left.
    pub tcp_refused: AtomicU64,
    /// TCP connections closed after [`TCP_IDLE`] without a query.
    pub tcp_idle_closed: AtomicU64,
    /// Queries answered REFUSED: from a source the listener does not serve.
    pub refused: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Each count by the reason /metrics gives it.
    pub fn by_reason(&self) -> [(&'static str, u64); 5] {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        [
            ("busy", read(&self.dropped_busy)),
            ("rate", read(&self.dropped_rate)),
            ("tcp_refused", read(&self.tcp_refused)),
            ("tcp_idle", read(&self.tcp_idle_closed)),
            ("not_served", read(&self.refused)),
        ]
    }
}

/// The daemon's totals, shared by every listener.
#[derive(Debug)]
pub struct Shared {
    pub forwards: Arc<Semaphore>,
    pub tcp: Arc<Semaphore>,
    pub counters: Counters,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            forwards: Arc::new(Semaphore::new(FORWARDS_TOTAL)),
            tcp: Arc::new(Semaphore::new(TCP_TOTAL)),
            counters: Counters::default(),
        }
    }
}

/// One listener's share, and its view of the totals.
#[derive(Debug)]
pub struct Budget {
    shared: Arc<Shared>,
    forwards: Arc<Semaphore>,
    tcp: Arc<Semaphore>,
    rate: Mutex<RateLimiter>,
}

/// A permit of the namespace and one of the total: dropping it gives both back.
#[derive(Debug)]
pub struct Permit {
    _local: OwnedSemaphorePermit,
    _total: OwnedSemaphorePermit,
}

impl Budget {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            forwards: Arc::new(Semaphore::new(FORWARDS_PER_NAMESPACE)),
            tcp: Arc::new(Semaphore::new(TCP_PER_NAMESPACE)),
            rate: Mutex::new(RateLimiter::new(
                RATE_PER_SOURCE,
                BURST_PER_SOURCE,
                SOURCES_TRACKED,
            )),
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// A permit to forward one query, if the namespace and the daemon have one left.
    pub fn forward(&self) -> Option<Permit> {
        both(&self.forwards, &self.shared.forwards)
    }

    /// A permit to keep one TCP connection open.
    pub fn connection(&self) -> Option<Permit> {
        both(&self.tcp, &self.shared.tcp)
    }

    /// Whether `source` may send one more query now.
    pub fn admit(&self, source: IpAddr) -> bool {
        self.rate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .admit(source, Instant::now())
    }
}

fn both(local: &Arc<Semaphore>, total: &Arc<Semaphore>) -> Option<Permit> {
    let local = local.clone().try_acquire_owned().ok()?;
    let total = total.clone().try_acquire_owned().ok()?;
    Some(Permit {
        _local: local,
        _total: total,
    })
}

/// A token bucket per source address.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    capacity: usize,
    buckets: HashMap<IpAddr, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    pub fn new(rate: u32, burst: u32, capacity: usize) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst),
            capacity,
            buckets: HashMap::new(),
        }
    }

    pub fn admit(&mut self, source: IpAddr, now: Instant) -> bool {
        if !self.buckets.contains_key(&source) && self.buckets.len() >= self.capacity {
            // Forget the sources whose bucket has refilled: they are as good as new.
            let (rate, burst) = (self.rate, self.burst);
            self.buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
            });
            if self.buckets.len() >= self.capacity {
                return false;
            }
        }
        let bucket = self.buckets.entry(source).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * self.rate;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_its_burst_then_its_rate() {
        let mut limiter = RateLimiter::new(10, 20, 8);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        assert_eq!((0..30).filter(|_| limiter.admit(a, t0)).count(), 20);
        assert!(limiter.admit(b, t0), "another source has its own bucket");
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..30).filter(|_| limiter.admit(a, t1)).count(), 5);
    }

    #[test]
    fn a_full_table_turns_new_sources_away_until_old_ones_go_quiet() {
        let mut limiter = RateLimiter::new(10, 20, 2);
        let ip = |i: u8| IpAddr::from([10, 0, 0, i]);
        let t0 = Instant::now();
        assert!(limiter.admit(ip(1), t0) && limiter.admit(ip(2), t0));
        assert!(!limiter.admit(ip(3), t0));
        assert!(limiter.admit(ip(3), t0 + Duration::from_secs(1)));
    }

    #[test]
    fn permits_come_from_the_namespace_and_the_total() {
        let shared = Arc::new(Shared {
            forwards: Arc::new(Semaphore::new(3)),
            ..Shared::default()
        });
        let (a, b) = (Budget::new(shared.clone()), Budget::new(shared));
        let held: Vec<Permit> = (0..3).filter_map(|_| a.forward()).collect();
        assert_eq!(held.len(), 3);
        assert!(b.forward().is_none(), "the total is spent");
        drop(held);
        assert!(b.forward().is_some());
    }
}
