//! What the two HTTP servers (dbserver and frontend API) share: the accept loop with its
//! deadlines and limits, error replies, and trace events (`GET /events`).
//!
//! As in warp's `todos` example, handlers return a [`Problem`] rejection and one
//! `recover` turns every rejection into a status and a one-line plain-text body that says
//! what was wrong, e.g. `400 the key is 300 bytes long; the limit is 250`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower_service::Service;
use warp::http::header::SERVER;
use warp::http::{HeaderValue, StatusCode};
use warp::reject::{LengthRequired, MethodNotAllowed};
use warp::{Filter, Rejection, Reply};

use crate::key::KeyError;
use crate::trace::{self, Detail, Events, Kind, Span, TraceParent};

/// The address a request came from; set on every request but a GET (see `serve`).
#[derive(Debug, Clone, Copy)]
pub struct Remote(pub std::net::SocketAddr);

/// A request that failed with a status and a message for the person who sent it.
#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub message: String,
}

impl warp::reject::Reject for Problem {}

impl Problem {
    /// 400: the key in the path is not a valid key.
    pub fn bad_key(error: KeyError) -> Rejection {
        warp::reject::custom(Problem {
            status: StatusCode::BAD_REQUEST,
            message: error.to_string(),
        })
    }

    /// 413: a value over the limit.
    pub fn too_large(limit: u64) -> Rejection {
        warp::reject::custom(Problem {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!(
                "the value is larger than the limit of {} (--max-value-bytes)",
                bytesize::ByteSize::b(limit).display().iec()
            ),
        })
    }

    /// 500: something broke on our side.
    pub fn internal(message: String) -> Problem {
        tracing::error!("{message}");
        Problem {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message,
        }
    }
}

/// `/{prefix}` and `/{prefix}/` with no key: a `400` that says so, where a bare "no such
/// route" would leave the sender guessing.
pub fn empty_key(
    prefix: &'static str,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path(prefix)
        .and(warp::path::end())
        .map(|| text(StatusCode::BAD_REQUEST, KeyError::Empty.to_string()))
}

/// `GET /events?trace=ID&since=NS`: the server's trace events, of one trace (32 hex digits)
/// and at or after a time (Unix nanoseconds), each optional.
pub fn events(
    events: &Arc<Events>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let events = Arc::clone(events);
    warp::path!("events")
        .and(warp::get())
        .and(warp::query::<std::collections::HashMap<String, String>>())
        .and_then(move |query: std::collections::HashMap<String, String>| {
            let events = Arc::clone(&events);
            async move {
                let bad = |message: String| {
                    warp::reject::custom(Problem {
                        status: StatusCode::BAD_REQUEST,
                        message,
                    })
                };
                let trace = match query.get("trace") {
                    None => None,
                    Some(text) => Some(trace::parse_trace_id(text).ok_or_else(|| {
                        bad(format!(
                            "trace={text:?} is not a trace id (up to 32 hex digits)"
                        ))
                    })?),
                };
                let since = match query.get("since") {
                    None => 0,
                    Some(text) => text.parse::<u64>().map_err(|_| {
                        bad(format!(
                            "since={text:?} is not a time in nanoseconds since the Unix epoch"
                        ))
                    })?,
                };
                Ok::<_, Rejection>(json(&events.query(trace, since)))
            }
        })
}

/// Notes a request's arrival at this server, under the trace its `traceparent` header names
/// (one of its own if it has none, or an invalid one); returns the request's span here.
pub fn arriving(events: &Events, traceparent: Option<&str>, key: &str) -> Span {
    let parent = traceparent.and_then(TraceParent::parse);
    let span = Span::arriving(parent);
    if events.capacity() > 0 {
        let detail = Detail {
            key: Some(key.into()),
            parent: parent.map(|p| p.parent),
            ..Detail::default()
        };
        events.note(span, Kind::Arrived, detail);
    }
    span
}

/// A `404` for a key that does not exist, marked so that clients can tell it from a
/// `404` for a route that does not exist (a cli pointed at the wrong port).
pub fn no_such_key(message: String) -> warp::reply::Response {
    let mut response = text(StatusCode::NOT_FOUND, message);
    response
        .headers_mut()
        .insert(MISSING_KEY, warp::http::HeaderValue::from_static("key"));
    response
}

/// The header on a "no such key" `404`.
pub const MISSING_KEY: &str = "x-gclab-missing";

/// A JSON reply, ending in a newline so `curl` leaves the shell prompt on a line of its own.
pub fn json<T: serde::Serialize>(value: &T) -> warp::reply::Response {
    let mut body =
        serde_json::to_string(value).expect("our replies are plain data and always serialize");
    body.push('\n');
    let mut response = warp::http::Response::new(body).into_response();
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/json"),
    );
    response
}

/// An `ETag` for a value: its version (`"v7"`) when it is known, else a hash of its bytes
/// (`"h…"`), which names the same bytes just as well but costs a pass over them.
pub fn etag(version: u64, value: &[u8]) -> HeaderValue {
    use std::io::Write;
    // Written into a buffer on the stack: this runs on every cache hit, and a `format!`
    // would cost an allocation more than the header's own.
    let mut tag = [0u8; 24];
    let mut cursor = std::io::Cursor::new(&mut tag[..]);
    let written = if version > 0 {
        write!(cursor, "\"v{version}\"")
    } else {
        use std::hash::Hasher;
        let mut hasher = siphasher::sip::SipHasher13::new();
        hasher.write(value);
        write!(cursor, "\"h{:016x}\"", hasher.finish())
    };
    written.expect("a u64 in 20 digits fits 24 bytes with its quotes and letter");
    let len = cursor.position() as usize;
    HeaderValue::from_bytes(&tag[..len]).expect("quotes, letters and digits make a valid header")
}

