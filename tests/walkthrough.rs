//! The 2013 walkthrough, typed as it was (Go-style flags), through the real `gclab` binary.

mod common;

use std::time::Duration;

use common::{run_gclab, start};

/// Runs a cli line with `--json` and returns the parsed answer and the exit code.
async fn cli_json(line: &str) -> (serde_json::Value, i32) {
    let output = run_gclab(&format!("{line} -json")).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let answer = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("`{line}` printed {stdout:?}, not JSON: {e}"));
    (answer, output.status.code().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_walkthrough_answers_bar_at_every_step_from_the_right_place() {
    let topology = start(3, Duration::from_millis(100), |_| {}).await;
    let db = topology.db_addr();
    let owner = topology.owner_of("foo").await.unwrap();
    let other = (owner + 1) % 3;
    let owner_port = topology
        .http_addr(owner)
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let other_port = topology
        .http_addr(other)
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();

    // ./cli -set -key foo -value bar
    let set = run_gclab(&format!("cli -set -key foo -value bar -db {db}")).await;
    assert!(set.status.success(), "{set:?}");

    // ./cli -get -key foo: straight from the database, paying its delay.
    let (get, code) = cli_json(&format!("cli -get -key foo -db {db}")).await;
    assert_eq!(
        (get["value"].as_str(), get["source"].as_str(), code),
        (Some("bar"), Some("db"), 0)
    );
    assert!(
        get["ms"].as_f64().unwrap() >= 100.0,
        "a get waits for the delay: {get}"
    );

    // ./cli -cget -key foo, on the owner: loads it into the cache, then hits.
    let (first, _) = cli_json(&format!("cli -port {owner_port} -cget -key foo")).await;
    assert_eq!(
        (first["value"].as_str(), first["source"].as_str()),
        (Some("bar"), Some("db"))
    );
    let (second, _) = cli_json(&format!("cli -port {owner_port} -cget -key foo")).await;
    assert_eq!(
        (second["value"].as_str(), second["source"].as_str()),
        (Some("bar"), Some("main"))
    );

    // ./cli -port 9002 -cget -key foo: a node that never had it asks the owner.
    let (third, code) = cli_json(&format!("cli -port {other_port} -cget -key foo")).await;
    assert_eq!((third["value"].as_str(), code), (Some("bar"), 0));
    assert!(
        matches!(third["source"].as_str(), Some("peer" | "hot")),
        "{third}"
    );
    assert_eq!(
        third["owner"].as_str(),
        Some(topology.peers[owner].as_str())
    );
    assert_eq!(third["node"].as_str(), Some(topology.peers[other].as_str()));

    // The database was read twice: by `get` and by the first `cget`. Never again.
    assert_eq!(topology.db.stats().await.unwrap().gets, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_value_alone_goes_to_stdout() {
    let topology = start(1, Duration::ZERO, |_| {}).await;
    let db = topology.db_addr();
    run_gclab(&format!("cli set --key k --value hello --db {db}")).await;
    let output = run_gclab(&format!(
        "cli cget --key k --frontend {}",
        topology.http_addr(0)
    ))
    .await;
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hello\n");
    assert!(
        output.stderr.is_empty(),
        "stderr is not a terminal, so no explaining line"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_tell_found_missing_usage_and_unreachable_apart() {
    let topology = start(1, Duration::ZERO, |_| {}).await;
    let fe = topology.http_addr(0);

    let missing = run_gclab(&format!("cli cget --key nope --frontend {fe}")).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr)
        .contains("no such key: \"nope\" — the dbserver has none"));

    let too_long = run_gclab(&format!(
        "cli cget --key {} --frontend {fe}",
        "k".repeat(300)
    ))
    .await;
    assert_eq!(too_long.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&too_long.stderr).contains("the limit is 250"));

    let usage = run_gclab("cli cget").await;
    assert_eq!(usage.status.code(), Some(2));

    // A port nobody listens on: bind one, note it, close it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = run_gclab(&format!("cli -port {closed} -cget -key foo")).await;
    assert_eq!(down.status.code(), Some(3));
    let message = String::from_utf8_lossy(&down.stderr);
    assert!(
        message.contains(&format!(
            "cannot reach frontend at 127.0.0.1:{closed} (connection refused)"
        )),
        "{message}"
    );
}
