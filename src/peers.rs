//! Peer RPC: how a frontend asks a key's owner for its value, over tarpc or plain HTTP.
//!
//! Two wires carry the same two questions (`--peer-transport`, [`PeerTransport`]):
//! - **tarpc** (the default): the [`Peer`] service on the peer port (`--port`).
//! - **http**: groupcache's own wire, `GET /_groupcache/{key}` (`?peek=1` for a peek) on the
//!   peer's client port (its `--port` + 1000), over a pool of keep-alive HTTP/1.1
//!   connections. The answer is the value, its version in `x-gclab-version`.
//!
//! Either way the call goes through the same [`Peers::call`]: fault rules, deadline,
//! back-off and the peer's health are the transport's business nowhere else.
//!
//! The tarpc service is two methods, [`Peer::get`] and [`Peer::peek`]. Its trait is shared
//! by the server (`peer_server.rs`, which answers with a node's Get path) and the client
//! pool ([`Peers`]) here, as in tarpc's `example-service`. Like groupcache's `peers.go`, this file knows
//! nothing of the Get path: the group calls into it, never the other way round.
//!
//! Choices worth knowing:
//! - tarpc: one connection per peer, made on first use and kept: tarpc multiplexes many
//!   calls over it, so a herd of calls costs no new sockets. A broken connection is dropped
//!   and the next call reconnects. HTTP/1.1 carries one call at a time per connection, so
//!   its pool holds as many connections to a peer as there were calls in flight at once.
//! - Every call has a deadline: `--peer-timeout`, which must outlast the owner's own trip
//!   to the database (tarpc's default would be 10 s).
//! - Frames are capped ([`MAX_FRAME_BYTES`]): a peer, or garbage sent to the peer port,
//!   cannot make this node allocate more than that for one message; an HTTP answer's body
//!   is read up to the same limit.
//! - TCP_NODELAY on every socket: calls are small, and Nagle's algorithm would hold them
//!   back waiting for an ACK.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::SERVER;
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tarpc::client::RpcError;
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::LengthDelimitedCodec;
use tarpc::{context, serde_transport};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::client::{Loaded, Server};
use crate::faults::{Effect, Faults};
use crate::http::MISSING_KEY;
use crate::key;
use crate::trace::{TraceParent, TRACEPARENT};

/// The largest frame either side accepts: a value (1 MiB by default) plus room for the rest.
pub const MAX_FRAME_BYTES: usize = 2 * 1024 * 1024;

/// The largest value a peer reply carries; the rest of the frame is the envelope.
pub const MAX_VALUE_TO_SHARE: usize = MAX_FRAME_BYTES - 64 * 1024;

/// A peer connection is local in this lab; a connect slower than this is not coming.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How a frontend's peers ask each other (`--peer-transport`). Every frontend must use the
/// same one: a node asked over the other refuses, and the asker loads the key itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PeerTransport {
    /// tarpc on the peer port: many calls multiplexed over one connection per peer.
    #[default]
    Tarpc,
    /// groupcache's HTTP wire, `GET /_groupcache/{key}` on the peer's --port + 1000, over a
    /// pool of keep-alive connections.
    Http,
}

impl PeerTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerTransport::Tarpc => "tarpc",
            PeerTransport::Http => "http",
        }
    }

    /// What the start-up line says about it: nothing for the default.
    pub fn mode(self) -> Option<&'static str> {
        match self {
            PeerTransport::Tarpc => None,
            PeerTransport::Http => Some("peer transport: HTTP"),
        }
    }

    /// What a node on this transport says to a peer that asked it over the other one.
    pub fn refusal(self) -> String {
        format!(
            "this node's peers use {} (--peer-transport {}): start every frontend with the \
             same --peer-transport",
            self.as_str(),
            self.as_str()
        )
    }
}

/// The HTTP transport's route prefix, groupcache's `/_groupcache/`.
pub const HTTP_PATH: &str = "_groupcache";

