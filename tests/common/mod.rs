//! What the tests share: a live topology on port 0, the `gclab` binary, a dbserver process.
#![allow(dead_code)] // each test file uses a different part of this harness

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gclab::frontend::Config;
pub use gclab::topology::Topology;

/// Starts a dbserver whose reads wait `delay`, and `n` frontends that all peer together.
pub async fn start(n: usize, delay: Duration, tweak: impl Fn(&mut Config)) -> Topology {
    Topology::start(n, delay, tweak).await.unwrap()
}

/// A frontend's configuration for a test: node `me` among `peers`, against the dbserver at
/// `db`, with a 1 MiB cache, deadlines of 2 s (dbserver) and 3 s (peers), and every switch
/// as `gclab frontend` has it by default. Tests change the fields they are about.
pub fn frontend_config(me: &str, peers: Vec<String>, db: &str) -> Config {
    Config {
        group: gclab::group::Config {
            me: me.to_owned(),
            peers,
            db_addr: db.to_owned(),
            cache_bytes: 1 << 20,
            db_timeout: Duration::from_secs(2),
            peer_timeout: Duration::from_secs(3),
            singleflight: true,
            use_peers: true,
            hot_cache: true,
            handoff: true,
            follow_changes: false,
            stale_guard: true,
            ttl: None,
            events: gclab::trace::DEFAULT_CAPACITY,
            peer_transport: gclab::peers::PeerTransport::Tarpc,
        },
        client_timeout: Duration::from_secs(10),
        membership: None,
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

/// A `gclab` server as a child process, its stderr collected for later reading.
pub struct ServerProcess {
    pub child: Child,
    /// The address from its start-up line ("listening on ADDR" or "clients on http://ADDR").
    pub addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts `gclab <args>` and waits for its start-up line.
    pub fn start(args: &[&str]) -> ServerProcess {
        let mut child = gclab()
            .args(args)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let addr = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("gclab {args:?} exited before it listened"))
                .unwrap();
            log.lock().unwrap().push(line.clone());
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split(' ').next().unwrap().to_owned();
            }
            if let Some(rest) = line.split("clients on http://").nth(1) {
                break rest.split([',', ' ']).next().unwrap().to_owned();
            }
        };
        // Keep reading, so the child never blocks on a full pipe and its log can be checked.
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        ServerProcess { child, addr, log }
    }

    /// Starts a dbserver on a free port over `data_dir`, reads waiting `delay`.
    pub fn dbserver(data_dir: &Path, delay: &str) -> ServerProcess {
        let dir = data_dir.to_str().unwrap();
        Self::start(&[
            "dbserver",
            "--addr",
            "127.0.0.1:0",
            "--delay",
            delay,
            "--data-dir",
            dir,
        ])
    }

    /// Everything it has printed so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Sends `signal` (e.g. "-TERM", "-KILL") to it.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success());
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills a process group (a `gclab up` started with `process_group(0)`, and its children)
/// when dropped: whatever fails in a test, nothing it started is left running.
pub struct KillGroupOnDrop(pub u32);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .stderr(Stdio::null())
            .status();
    }
}

/// A block of `n` consecutive free ports whose +1000 block is free too.
pub fn free_block(n: u16) -> u16 {
    for _ in 0..100 {
        let base = fastrand::u16(20_000..28_000);
        let all_free = (0..n).all(|i| {
            std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", base + 1000 + i)).is_ok()
        });
        if all_free {
            return base;
        }
    }
    panic!("no free block of ports");
}

/// Renders `svg` to a PNG 800 px wide with `rsvg-convert`, and fails if it cannot. Without
/// the tool it skips with a notice, except on CI (`CI=true`), where it fails.
pub fn render_at_800_px(svg: &std::path::Path) {
    let png = svg.with_extension("png");
    match std::process::Command::new("rsvg-convert")
        .args(["-w", "800", "-o"])
        .arg(&png)
        .arg(svg)
        .status()
    {
        Ok(status) => {
            assert!(status.success(), "rsvg-convert failed on {}", svg.display());
            assert!(std::fs::metadata(&png).unwrap().len() > 1000);
        }
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!(
                "skipped the rendering check: rsvg-convert ({e}); apt-get install librsvg2-bin"
            );
        }
        Err(e) => panic!("rsvg-convert is needed on CI: {e}"),
    }
}

/// A key that frontend `i` owns, written to the dbserver with a value naming it.
pub async fn key_owned_by(t: &Topology, i: usize, prefix: &str) -> String {
    for n in 0.. {
        let key = format!("{prefix}-{n}");
        if t.owner_of(&key).await.unwrap() == i {
            t.db.set(&key, bytes::Bytes::from(format!("value of {key}")))
                .await
                .unwrap();
            return key;
        }
    }
    unreachable!("some key is owned by every frontend")
}

/// Why this machine cannot make network namespaces (`lab/hosts.sh`), or None when it can:
/// that needs root, and `ip` from iproute2.
pub fn cannot_make_namespaces() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    // "Uid:\t<real>\t<effective>\t…": namespaces need the effective one to be 0.
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1));
    if euid != Some("0") {
        return Some("not running as root".to_owned());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => None,
        _ => Some("no `ip` command (apt-get install iproute2)".to_owned()),
    }
}
