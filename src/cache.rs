//! A byte-counting LRU cache: groupcache's `cache` type.
//!
//! A frontend has two of them, `main` (keys it owns) and `hot` (popular keys owned by
//! others). Each counts the bytes it holds (key + value, as groupcache does) and its own
//! gets, hits and evictions. The budget over both lives in the Get path
//! (`Group::populate_cache`), because deciding *which* cache gives way is policy, not
//! bookkeeping.
//!
//! The LRU list itself comes from the `schnellru` crate: keeping a linked list and a map in
//! step is not the lesson here. schnellru rather than the `lru` crate, because it keeps each
//! entry inside its hash table, linked by index, where `lru` allocates a node per entry:
//! measured in bench/rss.sh, that is about 30 bytes a key less, on entries of ~110 bytes.

use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use compact_str::CompactString;
use schnellru::{LruMap, Unlimited};
use serde::{Deserialize, Serialize};

/// One LRU cache with byte accounting. Cheap to share: every method takes `&self`.
pub struct Cache {
    // std `Mutex`, not an `RwLock`: even a hit writes, because it moves the entry to the
    // front of the LRU list. No `.await` happens while it is held.
    inner: Mutex<Inner>,
}

struct Inner {
    // `CompactString`, not `String`: most keys are short, and a short one then lives in the
    // entry itself instead of in an allocation of its own (1.5 MiB less for 100,000 keys).
    lru: LruMap<CompactString, Bytes, Unlimited>,
    bytes: usize,
    stats: CacheStats,
}

/// A cache's counters, as `GET /stats` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    /// Bytes held: keys plus values.
    pub bytes: u64,
    /// Entries held.
    pub items: u64,
    /// Lookups.
    pub gets: u64,
    /// Lookups that found the key.
    pub hits: u64,
    /// Entries removed to stay within the byte budget.
    pub evictions: u64,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            inner: Mutex::new(Inner {
                lru: LruMap::new(Unlimited),
                bytes: 0,
                stats: CacheStats::default(),
            }),
        }
    }
}

/// What an entry costs: its key plus its value, as in groupcache.
fn entry_bytes(key: &str, value: &Bytes) -> usize {
    key.len() + value.len()
}

impl Cache {
    /// Looks `key` up and marks it recently used.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        let mut inner = self.lock();
        inner.stats.gets += 1;
        let value = inner.lru.get(key).map(|v| v.clone());
        if value.is_some() {
            inner.stats.hits += 1;
        }
        value
    }

    /// Adds or replaces `key`. Never evicts: the caller enforces the budget.
    pub fn add(&self, key: &str, value: Bytes) {
        let mut inner = self.lock();
        let added = entry_bytes(key, &value);
        match inner.lru.get(key) {
            Some(slot) => {
                let old = std::mem::replace(slot, value);
                inner.bytes -= entry_bytes(key, &old);
            }
            None => {
                inner.lru.insert(CompactString::from(key), value);
            }
        }
        inner.bytes += added;
    }

    /// Evicts the least recently used entry; false if the cache was empty.
    pub fn remove_oldest(&self) -> bool {
        let mut inner = self.lock();
        match inner.lru.pop_oldest() {
            Some((key, value)) => {
                inner.bytes -= entry_bytes(&key, &value);
                inner.stats.evictions += 1;
                true
            }
            None => false,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            bytes: inner.bytes as u64,
            items: inner.lru.len() as u64,
            ..inner.stats
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // No code panics while holding the lock, and the data stays consistent if one
        // did, so a poisoned lock is taken over rather than turned into a second panic.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_bytes_of_keys_and_values_and_replaces_in_place() {
        let cache = Cache::default();
        cache.add("foo", Bytes::from_static(b"bar"));
        cache.add("k", Bytes::from_static(b"12345"));
        assert_eq!(cache.bytes(), 6 + 6);
        cache.add("foo", Bytes::from_static(b"barbar"));
        assert_eq!(cache.bytes(), 9 + 6);
        assert_eq!(cache.stats().items, 2);
    }

    #[test]
    fn evicts_the_least_recently_used_and_counts_it() {
        let cache = Cache::default();
        cache.add("a", Bytes::from_static(b"1"));
        cache.add("b", Bytes::from_static(b"2"));
        assert!(cache.get("a").is_some()); // "b" is now the oldest
        assert!(cache.remove_oldest());
        assert!(cache.get("b").is_none());
        assert!(cache.get("a").is_some());
        assert!(cache.remove_oldest());
        assert!(!cache.remove_oldest());
        let stats = cache.stats();
        assert_eq!((stats.bytes, stats.items, stats.evictions), (0, 0, 2));
        assert_eq!((stats.gets, stats.hits), (3, 2));
    }
}
