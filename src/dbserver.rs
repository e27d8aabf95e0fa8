//! The dbserver: a durable key/value store behind HTTP, slow on purpose.
//!
//! Every read waits `delay` (300 ms by default) before it answers, so a trip to the
//! database is something you can feel from the cli. The wait is a tokio timer, not a
//! `thread::sleep`: a thousand concurrent reads wait side by side, like the goroutines of
//! the 2013 original, instead of queueing behind each other.
//!
//! Values live in sled, each with the version of the write that stored it ([`crate::store`]).
//! A write is acknowledged only after sled has flushed it to disk: sled otherwise writes
//! back every 500 ms, and a crash in between would lose a write the client was told had
//! succeeded.
//!
//! Routes (one filter function each):
//! - `GET /kv/{key}` → 200 and the value, with `x-gclab-version` and `ETag: "v7"`; or 404,
//!   whose `x-gclab-version` is the store's version ("no such key as of v7")
//! - `PUT /kv/{key}` with the value as body → 204, `x-gclab-version` the write's version;
//!   a `sha256:` key is refused (400): a blob is named by its bytes, not by its client
//! - `POST /blobs` with the bytes as body → 201 and their address, `sha256:<64 hex>`, as the
//!   body and in `Location: /kv/sha256:…`; the same bytes again get the same address
//! - `DELETE /kv/{key}` → 204 and the delete's version, or 404
//! - `GET /changes?since=V` → a stream of JSON lines, one per write after V (see below)
//! - `GET /stats` → `{"gets": N, "sets": N, "keys": N, "version": N, …}`
//! - `GET /metrics` → the same counters and request latencies, for Prometheus
//! - `GET /events?trace=ID&since=NS` → its trace events: each read's arrival and answer
//!
//! The change stream starts with `{"hello":V}` (the version it is at), replays the logged
//! writes after `since`, then sends each write as it is acknowledged:
//! `{"version":8,"key":"foo","op":"set"}` (or `"op":"del"`). Without `since` it starts from
//! now. A `since` the log no longer holds gets `410 Gone`, which names the oldest version
//! kept; a follower then has to start over.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use tokio::net::TcpListener;
use warp::http::header::{HeaderValue, ETAG};
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use crate::blob;
use crate::client::Server;
use crate::http::{self, Limits, Problem};
use crate::key;
use crate::logging;
use crate::metrics::{Metrics, Snapshot};
pub use crate::store::Store;
use crate::store::{Gap, CHANGE_LOG};
use crate::trace::{self, Detail, Events, Kind, Outcome, TRACEPARENT};

/// The default largest value, as in memcached: 1 MiB.
pub const MAX_VALUE_BYTES: u64 = 1024 * 1024;

/// How the dbserver treats its clients.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// The largest value a `PUT` may store.
    pub max_value_bytes: u64,
    pub limits: Limits,
    /// How many changes the change log keeps (`--change-log`).
    pub change_log: u64,
    /// How many trace events it keeps (`--events`); 0 records none.
    pub events: usize,
}

impl Config {
    /// Clients get `client_timeout` to send their headers, and a request may take the read
    /// `delay` plus ten seconds: past that it is a client trickling its body, not a slow disk.
    pub fn new(max_value_bytes: u64, client_timeout: Duration, delay: Duration) -> Config {
        Config {
            max_value_bytes,
            limits: Limits {
                header_timeout: client_timeout,
                request_timeout: delay + Duration::from_secs(10),
            },
            change_log: CHANGE_LOG,
            events: trace::DEFAULT_CAPACITY,
        }
    }
}

/// Serves the dbserver's HTTP API on `listener` until `shutdown` completes, then flushes.
pub async fn run(
    listener: TcpListener,
    store: Arc<Store>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    // Named by its address, as the frontends' `--db` names it.
    let name = listener
        .local_addr()
        .map_or_else(|_| "dbserver".to_owned(), |a| a.to_string());
    let api = Arc::new(Api {
        events: Arc::new(Events::new(&name, config.events)),
        metrics: Metrics::new("op", &["get", "set", "del"]),
        store: Arc::clone(&store),
        max_value_bytes: config.max_value_bytes,
    });
    // Change streams never end by themselves: end them when told to stop, so that the
    // graceful shutdown does not wait its whole grace period for them.
    let ending = Arc::clone(&store);
    let shutdown = async move {
        shutdown.await;
        ending.end_streams();
    };
    http::serve(
        listener,
        routes(api),
        config.limits,
        Server::Dbserver.header(),
        shutdown,
    )
    .await;
    if let Err(e) = store.flush().await {
        tracing::error!("could not flush the store on shutdown: {e}");
    }
}

/// What the HTTP handlers share: the store and the request metrics.
pub struct Api {
    pub store: Arc<Store>,
    pub metrics: Metrics,
    pub max_value_bytes: u64,
    /// What happened to each read, for `GET /events`.
    pub events: Arc<Events>,
}

