//! Membership that changes: `--peers-from file:` and `dns:`, nodes that disagree about the
//! peers for a while, and the warm hand-off when a node joins.
//!
//! Every frontend here is in-process, on listeners bound to port 0; the DNS test starts
//! Debian's `dnsmasq` on a loopback port (it skips with a notice where dnsmasq is missing,
//! and fails on CI, which installs it).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use gclab::client::{DbClient, FrontendClient};
use gclab::frontend;
use gclab::membership::{Follow, Source};
use tokio::net::TcpListener;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A frontend started in-process; `peers` decides its list (or `follow` finds it).
struct Node {
    me: String,
    client: FrontendClient,
}

async fn start_node(
    ip: &str,
    db: &str,
    peers: impl FnOnce(&str) -> Vec<String>,
    tweak: impl FnOnce(&mut frontend::Config),
) -> Node {
    let peer_listener = TcpListener::bind((ip, 0)).await.unwrap();
    let http_listener = TcpListener::bind((ip, 0)).await.unwrap();
    let me = peer_listener.local_addr().unwrap().to_string();
    let http = http_listener.local_addr().unwrap().to_string();
    let mut config = common::frontend_config(&me, peers(&me), db);
    tweak(&mut config);
    tokio::spawn(frontend::run(
        peer_listener,
        http_listener,
        config,
        std::future::pending(),
    ));
    Node {
        me,
        client: FrontendClient::new(&http, TIMEOUT),
    }
}

/// Binds both of a node's listeners now, so that its peer address is known before the
/// node starts (a membership file or a DNS record names it first).
async fn listeners(ip: &str) -> (TcpListener, TcpListener, String) {
    let peer = TcpListener::bind((ip, 0)).await.unwrap();
    let http = TcpListener::bind((ip, 0)).await.unwrap();
    let me = peer.local_addr().unwrap().to_string();
    (peer, http, me)
}

/// Waits (bounded) until `node` knows exactly `peers`.
async fn until_peers(node: &FrontendClient, peers: &[String]) {
    let mut want = peers.to_vec();
    want.sort();
    for _ in 0..200 {
        if node.stats().await.unwrap().peers == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{} never came to know {want:?}; it knows {:?}",
        node.addr(),
        node.stats().await.unwrap().peers
    );
}

/// A frontend's config whose deadlines no herd here may reach: a request that waited on one
/// would fail its test's bound, and count a peer error.
fn patient(me: &str, peers: Vec<String>, db: &str) -> gclab::frontend::Config {
    let mut config = common::frontend_config(me, peers, db);
    config.group.db_timeout = Duration::from_secs(30);
    config.group.peer_timeout = Duration::from_secs(60);
    config
}

