//! The daemon's Prometheus metrics (`netd daemon --metrics-address`): the registry, the
//! collector that reads everything at scrape time, and the text encoding.
//!
//! Nearly everything is read when scraped rather than kept in metric objects: the datapath's
//! counters live in a pinned per-CPU map, the maps' fill and failures and the links' states in
//! the reconciler's summary and [`Health`]. Copying them into gauges on a timer would only add
//! staleness. The one exception is the reconciler's batch duration, a histogram that the
//! reconciler observes itself ([`BatchDuration`]).
//!
//! The encoding is Prometheus' text format 0.0.4 (what `promtool check metrics` reads); names
//! follow Prometheus' conventions: a `netd_` prefix, `_total` on counters, base units, labels
//! rather than names for what varies.

use std::{fmt, path::PathBuf, sync::Arc, time::Duration};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _, prometheus_text},
    metrics::{
        MetricType,
        counter::ConstCounter,
        gauge::ConstGauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use netd_common::{
    maps::Traffic,
    stats::{Counter, DropReason},
};

use crate::{
    control::{BatchObserver, Control, MapFill},
    health::{Health, LinkState},
};

/// `Content-Type` of what [`Metrics::encode`] returns.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot encode the metrics")]
    Encode(#[from] fmt::Error),
}

/// How long the reconciler takes to apply a batch of store events to the maps. A cheap shared
/// handle: the reconciler thread observes, the scrape reads.
#[derive(Clone, Debug)]
pub struct BatchDuration(Histogram);

impl Default for BatchDuration {
    fn default() -> Self {
        // 0.1 ms to 26 s by factors of 4: a batch of one event takes a fraction of a
        // millisecond, a burst of 100,000 some seconds.
        Self(Histogram::new(exponential_buckets(0.0001, 4.0, 10)))
    }
}

impl BatchObserver for BatchDuration {
    fn observe(&self, took: Duration) {
        self.0.observe(took.as_secs_f64());
    }
}

/// Where the collector reads from at scrape time.
pub struct Sources {
    /// Where `NETD_STATS` is pinned.
    pub pin_dir: PathBuf,
    pub control: Control,
    pub health: Arc<Health>,
    /// Names across hosts, unless the daemon runs without (`--no-dns`).
    pub dns: Option<crate::dns::Dns>,
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sources")
            .field("pin_dir", &self.pin_dir)
            .finish_non_exhaustive()
    }
}

/// The daemon's registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    pub fn new(sources: Sources, batches: BatchDuration) -> Self {
        let mut registry = Registry::with_prefix("netd");
        registry.register(
            "reconcile_duration_seconds",
            "Time the reconciler took to apply a batch of store events to the maps",
            batches.0,
        );
        registry.register_collector(Box::new(DaemonCollector(sources)));
        Self { registry }
    }

    /// Everything, in Prometheus' text format ([`CONTENT_TYPE`]). Reads pinned maps: call it
    /// off the async runtime.
    pub fn encode(&self) -> Result<String, MetricsError> {
        let mut text = String::new();
        prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Reads the daemon's state when scraped.
#[derive(Debug)]
struct DaemonCollector(Sources);

impl Collector for DaemonCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        Snapshot::read(&self.0).encode(encoder)
    }
}

