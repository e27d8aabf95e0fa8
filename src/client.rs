//! HTTP clients for the lab's two HTTP servers: the dbserver and a frontend's client API.
//!
//! A frontend uses [`DbClient`] to load keys it owns; the cli uses both. Each client holds
//! one pooled hyper client, which reuses connections. The 2013 original opened a new
//! connection for every database load and never closed it, and stopped working after about
//! 20,000 loads; a pool makes that impossible.
//!
//! Only a real answer from the right server is ever read as data:
//! - every answer must carry our `server` header (`gclab-dbserver` or `gclab-frontend`), so
//!   an address that reaches nginx, an old program or the other kind of gclab server is an
//!   error that names what it reached, never a value;
//! - then a 2xx is the value, a `404` marked [`MISSING_KEY`] is "no such key", and every
//!   other status is an error with its status and server named.
//!
//! hyper's client, not reqwest: reqwest parses every URL by the WHATWG rules, which remove
//! `.` and `..` path segments (and `%2E%2E` with them), so the valid keys `.` and `..`
//! could not be asked for at all, and `/cache/..` quietly became `/`. hyper sends the path
//! exactly as [`key::encode`] wrote it.
//!
//! Every error says what failed, where, and what to do next.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, SERVER};
use hyper::http::response::Parts;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::{Deserialize, Serialize};

use crate::faults::{FaultStats, Faults, Rule};
use crate::http::MISSING_KEY;
use crate::key;
use crate::stats::{DbStats, NodeStats};
use crate::trace::{EventsAnswer, TraceParent, TRACEPARENT};

/// Why a call to one of our servers failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// Nothing answered: the server is not running, or not at that address.
    #[error("cannot reach {server} at {addr} ({reason}) — {hint}")]
    Unreachable {
        server: Server,
        addr: String,
        reason: String,
        hint: String,
    },
    /// Something answered, but it is not the kind of server we meant to ask.
    #[error("{addr} is {found}, not {} — {advice}", .expected.article())]
    WrongServer {
        expected: Server,
        addr: String,
        found: String,
        advice: String,
    },
    /// The server accepted the call but did not answer in time.
    #[error("{server} at {addr} did not answer within {}", humantime::format_duration(*.after))]
    Timeout {
        server: Server,
        addr: String,
        after: Duration,
    },
    /// The server refused the request (4xx): the request itself was wrong.
    #[error("{server} at {addr} refused the request: {status} {message}")]
    Refused {
        server: Server,
        addr: String,
        status: u16,
        message: String,
    },
    /// The server answered with an error of its own (5xx), or an unreadable answer.
    #[error("{server} at {addr} failed: {status} {message}")]
    Failed {
        server: Server,
        addr: String,
        status: u16,
        message: String,
    },
}

/// Which kind of server a client talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Dbserver,
    Frontend,
}

impl Server {
    /// What our servers put in the `server` header of every answer.
    pub fn header(self) -> &'static str {
        match self {
            Server::Dbserver => "gclab-dbserver",
            Server::Frontend => "gclab-frontend",
        }
    }

    /// The kind of gclab server that sent these headers, if any.
    fn of(headers: &HeaderMap) -> Option<Server> {
        match headers.get(SERVER)?.as_bytes() {
            b"gclab-dbserver" => Some(Server::Dbserver),
            b"gclab-frontend" => Some(Server::Frontend),
            _ => None,
        }
    }

    fn article(self) -> &'static str {
        match self {
            Server::Dbserver => "the dbserver",
            Server::Frontend => "a frontend",
        }
    }

    /// Where this kind of server is found, for a person who pointed a flag elsewhere.
    fn whereabouts(self) -> &'static str {
        match self {
            Server::Dbserver => {
                "point --db at the dbserver (127.0.0.1:8080 unless it was started with --addr)"
            }
            Server::Frontend => {
                "a frontend serves clients on its --port + 1000 (9001, 9002 and 9003 in the lab)"
            }
        }
    }
}

impl std::fmt::Display for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Server::Dbserver => "dbserver",
            Server::Frontend => "frontend",
        })
    }
}

/// Connections are local in this lab; a connect that takes longer than this is not coming.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The largest answer body read. Our servers' bodies are bounded by `--max-value-bytes`
/// (1 MiB by default); this only stops something else from filling our memory.
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// One pooled HTTP client bound to one server address.
#[derive(Clone)]
struct Endpoint {
    http: Client<HttpConnector, Full<Bytes>>,
    server: Server,
    addr: String,
    timeout: Duration,
}

