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
//! With `--follow-changes`, the dbserver's change stream calls [`Group::apply_change`]: the
//! key leaves both caches, and its floor rises, so that a load already in flight cannot
//! cache the older value afterwards (`populate_cache` refuses it, and the load reads again:
//! see [`crate::invalidation`] for the race). With `--ttl`, an entry older than the TTL is
//! a miss, and its reload goes through singleflight like any other.
//!
//! A Get that arrives from a peer (`serve_peer`, counted in `server_requests`) is never
//! forwarded again: a peer's ask means "load it yourself", so a request cannot travel in a
//! loop even if two nodes disagreed on the owner. (It may join a flight this node already
//! has for the key, which is how it shares one database read with this node's own clients.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::time::Instant as TokioInstant;

use crate::cache::{Cache, Entry};
use crate::client::{DbClient, Loaded};
use crate::faults::{Faults, Rule};
use crate::invalidation::Invalidation;
use crate::logging::HITS;
use crate::peers::{PeerError, Peers};
use crate::ring::Ring;
use crate::singleflight::{self, FromPanic};
use crate::stats::{NodeStats, Stats};
use crate::trace::{self, Detail, Events, Kind, Outcome, Span};

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
    /// Follow the dbserver's change stream and drop changed keys (`--follow-changes`).
    pub follow_changes: bool,
    /// Refuse a load that a newer change overtook (off: `--no-stale-guard`, to see the race).
    pub stale_guard: bool,
    /// Serve a cached value for at most this long, then reload it (`--ttl`).
    pub ttl: Option<Duration>,
    /// How many trace events this node keeps (`--events`); 0 records none.
    pub events: usize,
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
    pub fn mode(&self) -> Option<String> {
        let mut modes = Vec::new();
        match (self.singleflight, self.use_peers) {
            (true, true) => {}
            (false, true) => modes.push("no singleflight: every miss loads".to_owned()),
            (true, false) => modes.push("no peers: loads every key itself".to_owned()),
            (false, false) => modes.push("no singleflight, no peers".to_owned()),
        }
        if self.follow_changes {
            modes.push("follows changes".to_owned());
        }
        if !self.stale_guard {
            modes.push("no stale guard: a load overtaken by a change is cached anyway".to_owned());
        }
        if let Some(ttl) = self.ttl {
            modes.push(format!("ttl {}", humantime::format_duration(ttl)));
        }
        (!modes.is_empty()).then(|| modes.join("; "))
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
    /// The `--no-singleflight`, `--no-peers` and `--no-stale-guard` contrast switches.
    use_singleflight: bool,
    use_peers: bool,
    stale_guard: bool,
    /// What the change stream has told this node (floors, the version applied).
    invalidation: Invalidation,
    /// The fault rules `cli fault` set on this node's peer and dbserver calls.
    faults: Arc<Faults>,
    ttl: Option<Duration>,
    /// Set once the node has been told to stop: its peers are likely stopping too, so a
    /// failed peer call is no reason to fail over.
    stopping: AtomicBool,
    stats: Stats,
    /// What happened to each request, for `GET /events` and `gclab cli trace`.
    events: Arc<Events>,
}

/// A value and where this node found it.
#[derive(Debug, Clone)]
pub struct Got {
    pub value: Bytes,
    pub source: Source,
    /// The version of the write that stored the value.
    pub version: u64,
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
    /// The same, as a trace event's outcome.
    pub fn outcome(self) -> Outcome {
        match self {
            Source::Main => Outcome::Main,
            Source::Hot => Outcome::Hot,
            Source::Peer => Outcome::Peer,
            Source::Db => Outcome::Db,
        }
    }

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
    /// The dbserver has no such key, as of the version given. Not cached: the next Get
    /// asks again.
    #[error("no such key")]
    NotFound(u64),
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
    Answered(Loaded),
    /// It is up, but could not load the key (its dbserver failed): load it here instead.
    CouldNotLoad(String),
    /// It could not be asked (down, hung, connection broken): try the next in line.
    Unreachable(PeerError),
}

