//! `GET /metrics`: the same counters as `/stats`, for Prometheus, plus latency histograms.
//!
//! Written with the `metrics` facade and `metrics-exporter-prometheus`, with the exporter's
//! default features off: they bring an HTTP listener and a push-gateway client whose TLS
//! stack compiles a C crypto library, and we serve `/metrics` from our own warp routes.
//!
//! Each server owns its recorder (not the process-global one the `metrics` macros use by
//! default), so the tests' several frontends in one process keep separate numbers. The
//! counters are not counted twice: the live [`NodeStats`] or [`DbStats`] are copied into
//! the recorder on each scrape (`Counter::absolute`), so `/stats` and `/metrics` never
//! disagree. Only the request-latency histograms are recorded here as requests finish.
//!
//! The output is Prometheus' classic text format (`promtool check metrics` accepts it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::stats::{DbStats, NodeStats};

/// The content type of what [`Metrics::render`] returns.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Histogram buckets in seconds: 100 µs to ~6.5 s in 17 doublings. A cache hit lands in
/// the first few, a database read near the delay, a timeout at the top.
fn buckets() -> Vec<f64> {
    (0..17).map(|i| 0.0001 * f64::from(1u32 << i)).collect()
}

/// What a server's counters look like at scrape time.
pub enum Snapshot {
    Node(Box<NodeStats>),
    Db(DbStats),
}

/// One server's recorder and its latency histograms, one per label value.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    requests: HashMap<&'static str, metrics::Histogram>,
    /// Samples recorded, for the upkeep in [`Metrics::observe`].
    observed: AtomicU64,
}

/// How many samples the histograms hold at most before they are folded into buckets.
const UPKEEP_EVERY: u64 = 4096;

impl Metrics {
    /// Metrics for a server whose requests are labelled `label` = one of `values`
    /// (on a frontend `source` = main, hot, peer, db, not_found, error; on the dbserver
    /// `op` = get, set).
    pub fn new(label: &'static str, values: &[&'static str]) -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&buckets())
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        let requests = metrics::with_local_recorder(&recorder, || {
            describe_histogram!(
                "gclab_request_duration_seconds",
                Unit::Seconds,
                format!("Time to answer a request, by {label}")
            );
            describe_all();
            values
                .iter()
                .map(|v| {
                    (
                        *v,
                        metrics::histogram!("gclab_request_duration_seconds", label => *v),
                    )
                })
                .collect()
        });
        Metrics {
            recorder,
            handle,
            requests,
            observed: AtomicU64::new(0),
        }
    }

    /// Records one request labelled `value` that took `took`.
    ///
    /// The exporter keeps every sample until something folds them into the histogram's
    /// buckets; a scrape does, and so does its upkeep, which nothing runs for a recorder
    /// built with `build_recorder`. So every [`UPKEEP_EVERY`] samples, `observe` runs the
    /// upkeep itself, and memory stays flat whether anyone scrapes or not. Counted, not timed:
    /// a periodic task would need a shutdown of its own, and at 100,000 hits a second it would
    /// still let a second's worth of samples pile up between ticks.
    pub fn observe(&self, value: &str, took: Duration) {
        if let Some(histogram) = self.requests.get(value) {
            histogram.record(took.as_secs_f64());
        }
        if self.observed.fetch_add(1, Ordering::Relaxed) % UPKEEP_EVERY == UPKEEP_EVERY - 1 {
            self.handle.run_upkeep();
        }
    }

    /// The exposition text, with the counters as they are now.
    pub fn render(&self, now: Snapshot) -> String {
        metrics::with_local_recorder(&self.recorder, || match now {
            Snapshot::Node(s) => publish_node(&s),
            Snapshot::Db(s) => publish_db(&s),
        });
        self.handle.render()
    }
}

/// groupcache's nine counters and our `failovers`, in the order `/stats` lists them.
const NODE_COUNTERS: [(&str, &str); 14] = [
    ("gclab_gets_total", "Every Get, from a client or a peer"),
    (
        "gclab_cache_hits_total",
        "Gets answered from the main or hot cache",
    ),
    (
        "gclab_peer_loads_total",
        "Values fetched from the owning peer",
    ),
    ("gclab_peer_errors_total", "Peer calls that failed"),
    ("gclab_loads_total", "Gets that missed the cache"),
    ("gclab_loads_deduped_total", "Loads left after singleflight"),
    ("gclab_local_loads_total", "Values loaded from the dbserver"),
    ("gclab_local_load_errs_total", "dbserver loads that failed"),
    ("gclab_server_requests_total", "Gets that came from a peer"),
    (
        "gclab_failovers_total",
        "Loads that went past a key's owner because it was down",
    ),
    (
        "gclab_changes_applied_total",
        "Changes read from the dbserver's change stream",
    ),
    (
        "gclab_evictions_by_change_total",
        "Changes that dropped a cached value",
    ),
    (
        "gclab_stale_loads_refused_total",
        "Loads refused because a newer change arrived while they loaded",
    ),
    (
        "gclab_integrity_errors_total",
        "Blobs refused because their bytes did not hash to their key",
    ),
];

