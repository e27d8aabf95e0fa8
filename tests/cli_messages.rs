//! What the cli says when a person types something slightly wrong, or stops it half-way:
//! each message names what happened and what to do, in the spelling the person typed.

mod common;

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `gclab <args>` (each a whole argument) and returns what it printed.
fn gclab(args: &[&str]) -> Output {
    common::gclab().args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn go_style_mistakes_are_named_as_typed() {
    // A flag where a value should be.
    let out = gclab(&["cli", "-port", "-cget", "-key", "foo"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("-port needs a value"),
        "{}",
        stderr(&out)
    );

    // A misspelt action gets a suggestion.
    let out = gclab(&["cli", "-cgt", "-key", "foo"]);
    assert_eq!(out.status.code(), Some(2));
    let said = stderr(&out);
    assert!(said.contains("'-cgt'") || said.contains("'cgt'"), "{said}");
    assert!(
        said.contains("a similar subcommand exists: 'cget'"),
        "{said}"
    );

    // A misspelt flag is named as typed, with the flag meant.
    let out = gclab(&["cli", "-cget", "-kye", "foo"]);
    assert_eq!(out.status.code(), Some(2));
    let said = stderr(&out);
    assert!(said.contains("unexpected argument '-kye'"), "{said}");
    assert!(said.contains("a similar argument exists: '-key'"), "{said}");
    assert!(!said.contains("--kye"), "{said}");

    // Flags with no action at all.
    let out = gclab(&["cli", "-key", "foo"]);
    assert_eq!(out.status.code(), Some(2));
    let said = stderr(&out);
    assert!(said.contains("needs a command first"), "{said}");
    assert!(said.contains("-set, -get, -cget"), "{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_value_that_starts_with_a_dash_is_a_value_as_in_go() {
    let topology = common::start(1, Duration::ZERO, |_| {}).await;
    let db = format!("-db={}", topology.db_addr());
    let out = tokio::task::spawn_blocking(move || {
        gclab(&["cli", "-set", "-key", "-foo", "-value", "-bar", &db])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let value = topology.db.get("-foo").await.unwrap().unwrap();
    assert_eq!(value, "-bar");
    topology.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn values_too_long_for_an_argument_come_from_a_file_or_stdin() {
    let topology = common::start(1, Duration::ZERO, |_| {}).await;
    // 600 KiB: past the 128 KiB one argument can carry, within the 1 MiB limit.
    let big: Vec<u8> = (0..600 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &big).unwrap();
    let db = format!("--db={}", topology.db_addr());
    let path = file.path().to_str().unwrap().to_owned();
    let (db2, big2) = (db.clone(), big.clone());
    let (from_file, from_stdin) = tokio::task::spawn_blocking(move || {
        let from_file = gclab(&["cli", "set", "--key", "big", "--value-file", &path, &db2]);
        let mut child = common::gclab()
            .args(["cli", "-set", "-key", "piped", "-value", "-", &db2])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&big2).unwrap();
        (from_file, child.wait_with_output().unwrap())
    })
    .await
    .unwrap();
    assert!(from_file.status.success(), "{}", stderr(&from_file));
    assert!(from_stdin.status.success(), "{}", stderr(&from_stdin));
    for key in ["big", "piped"] {
        let cached = topology.frontends[0].cget(key).await.unwrap().unwrap();
        assert_eq!(cached.value.len(), big.len(), "{key}");
        assert!(cached.value == big, "{key} came back changed");
    }
    // A file that is not there is a usage error that names it.
    let out = gclab(&[
        "cli",
        "set",
        "--key",
        "k",
        "--value-file",
        "/no/such/file",
        &db,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read --value-file /no/such/file"));
    topology.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_herd_of_a_key_that_does_not_exist_exits_1_and_quotes_the_key() {
    let topology = common::start(1, Duration::ZERO, |_| {}).await;
    let args = format!(
        "cli herd --key no-such-key --requests 5 --frontends {} --db {}",
        topology.http_addr(0),
        topology.db_addr()
    );
    let out = common::run_gclab(&args).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the dbserver has no \"no-such-key\""),
        "{}",
        stderr(&out)
    );
    let args = format!("cli get --key nope --db {}", topology.db_addr());
    let out = common::run_gclab(&args).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no such key: \"nope\" — the dbserver has none"));
    topology.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_herd_interrupted_by_ctrl_c_says_what_it_has_and_where_the_load_still_is() {
    let topology = common::start(3, Duration::from_secs(5), |_| {}).await;
    let frontends: Vec<&str> = (0..3).map(|i| topology.http_addr(i)).collect();
    let herd = common::gclab()
        .args(["cli", "herd", "--requests", "30", "--frontends"])
        .arg(frontends.join(","))
        .args(["--db", topology.db_addr()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The herd is in flight once its one database read has begun (the read waits 5 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    while topology.db.stats().await.unwrap().gets == 0 {
        assert!(
            Instant::now() < deadline,
            "the herd never reached the dbserver"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = herd.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let out = tokio::task::spawn_blocking(move || herd.wait_with_output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{stdout}{}", stderr(&out));
    assert!(stdout.contains("herd interrupted (Ctrl-C)"), "{stdout}");
    assert!(stdout.contains("0 answered"), "{stdout}");
    assert!(stdout.contains("is still in flight on"), "{stdout}");
    assert!(stdout.contains("database reads: 1"), "{stdout}");
    topology.stop().await;
}

#[test]
fn up_with_its_ports_taken_says_which_and_why() {
    let base = common::free_block(3);
    let taken = std::net::TcpListener::bind(("127.0.0.1", base + 1001)).unwrap();
    let db = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let db_addr = db.local_addr().unwrap().to_string();
    drop(db);
    let out = gclab(&["up", "--port", &base.to_string(), "--db-addr", &db_addr]);
    assert_eq!(out.status.code(), Some(1));
    let said = stderr(&out);
    assert!(
        said.contains(&format!("{} is in use", base + 1001)),
        "{said}"
    );
    assert!(said.contains("lab/tmux.sh"), "{said}");
    drop(taken);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_asked_by_a_peer_it_does_not_list_warns_once() {
    let data = tempfile::tempdir().unwrap();
    let db = common::ServerProcess::dbserver(data.path(), "0ms");
    let base = common::free_block(2);
    let (a, b) = (base.to_string(), (base + 1).to_string());
    // b knows only itself; a thinks b is its peer.
    let lonely =
        common::ServerProcess::start(&["frontend", "--port", &b, "--peers", &b, "--db", &db.addr]);
    let both = format!("{a},{b}");
    let asker = common::ServerProcess::start(&[
        "frontend", "--port", &a, "--peers", &both, "--db", &db.addr,
    ]);
    let client = gclab::client::FrontendClient::new(&asker.addr, Duration::from_secs(10));
    let dbc = gclab::client::DbClient::new(&db.addr, Duration::from_secs(10));
    // Two keys that a ranks to b, so a asks b for each.
    let mut asked = 0;
    for i in 0.. {
        let key = format!("k{i}");
        if !client
            .owner(&key)
            .await
            .unwrap()
            .owner
            .ends_with(&format!(":{b}"))
        {
            continue;
        }
        dbc.set(&key, bytes::Bytes::from_static(b"v"))
            .await
            .unwrap();
        assert_eq!(client.cget(&key).await.unwrap().unwrap().source, "peer");
        asked += 1;
        if asked == 2 {
            break;
        }
    }
    let warning = format!("127.0.0.1:{a} asks this node for keys but is not in its --peers");
    let deadline = Instant::now() + Duration::from_secs(10);
    // Both asks are in the log (the warning, if any, comes before each one's line).
    while lonely.log().matches("peer asked for").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "b was not asked twice:\n{}",
            lonely.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        lonely.log().matches(&warning).count(),
        1,
        "{}",
        lonely.log()
    );
    assert!(
        !asker.log().contains("is not in its --peers"),
        "{}",
        asker.log()
    );
}