/// The header that carries a version, on the dbserver's answers and the frontends'.
pub const VERSION: &str = "x-gclab-version";

/// Every route, with rejections turned into clear error bodies.
pub fn routes(api: Arc<Api>) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    get_kv(api.clone())
        .or(put_kv(api.clone()))
        .or(post_blob(api.clone()))
        .or(delete_kv(api.clone()))
        .or(get_changes(api.clone()))
        .or(get_stats(api.clone()))
        .or(http::events(&api.events))
        .or(get_metrics(api))
        .or(http::empty_key("kv"))
        .recover(http::recover)
}

/// `GET /kv/{key}`
fn get_kv(api: Arc<Api>) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("kv" / String)
        .and(warp::get())
        .and(warp::header::optional::<String>(TRACEPARENT))
        .and(with_api(api))
        .and_then(read_value)
}

/// `PUT /kv/{key}` with the value as the body.
fn put_kv(api: Arc<Api>) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("kv" / String)
        .and(warp::put())
        .and(value_body(api.max_value_bytes))
        .and(with_api(api))
        .and_then(write_value)
}

/// `POST /blobs` with the blob's bytes as the body.
fn post_blob(api: Arc<Api>) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("blobs")
        .and(warp::post())
        .and(value_body(api.max_value_bytes))
        .and(with_api(api))
        .and_then(write_blob)
}

/// A request body of at most `limit` bytes: a set's value, or a blob.
fn value_body(limit: u64) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::body::content_length_limit(limit)
        .or_else(move |rejection: Rejection| async move {
            // warp's own rejection does not say what the limit is; ours does.
            if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
                return Err(Problem::too_large(limit));
            }
            Err(rejection)
        })
        .and(warp::body::bytes())
}

/// `DELETE /kv/{key}`
fn delete_kv(api: Arc<Api>) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("kv" / String)
        .and(warp::delete())
        .and(with_api(api))
        .and_then(delete_value)
}

/// `GET /changes?since=V`
fn get_changes(api: Arc<Api>) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("changes")
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_api(api))
        .and_then(stream_changes)
}

/// `GET /stats`
fn get_stats(api: Arc<Api>) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("stats")
        .and(warp::get())
        .and(with_api(api))
        .map(|api: Arc<Api>| http::json(&api.store.stats()))
}

/// `GET /metrics`
fn get_metrics(api: Arc<Api>) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("metrics")
        .and(warp::get())
        .and(with_api(api))
        .map(|api: Arc<Api>| http::metrics(api.metrics.render(Snapshot::Db(api.store.stats()))))
}

fn with_api(api: Arc<Api>) -> impl Filter<Extract = (Arc<Api>,), Error = Infallible> + Clone {
    warp::any().map(move || api.clone())
}

/// Adds `x-gclab-version: {version}` to a reply.
fn with_version(mut reply: warp::reply::Response, version: u64) -> warp::reply::Response {
    reply
        .headers_mut()
        .insert(VERSION, HeaderValue::from(version));
    reply
}

async fn read_value(
    raw_key: String,
    traceparent: Option<String>,
    api: Arc<Api>,
) -> Result<warp::reply::Response, Rejection> {
    let started = Instant::now();
    let key = key::decode(&raw_key).map_err(Problem::bad_key)?;
    tracing::info!(kind = "db", "getting {key}");
    let span = http::arriving(&api.events, traceparent.as_deref(), &key);
    // The store's version, read before the key: a "no such key" is true as of it at least.
    let store_version = api.store.version();
    let found = api.store.get(&key).await;
    let answered = |outcome| Detail {
        outcome: Some(outcome),
        ..Detail::default()
    };
    let reply = match found {
        Ok(Some(found)) => {
            api.events
                .note(span, Kind::Answered, answered(Outcome::Found));
            let mut reply = with_version(http::value(found.value), found.version);
            reply
                .headers_mut()
                .insert(ETAG, http::etag(found.version, &[]));
            reply
        }
        Ok(None) => {
            api.events
                .note(span, Kind::Answered, answered(Outcome::NotFound));
            with_version(
                http::no_such_key(format!("no such key: {key}")),
                store_version,
            )
        }
        Err(e) => {
            api.events
                .note(span, Kind::Answered, answered(Outcome::Error));
            return Err(Problem::internal(format!("reading {key} from sled failed: {e}")).into());
        }
    };
    api.metrics.observe("get", started.elapsed());
    Ok(reply)
}

