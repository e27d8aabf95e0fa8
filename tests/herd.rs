//! The thundering herd: a thousand concurrent cgets of one cold key read the database once,
//! whichever transport the peers ask each other over.

mod common;

use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use gclab::peers::PeerTransport;

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_concurrent_cold_cgets_over_three_frontends_read_the_database_once() {
    herd_over(PeerTransport::Tarpc).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn over_http_a_thousand_concurrent_cold_cgets_read_the_database_once_too() {
    herd_over(PeerTransport::Http).await;
}

/// A thousand concurrent cgets of a cold key over three frontends asking each other over
/// `transport`.
async fn herd_over(transport: PeerTransport) {
    let topology = common::start(3, Duration::from_millis(200), |c| {
        c.group.peer_transport = transport;
    })
    .await;
    topology
        .db
        .set("herd", Bytes::from_static(b"stampede"))
        .await
        .unwrap();
    let before = topology.db.stats().await.unwrap().gets;

    let replies = join_all((0..1000).map(|i| topology.frontends[i % 3].cget("herd"))).await;

    for reply in replies {
        let cached = reply.unwrap().expect("the key exists");
        assert_eq!(cached.value, "stampede");
    }
    let after = topology.db.stats().await.unwrap().gets;
    assert_eq!(
        after - before,
        1,
        "the dbserver was read {} times over {transport:?}",
        after - before
    );

    let owner = topology.owner_of("herd").await.unwrap();
    let (mut gets, mut peer_loads, mut served) = (0, 0, 0);
    for (i, frontend) in topology.frontends.iter().enumerate() {
        let stats = frontend.stats().await.unwrap();
        assert_eq!(
            stats.local_loads,
            u64::from(i == owner),
            "node {i}: {stats:?}"
        );
        assert_eq!(stats.peer_errors, 0, "node {i}: {stats:?}");
        gets += stats.gets - stats.server_requests;
        if i == owner {
            served = stats.server_requests;
        } else {
            peer_loads += stats.peer_loads;
        }
    }
    assert_eq!(gets, 1000, "every client request was counted once");
    // Every ask the non-owners made was delivered and answered with the value.
    assert!(
        peer_loads >= 2,
        "each non-owner asked the owner: {peer_loads}"
    );
    assert_eq!(peer_loads, served, "asks made and asks served");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_singleflight_every_miss_reads_the_database() {
    let topology = common::start(1, Duration::from_millis(200), |c| {
        c.group.singleflight = false
    })
    .await;
    topology
        .db
        .set("herd", Bytes::from_static(b"v"))
        .await
        .unwrap();
    join_all((0..20).map(|_| topology.frontends[0].cget("herd"))).await;
    // All 20 arrive within the 200 ms load, so none finds the value cached.
    assert_eq!(topology.db.stats().await.unwrap().gets, 20);
}
