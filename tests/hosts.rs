//! `lab/hosts.sh`: the lab on many hosts, each server in a network namespace of its own,
//! with its own address and the same ports as the others (lab/pictures/hosts.svg).
//!
//! These tests run the script itself, as root: `hosts.sh up 3`, then the cli and a client of
//! our own from the root namespace, as a learner would. The namespace names (`gclab-db`,
//! `gclab-1`…) are fixed, so only one test may have a lab up at a time, and every test takes
//! it down again however it ends. Without root or iproute2 they skip, except in CI
//! (`CI=true`), where a skipped test would hide a broken lab: there they fail.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::future::join_all;

mod common;

/// One lab at a time: the namespaces and the bridge have the same names in every test. A
/// tokio mutex, not std's: it is held across `.await`s for the whole test.
static ONE_LAB_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const DB: &str = "10.77.0.10:8080";

/// Frontend `i`'s HTTP address (the hosts are numbered from 1, as the script numbers them).
fn frontend(i: usize) -> String {
    format!("10.77.0.{}:9001", 10 + i)
}

fn frontends(n: usize) -> Vec<String> {
    (1..=n).map(frontend).collect()
}

/// True if the test can go on; prints why not, or fails in CI, where skipping would hide it.
fn can_run() -> bool {
    let Some(why) = common::cannot_make_namespaces() else {
        return true;
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("tests/hosts.rs needs root and iproute2 (ip netns), and in CI it must run: {why}");
    }
    eprintln!("skipping: needs root and iproute2 (ip netns): {why}");
    false
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/hosts.sh")
}

/// A lab that `hosts.sh up` started; dropping it runs `hosts.sh down`, also when the test
/// failed half way (a panic unwinds through this drop).
struct Lab {
    /// The state dir: pids, logs, the dbserver's data. Removed after `down`.
    dir: tempfile::TempDir,
}

impl Lab {
    /// `hosts.sh up N`, bounded by a minute.
    async fn up(n: usize) -> Lab {
        // A lab someone left up (by hand, or from a killed test run) would make `up` refuse;
        // taking it down here could be taking down a learner's lab, so say so and stop.
        let listed = std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("`ip` ran a moment ago");
        let listed = String::from_utf8_lossy(&listed.stdout);
        assert!(
            !listed.lines().any(|l| l.starts_with("gclab-")),
            "a lab/hosts.sh lab is already up ({}): take it down with `lab/hosts.sh down`",
            listed.trim().replace('\n', ", ")
        );
        let lab = Lab {
            dir: tempfile::tempdir().expect("the temp dir is writable"),
        };
        let out = lab.script(&["up", &n.to_string()]).await;
        assert!(
            out.status.success(),
            "hosts.sh up {n} failed:\n{}",
            text(&out)
        );
        lab
    }

    /// Runs `hosts.sh ARGS` with this lab's state dir and the binary cargo built, for at most
    /// a minute.
    async fn script(&self, args: &[&str]) -> std::process::Output {
        let run = tokio::process::Command::new("bash")
            .arg(script())
            .args(args)
            .env("GCLAB", env!("CARGO_BIN_EXE_gclab"))
            .env("GCLAB_HOSTS_DIR", self.dir.path())
            .env("NO_COLOR", "1")
            .env_remove("FRONTEND_FLAGS")
            .env_remove("DB_FLAGS")
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .unwrap_or_else(|_| panic!("hosts.sh {} took over a minute", args.join(" ")))
            .expect("bash runs")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Synchronous: a drop cannot await. `down` is bounded on its own (at most 5 s per
        // server before SIGKILL); `timeout` bounds it anyway.
        let out = std::process::Command::new("timeout")
            .arg("60")
            .arg("bash")
            .arg(script())
            .arg("down")
            .env("GCLAB_HOSTS_DIR", self.dir.path())
            .output();
        match out {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!("hosts.sh down failed:\n{}", text(&out)),
            Err(e) => eprintln!("could not run hosts.sh down: {e}"),
        }
    }
}

/// Everything a process printed, for a failure message.
fn text(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The start of every test here: three hosts up (one lab at a time), a client, and the
/// frontends' addresses; None where namespaces cannot be made (and not on CI).
async fn three_hosts() -> Option<(
    tokio::sync::MutexGuard<'static, ()>,
    Lab,
    reqwest::Client,
    Vec<String>,
)> {
    if !can_run() {
        return None;
    }
    let one = ONE_LAB_AT_A_TIME.lock().await;
    let lab = Lab::up(3).await;
    Some((one, lab, client(), frontends(3)))
}

/// `gclab cli ARGS`, from the root namespace, for at most 30 s.
async fn cli(args: &[&str]) -> std::process::Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_gclab"))
        .arg("cli")
        .args(args)
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap_or_else(|_| panic!("gclab cli {} took over 30 s", args.join(" ")))
        .expect("the gclab binary runs")
}

/// A client of our own, not the one under test. No proxy: none could reach 10.77.0.x.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a plain HTTP client builds")
}

