//! A frontend: one peer of the cache, with an HTTP API for clients.
//!
//! It serves two listeners: tarpc for the other peers (`--port`, e.g. 8001) and HTTP for
//! clients (`--http-port`, by default port+1000, e.g. 9001), both backed by one [`Group`].
//!
//! Routes (one filter function each):
//! - `GET /cache/{key}` → 200 and the value, with headers `x-gclab-node` (this node),
//!   `x-gclab-owner` (the key's owner) and `x-gclab-source` (`main`, `hot`, `peer` or `db`);
//!   404 when the dbserver has no such key; 502 when the value could not be loaded. It
//!   carries an `ETag`, the value's version (`"v7"`); a request whose `If-None-Match` names
//!   that ETag gets `304 Not Modified` and no body
//! - `GET /applied?at_least=V&wait_ms=T` → `{"following": bool, "applied": N}`, once the
//!   node has applied change V (or after T ms, at most 5 s): how `cli set` sees a write
//!   reach every frontend
//! - `GET /_groupcache/{key}` (`?peek=1`) → a peer's call, when the peers use HTTP
//!   (`--peer-transport http`; see `peer_server::http_route`)
//! - `GET /stats` → the groupcache counters as JSON
//! - `GET /owner/{key}` → the owner, the whole rendezvous ranking of peers, and each
//!   peer's score (64-bit, in hex: the highest owns the key)
//! - `GET /metrics` → the same counters and request latencies, for Prometheus
//! - `GET /events?trace=ID&since=NS` → this node's trace events (of one trace, at or after a
//!   time in Unix nanoseconds), as JSON: what `gclab cli trace` draws
//! - `POST /faults` (a JSON [`Rule`]) sets a fault rule on this node's calls;
//!   `DELETE /faults?node=N` heals the rules about N (all of them without `node`);
//!   `GET /faults` lists them, with the node's pid and whether `gclab up --restart` would
//!   start it again. Setting and healing are for loopback clients only (403
//!   otherwise): a rule can stop a node from answering

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::net::TcpListener;
use warp::http::header::{HeaderName, HeaderValue};
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use crate::client::{Applied, ClientError, DbClient, Ownership, PeerScore, Server};
use crate::faults::Rule;
use crate::follow;
use crate::group::{self, GetError, Group};
use crate::http::{self, Limits, Problem};
use crate::key;
use crate::logging::{ANSWERS, HITS};
use crate::membership;
use crate::metrics::{Metrics, Snapshot};
use crate::peer_server;
use crate::stats::RESTARTED_BY_UP;
use crate::trace::{Kind, Outcome, TRACEPARENT};

/// Everything a frontend needs to know, as its flags say it.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Get path's settings: peers, dbserver, cache budget, deadlines, switches.
    pub group: group::Config,
    /// How long an HTTP client may take to send a request's headers.
    pub client_timeout: Duration,
    /// Where to find the peers and follow their changes (`--peers-from`); `None` keeps
    /// `group.peers` for good.
    pub membership: Option<membership::Follow>,
}

/// Why a frontend could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] group::ConfigError),
    #[error("--peers-from: {0}")]
    Membership(String),
}

impl Config {
    /// The HTTP deadlines: a request may wait for a peer that waits for the dbserver.
    pub fn limits(&self) -> Limits {
        Limits {
            header_timeout: self.client_timeout,
            request_timeout: self.group.peer_timeout + self.group.db_timeout,
        }
    }
}

/// Serves peers on `peer_listener` and clients on `http_listener` until `shutdown`.
pub async fn run(
    peer_listener: TcpListener,
    http_listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    config.group.validate()?;
    let finder = match &config.membership {
        Some(follow) => Some(membership::Finder::new(follow).map_err(StartError::Membership)?),
        None => None,
    };
    let group = Arc::new(Group::new(&config.group));
    tokio::spawn(check_db(DbClient::new(
        &config.group.db_addr,
        config.group.db_timeout,
    )));
    let peer_server = peer_server::PeerServer::new(Arc::clone(&group), config.group.peer_transport);
    let api = Arc::new(Api::new(
        Arc::clone(&group),
        &config.group.peers,
        peer_server.clone(),
    ));
    // Both servers stop on the same signal; `shared` lets several futures await one.
    let shutdown = shutdown.boxed().shared();
    if config.group.follow_changes {
        group.invalidation().follow();
        let db = DbClient::new(&config.group.db_addr, config.group.db_timeout);
        tokio::spawn(follow::run(Arc::clone(&group), db, shutdown.clone()));
    }
    if let (Some(finder), Some(follow)) = (finder, &config.membership) {
        let every = follow.every;
        tokio::spawn(membership::run(
            Arc::clone(&group),
            finder,
            every,
            shutdown.clone(),
        ));
    }
    let stopping = Arc::clone(&group);
    let told = shutdown.clone();
    tokio::spawn(async move {
        told.await;
        stopping.begin_shutdown();
    });
    let http_server = http::serve(
        http_listener,
        routes(api),
        config.limits(),
        Server::Frontend.header(),
        shutdown.clone(),
    )
    // Boxed to pin its type down: left generic, the compiler cannot prove that the
    // future is `Send` for callers that spawn `run` (rustc issue #100013).
    .boxed();
    tokio::join!(
        http_server,
        peer_server::serve(peer_listener, peer_server, shutdown)
    );
    Ok(())
}

