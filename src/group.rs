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
//! A `sha256:` key names a blob ([`crate::blob`]): whatever loads it, from the dbserver, a
//! peer or a previous owner's cache, is hashed before it is cached or served (`verify`).
//! Bytes that do not match are refused and counted (`integrity_errors`): nothing is
//! cached, so the next Get asks again. A peer's bad bytes are one more way a peer can fail,
//! and the key is loaded here instead; the dbserver's are the end of the road, and the
//! client hears that the hash did not match.
//!
//! A Get that arrives from a peer (`serve_peer`, counted in `server_requests`) is never
//! forwarded again: a peer's ask means "load it yourself", so a request cannot travel in a
//! loop even if two nodes disagreed on the owner. (It may join a flight this node already
//! has for the key, which is how it shares one database read with this node's own clients.)

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::time::Instant as TokioInstant;

use crate::blob::{self, Mismatch};
use crate::cache::{Cache, Entry};
use crate::client::{DbClient, Loaded};
use crate::faults::{Faults, Rule};
use crate::invalidation::Invalidation;
use crate::logging::HITS;
use crate::peers::{PeerError, PeerTransport, Peers};
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
    /// Keep 1 in 10 of the values peers send in the hot cache (off: `--no-hot-cache`).
    pub hot_cache: bool,
    /// After the peers change, ask a key's previous owner before the dbserver (off:
    /// `--no-handoff`).
    pub handoff: bool,
    /// Follow the dbserver's change stream and drop changed keys (`--follow-changes`).
    pub follow_changes: bool,
    /// Refuse a load that a newer change overtook (off: `--no-stale-guard`, to see the race).
    pub stale_guard: bool,
    /// Serve a cached value for at most this long, then reload it (`--ttl`).
    pub ttl: Option<Duration>,
    /// How many trace events this node keeps (`--events`); 0 records none.
    pub events: usize,
    /// How peers ask each other (`--peer-transport`): the Get path does not care which.
    pub peer_transport: PeerTransport,
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
        if !self.hot_cache {
            modes.push("no hot cache".to_owned());
        }
        if !self.handoff {
            modes
                .push("no hand-off: a key that changes owner is read from the dbserver".to_owned());
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
        modes.extend(self.peer_transport.mode().map(str::to_owned));
        (!modes.is_empty()).then(|| modes.join("; "))
    }
}

/// One frontend's cache and the machinery to fill it. groupcache calls this a `Group`.
pub struct Group {
    /// This node's name: its peer address, as it appears in the ring.
    me: String,
    /// Who the peers are, and so who owns what: swapped whole when the peers change
    /// (`--peers-from`), read without a lock by every request.
    members: ArcSwap<Members>,
    peers: Peers,
    db: DbClient,
    /// Keys this node owns (or loaded itself because their owner failed).
    main_cache: Cache,
    /// Popular keys owned by other nodes, so a hot key does not hammer one owner.
    hot_cache: Cache,
    /// The budget over main + hot, in bytes.
    cache_bytes: usize,
    /// Loads that ask another peer, one flight per key: a client's Get of a key it does
    /// not own.
    load_group: singleflight::Group<Got, GetError>,
    /// Loads from the dbserver, one flight per key: a Get of a key this node owns, whether
    /// from a client or a peer. See `load` for why the two are apart.
    local_group: singleflight::Group<Got, GetError>,
    /// The longest a load spends asking peers before it loads the key itself.
    peer_timeout: Duration,
    /// The `--no-singleflight`, `--no-peers` and `--no-stale-guard` contrast switches.
    use_singleflight: bool,
    use_peers: bool,
    stale_guard: bool,
    /// The `--no-hot-cache` and `--no-handoff` contrast switches.
    hot_cache_on: bool,
    handoff: bool,
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

/// The peers as this node knows them now, and as it knew them before they last changed.
pub struct Members {
    /// Who owns each key now.
    pub ring: Ring,
    /// Who owned each key before the last change, and when that was, for the warm
    /// hand-off; `None` for a node whose peers never changed.
    previous: Option<(Ring, Instant)>,
}

impl Members {
    /// The peers, sorted.
    pub fn peers(&self) -> Vec<String> {
        let mut peers: Vec<String> = self.ring.peers().map(str::to_owned).collect();
        peers.sort();
        peers
    }

