//! `lab/tmux.sh` opens five panes: the dbserver, three frontends and a cli shell.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn tmux(args: &[&str]) -> String {
    let output = Command::new("tmux").args(args).output().expect("tmux runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn tmux_sh_opens_five_panes_running_the_lab() {
    if Command::new("tmux").arg("-V").output().is_err() {
        // CI installs tmux (.ci/run), so there this test always runs.
        assert!(
            std::env::var_os("CI").is_none(),
            "tmux is not installed on CI"
        );
        eprintln!("SKIPPED: tmux is not installed (apt-get install tmux)");
        return;
    }
    for port in [8080, 8001, 8002, 8003, 9001, 9002, 9003] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is in use"
        );
    }
    let work = tempfile::tempdir().unwrap();
    let bin = work.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for name in ["gclab", "dbserver", "frontend", "cli"] {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_gclab"), bin.join(name)).unwrap();
    }
    let session = format!("gclab-test-{}", std::process::id());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/tmux.sh");
    let opened = Command::new("bash")
        .arg(&script)
        .env("GCLAB_TMUX_SESSION", &session)
        .env("GCLAB_WORKDIR", work.path())
        .env("GCLAB_TMUX_DETACHED", "1")
        .env("NO_COLOR", "1")
        .env_remove("TMUX")
        .output()
        .unwrap();
    assert!(
        opened.status.success(),
        "{}",
        String::from_utf8_lossy(&opened.stderr)
    );

    struct Session(String);
    impl Drop for Session {
        fn drop(&mut self) {
            let _ = Command::new("tmux")
                .args(["kill-session", "-t", &self.0])
                .output();
        }
    }
    let guard = Session(session.clone());

    let titles = tmux(&["list-panes", "-t", &session, "-F", "#{pane_title}"]);
    let titles: Vec<&str> = titles.lines().collect();
    assert_eq!(
        titles,
        [
            "dbserver",
            "frontend-8001",
            "frontend-8002",
            "frontend-8003",
            "cli"
        ]
    );

    let expected = [
        "dbserver listening on 127.0.0.1:8080",
        "frontend 127.0.0.1:8001",
        "frontend 127.0.0.1:8002",
        "frontend 127.0.0.1:8003",
        "the cli terminal",
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    for (pane, text) in expected.iter().enumerate() {
        loop {
            let screen = tmux(&[
                "capture-pane",
                "-p",
                "-J",
                "-t",
                &format!("{session}:lab.{pane}"),
            ]);
            if screen.contains(text) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "pane {pane} never showed {text:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // The cli pane works against the servers in the others.
    let cli = format!("{session}:lab.4");
    tmux(&[
        "send-keys",
        "-t",
        &cli,
        "bin/cli -set -key foo -value bar && bin/cli -port 9002 -cget -key foo",
        "Enter",
    ]);
    loop {
        let screen = tmux(&["capture-pane", "-p", "-J", "-t", &cli]);
        if screen.contains("from db") || screen.contains("from peer") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cli pane never got an answer:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(guard);
    // Closing the session hangs up on every pane; each server shuts down on SIGHUP, every
    // one of its ports with it (a node once kept its HTTP port after its terminal was gone).
    let deadline = Instant::now() + Duration::from_secs(15);
    for port in [8080, 8001, 8002, 8003, 9001, 9002, 9003] {
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "port {port} is still served after its tmux session was killed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
