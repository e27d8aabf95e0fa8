//! The Get path: how a frontend answers "what is the value of this key?".
//!
//! This file is the heart of the lab. Read it beside groupcache's `groupcache.go`: the
//! functions and counters have the same names.
//!
//! ```text
//! get ──▶ lookup_cache ──hit──▶ answer                         (cache_hits)
//!           │ miss
//!           ▼
//!         load ──▶ singleflight: one flight per key            (loads, loads_deduped)
//!                    │ re-check the cache (a hit here counts in cache_hits too)
//!                    ├─ another peer owns it ─▶ ask_peers ─▶ get_from_peer
//!                    │    │                     (peer_loads / peer_errors)
//!                    │    │                       └─ 1 in 10 ─▶ populate_cache(hot)
//!                    │    └─ owner down ─▶ the next peer in the key's ranking (failovers)
//!                    └─ we own it, are next in line, or the owner could not load it
//!                                 ─▶ get_locally (dbserver)    (local_loads / local_load_errs)
//!                                 ─▶ populate_cache(main)
//! ```
//!
//! A Get that arrives from a peer (`serve_peer`, counted in `server_requests`) is never
//! forwarded again: a peer's ask means "load it yourself", so a request cannot travel in a
//! loop even if two nodes disagreed on the owner. (It may join a flight this node already
//! has for the key, which is how it shares one database read with this node's own clients.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::cache::Cache;
use crate::client::DbClient;
use crate::logging::HITS;
use crate::peers::{PeerError, Peers};
use crate::ring::Ring;
use crate::singleflight::{self, FromPanic};
use crate::stats::{NodeStats, Stats};

/// How a group is set up: a frontend's flags for the Get path (`gclab frontend --help`).
#[derive(Debug, Clone)]
pub struct Config {
    /// This node's peer address, exactly as it appears in `peers`.
    pub me: String,
    /// Every peer's address, this node's included. All nodes must have the same list.
    pub peers: Vec<String>,
    /// The dbserver's HTTP address.
    pub db_addr: String,
    /// The byte budget over the main and hot caches.
    pub cache_bytes: usize,
    /// How long a dbserver read may take, delay included.
    pub db_timeout: Duration,
    /// How long a peer call may take; longer than `db_timeout`, because the owner may be
    /// loading the key from the dbserver while we wait.
    pub peer_timeout: Duration,
    /// Fold concurrent loads of one key into one (off: `--no-singleflight`).
    pub singleflight: bool,
    /// Ask a key's owner (off: `--no-peers`, every node loads every key itself).
    pub use_peers: bool,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("this node ({me}) is not in --peers ({}); add it, so every node agrees on who owns what", .peers.join(","))]
    NotInPeers { me: String, peers: Vec<String> },
    #[error("--peer-timeout ({}) must be longer than --db-timeout ({}): a peer may be loading from the dbserver while we wait", humantime::format_duration(*.peer), humantime::format_duration(*.db))]
    PeerTimeoutTooShort { peer: Duration, db: Duration },
}

impl Config {
    /// Checks what the flags cannot check one by one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.peers.contains(&self.me) {
            return Err(ConfigError::NotInPeers {
                me: self.me.clone(),
                peers: self.peers.clone(),
            });
        }
        if self.peer_timeout <= self.db_timeout {
            return Err(ConfigError::PeerTimeoutTooShort {
                peer: self.peer_timeout,
                db: self.db_timeout,
            });
        }
        Ok(())
    }

    /// The mode the contrast switches put the node in, for its start-up line.
    pub fn mode(&self) -> Option<&'static str> {
        match (self.singleflight, self.use_peers) {
            (true, true) => None,
            (false, true) => Some("no singleflight: every miss loads"),
            (true, false) => Some("no peers: loads every key itself"),
            (false, false) => Some("no singleflight, no peers"),
        }
    }
}