/// A whole answer from the server we meant to ask.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Endpoint {
    fn new(server: Server, addr: &str, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        // Without TCP_NODELAY a small request can wait ~40 ms for a delayed ACK.
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT.min(timeout)));
        // Keepalive probes, for the long-lived change stream: a dbserver that vanished
        // without closing the connection is noticed within about 10 s.
        connector.set_keepalive(Some(Duration::from_secs(4)));
        connector.set_keepalive_interval(Some(Duration::from_secs(2)));
        connector.set_keepalive_retries(Some(3));
        let http = Client::builder(TokioExecutor::new())
            // The timer closes pooled connections that sat idle, instead of keeping them forever.
            .pool_timer(TokioTimer::new())
            // Enough idle connections for a burst of loads to reuse; past that, a connection
            // made for a herd is closed after use rather than kept, with its buffers, for
            // the pool's 90 s idle timeout.
            .pool_max_idle_per_host(16)
            .build(connector);
        Endpoint {
            http,
            server,
            addr: addr.to_owned(),
            timeout,
        }
    }

    /// Sends one request and reads the whole answer, within the client's deadline.
    async fn call(&self, method: Method, path: &str, body: Bytes) -> Result<Answer, ClientError> {
        self.within(async {
            let (parts, body) = self.head(method, path, body).await?;
            self.read(parts, body).await
        })
        .await
    }

    /// Sends one request and returns the answer's head, its body left to read as it comes
    /// (the change stream), within the client's deadline.
    async fn open(&self, path: &str) -> Result<(Parts, Incoming), ClientError> {
        self.within(self.head(Method::GET, path, Bytes::new()))
            .await
    }

    /// `work`, or a timeout error once the client's deadline has passed.
    async fn within<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        match tokio::time::timeout(self.timeout, work).await {
            Ok(answer) => answer,
            Err(_) => Err(ClientError::Timeout {
                server: self.server,
                addr: self.addr.clone(),
                after: self.timeout,
            }),
        }
    }

    /// Sends the request; returns the answer's head once it is known to come from the
    /// server we meant to ask.
    async fn head(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(Parts, Incoming), ClientError> {
        self.head_traced(method, path, body, None).await
    }

    /// `head`, the request carrying `trace` as its `traceparent` header.
    async fn head_traced(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        trace: Option<TraceParent>,
    ) -> Result<(Parts, Incoming), ClientError> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        if let Some(trace) = trace {
            request = request.header(TRACEPARENT, trace.header());
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| ClientError::Unreachable {
                server: self.server,
                addr: self.addr.clone(),
                reason: format!("not a host:port: {e}"),
                hint: "give an address like 127.0.0.1:9001".to_owned(),
            })?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| self.transport_error(&e))?;
        let (parts, body) = response.into_parts();
        // Who answered is checked before the body is read: a stranger's body is never data.
        let reached = Server::of(&parts.headers);
        if reached != Some(self.server) {
            return Err(self.wrong_server(reached, parts.status, &parts.headers));
        }
        Ok((parts, body))
    }

    /// Reads a whole answer body.
    async fn read(&self, parts: Parts, body: Incoming) -> Result<Answer, ClientError> {
        let body = Limited::new(body, MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| self.failed(parts.status, format!("its answer broke off: {e}")))?
            .to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// A 2xx answer, or `None` for "no such key"; every other status is an error.
    fn sort(&self, answer: Answer) -> Result<Option<Answer>, ClientError> {
        let status = answer.status;
        if status.is_success() {
            return Ok(Some(answer));
        }
        if status == StatusCode::NOT_FOUND && answer.headers.contains_key(MISSING_KEY) {
            return Ok(None);
        }
        let message = String::from_utf8_lossy(&answer.body).trim().to_owned();
        let (server, addr, status) = (self.server, self.addr.clone(), status.as_u16());
        Err(if (400..500).contains(&status) {
            ClientError::Refused {
                server,
                addr,
                status,
                message,
            }
        } else {
            ClientError::Failed {
                server,
                addr,
                status,
                message,
            }
        })
    }

    /// `sort`, where "no such key" cannot be the answer (stats, sets).
    async fn call_for(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Answer, ClientError> {
        let answer = self.call(method, path, body).await?;
        let status = answer.status;
        self.sort(answer)?
            .ok_or_else(|| self.failed(status, format!("it has no {path}")))
    }

    async fn json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let answer = self.call_for(Method::GET, path, Bytes::new()).await?;
        serde_json::from_slice(&answer.body).map_err(|e| {
            self.failed(
                answer.status,
                format!("but its answer to {path} is unreadable: {e}"),
            )
        })
    }

    fn failed(&self, status: StatusCode, message: String) -> ClientError {
        ClientError::Failed {
            server: self.server,
            addr: self.addr.clone(),
            status: status.as_u16(),
            message,
        }
    }

    fn wrong_server(
        &self,
        reached: Option<Server>,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> ClientError {
        let found = match reached {
            Some(Server::Dbserver) => "the gclab dbserver".to_owned(),
            Some(Server::Frontend) => "a gclab frontend".to_owned(),
            None => {
                let said = match headers.get(SERVER).and_then(|v| v.to_str().ok()) {
                    Some(name) => format!(", from a server calling itself '{name}'"),
                    None => String::new(),
                };
                format!("not a gclab server (it answered {status}{said})")
            }
        };
        ClientError::WrongServer {
            expected: self.server,
            addr: self.addr.clone(),
            found,
            advice: self.server.whereabouts().to_owned(),
        }
    }

    fn transport_error(&self, error: &hyper_util::client::legacy::Error) -> ClientError {
        let (server, addr) = (self.server, self.addr.clone());
        if error.is_connect() {
            return ClientError::Unreachable {
                server,
                addr,
                reason: root_cause(error),
                hint: self.start_hint(),
            };
        }
        // It accepted the connection, then closed it (or sent something) without an HTTP
        // answer: a crashed server, or a port that speaks something else. A frontend's peer
        // port is the likely one in this lab, since every log line names it.
        let port = self.port().unwrap_or(0);
        let peer_port = format!("if {port} is a frontend's peer (tarpc) port");
        ClientError::WrongServer {
            expected: server,
            addr,
            found: format!("a port that does not answer HTTP ({})", root_cause(error)),
            advice: match server {
                Server::Frontend => {
                    let clients = port.saturating_add(1000);
                    format!("{peer_port}, its clients use {clients}: --port {clients}")
                }
                Server::Dbserver => format!("{peer_port}, {}", server.whereabouts()),
            },
        }
    }

    fn port(&self) -> Option<u16> {
        self.addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
    }

    /// What to check, or the command that would start the missing server.
    fn start_hint(&self) -> String {
        match (self.server, self.port()) {
            (Server::Dbserver, _) => "is 'gclab dbserver' running?".to_owned(),
            // The lab's peer ports are 8001.. and their clients' ports 9001..: a cli pointed
            // at 8001 most likely meant 9001, not a frontend started with --port 7001.
            (Server::Frontend, Some(port @ 8000..=8999)) => format!(
                "{port} is where the lab's frontends listen for peers (tarpc); clients use \
                 port + 1000, e.g. --port {}",
                port + 1000
            ),
            (Server::Frontend, Some(port)) if port > 1000 => {
                format!("is 'gclab frontend --port {}' running?", port - 1000)
            }
            (Server::Frontend, _) => "is 'gclab frontend' running?".to_owned(),
        }
    }
}

/// The innermost cause of an error, e.g. "connection refused", which is what a person can
/// act on; hyper's own outer message ("client error (Connect)") is not.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    match cause.downcast_ref::<std::io::Error>() {
        Some(io) => io.kind().to_string(),
        None => cause.to_string(),
    }
}

