//! A value the dbserver acknowledged survives `kill -9` and a restart.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::ServerProcess;
use futures::StreamExt;
use gclab::client::DbClient;

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_acknowledged_sets_survive_kill_9_and_a_restart_on_the_same_data_dir() {
    let data = tempfile::tempdir().unwrap();
    let mut first = ServerProcess::dbserver(data.path(), "0ms");
    let db = DbClient::new(&first.addr, Duration::from_secs(10));
    // 1000 sets, 32 at a time; each is acknowledged only once it is on disk.
    let acknowledged: Vec<_> = futures::stream::iter(0..1000)
        .map(|i| {
            let db = db.clone();
            async move { db.set(&format!("k{i}"), Bytes::from(format!("v{i}"))).await }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(acknowledged.iter().all(Result::is_ok));
    first.child.kill().unwrap(); // SIGKILL: no chance to flush anything more
    first.child.wait().unwrap();

    let second = ServerProcess::dbserver(data.path(), "0ms");
    let db = DbClient::new(&second.addr, Duration::from_secs(10));
    for i in 0..1000 {
        let value = db.get(&format!("k{i}")).await.unwrap();
        assert_eq!(value, Some(Bytes::from(format!("v{i}"))), "k{i} was lost");
    }
    assert_eq!(db.stats().await.unwrap().keys, 1000);
}

#[test]
fn a_second_dbserver_on_the_same_data_dir_is_refused_with_one_clear_line() {
    let data = tempfile::tempdir().unwrap();
    let _first = ServerProcess::dbserver(data.path(), "0ms");
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