/// One frontend's cache and the machinery to fill it. groupcache calls this a `Group`.
pub struct Group {
    /// This node's name: its peer address, as it appears in the ring.
    me: String,
    ring: Ring,
    peers: Peers,
    db: DbClient,
    /// Keys this node owns (or loaded itself because their owner failed).
    main_cache: Cache,
    /// Popular keys owned by other nodes, so a hot key does not hammer one owner.
    hot_cache: Cache,
    /// The budget over main + hot, in bytes.
    cache_bytes: usize,
    load_group: singleflight::Group<Got, GetError>,
    /// The longest a load spends asking peers before it loads the key itself.
    peer_timeout: Duration,
    /// The `--no-singleflight` and `--no-peers` contrast switches.
    use_singleflight: bool,
    use_peers: bool,
    /// Set once the node has been told to stop: its peers are likely stopping too, so a
    /// failed peer call is no reason to fail over.
    stopping: AtomicBool,
    stats: Stats,
}

/// A value and where this node found it.
#[derive(Debug, Clone)]
pub struct Got {
    pub value: Bytes,
    pub source: Source,
}

/// Where a Get found its value; the `x-gclab-source` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Main,
    Hot,
    Peer,
    Db,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Main => "main",
            Source::Hot => "hot",
            Source::Peer => "peer",
            Source::Db => "db",
        }
    }
}

/// Why a Get has no value. `Clone`, because singleflight hands one result to every waiter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GetError {
    /// The dbserver has no such key. Not cached: the next Get asks again.
    #[error("no such key")]
    NotFound,
    /// The value could not be loaded (dbserver down or failing); the message says why.
    #[error("{0}")]
    Unavailable(String),
}

impl FromPanic for GetError {
    fn from_panic(message: String) -> Self {
        GetError::Unavailable(message)
    }
}

/// What asking a peer came to.
enum PeerAnswer {
    /// It answered: the value, or "no such key". Either way the Get is done.
    Answered(Result<Got, GetError>),
    /// It is up, but could not load the key (its dbserver failed): load it here instead.
    CouldNotLoad(String),
    /// It could not be asked (down, hung, connection broken): try the next in line.
    Unreachable(PeerError),
}

impl Group {
    pub fn new(config: &Config) -> Group {
        Group {
            me: config.me.clone(),
            ring: Ring::new(config.peers.iter().cloned()),
            peers: Peers::new(
                &config.me,
                config.peers.iter().filter(|p| **p != config.me),
                config.peer_timeout,
            ),
            db: DbClient::new(&config.db_addr, config.db_timeout),
            main_cache: Cache::default(),
            hot_cache: Cache::default(),
            cache_bytes: config.cache_bytes,
            peer_timeout: config.peer_timeout,
            load_group: singleflight::Group::default(),
            use_singleflight: config.singleflight,
            use_peers: config.use_peers,
            stopping: AtomicBool::new(false),
            stats: Stats::default(),
        }
    }

    /// A client's Get (the HTTP API): may be forwarded to the key's owner.
    pub async fn get(self: &Arc<Self>, key: &str) -> Result<Got, GetError> {
        self.get_as(key, true).await
    }

    /// A peer's Get (tarpc): this node is the owner, or the asker thinks so. Load it here.
    pub async fn serve_peer(self: &Arc<Self>, key: &str) -> Result<Got, GetError> {
        Stats::add(&self.stats.server_requests);
        self.get_as(key, false).await
    }

    async fn get_as(self: &Arc<Self>, key: &str, may_forward: bool) -> Result<Got, GetError> {
        Stats::add(&self.stats.gets);
        if let Some(got) = self.lookup_cache(key) {
            Stats::add(&self.stats.cache_hits);
            tracing::info!(
                target: HITS,
                kind = "hit",
                "{key} found in the {} cache",
                got.source.as_str()
            );
            return Ok(got);
        }
        self.load(key, may_forward).await
    }

    /// Looks in the main cache, then the hot cache.
    fn lookup_cache(&self, key: &str) -> Option<Got> {
        if let Some(value) = self.main_cache.get(key) {
            return Some(Got {
                value,
                source: Source::Main,
            });
        }
        self.hot_cache.get(key).map(|value| Got {
            value,
            source: Source::Hot,
        })
    }