/// Talks to the dbserver: `GET /kv/{key}`, `PUT /kv/{key}`, `GET /stats`.
#[derive(Clone)]
pub struct DbClient {
    endpoint: Endpoint,
    /// A frontend's fault rules (`cli fault db-delay`); the cli's clients have none.
    faults: Option<Arc<Faults>>,
}

impl DbClient {
    /// A client for the dbserver at `addr` (`host:port`) whose calls give up after `timeout`.
    pub fn new(addr: &str, timeout: Duration) -> Self {
        DbClient {
            endpoint: Endpoint::new(Server::Dbserver, addr, timeout),
            faults: None,
        }
    }

    /// The same client, its reads delayed by whatever `db-delay` rules `faults` holds.
    pub fn with_faults(self, faults: Arc<Faults>) -> Self {
        DbClient {
            faults: Some(faults),
            ..self
        }
    }

    /// The value of `key`, or `None` if the dbserver has no such key.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, ClientError> {
        Ok(self.load(key).await?.value)
    }

    /// The value of `key` and its version; for "no such key", the store's version at the
    /// read, since the answer is true as of that version.
    pub async fn load(&self, key: &str) -> Result<Loaded, ClientError> {
        self.load_traced(key, None).await
    }

    /// `load`, on behalf of the traced request `trace` names.
    pub async fn load_traced(
        &self,
        key: &str,
        trace: Option<TraceParent>,
    ) -> Result<Loaded, ClientError> {
        let e = &self.endpoint;
        // A db-delay rule waits inside the read's deadline, as a slow network would.
        let delay = self.faults.as_ref().and_then(|f| f.on_db_read());
        let answer = e
            .within(async {
                if let Some(delay) = delay {
                    tokio::time::sleep(delay).await;
                }
                let (parts, body) = e
                    .head_traced(Method::GET, &kv_path(key), Bytes::new(), trace)
                    .await?;
                e.read(parts, body).await
            })
            .await?;
        let version = version_of(&answer.headers);
        Ok(Loaded {
            value: e.sort(answer)?.map(|a| a.body),
            version,
        })
    }

    /// Stores `value` under `key`; returns the write's version once the dbserver has
    /// flushed it to disk.
    pub async fn set(&self, key: &str, value: Bytes) -> Result<u64, ClientError> {
        let e = &self.endpoint;
        let answer = e.call_for(Method::PUT, &kv_path(key), value).await?;
        Ok(version_of(&answer.headers))
    }

    /// Stores `bytes` as a blob: the address the dbserver gave it, and the write's version.
    pub async fn put_blob(&self, bytes: Bytes) -> Result<(String, u64), ClientError> {
        let e = &self.endpoint;
        let answer = e.call_for(Method::POST, "/blobs", bytes).await?;
        let address = String::from_utf8_lossy(&answer.body).trim().to_owned();
        // Checked, as every answer is: a blob's address is all the cli has to show for it.
        if !crate::blob::is_blob(&address) || key::validate(&address).is_err() {
            let reason = format!("but its answer {address:?} is not a blob's address");
            return Err(e.failed(answer.status, reason));
        }
        Ok((address, version_of(&answer.headers)))
    }

    /// Deletes `key`: its version, or `None` if there was no such key.
    pub async fn delete(&self, key: &str) -> Result<Option<u64>, ClientError> {
        let e = &self.endpoint;
        let answer = e.call(Method::DELETE, &kv_path(key), Bytes::new()).await?;
        Ok(e.sort(answer)?.map(|a| version_of(&a.headers)))
    }

    /// Opens the change stream after version `since` (`None`: from now on).
    ///
    /// No deadline on the stream itself, which is meant to stay open: TCP keepalive probes
    /// notice a dbserver that vanished without closing the connection.
    pub async fn changes(&self, since: Option<u64>) -> Result<ChangeStream, ChangesError> {
        let e = &self.endpoint;
        let path = match since {
            Some(v) => format!("/changes?since={v}"),
            None => "/changes".to_owned(),
        };
        let (parts, body) = e.open(&path).await.map_err(ChangesError::Client)?;
        if parts.status.is_success() {
            return Ok(ChangeStream {
                body,
                buffer: Vec::new(),
            });
        }
        let answer = e
            .within(e.read(parts, body))
            .await
            .map_err(ChangesError::Client)?;
        if answer.status == StatusCode::GONE {
            let message = String::from_utf8_lossy(&answer.body);
            let reason = message.lines().next().unwrap_or_default().trim();
            return Err(ChangesError::Gone(reason.to_owned()));
        }
        let status = answer.status;
        let refused = e.sort(answer).err();
        Err(ChangesError::Client(refused.unwrap_or_else(|| {
            e.failed(status, "it has no change stream".to_owned())
        })))
    }

    /// The dbserver's trace events of `trace`.
    pub async fn events(&self, trace: u128) -> Result<EventsAnswer, ClientError> {
        self.endpoint
            .json(&format!("/events?trace={trace:032x}"))
            .await
    }

    /// The dbserver's counters.
    pub async fn stats(&self) -> Result<DbStats, ClientError> {
        self.endpoint.json("/stats").await
    }

    /// The address this client talks to.
    pub fn addr(&self) -> &str {
        &self.endpoint.addr
    }
}