    /// `key`'s owner before the last change, if that was lately and it was another node
    /// than the owner now.
    fn previous_owner(&self, key: &str) -> Option<&str> {
        let (previous, changed_at) = self.previous.as_ref()?;
        if changed_at.elapsed() > HANDOFF_WINDOW {
            return None;
        }
        let before = previous.owner(key);
        (before != self.ring.owner(key)).then_some(before)
    }
}

/// How long after a change of peers a key's new owner asks the previous owner first. Long
/// enough for the keys in use to move over; after it, a cold key pays no useless peek.
const HANDOFF_WINDOW: Duration = Duration::from_secs(300);

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
    /// The dbserver's bytes for a blob key do not hash to it. Not cached either.
    #[error(transparent)]
    Mismatch(Mismatch),
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
        let load_group = singleflight::Group::default();
        Group {
            me: config.me.clone(),
            members: ArcSwap::from_pointee(Members {
                ring: Ring::new(config.peers.iter().cloned()),
                previous: None,
            }),
            peers: Peers::new(
                &config.me,
                config.peers.iter().filter(|p| **p != config.me),
                config.peer_timeout,
                Arc::clone(&faults),
                config.peer_transport,
            ),
            db: DbClient::new(&config.db_addr, config.db_timeout).with_faults(Arc::clone(&faults)),
            faults,
            main_cache: Cache::new(config.ttl.is_some()),
            hot_cache: Cache::new(config.ttl.is_some()),
            cache_bytes: config.cache_bytes,
            peer_timeout: config.peer_timeout,
            local_group: load_group.sharing_numbers(),
            load_group,
            use_singleflight: config.singleflight,
            use_peers: config.use_peers,
            stale_guard: config.stale_guard,
            hot_cache_on: config.hot_cache,
            handoff: config.handoff,
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
    ///
    /// A key this node does not own is loaded in a `load_group` flight, which asks its
    /// owner; a key it owns, or a peer's ask, in a `local_group` flight, which reads the
    /// dbserver. One map of flights for both was the first design, and it had a wait-for
    /// cycle. When two nodes' lists differ (one names a node `localhost:8001` and the
    /// other `127.0.0.1:8001`, or a node is not in its own list yet), each may think the
    /// other owns a key: A's flight waits on its call to B, B's flight on its call to A,
    /// and each one's ask, arriving at the other, joined that node's own flight. Both
    /// waited until `--peer-timeout`. Apart, a peer's ask joins only a flight that reads
    /// the dbserver, which waits on nothing but the dbserver, so the cycle cannot close;
    /// the key costs at most two reads, one per side of the disagreement
    /// (`tests/membership.rs` has both cases).
    async fn load(
        self: &Arc<Self>,
        key: &str,
        may_forward: bool,
        span: Span,
    ) -> Result<Got, GetError> {
        Stats::add(&self.stats.loads);
        let owner_elsewhere = self.members.load().ring.owner(key) != self.me;
        if may_forward && self.use_peers && owner_elsewhere {
            let flight = move |this: Arc<Self>, key: String| async move {
                Stats::add(&this.stats.loads_deduped);
                this.load_from_peers(&key, span).await
            };
            self.in_flight(&self.load_group, key, span, flight).await
        } else {
            let flight = move |this: Arc<Self>, key: String| async move {
                Stats::add(&this.stats.loads_deduped);
                this.load_locally(&key, span).await
            };
            self.in_flight(&self.local_group, key, span, flight).await
        }
    }

    /// Runs `load` in one of `flights` for `key`, or joins the one in progress, and notes
    /// which in the trace.
    async fn in_flight<F, Fut>(
        self: &Arc<Self>,
        flights: &singleflight::Group<Got, GetError>,
        key: &str,
        span: Span,
        load: F,
    ) -> Result<Got, GetError>
    where
        F: FnOnce(Arc<Self>, String) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Got, GetError>> + Send + 'static,
    {
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
            load(this, owned_key).await
        };
        if !self.use_singleflight {
            return flight().await;
        }
        // The time is taken before `work`, where the caller becomes the flight's leader or
        // joins it; the flight's number is known only once `work` returns.
        let asked = trace::now_ns();
        let call = flights.work(key, flight).await;
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

    /// A load of a key another peer owns: ask it (or, while it is down, the next in line),
    /// and keep 1 in 10 of its answers in the hot cache. When no peer can help, or its value
    /// was overtaken by a change, the key is loaded here, in this node's own flight for it.
    async fn load_from_peers(self: &Arc<Self>, key: &str, span: Span) -> Result<Got, GetError> {
        let began = self.invalidation.epoch();
        match self.ask_peers(key, span).await {
            Some(Ok(loaded)) => {
                // 1 in 10, as groupcache does: a key asked for often enough will land in
                // the hot cache soon, one asked for once rarely will, so the hot cache
                // fills with what is actually hot.
                let cache =
                    (self.hot_cache_on && fastrand::u8(..10) == 0).then_some(&self.hot_cache);
                if self.populate_cache(key, &loaded, cache, began) {
                    return got(loaded, Source::Peer);
                }
                // A newer change overtook the owner's answer; the dbserver has it.
            }
            Some(Err(e)) => return Err(e),
            None => {}
        }
        let flight =
            move |this: Arc<Self>, key: String| async move { this.load_locally(&key, span).await };
        self.in_flight(&self.local_group, key, span, flight).await
    }

    /// A load of a key this node owns (or stands in for): from the dbserver, or, just after
    /// the peers changed, from the key's previous owner's cache (the warm hand-off).
    ///
    /// A value that a newer change overtook while it loaded is refused (see
    /// `populate_cache`) and read again, so that no caller gets it either: callers may
    /// have joined the flight after the change. A key overtaken on every try (it changes
    /// faster than the dbserver answers) gets an error, never the refused value.
    async fn load_locally(&self, key: &str, span: Span) -> Result<Got, GetError> {
        let mut tries = 1;
        loop {
            let began = self.invalidation.epoch();
            // The previous owner for the first try only: it may not have applied the
            // change that overtook its value yet.
            let handed_over = match tries {
                1 => self.ask_previous_owner(key, span).await,
                _ => None,
            };
            let (loaded, source) = match handed_over {
                Some(loaded) => (loaded, Source::Peer),
                None => (self.get_locally(key, span).await?, Source::Db),
            };
            if self.populate_cache(key, &loaded, Some(&self.main_cache), began) {
                return got(loaded, source);
            }
            if tries == LOAD_TRIES {
                return Err(GetError::Unavailable(format!(
                    "{key} changed again during each of {LOAD_TRIES} reads (it changes faster \
                     than the dbserver answers); try again"
                )));
            }
            tries += 1;
        }
    }

    /// The warm hand-off. Lately after the peers changed, a key whose owner changed is first
    /// asked of its previous owner, which most likely has it cached: so a node that joins
    /// takes over its keys without a database herd. The ask is a peek, which never loads: a
    /// previous owner that does not have the key answers `None` at once, rather than
    /// reading the dbserver a second time. A previous owner that left the peers is not asked.
    async fn ask_previous_owner(&self, key: &str, span: Span) -> Option<Loaded> {
        if !self.handoff || !self.use_peers {
            return None;
        }
        let previous = {
            let members = self.members.load();
            let previous = members.previous_owner(key)?;
            if previous == self.me || !members.ring.peers().any(|p| p == previous) {
                return None;
            }
            previous.to_owned()
        };
        if self.peers.backing_off(&previous).is_some() {
            return None;
        }
        Stats::add(&self.stats.peer_peeks);
        match self.peers.peek(&previous, key, span.as_parent()).await {
            Ok(Some(loaded)) => {
                // Bad bytes are counted and logged in `verify`; the dbserver is asked instead.
                self.verify(key, &loaded, &previous).ok()?;
                Stats::add(&self.stats.peer_peek_hits);
                tracing::info!(
                    kind = "peer",
                    "{key} handed over by {previous}, its owner before the peers changed"
                );
                Some(loaded)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!("asking {previous}, {key}'s previous owner, failed: {e}");
                None
            }
        }
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
        let ranking: Vec<String> = {
            let members = self.members.load();
            members
                .ring
                .ranking(key)
                .into_iter()
                .map(str::to_owned)
                .collect()
        };
        for peer in ranking.iter().map(String::as_str) {
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
        // Every peer failed, or (with --peers-from) this node is not listed yet and so
        // not in its own ranking: load it here.
        None
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
            // A peer's wrong bytes are a failure of that peer, like its dbserver failing: the
            // key is loaded here, which may well succeed. (Answering the client 502 at once
            // would make one bad node spoil a key that the dbserver holds intact.)
            Ok(loaded) => match self.verify(key, &loaded, peer) {
                Ok(()) => {
                    Stats::add(&self.stats.peer_loads);
                    PeerAnswer::Answered(loaded)
                }
                Err(mismatch) => {
                    Stats::add(&self.stats.peer_errors);
                    PeerAnswer::CouldNotLoad(mismatch.to_string())
                }
            },
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
                self.verify(key, &loaded, "the dbserver")
                    .map_err(GetError::Mismatch)?;
                Ok(loaded)
            }
            Err(e) => {
                Stats::add(&self.stats.local_load_errs);
                tracing::warn!("{e}");
                Err(GetError::Unavailable(e.to_string()))
            }
        }
    }