/// The header an HTTP peer answer carries its value's version in.
pub const VERSION: &str = "x-gclab-version";

/// The header an HTTP peer call names its asker in (tarpc's `from`).
pub const FROM: &str = "x-gclab-from";

/// What one frontend can ask another.
#[tarpc::service]
pub trait Peer {
    /// The value of `key` and its version, loaded by the node asked (`value: None` if the
    /// database has no such key), or `Err(reason)` if it could not be loaded. `from` is the asker's name (its
    /// peer address), so a node can tell when it is asked by a peer it does not know of.
    async fn get(from: String, key: String) -> Result<Loaded, String>;

    /// The value of `key` if the node asked has it in its main cache; `None` if not. It
    /// never loads: this is how a key's new owner asks the previous one, after the peers
    /// changed, before it reads the dbserver (the warm hand-off, in `group.rs`).
    async fn peek(from: String, key: String) -> Option<Loaded>;
}

/// Wraps a TCP stream in tarpc's length-delimited bincode transport, frames capped.
pub fn transport<Item, SinkItem>(
    stream: TcpStream,
) -> serde_transport::Transport<TcpStream, Item, SinkItem, Bincode<Item, SinkItem>>
where
    Item: for<'de> serde::Deserialize<'de>,
    SinkItem: serde::Serialize,
{
    if let Err(e) = stream.set_nodelay(true) {
        tracing::warn!("could not set TCP_NODELAY: {e}");
    }
    let framed = LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME_BYTES)
        .new_framed(stream);
    serde_transport::new(framed, Bincode::default())
}

/// Why a call to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("the connection broke ({0}): the peer closed it, or died")]
    Connection(String),
    #[error("it could not load the key: {0}")]
    Remote(String),
    #[error("it is not a gclab peer: {0}")]
    NotAPeer(String),
}

/// How long a peer that failed is skipped before the next request tries it again. Short,
/// because a restarted peer should get its keys back soon; long enough that a dead peer
/// costs one failed call every couple of seconds, not one per request.
pub const BACKOFF: Duration = Duration::from_secs(2);

/// The client side: one lazily made connection to each other peer, and whether it is up.
pub struct Peers {
    /// This node's name, sent with every call.
    me: String,
    /// The peers now, each with its connection. A std `RwLock`, held only to look up or
    /// change the map, never across a call: the membership changes it, every call reads it.
    connections: std::sync::RwLock<std::collections::HashMap<String, Arc<Connection>>>,
    timeout: Duration,
    /// The rules `cli fault` set on this node's calls (see `faults.rs`).
    faults: Arc<Faults>,
    transport: Transport,
}

/// The wire the calls travel, an enum and not a `Box<dyn Transport>`: there are exactly
/// two, known here, and a trait object would need boxed futures (an `async fn` in a trait
/// is not object-safe), an allocation on every call, for a choice made once at start-up.
enum Transport {
    /// One tarpc client per peer, kept in its [`Connection`].
    Tarpc,
    /// One pooled hyper client for all peers: it keeps idle keep-alive connections per host.
    /// Boxed: it is large, and `Peers` is made once.
    Http(Box<Client<HttpConnector, Full<Bytes>>>),
}

/// A peek's answer when the peer's main cache does not hold the key.
const NOT_CACHED: Loaded = Loaded {
    value: None,
    version: 0,
};

/// What a call asks: a load (`get`) or a look in the main cache (`peek`).
#[derive(Debug, Clone, Copy)]
enum Ask {
    Get,
    Peek,
}

#[derive(Default)]
struct Connection {
    // tokio's `Mutex`, not std's: it is held across the connect `.await`, so that callers
    // arriving while a connection is being made wait for it instead of each making one.
    client: Mutex<Option<PeerClient>>,
    // std's `Mutex`: held for a field update, never across an `.await`.
    health: std::sync::Mutex<Health>,
}

