//! Breaking it on purpose: fault rules set through `gclab cli fault`, the checker of
//! `--check`, and `gclab cli chaos`. Counts are asserted, never timings.

mod common;

use std::convert::Infallible;
use std::os::unix::process::CommandExt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{gclab, key_owned_by, start, Topology};
use gclab::client::FrontendClient;
use gclab::peers::PeerTransport;
use gclab::stats::NodeStats;
use warp::Filter;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Every frontend's HTTP address, for `--frontends`.
fn frontends(t: &Topology) -> String {
    (0..t.frontends.len())
        .map(|i| t.http_addr(i).to_owned())
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs `gclab cli …` with `args`, then `--frontends` naming `t`'s frontends; returns the
/// exit code and stdout + stderr.
async fn cli(t: &Topology, args: &[&str]) -> (i32, String) {
    let mut all: Vec<String> = vec!["cli".to_owned()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    all.extend(["--frontends".to_owned(), frontends(t)]);
    let out = tokio::task::spawn_blocking(move || gclab().args(&all).output().unwrap())
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

async fn stats(t: &Topology, i: usize) -> NodeStats {
    t.frontends[i].stats().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_one_way_partition_makes_the_owners_peers_fail_over_while_the_owners_own_asks_succeed() {
    one_way_partition(PeerTransport::Tarpc).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_one_way_partition_does_the_same_on_the_http_transport() {
    one_way_partition(PeerTransport::Http).await;
}

/// A fault rule acts in the peer client, before the call leaves, whichever wire it takes.
async fn one_way_partition(transport: PeerTransport) {
    let t = start(3, Duration::from_millis(20), |c| {
        c.group.peer_transport = transport;
    })
    .await;
    let of_0 = key_owned_by(&t, 0, "cut").await;
    let of_1 = key_owned_by(&t, 1, "cut").await;

    let (code, out) = cli(&t, &["fault", "partition", &t.peers[0]]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("set: partition: calls to").count(), 2, "{out}");

    // 1 cannot reach 0, so it loads 0's key another way; 0 is never asked.
    let got = t.frontends[1].cget(&of_0).await.unwrap().unwrap();
    assert_eq!(got.value, format!("value of {of_0}"));
    let (s0, s1) = (stats(&t, 0).await, stats(&t, 1).await);
    assert_eq!(s1.faults.partitioned, 1);
    assert_eq!(s1.failovers, 1);
    assert_eq!(s0.server_requests, 0);

    // One-way: 0 still asks 1, its key's owner, and gets the answer.
    let got = t.frontends[0].cget(&of_1).await.unwrap().unwrap();
    assert_eq!(
        (got.source.as_str(), got.value),
        ("peer", Bytes::from(format!("value of {of_1}")))
    );
    let s0 = stats(&t, 0).await;
    assert_eq!(
        (s0.peer_loads, s0.failovers, s0.faults.partitioned),
        (1, 0, 0)
    );

    // Healed, 1 asks 0 again at once: no back-off left over from the partition.
    let (code, out) = cli(&t, &["fault", "heal"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("healed: partition").count(), 2, "{out}");
    let fresh = key_owned_by(&t, 0, "healed").await;
    let got = t.frontends[1].cget(&fresh).await.unwrap().unwrap();
    assert_eq!(got.source, "peer");
    assert_eq!(stats(&t, 0).await.server_requests, 1);
    assert_eq!(stats(&t, 1).await.faults.rules, 0);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_kind_of_fault_moves_its_own_counter() {
    // Short deadlines, so that a stalled call gives up quickly.
    let t = start(3, Duration::from_millis(20), |c| {
        c.group.db_timeout = Duration::from_millis(500);
        c.group.peer_timeout = Duration::from_millis(800);
    })
    .await;
    let owner = t.peers[0].clone();

    // delay: the call waits, then is answered by the owner.
    cli(&t, &["fault", "delay", &owner, "30ms", "--jitter", "5ms"]).await;
    let key = key_owned_by(&t, 0, "delay").await;
    assert_eq!(
        t.frontends[1].cget(&key).await.unwrap().unwrap().source,
        "peer"
    );
    assert_eq!(stats(&t, 1).await.faults.delayed, 1);
    cli(&t, &["fault", "heal", &owner]).await;

    // drop 100%: the call fails at once, and 1 fails over.
    cli(&t, &["fault", "drop", &owner, "100%"]).await;
    let key = key_owned_by(&t, 0, "drop").await;
    assert!(t.frontends[1].cget(&key).await.unwrap().is_some());
    let s1 = stats(&t, 1).await;
    assert_eq!((s1.faults.dropped, s1.failovers), (1, 1));
    cli(&t, &["fault", "heal"]).await;

    // stall: no answer until --peer-timeout; then 1 fails over.
    cli(&t, &["fault", "stall", &owner, "--from", t.http_addr(1)]).await;
    let key = key_owned_by(&t, 0, "stall").await;
    let got = t.frontends[1].cget(&key).await.unwrap().unwrap();
    assert_eq!(got.value, format!("value of {key}"));
    let s1 = stats(&t, 1).await;
    assert_eq!((s1.faults.stalled, s1.failovers), (1, 2));
    assert_eq!(stats(&t, 2).await.faults.rules, 0, "--from named only 1");

    // db-delay: the owner's own read waits, and is still answered.
    cli(&t, &["fault", "db-delay", &owner, "50ms"]).await;
    let key = key_owned_by(&t, 0, "dbdelay").await;
    assert_eq!(
        t.frontends[0].cget(&key).await.unwrap().unwrap().source,
        "db"
    );
    assert_eq!(stats(&t, 0).await.faults.db_delayed, 1);

    // The counters are on /metrics and in `cli stats` too.
    let metrics = reqwest::get(format!("http://{}/metrics", t.http_addr(1)))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("gclab_faulted_calls_total{fault=\"stall\"} 1"),
        "{metrics}"
    );
    let (code, table) = cli(&t, &["stats", "--db", t.db_addr()]).await;
    assert_eq!(code, 0, "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("faults.stalled"))
        .unwrap();
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["faults.stalled", "0", "1", "0"]
    );

    let (_, list) = cli(&t, &["fault", "list"]).await;
    assert!(
        list.contains("db-delay: dbserver reads wait 50 ms"),
        "{list}"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_fault_commands_exit_2_with_the_reason() {
    let t = start(3, Duration::from_millis(1), |_| {}).await;
    let node = t.peers[0].clone();
    for (args, reason) in [
        (
            vec!["drop", &node, "150%"],
            "150% is not a share between 0% and 100%",
        ),
        (vec!["drop", &node, "many"], "is not a percentage"),
        (vec!["delay", &node, "-5s"], "a duration cannot be negative"),
        (
            vec!["delay", &node, "2h"],
            "over an hour is not a delay but an outage",
        ),
        (
            vec!["stall", "127.0.0.1:1"],
            "unknown node 127.0.0.1:1: the frontends are",
        ),
        (
            vec!["partition", &node, "--from", &node],
            "cannot be cut off from itself",
        ),
    ] {
        let mut all = vec!["fault"];
        all.extend(args.iter().copied());
        let (code, out) = cli(&t, &all).await;
        assert_eq!(code, 2, "{all:?}: {out}");
        assert!(out.contains(reason), "{all:?}: {out}");
    }
    for i in 0..3 {
        assert_eq!(stats(&t, i).await.faults.rules, 0);
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_rules_are_refused_to_anyone_but_loopback() {
    // This machine's own address on its way out, if it has one (a UDP connect sends nothing).
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    let own = probe
        .connect("192.0.2.1:9")
        .and_then(|()| probe.local_addr())
        .map(|a| a.ip())
        .ok();
    let Some(ip) = own.filter(|ip| !ip.is_loopback() && !ip.is_unspecified()) else {
        eprintln!("skipped: this machine has no address but loopback to send from");
        return;
    };
    let t = start(1, Duration::from_millis(1), |_| {}).await;
    // A second frontend, its client port on that address, peering with nobody but itself.
    let peer = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let http_addr = http.local_addr().unwrap();
    let me = peer.local_addr().unwrap().to_string();
    let config = common::frontend_config(&me, vec![me.clone()], t.db_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gclab::frontend::run(peer, http, config, async {
        let _ = stopped.await;
    }));
    let rule = serde_json::json!({"about": me, "to": null, "kind": "db-delay", "ms": 10});
    let answer = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("http://{http_addr}/faults"))
        .body(rule.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 403);
    let body = answer.text().await.unwrap();
    assert!(body.contains("from this machine only (loopback)"), "{body}");
    let client = FrontendClient::new(&http_addr.to_string(), TIMEOUT);
    assert_eq!(client.stats().await.unwrap().faults.rules, 0);
    drop(stop);
    server.await.unwrap().unwrap();
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn herd_check_is_valid_on_a_correct_topology() {
    let t = start(3, Duration::from_millis(50), |_| {}).await;
    let (code, out) = cli(
        &t,
        &["herd", "--requests", "300", "--check", "--db", t.db_addr()],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("check: valid"), "{out}");
    assert!(out.contains("300 right, 0 wrong, 0 errors"), "{out}");
    assert!(out.contains("1 reads ≤"), "{out}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn herd_check_holds_a_run_without_singleflight_to_the_singleflight_bound_and_names_the_key() {
    let t = start(3, Duration::from_millis(50), |c| {
        c.group.singleflight = false
    })
    .await;
    let (code, out) = cli(
        &t,
        &[
            "herd",
            "--requests",
            "300",
            "--check",
            "--json",
            "--db",
            t.db_addr(),
        ],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    let report: serde_json::Value =
        serde_json::from_str(out.lines().next().unwrap()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let key = report["key"].as_str().unwrap();
    let check = &report["check"];
    assert_eq!(check["valid"], false);
    let reads = report["db_reads"].as_u64().unwrap();
    assert!(reads > 1, "{out}");
    let examples = check["counterexamples"].as_array().unwrap();
    assert!(
        examples
            .iter()
            .any(|e| e.as_str().unwrap().contains(&format!(
                "{reads} database reads for the key ({key}), where the bound is 1"
            ))),
        "{out}"
    );
    t.stop().await;
}

/// A frontend that lies: it passes every request on to `real`, but answers `liar`'s
/// value wrong. It says it is a gclab frontend, as a buggy one would.
async fn lying_frontend(
    real: FrontendClient,
    liar: &'static str,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let real = Arc::new(real);
    let cache = {
        let real = real.clone();
        warp::path!("cache" / String).and_then(move |key: String| {
            let real = real.clone();
            async move {
                let got = real.cget(&key).await.unwrap().unwrap();
                let value = if key == liar {
                    Bytes::from_static(b"garbage")
                } else {
                    got.value
                };
                let mut response = warp::reply::Response::new(value.into());
                let headers = response.headers_mut();
                headers.insert("x-gclab-node", got.node.parse().unwrap());
                headers.insert("x-gclab-source", got.source.parse().unwrap());
                Ok::<_, Infallible>(response)
            }
        })
    };
    let stats = warp::path!("stats").and_then(move || {
        let real = real.clone();
        async move { Ok::<_, Infallible>(warp::reply::json(&real.stats().await.unwrap())) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let limits = gclab::http::Limits {
        header_timeout: TIMEOUT,
        request_timeout: TIMEOUT,
    };
    let routes = cache.or(stats).recover(gclab::http::recover);
    tokio::spawn(gclab::http::serve(
        listener,
        routes,
        limits,
        "gclab-frontend",
        async {
            let _ = stopped.await;
        },
    ));
    (addr, stop)
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_check_finds_the_one_key_a_lying_frontend_answers_wrong() {
    let t = start(1, Duration::from_millis(5), |_| {}).await;
    let (liar, stop) = lying_frontend(t.frontends[0].clone(), "key7").await;
    let args = [
        "cli",
        "bench",
        "--check",
        "--rate",
        "300",
        "--duration",
        "1s",
        "--keys",
        "10",
        "--frontends",
        &liar,
        "--db",
        t.db_addr(),
    ]
    .map(str::to_owned);
    let out = tokio::task::spawn_blocking(move || gclab().args(args).output().unwrap())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("check: INVALID"), "{text}");
    assert!(
        text.contains("✗ FAILS  every answer was the right value"),
        "{text}"
    );
    assert!(
        text.contains("counterexample: key7 answered \"garbage\""),
        "{text}"
    );
    // Only key7 is named: the other nine keys were answered right.
    assert!(!text.contains("counterexample: key1 "), "{text}");
    assert!(
        text.contains("✓ holds  the database was read no more"),
        "{text}"
    );
    drop(stop);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_seeded_chaos_run_on_a_correct_topology_is_valid_and_follows_its_seed() {
    let t = start(3, Duration::from_millis(20), |c| {
        c.group.db_timeout = Duration::from_millis(600);
        c.group.peer_timeout = Duration::from_millis(900);
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("chaos.svg");
    let svg_arg = svg.to_string_lossy().into_owned();
    let (code, out) = cli(
        &t,
        &[
            "chaos",
            "--seed",
            "11",
            "--duration",
            "6s",
            "--rate",
            "50",
            "--keys",
            "20",
            "--timeline",
            &svg_arg,
            "--json",
            "--db",
            t.db_addr(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value =
        serde_json::from_str(out.lines().next().unwrap()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(report["bench"]["check"]["valid"], true, "{out}");
    assert_eq!(report["bench"]["requests"], 300);
    // The run followed the schedule the seed draws, and the same seed draws it again.
    let drawn = gclab::cli::chaos::schedule(11, Duration::from_secs(6), 3, false);
    assert!(!drawn.is_empty());
    assert_eq!(report["schedule"], serde_json::to_value(&drawn).unwrap());
    assert_eq!(
        drawn,
        gclab::cli::chaos::schedule(11, Duration::from_secs(6), 3, false)
    );
    // Every rule was healed at the end.
    for i in 0..3 {
        assert_eq!(stats(&t, i).await.faults.rules, 0);
    }

    // The timeline: well-formed, one shaded band per fault, each labelled.
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let bands = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("fault"))
        .count();
    assert_eq!(bands, drawn.len());
    common::render_at_800_px(&svg);
    t.stop().await;
}

#[test]
// On a failed assertion the `Group` guard kills up's process group; up is waited for at the end.
#[allow(clippy::zombie_processes)]
fn a_chaos_run_under_up_restart_kills_a_frontend_sees_it_come_back_and_stays_valid() {
    use std::io::BufRead;
    let duration = Duration::from_secs(5);
    let is_kill = |s: &gclab::cli::chaos::Scheduled| s.fault == gclab::cli::chaos::Chaos::Kill;
    let seed = (0..)
        .find(|seed| {
            gclab::cli::chaos::schedule(*seed, duration, 3, true)
                .iter()
                .any(is_kill)
        })
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let base = common::free_block(4); // 3 frontends and the dbserver on base + 3
    let db = format!("127.0.0.1:{}", base + 3);
    let mut up = gclab()
        .args([
            "up",
            "--restart",
            "--quiet-hits",
            "--delay",
            "20ms",
            "--port",
        ])
        .arg(base.to_string())
        .args(["--db-addr", &db, "--data-dir"])
        .arg(data.path())
        .stdout(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    // Whatever fails below, up and its children go with the test, by process group.
    let _group = common::KillGroupOnDrop(up.id());
    let mut lines = std::io::BufReader::new(up.stdout.take().unwrap()).lines();
    let mut listening = 0;
    while listening < 4 {
        let line = lines.next().expect("up exited early").unwrap();
        if line.contains("listening on") || line.contains("clients on http://") {
            listening += 1;
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let frontends: Vec<String> = (0..3).map(|i| (base + 1000 + i).to_string()).collect();
    let svg = data.path().join("chaos.svg");
    let out = gclab()
        .args([
            "cli",
            "chaos",
            "--seed",
            &seed.to_string(),
            "--duration",
            "5s",
        ])
        .args([
            "--rate",
            "50",
            "--keys",
            "20",
            "--json",
            "--db",
            &db,
            "--frontends",
        ])
        .arg(frontends.join(","))
        .arg("--timeline")
        .arg(&svg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let report: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let schedule = report["schedule"].as_array().unwrap();
    assert!(
        schedule.iter().any(|s| s["fault"]["kind"] == "kill"),
        "{text}"
    );
    assert_eq!(report["bench"]["check"]["valid"], true, "{text}");
    let reads = report["bench"]["check"]["claims"][1]["detail"]
        .as_str()
        .unwrap();
    assert!(reads.contains("(1 + 1 restarts)"), "{reads}");
    let said: Vec<String> = rx.try_iter().collect();
    assert!(
        said.iter()
            .any(|l| l.contains("was killed (signal: 9 (SIGKILL)); starting it again")),
        "{said:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn healing_a_stall_lets_the_stalled_call_through_to_the_owner() {
    // The default deadlines (8 s for a peer call here): the heal comes long before.
    let t = start(3, Duration::from_millis(20), |_| {}).await;
    let key = key_owned_by(&t, 0, "held").await;
    cli(&t, &["fault", "stall", &t.peers[0]]).await;
    let asker = t.frontends[1].clone();
    let waiting = tokio::spawn({
        let key = key.clone();
        async move { asker.cget(&key).await }
    });
    // Heal once the call is known to be held (counted), not after some sleep.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while stats(&t, 1).await.faults.stalled == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the call was never stalled"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cli(&t, &["fault", "heal"]).await;
    let got = waiting.await.unwrap().unwrap().unwrap();
    assert_eq!(
        got.source, "peer",
        "the owner answered the call it had been kept from"
    );
    let s1 = stats(&t, 1).await;
    assert_eq!((s1.failovers, s1.peer_errors, s1.peer_loads), (0, 0, 1));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_draws_its_timeline_one_interval_after_another() {
    let t = start(1, Duration::from_millis(5), |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("run.svg");
    let svg_arg = svg.to_string_lossy().into_owned();
    let (code, out) = cli(
        &t,
        &[
            "bench",
            "--rate",
            "200",
            "--duration",
            "1s",
            "--keys",
            "5",
            "--timeline",
            &svg_arg,
            "--db",
            t.db_addr(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("timeline: {svg_arg}")), "{out}");
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let answers = doc
        .descendants()
        .find(|n| n.attribute("class") == Some("answers"))
        .expect("a group of bars");
    // Four quarter seconds of 50 requests each, every one answered: a bar (or more) each,
    // and the counts in their titles add up to the 200 requests.
    let counted: u64 = answers
        .descendants()
        .filter(|n| n.has_tag_name("title"))
        .map(|n| {
            n.text()
                .unwrap()
                .split_whitespace()
                .nth(2)
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(counted, 200, "{text}");
    assert_eq!(
        doc.descendants()
            .filter(|n| n.attribute("class") == Some("fault"))
            .count(),
        0
    );
    common::render_at_800_px(&svg);
    t.stop().await;
}