fn kv_path(key: &str) -> String {
    format!("/kv/{}", key::encode(key))
}

/// The `x-gclab-version` of an answer; 0 if it has none.
fn version_of(headers: &HeaderMap) -> u64 {
    headers
        .get(VERSION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The header our servers put a version in.
const VERSION: &str = "x-gclab-version";

/// A value as loaded, with its version: the write that stored it, or, for "no such key"
/// (`value: None`), the store's version when it was read. Either way: the answer was true
/// as of `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loaded {
    pub value: Option<Bytes>,
    pub version: u64,
}

/// Why a change stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ChangesError {
    /// The dbserver's log no longer holds the changes after the version asked for; the
    /// first line of its answer, which says why.
    #[error("{0}")]
    Gone(String),
    #[error(transparent)]
    Client(ClientError),
}

/// One line of the change stream, as a follower reads it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum StreamLine {
    /// The first line: the version the dbserver is at.
    Hello { hello: u64 },
    /// A write: `op` is `set` or `del`.
    Change {
        version: u64,
        key: String,
        op: String,
    },
}

/// An open change stream.
pub struct ChangeStream {
    body: hyper::body::Incoming,
    buffer: Vec<u8>,
}

impl ChangeStream {
    /// The next line; `Ok(None)` when the dbserver ended the stream.
    pub async fn next(&mut self) -> Result<Option<StreamLine>, String> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return serde_json::from_slice(&line)
                    .map(Some)
                    .map_err(|e| format!("an unreadable change line ({e})"));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(root_cause(&e)),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

/// What a frontend answered to `GET /cache/{key}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    pub value: Bytes,
    /// The node that answered (its peer address).
    pub node: String,
    /// The key's owner (its peer address).
    pub owner: String,
    /// Where the answering node found the value: `main`, `hot`, `peer` or `db`.
    pub source: String,
    /// The version of the write that stored the value (0: not known).
    pub version: u64,
}

