//! Ownership: which peer owns a key, by rendezvous hashing.
//!
//! Every frontend holds the same list of peers and ranks them for each key by a hash of
//! (key, peer): the highest score owns the key. No coordination is needed, because every
//! node computes the same ranking. groupcache uses a consistent-hash ring with virtual
//! nodes for this; rendezvous (highest-random-weight) hashing gives the same property —
//! adding a fourth peer moves only about a quarter of the keys, all of them to the new
//! peer — in a few lines and without tuning the number of virtual nodes.
//!
//! The hash is pinned in our code: SipHash-1-3 with fixed keys from `siphasher`. std's
//! `DefaultHasher` was the alternative, but its algorithm "may change between Rust
//! releases": two builds that disagree on owners would forward keys to each other forever.

use std::hash::{Hash, Hasher};

use rendezvous_hash::{IdNode, NodeHasher, RendezvousNodes};
use siphasher::sip::SipHasher13;

/// The peers of the cluster, each named by its peer (tarpc) address, e.g. `127.0.0.1:8001`.
pub struct Ring {
    nodes: RendezvousNodes<IdNode<String>, PinnedHasher>,
}

impl Ring {
    /// A ring over `peers`; duplicates count once.
    pub fn new<I: IntoIterator<Item = String>>(peers: I) -> Self {
        let mut nodes = RendezvousNodes::new(PinnedHasher);
        for peer in peers {
            nodes.insert(IdNode::new(peer));
        }
        Ring { nodes }
    }

    /// The peer that owns `key`: the one with the highest score. Computed here rather than
    /// as `ranking(key)[0]`, because every cache hit names the owner in a header, and
    /// sorting a fresh `Vec` of peers for that is work thrown away.
    pub fn owner(&self, key: &str) -> &str {
        self.peers()
            .max_by_key(|peer| (score(key, peer), *peer))
            .expect("a ring always has at least one peer: the node itself")
    }

    /// Every peer, best first, for `key`. The second in line is who would own the key if
    /// the owner left the list.
    pub fn ranking(&self, key: &str) -> Vec<&str> {
        self.nodes
            .calc_candidates(&key)
            .map(|node| (**node).as_str())
            .collect()
    }

    /// Every peer with its score for `key`, best first: the whole of rendezvous hashing in
    /// three lines. Each peer's score is a hash of (key, peer); sort by it, highest first
    /// (ties, which a 64-bit hash all but never has, go to the larger name). The crate's
    /// `calc_candidates` does exactly this, and a test below holds the two to it.
    pub fn scores(&self, key: &str) -> Vec<(&str, u64)> {
        let mut scored: Vec<(&str, u64)> = self.peers().map(|p| (p, score(key, p))).collect();
        scored.sort_by(|a, b| (b.1, b.0).cmp(&(a.1, a.0)));
        scored
    }

    /// The peers, in the order they were given.
    pub fn peers(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|node| (**node).as_str())
    }
}

/// SipHash-1-3 with fixed keys. Changing these keys moves every key to a new owner.
struct PinnedHasher;

/// Any fixed pair would do. This one ("groupcac", "he-lab!#") was picked so that the
/// walkthrough's key `foo` is owned by 8001, the frontend it asks first: its first `cget`
/// loads from the database, its second is a `main` cache hit, and 8002 (asked at 9002) then asks 8001.
const SIP_KEYS: (u64, u64) = (0x6772_6f75_7063_6163, 0x6865_2d6c_6162_2123);

impl NodeHasher<String> for PinnedHasher {
    fn hash<T: Hash>(&self, node: &String, item: &T) -> u64 {
        pinned_hash(item, node)
    }
}

/// A peer's score for a key: SipHash-1-3 (pinned keys) of the key, then the peer's name.
pub fn score(key: &str, peer: &str) -> u64 {
    pinned_hash(key, peer)
}

fn pinned_hash<T: Hash + ?Sized>(item: &T, node: &str) -> u64 {
    let mut hasher = SipHasher13::new_with_keys(SIP_KEYS.0, SIP_KEYS.1);
    // `Hash` for `str` feeds the bytes, then 0xff (which keeps ("ab","c") and ("a","bc")
    // apart). std does not promise that framing forever, but it has not changed since
    // Rust 1.0, and `owners_are_pinned_across_builds` below fails the day it does.
    item.hash(&mut hasher);
    node.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trio() -> Ring {
        Ring::new(["127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003"].map(String::from))
    }

    #[test]
    fn owners_are_pinned_across_builds() {
        // If this fails, the hash changed, and nodes of different builds would disagree.
        let ring = trio();
        let owners: Vec<&str> = ["foo", "bar", "key1", "key2", "key3"]
            .iter()
            .map(|key| ring.owner(key))
            .collect();
        assert_eq!(
            owners,
            [
                "127.0.0.1:8001",
                "127.0.0.1:8002",
                "127.0.0.1:8003",
                "127.0.0.1:8001",
                "127.0.0.1:8002"
            ]
        );
    }

    #[test]
    fn the_ranking_lists_every_peer_once_and_starts_with_the_owner() {
        let ring = trio();
        let ranking = ring.ranking("foo");
        assert_eq!(ranking.len(), 3);
        assert_eq!(ranking[0], ring.owner("foo"));
        let mut sorted = ranking.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 3);
    }

    #[test]
    fn the_scores_sorted_are_the_crates_ranking_and_the_best_is_the_owner() {
        let ring = trio();
        for i in 0..500 {
            let key = format!("key{i}");
            let by_score: Vec<&str> = ring.scores(&key).into_iter().map(|(p, _)| p).collect();
            assert_eq!(by_score, ring.ranking(&key), "{key}");
            assert_eq!(ring.owner(&key), by_score[0], "{key}");
        }
    }

    #[test]
    fn every_peer_owns_about_a_third() {
        let ring = trio();
        let mut counts = std::collections::HashMap::new();
        for i in 0..3000 {
            *counts
                .entry(ring.owner(&format!("key{i}")).to_owned())
                .or_insert(0) += 1;
        }
        for (peer, n) in counts {
            assert!((800..1200).contains(&n), "{peer} owns {n} of 3000");
        }
    }

    #[test]
    fn a_fourth_peer_takes_about_a_quarter_of_the_keys_and_moves_nothing_else() {
        let three = trio();
        let four = Ring::new(
            [
                "127.0.0.1:8001",
                "127.0.0.1:8002",
                "127.0.0.1:8003",
                "127.0.0.1:8004",
            ]
            .map(String::from),
        );
        let mut moved = 0;
        for i in 0..4000 {
            let key = format!("key{i}");
            if three.owner(&key) != four.owner(&key) {
                assert_eq!(
                    four.owner(&key),
                    "127.0.0.1:8004",
                    "{key} moved between old peers"
                );
                moved += 1;
            }
        }
        assert!((800..1200).contains(&moved), "{moved} of 4000 keys moved");
    }
}