fn describe_all() {
    for (name, help) in NODE_COUNTERS {
        describe_counter!(name, help);
    }
    describe_gauge!(
        "gclab_cache_bytes",
        Unit::Bytes,
        "Bytes held by a cache, keys plus values"
    );
    describe_gauge!("gclab_cache_items", "Entries held by a cache");
    describe_counter!("gclab_cache_gets_total", "Lookups in a cache");
    describe_counter!(
        "gclab_cache_lookup_hits_total",
        "Lookups in a cache that found the key"
    );
    describe_counter!(
        "gclab_cache_evictions_total",
        "Entries a cache evicted to stay within the budget"
    );
    describe_counter!(
        "gclab_db_gets_total",
        "Reads served by the dbserver, each after its delay"
    );
    describe_counter!(
        "gclab_db_sets_total",
        "Writes acknowledged by the dbserver, each flushed to disk"
    );
    describe_gauge!("gclab_db_keys", "Keys stored in the dbserver");
    describe_gauge!(
        "gclab_last_version_applied",
        "The newest version of the change stream this node has applied"
    );
    describe_counter!(
        "gclab_db_deletes_total",
        "Deletes acknowledged by the dbserver"
    );
    describe_gauge!(
        "gclab_db_version",
        "The version of the dbserver's newest write"
    );
    describe_gauge!("gclab_db_followers", "Change streams open on the dbserver");
    describe_counter!(
        "gclab_db_followers_dropped_total",
        "Change-stream followers dropped for falling behind"
    );
    describe_gauge!(
        "gclab_fault_rules",
        "Fault rules set on this node (cli fault)"
    );
    describe_counter!(
        "gclab_faulted_calls_total",
        "Peer calls and dbserver reads a fault rule hurt, by kind of fault"
    );
}

fn publish_node(s: &NodeStats) {
    let values = [
        s.gets,
        s.cache_hits,
        s.peer_loads,
        s.peer_errors,
        s.loads,
        s.loads_deduped,
        s.local_loads,
        s.local_load_errs,
        s.server_requests,
        s.failovers,
        s.changes_applied,
        s.evictions_by_change,
        s.stale_loads_refused,
        s.integrity_errors,
    ];
    for ((name, _), value) in NODE_COUNTERS.iter().zip(values) {
        metrics::counter!(*name).absolute(value);
    }
    metrics::gauge!("gclab_last_version_applied").set(s.last_version_applied as f64);
    let f = &s.faults;
    metrics::gauge!("gclab_fault_rules").set(f.rules as f64);
    for (kind, count) in [
        ("partition", f.partitioned),
        ("drop", f.dropped),
        ("delay", f.delayed),
        ("stall", f.stalled),
        ("db-delay", f.db_delayed),
    ] {
        metrics::counter!("gclab_faulted_calls_total", "fault" => kind).absolute(count);
    }
    for (cache, c) in [("main", &s.main_cache), ("hot", &s.hot_cache)] {
        metrics::gauge!("gclab_cache_bytes", "cache" => cache).set(c.bytes as f64);
        metrics::gauge!("gclab_cache_items", "cache" => cache).set(c.items as f64);
        metrics::counter!("gclab_cache_gets_total", "cache" => cache).absolute(c.gets);
        metrics::counter!("gclab_cache_lookup_hits_total", "cache" => cache).absolute(c.hits);
        metrics::counter!("gclab_cache_evictions_total", "cache" => cache).absolute(c.evictions);
    }
}

fn publish_db(s: &DbStats) {
    metrics::counter!("gclab_db_gets_total").absolute(s.gets);
    metrics::counter!("gclab_db_sets_total").absolute(s.sets);
    metrics::gauge!("gclab_db_keys").set(s.keys as f64);
    metrics::counter!("gclab_db_deletes_total").absolute(s.deletes);
    metrics::gauge!("gclab_db_version").set(s.version as f64);
    metrics::gauge!("gclab_db_followers").set(s.followers as f64);
    metrics::counter!("gclab_db_followers_dropped_total").absolute(s.followers_dropped);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_servers_in_one_process_keep_separate_numbers() {
        let (a, b) = (Metrics::new("op", &["get"]), Metrics::new("op", &["get"]));
        a.observe("get", Duration::from_millis(1));
        let a_text = a.render(Snapshot::Db(DbStats {
            gets: 7,
            sets: 1,
            keys: 1,
            ..DbStats::default()
        }));
        let b_text = b.render(Snapshot::Db(DbStats::default()));
        assert!(a_text.contains("gclab_db_gets_total 7"), "{a_text}");
        assert!(b_text.contains("gclab_db_gets_total 0"), "{b_text}");
        assert!(
            a_text.contains("gclab_request_duration_seconds_count{op=\"get\"} 1"),
            "{a_text}"
        );
        assert!(
            !b_text.contains("gclab_request_duration_seconds_count{op=\"get\"} 1"),
            "{b_text}"
        );
    }
}
