//! A live topology for tests: a dbserver and N frontends in this process, on port 0.
#![allow(dead_code)] // each test file uses a different part of this harness

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use gclab::client::{DbClient, FrontendClient};
use gclab::dbserver::{self, Store};
use gclab::frontend::{self, Config};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A dbserver and frontends running until dropped.
pub struct Topology {
    pub db: DbClient,
    pub db_addr: String,
    /// Each frontend's peer address (its name in the ring), in order.
    pub peers: Vec<String>,
    /// A client per frontend, in the same order.
    pub frontends: Vec<FrontendClient>,
    _stops: Vec<oneshot::Sender<()>>,
    _data: tempfile::TempDir,
}

/// Starts a dbserver whose reads wait `delay`, and `n` frontends that all peer together.
/// `tweak` may change each frontend's config before it starts.
pub async fn start(n: usize, delay: Duration, tweak: impl Fn(&mut Config)) -> Topology {
    let data = tempfile::tempdir().unwrap();
    let mut stops = Vec::new();

    let db_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let db_addr = db_listener.local_addr().unwrap().to_string();
    let store = Arc::new(Store::open(data.path(), delay).unwrap());
    tokio::spawn(dbserver::run(db_listener, store, stopper(&mut stops)));

    let mut peer_listeners = Vec::new();
    let mut http_listeners = Vec::new();
    for _ in 0..n {
        peer_listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
        http_listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let peers: Vec<String> = peer_listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let mut frontends = Vec::new();
    for (peer_listener, http_listener) in peer_listeners.into_iter().zip(http_listeners) {
        let mut config = Config {
            me: peer_listener.local_addr().unwrap().to_string(),
            peers: peers.clone(),
            db_addr: db_addr.clone(),
            cache_bytes: 64 << 20,
            db_timeout: Duration::from_secs(5),
            peer_timeout: Duration::from_secs(8),
            singleflight: true,
            use_peers: true,
        };
        tweak(&mut config);
        frontends.push(FrontendClient::new(
            &http_listener.local_addr().unwrap().to_string(),
            TIMEOUT,
        ));
        let stop = stopper(&mut stops);
        tokio::spawn(async move {
            frontend::run(peer_listener, http_listener, config, stop)
                .await
                .unwrap()
        });
    }
    Topology {
        db: DbClient::new(&db_addr, TIMEOUT),
        db_addr,
        peers,
        frontends,
        _stops: stops,
        _data: data,
    }
}

/// A shutdown future that completes when its sender (kept in `stops`) is dropped.
fn stopper(
    stops: &mut Vec<oneshot::Sender<()>>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (tx, rx) = oneshot::channel::<()>();
    stops.push(tx);
    async move {
        let _ = rx.await;
    }
}

impl Topology {
    /// The index of the frontend that owns `key`.
    pub async fn owner_of(&self, key: &str) -> usize {
        let owner = self.frontends[0].owner(key).await.unwrap().owner;
        self.peers.iter().position(|p| *p == owner).unwrap()
    }

    /// The HTTP address of frontend `i`.
    pub fn http_addr(&self, i: usize) -> &str {
        self.frontends[i].addr()
    }
}

/// The `gclab` binary, as built by cargo for these tests.
pub fn gclab() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gclab"));
    cmd.env("NO_COLOR", "1").env_remove("RUST_LOG");
    cmd
}

/// Runs the `gclab` binary with `args` (split on spaces) off the async runtime.
pub async fn run_gclab(args: &str) -> std::process::Output {
    let args: Vec<String> = args.split(' ').map(str::to_owned).collect();
    tokio::task::spawn_blocking(move || gclab().args(&args).output().unwrap())
        .await
        .unwrap()
}

/// A dbserver as a separate process on a free port, for tests that kill it.
pub struct DbProcess {
    pub child: Child,
    pub addr: String,
}

impl DbProcess {
    /// Starts `gclab dbserver` on port 0 over `data_dir` and waits for its listening line.
    pub fn start(data_dir: &Path) -> DbProcess {
        use std::io::{BufRead, BufReader};
        let mut child = gclab()
            .args([
                "dbserver",
                "--addr",
                "127.0.0.1:0",
                "--delay",
                "0ms",
                "--data-dir",
            ])
            .arg(data_dir)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("the dbserver exited before it listened")
                .unwrap();
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split(' ').next().unwrap().to_owned();
            }
        };
        // Keep draining stderr so the child never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        DbProcess { child, addr }
    }
}

impl Drop for DbProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
