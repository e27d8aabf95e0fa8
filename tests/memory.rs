//! Memory stays flat under cache hits, whether or not anyone scrapes `/metrics`.
//!
//! Alone in its own test binary, so the process's resident set is this test's alone.

mod common;

use std::time::Duration;

use bytes::Bytes;
use gclab::client::FrontendClient;

/// This process's resident set, in KiB, from `/proc/self/status`.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// `n` cgets of `key`, 32 at a time; every one must be a hit with the right value.
async fn hits(frontend: &FrontendClient, key: &str, n: usize) {
    const CLIENTS: usize = 32;
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (frontend, key) = (frontend.clone(), key.to_owned());
        clients.spawn(async move {
            for _ in 0..n / CLIENTS {
                let cached = frontend.cget(&key).await.unwrap().unwrap();
                assert_eq!(cached.value, "hot value");
            }
        });
    }
    while let Some(done) = clients.join_next().await {
        done.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_hundred_thousand_hits_on_a_node_nobody_scrapes_leave_its_memory_flat() {
    let topology = common::start(1, Duration::ZERO, |_| {}).await;
    topology
        .db
        .set("hot", Bytes::from_static(b"hot value"))
        .await
        .unwrap();
    let frontend = &topology.frontends[0];
    // Warm up first: connection pools, buffers and the allocator's arenas settle, and the
    // trace ring fills to its cap (three events a hit, 100,000 kept: 33,334 hits), after
    // which each new event takes the place of the oldest.
    hits(frontend, "hot", 40_000).await;
    let before = rss_kib();
    hits(frontend, "hot", 300_000).await;
    let grew = rss_kib().saturating_sub(before);
    let stats = frontend.stats().await.unwrap();
    assert!(stats.cache_hits >= 339_000, "{stats:?}");
    // Unscraped, the exporter kept every latency sample: about 17 bytes a hit, 5 MiB here.
    assert!(grew < 1536, "RSS grew by {grew} KiB over 300,000 hits");
    topology.stop().await;
}
