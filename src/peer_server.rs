//! The peer server: how a frontend answers the other frontends' calls, over either
//! transport: tarpc's [`Peer`] service on `--port`, and groupcache's `GET /_groupcache/{key}`
//! on the client port (its route is [`http_route`], mounted by `frontend.rs`). Both answer
//! with [`answer`], so they cannot drift apart; a node answers only the transport its own
//! `--peer-transport` names, and refuses the other one clearly (logged once per asker), so a
//! mixed set of nodes loads every key itself rather than hanging.
//!
//! It sits above both the Get path ([`Group`]) and the RPC definitions ([`crate::peers`]),
//! and wires one to the other, the way groupcache's HTTP pool calls into its group. That
//! keeps `peers` free of the Get path, so the group can use the peer clients without the
//! two modules needing each other.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use tarpc::context;
use tarpc::server::{BaseChannel, Channel};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use warp::http::{HeaderValue, StatusCode};
use warp::{Filter, Rejection, Reply};

use crate::client::Loaded;
use crate::group::{self, GetError, Group};
use crate::http;
use crate::key;
use crate::peers::{transport, Peer, PeerTransport, FROM, HTTP_PATH, MAX_VALUE_TO_SHARE, VERSION};
use crate::trace::{Detail, Kind, Outcome, Span, TraceParent, TRACEPARENT};

/// Answers peers with this node's [`Group`].
#[derive(Clone)]
pub struct PeerServer {
    group: Arc<Group>,
    /// The transport this node's peers use; calls over the other one are refused.
    transport: PeerTransport,
    /// Askers not in this node's `--peers`, each warned about once; and askers on the
    /// wrong transport (marked `wrong transport:`), each warned about once too.
    strangers: Arc<Mutex<HashSet<String>>>,
}

impl Peer for PeerServer {
    async fn get(self, ctx: context::Context, from: String, key: String) -> Result<Loaded, String> {
        self.refuse_unless(PeerTransport::Tarpc, &from)?;
        self.answer(&from, &key, span_of(&ctx), None).await
    }

    async fn peek(self, _: context::Context, from: String, key: String) -> Option<Loaded> {
        self.refuse_unless(PeerTransport::Tarpc, &from).ok()?;
        self.peek_at(&from, &key)
    }
}

impl PeerServer {
    pub fn new(group: Arc<Group>, transport: PeerTransport) -> PeerServer {
        PeerServer {
            group,
            transport,
            strangers: Arc::default(),
        }
    }

    /// A peer's Get, whichever transport brought it: loaded here, never forwarded again.
    /// `parent` is the asker's span, where the transport names it (HTTP's `traceparent`;
    /// tarpc makes the call a span of its own instead).
    async fn answer(
        &self,
        from: &str,
        key: &str,
        span: Span,
        parent: Option<u64>,
    ) -> Result<Loaded, String> {
        key::validate(key).map_err(|e| e.to_string())?;
        self.check_asker(from);
        let key = key.to_owned();
        tracing::info!(kind = "peer", "peer asked for {key}");
        let from = from.to_owned();
        let events = self.group.events();
        let arrived = Detail {
            key: Some(key.as_str().into()),
            peer: Some(from),
            parent,
            ..Detail::default()
        };
        events.note(span, Kind::Arrived, arrived);
        let got = self.group.serve_peer(&key, span).await;
        let answered = match &got {
            Ok(got) => group::outcome(got.source.outcome()),
            Err(GetError::NotFound(_)) => group::outcome(Outcome::NotFound),
            Err(e) => group::failure(e),
        };
        events.note(span, Kind::Answered, answered);
        match got {
            // A reply over the frame limit would break the connection for every call on it,
            // and the asker would take this node for dead; a refusal makes it load the value
            // itself instead.
            Ok(got) if got.value.len() > MAX_VALUE_TO_SHARE => Err(format!(
                "{key} is {} bytes, more than a peer reply carries ({MAX_VALUE_TO_SHARE})",
                got.value.len()
            )),
            Ok(got) => Ok(Loaded {
                value: Some(got.value),
                version: got.version,
            }),
            Err(GetError::NotFound(version)) => Ok(Loaded {
                value: None,
                version,
            }),
            Err(GetError::Unavailable(reason)) => Err(reason),
            Err(GetError::Mismatch(mismatch)) => Err(mismatch.to_string()),
        }
    }

    /// A peer's peek: the key's value if this node's main cache holds it. Never loads.
    fn peek_at(&self, from: &str, key: &str) -> Option<Loaded> {
        key::validate(key).ok()?;
        self.check_asker(from);
        let found = self.group.peek(key);
        let said = if found.is_some() {
            "had it"
        } else {
            "does not have it"
        };
        tracing::info!(kind = "peer", "{from} peeked at {key}: {said}");
        found.filter(|loaded| {
            loaded
                .value
                .as_ref()
                .is_some_and(|v| v.len() <= MAX_VALUE_TO_SHARE)
        })
    }
}