impl Group {
    pub fn new(config: &Config) -> Group {
        let faults = Arc::new(Faults::default());
        Group {
            me: config.me.clone(),
            ring: Ring::new(config.peers.iter().cloned()),
            peers: Peers::new(
                &config.me,
                config.peers.iter().filter(|p| **p != config.me),
                config.peer_timeout,
                Arc::clone(&faults),
            ),
            db: DbClient::new(&config.db_addr, config.db_timeout).with_faults(Arc::clone(&faults)),
            faults,
            main_cache: Cache::new(config.ttl.is_some()),
            hot_cache: Cache::new(config.ttl.is_some()),
            cache_bytes: config.cache_bytes,
            peer_timeout: config.peer_timeout,
            load_group: singleflight::Group::default(),
            use_singleflight: config.singleflight,
            use_peers: config.use_peers,
            stale_guard: config.stale_guard,
            invalidation: Invalidation::default(),
            ttl: config.ttl,
            stopping: AtomicBool::new(false),
            stats: Stats::default(),
            events: Arc::new(Events::new(&config.me, config.events)),
        }
    }

    /// A client's Get (the HTTP API): may be forwarded to the key's owner.
    pub async fn get(self: &Arc<Self>, key: &str, span: Span) -> Result<Got, GetError> {
        self.get_as(key, true, span).await
    }

    /// A peer's Get (tarpc): this node is the owner, or the asker thinks so. Load it here.
    pub async fn serve_peer(self: &Arc<Self>, key: &str, span: Span) -> Result<Got, GetError> {
        Stats::add(&self.stats.server_requests);
        self.get_as(key, false, span).await
    }

    async fn get_as(
        self: &Arc<Self>,
        key: &str,
        may_forward: bool,
        span: Span,
    ) -> Result<Got, GetError> {
        Stats::add(&self.stats.gets);
        if let Some(got) = self.lookup_cache(key) {
            Stats::add(&self.stats.cache_hits);
            self.events
                .note(span, Kind::Hit, outcome(got.source.outcome()));
            tracing::info!(
                target: HITS,
                kind = "hit",
                "{key} found in the {} cache",
                got.source.as_str()
            );
            return Ok(got);
        }
        self.events.note(span, Kind::Miss, Detail::default());
        self.load(key, may_forward, span).await
    }

    /// Looks in the main cache, then the hot cache.
    fn lookup_cache(&self, key: &str) -> Option<Got> {
        let got = |entry: Entry, source| Got {
            value: entry.value,
            source,
            version: entry.version,
        };
        if let Some(entry) = self.main_cache.get(key) {
            return Some(got(entry, Source::Main));
        }
        self.hot_cache.get(key).map(|entry| got(entry, Source::Hot))
    }

