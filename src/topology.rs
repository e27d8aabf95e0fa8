//! A whole lab in one process: a dbserver and N frontends on free ports.
//!
//! `gclab demo` runs its experiments on these, and so do the tests. Everything binds
//! `127.0.0.1:0`, so two of them never collide, and [`Topology::stop`] ends every server and
//! removes the data directory. (`gclab up`, by contrast, starts real child processes on the
//! well-known ports, because there you watch each one's log.)

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::client::{DbClient, FrontendClient};
use crate::dbserver::{self, Store};
use crate::frontend::{self, Config};
use crate::group;

/// How long the clients of a topology wait for an answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A running dbserver and its frontends.
pub struct Topology {
    /// A client for the dbserver.
    pub db: DbClient,
    /// Each frontend's peer address (its name in the ring), in start order.
    pub peers: Vec<String>,
    /// A client for each frontend's HTTP API, in the same order.
    pub frontends: Vec<FrontendClient>,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
    data: tempfile::TempDir,
}

impl Topology {
    /// Starts a dbserver whose reads wait `delay`, and `n` frontends that peer together.
    /// `tweak` may change each frontend's [`Config`] (e.g. the contrast switches).
    pub async fn start(
        n: usize,
        delay: Duration,
        tweak: impl Fn(&mut Config),
    ) -> std::io::Result<Topology> {
        let data = tempfile::Builder::new().prefix("gclab-").tempdir()?;
        let mut topology = Topology {
            db: DbClient::new("127.0.0.1:0", CLIENT_TIMEOUT),
            peers: Vec::new(),
            frontends: Vec::new(),
            stops: Vec::new(),
            tasks: Vec::new(),
            data,
        };

        let db_listener = TcpListener::bind("127.0.0.1:0").await?;
        let db_addr = db_listener.local_addr()?.to_string();
        let store = Store::open(topology.data.path(), delay, crate::store::CHANGE_LOG)
            .map_err(std::io::Error::other)?;
        let stop = topology.stopper();
        let config = dbserver::Config::new(dbserver::MAX_VALUE_BYTES, CLIENT_TIMEOUT, delay);
        topology.spawn(dbserver::run(db_listener, Arc::new(store), config, stop));
        topology.db = DbClient::new(&db_addr, CLIENT_TIMEOUT);

        // Bind every listener first: each frontend must know all peer addresses.
        let mut listeners = Vec::new();
        for _ in 0..n {
            let (peer, http) = bind_pair().await?;
            topology.peers.push(peer.local_addr()?.to_string());
            topology.frontends.push(FrontendClient::new(
                &http.local_addr()?.to_string(),
                CLIENT_TIMEOUT,
            ));
            listeners.push((peer, http));
        }
        for (peer, http) in listeners {
            let mut config = Config {
                group: group::Config {
                    me: peer.local_addr()?.to_string(),
                    peers: topology.peers.clone(),
                    db_addr: db_addr.clone(),
                    cache_bytes: 64 << 20,
                    // Deadlines follow the delay, so a slow demo (`--delay 5s`) still loads.
                    db_timeout: delay + Duration::from_secs(5),
                    peer_timeout: delay + Duration::from_secs(8),
                    singleflight: true,
                    use_peers: true,
                    hot_cache: true,
                    handoff: true,
                    follow_changes: false,
                    stale_guard: true,
                    ttl: None,
                    events: crate::trace::DEFAULT_CAPACITY,
                    peer_transport: crate::peers::PeerTransport::Tarpc,
                },
                client_timeout: Duration::from_secs(10),
                membership: None,
            };
            tweak(&mut config);
            config.group.validate().map_err(std::io::Error::other)?;
            let stop = topology.stopper();
            topology.spawn(async move {
                // Validated above, so `run` cannot refuse the config.
                let _ = frontend::run(peer, http, config, stop).await;
            });
        }
        Ok(topology)
    }

    /// A shutdown future for one server; it completes when `stop` drops its sender.
    fn stopper(&mut self) -> impl Future<Output = ()> + Send + 'static {
        let (tx, rx) = oneshot::channel::<()>();
        self.stops.push(tx);
        async move {
            let _ = rx.await;
        }
    }

    fn spawn(&mut self, server: impl Future<Output = ()> + Send + 'static) {
        self.tasks.push(tokio::spawn(server));
    }

    /// The HTTP address of frontend `i`.
    pub fn http_addr(&self, i: usize) -> &str {
        self.frontends[i].addr()
    }

    /// The dbserver's address.
    pub fn db_addr(&self) -> &str {
        self.db.addr()
    }

    /// The index of the frontend that owns `key`, by asking frontend 0.
    pub async fn owner_of(&self, key: &str) -> Result<usize, crate::client::ClientError> {
        let owner = self.frontends[0].owner(key).await?.owner;
        Ok(self.peers.iter().position(|p| *p == owner).unwrap_or(0))
    }

    /// Stops every server, waits for them to finish, and removes the data directory.
    pub async fn stop(mut self) {
        self.stops.clear();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        // `self.data` is removed when dropped, now that sled has closed its files.
    }
}

/// A free peer port and its HTTP port at peer + 1000, the lab's convention, which the HTTP
/// peer transport relies on to find a peer's HTTP API (`--peer-transport http`). A port
/// whose +1000 is taken is given back, and another tried.
async fn bind_pair() -> std::io::Result<(TcpListener, TcpListener)> {
    for _ in 0..100 {
        let peer = TcpListener::bind("127.0.0.1:0").await?;
        let Some(port) = peer.local_addr()?.port().checked_add(1000) else {
            continue;
        };
        if let Ok(http) = TcpListener::bind(("127.0.0.1", port)).await {
            return Ok((peer, http));
        }
    }
    Err(std::io::Error::other(
        "found no free port whose port + 1000 was free too",
    ))
}
