//! The event ring is bounded: a million requests leave it at its capacity, the rest counted
//! as dropped, and the process's memory within the ring's budget. A file of its own, so no
//! other test's allocations share the process whose RSS it reads.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gclab::group::Group;
use gclab::trace::{Event, Kind, DEFAULT_CAPACITY};

/// The process's resident memory, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_requests_leave_the_ring_at_its_cap_and_the_memory_within_its_budget() {
    let t = common::start(1, Duration::ZERO, |_| {}).await;
    // Keys longer than a `CompactString` keeps inline, so each arrival's key is a heap
    // allocation of its own, as for the lab's longer keys.
    let keys: Vec<String> = (0..100)
        .map(|i| format!("a-key-long-enough-to-live-on-the-heap-{i:04}"))
        .collect();
    for key in &keys {
        t.db.set(key, Bytes::from("v")).await.unwrap();
    }
    let config = common::frontend_config("127.0.0.1:1", vec!["127.0.0.1:1".into()], t.db_addr());
    let group = Arc::new(Group::new(&config.group));
    let events = group.events();
    assert_eq!(events.capacity(), DEFAULT_CAPACITY);

    const REQUESTS: usize = 1_000_000;
    let before = rss();
    for i in 0..REQUESTS {
        // What `GET /cache/{key}` notes: the arrival, the Get path's own events, the answer.
        let key = &keys[i % keys.len()];
        let span = gclab::http::arriving(events, None, key);
        let got = group.get(key, span).await;
        assert!(got.is_ok());
        events.note(
            span,
            Kind::Answered,
            gclab::group::outcome(got.unwrap().source.outcome()),
        );
    }
    let grown = rss().saturating_sub(before);
    eprintln!("RSS grew {} KiB over {REQUESTS} requests", grown / 1024);

    let answer = events.query(None, 0);
    assert_eq!(events.len(), DEFAULT_CAPACITY);
    // A hit notes 3 events; the first get of each key (a miss and a load) notes more.
    assert!(answer.recorded >= 3 * REQUESTS as u64);
    assert_eq!(answer.dropped, answer.recorded - DEFAULT_CAPACITY as u64);
    // The budget: each kept event at its full size (the ring keeps less), its key's heap
    // copy, and room for the allocator; an unbounded ring would hold 30 times as many.
    let per_event = std::mem::size_of::<Event>() as u64 + 64;
    let budget = 2 * DEFAULT_CAPACITY as u64 * per_event + (16 << 20);
    assert!(
        grown <= budget,
        "RSS grew {grown} bytes over {REQUESTS} requests; the ring's budget is {budget}"
    );
    t.stop().await;
}