/// A peer is down from its first failed call until a call succeeds again.
#[derive(Default)]
struct Health {
    down: bool,
    /// While down, calls are skipped until this moment; then one is let through as a probe,
    /// and the others keep skipping until the probe has reported.
    retry_at: Option<Instant>,
}

impl Peers {
    /// Clients for `peers` (not including this node, `me`) whose calls give up after `timeout`.
    pub fn new<'a>(
        me: &str,
        peers: impl IntoIterator<Item = &'a String>,
        timeout: Duration,
        faults: Arc<Faults>,
        transport: PeerTransport,
    ) -> Self {
        let transport = match transport {
            PeerTransport::Tarpc => Transport::Tarpc,
            PeerTransport::Http => Transport::Http(Box::new(http_client())),
        };
        Peers {
            transport,
            me: me.to_owned(),
            connections: std::sync::RwLock::new(
                peers
                    .into_iter()
                    .map(|p| (p.clone(), Arc::default()))
                    .collect(),
            ),
            timeout,
            faults,
        }
    }

    /// The peers are now `peers` (not including this node): connections to the ones that
    /// left are dropped, the ones that joined get theirs on first use.
    pub fn set(&self, peers: &[String]) {
        let mut connections = self
            .connections
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        connections.retain(|peer, _| peers.contains(peer));
        for peer in peers {
            connections.entry(peer.clone()).or_default();
        }
    }

    fn connection(&self, peer: &str) -> Option<Arc<Connection>> {
        self.connections
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(peer)
            .cloned()
    }

    /// Asks `peer` for `key`, on behalf of the request `parent` names.
    pub async fn get(
        &self,
        peer: &str,
        key: &str,
        parent: TraceParent,
    ) -> Result<Loaded, PeerError> {
        self.call(peer, key, Ask::Get, parent)
            .await?
            .map_err(PeerError::Remote)
    }

    /// Asks `peer` whether it has `key` in its main cache, without making it load.
    pub async fn peek(
        &self,
        peer: &str,
        key: &str,
        parent: TraceParent,
    ) -> Result<Option<Loaded>, PeerError> {
        let found = self
            .call(peer, key, Ask::Peek, parent)
            .await?
            .map_err(PeerError::Remote)?;
        Ok(found.value.is_some().then_some(found))
    }

    /// Makes one call to `peer`: through the fault rules, over the transport, within the
    /// deadline, carrying the trace; and notes whether the peer could be reached. The
    /// outer `Err` is a peer that could not be asked; the inner one a peer that answered
    /// that it could not load the key. A peek that found nothing is a `Loaded` without a value.
    async fn call(
        &self,
        peer: &str,
        key: &str,
        ask: Ask,
        parent: TraceParent,
    ) -> Result<Result<Loaded, String>, PeerError> {
        let connection = self
            .connection(peer)
            .ok_or_else(|| PeerError::Connect(format!("{peer} is not one of the peers (now)")))?;
        let deadline = Instant::now() + self.timeout;
        // A fault rule acts here, where a real network would: before the call leaves.
        match self.faults.on_peer_call(peer) {
            None => {}
            Some(Effect::Fail(reason)) => {
                connection.record(peer, false);
                return Err(PeerError::Connect(reason.to_owned()));
            }
            Some(Effect::Stall) => {
                // No answer until the deadline, unless the rule is healed first: then the
                // call goes out, late, as a healed network delivers what it held back.
                tokio::select! {
                    () = tokio::time::sleep_until(deadline.into()) => {
                        connection.record(peer, false);
                        return Err(PeerError::Timeout(self.timeout));
                    }
                    () = self.faults.next_heal() => {}
                }
            }
            Some(Effect::Wait(wait)) if wait >= self.timeout => {
                tokio::time::sleep_until(deadline.into()).await;
                connection.record(peer, false);
                return Err(PeerError::Timeout(self.timeout));
            }
            Some(Effect::Wait(wait)) => tokio::time::sleep(wait).await,
        }
        // The connect counts against the call's deadline too, which a delay has used part of.
        let sent = async {
            match &self.transport {
                Transport::Tarpc => {
                    self.ask_tarpc(&connection, peer, key, ask, parent, deadline)
                        .await
                }
                Transport::Http(client) => ask_http(client, &self.me, peer, key, ask, parent).await,
            }
        };
        let answer = tokio::time::timeout_at(deadline.into(), sent)
            .await
            .unwrap_or(Err(PeerError::Timeout(self.timeout)));
        connection.record(peer, answer.is_ok());
        answer
    }

    /// One call over tarpc, on this peer's connection (made first if there is none).
    async fn ask_tarpc(
        &self,
        connection: &Connection,
        peer: &str,
        key: &str,
        ask: Ask,
        parent: TraceParent,
        deadline: Instant,
    ) -> Result<Result<Loaded, String>, PeerError> {
        let client = connection.client(peer).await?;
        let mut ctx = context::current();
        ctx.deadline = deadline;
        // The trace travels in tarpc's own context; tarpc gives the call a span of its own,
        // a child of ours, and the peer notes its events under it.
        ctx.trace_context.trace_id = parent.trace.into();
        ctx.trace_context.span_id = parent.parent.into();
        let (me, key) = (self.me.clone(), key.to_owned());
        let answer = match ask {
            Ask::Get => client.get(ctx, me, key).await,
            Ask::Peek => client
                .peek(ctx, me, key)
                .await
                .map(|found| Ok(found.unwrap_or(NOT_CACHED))),
        };
        match answer {
            Ok(answer) => Ok(answer),
            Err(RpcError::DeadlineExceeded) => Err(PeerError::Timeout(self.timeout)),
            Err(e) => {
                // The connection is broken (the peer died or closed it): forget it, so
                // the next call connects afresh.
                *connection.client.lock().await = None;
                Err(PeerError::Connection(broken(&e)))
            }
        }
    }

    /// Ends `peer`'s back-off now: after `cli fault heal`, a healed peer should not sit out
    /// the rest of it. The next call is still the one probe (see `backing_off`), so a peer
    /// that is down for real costs one call, not one per waiting request.
    pub fn forgive(&self, peer: &str) {
        if let Some(connection) = self.connection(peer) {
            let mut health = connection
                .health
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if health.retry_at.is_some() {
                health.retry_at = Some(Instant::now());
            }
        }
    }

    /// Whether a call to `peer` should be skipped because it failed moments ago (see
    /// [`BACKOFF`]), and if so, how long until it is tried again.
    ///
    /// When the back-off runs out, the first caller is let through as the probe, and the
    /// back-off is renewed for everyone else at once; so a peer that hangs costs one
    /// `--peer-timeout` per back-off, not one per request that arrives while the probe waits.
    pub fn backing_off(&self, peer: &str) -> Option<Duration> {
        let connection = self.connection(peer)?;
        let mut health = connection
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        match health.retry_at {
            Some(at) if now < at => Some(at - now),
            Some(_) => {
                health.retry_at = Some(now + BACKOFF); // this caller is the probe
                None
            }
            None => None,
        }
    }
}

