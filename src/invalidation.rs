//! What a frontend knows about changes: the newest version of each recently changed key,
//! and how far along the dbserver's change stream it is.
//!
//! This is the guard against the **stale-set race**, the classic bug of caches that are
//! invalidated by a change stream:
//!
//! ```text
//!   1. a load of foo reads v3 from the dbserver (slowly: the read takes 300 ms)
//!   2. meanwhile foo is set to v5, and the change reaches this node: foo is evicted
//!   3. the load finishes and caches v3, after the eviction: v3 stays, stale, for good
//! ```
//!
//! Step 2 raises foo's **floor** to 5 here; in step 3 the Get path asks
//! [`Invalidation::is_stale`] and refuses v3 (`stale_loads_refused`), because v3 < 5. The
//! check and the insert happen under the same lock as step 2's eviction, so neither can slip
//! between the other's two halves.
//!
//! Facebook's memcache solves the same race with leases (a token handed out on a miss and
//! voided by a delete); a floor needs no token, and also catches the second way in: a peer
//! that has not yet applied the change answering with its old value.
//!
//! Floors are kept for the newest [`FLOORS`] changed keys only: a load would have to stay in
//! flight while that many other keys change before its key's floor is forgotten.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use compact_str::CompactString;
use schnellru::{ByLength, LruMap};
use tokio::sync::watch;

/// How many changed keys keep their floor.
pub const FLOORS: u32 = 100_000;

/// A frontend's view of the change stream.
pub struct Invalidation {
    // std `Mutex`: held for a lookup or an insert, never across an `.await`.
    floors: Mutex<LruMap<CompactString, u64, ByLength>>,
    /// Bumped when every cached value is dropped (the stream could not resume): a load
    /// that began before that must not cache what it read.
    epoch: AtomicU64,
    following: AtomicBool,
    /// The newest version applied; `cli set` waits on it through `GET /applied`.
    applied: watch::Sender<u64>,
}

impl Default for Invalidation {
    fn default() -> Self {
        Invalidation {
            floors: Mutex::new(LruMap::new(ByLength::new(FLOORS))),
            epoch: AtomicU64::new(0),
            following: AtomicBool::new(false),
            applied: watch::Sender::new(0),
        }
    }
}

/// The lock that a change's eviction and a load's insert both hold.
pub struct Floors<'a>(MutexGuard<'a, LruMap<CompactString, u64, ByLength>>);

impl Floors<'_> {
    /// Notes that `key` changed at `version`.
    pub fn raise(&mut self, key: &str, version: u64) {
        match self.0.get(key) {
            Some(floor) => *floor = (*floor).max(version),
            None => {
                self.0.insert(CompactString::from(key), version);
            }
        }
    }

    /// Whether a value of `key` read as of `version`, by a load that began in `epoch`, is
    /// older than what this node knows: then it must not be cached nor answered.
    pub fn is_stale(&self, key: &str, version: u64, epoch: u64, now: u64) -> bool {
        epoch != now || version < self.floor(key)
    }

    /// The newest version of `key` this node has heard of (0: none).
    pub fn floor(&self, key: &str) -> u64 {
        self.0.peek(key).copied().unwrap_or(0)
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

impl Invalidation {
    /// Takes the lock (see [`Floors`]).
    pub fn floors(&self) -> Floors<'_> {
        Floors(self.floors.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The current epoch, for a load to note when it begins.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Starts a new epoch: every load in flight is now stale.
    pub fn new_epoch(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Marks the node as one that follows the stream (`--follow-changes`).
    pub fn follow(&self) {
        self.following.store(true, Ordering::Relaxed);
    }

    pub fn following(&self) -> bool {
        self.following.load(Ordering::Relaxed)
    }

    /// Starts over at `version`, the dbserver's, even if that is lower than before (its data
    /// was replaced): what was applied from the old history means nothing now.
    pub fn restart_at(&self, version: u64) {
        self.applied.send_replace(version);
    }

    /// Records that every change up to `version` has been applied.
    pub fn applied_up_to(&self, version: u64) {
        self.applied.send_if_modified(|applied| {
            let newer = version > *applied;
            if newer {
                *applied = version;
            }
            newer
        });
    }

    /// The newest version applied.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// A receiver that sees each newly applied version.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_older_than_the_floor_is_stale_and_a_new_epoch_makes_everything_stale() {
        let inv = Invalidation::default();
        let began = inv.epoch();
        inv.floors().raise("foo", 5);
        inv.floors().raise("foo", 4); // an older change never lowers the floor
        let now = inv.epoch();
        assert!(inv.floors().is_stale("foo", 3, began, now));
        assert!(!inv.floors().is_stale("foo", 5, began, now));
        assert!(!inv.floors().is_stale("bar", 1, began, now));
        inv.new_epoch();
        assert!(inv.floors().is_stale("bar", 1, began, inv.epoch()));
    }
}