/// `GET http://ADDR/PATH` as JSON.
async fn json(client: &reqwest::Client, addr: &str, path: &str) -> serde_json::Value {
    let url = format!("http://{addr}{path}");
    let answer = client
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(
        answer.status().is_success(),
        "GET {url}: {}",
        answer.status()
    );
    let body = answer
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: {e}: {body}"))
}

/// How many reads the dbserver has served (its own counter: every one paid its delay).
async fn db_reads(client: &reqwest::Client) -> u64 {
    json(client, DB, "/stats").await["gets"]
        .as_u64()
        .expect("the dbserver's /stats has gets")
}

/// One counter of every frontend's `/stats`, summed.
async fn sum_of(client: &reqwest::Client, frontends: &[String], counter: &str) -> u64 {
    let mut sum = 0;
    for f in frontends {
        sum += json(client, f, "/stats").await[counter]
            .as_u64()
            .unwrap_or_else(|| panic!("{f}/stats has no {counter}"));
    }
    sum
}

/// `gclab cli set`, through the dbserver in its namespace.
async fn set(key: &str, value: &str, n: usize) {
    let out = cli(&[
        "set",
        "--key",
        key,
        "--value",
        value,
        "--db",
        DB,
        "--frontends",
        &frontends(n).join(","),
    ])
    .await;
    assert!(out.status.success(), "cli set failed:\n{}", text(&out));
}

