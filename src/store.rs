//! The dbserver's store: values with versions, and the change log a frontend follows.
//!
//! Every write (a set or a delete) takes the next **version**: one number for the whole
//! store, growing with every write, which never goes back. Two sled trees hold it:
//!
//! ```text
//! values   key             → version (8 bytes, big-endian) ++ value
//! changes  version (8 B)   → op (1 byte: set or delete) ++ key
//! ```
//!
//! A write changes both trees in one sled transaction, so a value and its entry in the log
//! are on disk together or not at all, and the store's version is the newest key in
//! `changes`. The log keeps the newest `change_log` entries (at least one, so the version
//! survives a restart); older ones are removed as new ones come.
//! Keys stored by the lab's earlier releases, in sled's default tree without versions, are
//! given versions when the store opens.
//!
//! A write is acknowledged only after sled has flushed it, and only then **published** to
//! the followers (the frontends' `GET /changes` streams): a frontend never hears of a write
//! that a crash could still undo. Each follower has a bounded queue, filled with `try_send`:
//! a follower that does not keep up is dropped (and reconnects, resuming from its version)
//! rather than slowing writes down for everyone.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use tokio::sync::mpsc;

use crate::stats::DbStats;

/// How many changes the log keeps by default: at a write a millisecond, about 100 s of
/// history for a frontend that lost its stream to catch up from.
pub const CHANGE_LOG: u64 = 100_000;

/// How many change lines wait for one follower before it counts as stuck and is dropped.
pub const FOLLOWER_QUEUE: usize = 4096;

/// A value and the version of the write that stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Bytes,
    pub version: u64,
}

/// One line of the change stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub version: u64,
    pub key: String,
    pub op: Op,
}

/// What a write did to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Set,
    Del,
}

impl Op {
    fn byte(self) -> u8 {
        match self {
            Op::Set => b's',
            Op::Del => b'd',
        }
    }
}

/// Why a stream cannot start where the follower asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Gap {
    /// The log no longer holds the changes right after `since`.
    #[error("the change log no longer holds the changes after v{since}: its oldest is v{oldest}")]
    Trimmed { since: u64, oldest: u64 },
    /// The follower is ahead of this store: it followed another store, or one whose data
    /// was deleted.
    #[error("v{since} is ahead of this store, which is at v{current}")]
    Ahead { since: u64, current: u64 },
}

/// A follower's stream: the changes to replay from the log, then its live queue.
pub struct Subscription {
    /// Replay the log's changes in `replay` (versions), then read `live`.
    pub replay: std::ops::RangeInclusive<u64>,
    pub live: mpsc::Receiver<Bytes>,
}

/// The store and its counters, shared by every request.
pub struct Store {
    values: sled::Tree,
    changes: sled::Tree,
    db: sled::Db,
    delay: Duration,
    change_log: u64,
    follower_queue: usize,
    /// Held while a write takes its version and commits, so versions commit in order.
    /// std `Mutex`, not tokio's: no `.await` happens while it is held.
    writing: Mutex<u64>,
    followers: Mutex<Followers>,
    gets: AtomicU64,
    sets: AtomicU64,
    deletes: AtomicU64,
    keys: AtomicU64,
    followers_dropped: AtomicU64,
}

/// What has been published, and to whom.
struct Followers {
    /// Every change up to this version has gone to the followers.
    published: u64,
    /// Changes committed but not yet published (their flush is under way), by version.
    /// Kept here, not read back from the log, since the log may already have trimmed them.
    pending: std::collections::BTreeMap<u64, Bytes>,
    queues: Vec<mpsc::Sender<Bytes>>,
}

/// Why the store could not open.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the data dir {dir}: {reason}")]
pub struct OpenError {
    dir: String,
    reason: String,
}

/// Opens sled, waiting up to a second for the directory's lock: a dbserver restarted right
/// after `kill -9` of the previous one can otherwise find the lock not yet released by the
/// kernel. A lock still held after that belongs to a live dbserver.
fn open_sled(dir: &Path) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    loop {
        match sled::open(dir) {
            Err(e) if is_locked(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            opened => return opened,
        }
    }
}

