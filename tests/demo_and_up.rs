//! `gclab demo` runs the whole story and leaves nothing behind; `gclab up` runs the
//! topology as child processes and stops them all.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::gclab;

#[test]
fn the_demo_runs_to_the_end_and_leaves_no_files_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let output = gclab()
        .args(["demo", "--delay", "100ms"])
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The walkthrough, with sources and times.
    for part in [
        "./cli -set -key foo -value bar",
        "from db",
        "from main",
        "from peer",
        " ms",
    ] {
        assert!(stdout.contains(part), "no {part:?} in:\n{stdout}");
    }
    // The herd three ways: the groupcache row reads the database exactly once.
    let reads = |mode: &str| -> u64 {
        let row = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{mode}  ")))
            .unwrap_or_else(|| panic!("no {mode} row:\n{stdout}"));
        row.split_whitespace()
            .rev()
            .nth(3)
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(reads("groupcache"), 1, "{stdout}");
    assert_eq!(reads("no peers"), 3, "{stdout}");
    // Without singleflight the count is every request that arrived while the first load was
    // still running: how many that is depends on the machine, so only its floor is checked.
    assert!(reads("no singleflight") >= 1, "{stdout}");
    // The stats table.
    assert!(
        stdout.contains("dbserver") && stdout.contains("deduped"),
        "{stdout}"
    );
    // Nothing left in its temporary directory.
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "the demo left {left:?}");
}

fn alive(pid: i32) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn up_runs_a_herd_with_one_database_read_and_ctrl_c_stops_every_child() {
    let data = tempfile::tempdir().unwrap();
    let base = common::free_block(4); // 3 frontends and the dbserver on base + 3
    let db = format!("127.0.0.1:{}", base + 3);
    let mut up = gclab()
        .args([
            "up",
            "--port",
            &base.to_string(),
            "--db-addr",
            &db,
            "--delay",
            "100ms",
            "--data-dir",
        ])
        .arg(data.path())
        .stdout(Stdio::piped())
        // Its own process group, as a shell gives a foreground job: Ctrl-C signals the group.
        .process_group(0)
        .spawn()
        .unwrap();
    // Whatever fails below, up and its children go with the test, never left running.
    let _group = common::KillGroupOnDrop(up.id());
    let mut lines = BufReader::new(up.stdout.take().unwrap()).lines();
    let mut pids = Vec::new();
    let started = Instant::now();
    // up says `up: ready` once every server takes connections.
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the topology did not come up"
        );
        let line = lines.next().expect("up exited early").unwrap();
        // up's own "started … (pid N)" lines; the dbserver's start-up line names its pid too.
        if let Some(pid) = line
            .split("(pid ")
            .nth(1)
            .filter(|_| !line.contains("listening"))
        {
            pids.push(pid.trim_end_matches(')').parse::<i32>().unwrap());
        }
        // (A server's own start-up line may come just after: it listens before it says so.)
        if line.starts_with("up: ready: ") {
            break;
        }
    }
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());

    let frontends: Vec<String> = (0..3).map(|i| (base + 1000 + i).to_string()).collect();
    let herd = gclab()
        .args([
            "cli",
            "herd",
            "--requests",
            "1000",
            "--json",
            "--db",
            &db,
            "--frontends",
            &frontends.join(","),
        ])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&herd.stdout).unwrap();
    assert_eq!(
        (report["db_reads"].as_u64(), report["errors"].as_u64()),
        (Some(1), Some(0)),
        "{report}"
    );

    // Ctrl-C: the terminal sends SIGINT to every process of the foreground group.
    let group = format!("-{}", up.id());
    assert!(Command::new("kill")
        .args(["-INT", "--", &group])
        .status()
        .unwrap()
        .success());
    let status = up.wait().unwrap();
    let rest = drain.join().unwrap().join("\n");
    let story: Vec<&str> = rest
        .lines()
        .filter(|l| l.starts_with("up:") || l.contains("shutting") || l.contains("error"))
        .collect();
    assert!(
        status.success(),
        "up exited {status}:\n{}",
        story.join("\n")
    );
    assert_eq!(pids.len(), 4, "one pid per child");
    for pid in pids {
        assert!(!alive(pid), "child {pid} is still running");
    }
    assert_eq!(
        rest.matches("stopped (exit status: 0)").count(),
        4,
        "{rest}"
    );
}
