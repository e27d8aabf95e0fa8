//! Peer RPC: how a frontend asks a key's owner for its value, over tarpc.
//!
//! The service is one method, [`Peer::get`]. Its trait is shared by the server
//! (`peer_server.rs`, which answers with a node's Get path) and the client pool ([`Peers`])
//! here, as in tarpc's `example-service`. Like groupcache's `peers.go`, this file knows
//! nothing of the Get path: the group calls into it, never the other way round.
//!
//! Choices worth knowing:
//! - One connection per peer, made on first use and kept: tarpc multiplexes many calls over
//!   it, so a herd of calls costs no new sockets. A broken connection is dropped and the
//!   next call reconnects.
//! - Every call has a deadline: `--peer-timeout`, which must outlast the owner's own trip
//!   to the database (tarpc's default would be 10 s).
//! - Frames are capped ([`MAX_FRAME_BYTES`]): a peer, or garbage sent to the peer port,
//!   cannot make this node allocate more than that for one message.
//! - TCP_NODELAY on every socket: calls are small, and Nagle's algorithm would hold them
//!   back waiting for an ACK.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tarpc::client::RpcError;
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::LengthDelimitedCodec;
use tarpc::{context, serde_transport};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::client::Loaded;
use crate::faults::{Effect, Faults};
use crate::trace::TraceParent;

/// The largest frame either side accepts: a value (1 MiB by default) plus room for the rest.
pub const MAX_FRAME_BYTES: usize = 2 * 1024 * 1024;

/// The largest value a peer reply carries; the rest of the frame is the envelope.
pub const MAX_VALUE_TO_SHARE: usize = MAX_FRAME_BYTES - 64 * 1024;

/// A peer connection is local in this lab; a connect slower than this is not coming.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

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
    ) -> Self {
        Peers {
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
        let (me, key) = (self.me.clone(), key.to_owned());
        self.call(peer, parent, |client, ctx| async move {
            client.get(ctx, me, key).await
        })
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
        let (me, key) = (self.me.clone(), key.to_owned());
        self.call(peer, parent, |client, ctx| async move {
            client.peek(ctx, me, key).await
        })
        .await
    }

    /// Makes one call to `peer`: through the fault rules, connected, within the deadline,
    /// carrying the trace; and notes whether the peer could be reached.
    async fn call<T, F, Fut>(
        &self,
        peer: &str,
        parent: TraceParent,
        send: F,
    ) -> Result<T, PeerError>
    where
        F: FnOnce(PeerClient, context::Context) -> Fut,
        Fut: std::future::Future<Output = Result<T, RpcError>>,
    {
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
        let connected = tokio::time::timeout_at(deadline.into(), connection.client(peer))
            .await
            .unwrap_or(Err(PeerError::Timeout(self.timeout)));
        let answer = match connected {
            Ok(client) => {
                let mut ctx = context::current();
                ctx.deadline = deadline;
                // The trace travels in tarpc's own context; tarpc gives the call a span of
                // its own, a child of ours, and the peer notes its events under it.
                ctx.trace_context.trace_id = parent.trace.into();
                ctx.trace_context.span_id = parent.parent.into();
                match send(client, ctx).await {
                    Ok(answer) => Ok(answer),
                    Err(RpcError::DeadlineExceeded) => Err(PeerError::Timeout(self.timeout)),
                    Err(e) => {
                        // The connection is broken (the peer died or closed it): forget
                        // it, so the next call connects afresh.
                        *connection.client.lock().await = None;
                        Err(PeerError::Connection(broken(&e)))
                    }
                }
            }
            Err(e) => Err(e),
        };
        connection.record(peer, answer.is_ok());
        answer
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
