//! `gclab demo`: the whole story in one command.
//!
//! It starts a dbserver and three frontends in this process, on free ports, with a
//! temporary data directory ([`Topology`]), then narrates three experiments:
//! 1. the 2013 walkthrough — set, get, cget, cget, cget from another frontend — with each
//!    answer's time and where it came from;
//! 2. the thundering herd three ways — without singleflight, without peers, and with both —
//!    side by side, with exact database-read counts;
//! 3. the stats table of the cluster after all that.
//!
//! Then it stops every server and removes its files; `--keep` leaves the last topology
//! running and prints commands to try on it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use colored::Colorize;

use crate::args::DemoArgs;
use crate::cli::herd::{self, Plan, Report};
use crate::cli::{short, stats};
use crate::client::ClientError;
use crate::logging;
use crate::topology::Topology;

/// Runs the demo; Ctrl-C stops it early, still cleaning up.
pub async fn run(args: DemoArgs) -> Result<(), String> {
    colored::control::set_override(logging::stdout_color_enabled());
    tokio::select! {
        result = narrate(&args) => result,
        _ = tokio::signal::ctrl_c() => {
            // Returning drops the topologies: their servers stop and their files go.
            println!("\ninterrupted; stopping everything");
            Ok(())
        }
    }
}

async fn narrate(args: &DemoArgs) -> Result<(), String> {
    let started = Instant::now();
    let delay = humantime::format_duration(args.delay);
    heading("groupcache-lab demo");
    println!(
        "Starting a dbserver whose every read waits {delay}, and three frontends, on free ports."
    );
    let topology = start(args.delay, |_| {}).await?;
    println!("  dbserver    {}", topology.db_addr());
    for (i, peer) in topology.peers.iter().enumerate() {
        println!(
            "  frontend {}  peers talk to it on {peer}, clients on {}",
            letter(i),
            topology.http_addr(i)
        );
    }

    walkthrough(&topology).await.map_err(|e| e.to_string())?;
    herds(&topology, args.delay)
        .await
        .map_err(|e| e.to_string())?;

    heading("3. The stats table (gclab cli stats)");
    let names: Vec<String> = (0..topology.peers.len())
        .map(|i| format!("{} {}", letter(i), short(&topology.peers[i])))
        .collect();
    println!(
        "A column per node, named by its peer port: {}",
        names.join(" · ")
    );
    let (nodes, db) = stats::collect(&topology.frontends, &topology.db).await;
    print!("{}", stats::render(&nodes, topology.db_addr(), &db, false));
    println!(
        "{}",
        "  gets: every Get · cache_hits: from a cache · loads: misses · loads_deduped: loads left \
         after singleflight\n  peer_loads: asked the owner · local_loads: read the dbserver · \
         server_requests: asked by a peer · failovers: owner was down"
            .dimmed()
    );

    if args.keep {
        keep(&topology).await;
    }
    topology.stop().await;
    println!(
        "\nDone in {:.1} s. Every server is stopped and its files removed.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn start(
    delay: Duration,
    tweak: impl Fn(&mut crate::frontend::Config),
) -> Result<Topology, String> {
    Topology::start(3, delay, tweak)
        .await
        .map_err(|e| format!("cannot start the demo's servers: {e}"))
}

/// Part 1: the original walkthrough, on this demo's ports.
async fn walkthrough(t: &Topology) -> Result<(), ClientError> {
    heading("1. The 2013 walkthrough");
    let owner = t.owner_of("foo").await?;
    let other = (owner + 1) % t.frontends.len();
    let (a, b) = (
        short(t.http_addr(owner)).to_owned(),
        short(t.http_addr(other)).to_owned(),
    );
    println!(
        "foo is owned by frontend {} (its rendezvous hash is highest there), so we start there.",
        letter(owner)
    );

    let clock = Instant::now();
    t.db.set("foo", Bytes::from_static(b"bar")).await?;
    step("./cli -set -key foo -value bar", "stored", clock, "");

    let clock = Instant::now();
    let value = t.db.get("foo").await?.unwrap_or_default();
    step(
        "./cli -get -key foo",
        &format!("{} ← {}", text(&value), "dbserver".red()),
        clock,
        "straight from the database: pays the delay, every time",
    );

    for (port, index, why) in [
        (
            &a,
            owner,
            "a miss: the owner loads it from the database into its main cache",
        ),
        (&a, owner, "a hit in the owner's main cache: no database"),
        (
            &b,
            other,
            "a node that never had foo asks its owner instead of the database",
        ),
    ] {
        let clock = Instant::now();
        let cached =
            t.frontends[index]
                .cget("foo")
                .await?
                .unwrap_or_else(|| crate::client::Cached {
                    value: Bytes::new(),
                    node: String::new(),
                    owner: String::new(),
                    source: "none".to_owned(),
                    version: 0,
                });
        step(
            &format!("./cli -port {port} -cget -key foo"),
            &format!(
                "{} ← {} · owner {} · from {}",
                text(&cached.value),
                letter(index),
                letter(
                    t.peers
                        .iter()
                        .position(|p| *p == cached.owner)
                        .unwrap_or(owner)
                ),
                logging::source(&cached.source)
            ),
            clock,
            why,
        );
    }
    let reads = t.db.stats().await?.gets;
    if reads == 2 {
        println!(
            "The dbserver was read 2 times: once by get, once by the first cget. Never again."
        );
    } else {
        println!("The dbserver was read {reads} times (2 expected: once by get, once by the first cget).");
    }
    Ok(())
}

/// Part 2: a thousand cgets of a cold key, three ways.
async fn herds(t: &Topology, delay: Duration) -> Result<(), String> {
    heading("2. The thundering herd: 1000 cgets of one cold key, all at once, over 3 frontends");
    let mut rows: Vec<(&str, &str, Report)> = Vec::new();
    for (label, flag, singleflight, peers) in [
        ("no singleflight", "--no-singleflight", false, true),
        ("no peers", "--no-peers", true, false),
    ] {
        println!("  running with frontends started {flag} …");
        let contrast = start(delay, |c| {
            c.group.singleflight = singleflight;
            c.group.use_peers = peers;
        })
        .await?;
        let report = herd::measure(&plan(&contrast), false, std::future::pending::<()>())
            .await
            .map_err(|e| e.to_string())?;
        contrast.stop().await;
        rows.push((label, flag, report));
    }
    println!("  running with groupcache as designed …");
    let report = herd::measure(&plan(t), false, std::future::pending::<()>())
        .await
        .map_err(|e| e.to_string())?;
    rows.push(("groupcache", "(both on)", report));

    println!();
    println!(
        "  {:<17} {:<19} {:>8} {:>14} {:>9} {:>9} {:>8}",
        "mode", "frontend flags", "answered", "database reads", "p50 ms", "p99 ms", "errors"
    );
    for (label, flag, r) in &rows {
        let reads = format!(
            "{:>14}",
            r.db_reads.map_or("?".to_owned(), |n| n.to_string())
        );
        let reads = if r.db_reads == Some(1) {
            reads.green()
        } else {
            reads.red()
        };
        println!(
            "  {:<17} {:<19} {:>8} {} {:>9.1} {:>9.1} {:>8}",
            label, flag, r.answered, reads, r.latency_ms.p50, r.latency_ms.p99, r.errors
        );
    }
    if let Some((label, _, r)) = rows.iter().find(|(_, _, r)| r.errors > 0) {
        let first = r.first_error.as_deref().unwrap_or("?");
        println!(
            "\n  {} the {label} run had {} errors, so its counts say little: {first}",
            "Careful:".red(),
            r.errors
        );
    }
    println!();
    println!("  Without singleflight, every request that misses does its own load.");
    println!(
        "  Without peers, each frontend loads the key once for itself: one read per frontend."
    );
    println!("  With both, the three frontends agree on one owner, and it loads the key once.");
    Ok(())
}

fn plan(t: &Topology) -> Plan {
    Plan {
        key: None,
        trace: None,
        requests: 1000,
        frontends: (0..t.frontends.len())
            .map(|i| t.http_addr(i).to_owned())
            .collect(),
        db: t.db_addr().to_owned(),
        client_timeout: crate::cli::TIMEOUT,
        check: false,
    }
}

/// `--keep`: print what to try, then serve until Ctrl-C.
async fn keep(t: &Topology) {
    let ports: Vec<&str> = (0..t.frontends.len())
        .map(|i| short(t.http_addr(i)))
        .collect();
    let db = t.db_addr();
    // The program as it was started (`target/release/gclab` under `cargo run`), so the
    // commands can be pasted as they are.
    let gclab = std::env::args()
        .next()
        .unwrap_or_else(|| "gclab".to_owned());
    heading("The topology is still running. In another terminal, from this directory, try:");
    println!("  {gclab} cli cget --port {} --key foo", ports[1]);
    println!(
        "  {gclab} cli herd --frontends {} --db {db}",
        ports.join(",")
    );
    println!(
        "  {gclab} cli bench --frontends {} --db {db} --duration 5s",
        ports.join(",")
    );
    println!(
        "  {gclab} cli stats --frontends {} --db {db} --watch",
        ports.join(",")
    );
    println!("  curl {}/owner/foo", t.http_addr(0));
    println!("Press Ctrl-C to stop it and remove its files.");
    let _ = tokio::signal::ctrl_c().await;
}

fn heading(text: &str) {
    println!("\n{}", text.bold());
}

fn step(command: &str, answer: &str, clock: Instant, why: &str) {
    let ms = clock.elapsed().as_secs_f64() * 1000.0;
    println!(
        "  $ {command:<38} {answer}  {}",
        format!("{ms:.1} ms").bold()
    );
    if !why.is_empty() {
        println!("    {}", why.dimmed());
    }
}

fn letter(i: usize) -> char {
    (b'A' + (i % 26) as u8) as char
}

fn text(value: &[u8]) -> String {
    logging::preview(value)
}
