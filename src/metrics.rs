//! `GET /metrics`: the same counters as `/stats`, for Prometheus, plus latency histograms.
//!
//! Written with `prometheus-client`, the Prometheus project's own Rust client, with no
//! default features (so no TLS or protobuf stack comes along). The counters are not kept a
//! second time: a collector reads the live [`NodeStats`](crate::stats::NodeStats) or
//! [`DbStats`](crate::stats::DbStats) on each scrape, so `/stats` and `/metrics` can never
//! disagree. Only the request-latency histograms live here.
//!
//! The output is the OpenMetrics text format, which Prometheus scrapes natively.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::cache::CacheStats;
use crate::stats::{DbStats, NodeStats};

/// The content type of what [`Metrics::render`] returns.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A registry and the request-latency histograms of one server.
pub struct Metrics {
    registry: Registry,
    requests: Family<Vec<(&'static str, &'static str)>, Histogram>,
}

/// Something whose counters are read on every scrape.
pub trait Source: Send + Sync + 'static {
    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error>;
}

impl Source for crate::group::Group {
    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encode_node(&self.stats(), encoder)
    }
}

impl Source for crate::dbserver::Store {
    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encode_db(&self.stats(), encoder)
    }
}

impl Metrics {
    /// Metrics for a server whose counters `source` reports; requests are labelled by `label`
    /// (`source` on a frontend: main, hot, peer, db, error; `op` on the dbserver: get, set).
    pub fn new(source: Arc<dyn Source>, label: &'static str) -> Metrics {
        let mut registry = Registry::with_prefix("gclab");
        registry.register_collector(Box::new(Scrape(source)));
        // 100 µs to ~6.5 s in 17 doublings: a cache hit lands in the first buckets, a
        // database read near the delay, a timeout at the top.
        let requests = Family::<Vec<(&'static str, &'static str)>, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 17))
        });
        registry.register(
            "request_duration_seconds",
            format!("Time to answer a request, by {label}"),
            requests.clone(),
        );
        Metrics { registry, requests }
    }

    /// Records one request that took `took`, labelled `name=value`.
    pub fn observe(&self, name: &'static str, value: &'static str, took: Duration) {
        self.requests
            .get_or_create(&vec![(name, value)])
            .observe(took.as_secs_f64());
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// Adapts a [`Source`] to prometheus-client's `Collector`.
struct Scrape(Arc<dyn Source>);

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrape")
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(&mut encoder)
    }
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

/// Writes a node's counters: groupcache's nine, then each cache's.
fn encode_node(s: &NodeStats, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    counter(e, "gets", "Every Get, from a client or a peer", s.gets)?;
    counter(e, "cache_hits", "Gets answered from the main or hot cache", s.cache_hits)?;
    counter(e, "peer_loads", "Values fetched from the owning peer", s.peer_loads)?;
    counter(e, "peer_errors", "Peer calls that failed", s.peer_errors)?;
    counter(e, "loads", "Gets that missed the cache", s.loads)?;
    counter(e, "loads_deduped", "Loads left after singleflight", s.loads_deduped)?;
    counter(e, "local_loads", "Values loaded from the dbserver", s.local_loads)?;
    counter(e, "local_load_errs", "dbserver loads that failed", s.local_load_errs)?;
    counter(e, "server_requests", "Gets that came from a peer", s.server_requests)?;
    let caches = [("main", &s.main_cache), ("hot", &s.hot_cache)];
    let mut per_cache = |name: &str, help: &str, gauge: bool, value: fn(&CacheStats) -> u64| {
        let kind = if gauge {
            ConstGauge::new(0i64).metric_type()
        } else {
            ConstCounter::new(0u64).metric_type()
        };
        let mut family = e.encode_descriptor(name, help, None, kind)?;
        for (label, stats) in caches {
            let labels = [("cache", label)];
            let metric = family.encode_family(&labels)?;
            if gauge {
                ConstGauge::new(value(stats) as i64).encode(metric)?;
            } else {
                ConstCounter::new(value(stats)).encode(metric)?;
            }
        }
        Ok::<(), std::fmt::Error>(())
    };
    per_cache("cache_bytes", "Bytes held, keys plus values", true, |c| c.bytes)?;
    per_cache("cache_items", "Entries held", true, |c| c.items)?;
    per_cache("cache_gets", "Cache lookups", false, |c| c.gets)?;
    per_cache("cache_hits_by_cache", "Cache lookups that found the key", false, |c| c.hits)?;
    per_cache("cache_evictions", "Entries evicted to stay within the budget", false, |c| c.evictions)
}

/// Writes the dbserver's counters.
fn encode_db(s: &DbStats, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    counter(e, "db_gets", "Reads served, each after the delay", s.gets)?;
    counter(e, "db_sets", "Writes acknowledged, each flushed to disk", s.sets)?;
    let keys = ConstGauge::new(s.keys as i64);
    keys.encode(e.encode_descriptor("db_keys", "Keys stored", None, keys.metric_type())?)
}