impl Connection {
    /// Notes how a call went, and logs the peer going down or coming back, once each.
    fn record(&self, addr: &str, reached: bool) {
        let mut health = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match (health.down, reached) {
            (false, false) => {
                tracing::warn!("{addr} is unreachable; its keys go to the next in line");
                health.down = true;
            }
            (true, true) => {
                tracing::info!(
                    kind = "peer",
                    "{addr} answers again; its keys go back to it"
                );
                health.down = false;
            }
            _ => {}
        }
        health.retry_at = health.down.then(|| Instant::now() + BACKOFF);
    }

    /// The client for this peer, connecting first if there is none.
    async fn client(&self, addr: &str) -> Result<PeerClient, PeerError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| PeerError::Connect(format!("no answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| PeerError::Connect(e.kind().to_string()))?;
        let client = PeerClient::new(tarpc::client::Config::default(), transport(stream)).spawn();
        *slot = Some(client.clone());
        Ok(client)
    }
}

/// tarpc's error for a broken connection, in a few words ("Connection broken" and a
/// channel type name would mean nothing to a learner).
fn broken(error: &RpcError) -> String {
    match error {
        RpcError::Shutdown => "the connection is shut down".to_owned(),
        RpcError::Send(_) => "the request could not be sent".to_owned(),
        RpcError::Channel(_) => "no answer came back".to_owned(),
        other => other.to_string(),
    }
}

/// The HTTP transport's client: pooled keep-alive connections to every peer.
fn http_client() -> Client<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        // HTTP/1.1 carries one call at a time per connection: a burst of concurrent calls
        // to one peer opens as many connections, and this many of them are kept for the next.
        .pool_max_idle_per_host(64)
        .build(connector)
}