/// The version in an ETag that [`etag`] made (`"v7"` → 7); 0 for any other tag.
pub fn version_in_etag(tag: &[u8]) -> u64 {
    tag.strip_prefix(b"\"v")
        .and_then(|rest| rest.strip_suffix(b"\""))
        .and_then(|digits| std::str::from_utf8(digits).ok())
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(0)
}

/// A plain-text reply.
pub fn text(status: StatusCode, body: String) -> warp::reply::Response {
    warp::reply::with_status(body + "\n", status).into_response()
}

/// A value reply: the bytes as they are, without copying them.
pub fn value(value: bytes::Bytes) -> warp::reply::Response {
    let mut response = warp::http::Response::new(value).into_response();
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// The `/metrics` reply.
pub fn metrics(text: String) -> warp::reply::Response {
    let mut response = warp::http::Response::new(text).into_response();
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    response
}

/// Turns every rejection into a clear plain-text error reply.
pub async fn recover(rejection: Rejection) -> Result<warp::reply::Response, Infallible> {
    let (status, message) = if let Some(problem) = rejection.find::<Problem>() {
        (problem.status, problem.message.clone())
    } else if rejection.is_not_found() {
        (StatusCode::NOT_FOUND, "no such route".to_owned())
    } else if rejection.find::<LengthRequired>().is_some() {
        (
            StatusCode::LENGTH_REQUIRED,
            "send the value with a Content-Length header".to_owned(),
        )
    } else if rejection.find::<MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed here".to_owned(),
        )
    } else {
        (
            StatusCode::BAD_REQUEST,
            format!("bad request: {rejection:?}"),
        )
    };
    Ok(text(status, message))
}

/// The deadlines and limits an HTTP server puts on its clients.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a client may take to send a request's headers, and how long an idle
    /// keep-alive connection stays open. A client that sends half a request and stalls
    /// is disconnected after this.
    pub header_timeout: Duration,
    /// How long one request may take from its headers to its answer, body upload
    /// included; past it the client gets `504`. It must outlast every load the request may
    /// wait for (a peer call, a dbserver read).
    pub request_timeout: Duration,
}

/// The largest request head (request line and headers) we read; a larger one gets `431`.
/// hyper's default is ~400 KiB; our requests are a path and a handful of headers.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Serves `filter` on `listener` over HTTP/1.1 until `shutdown`, then lets requests in
/// flight finish (for up to `request_timeout`).
///
/// warp's own `warp::serve(…).incoming(listener)` was the simpler choice, and what the lab
/// first used; but it offers no way to set hyper's header-read timeout or head size, so one
/// client trickling a request byte by byte could hold a connection forever. Driving hyper
/// here is the same accept loop warp runs, with those knobs set, and TCP_NODELAY set on each
/// accepted socket (without it a small reply can wait ~40 ms for a delayed ACK).
///
/// Every answer carries `server: {name}` (`gclab-dbserver`, `gclab-frontend`): it is how a
/// client tells our servers from whatever else answers at an address (see `client.rs`).
pub async fn serve<F, R>(
    listener: TcpListener,
    filter: F,
    limits: Limits,
    name: &'static str,
    shutdown: impl Future<Output = ()>,
) where
    F: Filter<Extract = (R,), Error = Infallible> + Clone + Send + Sync + 'static,
    R: Reply,
{
    let connections = GracefulShutdown::new();
    // Each connection's task, so that the ones still running after the grace period can be
    // cut off for real (a detached `tokio::spawn` would outlive this server).
    let mut tasks = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = tasks.join_next() => continue, // reap connections that closed
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => (stream, remote),
                Err(e) => {
                    // Usually "too many open files": wait a moment instead of spinning.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::warn!("could not set TCP_NODELAY: {e}");
        }
        let warp_service = warp::service(filter.clone());
        let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
            // Who sent it, for the routes that care (`POST /faults`, loopback only). Not on
            // a GET: the extension map is an allocation, and GETs are the cache hits.
            if request.method() != hyper::Method::GET {
                request.extensions_mut().insert(Remote(remote));
            }
            let mut warp_service = warp_service.clone();
            async move {
                // The deadline's timer is armed only for a request that has to wait: a
                // cache hit is answered on its first poll, and arming and clearing a timer
                // for each of those was a measurable part of a hit's cost (bench/hits.sh).
                let mut call = std::pin::pin!(warp_service.call(request));
                let answer = match futures::poll!(call.as_mut()) {
                    Poll::Ready(answer) => Ok(answer),
                    Poll::Pending => tokio::time::timeout(limits.request_timeout, call).await,
                };
                let mut response = match answer {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_) => text(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!(
                            "the request took longer than {}",
                            humantime::format_duration(limits.request_timeout)
                        ),
                    ),
                };
                response
                    .headers_mut()
                    .insert(SERVER, HeaderValue::from_static(name));
                Ok::<_, Infallible>(response)
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(MAX_HEAD_BYTES)
            .serve_connection(TokioIo::new(stream), service);
        let connection = connections.watch(connection);
        tasks.spawn(async move {
            // A client that hangs up or times out ends here; that is its business, not an error.
            if let Err(e) = connection.await {
                tracing::debug!("connection closed: {e}");
            }
        });
    }
    drop(listener); // stop accepting at once; clients see "connection refused"
    if tokio::time::timeout(limits.request_timeout, connections.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after the grace period were cut off");
    }
    tasks.abort_all();
}
