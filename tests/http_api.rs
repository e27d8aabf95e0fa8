//! The HTTP APIs answer bad requests and failures with a status and a reason.

mod common;

use std::time::Duration;

async fn get(url: String) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_keys_get_400_missing_keys_404_and_values_200() {
    let topology = common::start(1, Duration::ZERO, |_| {}).await;
    topology
        .db
        .set("a b/c", bytes::Bytes::from_static(b"v"))
        .await
        .unwrap();
    let fe = topology.http_addr(0);
    assert_eq!(
        get(format!("http://{fe}/cache/a%20b%2Fc")).await,
        (200, "v".to_owned())
    );
    let (status, body) = get(format!("http://{fe}/cache/nope")).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = get(format!("http://{fe}/cache/{}", "k".repeat(251))).await;
    assert_eq!(
        (status, body.trim()),
        (400, "the key is 251 bytes long; the limit is 250")
    );
    let (status, body) = get(format!("http://{fe}/cache/%ff")).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = get(format!("http://{}/kv/%ff", topology.db_addr())).await;
    assert_eq!(status, 400);
    let (status, _) = get(format!("http://{fe}/nowhere")).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_value_over_1_mib_is_refused_with_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let topology = common::start(1, Duration::ZERO, |_| {}).await;
    // Announce 1 MiB + 1 and send none of it: the server answers from the header alone.
    // (Sending the body as well races the server, which closes the connection once it has
    // answered, against the client still writing: a broken pipe instead of a status.)
    let mut stream = tokio::net::TcpStream::connect(topology.db_addr())
        .await
        .unwrap();
    let head = format!(
        "PUT /kv/big HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        1024 * 1024 + 1
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("larger than the limit of 1.0 MiB"),
        "{answer}"
    );
    assert_eq!(topology.db.stats().await.unwrap().keys, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_dbserver_is_a_502_naming_it_and_is_never_cached() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let topology = common::start(1, Duration::ZERO, |c| c.group.db_addr = closed.to_string()).await;
    let fe = topology.http_addr(0);
    let (status, body) = get(format!("http://{fe}/cache/foo")).await;
    assert_eq!(status, 502);
    assert!(
        body.contains(&format!("cannot reach dbserver at {closed}")),
        "{body}"
    );
    let stats = topology.frontends[0].stats().await.unwrap();
    assert_eq!((stats.local_load_errs, stats.main_cache.items), (1, 0));
}

#[test]
fn a_frontend_missing_from_its_peers_refuses_to_start() {
    let output = common::gclab()
        .args(["frontend", "--port", "8001", "--peers", "8002,8003"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("this node (127.0.0.1:8001) is not in --peers"),
        "{stderr}"
    );
}

#[test]
fn a_port_in_use_is_one_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let output = common::gclab()
        .args(["dbserver", "--addr", &format!("127.0.0.1:{port}")])
        .current_dir(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.to_lowercase().contains("address already in use"),
        "{stderr}"
    );
}