    /// Loads a key that missed the cache, once for all concurrent callers.
    async fn load(self: &Arc<Self>, key: &str, may_forward: bool) -> Result<Got, GetError> {
        Stats::add(&self.stats.loads);
        let this = Arc::clone(self);
        let owned_key = key.to_owned();
        let flight = move || async move {
            // Re-check the cache inside the flight. Without it, this order loads twice:
            //   1. Get A misses the cache.     2. Get B misses the cache.
            //   3. A starts a flight, loads, populates the cache; the flight ends.
            //   4. B finds no flight in progress and starts a second load.
            // With the re-check, B finds in step 4 the value A cached in step 3.
            if let Some(got) = this.lookup_cache(&owned_key) {
                Stats::add(&this.stats.cache_hits);
                return Ok(got);
            }
            Stats::add(&this.stats.loads_deduped);
            this.load_once(&owned_key, may_forward).await
        };
        if self.use_singleflight {
            self.load_group.work(key, flight).await.result
        } else {
            flight().await
        }
    }

    /// One real load: from the owner if that is another peer, else from the dbserver.
    async fn load_once(&self, key: &str, may_forward: bool) -> Result<Got, GetError> {
        if may_forward && self.use_peers {
            if let Some(answer) = self.ask_peers(key).await {
                return answer;
            }
        }
        let value = self.get_locally(key).await?;
        self.populate_cache(key, value.clone(), &self.main_cache);
        Ok(Got {
            value,
            source: Source::Db,
        })
    }

    /// Asks the key's owner, or, while it is down, the next peer in the key's ranking.
    /// `None` means "load it here"; each `return None` says why.
    ///
    /// groupcache instead has every node load the key locally when its owner fails, which
    /// multiplies database reads at the worst moment; since every node ranks the peers the
    /// same way, "next in line" is one node for all of them, and a key still costs one
    /// database read while its owner is away.
    async fn ask_peers(&self, key: &str) -> Option<Result<Got, GetError>> {
        let started = Instant::now();
        let mut failed_over = false;
        for peer in self.ring.ranking(key) {
            if peer == self.me {
                return None; // this node is the owner, or next in line
            }
            if started.elapsed() >= self.peer_timeout {
                // Asking peers has used up one peer deadline (a hung owner, say): load it
                // here rather than wait on the next peer too, so the client's request
                // deadline (peer + dbserver) still holds.
                return None;
            }
            if let Some(retry_in) = self.peers.backing_off(peer) {
                // Skipped without a call: it failed moments ago (see `Peers`).
                tracing::info!(
                    kind = "peer",
                    "skipping {peer} for {key}: it is down (next try in {:.1} s)",
                    retry_in.as_secs_f64()
                );
                self.note_failover(&mut failed_over);
                continue;
            }
            if failed_over {
                tracing::info!(kind = "peer", "asking {peer}, next in line for {key}");
            } else {
                tracing::info!(kind = "peer", "{key} is owned by {peer}, asking it");
            }
            match self.get_from_peer(peer, key).await {
                PeerAnswer::Answered(answer) => return Some(answer),
                PeerAnswer::CouldNotLoad(reason) => {
                    // The peer is up but its dbserver failed: another peer would fare no
                    // better, so try once here, as groupcache does.
                    tracing::warn!("{peer} could not load {key} ({reason}); trying here");
                    return None;
                }
                PeerAnswer::Unreachable(reason) if self.stopping.load(Ordering::Relaxed) => {
                    // Stopping, like its peers most likely: failing over would only ask
                    // the next node that is going away.
                    return Some(Err(GetError::Unavailable(format!(
                        "this node is shutting down, and asking {peer} for {key} failed: {reason}"
                    ))));
                }
                PeerAnswer::Unreachable(reason) => {
                    tracing::warn!("asking {peer} for {key} failed: {reason}");
                    self.note_failover(&mut failed_over);
                }
            }
        }
        None // unreachable in practice: this node is in its own ranking
    }

    /// Counts one failover per load, however many peers it goes past.
    fn note_failover(&self, failed_over: &mut bool) {
        if !std::mem::replace(failed_over, true) {
            Stats::add(&self.stats.failovers);
        }
    }

