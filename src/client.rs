//! HTTP clients for the lab's two HTTP servers: the dbserver and a frontend's client API.
//!
//! A frontend uses [`DbClient`] to load keys it owns; the cli uses both. Each client holds
//! one `reqwest::Client`, which pools and reuses connections. The 2013 original opened a
//! new connection for every database load and never closed it, and stopped working after
//! about 20,000 loads; a pool makes that impossible.
//!
//! Every error says what failed, where, and what to do next.

use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use crate::key;
use crate::stats::{DbStats, NodeStats};

/// Why a call to one of our servers failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// Nothing answered: the server is not running, or not at that address.
    #[error("cannot reach {server} at {addr} ({reason}) — is '{hint}' running?")]
    Unreachable {
        server: Server,
        addr: String,
        reason: String,
        hint: String,
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

/// Which kind of server a client talks to, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Dbserver,
    Frontend,
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

/// One pooled HTTP client bound to one server address.
#[derive(Clone)]
struct Endpoint {
    http: reqwest::Client,
    server: Server,
    addr: String,
    timeout: Duration,
}

impl Endpoint {
    fn new(server: Server, addr: &str, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            // Without TCP_NODELAY a small request can wait ~40 ms for a delayed ACK.
            .tcp_nodelay(true)
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .timeout(timeout)
            // Our servers are on this machine: an `http_proxy` variable must not reroute them.
            .no_proxy()
            .build()
            .expect("a client with no TLS and no proxy has nothing that can fail to build");
        Endpoint {
            http,
            server,
            addr: addr.to_owned(),
            timeout,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends a request and sorts its failure into a [`ClientError`]. 404 is not an error
    /// here: callers decide what "not found" means.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok(response);
        }
        let message = response.text().await.unwrap_or_default().trim().to_owned();
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

    async fn body(&self, response: reqwest::Response) -> Result<Bytes, ClientError> {
        response.bytes().await.map_err(|e| self.transport_error(&e))
    }

    fn transport_error(&self, error: &reqwest::Error) -> ClientError {
        if error.is_timeout() {
            return ClientError::Timeout {
                server: self.server,
                addr: self.addr.clone(),
                after: self.timeout,
            };
        }
        ClientError::Unreachable {
            server: self.server,
            addr: self.addr.clone(),
            reason: root_cause(error),
            hint: self.start_hint(),
        }
    }

    /// The command that would start the missing server.
    fn start_hint(&self) -> String {
        match self.server {
            Server::Dbserver => "gclab dbserver".to_owned(),
            Server::Frontend => match self
                .addr
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
            {
                Some(port) if port > 1000 => format!("gclab frontend --port {}", port - 1000),
                _ => "gclab frontend".to_owned(),
            },
        }
    }
}

/// Whether a response is the servers' "no such key" (a marked 404).
fn missing_key(response: &reqwest::Response) -> bool {
    response.status() == StatusCode::NOT_FOUND
        && response.headers().contains_key(crate::http::MISSING_KEY)
}

/// The innermost cause of an error, e.g. "connection refused", which is what a person can
/// act on; reqwest's own message ("error sending request for url …") is not.
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
}

impl DbClient {
    /// A client for the dbserver at `addr` (`host:port`) whose calls give up after `timeout`.
    pub fn new(addr: &str, timeout: Duration) -> Self {
        DbClient {
            endpoint: Endpoint::new(Server::Dbserver, addr, timeout),
        }
    }

    /// The value of `key`, or `None` if the dbserver has no such key.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, ClientError> {
        let e = &self.endpoint;
        let response = e.send(e.http.get(e.url(&kv_path(key)))).await?;
        if missing_key(&response) {
            return Ok(None);
        }
        e.body(response).await.map(Some)
    }

    /// Stores `value` under `key`; returns once the dbserver has flushed it to disk.
    pub async fn set(&self, key: &str, value: Bytes) -> Result<(), ClientError> {
        let e = &self.endpoint;
        e.send(e.http.put(e.url(&kv_path(key))).body(value)).await?;
        Ok(())
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
}

/// What a frontend answers to `GET /owner/{key}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ownership {
    pub key: String,
    pub owner: String,
    /// Every peer, best first.
    pub ranking: Vec<String>,
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
        let e = &self.endpoint;
        let url = e.url(&format!("/cache/{}", key::encode(key)));
        let response = e.send(e.http.get(url)).await?;
        if missing_key(&response) {
            return Ok(None);
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .to_owned()
        };
        let (node, owner, source) = (
            header("x-gclab-node"),
            header("x-gclab-owner"),
            header("x-gclab-source"),
        );
        let value = e.body(response).await?;
        Ok(Some(Cached {
            value,
            node,
            owner,
            source,
        }))
    }

    /// The frontend's counters.
    pub async fn stats(&self) -> Result<NodeStats, ClientError> {
        self.endpoint.json("/stats").await
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

impl Endpoint {
    async fn json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let response = self.send(self.http.get(self.url(path))).await?;
        let body = self.body(response).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Failed {
            server: self.server,
            addr: self.addr.clone(),
            status: 200,
            message: format!("but its answer to {path} is unreadable: {e}"),
        })
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
        assert_eq!(e.start_hint(), "gclab frontend --port 8002");
        let e = Endpoint::new(Server::Dbserver, "127.0.0.1:8080", Duration::from_secs(1));
        assert_eq!(e.start_hint(), "gclab dbserver");
    }
}