/// What a frontend answers to `GET /applied`: whether it follows the change stream, and
/// the newest version it has applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub following: bool,
    pub applied: u64,
}

/// What a frontend answers to `GET /owner/{key}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ownership {
    pub key: String,
    pub owner: String,
    /// Every peer, best first.
    pub ranking: Vec<String>,
    /// Every peer's score for the key, best first: how the ranking was made.
    pub scores: Vec<PeerScore>,
    /// The peers the node asked knows now, sorted.
    #[serde(default)]
    pub peers: Vec<String>,
}

/// One peer's rendezvous score for a key, as 16 hex digits (a `u64`): the highest wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerScore {
    pub peer: String,
    pub score: String,
}

/// What a frontend answers to `GET /faults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultList {
    pub rules: Vec<Rule>,
    pub counts: FaultStats,
    /// The node's process id, and whether `gclab up --restart` starts it again if it is
    /// killed: then `cli chaos` may `kill -9` it.
    pub pid: u32,
    pub restartable: bool,
}

/// Talks to a frontend's client API: `GET /cache/{key}`, `/stats`, `/owner/{key}`.
#[derive(Clone)]
pub struct FrontendClient {
    endpoint: Endpoint,
}

impl FrontendClient {
    /// A client for the frontend whose HTTP API is at `addr` (`host:port`).
    pub fn new(addr: &str, timeout: Duration) -> Self {
        FrontendClient {
            endpoint: Endpoint::new(Server::Frontend, addr, timeout),
        }
    }

    /// The value of `key` through the cache, or `None` if the dbserver has no such key.
    pub async fn cget(&self, key: &str) -> Result<Option<Cached>, ClientError> {
        self.cget_traced(key, None).await
    }

