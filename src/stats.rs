//! groupcache's counters, with groupcache's names.
//!
//! Each counter answers one question a learner asks while watching the lab:
//! did the request hit the cache, did it go to a peer, did it go to the database, how many
//! requests were folded into one load. `GET /stats` on a frontend returns [`NodeStats`],
//! and `gclab cli stats` prints them as a table.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::cache::CacheStats;
use crate::faults::FaultStats;

/// The live counters of one frontend. Atomics, not a `Mutex<Counters>`: each counter moves
/// on its own, and readers only ever want a recent snapshot.
#[derive(Debug, Default)]
pub struct Stats {
    /// Every Get, from a client or a peer.
    pub gets: AtomicU64,
    /// Gets answered from the main or hot cache.
    pub cache_hits: AtomicU64,
    /// Answers from a peer: the owner, or the next in line when the owner was down.
    /// A "no such key" answer counts too: the peer answered.
    pub peer_loads: AtomicU64,
    /// Peer calls that failed (the value was then loaded another way).
    pub peer_errors: AtomicU64,
    /// Gets that missed the cache and went to `load`.
    pub loads: AtomicU64,
    /// Loads left after singleflight folded concurrent ones together.
    pub loads_deduped: AtomicU64,
    /// Loads from the dbserver by this node, "no such key" answers included (groupcache
    /// counts a getter's not-found as an error; here the dbserver did answer).
    pub local_loads: AtomicU64,
    /// dbserver loads that failed.
    pub local_load_errs: AtomicU64,
    /// Gets that came from a peer over tarpc.
    pub server_requests: AtomicU64,
    /// Loads that went past a key's owner because it was down (not a groupcache counter).
    pub failovers: AtomicU64,
    /// Changes read from the dbserver's change stream (`--follow-changes`).
    pub changes_applied: AtomicU64,
    /// Changes that dropped a cached value.
    pub evictions_by_change: AtomicU64,
    /// Loads refused because a newer change arrived while they loaded (the stale-set race).
    pub stale_loads_refused: AtomicU64,
    /// Times the list of peers changed (`--peers-from`), and the ring with it.
    pub membership_changes: AtomicU64,
    /// Keys whose owner changed, asked of the previous owner's cache before the dbserver
    /// (the warm hand-off), and how many of those it had.
    pub peer_peeks: AtomicU64,
    pub peer_peek_hits: AtomicU64,
    /// Blobs refused because their bytes did not hash to their key (`crate::blob`), from
    /// the dbserver or a peer (not a groupcache counter: its keys name no bytes).
    pub integrity_errors: AtomicU64,
}

impl Stats {
    /// Adds one to `counter`. Relaxed ordering: the counters order nothing, they count.
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot of node `node`, together with its two caches' counters.
    pub fn snapshot(&self, node: &str, main_cache: CacheStats, hot_cache: CacheStats) -> NodeStats {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        NodeStats {
            node: node.to_owned(),
            gets: read(&self.gets),
            cache_hits: read(&self.cache_hits),
            peer_loads: read(&self.peer_loads),
            peer_errors: read(&self.peer_errors),
            loads: read(&self.loads),
            loads_deduped: read(&self.loads_deduped),
            local_loads: read(&self.local_loads),
            local_load_errs: read(&self.local_load_errs),
            server_requests: read(&self.server_requests),
            failovers: read(&self.failovers),
            following: false,
            changes_applied: read(&self.changes_applied),
            evictions_by_change: read(&self.evictions_by_change),
            stale_loads_refused: read(&self.stale_loads_refused),
            membership_changes: read(&self.membership_changes),
            peer_peeks: read(&self.peer_peeks),
            peer_peek_hits: read(&self.peer_peek_hits),
            integrity_errors: read(&self.integrity_errors),
            peers: Vec::new(),
            last_version_applied: 0,
            faults: FaultStats::default(),
            main_cache,
            hot_cache,
        }
    }
}

/// The environment variable `gclab up --restart` sets on its children.
pub const RESTARTED_BY_UP: &str = "GCLAB_RESTARTED_BY_UP";

/// What `GET /stats` on a frontend returns.
///
/// One thing that surprises: `gets` counts Gets, while `main_cache.gets` counts lookups in
/// the main cache, and a Get that misses looks twice, once in `lookup_cache` and once more
/// inside its flight (the re-check in `Group::load`). So after one cold Get, `gets` is 1
/// and `main_cache.gets` is 2. Likewise a Get that finds the value on that re-check counts
/// in `loads` and in `cache_hits`, so `cache_hits + loads` can be more than `gets`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStats {
    /// The node's name: its peer address, as the ring and the log lines name it.
    #[serde(default)]
    pub node: String,
    pub gets: u64,
    pub cache_hits: u64,
    pub peer_loads: u64,
    pub peer_errors: u64,
    pub loads: u64,
    pub loads_deduped: u64,
    pub local_loads: u64,
    pub local_load_errs: u64,
    pub server_requests: u64,
    pub failovers: u64,
    /// Whether the node follows the dbserver's change stream.
    #[serde(default)]
    pub following: bool,
    #[serde(default)]
    pub changes_applied: u64,
    #[serde(default)]
    pub evictions_by_change: u64,
    #[serde(default)]
    pub stale_loads_refused: u64,
    #[serde(default)]
    pub membership_changes: u64,
    #[serde(default)]
    pub peer_peeks: u64,
    #[serde(default)]
    pub peer_peek_hits: u64,
    /// Left out while 0, like `faults`: a lab that stores no blobs sees the table it did.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub integrity_errors: u64,
    /// The peers this node knows now, sorted, itself included.
    #[serde(default)]
    pub peers: Vec<String>,
    /// The newest version of the change stream this node has applied.
    #[serde(default)]
    pub last_version_applied: u64,
    /// The fault rules set on the node (`cli fault`), and the calls they hurt; left out
    /// while nothing has been set, so that the groupcache counters read as they always did.
    #[serde(default, skip_serializing_if = "FaultStats::is_quiet")]
    pub faults: FaultStats,
    pub main_cache: CacheStats,
    pub hot_cache: CacheStats,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What `GET /stats` on the dbserver returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbStats {
    /// Reads served (each one paid the delay).
    pub gets: u64,
    /// Writes acknowledged (each one flushed to disk).
    pub sets: u64,
    /// Deletes acknowledged.
    #[serde(default)]
    pub deletes: u64,
    /// Keys stored.
    pub keys: u64,
    /// The version of the newest write: it grows with every set and delete, and never
    /// goes back, not even across a crash.
    #[serde(default)]
    pub version: u64,
    /// The oldest version the change log still holds (0: none yet).
    #[serde(default)]
    pub oldest_change: u64,
    /// Change streams open now.
    #[serde(default)]
    pub followers: u64,
    /// Followers dropped because they fell too far behind.
    #[serde(default)]
    pub followers_dropped: u64,
}
