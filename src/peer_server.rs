//! The peer server: how a frontend answers the other frontends' [`Peer::get`] calls.
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

use crate::client::Loaded;
use crate::group::{self, GetError, Group};
use crate::key;
use crate::peers::{transport, Peer, MAX_VALUE_TO_SHARE};
use crate::trace::{Detail, Kind, Outcome, Span};

/// Answers peers with this node's [`Group`].
#[derive(Clone)]
struct PeerServer {
    group: Arc<Group>,
    /// Askers not in this node's `--peers`, each warned about once.
    strangers: Arc<Mutex<HashSet<String>>>,
}

impl Peer for PeerServer {
    async fn get(self, ctx: context::Context, from: String, key: String) -> Result<Loaded, String> {
        key::validate(&key).map_err(|e| e.to_string())?;
        self.check_asker(&from);
        tracing::info!(kind = "peer", "peer asked for {key}");
        let span = span_of(&ctx);
        let events = self.group.events();
        let arrived = Detail {
            key: Some(key.as_str().into()),
            peer: Some(from),
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

    async fn peek(self, _: context::Context, from: String, key: String) -> Option<Loaded> {
        key::validate(&key).ok()?;
        self.check_asker(&from);
        let found = self.group.peek(&key);
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

/// Serves peers on `listener` until `shutdown` completes; then drops every connection.
pub async fn serve(listener: TcpListener, group: Arc<Group>, shutdown: impl Future<Output = ()>) {
    let server = PeerServer {
        group,
        strangers: Arc::default(),
    };
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