/// This node's span for a peer's call: tarpc's own, made for the call as a child of the
/// asker's (a caller without a trace gets one begun here).
fn span_of(ctx: &context::Context) -> Span {
    let trace = u128::from(ctx.trace_context.trace_id);
    let span = u64::from(ctx.trace_context.span_id);
    if trace == 0 || span == 0 {
        return Span::arriving(None);
    }
    Span { trace, span }
}

impl PeerServer {
    /// `Err(refusal)`, logged once per asker, when a peer asks over `came_by` but this
    /// node's peers use the other transport. Refusing, rather than answering anyway, makes
    /// the mistake visible: the asker loads the key itself and says why.
    fn refuse_unless(&self, came_by: PeerTransport, from: &str) -> Result<(), String> {
        if came_by == self.transport {
            return Ok(());
        }
        let mut strangers = self
            .strangers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if strangers.insert(format!("wrong transport: {from}")) {
            tracing::warn!(
                "{from} asked over {}, but this node's peers use {} (--peer-transport): \
                 refused; give every frontend the same --peer-transport",
                came_by.as_str(),
                self.transport.as_str()
            );
        }
        Err(self.transport.refusal())
    }

    /// Warns, once per asker, when a peer this node does not list asks it: the two were
    /// given different `--peers`, so they may disagree about who owns what.
    fn check_asker(&self, from: &str) {
        if self.group.knows(from) {
            return;
        }
        // Not always a mistake: with --peers-from, a node that just joined asks before the
        // others have looked again. It is answered all the same (see `group::load`).
        let mut strangers = self
            .strangers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if strangers.insert(from.to_owned()) {
            tracing::warn!(
                "{from} asks this node for keys but is not in its --peers: give every \
                 frontend the same list, or they disagree about who owns what"
            );
        }
    }
}

/// Serves peers over tarpc on `listener` until `shutdown` completes; then drops every
/// connection. A node whose peers use HTTP still listens here, and refuses each call (see
/// `refuse_unless`): a tarpc node asking it gets an answer that says why, at once, rather
/// than a refused connection it would take for a dead peer.
pub async fn serve(listener: TcpListener, server: PeerServer, shutdown: impl Future<Output = ()>) {
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next() => {} // reap connections that closed
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let channel = BaseChannel::with_defaults(transport(stream));
                    connections.spawn(channel.execute(server.clone().serve()).for_each(|call| async {
                        // Each call in its own task, so one slow load does not hold up
                        // the other calls on the same connection.
                        tokio::spawn(call);
                    }));
                }
                Err(e) => {
                    // Usually "too many open files": wait a moment instead of spinning.
                    tracing::warn!("accepting a peer connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// `GET /_groupcache/{key}` (and `?peek=1`): a peer's call over the HTTP transport,
/// answered as the tarpc service answers it. A value is `200` with its version in
/// `x-gclab-version` (what the tarpc answer carries too); "no such key" is `404`
/// marked `x-gclab-missing`, with the version; a peek that finds nothing is `204`; a key
/// this node could not load is `502`, one too large to share `413`, a call over the wrong
/// transport `409`, a bad key `400`. Each error's body says what failed.
pub fn http_route(
    server: PeerServer,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path(HTTP_PATH)
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::get())
        .and(warp::query::<std::collections::HashMap<String, String>>())
        .and(warp::header::optional::<String>(TRACEPARENT))
        .and(warp::header::optional::<String>(FROM))
        .and(warp::any().map(move || server.clone()))
        .then(http_get)
}

async fn http_get(
    raw_key: String,
    query: std::collections::HashMap<String, String>,
    traceparent: Option<String>,
    from: Option<String>,
    server: PeerServer,
) -> warp::reply::Response {
    let from = from.unwrap_or_else(|| "an HTTP client".to_owned());
    if let Err(refusal) = server.refuse_unless(PeerTransport::Http, &from) {
        return http::text(StatusCode::CONFLICT, refusal);
    }
    let key = match key::decode(&raw_key) {
        Ok(key) => key.into_owned(),
        Err(e) => return http::text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if query.get("peek").is_some_and(|v| v == "1") {
        return match server.peek_at(&from, &key) {
            Some(Loaded {
                value: Some(value),
                version,
            }) => with_version(http::value(value), version),
            _ => StatusCode::NO_CONTENT.into_response(),
        };
    }
    let parent = traceparent.as_deref().and_then(TraceParent::parse);
    let span = Span::arriving(parent);
    match server
        .answer(&from, &key, span, parent.map(|p| p.parent))
        .await
    {
        Ok(Loaded {
            value: Some(value),
            version,
        }) => with_version(http::value(value), version),
        Ok(Loaded {
            value: None,
            version,
        }) => with_version(
            http::no_such_key(format!("no such key: the dbserver has no {key}")),
            version,
        ),
        Err(reason) if reason.contains("more than a peer reply carries") => {
            http::text(StatusCode::PAYLOAD_TOO_LARGE, reason)
        }
        Err(reason) => http::text(
            StatusCode::BAD_GATEWAY,
            format!("could not load {key}: {reason}"),
        ),
    }
}

/// Adds the `x-gclab-version` header.
fn with_version(mut reply: warp::reply::Response, version: u64) -> warp::reply::Response {
    reply
        .headers_mut()
        .insert(VERSION, HeaderValue::from(version));
    reply
}