/// What the HTTP handlers share: the Get path, the request metrics, and the header values
/// every answer carries, made once rather than on every cache hit.
pub struct Api {
    pub group: Arc<Group>,
    pub metrics: Metrics,
    /// `x-gclab-node`: this node's name.
    node: HeaderValue,
    /// `x-gclab-owner` for each peer seen owning a key, made once per peer rather than on
    /// every cache hit; a peer that joins later is added on its first key.
    owners: arc_swap::ArcSwap<Vec<(String, HeaderValue)>>,
    /// Answers `GET /_groupcache/{key}`, the peers' HTTP transport.
    peer_server: peer_server::PeerServer,
}

impl Api {
    fn new(group: Arc<Group>, peers: &[String], peer_server: peer_server::PeerServer) -> Api {
        Api {
            peer_server,
            metrics: Metrics::new(
                "source",
                &["main", "hot", "peer", "db", "not_found", "error"],
            ),
            node: header(group.me()),
            owners: arc_swap::ArcSwap::from_pointee(
                peers.iter().map(|p| (p.clone(), header(p))).collect(),
            ),
            group,
        }
    }

    /// The `x-gclab-owner` value for `key`.
    fn owner_header(&self, key: &str) -> HeaderValue {
        let members = self.group.members();
        let owner = members.ring.owner(key);
        if let Some((_, value)) = self.owners.load().iter().find(|(peer, _)| peer == owner) {
            return value.clone();
        }
        let value = header(owner);
        self.owners.rcu(|owners| {
            let mut owners = Vec::clone(owners);
            owners.push((owner.to_owned(), value.clone()));
            owners
        });
        value
    }
}

const NODE: HeaderName = HeaderName::from_static("x-gclab-node");
const OWNER: HeaderName = HeaderName::from_static("x-gclab-owner");
const SOURCE: HeaderName = HeaderName::from_static("x-gclab-source");

/// The longest `GET /applied` waits.
const MAX_APPLIED_WAIT: Duration = Duration::from_secs(5);

/// Every route, with rejections turned into clear error bodies.
///
/// The cache route comes first and alone; the others are one boxed filter behind it. warp
/// polls a request through one `or` per route before the one that matched, and keeps its
/// future in an enum as large as the largest route's: so a cache hit, the request this lab
/// is measured on, passes one `or` instead of eight, and its future holds no other route's.
pub fn routes(api: Arc<Api>) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let others = get_stats(api.clone())
        .or(get_owner(api.clone()))
        .or(get_applied(api.clone()))
        .or(get_metrics(api.clone()))
        .or(http::events(api.group.events()))
        .or(faults(api.clone()))
        .or(http::empty_key("cache"))
        .or(http::empty_key("owner"))
        .map(Reply::into_response)
        .boxed();
    // The peers' route second: with `--peer-transport http`, a peer load of another node's
    // key passes one `or`, as a client's cache hit does.
    let peer = peer_server::http_route(api.peer_server.clone());
    get_cache(api).or(peer).or(others).recover(http::recover)
}

/// `GET /cache/{key}`
fn get_cache(api: Arc<Api>) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("cache" / String)
        .and(warp::get())
        .and(warp::header::optional::<String>("if-none-match"))
        .and(warp::header::optional::<String>(TRACEPARENT))
        .and(with_api(api))
        .and_then(cache_get)
}

/// `GET /applied?at_least=V&wait_ms=T`
fn get_applied(api: Arc<Api>) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("applied")
        .and(warp::get())
        .and(warp::query::<std::collections::HashMap<String, String>>())
        .and(with_api(api))
        .and_then(applied_get)
}