/// What one scrape shows, read from the sources at once (plain data: testable without a
/// daemon).
#[derive(Debug)]
struct Snapshot {
    /// `NETD_STATS` summed over CPUs, in counter order; `None` when it cannot be read (the
    /// scrape goes on without it).
    counters: Option<Vec<(&'static str, u64)>>,
    maps: Vec<MapFill>,
    watch: LinkState,
    lease: LinkState,
    /// `None`: the Docker integration is off.
    docker: Option<LinkState>,
    events_applied: u64,
    endpoints_local: usize,
    endpoints_remote: usize,
    /// What this host's endpoints sent and received; empty when it cannot be read.
    traffic: Vec<EndpointTraffic>,
    /// DNS queries and connections turned away, by reason (`None`: no DNS).
    dns_turned_away: Option<[(&'static str, u64); 5]>,
}

/// One endpoint of this host and its packets and bytes.
#[derive(Debug)]
struct EndpointTraffic {
    network: String,
    endpoint: String,
    counts: Traffic,
}

/// `NETD_TRAFFIC` joined with the interfaces' `netd:<network>/<endpoint>` aliases (entries of
/// interfaces gone are left out).
fn read_traffic(pin_dir: &std::path::Path) -> Vec<EndpointTraffic> {
    let counts = match crate::datapath::inspect::traffic(pin_dir) {
        Ok(counts) => counts,
        Err(error) => {
            tracing::warn!(%error, "metrics: cannot read the endpoints' traffic");
            return Vec::new();
        }
    };
    let interfaces = match crate::netlink::interfaces() {
        Ok(interfaces) => interfaces,
        Err(error) => {
            tracing::warn!(%error, "metrics: cannot list the interfaces");
            return Vec::new();
        }
    };
    let mut traffic: Vec<EndpointTraffic> = counts
        .into_iter()
        .filter_map(|(ifindex, counts)| {
            let (network, endpoint) = interfaces.get(&ifindex)?.endpoint.clone()?;
            Some(EndpointTraffic {
                network,
                endpoint,
                counts,
            })
        })
        .collect();
    traffic.sort_by(|a, b| (&a.network, &a.endpoint).cmp(&(&b.network, &b.endpoint)));
    traffic
}

impl Snapshot {
    fn read(sources: &Sources) -> Self {
        let counters = match crate::datapath::inspect::counters(&sources.pin_dir) {
            Ok(counters) => Some(counters),
            Err(error) => {
                tracing::warn!(%error, "metrics: cannot read the datapath counters");
                None
            }
        };
        let summary = sources.control.summary();
        Self {
            counters,
            maps: summary.maps.clone(),
            watch: sources.health.watch_as_seen(summary.synced).state,
            lease: sources.health.lease().link.state,
            docker: sources.health.docker_state().map(|(state, _)| state),
            events_applied: summary.events_applied,
            endpoints_local: summary.programmed_local,
            endpoints_remote: summary.programmed_remote,
            traffic: read_traffic(&sources.pin_dir),
            dns_turned_away: sources.dns.as_ref().map(crate::dns::Dns::turned_away),
        }
    }

    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        if let Some(counters) = &self.counters {
            encode_datapath(&mut encoder, counters)?;
        }
        encode_maps(&mut encoder, &self.maps)?;
        let states = LinkState::ALL.map(|s| (s.name(), s == self.watch));
        let help = "State of the store watch (1 for the current state)";
        encode_state_set(&mut encoder, "store_watch_state", help, &states)?;
        let states = LinkState::ALL.map(|s| (s.name(), s == self.lease));
        let help = "State of this host's registration under its lease (1 for the current state)";
        encode_state_set(&mut encoder, "host_lease_state", help, &states)?;
        let docker = self.docker.as_ref();
        let mut states: Vec<(&str, bool)> = LinkState::ALL
            .iter()
            .map(|s| (s.name(), Some(s) == docker))
            .collect();
        states.push(("disabled", docker.is_none()));
        let help = "State of the Docker engine connection, disabled with --no-docker (1 for the current state)";
        encode_state_set(&mut encoder, "docker_engine_state", help, &states)?;
        encode_counter(
            &mut encoder,
            "store_events_applied",
            "Store watch events the reconciler applied",
            self.events_applied,
        )?;
        let endpoints = [
            ("local", self.endpoints_local),
            ("remote", self.endpoints_remote),
        ];
        let mut metric = encoder.encode_descriptor(
            "endpoints",
            "Endpoints programmed in the maps: this host's, and its peers' in the networks it is on",
            None,
            MetricType::Gauge,
        )?;
        for (location, count) in endpoints {
            let labels = [("location", location)];
            ConstGauge::new(count as i64).encode(metric.encode_family(&labels)?)?;
        }
        if let Some(counts) = &self.dns_turned_away {
            let mut metric = encoder.encode_descriptor(
                "dns_turned_away",
                "DNS queries and TCP connections netd's DNS turned away, by reason: busy (no \
                 forwarding slot left), rate (over the source's rate), tcp_refused (no \
                 connection slot left), tcp_idle (closed idle), not_served (REFUSED: not one \
                 of the listener's own)",
                None,
                MetricType::Counter,
            )?;
            for (reason, count) in counts {
                let labels = [("reason", *reason)];
                ConstCounter::new(*count).encode(metric.encode_family(&labels)?)?;
            }
        }
        encode_traffic(&mut encoder, &self.traffic)
    }
}

/// Packets and bytes per endpoint of this host, and per network (the sum of this host's
/// endpoints in it), by direction as the endpoint sees it.
fn encode_traffic(encoder: &mut DescriptorEncoder, traffic: &[EndpointTraffic]) -> fmt::Result {
    let mut networks: std::collections::BTreeMap<&str, Traffic> = Default::default();
    for t in traffic {
        let sum = networks.entry(t.network.as_str()).or_default();
        *sum = *sum + t.counts;
    }
    // Per unit: its name, help, and the (direction, value) pairs it reads from a count.
    type Directions = fn(&Traffic) -> [(&'static str, u64); 2];
    let units: [(&str, &str, Directions); 2] = [
        (
            "packets",
            "Packets this host's endpoints sent and were delivered",
            |t| [("sent", t.sent_packets), ("received", t.received_packets)],
        ),
        (
            "bytes",
            "Bytes this host's endpoints sent and were delivered",
            |t| [("sent", t.sent_bytes), ("received", t.received_bytes)],
        ),
    ];
    for (unit, help, directions) in units {
        let name = format!("endpoint_{unit}");
        let mut metric = encoder.encode_descriptor(&name, help, None, MetricType::Counter)?;
        for t in traffic {
            for (direction, value) in directions(&t.counts) {
                let labels = [
                    ("network", t.network.as_str()),
                    ("endpoint", t.endpoint.as_str()),
                    ("direction", direction),
                ];
                ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
            }
        }
        let name = format!("network_{unit}");
        let help = format!("{help}, summed by network");
        let mut metric = encoder.encode_descriptor(&name, &help, None, MetricType::Counter)?;
        for (network, t) in &networks {
            for (direction, value) in directions(t) {
                let labels = [("network", *network), ("direction", direction)];
                ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
            }
        }
    }
    Ok(())
}

/// `NETD_STATS` (summed, in index order): drops by reason, the other outcomes by event.
fn encode_datapath(encoder: &mut DescriptorEncoder, counters: &[(&str, u64)]) -> fmt::Result {
    let value = |index: u32| counters.get(index as usize).map_or(0, |(_, v)| *v);
    let mut metric = encoder.encode_descriptor(
        "datapath_drops",
        "Packets the datapath programs dropped, by reason",
        None,
        MetricType::Counter,
    )?;
    for reason in DropReason::ALL {
        let labels = [("reason", reason.label())];
        ConstCounter::new(value(reason.index())).encode(metric.encode_family(&labels)?)?;
    }
    let mut metric = encoder.encode_descriptor(
        "datapath_packets",
        "Packets the datapath programs handled, by what happened to them",
        None,
        MetricType::Counter,
    )?;
    for counter in Counter::ALL {
        let labels = [("event", counter.name())];
        ConstCounter::new(value(counter.index())).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Fill, capacity and failed writes of every map the reconciler writes.
fn encode_maps(encoder: &mut DescriptorEncoder, maps: &[MapFill]) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(
        "map_entries",
        "Entries the reconciler holds in a map",
        None,
        MetricType::Gauge,
    )?;
    for map in maps {
        let labels = [("map", map.name)];
        ConstGauge::new(map.entries as i64).encode(metric.encode_family(&labels)?)?;
    }
    let mut metric = encoder.encode_descriptor(
        "map_capacity_entries",
        "Entries a map can hold",
        None,
        MetricType::Gauge,
    )?;
    for map in maps {
        let labels = [("map", map.name)];
        ConstGauge::new(i64::from(map.capacity)).encode(metric.encode_family(&labels)?)?;
    }
    let mut metric = encoder.encode_descriptor(
        "map_write_failures",
        "Writes and deletes of a map that failed (a full map), since the daemon started",
        None,
        MetricType::Counter,
    )?;
    for map in maps {
        let labels = [("map", map.name)];
        ConstCounter::new(map.failed_writes).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A state set as a gauge: one series per state, 1 for the current one, 0 for the others (so
/// that a state that ends is seen ending, rather than its series vanishing).
fn encode_state_set(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    states: &[(&str, bool)],
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (state, current) in states {
        let labels = [("state", *state)];
        ConstGauge::new(i64::from(*current)).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn encode_counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> fmt::Result {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A collector that shows a fixed snapshot.
    #[derive(Debug)]
    struct Fixed(Snapshot);

    impl Collector for Fixed {
        fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
            self.0.encode(encoder)
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            counters: None,
            maps: Vec::new(),
            watch: LinkState::Connected,
            lease: LinkState::Connected,
            docker: None,
            events_applied: 0,
            endpoints_local: 0,
            endpoints_remote: 0,
            traffic: Vec::new(),
            dns_turned_away: None,
        }
    }

    fn encoded(snapshot: Snapshot) -> String {
        let mut registry = Registry::with_prefix("netd");
        registry.register_collector(Box::new(Fixed(snapshot)));
        let mut text = String::new();
        prometheus_text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn counters_drops_maps_and_states_are_named_by_convention() {
        let text = encoded(Snapshot {
            counters: Some(vec![("rx", 7), ("tx", 5)]),
            maps: vec![MapFill {
                name: "NETD_FDB",
                entries: 3,
                capacity: 8,
                failed_writes: 2,
                last_error: None,
            }],
            watch: LinkState::Connected,
            lease: LinkState::Unreachable,
            docker: None,
            events_applied: 11,
            endpoints_local: 1,
            endpoints_remote: 2,
            traffic: ["a", "b"]
                .map(|endpoint| EndpointTraffic {
                    network: "n".into(),
                    endpoint: endpoint.into(),
                    counts: Traffic {
                        sent_packets: 3,
                        sent_bytes: 300,
                        received_packets: 2,
                        received_bytes: 200,
                    },
                })
                .into(),
            dns_turned_away: Some([
                ("busy", 1),
                ("rate", 2),
                ("tcp_refused", 0),
                ("tcp_idle", 4),
                ("not_served", 5),
            ]),
        });
        for line in [
            "netd_dns_turned_away_total{reason=\"rate\"} 2",
            "netd_dns_turned_away_total{reason=\"not_served\"} 5",
            "# TYPE netd_datapath_packets_total counter",
            "netd_datapath_packets_total{event=\"rx\"} 7",
            "netd_map_entries{map=\"NETD_FDB\"} 3",
            "netd_map_capacity_entries{map=\"NETD_FDB\"} 8",
            "netd_map_write_failures_total{map=\"NETD_FDB\"} 2",
            "netd_store_watch_state{state=\"connected\"} 1",
            "netd_store_watch_state{state=\"syncing\"} 0",
            "netd_host_lease_state{state=\"unreachable\"} 1",
            "netd_docker_engine_state{state=\"disabled\"} 1",
            "netd_docker_engine_state{state=\"connected\"} 0",
            "netd_store_events_applied_total 11",
            "netd_endpoints{location=\"remote\"} 2",
            "netd_endpoint_packets_total{network=\"n\",endpoint=\"a\",direction=\"sent\"} 3",
            "netd_endpoint_bytes_total{network=\"n\",endpoint=\"b\",direction=\"received\"} 200",
            "netd_network_packets_total{network=\"n\",direction=\"sent\"} 6",
            "netd_network_bytes_total{network=\"n\",direction=\"received\"} 400",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }

    #[test]
    fn drops_are_counted_by_reason_without_the_prefix() {
        let counters = (0..netd_common::stats::COUNT as u32)
            .map(|i| (netd_common::stats::name(i).unwrap_or("?"), u64::from(i)))
            .collect();
        let text = encoded(Snapshot {
            counters: Some(counters),
            ..snapshot()
        });
        let spoofed = DropReason::SpoofedMac.index();
        let line = format!("netd_datapath_drops_total{{reason=\"spoofed-mac\"}} {spoofed}");
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        assert!(!text.contains("drop-"), "{text}");
        assert!(
            text.contains("netd_datapath_packets_total{event=\"encap\"}"),
            "{text}"
        );
    }

    #[test]
    fn batch_durations_are_a_histogram_in_seconds() {
        let batches = BatchDuration::default();
        batches.observe(Duration::from_millis(3));
        let mut registry = Registry::with_prefix("netd");
        registry.register("reconcile_duration_seconds", "help", batches.0.clone());
        let mut text = String::new();
        prometheus_text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("# TYPE netd_reconcile_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("netd_reconcile_duration_seconds_count 1"),
            "{text}"
        );
    }
}
