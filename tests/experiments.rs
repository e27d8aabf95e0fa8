//! The experiment tools: `cli herd`, `cli bench`, `cli stats`, and `/metrics`.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{run_gclab, start};

fn json(output: &std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn ports(topology: &common::Topology) -> String {
    (0..topology.frontends.len())
        .map(|i| topology.http_addr(i).to_owned())
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test(flavor = "multi_thread")]
async fn herd_reports_exactly_one_database_read_for_a_thousand_cgets() {
    let topology = start(3, Duration::from_millis(200), |_| {}).await;
    let output = run_gclab(&format!(
        "cli herd --requests 1000 --frontends {} --db {} --json",
        ports(&topology),
        topology.db_addr()
    ))
    .await;
    assert!(output.status.success(), "{output:?}");
    let report = json(&output);
    assert_eq!(report["db_reads"], 1, "{report}");
    assert_eq!(report["answered"], 1000);
    assert_eq!(
        (report["errors"].as_u64(), report["wrong_values"].as_u64()),
        (Some(0), Some(0))
    );
    let nodes = report["nodes"].as_array().unwrap();
    let local: u64 = nodes
        .iter()
        .map(|n| n["local_loads"].as_u64().unwrap())
        .sum();
    assert_eq!(local, 1, "one node, the owner, read the database: {report}");
    let sent: u64 = nodes.iter().map(|n| n["requests"].as_u64().unwrap()).sum();
    assert_eq!(sent, 1000);
    // vegeta's fields too, but `errors` stays herd's count.
    assert_eq!(report["status_codes"]["200"], 1000, "{report}");
    assert_eq!(report["success"].as_f64(), Some(1.0), "{report}");
    let max_ns = report["latencies"]["max"].as_u64().unwrap();
    let max_ms = report["latency_ms"]["max"].as_f64().unwrap();
    assert_eq!(max_ns, (max_ms * 1e6).round() as u64, "{report}");
    assert!(
        max_ns >= 200_000_000,
        "a cold key waits the 200 ms read: {report}"
    );
    assert!(humantime::parse_rfc3339(report["end"].as_str().unwrap()).is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn herd_without_peers_reads_once_per_frontend() {
    let topology = start(3, Duration::from_millis(200), |c| c.group.use_peers = false).await;
    let output = run_gclab(&format!(
        "cli herd --requests 300 --frontends {} --db {} --json",
        ports(&topology),
        topology.db_addr()
    ))
    .await;
    assert_eq!(json(&output)["db_reads"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_prints_a_report_with_a_histogram_and_its_json_parses() {
    let topology = start(3, Duration::ZERO, |_| {}).await;
    let (fe, db) = (ports(&topology), topology.db_addr().to_owned());
    let text = run_gclab(&format!(
        "cli bench --keys 20 --duration 1s --concurrency 4 --frontends {fe} --db {db}"
    ))
    .await;
    assert!(text.status.success(), "{text:?}");
    let text = String::from_utf8_lossy(&text.stdout);
    for part in [
        "requests",
        "latency",
        "p99",
        "status",
        "200:",
        "latency histogram",
        "█",
    ] {
        assert!(text.contains(part), "no {part:?} in:\n{text}");
    }
    let report = json(
        &run_gclab(&format!(
            "cli bench --keys 20 --duration 1s --rate 200 --frontends {fe} --db {db} --json"
        ))
        .await,
    );
    let requests = report["requests"].as_u64().unwrap();
    assert!(requests > 50, "{report}");
    assert_eq!(
        report["status_codes"]["200"].as_u64(),
        Some(requests),
        "{report}"
    );
    assert_eq!(report["success_ratio"].as_f64(), Some(1.0));
    let histogram: u64 = report["histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(histogram, requests, "every request is in one bucket");
    assert_eq!(
        topology.db.stats().await.unwrap().keys,
        20,
        "bench wrote key1..key20"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_shows_a_column_per_node_fits_80_columns_and_names_nodes_by_peer_port() {
    let topology = start(3, Duration::ZERO, |_| {}).await;
    topology
        .db
        .set("k", bytes::Bytes::from_static(b"v"))
        .await
        .unwrap();
    topology.frontends[0].cget("k").await.unwrap();
    let (fe, db) = (ports(&topology), topology.db_addr().to_owned());
    let table = run_gclab(&format!("cli stats --frontends {fe} --db {db}")).await;
    assert!(table.status.success());
    let table = String::from_utf8_lossy(&table.stdout);
    assert_eq!(
        table.lines().count(),
        18,
        "header, 16 counters, dbserver:\n{table}"
    );
    for line in table.lines() {
        assert!(
            line.chars().count() <= 80,
            "wider than 80 columns: {line:?}"
        );
    }
    // Columns are named like the ring and the log lines name nodes: by peer address.
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    let names: Vec<String> = topology
        .peers
        .iter()
        .map(|p| p.rsplit(':').next().unwrap().to_owned())
        .collect();
    assert_eq!(header[1..], names[..], "{table}");
    // The cget went to the first node (which may have asked the owner: one more get there).
    let gets_row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(gets_row[..2], ["gets", "1"], "{table}");
    assert!(table.contains("gets 1 · sets 1 · keys 1"), "{table}");
    let wide = run_gclab(&format!("cli stats --frontends {fe} --db {db} --wide")).await;
    let wide = String::from_utf8_lossy(&wide.stdout);
    assert_eq!(
        wide.lines().count(),
        5,
        "header, 3 nodes, dbserver:\n{wide}"
    );
    let stats = json(&run_gclab(&format!("cli stats --frontends {fe} --db {db} --json")).await);
    let gets: u64 = stats["frontends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["stats"]["gets"].as_u64().unwrap())
        .sum();
    assert!(gets >= 1);
}

/// Reads Prometheus' text format strictly enough to catch a malformed exposition:
/// every sample belongs to a family announced by HELP and TYPE, and every value is a number.
fn parse_exposition(text: &str) -> HashMap<String, f64> {
    let (mut helped, mut typed) = (Vec::<String>::new(), HashMap::<String, String>::new());
    let mut samples = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.push(rest.split(' ').next().unwrap().to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .expect("TYPE names a family and a type");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            typed.insert(name.to_owned(), kind.to_owned());
        } else {
            assert!(!line.starts_with('#'), "unexpected comment: {line}");
            let (series, value) = line.rsplit_once(' ').expect("a sample is `series value`");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("not a number: {line}"));
            let name = series.split('{').next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| typed.get(*f).map(String::as_str) == Some("histogram"))
                })
                .unwrap_or(name);
            assert!(typed.contains_key(family), "{family} has no TYPE line");
            assert!(
                helped.iter().any(|h| h == family),
                "{family} has no HELP line"
            );
            samples.insert(series.to_owned(), value);
        }
    }
    samples
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_valid_prometheus_text_and_agree_with_stats() {
    let topology = start(2, Duration::ZERO, |_| {}).await;
    topology
        .db
        .set("k", bytes::Bytes::from_static(b"v"))
        .await
        .unwrap();
    for _ in 0..3 {
        topology.frontends[0].cget("k").await.unwrap();
    }
    let stats = topology.frontends[0].stats().await.unwrap();
    let text = reqwest::get(format!("http://{}/metrics", topology.http_addr(0)))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let samples = parse_exposition(&text);
    assert_eq!(samples["gclab_gets_total"], stats.gets as f64);
    assert_eq!(samples["gclab_cache_hits_total"], stats.cache_hits as f64);
    assert_eq!(
        samples["gclab_cache_bytes{cache=\"main\"}"],
        stats.main_cache.bytes as f64
    );
    let answered: f64 = samples
        .iter()
        .filter(|(series, _)| series.starts_with("gclab_request_duration_seconds_count"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(answered, 3.0, "one latency sample per cget");

    let db_text = reqwest::get(format!("http://{}/metrics", topology.db_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let db_samples = parse_exposition(&db_text);
    assert_eq!(db_samples["gclab_db_sets_total"], 1.0);

    // Where Prometheus' own checker is installed (.ci/run installs it), it must agree.
    if let Ok(mut promtool) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        use std::io::Write;
        promtool
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let checked = promtool.wait_with_output().unwrap();
        assert!(
            checked.status.success(),
            "promtool: {}",
            String::from_utf8_lossy(&checked.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_json_carries_vegetas_report_fields_in_vegetas_units() {
    let topology = start(3, Duration::ZERO, |_| {}).await;
    let (fe, db) = (ports(&topology), topology.db_addr().to_owned());
    let report = json(
        &run_gclab(&format!(
            "cli bench --keys 20 --duration 1s --rate 200 --frontends {fe} --db {db} --json"
        ))
        .await,
    );
    // An open loop at 200/s for 1 s sends exactly 200, the last meant for 995 ms in.
    assert_eq!(report["requests"], 200, "{report}");
    let ns = |field: &str| {
        report["latencies"][field]
            .as_u64()
            .unwrap_or_else(|| panic!("latencies.{field} is not a count of nanoseconds: {report}"))
    };
    for field in [
        "total", "mean", "50th", "90th", "95th", "99th", "max", "min",
    ] {
        assert!(ns(field) > 0, "latencies.{field} is 0: {report}");
    }
    // The same histogram, in our milliseconds and in vegeta's nanoseconds.
    let ms = report["latency_ms"]["max"].as_f64().unwrap();
    assert_eq!(ns("max"), (ms * 1e6).round() as u64, "{report}");
    assert!(ns("min") <= ns("50th") && ns("50th") <= ns("99th") && ns("99th") <= ns("max"));
    assert_eq!(ns("mean"), ns("total") / 200);
    let duration = report["duration"].as_u64().unwrap();
    assert!(
        (994_000_000..=996_000_000).contains(&duration),
        "duration {duration} ns, not the 995 ms from the first send to the last"
    );
    let earliest = humantime::parse_rfc3339(report["earliest"].as_str().unwrap()).unwrap();
    let latest = humantime::parse_rfc3339(report["latest"].as_str().unwrap()).unwrap();
    let end = humantime::parse_rfc3339(report["end"].as_str().unwrap()).unwrap();
    assert_eq!(
        latest.duration_since(earliest).unwrap().as_nanos() as u64,
        duration
    );
    assert_eq!(
        end.duration_since(latest).unwrap().as_nanos() as u64,
        report["wait"].as_u64().unwrap()
    );
    assert_eq!(report["success"].as_f64(), Some(1.0), "{report}");
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    assert_eq!(
        report["bytes_in"]["total"],
        200 * 30,
        "30-byte values: {report}"
    );
    assert_eq!(report["bytes_out"]["total"], 0, "GETs send no body");
    assert_eq!(report["status_codes"]["200"], 200);
    assert!(report["rate"].as_f64().unwrap() > 150.0, "{report}");
    assert!(report["throughput"].as_f64().unwrap() > 100.0, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hit_ratio_knob_gets_the_ratio_it_asks_for() {
    let topology = start(3, Duration::ZERO, |_| {}).await;
    let (fe, db) = (ports(&topology), topology.db_addr().to_owned());
    let pictures = tempfile::tempdir().unwrap();
    let plot = pictures.path().join("run.svg");
    let report = json(
        &run_gclab(&format!(
            "cli bench --keys 50 --hit-ratio 0.8 --duration 3s --rate 1000 --frontends {fe} --db {db} --json --plot {}",
            plot.display()
        ))
        .await,
    );
    let requests = report["requests"].as_u64().unwrap();
    assert_eq!(requests, 3000, "{report}");
    assert_eq!(report["hit_ratio_asked"].as_f64(), Some(0.8));
    let seen = report["hit_ratio_seen"].as_f64().unwrap();
    assert!(
        (seen - 0.8).abs() <= 0.05,
        "asked 0.8, saw {seen}: {report}"
    );
    // The misses are fresh keys no one stored: each a 404, each a database read.
    let misses = report["status_codes"]["404"].as_u64().unwrap_or(0);
    let reads = ((1.0 - seen) * requests as f64).round() as u64;
    assert_eq!(misses, reads, "one read per miss, none per hit: {report}");
    assert_eq!(report["errors"], serde_json::json!(["404 Not Found"]));

    // The plot: one curve for the hits, one for the misses, each named; it renders at 800 px.
    let svg = std::fs::read_to_string(&plot).expect("bench --plot wrote the picture");
    let doc = roxmltree::Document::parse(&svg).expect("the plot is well-formed SVG");
    let series: Vec<&str> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("series"))
        .filter_map(|n| n.attribute("data-series"))
        .collect();
    assert_eq!(
        series,
        ["hits (main or hot cache)", "misses (peer, db, not found)"],
        "{svg}"
    );
    for needed in ["99.9%", "percentile of requests", "p99"] {
        assert!(svg.contains(needed), "the plot does not say {needed:?}");
    }
    common::render_at_800_px(&plot);

    let refused = run_gclab(&format!(
        "cli bench --hit-ratio 1.5 --frontends {fe} --db {db}"
    ))
    .await;
    assert_eq!(refused.status.code(), Some(2));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("1.5 is not a ratio between 0 and 1"),
        "{said}"
    );
}