    /// Loads a key that missed the cache, once for all concurrent callers.
    async fn load(
        self: &Arc<Self>,
        key: &str,
        may_forward: bool,
        span: Span,
    ) -> Result<Got, GetError> {
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
            this.load_once(&owned_key, may_forward, span).await
        };
        if !self.use_singleflight {
            return flight().await;
        }
        // The time is taken before `work`, where the caller becomes the flight's leader or
        // joins it; the flight's number is known only once `work` returns.
        let asked = trace::now_ns();
        let call = self.load_group.work(key, flight).await;
        let kind = if call.leader {
            Kind::FlightStarted
        } else {
            Kind::FlightJoined
        };
        let detail = Detail {
            flight: Some(call.flight),
            ..Detail::default()
        };
        self.events.note_at(asked, span, kind, detail);
        call.result
    }

    /// One real load: from the owner if that is another peer, else from the dbserver.
    ///
    /// A value that a newer change overtook while it loaded is refused (see
    /// `populate_cache`) and read again, so that no caller gets it either: callers may
    /// have joined the flight after the change. The last tries go to the dbserver itself,
    /// which holds every change it has told us about. A key overtaken on every try (it
    /// changes faster than the dbserver answers) gets an error, never the refused value.
    async fn load_once(&self, key: &str, may_forward: bool, span: Span) -> Result<Got, GetError> {
        let mut tries = 1;
        loop {
            let began = self.invalidation.epoch();
            let last_try = tries == LOAD_TRIES;
            // Peers for the first try only: an owner that has not applied the change yet
            // would answer the same old value again.
            let (loaded, source) = self.fetch(key, may_forward && tries == 1, span).await?;
            let cache = match source {
                Source::Db => Some(&self.main_cache),
                // Keep 1 in 10 peer values in the hot cache, as groupcache does: a key
                // asked for often enough will land there soon, one asked for once rarely
                // will, so the hot cache fills with what is actually hot.
                _ if fastrand::u8(..10) == 0 => Some(&self.hot_cache),
                _ => None,
            };
            if self.populate_cache(key, &loaded, cache, began) {
                return match loaded.value {
                    Some(value) => Ok(Got {
                        value,
                        source,
                        version: loaded.version,
                    }),
                    None => Err(GetError::NotFound(loaded.version)),
                };
            }
            if last_try {
                return Err(GetError::Unavailable(format!(
                    "{key} changed again during each of {LOAD_TRIES} reads (it changes faster \
                     than the dbserver answers); try again"
                )));
            }
            tries += 1;
        }
    }

    /// Reads the key once: from a peer if one should have it, else from the dbserver.
    async fn fetch(
        &self,
        key: &str,
        may_forward: bool,
        span: Span,
    ) -> Result<(Loaded, Source), GetError> {
        if may_forward && self.use_peers {
            if let Some(answer) = self.ask_peers(key, span).await {
                return answer.map(|loaded| (loaded, Source::Peer));
            }
        }
        Ok((self.get_locally(key, span).await?, Source::Db))
    }

    /// Asks the key's owner, or, while it is down, the next peer in the key's ranking.
    /// `None` means "load it here"; each `return None` says why.
    ///
    /// groupcache instead has every node load the key locally when its owner fails, which
    /// multiplies database reads at the worst moment; since every node ranks the peers the
    /// same way, "next in line" is one node for all of them, and a key still costs one
    /// database read while its owner is away.
    async fn ask_peers(&self, key: &str, span: Span) -> Option<Result<Loaded, GetError>> {
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
            match self.get_from_peer(peer, key, span).await {
                PeerAnswer::Answered(answer) => return Some(Ok(answer)),
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
    async fn get_from_peer(&self, peer: &str, key: &str, span: Span) -> PeerAnswer {
        let to = |detail: Detail| Detail {
            peer: Some(peer.to_owned()),
            ..detail
        };
        self.events
            .note(span, Kind::PeerCallOut, to(Detail::default()));
        let answer = self.peers.get(peer, key, span.as_parent()).await;
        let came_back = match &answer {
            Ok(loaded) if loaded.value.is_none() => outcome(Outcome::NotFound),
            Ok(_) => outcome(Outcome::Peer),
            Err(e) => failure(e),
        };
        self.events.note(span, Kind::PeerCallIn, to(came_back));
        match answer {
            Ok(loaded) => {
                Stats::add(&self.stats.peer_loads);
                PeerAnswer::Answered(loaded)
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
    async fn get_locally(&self, key: &str, span: Span) -> Result<Loaded, GetError> {
        tracing::info!(kind = "db", "asking dbserver for {key}");
        self.events.note(span, Kind::DbReadOut, Detail::default());
        let answer = self.db.load_traced(key, Some(span.as_parent())).await;
        let came_back = match &answer {
            Ok(loaded) if loaded.value.is_none() => outcome(Outcome::NotFound),
            Ok(_) => outcome(Outcome::Found),
            Err(e) => failure(e),
        };
        self.events.note(span, Kind::DbReadIn, came_back);
        match answer {
            Ok(loaded) => {
                Stats::add(&self.stats.local_loads);
                if loaded.value.is_none() {
                    tracing::info!(kind = "db", "the dbserver has no {key}");
                }
                Ok(loaded)
            }
            Err(e) => {
                Stats::add(&self.stats.local_load_errs);
                tracing::warn!("{e}");
                Err(GetError::Unavailable(e.to_string()))
            }
        }
    }

    /// Adds a value to `cache` (if given: a "no such key" or a peer's value often is not
    /// kept), then evicts until main + hot fit the budget. The hot cache gives way first
    /// whenever it holds more than 1/8 of what main holds, as in groupcache: a node's own
    /// keys matter more than copies of other nodes' keys.
    ///
    /// Returns false, caching nothing, when a change newer than the value arrived while it
    /// loaded (the stale-set race): the caller must not hand it out either.
    fn populate_cache(
        &self,
        key: &str,
        loaded: &Loaded,
        cache: Option<&Cache>,
        began: u64,
    ) -> bool {
        // Held until the value is in: a change's eviction takes the same lock, so it comes
        // wholly before this (and the floor refuses the value) or wholly after (and evicts it).
        let floors = self.invalidation.floors();
        if self.stale_guard
            && floors.is_stale(key, loaded.version, began, self.invalidation.epoch())
        {
            Stats::add(&self.stats.stale_loads_refused);
            tracing::warn!(
                "refused to cache {key} v{}: a newer change (v{}) arrived while it loaded; \
                 loading it again",
                loaded.version,
                floors.floor(key)
            );
            return false;
        }
        let (Some(cache), Some(value)) = (cache, &loaded.value) else {
            return true;
        };
        // A value larger than the whole budget would evict everything, then itself; groupcache
        // lets that happen, but it empties the cache for nothing, so such a value is served
        // and not kept.
        if key.len() + value.len() > self.cache_bytes {
            return true;
        }
        // `add` keeps a copy of exactly the value's size (see there why).
        let entry = Entry {
            value: value.clone(),
            version: loaded.version,
            // `checked_add`: a TTL of centuries is "never", not an overflow.
            expires: self
                .ttl
                .and_then(|ttl| TokioInstant::now().checked_add(jittered(ttl))),
        };
        cache.add(key, entry);
        loop {
            let (main_bytes, hot_bytes) = (self.main_cache.bytes(), self.hot_cache.bytes());
            if main_bytes + hot_bytes <= self.cache_bytes {
                return true;
            }
            let victim = if hot_bytes > main_bytes / 8 {
                &self.hot_cache
            } else {
                &self.main_cache
            };
            victim.remove_oldest();
        }
    }

    /// A change from the dbserver's stream: `key` was written at `version`.
    ///
    /// The key leaves *both* caches, not only the one it belongs in: after a failover a
    /// stand-in holds its owner's keys in its main cache. (Reloading it at the owner instead
    /// would cost a database read per change even for keys nobody asks for again.) An entry
    /// at or above `version` is newer than the change and stays.
    pub fn apply_change(&self, key: &str, version: u64) {
        {
            let mut floors = self.invalidation.floors();
            floors.raise(key, version);
            let main = self.main_cache.remove_older(key, version);
            let hot = self.hot_cache.remove_older(key, version);
            if main || hot {
                Stats::add(&self.stats.evictions_by_change);
                tracing::info!(
                    kind = "change",
                    "{key} changed (v{version}): dropped it from the cache"
                );
            }
        }
        Stats::add(&self.stats.changes_applied);
        self.invalidation.applied_up_to(version);
    }

    /// Drops every cached value: the stream could not resume, so any of them may be stale.
    /// Returns how many were dropped.
    pub fn drop_everything(&self) -> u64 {
        let mut floors = self.invalidation.floors();
        self.invalidation.new_epoch();
        floors.clear();
        self.main_cache.clear() + self.hot_cache.clear()
    }

    /// The change stream, as this node has followed it.
    pub fn invalidation(&self) -> &Invalidation {
        &self.invalidation
    }

    /// Sets a fault rule on this node's calls (`POST /faults`).
    pub fn set_fault(&self, rule: Rule) -> Result<(), String> {
        self.faults.set(rule)
    }

    /// Removes the fault rules about `node` (all for `None`), and ends the back-off of the
    /// peers they hurt, so healed peers are asked again at once.
    pub fn heal_faults(&self, node: Option<&str>) -> Vec<Rule> {
        let healed = self.faults.heal(node);
        for peer in healed.iter().filter_map(|r| r.to.as_deref()) {
            self.peers.forgive(peer);
        }
        healed
    }

    /// The fault rules set on this node.
    pub fn faults(&self) -> Vec<Rule> {
        self.faults.list()
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

    /// This node's trace events.
    pub fn events(&self) -> &Arc<Events> {
        &self.events
    }

    /// This node's name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// All counters, the caches' included.
    pub fn stats(&self) -> NodeStats {
        let mut stats =
            self.stats
                .snapshot(&self.me, self.main_cache.stats(), self.hot_cache.stats());
        stats.following = self.invalidation.following();
        stats.last_version_applied = self.invalidation.applied();
        stats.faults = self.faults.stats();
        stats
    }
}

/// An event's detail that says only how a step ended.
pub fn outcome(outcome: Outcome) -> Detail {
    Detail {
        outcome: Some(outcome),
        ..Detail::default()
    }
}

/// An event's detail for a step that failed, and why.
pub fn failure(error: &dyn std::fmt::Display) -> Detail {
    Detail {
        outcome: Some(Outcome::Error),
        error: Some(error.to_string().into()),
        ..Detail::default()
    }
}

/// How many reads a load may make when newer changes keep overtaking them.
const LOAD_TRIES: u32 = 5;

/// A TTL less up to 10%, at random. Without the jitter, keys cached together (a bench's
/// first pass, a node warming up after a restart) would all expire in the same instant and
/// reload together: a herd across many keys, which singleflight cannot fold, since it folds
/// only the loads of one key.
fn jittered(ttl: Duration) -> Duration {
    ttl.mul_f64(1.0 - fastrand::f64() * 0.1)
}