/// sled reports a held lock only in its message, not in the error kind.
fn is_locked(error: &sled::Error) -> bool {
    error.to_string().contains("could not acquire lock")
}

fn be(version: u64) -> [u8; 8] {
    version.to_be_bytes()
}

fn from_be(bytes: &[u8]) -> u64 {
    let mut word = [0; 8];
    let n = bytes.len().min(8);
    word[..n].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(word)
}

impl Store {
    /// Opens (or creates) the store in `dir`; every read will wait `delay`; the change log
    /// keeps the newest `change_log` changes.
    pub fn open(dir: &Path, delay: Duration, change_log: u64) -> Result<Store, OpenError> {
        let opened = open_sled(dir).and_then(|db| {
            let values = db.open_tree("values")?;
            let changes = db.open_tree("changes")?;
            Ok((db, values, changes))
        });
        let (db, values, changes) = opened.map_err(|e| OpenError {
            // Whole, since a relative `gclab-data` depends on where the dbserver was started.
            dir: std::path::absolute(dir)
                .unwrap_or_else(|_| dir.to_owned())
                .display()
                .to_string(),
            reason: if is_locked(&e) {
                "it is locked — is another dbserver using it?".to_owned()
            } else {
                e.to_string()
            },
        })?;
        let version = match changes.last() {
            Ok(last) => last.map_or(0, |(k, _)| from_be(&k)),
            Err(e) => {
                return Err(OpenError {
                    dir: dir.display().to_string(),
                    reason: e.to_string(),
                })
            }
        };
        // sled's `len` walks the whole tree, so count once here and keep the count up to
        // date on each write, instead of walking on every `GET /stats`.
        let keys = AtomicU64::new(values.len() as u64);
        let store = Store {
            values,
            changes,
            db,
            delay,
            change_log: change_log.max(1),
            follower_queue: FOLLOWER_QUEUE,
            writing: Mutex::new(version),
            followers: Mutex::new(Followers {
                published: version,
                pending: Default::default(),
                queues: Vec::new(),
            }),
            gets: AtomicU64::default(),
            sets: AtomicU64::default(),
            deletes: AtomicU64::default(),
            keys,
            followers_dropped: AtomicU64::default(),
        };
        store.trim_log(version).map_err(|e| OpenError {
            dir: dir.display().to_string(),
            reason: format!("cannot trim the change log: {e}"),
        })?;
        store.adopt_unversioned().map_err(|e| OpenError {
            dir: dir.display().to_string(),
            reason: format!("cannot give versions to the keys stored before them: {e}"),
        })?;
        Ok(store)
    }

    /// Removes the log's entries older than the newest `change_log`: more may be there if
    /// the dbserver ran with a larger `--change-log` before (each write trims just one).
    fn trim_log(&self, newest: u64) -> sled::Result<()> {
        let Some(keep_from) = newest.checked_sub(self.change_log - 1) else {
            return Ok(());
        };
        for entry in self.changes.range(..be(keep_from)) {
            self.changes.remove(entry?.0)?;
        }
        Ok(())
    }

    /// Keys written before versions existed (the lab's earlier releases) live in sled's
    /// default tree, without one: each gets a version here, as if it had just been written,
    /// so that an upgrade loses no data.
    fn adopt_unversioned(&self) -> sled::Result<()> {
        let mut adopted = 0;
        for entry in self.db.iter() {
            let (key, value) = entry?;
            // Every key was checked to be UTF-8 when it was written; anything else is not ours.
            if let Ok(key) = std::str::from_utf8(&key) {
                self.write(key, Op::Set, &value)?;
                adopted += 1;
            }
            self.db.remove(&key)?;
        }
        if adopted > 0 {
            self.db.flush()?;
            let last = *lock(&self.writing);
            let mut followers = lock(&self.followers);
            followers.published = last;
            followers.pending.clear(); // flushed above, and nobody follows yet
            tracing::info!("gave versions to {adopted} keys stored before versions existed");
        }
        Ok(())
    }