    /// `cget`, carrying `trace` as its `traceparent` (`cli trace`, `herd --trace`).
    pub async fn cget_traced(
        &self,
        key: &str,
        trace: Option<TraceParent>,
    ) -> Result<Option<Cached>, ClientError> {
        let e = &self.endpoint;
        let path = format!("/cache/{}", key::encode(key));
        let answer = e
            .within(async {
                let (parts, body) = e
                    .head_traced(Method::GET, &path, Bytes::new(), trace)
                    .await?;
                e.read(parts, body).await
            })
            .await?;
        let Some(answer) = e.sort(answer)? else {
            return Ok(None);
        };
        let header = |name: &str| {
            answer
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .to_owned()
        };
        Ok(Some(Cached {
            node: header("x-gclab-node"),
            owner: header("x-gclab-owner"),
            source: header("x-gclab-source"),
            version: answer
                .headers
                .get(hyper::header::ETAG)
                .map_or(0, |tag| crate::http::version_in_etag(tag.as_bytes())),
            value: answer.body,
        }))
    }

    /// The frontend's counters.
    pub async fn stats(&self) -> Result<NodeStats, ClientError> {
        self.endpoint.json("/stats").await
    }

    /// The frontend's trace events of `trace`.
    pub async fn events(&self, trace: u128) -> Result<EventsAnswer, ClientError> {
        self.endpoint
            .json(&format!("/events?trace={trace:032x}"))
            .await
    }

    /// Waits (up to `wait`) until the frontend has applied version `at_least` of the change
    /// stream, and says how far it got.
    pub async fn applied(&self, at_least: u64, wait: Duration) -> Result<Applied, ClientError> {
        self.endpoint
            .json(&format!(
                "/applied?at_least={at_least}&wait_ms={}",
                wait.as_millis()
            ))
            .await
    }

    /// Sets a fault rule on the frontend's calls.
    pub async fn set_fault(&self, rule: &Rule) -> Result<(), ClientError> {
        let body = serde_json::to_vec(rule).expect("a rule is plain data and always serializes");
        let e = &self.endpoint;
        e.call_for(Method::POST, "/faults", body.into())
            .await
            .map(drop)
    }

    /// Heals the frontend's rules about `node` (every rule for `None`); returns them.
    pub async fn heal_faults(&self, node: Option<&str>) -> Result<Vec<Rule>, ClientError> {
        let path = match node {
            Some(node) => format!("/faults?node={}", key::encode(node)),
            None => "/faults".to_owned(),
        };
        let e = &self.endpoint;
        let answer = e.call_for(Method::DELETE, &path, Bytes::new()).await?;
        #[derive(Deserialize)]
        struct Healed {
            healed: Vec<Rule>,
        }
        serde_json::from_slice::<Healed>(&answer.body)
            .map(|h| h.healed)
            .map_err(|e| {
                self.endpoint
                    .failed(answer.status, format!("unreadable answer: {e}"))
            })
    }

    /// The fault rules set on the frontend.
    pub async fn faults(&self) -> Result<FaultList, ClientError> {
        self.endpoint.json("/faults").await
    }

    /// Who owns `key`, and the whole ranking.
    pub async fn owner(&self, key: &str) -> Result<Ownership, ClientError> {
        self.endpoint
            .json(&format!("/owner/{}", key::encode(key)))
            .await
    }

    /// The address this client talks to.
    pub fn addr(&self) -> &str {
        &self.endpoint.addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_frontend_is_named_with_the_command_that_starts_it() {
        // Bind and drop a listener: its port is now (almost certainly) closed.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let client = FrontendClient::new(&addr.to_string(), Duration::from_secs(2));
        let error = client.cget("foo").await.unwrap_err();
        assert!(
            matches!(error, ClientError::Unreachable { .. }),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains("connection refused"), "{message}");
        assert!(
            message.contains(&format!("cannot reach frontend at {addr}")),
            "{message}"
        );
    }

    #[test]
    fn the_hint_names_the_peer_port_of_a_frontend() {
        let e = Endpoint::new(Server::Frontend, "127.0.0.1:9002", Duration::from_secs(1));
        assert_eq!(e.start_hint(), "is 'gclab frontend --port 8002' running?");
        let e = Endpoint::new(Server::Dbserver, "127.0.0.1:8080", Duration::from_secs(1));
        assert_eq!(e.start_hint(), "is 'gclab dbserver' running?");
    }

    #[test]
    fn a_peer_port_is_answered_with_the_client_port() {
        let e = Endpoint::new(Server::Frontend, "127.0.0.1:8001", Duration::from_secs(1));
        let hint = e.start_hint();
        assert!(hint.contains("--port 9001"), "{hint}");
        assert!(!hint.contains("7001"), "{hint}");
    }
}