/// `count` cgets of `key` at once, spread round-robin over `over`; panics unless every one
/// answers `value`.
async fn cgets_all_answer(
    client: &reqwest::Client,
    over: &[String],
    key: &str,
    value: &str,
    count: usize,
) {
    let requests = (0..count).map(|i| {
        let url = format!("http://{}/cache/{key}", over[i % over.len()]);
        async move {
            let answer = client
                .get(&url)
                .send()
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            let status = answer.status();
            let body = answer.text().await.map_err(|e| format!("GET {url}: {e}"))?;
            if status.is_success() && body == value {
                Ok(())
            } else {
                Err(format!("GET {url}: {status} {body:?}"))
            }
        }
    });
    // Every request is made before any is awaited, so they leave together: a herd.
    let answers = tokio::time::timeout(Duration::from_secs(60), join_all(requests))
        .await
        .expect("the cgets answered within a minute");
    let wrong: Vec<String> = answers.into_iter().filter_map(Result::err).collect();
    assert!(
        wrong.is_empty(),
        "{} of {count} cgets went wrong, the first: {}",
        wrong.len(),
        wrong[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_cgets_over_three_hosts_read_the_database_once() {
    let Some((_one, lab, client, all)) = three_hosts().await else {
        return;
    };

    set("many-hosts", "value over the bridge", 3).await;
    let reads_before = db_reads(&client).await;
    let loads_before = sum_of(&client, &all, "local_loads").await;
    cgets_all_answer(&client, &all, "many-hosts", "value over the bridge", 1000).await;
    assert_eq!(
        db_reads(&client).await - reads_before,
        1,
        "database reads for the herd's key"
    );
    assert_eq!(
        sum_of(&client, &all, "local_loads").await - loads_before,
        1,
        "local_loads over the 3 frontends"
    );

    // The cli's own herd, pointed at the hosts by address: a fresh key, read once too.
    let out = cli(&[
        "herd",
        "--requests",
        "1000",
        "--db",
        DB,
        "--frontends",
        &all.join(","),
        "--json",
    ])
    .await;
    assert!(out.status.success(), "cli herd failed:\n{}", text(&out));
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("herd --json prints one object");
    assert_eq!(report["answered"], 1000, "{report}");
    assert_eq!(report["wrong_values"], 0, "{report}");
    assert_eq!(report["db_reads"], 1, "{report}");
    drop(lab);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_hosts_owner_dies_the_other_hosts_answer_and_read_the_database_at_most_twice() {
    let Some((_one, lab, client, all)) = three_hosts().await else {
        return;
    };

    set("orphan", "outlives its owner", 3).await;
    let reads_before = db_reads(&client).await;
    // Who owns it: every node answers the same, by its rendezvous ranking.
    let owner = json(&client, &all[0], "/owner/orphan").await["owner"]
        .as_str()
        .expect("/owner names the owner")
        .to_owned();
    let owner_index = (1..=3)
        .find(|&i| owner == format!("10.77.0.{}:8001", 10 + i))
        .unwrap_or_else(|| panic!("the owner {owner} is none of the three hosts"));
    // Warm at its owner, and only there: the one read the key costs while its owner lives.
    // (Asked through the others, one might keep a copy in its hot cache, and answer from
    // it after the owner died without any failover.)
    cgets_all_answer(
        &client,
        &[frontend(owner_index)],
        "orphan",
        "outlives its owner",
        30,
    )
    .await;
    assert_eq!(
        db_reads(&client).await - reads_before,
        1,
        "database reads while the owner lives"
    );

    let out = lab.script(&["kill", &owner_index.to_string()]).await;
    assert!(
        out.status.success(),
        "hosts.sh kill {owner_index} failed:\n{}",
        text(&out)
    );
    let survivors: Vec<String> = (1..=3)
        .filter(|&i| i != owner_index)
        .map(frontend)
        .collect();
    let failovers_before = sum_of(&client, &survivors, "failovers").await;
    cgets_all_answer(&client, &survivors, "orphan", "outlives its owner", 200).await;

    let failovers = sum_of(&client, &survivors, "failovers").await - failovers_before;
    assert!(failovers >= 1, "the survivors counted no failover");
    let reads = db_reads(&client).await - reads_before;
    assert!(
        reads <= 2,
        "{reads} database reads: one before the owner died, at most one by its stand-in"
    );

    // And back: the restarted owner answers too (from its peers or the database: a fresh
    // process has an empty cache).
    let out = lab.script(&["start", &owner_index.to_string()]).await;
    assert!(
        out.status.success(),
        "hosts.sh start {owner_index} failed:\n{}",
        text(&out)
    );
    cgets_all_answer(
        &client,
        &[frontend(owner_index)],
        "orphan",
        "outlives its owner",
        1,
    )
    .await;
    drop(lab);
}

/// The picture of the layout names every host by the address it has in the script.
#[test]
fn the_hosts_picture_parses_and_names_every_address() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/pictures/hosts.svg");
    let svg = std::fs::read_to_string(&path).expect("lab/pictures/hosts.svg exists");
    let doc = roxmltree::Document::parse(&svg).expect("hosts.svg is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let words: String = doc
        .descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join(" ");
    for needed in [
        "10.77.0.1",
        "gclab-br",
        "gclab-db",
        "10.77.0.10:8080",
        "gclab-1",
        "gclab-2",
        "gclab-3",
        "10.77.0.11",
        "10.77.0.12",
        "10.77.0.13",
        ":8001",
        ":9001",
        "netem",
    ] {
        assert!(words.contains(needed), "hosts.svg does not say {needed:?}");
    }
}

/// `hosts.sh delay 20ms` puts 20 ms on every packet a host sends, by netem or, where the
/// kernel has none, by `gclab wire`; `delay off` takes it all away again. Only lower bounds
/// on time are asserted: a busy machine can make a call slower, never faster than the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_slows_every_peer_call_by_a_round_trip_and_off_removes_it() {
    let Some((_one, lab, client, _)) = three_hosts().await else {
        return;
    };
    set("far", "a round trip away", 3).await;
    let owner = json(&client, &frontend(1), "/owner/far").await["owner"]
        .as_str()
        .expect("/owner names the owner")
        .to_owned();
    let asker = (1..=3)
        .find(|&i| owner != format!("10.77.0.{}:8001", 10 + i))
        .expect("two of three hosts do not own it");
    // Warm at the owner, and open the asker's connections, before the delay.
    cgets_all_answer(
        &client,
        &[owner.replace(":8001", ":9001")],
        "far",
        "a round trip away",
        1,
    )
    .await;

    let out = lab.script(&["delay", "20ms"]).await;
    assert!(
        out.status.success(),
        "hosts.sh delay 20ms failed:\n{}",
        text(&out)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("40ms per round trip between two hosts"),
        "{said}"
    );

    // A fresh connection from the root namespace: the handshake's answer and the reply are
    // each held 20 ms by the host; the asker's call to the owner, 20 ms each way.
    let cold = client_without_pool();
    let began = std::time::Instant::now();
    let value = cold
        .get(format!("http://{}/cache/far", frontend(asker)))
        .send()
        .await
        .expect("the asker answers")
        .text()
        .await
        .expect("a body");
    let took = began.elapsed();
    assert_eq!(value, "a round trip away");
    assert!(
        took >= Duration::from_millis(80),
        "a cget through a peer took {took:?} with 20 ms on every host"
    );

    let out = lab.script(&["delay", "off"]).await;
    assert!(
        out.status.success(),
        "hosts.sh delay off failed:\n{}",
        text(&out)
    );
    for i in 1..=3 {
        let ns = format!("gclab-{i}");
        let qdisc = std::process::Command::new("tc")
            .args(["-n", &ns, "qdisc", "show", "dev", "eth0"])
            .output()
            .expect("tc runs");
        assert!(
            !String::from_utf8_lossy(&qdisc.stdout).contains("netem"),
            "{ns} still has netem"
        );
        let rules = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "iptables",
                "-t",
                "mangle",
                "-S",
                "POSTROUTING",
            ])
            .output();
        if let Ok(rules) = rules {
            let rules = String::from_utf8_lossy(&rules.stdout);
            assert!(
                !rules.contains("NFQUEUE"),
                "{ns} still queues its packets: {rules}"
            );
        }
    }
    let wires = std::process::Command::new("pgrep")
        .args(["-f", &format!("{} wire", env!("CARGO_BIN_EXE_gclab"))])
        .output()
        .expect("pgrep runs");
    assert!(
        wires.stdout.is_empty(),
        "gclab wire still runs: {}",
        String::from_utf8_lossy(&wires.stdout)
    );
    drop(lab);
}

/// A client that opens a new connection for every request, as `gclab cli cget` does.
fn client_without_pool() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a plain HTTP client builds")
}