    /// Checks a loaded blob against its key ([`blob::check`]); any other key passes. A
    /// mismatch is counted in `integrity_errors` and logged with `from`, who sent the bytes.
    ///
    /// Checked where a value is loaded, not in `populate_cache`: a value that is not cached
    /// (a peer's, mostly) is served all the same, and must be checked all the same.
    fn verify(&self, key: &str, loaded: &Loaded, from: &str) -> Result<(), Mismatch> {
        let Some(value) = &loaded.value else {
            return Ok(()); // "no such key" names no bytes
        };
        blob::check(key, value).inspect_err(|mismatch| {
            Stats::add(&self.stats.integrity_errors);
            tracing::error!("refused {key} from {from}, not cached: {mismatch}");
        })
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

    /// Who the peers are now, and who owns what.
    pub fn members(&self) -> arc_swap::Guard<Arc<Members>> {
        self.members.load()
    }

    /// Whether `peer` is one of this node's peers now.
    pub fn knows(&self, peer: &str) -> bool {
        self.members.load().ring.peers().any(|p| p == peer)
    }

    /// The peers are now `peers`. When that is a change, the ring is rebuilt and the old
    /// one kept for the hand-off; the change is logged and counted. Returns whether it was
    /// a change; an empty list is none (a ring needs a peer), and is ignored.
    ///
    /// A node left out of the list is not counted in: it is not a member yet (a pod the
    /// headless service does not list), so it owns nothing, and asks the listed peers for
    /// every key. Counting itself in would make it load keys that every member thinks
    /// another node owns, and, once listed, it would have no earlier ring to hand keys
    /// over from.
    ///
    /// The `first` list a node finds is where it starts, not a change: it is logged, but
    /// neither counted nor handed over from.
    pub fn set_peers(&self, mut peers: Vec<String>, first: bool) -> bool {
        if peers.is_empty() {
            return false;
        }
        peers.sort();
        peers.dedup();
        let current = self.members.load_full();
        let before = current.peers();
        if before == peers {
            return false;
        }
        let joined: Vec<String> = peers
            .iter()
            .filter(|p| !before.contains(p))
            .map(|p| format!("+{p}"))
            .collect();
        let left: Vec<String> = before
            .iter()
            .filter(|p| !peers.contains(p))
            .map(|p| format!("-{p}"))
            .collect();
        let others: Vec<String> = peers.iter().filter(|p| **p != self.me).cloned().collect();
        self.peers.set(&others);
        self.members.store(Arc::new(Members {
            ring: Ring::new(peers.iter().cloned()),
            previous: (!first).then(|| (Ring::new(before), Instant::now())),
        }));
        if first {
            tracing::info!(kind = "peer", "peers now {}", peers.join(","));
        } else {
            Stats::add(&self.stats.membership_changes);
            tracing::info!(
                kind = "peer",
                "peers now {} ({})",
                peers.join(","),
                [joined, left].concat().join(" ")
            );
        }
        true
    }

    /// A peer's peek (see `ask_previous_owner`): the key's value if this node's main cache
    /// holds it. Never loads.
    pub fn peek(&self, key: &str) -> Option<Loaded> {
        self.main_cache.get(key).map(|entry| Loaded {
            value: Some(entry.value),
            version: entry.version,
        })
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
        stats.peers = self.members.load().peers();
        stats
    }
}

/// A load's answer as a Get's: the value, or "no such key".
fn got(loaded: Loaded, source: Source) -> Result<Got, GetError> {
    match loaded.value {
        Some(value) => Ok(Got {
            value,
            source,
            version: loaded.version,
        }),
        None => Err(GetError::NotFound(loaded.version)),
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
