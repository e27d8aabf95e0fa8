//! Ownership: every node agrees who owns each key, and the work is spread.

mod common;

use std::collections::HashMap;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn every_node_names_the_same_owner_for_each_of_100_keys_and_all_own_some() {
    let topology = common::start(3, Duration::ZERO, |_| {}).await;
    let mut owned: HashMap<String, usize> = HashMap::new();
    for i in 0..100 {
        let key = format!("key{i}");
        let mut answers = Vec::new();
        for frontend in &topology.frontends {
            answers.push(frontend.owner(&key).await.unwrap());
        }
        for answer in &answers {
            assert_eq!(answer.owner, answers[0].owner, "{key}: nodes disagree");
            assert_eq!(answer.ranking, answers[0].ranking, "{key}: rankings differ");
            assert_eq!(answer.ranking[0], answer.owner);
            assert_eq!(answer.ranking.len(), 3);
        }
        *owned.entry(answers[0].owner.clone()).or_default() += 1;
    }
    for peer in &topology.peers {
        assert!(
            owned.get(peer).copied().unwrap_or(0) > 10,
            "{peer} owns too few: {owned:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_owner_header_matches_the_owner_route() {
    let topology = common::start(3, Duration::ZERO, |_| {}).await;
    topology
        .db
        .set("k", bytes::Bytes::from_static(b"v"))
        .await
        .unwrap();
    let owner = topology.frontends[1].owner("k").await.unwrap().owner;
    let cached = topology.frontends[1].cget("k").await.unwrap().unwrap();
    assert_eq!(cached.owner, owner);
    assert_eq!(cached.node, topology.peers[1]);
}
