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
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use compact_str::CompactString;
use schnellru::{LruMap, Unlimited};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// One LRU cache with byte accounting. Cheap to share: every method takes `&self`.
pub struct Cache {
    // std `Mutex`, not an `RwLock`: even a hit writes, because it moves the entry to the
    // front of the LRU list. No `.await` happens while it is held.
    inner: Mutex<Inner>,
    /// Whether entries carry an expiry (`--ttl`); see [`Cache::add`].
    expiring: bool,
    /// Expiries are kept as nanoseconds after this moment.
    born: Instant,
}

struct Inner {
    // `CompactString`, not `String`: most keys are short, and a short one then lives in the
    // entry itself instead of in an allocation of its own (1.5 MiB less for 100,000 keys).
    // Each value is stored with a small header in front: see `Cache::add`.
    lru: LruMap<CompactString, Bytes, Unlimited>,
    bytes: usize,
    stats: CacheStats,
}

/// What the cache holds for a key: the value, the version of the write that stored it, and,
/// under `--ttl`, when it stops being served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Bytes,
    pub version: u64,
    pub expires: Option<Instant>,
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
        Cache::new(false)
    }
}

impl Cache {
    /// An empty cache; `expiring` if its entries carry an expiry (`--ttl`).
    pub fn new(expiring: bool) -> Cache {
        Cache {
            inner: Mutex::new(Inner {
                lru: LruMap::new(Unlimited),
                bytes: 0,
                stats: CacheStats::default(),
            }),
            expiring,
            born: Instant::now(),
        }
    }

    /// The bytes in front of each stored value: its version, and its expiry if entries
    /// have one.
    fn header(&self) -> usize {
        if self.expiring {
            16
        } else {
            8
        }
    }

    fn version_of(stored: &[u8]) -> u64 {
        u64::from_be_bytes(stored[..8].try_into().expect("every entry has a header"))
    }

    /// What an entry costs: its key plus its value, as in groupcache (not the header).
    fn cost(&self, key: &str, stored: &Bytes) -> usize {
        key.len() + stored.len() - self.header()
    }

    /// Looks `key` up and marks it recently used. An entry past its expiry is a miss (it
    /// stays until the load that replaces it, or the LRU, removes it).
    pub fn get(&self, key: &str) -> Option<Entry> {
        let mut inner = self.lock();
        inner.stats.gets += 1;
        let stored = inner.lru.get(key)?;
        let expires = self.expiring.then(|| {
            let nanos = u64::from_be_bytes(stored[8..16].try_into().expect("header of 16"));
            // u64::MAX nanoseconds (584 years) stands for "never".
            self.born.checked_add(Duration::from_nanos(nanos))
        });
        let expires = expires.flatten();
        // The clock is read only for a cache whose entries expire: a hit of the others
        // does not pay for it. tokio's clock, not std's, so a test can pause it and step
        // past a TTL.
        if expires.is_some_and(|at| Instant::now() >= at) {
            return None;
        }
        let entry = Entry {
            version: Self::version_of(stored),
            expires,
            // A slice of the stored bytes: no copy, one reference count more.
            value: stored.slice(self.header()..),
        };
        inner.stats.hits += 1;
        Some(entry)
    }

    /// Adds or replaces `key`, keeping a copy of the value. Never evicts: the caller
    /// enforces the budget.
    ///
    /// The copy is of exactly the value's size, with the version (and the expiry) in a
    /// header in front of it, in the same allocation. A `Bytes` that came off the network
    /// is often a slice of the connection's whole read buffer (kilobytes), and keeping the
    /// slice keeps the buffer: measured in bench/, 100,000 cached 100-byte values held
    /// 540 MiB that way, against the 11 MB the cache believed it held. The header rides in
    /// that allocation rather than as fields beside the value: fields would widen every
    /// slot of the hash table (3.3 MiB more for 100,000 keys in bench/rss.sh), where 8
    /// bytes in front of a 100-byte value stay inside jemalloc's 112-byte size class.
    pub fn add(&self, key: &str, entry: Entry) {
        let mut stored = BytesMut::with_capacity(self.header() + entry.value.len());
        stored.put_u64(entry.version);
        if self.expiring {
            let at = entry.expires.map_or(u64::MAX, |at| {
                u64::try_from(at.saturating_duration_since(self.born).as_nanos())
                    .unwrap_or(u64::MAX)
            });
            stored.put_u64(at);
        }
        stored.put_slice(&entry.value);
        let stored = stored.freeze();
        let mut inner = self.lock();
        let added = self.cost(key, &stored);
        match inner.lru.get(key) {
            Some(slot) => {
                let old = std::mem::replace(slot, stored);
                inner.bytes -= self.cost(key, &old);
            }
            None => {
                inner.lru.insert(CompactString::from(key), stored);
            }
        }
        inner.bytes += added;
    }

    /// Evicts the least recently used entry; false if the cache was empty.
    pub fn remove_oldest(&self) -> bool {
        let mut inner = self.lock();
        match inner.lru.pop_oldest() {
            Some((key, stored)) => {
                inner.bytes -= self.cost(&key, &stored);
                inner.stats.evictions += 1;
                true
            }
            None => false,
        }
    }

    /// Removes `key` if it holds a version older than `version`; true if it did.
    pub fn remove_older(&self, key: &str, version: u64) -> bool {
        let mut inner = self.lock();
        if inner
            .lru
            .peek(key)
            .is_some_and(|stored| Self::version_of(stored) < version)
        {
            if let Some(stored) = inner.lru.remove(key) {
                inner.bytes -= self.cost(key, &stored);
                return true;
            }
        }
        false
    }

    /// Removes every entry; returns how many there were.
    pub fn clear(&self) -> u64 {
        let mut inner = self.lock();
        let items = inner.lru.len() as u64;
        inner.lru.clear();
        inner.bytes = 0;
        items
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

    fn entry(value: &'static [u8]) -> Entry {
        Entry {
            value: Bytes::from_static(value),
            version: 1,
            expires: None,
        }
    }

    #[test]
    fn counts_bytes_of_keys_and_values_and_replaces_in_place() {
        let cache = Cache::default();
        cache.add("foo", entry(b"bar"));
        cache.add("k", entry(b"12345"));
        assert_eq!(cache.bytes(), 6 + 6);
        cache.add("foo", entry(b"barbar"));
        assert_eq!(cache.bytes(), 9 + 6);
        assert_eq!(cache.stats().items, 2);
    }

    #[test]
    fn evicts_the_least_recently_used_and_counts_it() {
        let cache = Cache::default();
        cache.add("a", entry(b"1"));
        cache.add("b", entry(b"2"));
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

    #[test]
    fn an_older_version_is_removed_and_a_newer_one_stays() {
        let cache = Cache::default();
        cache.add("a", entry(b"1")); // version 1
        assert!(!cache.remove_older("a", 1));
        assert!(cache.remove_older("a", 2));
        assert_eq!((cache.bytes(), cache.stats().items), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_entry_is_a_miss() {
        let cache = Cache::new(true);
        let at = Instant::now() + Duration::from_secs(1);
        cache.add(
            "a",
            Entry {
                expires: Some(at),
                ..entry(b"1")
            },
        );
        assert!(cache.get("a").is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(cache.get("a").is_none());
        assert_eq!(cache.stats().hits, 1);
    }
}
