//! Changing data: versions, the change stream, `--follow-changes`, the stale-set guard,
//! ETag/304 and TTL. Every check is a count, a version or a value; races are gated.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{gclab, ServerProcess};
use futures::StreamExt;
use gclab::client::{DbClient, FrontendClient};
use gclab::frontend::{self, Config};
use gclab::topology::Topology;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};
use warp::Filter;

const TIMEOUT: Duration = Duration::from_secs(10);

fn following(config: &mut Config) {
    config.group.follow_changes = true;
}

/// Waits until every frontend reports version `v` applied, and checks that they did. Up
/// to 20 s each: a frontend whose stream broke retries with a back-off of up to 5 s.
async fn wait_applied(frontends: &[FrontendClient], v: u64) {
    for f in frontends {
        let mut applied = f.applied(v, Duration::from_secs(5)).await.unwrap();
        for _ in 0..3 {
            if applied.applied >= v {
                break;
            }
            applied = f.applied(v, Duration::from_secs(5)).await.unwrap();
        }
        assert!(applied.following, "{} does not follow changes", f.addr());
        assert!(
            applied.applied >= v,
            "{} applied only up to v{}, not v{v}",
            f.addr(),
            applied.applied
        );
    }
}

/// Waits until `n` change streams are open on the dbserver: a frontend that subscribes after
/// a write starts from it, and never counts it in `changes_applied`.
async fn wait_following(db: &DbClient, n: u64) {
    for _ in 0..1000 {
        if db.stats().await.unwrap().followers >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{n} frontends did not subscribe to the change stream within 10 s");
}

async fn values_everywhere(frontends: &[FrontendClient], key: &str) -> Vec<String> {
    let mut values = Vec::new();
    for f in frontends {
        let cached = f.cget(key).await.unwrap().expect("the key exists");
        values.push(String::from_utf8_lossy(&cached.value).into_owned());
    }
    values
}

#[tokio::test(flavor = "multi_thread")]
async fn a_set_after_a_cached_get_reaches_every_following_frontend() {
    let t = Topology::start(3, Duration::ZERO, following).await.unwrap();
    wait_following(&t.db, 3).await;
    let v1 = t.db.set("foo", Bytes::from_static(b"bar")).await.unwrap();
    wait_applied(&t.frontends, v1).await;
    for _ in 0..3 {
        assert_eq!(values_everywhere(&t.frontends, "foo").await, ["bar"; 3]);
    }
    let owner = t.owner_of("foo").await.unwrap();
    let v2 = t.db.set("foo", Bytes::from_static(b"baz")).await.unwrap();
    assert!(v2 > v1);
    wait_applied(&t.frontends, v2).await;
    assert_eq!(values_everywhere(&t.frontends, "foo").await, ["baz"; 3]);
    let stats = t.frontends[owner].stats().await.unwrap();
    assert_eq!(stats.changes_applied, 2);
    assert_eq!(stats.evictions_by_change, 1, "the owner dropped its copy");
    assert_eq!(stats.last_version_applied, v2);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_follow_changes_every_frontend_keeps_the_old_value() {
    let t = Topology::start(3, Duration::ZERO, |_| {}).await.unwrap();
    t.db.set("foo", Bytes::from_static(b"bar")).await.unwrap();
    assert_eq!(values_everywhere(&t.frontends, "foo").await, ["bar"; 3]);
    t.db.set("foo", Bytes::from_static(b"baz")).await.unwrap();
    assert_eq!(values_everywhere(&t.frontends, "foo").await, ["bar"; 3]);
    let applied = t.frontends[0].applied(0, Duration::ZERO).await.unwrap();
    assert!(!applied.following);
    t.stop().await;
}

/// A dbserver stand-in whose reads of `foo` wait for a gate, and whose change stream the
/// test writes: the stale-set race, step by step.
struct GatedDb {
    addr: String,
    /// Notified when a read of foo has arrived (and read the value it will answer).
    read_arrived: Arc<Notify>,
    /// Releases the reads waiting at the gate.
    gate: Arc<Notify>,
    value: Arc<Mutex<(String, u64)>>,
    changes: mpsc::UnboundedSender<String>,
    reads: Arc<Mutex<u32>>,
}

async fn gated_db() -> GatedDb {
    let read_arrived = Arc::new(Notify::new());
    let gate = Arc::new(Notify::new());
    let value = Arc::new(Mutex::new(("old".to_owned(), 1)));
    let reads = Arc::new(Mutex::new(0));
    let (changes, stream) = mpsc::unbounded_channel::<String>();
    let stream = Arc::new(Mutex::new(Some(stream)));
    let kv = {
        let (arrived, gate, value, reads) = (
            read_arrived.clone(),
            gate.clone(),
            value.clone(),
            reads.clone(),
        );
        warp::path!("kv" / String)
            .and(warp::get())
            .then(move |_key: String| {
                let (arrived, gate, value, reads) =
                    (arrived.clone(), gate.clone(), value.clone(), reads.clone());
                async move {
                    // What the dbserver does: read, then answer slowly.
                    let (text, version) = value.lock().unwrap().clone();
                    let first = {
                        let mut reads = reads.lock().unwrap();
                        *reads += 1;
                        *reads == 1
                    };
                    if first {
                        let waiting = gate.notified();
                        arrived.notify_one();
                        waiting.await;
                    }
                    warp::http::Response::builder()
                        .header("x-gclab-version", version)
                        .body(text)
                        .unwrap()
                }
            })
    };
    let feed = warp::path!("changes").and(warp::get()).map(move || {
        let lines = stream.lock().unwrap().take().expect("one follower");
        let hello = futures::stream::iter([Ok::<_, Infallible>("{\"hello\":1}\n".to_owned())]);
        let live = futures::stream::unfold(lines, |mut lines| async move {
            lines.recv().await.map(|l| (Ok(l + "\n"), lines))
        });
        warp::reply::stream(hello.chain(live))
    });
    let stats = warp::path!("stats").map(|| "{\"gets\":0,\"sets\":0,\"keys\":1}");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let limits = gclab::http::Limits {
        header_timeout: TIMEOUT,
        request_timeout: Duration::from_secs(60),
    };
    let routes = kv.or(feed).or(stats).recover(gclab::http::recover);
    tokio::spawn(gclab::http::serve(
        listener,
        routes,
        limits,
        "gclab-dbserver",
        std::future::pending(),
    ));
    GatedDb {
        addr,
        read_arrived,
        gate,
        value,
        changes,
        reads,
    }
}

/// One frontend, alone in its ring, following the dbserver at `db`, with deadlines long
/// enough for a read held at the gate.
async fn lone_frontend(db: &str, tweak: impl Fn(&mut Config)) -> FrontendClient {
    let mut frontends = frontends_over(db, 1, |config| {
        config.group.db_timeout = Duration::from_secs(20);
        config.group.peer_timeout = Duration::from_secs(30);
        tweak(config);
    })
    .await;
    frontends.remove(0)
}

/// Plays the race: a load reads v1, a change to v2 is applied while it is in flight, then
/// the load finishes. Returns what that get answered and what the next one answers.
async fn play_the_stale_set_race(stale_guard: bool) -> (String, String, gclab::stats::NodeStats) {
    let db = gated_db().await;
    let frontend = lone_frontend(&db.addr, |c| c.group.stale_guard = stale_guard).await;
    wait_applied(std::slice::from_ref(&frontend), 1).await;

    let arrived = db.read_arrived.notified();
    let first = tokio::spawn({
        let frontend = frontend.clone();
        async move { frontend.cget("foo").await }
    });
    arrived.await; // the load has read "old" v1, and its answer is on its way
    *db.value.lock().unwrap() = ("new".to_owned(), 2);
    db.changes
        .send("{\"version\":2,\"key\":\"foo\",\"op\":\"set\"}".to_owned())
        .unwrap();
    wait_applied(std::slice::from_ref(&frontend), 2).await;
    db.gate.notify_one(); // now the old answer arrives

    let first = first.await.unwrap().unwrap().unwrap();
    let next = frontend.cget("foo").await.unwrap().unwrap();
    let stats = frontend.stats().await.unwrap();
    assert!(*db.reads.lock().unwrap() >= 1);
    (
        String::from_utf8_lossy(&first.value).into_owned(),
        String::from_utf8_lossy(&next.value).into_owned(),
        stats,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_load_overtaken_by_a_change_is_refused_and_read_again() {
    let (first, next, stats) = play_the_stale_set_race(true).await;
    assert_eq!(first, "new", "the overtaken load read again");
    assert_eq!(next, "new");
    assert_eq!(stats.stale_loads_refused, 1);
    assert_eq!(
        stats.local_loads, 2,
        "the refused read, and the one after it"
    );
    assert_eq!(stats.main_cache.items, 1);
}

/// The contrast: the same race with the guard off caches the old value for good. This is
/// what the test above would see if the guard were removed.
#[tokio::test(flavor = "multi_thread")]
async fn without_the_guard_the_old_value_stays_cached_after_the_change() {
    let (first, next, stats) = play_the_stale_set_race(false).await;
    assert_eq!((first.as_str(), next.as_str()), ("old", "old"));
    assert_eq!(stats.stale_loads_refused, 0);
    assert_eq!(stats.local_loads, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_never_go_back_across_kill_9() {
    let data = tempfile::tempdir().unwrap();
    let mut first = ServerProcess::dbserver(data.path(), "0ms");
    let db = DbClient::new(&first.addr, TIMEOUT);
    let versions: Vec<u64> = futures::stream::iter(0..200)
        .map(|i| {
            let db = db.clone();
            async move {
                let key = format!("k{}", i % 20);
                db.set(&key, Bytes::from(format!("v{i}"))).await.unwrap()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut sorted = versions.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 200, "every write has a version of its own");
    let newest = *sorted.last().unwrap();
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();

    let second = ServerProcess::dbserver(data.path(), "0ms");
    let db = DbClient::new(&second.addr, TIMEOUT);
    let next = db.set("after", Bytes::from_static(b"x")).await.unwrap();
    assert!(
        next > newest,
        "v{next} after a crash, but v{newest} was acknowledged"
    );
    let loaded = db.load("after").await.unwrap();
    assert_eq!(loaded.version, next);
}

/// A port nothing listens on, to start a dbserver at (and restart it at the same address).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn dbserver_at(port: u16, data: &std::path::Path, extra: &[&str]) -> ServerProcess {
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec![
        "dbserver",
        "--addr",
        &addr,
        "--delay",
        "0ms",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ServerProcess::start(&args)
}

/// `n` frontends that peer together and follow the dbserver at `db`; `tweak` may change
/// each one's configuration.
async fn frontends_over(db: &str, n: usize, tweak: impl Fn(&mut Config)) -> Vec<FrontendClient> {
    let mut peers = Vec::new();
    let mut listeners = Vec::new();
    for _ in 0..n {
        let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        peers.push(peer.local_addr().unwrap().to_string());
        listeners.push((peer, http));
    }
    let mut clients = Vec::new();
    for (peer, http) in listeners {
        clients.push(FrontendClient::new(
            &http.local_addr().unwrap().to_string(),
            TIMEOUT,
        ));
        let me = peer.local_addr().unwrap().to_string();
        let mut config = common::frontend_config(&me, peers.clone(), db);
        config.group.follow_changes = true;
        tweak(&mut config);
        tokio::spawn(frontend::run(peer, http, config, std::future::pending()));
    }
    clients
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stream_resumes_after_a_dbserver_restart_and_a_lost_gap_clears_the_caches() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut dbserver = dbserver_at(port, data.path(), &["--change-log", "3"]);
    let db = DbClient::new(&addr, TIMEOUT);
    let frontends = frontends_over(&addr, 3, |_| {}).await;
    wait_following(&db, 3).await;
    let v = db.set("foo", Bytes::from_static(b"one")).await.unwrap();
    wait_applied(&frontends, v).await;
    assert_eq!(values_everywhere(&frontends, "foo").await, ["one"; 3]);

    // 1. kill -9 and restart at the same address: the frontends resume after v1.
    dbserver.child.kill().unwrap();
    dbserver.child.wait().unwrap();
    drop(dbserver);
    let dbserver = dbserver_at(port, data.path(), &["--change-log", "3"]);
    let v = db.set("foo", Bytes::from_static(b"two")).await.unwrap();
    wait_applied(&frontends, v).await;
    assert_eq!(values_everywhere(&frontends, "foo").await, ["two"; 3]);
    for f in &frontends {
        let stats = f.stats().await.unwrap();
        assert_eq!(stats.changes_applied, 2, "v1 and v2, each once: {stats:?}");
    }

    // 2. While the frontends cannot reach it (the dbserver runs elsewhere for a moment),
    //    five writes pass: the log keeps three, so the gap after v2 is lost.
    drop(dbserver); // SIGKILL
    let elsewhere = dbserver_at(free_port(), data.path(), &["--change-log", "3"]);
    let other = DbClient::new(&elsewhere.addr, TIMEOUT);
    for i in 0..5 {
        other
            .set(&format!("k{i}"), Bytes::from_static(b"x"))
            .await
            .unwrap();
    }
    let newest = other.stats().await.unwrap().version;
    drop(elsewhere);
    let back = dbserver_at(port, data.path(), &["--change-log", "3"]);
    wait_applied(&frontends, newest).await;
    for f in &frontends {
        let stats = f.stats().await.unwrap();
        assert_eq!(
            stats.main_cache.items + stats.hot_cache.items,
            0,
            "a lost gap empties the caches: {stats:?}"
        );
    }
    assert_eq!(values_everywhere(&frontends, "foo").await, ["two"; 3]);
    drop(back);
}

#[tokio::test(flavor = "multi_thread")]
async fn randomized_writers_and_readers_never_read_older_than_what_every_frontend_applied() {
    let t = Topology::start(3, Duration::from_millis(2), following)
        .await
        .unwrap();
    let keys: Vec<String> = (0..50).map(|i| format!("key{i}")).collect();
    // Every write, by version: its key and value.
    let writes: Arc<Mutex<HashMap<u64, (String, String)>>> = Arc::default();
    for key in &keys {
        let v =
            t.db.set(key, Bytes::from(format!("{key}@start")))
                .await
                .unwrap();
        writes
            .lock()
            .unwrap()
            .insert(v, (key.clone(), format!("{key}@start")));
    }
    let start = t.db.stats().await.unwrap().version;
    wait_applied(&t.frontends, start).await;

    let writers = (0..4).map(|w| {
        let (db, keys, writes) = (t.db.clone(), keys.clone(), writes.clone());
        tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(w);
            for i in 0..60 {
                let key = &keys[rng.usize(..keys.len())];
                let value = format!("{key}@w{w}-{i}");
                let v = db.set(key, Bytes::from(value.clone())).await.unwrap();
                writes.lock().unwrap().insert(v, (key.clone(), value));
            }
        })
    });
    // Each read: (key, the version every frontend had applied before it, its answer).
    type Read = (String, u64, u64, String);
    let readers = (0..16).map(|r| {
        let (frontends, keys) = (t.frontends.clone(), keys.clone());
        tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(100 + r);
            let mut reads: Vec<Read> = Vec::new();
            for _ in 0..40 {
                let mut floor = u64::MAX;
                for f in &frontends {
                    floor = floor.min(f.applied(0, Duration::ZERO).await.unwrap().applied);
                }
                let key = keys[rng.usize(..keys.len())].clone();
                let f = &frontends[rng.usize(..frontends.len())];
                let got = f.cget(&key).await.unwrap().expect("every key exists");
                let value = String::from_utf8_lossy(&got.value).into_owned();
                reads.push((key, floor, got.version, value));
            }
            reads
        })
    });
    let readers: Vec<_> = readers.collect();
    for w in writers {
        w.await.unwrap();
    }
    let mut all_reads = Vec::new();
    for r in readers {
        all_reads.extend(r.await.unwrap());
    }
    let mut stale = Vec::new();
    let mut count = 0;
    let writes = std::mem::take(&mut *writes.lock().unwrap());
    {
        for (key, floor, version, value) in all_reads {
            count += 1;
            // The newest write of this key that every frontend had applied before the read.
            let due = writes
                .iter()
                .filter(|(v, (k, _))| **v <= floor && *k == key)
                .map(|(v, _)| *v)
                .max()
                .unwrap_or(0);
            let written = writes.get(&version).map(|(_, value)| value.as_str());
            assert_eq!(
                written,
                Some(value.as_str()),
                "{key} v{version} has the value written"
            );
            if version < due {
                stale.push(format!(
                    "{key}: read v{version}, but v{due} was applied everywhere"
                ));
            }
        }
    }
    assert_eq!(count, 16 * 40);
    assert_eq!(stale, Vec::<String>::new(), "stale reads");
    t.stop().await;
}

#[tokio::test]
async fn a_since_that_is_not_a_number_gets_400_with_the_reason_and_one_ahead_gets_410() {
    let t = Topology::start(1, Duration::ZERO, |_| {}).await.unwrap();
    let url = format!("http://{}/changes?since=abc", t.db_addr());
    let answer = reqwest::get(url).await.unwrap();
    assert_eq!(answer.status(), 400);
    let body = answer.text().await.unwrap();
    assert!(body.contains("since=\"abc\" is not a version"), "{body}");
    let answer = reqwest::get(format!("http://{}/changes?since=99", t.db_addr()))
        .await
        .unwrap();
    assert_eq!(answer.status(), 410);
    let body = answer.text().await.unwrap();
    assert!(
        body.contains("v99 is ahead of this store, which is at v0"),
        "{body}"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_that_never_reads_is_dropped_and_does_not_hold_up_sets() {
    let data = tempfile::tempdir().unwrap();
    let store = gclab::store::Store::open(data.path(), Duration::ZERO, 100_000)
        .unwrap()
        .with_follower_queue(8);
    let store = Arc::new(store);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = gclab::dbserver::Config::new(1 << 20, TIMEOUT, Duration::ZERO);
    tokio::spawn(gclab::dbserver::run(
        listener,
        store.clone(),
        config,
        std::future::pending(),
    ));
    // The stuck follower: asks for the stream with a small receive buffer, and never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = socket.connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stuck, b"GET /changes HTTP/1.1\r\nhost: db\r\n\r\n")
        .await
        .unwrap();
    let db = DbClient::new(&addr.to_string(), TIMEOUT);
    while store.stats().followers < 1 {
        tokio::task::yield_now().await;
    }
    let n: u64 = 3000;
    // Long keys, so the stuck follower's socket buffers fill after a few hundred changes.
    let acknowledged: Vec<_> = futures::stream::iter(0..n)
        .map(|i| {
            let db = db.clone();
            async move {
                let key = format!("{i:0>240}");
                db.set(&key, Bytes::from_static(b"v")).await
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(acknowledged.iter().all(Result::is_ok));
    let stats = store.stats();
    assert_eq!(stats.sets, n);
    assert_eq!(stats.followers_dropped, 1, "{stats:?}");
    assert_eq!(stats.followers, 0, "{stats:?}");
    drop(stuck);
}

#[tokio::test]
async fn a_cached_value_carries_its_version_as_etag_and_if_none_match_gets_304() {
    let t = Topology::start(1, Duration::ZERO, |_| {}).await.unwrap();
    let v = t.db.set("foo", Bytes::from_static(b"bar")).await.unwrap();
    let url = format!("http://{}/cache/foo", t.http_addr(0));
    let answer = reqwest::get(&url).await.unwrap();
    assert_eq!(answer.headers()["etag"], format!("\"v{v}\"").as_str());
    let client = reqwest::Client::new();
    let again = client
        .get(&url)
        .header("if-none-match", format!("\"v{v}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.bytes().await.unwrap().len(), 0);
    let other = client
        .get(&url)
        .header("if-none-match", "\"v999\"")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    assert_eq!(other.text().await.unwrap(), "bar");
    t.stop().await;
}

/// A dbserver on port 0 whose connections stay open for an hour when idle, so that stepping
/// the clock does not close them.
async fn patient_dbserver() -> (DbClient, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let store = gclab::store::Store::open(data.path(), Duration::ZERO, 100).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let hour = Duration::from_secs(3600);
    let config = gclab::dbserver::Config::new(1 << 20, hour, Duration::ZERO);
    tokio::spawn(gclab::dbserver::run(
        listener,
        Arc::new(store),
        config,
        std::future::pending(),
    ));
    (DbClient::new(&addr, TIMEOUT), data)
}

/// Current-thread runtime, so the clock can be paused and stepped past the TTL.
#[tokio::test]
async fn with_a_ttl_an_old_entry_is_reloaded_once_however_many_ask() {
    let (db, _data) = patient_dbserver().await;
    let f = lone_frontend(db.addr(), |c| {
        c.group.follow_changes = false;
        c.group.ttl = Some(Duration::from_secs(30));
        c.client_timeout = Duration::from_secs(3600);
    })
    .await;
    db.set("foo", Bytes::from_static(b"bar")).await.unwrap();
    f.cget("foo").await.unwrap();
    f.cget("foo").await.unwrap();
    assert_eq!(f.stats().await.unwrap().local_loads, 1);

    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(26)).await; // under 30 s less 10% jitter
    tokio::time::resume();
    f.cget("foo").await.unwrap();
    assert_eq!(f.stats().await.unwrap().local_loads, 1, "not yet expired");

    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(5)).await; // 31 s: past the TTL
    tokio::time::resume();
    let herd: Vec<_> = futures::future::join_all((0..50).map(|_| f.cget("foo"))).await;
    for answer in herd {
        assert_eq!(answer.unwrap().unwrap().value, "bar");
    }
    assert_eq!(
        f.stats().await.unwrap().local_loads,
        2,
        "one reload for fifty gets"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_set_says_how_many_frontends_saw_the_write_and_del_removes_a_key() {
    let t = Topology::start(3, Duration::ZERO, following).await.unwrap();
    let frontends = (0..3)
        .map(|i| t.http_addr(i).to_owned())
        .collect::<Vec<_>>()
        .join(",");
    let run = |args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || {
            gclab()
                .env("GCLAB_EXPLAIN", "1")
                .args(&args)
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    let db = t.db_addr().to_owned();
    let words = |line: &str| line.split(' ').map(str::to_owned).collect::<Vec<_>>();
    let set = run(words(&format!(
        "cli set --key foo --value bar --db {db} --frontends {frontends}"
    )))
    .await;
    let said = String::from_utf8_lossy(&set.stderr);
    let pattern =
        regex::Regex::new(r"^stored foo v1 · [0-9.]+ ms · seen by 3/3 frontends in [0-9.]+ ms\n$")
            .unwrap();
    assert!(pattern.is_match(&said), "{said:?}");

    let del = run(words(&format!(
        "cli -del -key foo -db {db} -frontends {frontends}"
    )))
    .await;
    let said = String::from_utf8_lossy(&del.stderr);
    assert!(said.starts_with("deleted foo v2 · "), "{said:?}");
    assert!(said.contains("seen by 3/3 frontends"), "{said:?}");
    assert_eq!(t.db.get("foo").await.unwrap(), None);

    let again = run(words(&format!("cli del --key foo --db {db} --frontends "))).await;
    assert_eq!(again.status.code(), Some(1));
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("no such key: \"foo\""), "{said:?}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_set_against_frontends_that_do_not_follow_says_only_the_version() {
    let t = Topology::start(2, Duration::ZERO, |_| {}).await.unwrap();
    let frontends = format!("{},{}", t.http_addr(0), t.http_addr(1));
    let db = t.db_addr().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        gclab()
            .env("GCLAB_EXPLAIN", "1")
            .args(["cli", "set", "--key", "foo", "--value", "bar", "--db", &db])
            .args(["--frontends", &frontends])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    let pattern = regex::Regex::new(r"^stored foo v1 · [0-9.]+ ms\n$").unwrap();
    assert!(pattern.is_match(&said), "{said:?}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ttl_of_centuries_means_never_and_does_not_overflow() {
    let (db, _data) = patient_dbserver().await;
    let f = lone_frontend(db.addr(), |c| {
        c.group.follow_changes = false;
        c.group.ttl = Some(Duration::MAX);
    })
    .await;
    db.set("foo", Bytes::from_static(b"bar")).await.unwrap();
    assert_eq!(f.cget("foo").await.unwrap().unwrap().source, "db");
    assert_eq!(f.cget("foo").await.unwrap().unwrap().source, "main");
}