    /// Asks a peer for the key, and sorts out what came back.
    async fn get_from_peer(&self, peer: &str, key: &str) -> PeerAnswer {
        match self.peers.get(peer, key).await {
            Ok(Some(value)) => {
                Stats::add(&self.stats.peer_loads);
                // Keep 1 in 10 peer values in the hot cache, as groupcache does: a key
                // asked for often enough will land there soon, one asked for once rarely
                // will, so the hot cache fills with what is actually hot.
                if fastrand::u8(..10) == 0 {
                    self.populate_cache(key, value.clone(), &self.hot_cache);
                }
                PeerAnswer::Answered(Ok(Got {
                    value,
                    source: Source::Peer,
                }))
            }
            Ok(None) => {
                Stats::add(&self.stats.peer_loads);
                PeerAnswer::Answered(Err(GetError::NotFound))
            }
            Err(PeerError::Remote(reason)) => {
                Stats::add(&self.stats.peer_errors);
                PeerAnswer::CouldNotLoad(reason)
            }
            Err(unreachable) => {
                Stats::add(&self.stats.peer_errors);
                PeerAnswer::Unreachable(unreachable)
            }
        }
    }

    /// Loads from the dbserver. A "no such key" answer is a successful load of nothing.
    async fn get_locally(&self, key: &str) -> Result<Bytes, GetError> {
        tracing::info!(kind = "db", "asking dbserver for {key}");
        match self.db.get(key).await {
            Ok(Some(value)) => {
                Stats::add(&self.stats.local_loads);
                Ok(value)
            }
            Ok(None) => {
                Stats::add(&self.stats.local_loads);
                tracing::info!(kind = "db", "the dbserver has no {key}");
                Err(GetError::NotFound)
            }
            Err(e) => {
                Stats::add(&self.stats.local_load_errs);
                tracing::warn!("{e}");
                Err(GetError::Unavailable(e.to_string()))
            }
        }
    }

    /// Adds a value to `cache`, then evicts until main + hot fit the budget. The hot cache
    /// gives way first whenever it holds more than 1/8 of what main holds, as in
    /// groupcache: a node's own keys matter more than copies of other nodes' keys.
    fn populate_cache(&self, key: &str, value: Bytes, cache: &Cache) {
        // A value larger than the whole budget would evict everything, then itself; groupcache
        // lets that happen, but it empties the cache for nothing, so such a value is served
        // and not kept.
        if key.len() + value.len() > self.cache_bytes {
            return;
        }
        // Keep a copy of exactly the value's size. A `Bytes` that came off the network is
        // often a slice of the connection's whole read buffer (kilobytes), and keeping the
        // slice keeps the buffer: measured in bench/, 100,000 cached 100-byte values held
        // 540 MiB that way, against the 11 MB the cache believed it held.
        cache.add(key, Bytes::copy_from_slice(&value));
        loop {
            let (main_bytes, hot_bytes) = (self.main_cache.bytes(), self.hot_cache.bytes());
            if main_bytes + hot_bytes <= self.cache_bytes {
                return;
            }
            let victim = if hot_bytes > main_bytes / 8 {
                &self.hot_cache
            } else {
                &self.main_cache
            };
            victim.remove_oldest();
        }
    }

    /// The key's owner: the first peer of its ranking.
    pub fn owner(&self, key: &str) -> &str {
        self.ring.owner(key)
    }

    /// Every peer with its rendezvous score for `key`, best first.
    pub fn scores(&self, key: &str) -> Vec<(&str, u64)> {
        self.ring.scores(key)
    }

    /// Whether `peer` is in this node's list of peers.
    pub fn knows(&self, peer: &str) -> bool {
        self.ring.peers().any(|p| p == peer)
    }

    /// Tells the group its node is stopping (see `stopping`).
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// This node's name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// All counters, the caches' included.
    pub fn stats(&self) -> NodeStats {
        self.stats
            .snapshot(&self.me, self.main_cache.stats(), self.hot_cache.stats())
    }
}