async fn write_value(
    raw_key: String,
    value: Bytes,
    api: Arc<Api>,
) -> Result<warp::reply::Response, Rejection> {
    let started = Instant::now();
    let key = key::decode(&raw_key).map_err(Problem::bad_key)?;
    if blob::is_blob(&key) {
        // Not "accept it if the hash matches": one way in keeps the rule short, and the
        // name is never the client's to give.
        return Ok(http::text(
            StatusCode::BAD_REQUEST,
            format!(
                "{key} is a blob's address, which the dbserver gives: POST the bytes to \
                 /blobs (`gclab cli put FILE`) and it names them"
            ),
        ));
    }
    match api.store.set(&key, &value).await {
        Ok(version) => {
            tracing::info!("setting {key} to {} (v{version})", logging::preview(&value));
            api.metrics.observe("set", started.elapsed());
            Ok(with_version(no_content(), version))
        }
        Err(e) => Err(Problem::internal(format!("writing {key} to sled failed: {e}")).into()),
    }
}

/// Stores a blob under the address of its bytes, which the dbserver computes itself.
///
/// Storing the same bytes again writes them again (a new version, the same address):
/// simpler than looking first, and every reader sees the same bytes either way.
async fn write_blob(value: Bytes, api: Arc<Api>) -> Result<warp::reply::Response, Rejection> {
    let started = Instant::now();
    let address = blob::address(&value);
    match api.store.set(&address, &value).await {
        Ok(version) => {
            tracing::info!(
                "stored a blob of {} bytes as {address} (v{version})",
                value.len()
            );
            api.metrics.observe("set", started.elapsed());
            let mut reply = with_version(http::text(StatusCode::CREATED, address.clone()), version);
            let location = format!("/kv/{}", key::encode(&address));
            reply.headers_mut().insert(
                warp::http::header::LOCATION,
                HeaderValue::from_str(&location).expect("an encoded key is a valid header"),
            );
            Ok(reply)
        }
        Err(e) => Err(Problem::internal(format!("writing {address} to sled failed: {e}")).into()),
    }
}

async fn delete_value(raw_key: String, api: Arc<Api>) -> Result<warp::reply::Response, Rejection> {
    let started = Instant::now();
    let key = key::decode(&raw_key).map_err(Problem::bad_key)?;
    match api.store.delete(&key).await {
        Ok(Some(version)) => {
            tracing::info!("deleting {key} (v{version})");
            api.metrics.observe("del", started.elapsed());
            Ok(with_version(no_content(), version))
        }
        Ok(None) => Ok(http::no_such_key(format!("no such key: {key}"))),
        Err(e) => Err(Problem::internal(format!("deleting {key} in sled failed: {e}")).into()),
    }
}

fn no_content() -> warp::reply::Response {
    StatusCode::NO_CONTENT.into_response()
}

/// The change stream: a hello line, the log's changes after `since`, then live ones.
async fn stream_changes(
    query: HashMap<String, String>,
    api: Arc<Api>,
) -> Result<warp::reply::Response, Rejection> {
    let since = match query.get("since").map(|s| s.parse::<u64>()) {
        None => None,
        Some(Ok(since)) => Some(since),
        Some(Err(_)) => {
            return Ok(http::text(
                StatusCode::BAD_REQUEST,
                format!(
                    "since={:?} is not a version: give the last version you applied, a whole \
                     number like since=42 (or leave since out to start from now)",
                    query["since"]
                ),
            ))
        }
    };
    let (current, subscription) = match api.store.follow(since) {
        Ok(followed) => followed,
        Err(gap) => {
            // The reason on the first line, for a follower to log; advice on the second.
            let mut reply = http::text(
                StatusCode::GONE,
                format!("{gap}\nstart over without since=, and drop what you cached"),
            );
            if let Gap::Trimmed { oldest, .. } = gap {
                reply
                    .headers_mut()
                    .insert("x-gclab-oldest", HeaderValue::from(oldest));
            }
            return Ok(reply);
        }
    };
    tracing::info!(
        "a follower subscribed to changes{}",
        since.map_or(String::new(), |v| format!(" after v{v}"))
    );
    let hello = Bytes::from(format!("{{\"hello\":{current}}}\n"));
    // The replay reads the log a batch at a time, so a follower far behind does not make
    // the whole replay sit in memory at once.
    let store = Arc::clone(&api.store);
    let replay = futures::stream::unfold(subscription.replay, move |mut range| {
        let store = Arc::clone(&store);
        async move {
            let from = *range.start();
            if range.is_empty() {
                return None;
            }
            let to = (from + 255).min(*range.end());
            let batch: Result<Vec<Bytes>, sled::Error> = store.lines(from..=to).collect();
            range = to + 1..=*range.end();
            Some((
                futures::stream::iter(
                    batch.map_or_else(|e| vec![Err(e)], |b| b.into_iter().map(Ok).collect()),
                ),
                range,
            ))
        }
    })
    .flatten();
    let live = futures::stream::unfold(subscription.live, |mut live| async move {
        live.recv().await.map(|line| (Ok(line), live))
    });
    let body = futures::stream::iter([Ok(hello)]).chain(replay).chain(live);
    let mut reply = warp::reply::stream(body).into_response();
    reply.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(reply)
}
