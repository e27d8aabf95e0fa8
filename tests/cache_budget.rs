//! The byte budget: main + hot never exceed --cache-bytes, and evictions are counted.

mod common;

use std::time::Duration;

use bytes::Bytes;

#[tokio::test(flavor = "multi_thread")]
async fn main_and_hot_stay_within_the_budget_and_count_evictions() {
    const BUDGET: usize = 20_000;
    let topology = common::start(2, Duration::ZERO, |c| c.group.cache_bytes = BUDGET).await;
    let value = Bytes::from(vec![b'x'; 500]);
    for i in 0..200 {
        topology
            .db
            .set(&format!("key{i}"), value.clone())
            .await
            .unwrap();
    }
    // Every key through node 0: about half it owns (main), half come from node 1 (hot, 1 in 10).
    for i in 0..200 {
        let got = topology.frontends[0]
            .cget(&format!("key{i}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.value, value);
    }
    let stats = topology.frontends[0].stats().await.unwrap();
    let held = stats.main_cache.bytes + stats.hot_cache.bytes;
    assert!(held <= BUDGET as u64, "holds {held} bytes: {stats:?}");
    assert!(stats.main_cache.evictions > 0, "{stats:?}");
    // ~100 owned keys of ~505 bytes cannot fit in 20,000 bytes; the cache is full, not empty.
    assert!(held > BUDGET as u64 / 2, "{stats:?}");
}
