//! Traces: the events a request leaves on every node it reaches, gathered by `gclab cli trace`
//! and `herd --trace`, and the pictures drawn from them. The events are checked, not the
//! pixels; the pictures only have to be well-formed, name every lane and render.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{gclab, key_owned_by, start, Topology};
use gclab::cli::spacetime;
use gclab::trace::{Kind, NodeEvent};

/// Runs `gclab cli …` against `t` and returns its exit code and stdout.
async fn cli(t: &Topology, args: &[&str]) -> (i32, String) {
    let frontends = (0..t.frontends.len())
        .map(|i| t.http_addr(i).to_owned())
        .collect::<Vec<_>>()
        .join(",");
    let mut all: Vec<String> = vec!["cli".to_owned()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    all.extend([
        "--frontends".to_owned(),
        frontends,
        "--db".to_owned(),
        t.db_addr().to_owned(),
    ]);
    let out = tokio::task::spawn_blocking(move || gclab().args(&all).output().unwrap())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn a_traced_cget_through_a_non_owner_yields_its_events_in_causal_order() {
    let t = start(3, Duration::from_millis(20), |_| {}).await;
    let key = key_owned_by(&t, 0, "traced").await;
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("cget.svg");
    let (code, out) = cli(
        &t,
        &[
            "--json",
            "trace",
            "cget",
            "--key",
            &key,
            "--frontend",
            t.http_addr(1),
            "-o",
            svg.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["outcome"], "peer");
    let events: Vec<NodeEvent> = serde_json::from_value(report["events"].clone()).unwrap();

    let (asker, owner, db) = (&t.peers[1], &t.peers[0], t.db_addr());
    let seen: Vec<(&str, Kind)> = events
        .iter()
        .map(|e| (e.node.as_str(), e.event.kind))
        .collect();
    let expected: Vec<(&str, Kind)> = vec![
        ("cli", Kind::Sent),
        (asker, Kind::Arrived),
        (asker, Kind::Miss),
        (asker, Kind::FlightStarted),
        (asker, Kind::PeerCallOut),
        (owner, Kind::Arrived),
        (owner, Kind::Miss),
        (owner, Kind::FlightStarted),
        (owner, Kind::DbReadOut),
        (db, Kind::Arrived),
        (db, Kind::Answered),
        (owner, Kind::DbReadIn),
        (owner, Kind::Answered),
        (asker, Kind::PeerCallIn),
        (asker, Kind::Answered),
        ("cli", Kind::Received),
    ];
    assert_eq!(seen, expected);

    // One trace throughout, and each hop names the one before it.
    let trace = events[0].event.trace;
    assert!(events.iter().all(|e| e.event.trace == trace));
    let at = |node: &str, kind: Kind| {
        events
            .iter()
            .find(|e| e.node == node && e.event.kind == kind)
            .unwrap()
    };
    assert_eq!(
        at(asker, Kind::Arrived).event.detail.parent,
        Some(events[0].event.span),
        "the frontend took the cli's traceparent"
    );
    assert_eq!(
        at(owner, Kind::Arrived).event.detail.peer.as_deref(),
        Some(asker.as_str())
    );
    assert_eq!(
        at(db, Kind::Arrived).event.detail.parent,
        Some(at(owner, Kind::DbReadOut).event.span),
        "the dbserver took the owner's traceparent"
    );
    assert_eq!(
        at(asker, Kind::PeerCallOut).event.detail.peer.as_deref(),
        Some(owner.as_str())
    );

    let doc = std::fs::read_to_string(&svg).unwrap();
    let lanes = lane_names(&doc);
    assert_eq!(lanes.len(), 5, "{lanes:?}");
    for node in ["cli", asker, owner, &t.peers[2], db] {
        assert!(
            lanes.iter().any(|l| l == node),
            "no lane for {node}: {lanes:?}"
        );
    }
    common::render_at_800_px(&svg);
    t.stop().await;
}

/// The `data-node` of every lane in an SVG (or the SVG inside an HTML page); the document
/// must be well-formed XML.
fn lane_names(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).expect("the picture is well-formed XML");
    doc.descendants()
        .filter(|n| n.attribute("class") == Some("lane"))
        .map(|n| n.attribute("data-node").unwrap().to_owned())
        .collect()
}

/// Runs a traced herd of `requests` against `t`, drawing to `path`; returns its JSON report.
async fn traced_herd(t: &Topology, requests: u32, path: &std::path::Path) -> serde_json::Value {
    let n = requests.to_string();
    let path = path.to_str().unwrap();
    let (code, out) = cli(t, &["--json", "herd", "--requests", &n, "--trace", path]).await;
    assert_eq!(code, 0, "{out}");
    serde_json::from_str(&out).unwrap()
}

#[tokio::test]
async fn a_traced_herd_of_1000_shows_1000_arrivals_one_flight_per_node_and_one_database_read() {
    // A delay longer than the herd takes to send: every request arrives during the flight.
    let t = start(3, Duration::from_secs(1), |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("herd.svg");
    let report = traced_herd(&t, 1000, &svg).await;
    assert_eq!(report["db_reads"], 1);
    let traced = &report["trace"];
    assert_eq!(traced["arrivals"], 1000);
    assert_eq!(traced["db_reads"], 1);
    let flights: Vec<(String, u64)> = serde_json::from_value(traced["flights"].clone()).unwrap();
    let mut nodes: Vec<String> = t.peers.clone();
    nodes.sort();
    assert_eq!(
        flights,
        nodes.iter().map(|n| (n.clone(), 1)).collect::<Vec<_>>(),
        "one flight per node"
    );
    // Every other arrival joined a flight: 997 clients' requests, and the 2 peer calls that
    // reached the owner while its own flight was loading.
    assert_eq!(traced["peer_calls"], 2);
    assert_eq!(traced["joined"], 997 + 2);

    let doc = std::fs::read_to_string(&svg).unwrap();
    assert_eq!(lane_names(&doc).len(), 5);
    assert_eq!(database_arrows(&t, &report).await, 1);
    common::render_at_800_px(&svg);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_singleflight_the_herd_picture_draws_one_database_arrow_per_request() {
    // A delay longer than the herd takes to send, so every request misses. 400, not 1000:
    // a thousand reads at once from one process's frontends overflow the in-process
    // dbserver's accept queue here (`gclab up`, with a process per server, takes them).
    // Even 400 can find the queue full on a busy machine: the kernel drops the SYN, and the
    // connection is retried a second later, which with the 1 s read outlasts the default
    // 2 s --db-timeout. A longer deadline lets such a read finish; the count is the point.
    let t = start(3, Duration::from_secs(1), |c| {
        c.group.singleflight = false;
        c.group.db_timeout = Duration::from_secs(10);
        c.group.peer_timeout = Duration::from_secs(15);
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let report = traced_herd(&t, 400, &dir.path().join("herd.svg")).await;
    assert_eq!(report["db_reads"], 400, "{report:#}");
    assert_eq!(report["trace"]["db_reads"], 400);
    assert_eq!(database_arrows(&t, &report).await, 400);
    t.stop().await;
}

/// The arrows of the herd's "db read" row, in the diagram the cli draws from its trace.
async fn database_arrows(t: &Topology, report: &serde_json::Value) -> usize {
    let trace = u128::from_str_radix(report["trace"]["trace"].as_str().unwrap(), 16).unwrap();
    let gathered = gclab::cli::trace::gather(trace, Vec::new(), &t.frontends, &t.db).await;
    let diagram = spacetime::build("herd", gathered.lanes, &gathered.events);
    diagram
        .rows
        .iter()
        .find(|r| r.name == "db read")
        .map_or(0, |r| r.arrows.len())
}

#[tokio::test]
async fn the_html_trace_loads_in_headless_chromium_with_an_element_per_lane_and_arrow() {
    let Some(chromium) = tool(&["chromium", "chromium-browser"]) else {
        return;
    };
    let t = start(3, Duration::from_millis(50), |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("herd.html");
    let report = traced_herd(&t, 1000, &html).await;
    let (lanes, arrows) = (
        report["trace"]["lanes"].as_u64().unwrap(),
        report["trace"]["arrows"].as_u64().unwrap(),
    );
    assert_eq!(lanes, 5);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        !page.contains("src=\"http"),
        "the page must load nothing from elsewhere"
    );

    let url = format!("file://{}", html.display());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--dump-dom",
                &url,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    assert_eq!(dom.matches("class=\"lane\"").count() as u64, lanes);
    assert_eq!(dom.matches("class=\"arrow\"").count() as u64, arrows);
    // The page's own script ran in the browser: it counted the same elements.
    assert!(
        dom.contains(&format!("{lanes} lanes, {arrows} arrows")),
        "the inline script did not run: {dom}"
    );
    t.stop().await;
}

/// The first of `names` found on PATH; without one, a notice and `None`, except on CI
/// (`CI=true`), where `.ci/run` installs it and a missing tool fails.
fn tool(names: &[&str]) -> Option<String> {
    for name in names {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if found {
            return Some((*name).to_owned());
        }
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{names:?} is needed on CI (.ci/run installs chromium)");
    }
    eprintln!("skipped the browser check: no {names:?}; apt-get install chromium");
    None
}

#[tokio::test]
async fn events_are_served_by_trace_and_a_bad_query_is_told_why() {
    let t = start(1, Duration::from_millis(1), |_| {}).await;
    t.db.set("k", Bytes::from("v")).await.unwrap();
    let root = gclab::trace::TraceParent::new();
    t.frontends[0].cget_traced("k", Some(root)).await.unwrap();
    let answer = t.frontends[0].events(root.trace).await.unwrap();
    assert_eq!(answer.node, t.peers[0]);
    assert!(answer.events.iter().all(|e| e.event.trace == root.trace));
    assert!(answer
        .events
        .iter()
        .any(|e| e.event.kind == Kind::DbReadOut));
    let db = t.db.events(root.trace).await.unwrap();
    assert_eq!(db.events.len(), 2, "arrived and answered");

    let http = reqwest::Client::new();
    let ask = |query: &str| {
        let url = format!("http://{}/events?{query}", t.http_addr(0));
        let http = http.clone();
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, body) = ask("trace=nothex").await;
    assert_eq!(status, 400);
    assert!(body.contains("is not a trace id"), "{body}");
    let (status, body) = ask("since=yesterday").await;
    assert_eq!(status, 400);
    assert!(body.contains("nanoseconds since the Unix epoch"), "{body}");
    let (status, body) = ask(&format!("since={}", u64::MAX)).await;
    assert_eq!(status, 200);
    assert!(body.contains("\"events\":[]"), "{body}");
    t.stop().await;
}