/// `GET /stats`
fn get_stats(api: Arc<Api>) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("stats")
        .and(warp::get())
        .and(with_api(api))
        .map(|api: Arc<Api>| http::json(&api.group.stats()))
}

/// `GET /owner/{key}`
fn get_owner(api: Arc<Api>) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("owner" / String)
        .and(warp::get())
        .and(with_api(api))
        .and_then(owner_get)
}

/// `GET /metrics`
fn get_metrics(api: Arc<Api>) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("metrics")
        .and(warp::get())
        .and(with_api(api))
        .map(|api: Arc<Api>| {
            http::metrics(
                api.metrics
                    .render(Snapshot::Node(Box::new(api.group.stats()))),
            )
        })
}

/// `POST /faults`, `DELETE /faults?node=N`, `GET /faults`
fn faults(
    api: Arc<Api>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let set = warp::post()
        .and(loopback())
        .and(warp::body::content_length_limit(64 * 1024))
        .and(warp::body::bytes())
        .and(with_api(api.clone()))
        .and_then(fault_post);
    let heal = warp::delete()
        .and(loopback())
        .and(warp::query::<std::collections::HashMap<String, String>>())
        .and(with_api(api.clone()))
        .map(
            |query: std::collections::HashMap<String, String>, api: Arc<Api>| {
                let healed = api.group.heal_faults(query.get("node").map(String::as_str));
                http::json(&serde_json::json!({ "healed": healed }))
            },
        );
    let list = warp::get().and(with_api(api)).map(|api: Arc<Api>| {
        http::json(&serde_json::json!({
            "rules": api.group.faults(),
            "counts": api.group.stats().faults,
            "pid": std::process::id(),
            "restartable": std::env::var_os(RESTARTED_BY_UP).is_some_and(|v| v == "1"),
        }))
    });
    warp::path!("faults")
        .and(set.or(heal).unify().or(list).unify())
        .map(Reply::into_response)
}

/// Lets through requests from this machine only; others get 403.
fn loopback() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::ext::optional::<http::Remote>()
        .and_then(|remote: Option<http::Remote>| async move {
            match remote {
                Some(http::Remote(addr)) if allowed_to_set_faults(addr) => Ok(()),
                other => Err(warp::reject::custom(Problem {
                    status: StatusCode::FORBIDDEN,
                    message: format!(
                        "fault rules are set from this machine only (loopback), not from {}",
                        other.map_or("an unknown address".to_owned(), |r| r.0.ip().to_string())
                    ),
                })),
            }
        })
        .untuple_one()
}

