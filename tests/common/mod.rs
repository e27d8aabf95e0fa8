//! What the tests share: a live topology on port 0, the `gclab` binary, a dbserver process.
#![allow(dead_code)] // each test file uses a different part of this harness

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gclab::frontend::Config;
pub use gclab::topology::Topology;

/// Starts a dbserver whose reads wait `delay`, and `n` frontends that all peer together.
pub async fn start(n: usize, delay: Duration, tweak: impl Fn(&mut Config)) -> Topology {
    Topology::start(n, delay, tweak).await.unwrap()
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