    /// A follower whose queue holds more than `lines` change lines is dropped (tests make
    /// it small, to see a stuck follower dropped after a few writes).
    pub fn with_follower_queue(mut self, lines: usize) -> Store {
        self.follower_queue = lines.max(1);
        self
    }

    /// Reads `key`, then answers after the injected delay.
    ///
    /// Read first, then wait, not the other way round: the value is as of the moment the
    /// request arrived, and then it travels slowly, like an answer from a far-away or busy
    /// database. A write during the wait is what makes the stale-set race (lab page 10).
    pub async fn get(&self, key: &str) -> Result<Option<Versioned>, sled::Error> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        let found = self.values.get(key)?.map(|stored| Versioned {
            version: from_be(&stored[..8.min(stored.len())]),
            value: Bytes::copy_from_slice(stored.get(8..).unwrap_or_default()),
        });
        // A write committed but not yet flushed (a value, or a delete's absence) is not
        // handed out before it is on disk: a crash would undo it, and its version would be
        // given to another write. Publishing it stays the writer's job.
        if *lock(&self.writing) > self.version() {
            self.flush().await?;
        }
        tokio::time::sleep(self.delay).await;
        Ok(found)
    }

    /// Writes `key` and returns its version once the write is on disk.
    pub async fn set(&self, key: &str, value: &[u8]) -> Result<u64, sled::Error> {
        let version = self
            .write(key, Op::Set, value)?
            .expect("a set always writes");
        self.sets.fetch_add(1, Ordering::Relaxed);
        self.flush_and_publish(version).await?;
        Ok(version)
    }

    /// Deletes `key`; `None` if there was no such key (nothing is written then).
    pub async fn delete(&self, key: &str) -> Result<Option<u64>, sled::Error> {
        let Some(version) = self.write(key, Op::Del, &[])? else {
            return Ok(None);
        };
        self.deletes.fetch_add(1, Ordering::Relaxed);
        self.flush_and_publish(version).await?;
        Ok(Some(version))
    }

    /// Takes the next version and commits the value and its change-log entry together.
    /// `None` for a delete of a key that does not exist: nothing is written, and no version
    /// is used up (decided inside the transaction, so two deletes cannot both succeed).
    fn write(&self, key: &str, op: Op, value: &[u8]) -> Result<Option<u64>, sled::Error> {
        let mut last = lock(&self.writing);
        let version = *last + 1;
        let mut stored = Vec::with_capacity(8 + value.len());
        stored.extend_from_slice(&be(version));
        stored.extend_from_slice(value);
        let mut change = Vec::with_capacity(1 + key.len());
        change.push(op.byte());
        change.extend_from_slice(key.as_bytes());
        let trim = version.checked_sub(self.change_log).map(be);
        let existed = (&self.values, &self.changes).transaction(|(values, changes)| {
            let existed = match op {
                Op::Set => values.insert(key.as_bytes(), stored.as_slice())?,
                Op::Del => values.remove(key.as_bytes())?,
            }
            .is_some();
            if op == Op::Del && !existed {
                return Err(ConflictableTransactionError::Abort(()));
            }
            changes.insert(&be(version), change.as_slice())?;
            if let Some(old) = trim {
                changes.remove(&old)?;
            }
            Ok::<_, ConflictableTransactionError<()>>(existed)
        });
        let existed = match existed {
            Ok(existed) => existed,
            Err(TransactionError::Abort(())) => return Ok(None), // no such key to delete
            Err(TransactionError::Storage(e)) => return Err(e),
        };
        match (op, existed) {
            (Op::Set, false) => self.keys.fetch_add(1, Ordering::Relaxed),
            (Op::Del, true) => self.keys.fetch_sub(1, Ordering::Relaxed),
            _ => 0,
        };
        *last = version;
        // Lock order, everywhere: `writing`, then `followers`.
        lock(&self.followers).pending.insert(
            version,
            line(&Change {
                version,
                key: key.to_owned(),
                op,
            }),
        );
        Ok(Some(version))
    }

    /// Flushes, then publishes every change up to `version` that has not gone out yet.
    ///
    /// Two writers may finish their flushes out of order; whichever publishes first sends
    /// both changes, in version order (its flush covered the earlier write too), so the
    /// followers always see versions in order.
    async fn flush_and_publish(&self, version: u64) -> Result<(), sled::Error> {
        self.flush().await?;
        let mut followers = lock(&self.followers);
        if version <= followers.published {
            return Ok(());
        }
        let later = followers.pending.split_off(&(version + 1));
        let ready = std::mem::replace(&mut followers.pending, later);
        let newest = ready.keys().next_back().copied().unwrap_or(0);
        for line in ready.into_values() {
            // `try_send`, never `send().await`: waiting here would make every write as
            // slow as the slowest follower.
            followers
                .queues
                .retain(|queue| match queue.try_send(line.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Closed(_)) => false, // it hung up
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        self.followers_dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            "dropped a change-stream follower that fell {} changes behind; it \
                         resumes from its last version when it reconnects",
                            self.follower_queue
                        );
                        false
                    }
                });
        }
        // The newest line sent, not `version`: a line committed but not yet in `pending`
        // must still go out with its own writer's publish.
        followers.published = followers.published.max(newest);
        Ok(())
    }

    /// The change lines for the versions in `range`, read from the log.
    pub fn lines(
        &self,
        range: std::ops::RangeInclusive<u64>,
    ) -> impl Iterator<Item = Result<Bytes, sled::Error>> + '_ {
        let (from, to) = (be(*range.start()), be(*range.end()));
        self.changes.range(from..=to).map(|entry| {
            let (version, change) = entry?;
            Ok(line(&Change {
                version: from_be(&version),
                key: String::from_utf8_lossy(&change[1..]).into_owned(),
                op: if change.first() == Some(&b'd') {
                    Op::Del
                } else {
                    Op::Set
                },
            }))
        })
    }

    /// Starts a follower at `since` (`None`: from now on). Its queue is registered under
    /// the same lock that publishing takes, so every change after `since` is either in the
    /// log range it replays or in its queue, never both, never neither.
    pub fn follow(&self, since: Option<u64>) -> Result<(u64, Subscription), Gap> {
        let mut followers = lock(&self.followers);
        let current = followers.published;
        let since = since.unwrap_or(current);
        if since > current {
            return Err(Gap::Ahead { since, current });
        }
        let oldest = self.oldest_change().unwrap_or(current + 1);
        if since + 1 < oldest && since < current {
            return Err(Gap::Trimmed { since, oldest });
        }
        let (tx, rx) = mpsc::channel(self.follower_queue);
        followers.queues.retain(|queue| !queue.is_closed()); // those that hung up since
        followers.queues.push(tx);
        Ok((
            current,
            Subscription {
                replay: since + 1..=current,
                live: rx,
            },
        ))
    }

    /// Ends every follower's stream (the dbserver is stopping).
    pub fn end_streams(&self) {
        lock(&self.followers).queues.clear();
    }

    /// The oldest version the change log still holds.
    fn oldest_change(&self) -> Option<u64> {
        self.changes
            .first()
            .ok()
            .flatten()
            .map(|(k, _)| from_be(&k))
    }

    /// Flushes everything written so far to disk.
    ///
    /// sled's blocking `flush` on tokio's blocking pool, not sled's own `flush_async`: with
    /// a few dozen concurrent callers, `flush_async` in sled 0.34 stalls for many seconds
    /// (measured here: 64 concurrent writes had not finished after 20 s, against 23 ms this
    /// way). Concurrent flushes share sled's work: a flush that finds nothing dirty is cheap.
    pub async fn flush(&self) -> Result<(), sled::Error> {
        let db = self.db.clone();
        match tokio::task::spawn_blocking(move || db.flush()).await {
            Ok(flushed) => flushed.map(drop),
            Err(join_error) => Err(sled::Error::ReportableBug(format!(
                "flush task failed: {join_error}"
            ))),
        }
    }

    /// The newest version published.
    pub fn version(&self) -> u64 {
        lock(&self.followers).published
    }

    /// The counters.
    pub fn stats(&self) -> DbStats {
        let (version, followers) = {
            let mut f = lock(&self.followers);
            f.queues.retain(|queue| !queue.is_closed());
            (f.published, f.queues.len() as u64)
        };
        DbStats {
            gets: self.gets.load(Ordering::Relaxed),
            sets: self.sets.load(Ordering::Relaxed),
            deletes: self.deletes.load(Ordering::Relaxed),
            keys: self.keys.load(Ordering::Relaxed),
            version,
            oldest_change: self.oldest_change().unwrap_or(0),
            followers,
            followers_dropped: self.followers_dropped.load(Ordering::Relaxed),
        }
    }
}

