//! Content-addressed blobs: `cli put FILE` stores bytes under the SHA-256 the dbserver
//! gives them, `cli cget --key sha256:… -o FILE` fetches them through any frontend, and a
//! frontend refuses bytes that do not hash to their name, whoever sent them.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use gclab::client::{ClientError, FrontendClient, Loaded};
use gclab::http::{self, Limits};
use gclab::peers::{transport, Peer};
use sha2::{Digest, Sha256};
use tarpc::server::{BaseChannel, Channel};
use tokio::net::TcpListener;
use warp::http::header::HeaderValue;
use warp::Filter;

/// The address a blob of `bytes` must get, worked out here rather than by the code under test.
fn address_of(bytes: &[u8]) -> String {
    let hash: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hash}")
}

/// Runs `gclab cli <args>`: its exit code, stdout and stderr.
async fn cli(args: &[&str]) -> (Option<i32>, String, String) {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let out = tokio::task::spawn_blocking(move || common::gclab().arg("cli").args(&args).output())
        .await
        .unwrap()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_put_file_comes_back_byte_for_byte_through_every_frontend() {
    let t = common::start(3, Duration::ZERO, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    // Every byte value, NULs and invalid UTF-8 included; and one just under the 1 MiB limit.
    let binary: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let big: Vec<u8> = (0..1024 * 1024 - 7).map(|_| fastrand::u8(..)).collect();
    for (name, bytes) in [("binary.bin", binary), ("big.bin", big)] {
        let file = dir.path().join(name);
        std::fs::write(&file, &bytes).unwrap();
        let (code, stdout, stderr) = cli(&["put", path(&file), "--db", t.db_addr()]).await;
        assert_eq!(code, Some(0), "{stderr}");
        let address = stdout.trim();
        assert_eq!(address, address_of(&bytes), "the dbserver names the bytes");

        // The same bytes again, in the 2013 spelling: the same address.
        let (code, again, stderr) = cli(&["-put", "-file", path(&file), "-db", t.db_addr()]).await;
        assert_eq!(code, Some(0), "{stderr}");
        assert_eq!(again.trim(), address);

        for i in 0..3 {
            let out = dir.path().join(format!("{name}.from-{i}"));
            let frontend = t.http_addr(i);
            let (code, stdout, stderr) = cli(&[
                "cget",
                "--key",
                address,
                "--frontend",
                frontend,
                "-o",
                path(&out),
            ])
            .await;
            assert_eq!(code, Some(0), "{stderr}");
            assert_eq!(stdout, "", "with -o the value goes to the file only");
            assert!(std::fs::read(&out).unwrap() == bytes, "{name} through {i}");
        }
    }
    let integrity_errors: u64 = {
        let mut sum = 0;
        for f in &t.frontends {
            sum += f.stats().await.unwrap().integrity_errors;
        }
        sum
    };
    assert_eq!(integrity_errors, 0);
    let frontends = [t.http_addr(0), t.http_addr(1), t.http_addr(2)].join(",");
    let (_, table, _) = cli(&["stats", "--frontends", &frontends, "--db", t.db_addr()]).await;
    assert!(table.contains("gets"), "{table}");
    assert!(
        !table.contains("integrity_errors"),
        "no row while it is 0: {table}"
    );
    t.stop().await;
}

/// A dbserver that lies: it answers `GET /kv/{key}` as the dbserver does (its `server`
/// header, a version), but with `bytes` whatever the key. Returns its address and how
/// many reads it has answered.
async fn lying_dbserver(bytes: &'static [u8]) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let reads = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&reads);
    let kv = warp::path!("kv" / String)
        .map(move |_key: String| {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut reply = http::value(Bytes::from_static(bytes));
            reply
                .headers_mut()
                .insert("x-gclab-version", HeaderValue::from(1));
            reply
        })
        .recover(http::recover);
    let limits = Limits {
        header_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
    };
    tokio::spawn(http::serve(
        listener,
        kv,
        limits,
        "gclab-dbserver",
        std::future::pending(),
    ));
    (addr, reads)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_the_dbserver_garbles_is_a_502_counted_and_never_cached() {
    let (liar, reads) = lying_dbserver(b"not the real bytes").await;
    let t = common::start(1, Duration::ZERO, |c| c.group.db_addr = liar.clone()).await;
    let frontend = &t.frontends[0];
    let key = address_of(b"the real bytes");
    for attempt in 1..=2 {
        match frontend.cget(&key).await {
            Err(ClientError::Failed {
                status: 502,
                message,
                ..
            }) => {
                assert!(message.contains("the hash did not match"), "{message}");
                assert!(
                    message.contains(&address_of(b"not the real bytes")),
                    "it names the hash the bytes had: {message}"
                );
            }
            other => panic!("a garbled blob gave {other:?}"),
        }
        let stats = frontend.stats().await.unwrap();
        assert_eq!(stats.integrity_errors, attempt);
        assert_eq!(stats.main_cache.items, 0, "nothing was cached");
        assert_eq!(
            reads.load(Ordering::SeqCst),
            attempt as usize,
            "each Get asked the dbserver again"
        );
    }
    // The counter is exported for Prometheus too.
    let metrics = reqwest::get(format!("http://{}/metrics", t.http_addr(0)))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("gclab_integrity_errors_total 2"),
        "{metrics}"
    );
    // And `cli stats` grows a row for it, now that it is not 0.
    let (_, table, _) = cli(&["stats", "--frontends", t.http_addr(0), "--db", &liar]).await;
    let row = table.lines().find(|l| l.starts_with("integrity_errors"));
    assert_eq!(
        row.map(|r| r.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["integrity_errors", "2"]),
        "{table}"
    );
    // A key that is no blob's names no bytes: the liar's answer is a value like any other.
    let plain = frontend.cget("foo").await.unwrap().unwrap();
    assert_eq!(plain.value, &b"not the real bytes"[..]);
    t.stop().await;
}

/// A peer that lies: every `get` answers `bytes`, whatever the key.
#[derive(Clone)]
struct LyingPeer {
    bytes: &'static [u8],
    asked: Arc<AtomicUsize>,
}

impl Peer for LyingPeer {
    async fn get(self, _: tarpc::context::Context, _: String, _: String) -> Result<Loaded, String> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        Ok(Loaded {
            value: Some(Bytes::from_static(self.bytes)),
            version: 1,
        })
    }

    async fn peek(self, _: tarpc::context::Context, _: String, _: String) -> Option<Loaded> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        Some(Loaded {
            value: Some(Bytes::from_static(self.bytes)),
            version: 1,
        })
    }
}

