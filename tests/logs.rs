//! `--log-format json`: every line a server writes is one JSON object, for a log stack.

mod common;

use common::ServerProcess;

/// Every line of `log` parsed as a JSON object; panics naming the first that is not.
fn objects(log: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
    log.lines()
        .map(
            |line| match serde_json::from_str::<serde_json::Value>(line) {
                Ok(serde_json::Value::Object(object)) => object,
                other => panic!("not a JSON object ({other:?}): {line}\nin:\n{log}"),
            },
        )
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn with_log_format_json_every_line_is_an_object_naming_its_node() {
    let data = tempfile::tempdir().unwrap();
    let db = ServerProcess::start(&[
        "dbserver",
        "--addr",
        "127.0.0.1:0",
        "--delay",
        "0ms",
        "--data-dir",
        data.path().to_str().unwrap(),
        "--log-format",
        "json",
    ]);
    let port = common::free_block(1);
    let me = format!("127.0.0.1:{port}");
    let frontend = ServerProcess::start(&[
        "frontend",
        "--port",
        &port.to_string(),
        "--peers",
        &me,
        "--db",
        &db.addr,
        "--log-format",
        "json",
    ]);
    let set = common::run_gclab(&format!("cli set --key foo --value bar --db {}", db.addr)).await;
    assert!(set.status.success(), "{set:?}");
    for key in ["foo", "foo", "nothing-here"] {
        common::run_gclab(&format!(
            "cli cget --key {key} --frontend {}",
            frontend.addr
        ))
        .await;
    }
    // SIGTERM: each finishes and says so, in JSON too.
    for server in [&frontend, &db] {
        server.signal("-TERM");
    }
    let (mut frontend, mut db) = (frontend, db);
    frontend.child.wait().unwrap();
    db.child.wait().unwrap();

    let lines = objects(&frontend.log());
    for line in &lines {
        assert_eq!(line["node"], me.as_str(), "{line:?}");
        for field in ["timestamp", "level", "message", "target"] {
            assert!(line.contains_key(field), "no {field} in {line:?}");
        }
    }
    let answers: Vec<_> = lines
        .iter()
        .filter(|l| l.get("kind").is_some_and(|k| k == "answer"))
        .collect();
    let said = |i: usize, field: &str| answers[i][field].clone();
    assert_eq!(answers.len(), 3, "one answer per request: {answers:?}");
    assert_eq!(
        (said(0, "key"), said(0, "source"), said(0, "status")),
        ("foo".into(), "db".into(), 200.into())
    );
    assert_eq!(
        (said(1, "source"), said(1, "status")),
        ("main".into(), 200.into())
    );
    assert_eq!(
        (said(2, "key"), said(2, "source"), said(2, "status")),
        ("nothing-here".into(), "not_found".into(), 404.into())
    );
    assert!(answers
        .iter()
        .all(|a| a["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0)));
    let db_lines = objects(&db.log());
    assert!(
        db_lines.iter().all(|l| l["node"] == db.addr.as_str()),
        "{db_lines:?}"
    );
    assert!(db_lines.iter().any(|l| l["message"]
        .as_str()
        .is_some_and(|m| m.contains("setting foo"))));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_human_format_stays_the_default_and_prints_no_answer_events() {
    let data = tempfile::tempdir().unwrap();
    let db = ServerProcess::dbserver(data.path(), "0ms");
    let port = common::free_block(1);
    let frontend = ServerProcess::start(&[
        "frontend",
        "--port",
        &port.to_string(),
        "--peers",
        &format!("127.0.0.1:{port}"),
        "--db",
        &db.addr,
    ]);
    common::run_gclab(&format!("cli set --key foo --value bar --db {}", db.addr)).await;
    common::run_gclab(&format!("cli cget --key foo --frontend {}", frontend.addr)).await;
    frontend.signal("-TERM");
    let mut frontend = frontend;
    frontend.child.wait().unwrap();
    let log = frontend.log();
    assert!(log.contains("cli asked for foo"), "{log}");
    assert!(!log.contains("answered foo"), "{log}");
    assert!(!log.trim_start().starts_with('{'), "{log}");
}