/// Where a peer named `host:port` serves HTTP: `host:(port + 1000)`, the lab's convention.
fn http_addr(peer: &str) -> Result<String, PeerError> {
    let bad = || PeerError::Connect(format!("{peer} is not host:port with a port below 64536"));
    let (host, port) = peer.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let port = port.checked_add(1000).ok_or_else(bad)?;
    Ok(format!("{host}:{port}"))
}

/// One call over HTTP: `GET /_groupcache/{key}`, the answer sorted as [`Peers::call`] wants.
/// Only a whole 2xx answer from a gclab frontend that names the value's version is a value.
async fn ask_http(
    client: &Client<HttpConnector, Full<Bytes>>,
    me: &str,
    peer: &str,
    key: &str,
    ask: Ask,
    parent: TraceParent,
) -> Result<Result<Loaded, String>, PeerError> {
    let addr = http_addr(peer)?;
    let query = match ask {
        Ask::Get => "",
        Ask::Peek => "?peek=1",
    };
    let uri = format!("http://{addr}/{HTTP_PATH}/{}{query}", key::encode(key));
    let request = Request::get(uri)
        .header(TRACEPARENT, parent.header())
        .header(FROM, me)
        .body(Full::new(Bytes::new()))
        .map_err(|e| PeerError::Connect(format!("cannot make the request: {e}")))?;
    let response = client.request(request).await.map_err(|e| {
        if e.is_connect() {
            PeerError::Connect(format!(
                "{addr}: {}",
                std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string)
            ))
        } else {
            PeerError::Connection(format!("{addr}: {e}"))
        }
    })?;
    let (parts, body) = response.into_parts();
    // Who answered is checked before the body is read: a stranger's body is never a value.
    if parts.headers.get(SERVER).map(|v| v.as_bytes()) != Some(Server::Frontend.header().as_bytes())
    {
        let said = parts
            .headers
            .get(SERVER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("no server header");
        return Err(PeerError::NotAPeer(format!(
            "{addr} answered {} ({said}), not as a gclab frontend",
            parts.status
        )));
    }
    // A body cut short (the peer died mid-answer) is an error from hyper, never a value.
    let body = Limited::new(body, MAX_FRAME_BYTES)
        .collect()
        .await
        .map_err(|e| PeerError::Connection(format!("the answer from {addr} broke off: {e}")))?
        .to_bytes();
    let version = || {
        parts
            .headers
            .get(VERSION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| {
                PeerError::NotAPeer(format!(
                    "{addr} answered {} without {VERSION}",
                    parts.status
                ))
            })
    };
    match parts.status {
        StatusCode::OK => Ok(Ok(Loaded {
            value: Some(body),
            version: version()?,
        })),
        StatusCode::NO_CONTENT if matches!(ask, Ask::Peek) => Ok(Ok(NOT_CACHED)),
        StatusCode::NOT_FOUND if parts.headers.contains_key(MISSING_KEY) => Ok(Ok(Loaded {
            value: None,
            version: version()?,
        })),
        // Up, and answering as a frontend, but not with a value: it could not load the key
        // (502), would not carry it (413), or is on the other transport (409).
        status => Ok(Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body).trim()
        ))),
    }
}
