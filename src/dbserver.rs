//! The dbserver: a durable key/value store behind HTTP, slow on purpose.
//!
//! Every read waits `delay` (300 ms by default) before it answers, so a trip to the
//! database is something you can feel from the cli. The wait is a tokio timer, not a
//! `thread::sleep`: a thousand concurrent reads wait side by side, like the goroutines of
//! the 2013 original, instead of queueing behind each other.
//!
//! Values live in sled. A write is acknowledged only after sled has flushed it to disk:
//! sled otherwise writes back every 500 ms, and a crash in between would lose a write the
//! client was told had succeeded.
//!
//! Routes (one filter function each):
//! - `GET /kv/{key}` → 200 and the value, or 404
//! - `PUT /kv/{key}` with the value as body → 204
//! - `GET /stats` → `{"gets": N, "sets": N, "keys": N}`
//! - `GET /metrics` → the same counters and request latencies, for Prometheus

use std::convert::Infallible;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::TcpListener;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use crate::client::Server;
use crate::http::{self, Limits, Problem};
use crate::key;
use crate::logging;
use crate::metrics::{Metrics, Snapshot};
use crate::stats::DbStats;

/// The default largest value, as in memcached: 1 MiB.
pub const MAX_VALUE_BYTES: u64 = 1024 * 1024;

/// How the dbserver treats its clients.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// The largest value a `PUT` may store.
    pub max_value_bytes: u64,
    pub limits: Limits,
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
        }
    }
}

/// The store and its counters, shared by every request.
pub struct Store {
    db: sled::Db,
    delay: Duration,
    gets: AtomicU64,
    sets: AtomicU64,
    keys: AtomicU64,
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

impl Store {
    /// Opens (or creates) the sled database in `dir`; every read will wait `delay`.
    pub fn open(dir: &Path, delay: Duration) -> Result<Store, OpenError> {
        let db = open_sled(dir).map_err(|e| OpenError {
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
        // sled's `len` walks the whole tree, so count once here and keep the count up to
        // date on each insert, instead of walking on every `GET /stats`.
        let keys = AtomicU64::new(db.len() as u64);
        Ok(Store {
            db,
            delay,
            gets: AtomicU64::default(),
            sets: AtomicU64::default(),
            keys,
        })
    }

    /// Reads `key` after the injected delay.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, sled::Error> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(self.delay).await;
        Ok(self.db.get(key)?.map(|v| Bytes::copy_from_slice(&v)))
    }

    /// Writes `key` and returns once it is on disk.
    pub async fn set(&self, key: &str, value: &[u8]) -> Result<(), sled::Error> {
        if self.db.insert(key, value)?.is_none() {
            self.keys.fetch_add(1, Ordering::Relaxed);
        }
        self.flush().await?;
        self.sets.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Flushes everything written so far to disk.
    ///
    /// sled's blocking `flush` on tokio's blocking pool, not sled's own `flush_async`: with
    /// a few dozen concurrent callers, `flush_async` in sled 0.34 stalls for many seconds
    /// (measured here: 64 concurrent writes had not finished after 20 s, against 23 ms this
    /// way). Concurrent flushes share sled's work: a flush that finds nothing dirty is cheap.
    async fn flush(&self) -> Result<(), sled::Error> {
        let db = self.db.clone();
        match tokio::task::spawn_blocking(move || db.flush()).await {
            Ok(flushed) => flushed.map(drop),
            Err(join_error) => Err(sled::Error::ReportableBug(format!(
                "flush task failed: {join_error}"
            ))),
        }
    }

    /// The counters.
    pub fn stats(&self) -> DbStats {
        DbStats {
            gets: self.gets.load(Ordering::Relaxed),
            sets: self.sets.load(Ordering::Relaxed),
            keys: self.keys.load(Ordering::Relaxed),
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
    let api = Arc::new(Api {
        metrics: Metrics::new("op", &["get", "set"]),
        store: Arc::clone(&store),
        max_value_bytes: config.max_value_bytes,
    });
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
}

/// Every route, with rejections turned into clear error bodies.
pub fn routes(api: Arc<Api>) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    get_kv(api.clone())
        .or(put_kv(api.clone()))
        .or(get_stats(api.clone()))
        .or(get_metrics(api))
        .or(http::empty_key("kv"))
        .recover(http::recover)
}

/// `GET /kv/{key}`
fn get_kv(api: Arc<Api>) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path!("kv" / String)
        .and(warp::get())
        .and(with_api(api))
        .and_then(read_value)
}

/// `PUT /kv/{key}` with the value as the body.
fn put_kv(api: Arc<Api>) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let limit = api.max_value_bytes;
    warp::path!("kv" / String)
        .and(warp::put())
        .and(warp::body::content_length_limit(limit).or_else(
            move |rejection: Rejection| async move {
                // warp's own rejection does not say what the limit is; ours does.
                if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
                    return Err(Problem::too_large(limit));
                }
                Err(rejection)
            },
        ))
        .and(warp::body::bytes())
        .and(with_api(api))
        .and_then(write_value)
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

async fn read_value(raw_key: String, api: Arc<Api>) -> Result<warp::reply::Response, Rejection> {
    let started = Instant::now();
    let key = key::decode(&raw_key).map_err(Problem::bad_key)?;
    tracing::info!(kind = "db", "getting {key}");
    let reply = match api.store.get(&key).await {
        Ok(Some(value)) => http::value(value),
        Ok(None) => http::no_such_key(format!("no such key: {key}")),
        Err(e) => {
            return Err(Problem::internal(format!("reading {key} from sled failed: {e}")).into())
        }
    };
    api.metrics.observe("get", started.elapsed());
    Ok(reply)
}

async fn write_value(
    raw_key: String,
    value: Bytes,
    api: Arc<Api>,
) -> Result<StatusCode, Rejection> {
    let started = Instant::now();
    let key = key::decode(&raw_key).map_err(Problem::bad_key)?;
    tracing::info!("setting {key} to {}", logging::preview(&value));
    match api.store.set(&key, &value).await {
        Ok(()) => {
            api.metrics.observe("set", started.elapsed());
            Ok(StatusCode::NO_CONTENT)
        }
        Err(e) => Err(Problem::internal(format!("writing {key} to sled failed: {e}")).into()),
    }
}