async fn db_reads(db: &DbClient) -> u64 {
    db.stats().await.unwrap().gets
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_given_a_fourth_peer_the_others_lack_stalls_no_herd() {
    // The dbserver waits 100 ms per read, so that concurrent gets really overlap.
    let topology = common::start(0, Duration::from_millis(100), |_| {}).await;
    let db_addr = topology.db_addr().to_owned();
    let db = DbClient::new(&db_addr, TIMEOUT);
    let ls: Vec<_> = futures::future::join_all((0..4).map(|_| listeners("127.0.0.1"))).await;
    let names: Vec<String> = ls.iter().map(|(_, _, me)| me.clone()).collect();
    let three = names[..3].to_vec();
    let mut clients = Vec::new();
    for (i, (peer, http, me)) in ls.into_iter().enumerate() {
        // Node 0 and the fourth know all four; nodes 1 and 2 know only the first three.
        let peers = if i == 0 || i == 3 {
            names.clone()
        } else {
            three.clone()
        };
        let config = patient(&me, peers, &db_addr);
        clients.push(FrontendClient::new(
            &http.local_addr().unwrap().to_string(),
            TIMEOUT,
        ));
        tokio::spawn(frontend::run(peer, http, config, std::future::pending()));
    }
    // Keys the two lists disagree on: the fourth owns them in its own view.
    let mut keys = Vec::new();
    for i in 0.. {
        let key = format!("disputed{i}");
        if clients[0].owner(&key).await.unwrap().owner == names[3] {
            keys.push(key);
        }
        if keys.len() == 5 {
            break;
        }
    }
    for key in &keys {
        db.set(key, Bytes::from(format!("value of {key}")))
            .await
            .unwrap();
    }
    let before = db_reads(&db).await;
    let herd = futures::future::join_all((0..400).map(|i| {
        let client = &clients[i % 4];
        let key = &keys[i % keys.len()];
        async move { (key, client.cget(key).await) }
    }));
    let answers = tokio::time::timeout(Duration::from_secs(20), herd)
        .await
        .expect("the herd did not finish within 20 s: a request waited on a peer");
    for (key, answer) in answers {
        let cached = answer.unwrap().unwrap();
        assert_eq!(cached.value, Bytes::from(format!("value of {key}")));
    }
    let reads = db_reads(&db).await - before;
    assert!(
        reads <= 2 * keys.len() as u64,
        "{reads} database reads for {} keys",
        keys.len()
    );
    for client in &clients {
        let stats = client.stats().await.unwrap();
        assert_eq!(stats.peer_errors, 0, "{stats:?}");
        assert_eq!(stats.failovers, 0, "{stats:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_each_naming_the_other_owner_do_not_wait_on_each_other() {
    // The wait-for cycle `group::load` describes: node 0 is `localhost:P` to node 1 but
    // `127.0.0.1:P` to itself, so the two rank the peers differently, and for some keys
    // each thinks the other owns it. With one map of flights, a get at each of them at
    // once waited until --peer-timeout.
    let topology = common::start(0, Duration::from_millis(200), |_| {}).await;
    let db_addr = topology.db_addr().to_owned();
    let db = DbClient::new(&db_addr, TIMEOUT);
    let (peer0, http0, me0) = listeners("127.0.0.1").await;
    let (peer1, http1, me1) = listeners("127.0.0.1").await;
    let alias0 = me0.replace("127.0.0.1", "localhost");
    let mut clients = Vec::new();
    for (peer, http, me, peers) in [
        (peer0, http0, me0.clone(), vec![me0.clone(), me1.clone()]),
        (peer1, http1, me1.clone(), vec![alias0.clone(), me1.clone()]),
    ] {
        let config = patient(&me, peers, &db_addr);
        clients.push(FrontendClient::new(
            &http.local_addr().unwrap().to_string(),
            TIMEOUT,
        ));
        tokio::spawn(frontend::run(peer, http, config, std::future::pending()));
    }
    let mut key = String::new();
    for i in 0.. {
        key = format!("crossed{i}");
        let (owner0, owner1) = (
            clients[0].owner(&key).await.unwrap().owner,
            clients[1].owner(&key).await.unwrap().owner,
        );
        if owner0 == me1 && owner1 == alias0 {
            break;
        }
    }
    db.set(&key, Bytes::from_static(b"crossed")).await.unwrap();
    let before = db_reads(&db).await;
    let herd = futures::future::join_all((0..200).map(|i| clients[i % 2].cget(&key)));
    let answers = tokio::time::timeout(Duration::from_secs(20), herd)
        .await
        .expect("the two nodes waited on each other");
    for answer in answers {
        assert_eq!(
            answer.unwrap().unwrap().value,
            Bytes::from_static(b"crossed")
        );
    }
    let reads = db_reads(&db).await - before;
    assert!((1..=2).contains(&reads), "{reads} database reads");
    for client in &clients {
        let stats = client.stats().await.unwrap();
        assert_eq!(stats.peer_errors, 0, "{stats:?}");
    }
}

/// Writes the membership file: one peer per line.
fn write_peers(path: &Path, peers: &[String]) {
    std::fs::write(path, peers.join("\n") + "\n").unwrap();
}

/// A thousand warm keys over three nodes, then a fourth joins through the membership file:
/// how many database reads does reading them all again cost?
async fn reads_after_a_fourth_node_joins(handoff: bool) -> (u64, usize, Vec<FrontendClient>) {
    let topology = common::start(0, Duration::ZERO, |_| {}).await;
    let db_addr = topology.db_addr().to_owned();
    let db = DbClient::new(&db_addr, TIMEOUT);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("peers.txt");
    let ls: Vec<_> = futures::future::join_all((0..4).map(|_| listeners("127.0.0.1"))).await;
    let names: Vec<String> = ls.iter().map(|(_, _, me)| me.clone()).collect();
    write_peers(&file, &names[..3]);
    let mut clients = Vec::new();
    for (peer, http, me) in ls {
        let mut config = common::frontend_config(&me, vec![me.clone()], &db_addr);
        config.group.handoff = handoff;
        config.group.cache_bytes = 16 << 20;
        config.membership = Some(Follow {
            source: Source::File(file.clone()),
            every: Duration::from_millis(100),
            dns_server: None,
        });
        clients.push(FrontendClient::new(
            &http.local_addr().unwrap().to_string(),
            TIMEOUT,
        ));
        tokio::spawn(frontend::run(peer, http, config, std::future::pending()));
    }
    for client in &clients {
        until_peers(client, &names[..3]).await;
    }
    let keys: Vec<String> = (0..1000).map(|i| format!("warm{i}")).collect();
    for key in &keys {
        db.set(key, Bytes::from(key.clone())).await.unwrap();
    }
    // Warm: every key read once through node 0, so its owner (of three) caches it.
    for key in &keys {
        clients[0].cget(key).await.unwrap().unwrap();
    }
    let moving = {
        let mut moving = 0;
        for key in &keys {
            let now = clients[0].owner(key).await.unwrap().owner;
            let four = gclab::ring::Ring::new(names.iter().cloned());
            if four.owner(key) != now {
                moving += 1;
            }
        }
        moving
    };
    write_peers(&file, &names);
    for client in &clients {
        until_peers(client, &names).await;
    }
    // Read again through the newcomer, which has nothing cached: each key it now owns is
    // a load there, and each key it does not is a call to its owner.
    let before = db_reads(&db).await;
    for key in &keys {
        let got = clients[3].cget(key).await.unwrap().unwrap();
        assert_eq!(got.value, Bytes::from(key.clone()));
    }
    let reads = db_reads(&db).await - before;
    drop(dir);
    (reads, moving, clients)
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_hand_off_a_joining_node_takes_over_warm_keys_without_a_database_read() {
    let (reads, moving, clients) = reads_after_a_fourth_node_joins(true).await;
    assert!((150..=350).contains(&moving), "{moving} of 1000 keys moved");
    assert_eq!(reads, 0, "database reads after the fourth node joined");
    let fourth = clients[3].stats().await.unwrap();
    assert_eq!(fourth.peer_peeks as usize, moving, "{fourth:?}");
    assert_eq!(fourth.peer_peek_hits as usize, moving, "{fourth:?}");
    assert_eq!(fourth.local_loads, 0, "{fourth:?}");
    for client in &clients {
        let stats = client.stats().await.unwrap();
        // Three peers found at the start, then four: one change (the fourth node, too,
        // started from the three that did not list it).
        assert_eq!(stats.membership_changes, 1, "{stats:?}");
        assert_eq!(stats.peers.len(), 4, "{stats:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_hand_off_every_key_that_moved_is_read_again() {
    let (reads, moving, clients) = reads_after_a_fourth_node_joins(false).await;
    assert!((150..=350).contains(&moving), "{moving} of 1000 keys moved");
    assert_eq!(
        reads as usize, moving,
        "database reads after the fourth node joined"
    );
    let fourth = clients[3].stats().await.unwrap();
    assert_eq!(fourth.peer_peeks, 0, "{fourth:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_the_file_does_not_list_yet_owns_nothing_and_asks_the_listed_peers() {
    let topology = common::start(0, Duration::ZERO, |_| {}).await;
    let db_addr = topology.db_addr().to_owned();
    let db = DbClient::new(&db_addr, TIMEOUT);
    let listed = start_node("127.0.0.1", &db_addr, |me| vec![me.to_owned()], |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("peers.txt");
    write_peers(&file, std::slice::from_ref(&listed.me));
    let file_for_node = file.clone();
    let newcomer = start_node(
        "127.0.0.1",
        &db_addr,
        |me| vec![me.to_owned()],
        move |config| {
            config.membership = Some(Follow {
                source: Source::File(file_for_node),
                every: Duration::from_millis(100),
                dns_server: None,
            });
        },
    )
    .await;
    until_peers(&newcomer.client, std::slice::from_ref(&listed.me)).await;
    db.set("k", Bytes::from_static(b"v")).await.unwrap();
    let got = newcomer.client.cget("k").await.unwrap().unwrap();
    assert_eq!(got.owner, listed.me);
    assert_eq!(got.source.as_str(), "peer");
    assert_eq!(newcomer.client.stats().await.unwrap().local_loads, 0);
    // A membership file that cannot be read keeps the peers the node has.
    std::fs::remove_file(&file).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = newcomer.client.stats().await.unwrap();
    assert_eq!(stats.peers, std::slice::from_ref(&listed.me), "{stats:?}");
    assert_eq!(
        stats.membership_changes, 0,
        "the first list found is no change: {stats:?}"
    );
}

/// dnsmasq, serving `name` from a hosts file on a loopback port; stopped on drop.
struct Dnsmasq {
    child: std::process::Child,
    hosts: PathBuf,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Dnsmasq {
    fn start(name: &str, ips: &[&str]) -> Option<Dnsmasq> {
        let Ok(path) = which("dnsmasq") else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "dnsmasq is not installed; .ci/run installs dnsmasq-base"
            );
            eprintln!("skipping: needs dnsmasq (Debian's dnsmasq-base)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        // dnsmasq reads the file as the user it drops to; let everyone read the dir.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let hosts = dir.path().join("hosts");
        let port = {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.local_addr().unwrap().port()
        };
        write_hosts(&hosts, name, ips);
        let pid_file = dir.path().join("pid");
        let dns = Dnsmasq {
            child: std::process::Command::new(path)
                .args([
                    "--keep-in-foreground",
                    "--conf-file=/dev/null",
                    "--no-resolv",
                ])
                .args([
                    "--no-hosts",
                    "--bind-interfaces",
                    "--listen-address=127.0.0.1",
                ])
                .arg(format!("--port={port}"))
                .arg(format!("--addn-hosts={}", hosts.display()))
                .arg(format!("--pid-file={}", pid_file.display()))
                .arg("--local-ttl=0")
                .arg(format!("--user={}", whoami()))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap(),
            hosts,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        };
        // dnsmasq writes its pid file once its signal handlers are set: before that, the
        // SIGHUP of `serve` would end it.
        for _ in 0..100 {
            if pid_file.exists() {
                return Some(dns);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("dnsmasq did not start within 2 s");
    }

    /// Makes `name` resolve to `ips`, and tells dnsmasq to read its hosts file again.
    fn serve(&self, name: &str, ips: &[&str]) {
        write_hosts(&self.hosts, name, ips);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap();
    }
}

/// A hosts file in which `name` has the addresses `ips`, readable by everyone.
fn write_hosts(path: &Path, name: &str, ips: &[&str]) {
    let lines: String = ips.iter().map(|ip| format!("{ip} {name}\n")).collect();
    std::fs::write(path, lines).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(program: &str) -> Result<PathBuf, ()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .ok_or(())
}

/// The user this test runs as, for dnsmasq to stay (it drops to `nobody` otherwise).
fn whoami() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn peers_from_dns_follow_the_names_addresses_without_a_restart() {
    const NAME: &str = "peers.gclab.test";
    // Addresses of 127.0.0.0/8 with one port, like the pods of a headless service. The
    // name starts with two, so that the node's first look (alone → two) can be told apart.
    let (peer, http, me) = listeners("127.0.0.21").await;
    let port: u16 = me.rsplit_once(':').unwrap().1.parse().unwrap();
    let [second, third] = ["127.0.0.22", "127.0.0.23"].map(|ip| format!("{ip}:{port}"));
    let Some(dns) = Dnsmasq::start(NAME, &["127.0.0.21", "127.0.0.22"]) else {
        return;
    };
    let topology = common::start(0, Duration::ZERO, |_| {}).await;
    let mut config = common::frontend_config(&me, vec![me.clone()], topology.db_addr());
    config.membership = Some(Follow {
        source: Source::Dns {
            name: NAME.to_owned(),
            port,
        },
        every: Duration::from_millis(200),
        dns_server: Some(dns.addr),
    });
    let client = FrontendClient::new(&http.local_addr().unwrap().to_string(), TIMEOUT);
    tokio::spawn(frontend::run(peer, http, config, std::future::pending()));
    until_peers(&client, &[me.clone(), second.clone()]).await;
    assert_eq!(client.stats().await.unwrap().membership_changes, 0);

    dns.serve(NAME, &["127.0.0.21", "127.0.0.22", "127.0.0.23"]);
    let three = [me.clone(), second.clone(), third.clone()];
    until_peers(&client, &three).await;
    let stats = client.stats().await.unwrap();
    assert_eq!(stats.membership_changes, 1, "{stats:?}");
    // The ring is the new one: some key is now owned by the address that appeared.
    let mut moved = None;
    for i in 0..100 {
        let ownership = client.owner(&format!("k{i}")).await.unwrap();
        assert_eq!(ownership.peers, three);
        if ownership.owner == third {
            moved = Some(i);
            break;
        }
    }
    assert!(moved.is_some(), "no key of 100 moved to {third}");

    dns.serve(NAME, &["127.0.0.21"]);
    until_peers(&client, std::slice::from_ref(&me)).await;
    assert_eq!(client.stats().await.unwrap().membership_changes, 2);
}