/// Whether a request from `addr` may set or heal fault rules: only from loopback, since a
/// rule can stop this node from answering, and the client API has no authentication.
pub fn allowed_to_set_faults(addr: std::net::SocketAddr) -> bool {
    match addr.ip() {
        std::net::IpAddr::V4(ip) => ip.is_loopback(),
        std::net::IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

async fn fault_post(body: bytes::Bytes, api: Arc<Api>) -> Result<warp::reply::Response, Rejection> {
    let bad = |message: String| {
        warp::reject::custom(Problem {
            status: StatusCode::BAD_REQUEST,
            message,
        })
    };
    let rule: Rule = serde_json::from_slice(&body).map_err(|e| {
        bad(format!(
            "not a fault rule ({e}); see `gclab cli fault --help`"
        ))
    })?;
    if let Some(to) = &rule.to {
        if !api.group.knows(to) {
            return Err(bad(format!("{to} is not one of this node's peers")));
        }
    }
    api.group.set_fault(rule.clone()).map_err(bad)?;
    Ok(http::json(&serde_json::json!({ "set": rule })))
}

fn with_api(api: Arc<Api>) -> impl Filter<Extract = (Arc<Api>,), Error = Infallible> + Clone {
    warp::any().map(move || api.clone())
}

async fn cache_get(
    raw_key: String,
    if_none_match: Option<String>,
    traceparent: Option<String>,
    api: Arc<Api>,
) -> Result<warp::reply::Response, Rejection> {
    let started = Instant::now();
    let key = key::decode(&raw_key).map_err(Problem::bad_key)?;
    tracing::info!(target: HITS, key = %key, "cli asked for {key}");
    let group = &api.group;
    let events = group.events();
    let span = http::arriving(events, traceparent.as_deref(), &key);
    let got = group.get(&key, span).await;
    let answered = match &got {
        Ok(got) => group::outcome(got.source.outcome()),
        Err(GetError::NotFound(_)) => group::outcome(Outcome::NotFound),
        Err(e) => group::failure(e),
    };
    events.note(span, Kind::Answered, answered);
    let (reply, label) = match got {
        Ok(got) => {
            let etag = http::etag(got.version, &got.value);
            let unchanged = if_none_match.is_some_and(|tags| {
                tags.split(',')
                    .any(|t| t.trim().as_bytes() == etag.as_bytes())
            });
            let mut response = if unchanged {
                StatusCode::NOT_MODIFIED.into_response()
            } else {
                http::value(got.value)
            };
            let headers = response.headers_mut();
            // The ETag alone carries the version here: one header made per hit, not two.
            headers.insert(warp::http::header::ETAG, etag);
            headers.insert(NODE, api.node.clone());
            headers.insert(OWNER, api.owner_header(&key));
            headers.insert(SOURCE, HeaderValue::from_static(got.source.as_str()));
            (response, got.source.as_str())
        }
        Err(GetError::NotFound(_)) => (
            http::no_such_key(format!("no such key: the dbserver has no {key}")),
            "not_found",
        ),
        // A blob whose bytes did not match is a 502 too: what this node was sent is wrong,
        // not what the client asked.
        Err(error @ (GetError::Unavailable(_) | GetError::Mismatch(_))) => (
            http::text(
                StatusCode::BAD_GATEWAY,
                format!("could not load {key}: {error}"),
            ),
            "error",
        ),
    };
    api.metrics.observe(label, started.elapsed());
    tracing::info!(
        target: ANSWERS,
        kind = "answer",
        key = %key,
        source = label,
        status = reply.status().as_u16(),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        "answered {key} ({label}, {})",
        reply.status().as_u16()
    );
    Ok(reply)
}

async fn applied_get(
    query: std::collections::HashMap<String, String>,
    api: Arc<Api>,
) -> Result<warp::reply::Response, Rejection> {
    let number = |name: &str| match query.get(name) {
        None => Ok(0),
        Some(text) => text.parse::<u64>().map_err(|_| {
            warp::reject::custom(Problem {
                status: StatusCode::BAD_REQUEST,
                message: format!("{name}={text:?} is not a whole number"),
            })
        }),
    };
    let (at_least, wait_ms) = (number("at_least")?, number("wait_ms")?);
    let invalidation = api.group.invalidation();
    if invalidation.following() {
        let mut applied = invalidation.watch();
        let wait = Duration::from_millis(wait_ms).min(MAX_APPLIED_WAIT);
        // Timing out is an answer too: the version it got to.
        let _ = tokio::time::timeout(wait, applied.wait_for(|v| *v >= at_least)).await;
    }
    Ok(http::json(&Applied {
        following: invalidation.following(),
        applied: invalidation.applied(),
    }))
}

async fn owner_get(raw_key: String, api: Arc<Api>) -> Result<warp::reply::Response, Rejection> {
    let key = key::decode(&raw_key).map_err(Problem::bad_key)?;
    let members = api.group.members();
    let scores = members.ring.scores(&key);
    Ok(http::json(&Ownership {
        owner: members.ring.owner(&key).to_owned(),
        ranking: scores.iter().map(|(peer, _)| (*peer).to_owned()).collect(),
        scores: scores
            .iter()
            .map(|(peer, score)| PeerScore {
                peer: (*peer).to_owned(),
                score: format!("{score:016x}"),
            })
            .collect(),
        key: key.into_owned(),
        peers: members.peers(),
    }))
}

/// A header value from one of our own names (peer addresses): always visible ASCII.
fn header(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("?"))
}

/// Says in one line, at start-up, if `--db` answers but is not a dbserver: otherwise the
/// first sign would be a 502 on every load. A dbserver that is not up yet is no news: the
/// lab often starts it after the frontends, and loads say so when they fail.
async fn check_db(db: DbClient) {
    if let Err(e @ ClientError::WrongServer { .. }) = db.stats().await {
        tracing::warn!("--db {}: {e}", db.addr());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_clients_may_set_faults() {
        let at = |a: &str| allowed_to_set_faults(a.parse().unwrap());
        assert!(at("127.0.0.1:5000"));
        assert!(at("127.0.0.2:5000"));
        assert!(at("[::1]:5000"));
        assert!(at("[::ffff:127.0.0.1]:5000"));
        assert!(!at("10.0.0.7:5000"));
        assert!(!at("[2001:db8::1]:5000"));
    }
}
