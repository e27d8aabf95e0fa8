//! A value the dbserver acknowledged survives `kill -9` and a restart.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::DbProcess;
use gclab::client::DbClient;

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_sets_survive_kill_9_and_a_restart_on_the_same_data_dir() {
    let data = tempfile::tempdir().unwrap();
    let mut first = DbProcess::start(data.path());
    let db = DbClient::new(&first.addr, Duration::from_secs(10));
    for i in 0..100 {
        db.set(&format!("k{i}"), Bytes::from(format!("v{i}")))
            .await
            .unwrap();
    }
    first.child.kill().unwrap(); // SIGKILL: no chance to flush anything more
    first.child.wait().unwrap();

    let second = DbProcess::start(data.path());
    let db = DbClient::new(&second.addr, Duration::from_secs(10));
    for i in 0..100 {
        let value = db.get(&format!("k{i}")).await.unwrap();
        assert_eq!(value, Some(Bytes::from(format!("v{i}"))), "k{i} was lost");
    }
    assert_eq!(db.stats().await.unwrap().keys, 100);
}

#[test]
fn a_second_dbserver_on_the_same_data_dir_is_refused_with_one_clear_line() {
    let data = tempfile::tempdir().unwrap();
    let _first = DbProcess::start(data.path());
    let second = common::gclab()
        .args(["dbserver", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("is another dbserver using it?"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
