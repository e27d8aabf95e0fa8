//! The peer transport (`--peer-transport tarpc | http`): both carry the Get path the same
//! way, a dead peer is failed over on either, a stranger's answer is never a value, and
//! nodes on different transports refuse each other clearly instead of hanging.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use bytes::Bytes;
use common::ServerProcess;
use gclab::client::{DbClient, FrontendClient};
use gclab::peers::PeerTransport;
use gclab::trace::{Kind, NodeEvent, TraceParent};

const TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread")]
async fn over_http_a_value_comes_from_its_owner_a_peek_carries_its_version_and_a_missing_key_is_none(
) {
    let topology = common::start(2, Duration::ZERO, |c| {
        c.group.peer_transport = PeerTransport::Http;
    })
    .await;
    let key = common::key_owned_by(&topology, 1, "kept").await;
    let through = &topology.frontends[0];
    let cached = through.cget(&key).await.unwrap().expect("written");
    assert_eq!(cached.value, format!("value of {key}"));
    assert_eq!(cached.source, "peer");
    // A key nobody wrote, owned by node 1 or node 0: "no such key" either way, never an error.
    for n in 0..4 {
        let missing = format!("missing-{n}");
        assert!(through.cget(&missing).await.unwrap().is_none(), "{missing}");
    }
    assert_eq!(through.stats().await.unwrap().peer_errors, 0);
    // The owner's main cache holds the key now: a peek answers it with its version, and
    // a peek at a key it does not hold is 204, without loading it.
    let peek = |key: &str| raw(topology.http_addr(1), &format!("/_groupcache/{key}?peek=1"));
    let found = peek(&key);
    assert!(found.starts_with("HTTP/1.1 200"), "{found}");
    assert!(found.contains("x-gclab-version: "), "{found}");
    assert!(found.ends_with(&format!("value of {key}")), "{found}");
    assert!(peek("never-loaded").starts_with("HTTP/1.1 204"));
    topology.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn over_http_the_trace_goes_with_the_call_and_the_owner_names_the_asker() {
    let topology = common::start(2, Duration::ZERO, |c| {
        c.group.peer_transport = PeerTransport::Http;
    })
    .await;
    let key = common::key_owned_by(&topology, 1, "traced").await;
    let parent = TraceParent::new();
    let cached = topology.frontends[0]
        .cget_traced(&key, Some(parent))
        .await
        .unwrap()
        .expect("written");
    assert_eq!(cached.source, "peer");
    let events = |i: usize| topology.frontends[i].events(parent.trace);
    let (asker, mut owner) = (
        events(0).await.unwrap().events,
        events(1).await.unwrap().events,
    );
    owner.sort_by_key(|e| e.event.at_ns); // a flight's start is noted once it is set up
    let kinds = |events: &[NodeEvent]| events.iter().map(|e| e.event.kind).collect::<Vec<_>>();
    assert_eq!(
        kinds(&owner),
        [
            Kind::Arrived,
            Kind::Miss,
            Kind::FlightStarted,
            Kind::DbReadOut,
            Kind::DbReadIn,
            Kind::Answered
        ],
        "{owner:?}"
    );
    let call_out = asker
        .iter()
        .find(|e| e.event.kind == Kind::PeerCallOut)
        .expect("the asker noted its call");
    assert_eq!(
        owner[0].event.detail.peer.as_deref(),
        Some(topology.peers[0].as_str())
    );
    assert_eq!(owner[0].event.detail.parent, Some(call_out.event.span));
    topology.stop().await;
}

/// One raw HTTP/1.1 GET of `path` at `addr`, the whole answer as text.
fn raw(addr: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

// The herd over each transport is in tests/herd.rs, and an owner killed mid-herd over
// each in tests/failures.rs.

#[tokio::test(flavor = "multi_thread")]
async fn nodes_on_different_transports_refuse_each_other_and_every_get_gets_its_value() {
    let data = tempfile::tempdir().unwrap();
    let dbserver = ServerProcess::dbserver(data.path(), "0ms");
    let base = common::free_block(2);
    let peers = format!("{},{}", base, base + 1);
    let start = |i: u16, transport: &str| {
        let port = (base + i).to_string();
        ServerProcess::start(&[
            "frontend",
            "--port",
            &port,
            "--peers",
            &peers,
            "--db",
            &dbserver.addr,
            "--peer-transport",
            transport,
        ])
    };
    let nodes = [start(0, "tarpc"), start(1, "http")];
    let clients: Vec<FrontendClient> = nodes
        .iter()
        .map(|n| FrontendClient::new(&n.addr, TIMEOUT))
        .collect();
    let db = DbClient::new(&dbserver.addr, TIMEOUT);
    // Keys owned by each node, each asked for at the other one, which must ask the owner.
    let mut keys = [Vec::new(), Vec::new()];
    for n in 0.. {
        let key = format!("mixed-{n}");
        let owner = clients[0].owner(&key).await.unwrap().owner;
        let i = usize::from(owner.ends_with(&format!(":{}", base + 1)));
        if keys[i].len() < 3 {
            db.set(&key, Bytes::from(format!("value of {key}")))
                .await
                .unwrap();
            keys[i].push(key);
        }
        if keys.iter().all(|k| k.len() == 3) {
            break;
        }
    }
    for (owner, owned) in keys.iter().enumerate() {
        let asker = &clients[1 - owner];
        for key in owned {
            // The bound: a refusal is an answer, so no request waits out a deadline.
            let cached = tokio::time::timeout(TIMEOUT, asker.cget(key))
                .await
                .unwrap_or_else(|_| panic!("{key} hung"))
                .unwrap()
                .expect("written");
            assert_eq!(cached.value, format!("value of {key}"));
            assert_eq!(cached.source, "db", "{key}: loaded by the asker itself");
        }
    }
    for (i, client) in clients.iter().enumerate() {
        let stats = client.stats().await.unwrap();
        assert_eq!(
            stats.server_requests, 0,
            "node {i} served nobody: {stats:?}"
        );
        assert_eq!(
            stats.peer_errors, 3,
            "node {i} was refused 3 times: {stats:?}"
        );
        assert_eq!(stats.peer_loads, 0, "node {i}: {stats:?}");
        assert_eq!(
            stats.local_loads, 3,
            "node {i} loaded the 3 it asked for: {stats:?}"
        );
    }
    // Each refusal is logged once by the node that refused, and the asker says why it
    // loaded the key itself.
    let (tarpc_log, http_log) = (nodes[0].log(), nodes[1].log());
    let refused = "but this node's peers use";
    assert_eq!(tarpc_log.matches(refused).count(), 1, "{tarpc_log}");
    assert_eq!(http_log.matches(refused).count(), 1, "{http_log}");
    assert!(
        tarpc_log.contains("this node's peers use http (--peer-transport http)"),
        "{tarpc_log}"
    );
    assert!(
        http_log.contains("this node's peers use tarpc (--peer-transport tarpc)"),
        "{http_log}"
    );
}

/// A fake peer on `port + 1000` that answers every connection with `reply` and closes.
fn fake_http_peer(reply: &'static [u8]) -> u16 {
    let (peer, http, port) = peer_and_http_ports();
    std::thread::spawn(move || {
        let _keep = peer;
        for mut stream in http.incoming().map_while(Result::ok) {
            let mut request = [0; 4096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(reply);
        }
    });
    port
}

/// A free peer port whose HTTP port (+ 1000) is free too, both bound: the listeners and
/// the peer port.
fn peer_and_http_ports() -> (std::net::TcpListener, std::net::TcpListener, u16) {
    loop {
        let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = peer.local_addr().unwrap().port();
        let Some(http_port) = port.checked_add(1000) else {
            continue;
        };
        if let Ok(http) = std::net::TcpListener::bind(("127.0.0.1", http_port)) {
            return (peer, http, port);
        }
    }
}

/// A fake peer whose HTTP port (its port + 1000) accepts connections and never answers.
fn hung_http_peer() -> u16 {
    let (peer, http, port) = peer_and_http_ports();
    std::thread::spawn(move || {
        let _keep = peer;
        // Never ends: every connection is kept, open and unanswered, while the test runs.
        let _held: Vec<_> = http.incoming().map_while(Result::ok).collect();
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn over_http_a_hung_peer_costs_one_peer_timeout_then_is_skipped() {
    let hung = format!("127.0.0.1:{}", hung_http_peer());
    let data = tempfile::tempdir().unwrap();
    let dbserver = ServerProcess::dbserver(data.path(), "0ms");
    let port = common::free_block(1);
    let me = format!("127.0.0.1:{port}");
    let peers = format!("{port},{hung}");
    let node = ServerProcess::start(&[
        "frontend",
        "--port",
        &port.to_string(),
        "--peers",
        &peers,
        "--db",
        &dbserver.addr,
        "--peer-transport",
        "http",
        "--db-timeout",
        "300ms",
        "--peer-timeout",
        "500ms",
    ]);
    let client = FrontendClient::new(&node.addr, TIMEOUT);
    let db = DbClient::new(&dbserver.addr, TIMEOUT);
    let ring = gclab::ring::Ring::new([me, hung.clone()]);
    let keys: Vec<String> = (0..)
        .map(|n| format!("hung-{n}"))
        .filter(|k| ring.owner(k) == hung)
        .take(3)
        .collect();
    for key in &keys {
        db.set(key, Bytes::from(format!("value of {key}")))
            .await
            .unwrap();
        let cached = client.cget(key).await.unwrap().expect("written");
        assert_eq!(cached.value, format!("value of {key}"));
        assert_eq!(cached.source, "db");
    }
    // The first waited out --peer-timeout; the other two skipped the peer (back-off).
    let stats = client.stats().await.unwrap();
    assert_eq!(stats.peer_errors, 1, "{stats:?}");
    assert_eq!(stats.failovers, 3, "{stats:?}");
    let log = node.log();
    assert_eq!(log.matches("no answer within 500ms").count(), 1, "{log}");
    assert_eq!(log.matches("is unreachable").count(), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn over_http_a_strangers_answer_or_a_cut_short_one_is_never_a_value() {
    let not_gclab: &'static [u8] =
        b"HTTP/1.1 200 OK\r\nserver: nginx\r\ncontent-length: 5\r\n\r\nhello";
    let cut_short: &'static [u8] = b"HTTP/1.1 200 OK\r\nserver: gclab-frontend\r\n\
          x-gclab-version: 1\r\ncontent-length: 100\r\n\r\nshort";
    for reply in [not_gclab, cut_short] {
        let fake = format!("127.0.0.1:{}", fake_http_peer(reply));
        let data = tempfile::tempdir().unwrap();
        let dbserver = ServerProcess::dbserver(data.path(), "0ms");
        let port = common::free_block(1);
        let peers = format!("{port},{fake}");
        let node = ServerProcess::start(&[
            "frontend",
            "--port",
            &port.to_string(),
            "--peers",
            &peers,
            "--db",
            &dbserver.addr,
            "--peer-transport",
            "http",
        ]);
        let client = FrontendClient::new(&node.addr, TIMEOUT);
        let db = DbClient::new(&dbserver.addr, TIMEOUT);
        let key = (0..)
            .map(|n| format!("faked-{n}"))
            .find(|k| {
                gclab::ring::Ring::new([format!("127.0.0.1:{port}"), fake.clone()]).owner(k) == fake
            })
            .unwrap();
        db.set(&key, Bytes::from_static(b"the real value"))
            .await
            .unwrap();
        let cached = client.cget(&key).await.unwrap().expect("written");
        assert_eq!(cached.value, "the real value", "{}", node.log());
        assert_eq!(cached.source, "db");
        let stats = client.stats().await.unwrap();
        assert_eq!(stats.peer_errors, 1, "{stats:?}");
        assert_eq!(stats.peer_loads, 0, "{stats:?}");
    }
}