/// One change as a line of JSON.
pub fn line(change: &Change) -> Bytes {
    let mut text = serde_json::to_vec(change).expect("a change is plain data and serializes");
    text.push(b'\n');
    Bytes::from(text)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held; a poisoned one is taken over.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn a_follower_gets_every_change_in_order_even_when_the_log_keeps_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(dir.path(), Duration::ZERO, 1).unwrap());
        let (_, mut sub) = store.follow(None).unwrap();
        let writes: Vec<_> = (0..40)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.set(&format!("k{}", i % 3), b"v").await })
            })
            .collect();
        for write in writes {
            write.await.unwrap().unwrap();
        }
        let mut versions = Vec::new();
        while let Ok(line) = sub.live.try_recv() {
            let change: Change = serde_json::from_slice(&line).unwrap();
            versions.push(change.version);
        }
        assert_eq!(versions, (1..=40).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn of_two_deletes_of_one_key_one_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(dir.path(), Duration::ZERO, 10).unwrap());
        store.set("k", b"v").await.unwrap();
        let (a, b) = tokio::join!(store.delete("k"), store.delete("k"));
        let mut outcomes = [a.unwrap(), b.unwrap()];
        outcomes.sort();
        assert_eq!(outcomes, [None, Some(2)]);
        assert_eq!(store.stats().keys, 0);
        assert_eq!(
            store.set("k", b"w").await.unwrap(),
            3,
            "the failed delete took no version"
        );
    }

    #[tokio::test]
    async fn keys_stored_before_versions_existed_get_one_and_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let old = sled::open(dir.path()).unwrap();
            old.insert("foo", "bar").unwrap();
            old.flush().unwrap();
        }
        let store = Store::open(dir.path(), Duration::ZERO, 10).unwrap();
        let got = store.get("foo").await.unwrap().unwrap();
        assert_eq!((got.value.as_ref(), got.version), (&b"bar"[..], 1));
        assert_eq!(store.stats().keys, 1);
        assert_eq!(store.set("foo", b"baz").await.unwrap(), 2);
        drop(store);
        let again = Store::open(dir.path(), Duration::ZERO, 10).unwrap();
        assert_eq!(
            again.get("foo").await.unwrap().unwrap().version,
            2,
            "adopted once"
        );
    }

    #[tokio::test]
    async fn every_write_takes_the_next_version_and_the_log_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Duration::ZERO, 2).unwrap();
        assert_eq!(store.set("a", b"1").await.unwrap(), 1);
        assert_eq!(store.set("b", b"2").await.unwrap(), 2);
        assert_eq!(store.delete("a").await.unwrap(), Some(3));
        assert_eq!(store.delete("a").await.unwrap(), None);
        let got = store.get("b").await.unwrap().unwrap();
        assert_eq!((got.value.as_ref(), got.version), (&b"2"[..], 2));
        assert_eq!(store.stats().keys, 1);
        assert_eq!(
            store.follow(Some(0)).err(),
            Some(Gap::Trimmed {
                since: 0,
                oldest: 2
            })
        );
        let (current, sub) = store.follow(Some(1)).unwrap();
        assert_eq!((current, sub.replay), (3, 2..=3));
        let lines: Vec<_> = store.lines(2..=3).map(Result::unwrap).collect();
        assert_eq!(
            lines,
            [
                &b"{\"version\":2,\"key\":\"b\",\"op\":\"set\"}\n"[..],
                &b"{\"version\":3,\"key\":\"a\",\"op\":\"del\"}\n"[..]
            ]
        );
    }
}