/// Starts a [`LyingPeer`] on port 0: its address, and how many calls it has had.
async fn lying_peer() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let asked = Arc::new(AtomicUsize::new(0));
    let peer = LyingPeer {
        bytes: b"not the real bytes",
        asked: Arc::clone(&asked),
    };
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let channel = BaseChannel::with_defaults(transport(stream));
            tokio::spawn(
                channel
                    .execute(peer.clone().serve())
                    .for_each(|call| async {
                        tokio::spawn(call);
                    }),
            );
        }
    });
    (addr, asked)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_that_sends_wrong_bytes_is_not_believed_and_the_dbserver_is_asked() {
    let t = common::start(0, Duration::ZERO, |_| {}).await;
    let (liar, asked) = lying_peer().await;
    let peer_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let me = peer_listener.local_addr().unwrap().to_string();
    let http_addr = http_listener.local_addr().unwrap().to_string();
    let peers = vec![me.clone(), liar.clone()];
    let config = common::frontend_config(&me, peers.clone(), t.db_addr());
    tokio::spawn(gclab::frontend::run(
        peer_listener,
        http_listener,
        config,
        std::future::pending(),
    ));

    // A blob the liar owns, stored for real in the dbserver.
    let ring = gclab::ring::Ring::new(peers);
    let (bytes, address) = (0..)
        .map(|n| format!("blob {n}").into_bytes())
        .map(|b| {
            let a = address_of(&b);
            (b, a)
        })
        .find(|(_, a)| ring.owner(a) == liar)
        .unwrap();
    let (stored, _) = t.db.put_blob(Bytes::from(bytes.clone())).await.unwrap();
    assert_eq!(stored, address);

    let frontend = FrontendClient::new(&http_addr, Duration::from_secs(10));
    let got = frontend.cget(&address).await.unwrap().unwrap();
    assert_eq!(got.value, bytes, "the real bytes, from the dbserver");
    assert_eq!(got.source, "db");
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    let stats = frontend.stats().await.unwrap();
    assert_eq!(stats.integrity_errors, 1);
    assert_eq!(stats.peer_errors, 1);
    assert_eq!(stats.peer_loads, 0);
    assert_eq!(stats.local_loads, 1);
    // What is cached is the dbserver's good copy, never the liar's.
    let again = frontend.cget(&address).await.unwrap().unwrap();
    assert_eq!((again.value, again.source.as_str()), (bytes.into(), "main"));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_previous_owner_that_hands_over_wrong_bytes_is_not_believed() {
    let t = common::start(0, Duration::ZERO, |_| {}).await;
    let (liar, asked) = lying_peer().await;
    // This node joins a ring of the liar and a node that is never asked: a key that moves
    // from the liar to this node is peeked at the liar first (the warm hand-off).
    let (me, bystander) = ("127.0.0.1:1".to_owned(), "127.0.0.1:2".to_owned());
    let before = vec![liar.clone(), bystander.clone()];
    let after = vec![liar.clone(), bystander, me.clone()];
    let (old, new) = (
        gclab::ring::Ring::new(before.clone()),
        gclab::ring::Ring::new(after.clone()),
    );
    let (bytes, address) = (0..)
        .map(|n| format!("moving blob {n}").into_bytes())
        .map(|b| {
            let a = address_of(&b);
            (b, a)
        })
        .find(|(_, a)| old.owner(a) == liar && new.owner(a) == me)
        .unwrap();
    t.db.put_blob(Bytes::from(bytes.clone())).await.unwrap();
    let config = common::frontend_config(&me, before, t.db_addr());
    let group = Arc::new(gclab::group::Group::new(&config.group));
    assert!(group.set_peers(after, false));

    let span = http::arriving(group.events(), None, &address);
    let got = group.get(&address, span).await.unwrap();
    assert_eq!(got.value, bytes, "the real bytes, from the dbserver");
    assert_eq!(got.source.as_str(), "db");
    assert_eq!(
        asked.load(Ordering::SeqCst),
        1,
        "the liar was peeked at once"
    );
    let stats = group.stats();
    assert_eq!(
        (
            stats.integrity_errors,
            stats.peer_peeks,
            stats.peer_peek_hits
        ),
        (1, 1, 0)
    );
    assert_eq!(stats.local_loads, 1);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sha256_key_that_is_not_64_lowercase_hex_digits_is_a_400_everywhere() {
    let t = common::start(1, Duration::ZERO, |_| {}).await;
    let good = address_of(b"x");
    let short = good[..good.len() - 1].to_owned();
    for bad in [short, good.to_uppercase().replace("SHA256:", "sha256:")] {
        let refused = |e: ClientError| match e {
            ClientError::Refused {
                status: 400,
                message,
                ..
            } => message,
            other => panic!("{bad} gave {other:?}"),
        };
        let message = refused(t.frontends[0].cget(&bad).await.unwrap_err());
        assert!(
            message.contains("exactly 64 lowercase hex digits"),
            "{message}"
        );
        let message = refused(t.frontends[0].owner(&bad).await.unwrap_err());
        assert!(
            message.contains("exactly 64 lowercase hex digits"),
            "{message}"
        );
        let message = refused(t.db.get(&bad).await.unwrap_err());
        assert!(
            message.contains("exactly 64 lowercase hex digits"),
            "{message}"
        );

        let (code, _, stderr) = cli(&["cget", "--key", &bad, "--frontend", t.http_addr(0)]).await;
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.contains("exactly 64 lowercase hex digits"),
            "{stderr}"
        );
    }
    // A well-formed address is not the client's to write under: the dbserver names blobs.
    match t.db.set(&good, Bytes::from_static(b"x")).await {
        Err(ClientError::Refused {
            status: 400,
            message,
            ..
        }) => assert!(message.contains("POST the bytes to /blobs"), "{message}"),
        other => panic!("a PUT to a blob's address gave {other:?}"),
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_put_over_the_limit_is_a_413_naming_it() {
    let t = common::start(0, Duration::ZERO, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("too-big.bin");
    std::fs::write(&file, vec![7u8; 1024 * 1024 + 1]).unwrap();
    let (code, stdout, stderr) = cli(&["put", path(&file), "--db", t.db_addr()]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stdout, "");
    assert!(stderr.contains("413"), "{stderr}");
    assert!(
        stderr.contains("larger than the limit of 1.0 MiB (--max-value-bytes)"),
        "{stderr}"
    );
    // Far over: the dbserver may close the connection before the 413 can be read; the
    // cli still says what the limit is.
    let huge = dir.path().join("huge.bin");
    std::fs::write(&huge, vec![7u8; 32 * 1024 * 1024]).unwrap();
    let (code, _, stderr) = cli(&["put", path(&huge), "--db", t.db_addr()]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--max-value-bytes"), "{stderr}");
    assert_eq!(t.db.stats().await.unwrap().keys, 0, "nothing was stored");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_put_of_a_missing_file_exits_2_naming_the_path_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-photo.jpg");
    // No dbserver is needed: the file is read before anything is sent.
    let (code, stdout, stderr) = cli(&["put", path(&missing), "--db", "127.0.0.1:1"]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stdout, "");
    assert!(
        stderr.contains(&format!("cannot read {}", missing.display())),
        "{stderr}"
    );
    assert!(stderr.contains("No such file or directory"), "{stderr}");
}
