//! `gclab cli herd`: the lab's headline experiment.
//!
//! Write a fresh key to the dbserver, then fire every request for it at once, spread
//! round-robin over the frontends, and count. With singleflight and peers, a thousand
//! requests cost the database exactly one read; `--no-singleflight` and `--no-peers` on the
//! frontends show the herd the cache prevents. The counts are exact: they are the
//! dbserver's and the frontends' own counters, read before and after.

use std::time::Instant;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;

use super::bench::Latency;
use super::check::{Checker, Reads, Verdict};
use super::vegeta::{Tally, Vegeta};
use super::{exit, fail, print_report, short, TIMEOUT};
use crate::client::{ClientError, DbClient, FrontendClient};
use crate::stats::NodeStats;
use crate::trace::{Kind, TraceParent};

use super::spacetime;

/// What to fire, and where.
#[derive(Debug, Clone)]
pub struct Plan {
    /// An existing key to ask for; `None` writes a fresh one first.
    pub key: Option<String>,
    pub requests: usize,
    /// The frontends' HTTP addresses.
    pub frontends: Vec<String>,
    /// The dbserver's address.
    pub db: String,
    /// How long a request may take before the cli gives up on it.
    pub client_timeout: std::time::Duration,
    /// End with the checker's verdict (`--check`).
    pub check: bool,
    /// Trace the herd and draw it here (`--trace FILE.svg|html`).
    pub trace: Option<std::path::PathBuf>,
}

/// What happened.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub key: String,
    /// The key's owner (its peer address), as the first frontend named it.
    pub owner: Option<String>,
    pub requests: usize,
    pub answered: usize,
    pub wrong_values: usize,
    pub not_found: usize,
    pub errors: usize,
    /// The first error, if any, to say what went wrong.
    pub first_error: Option<String>,
    /// Whether Ctrl-C stopped the herd before every answer was in.
    pub interrupted: bool,
    /// How many times the dbserver was read during the herd: its `gets`, after − before.
    /// `None` if the dbserver could not be asked afterwards.
    pub db_reads: Option<u64>,
    pub nodes: Vec<NodeLoads>,
    pub latency_ms: Latency,
    pub seconds: f64,
    /// The checker's verdict, with `--check`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<Verdict>,
    /// What the trace saw, with `--trace`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<Traced>,
    /// Requests sent per second, and answers per second, over the whole herd.
    pub rate: f64,
    pub throughput: f64,
    /// Count per HTTP status (`200`, `404`), or per error for requests that got none.
    pub status_codes: std::collections::BTreeMap<String, u64>,
    /// vegeta's fields, in its names and units; all but `errors`, which here stays the count
    /// it always was.
    #[serde(flatten)]
    pub vegeta: Vegeta,
}

/// A traced herd's events, counted, and its picture.
#[derive(Debug, Clone, Serialize)]
pub struct Traced {
    pub trace: String,
    /// Requests that arrived from the cli, over all frontends.
    pub arrivals: usize,
    /// Flights started, per node (name, count).
    pub flights: Vec<(String, usize)>,
    /// Requests that joined a flight instead, over all nodes.
    pub joined: usize,
    /// Reads the dbserver answered, as its own events say.
    pub db_reads: usize,
    pub peer_calls: usize,
    /// Where the picture went, or why it could not be written.
    pub picture: Result<std::path::PathBuf, String>,
    pub lanes: usize,
    pub arrows: usize,
    /// Nodes whose events could not be gathered; events their rings let go.
    pub missing: Vec<String>,
    pub dropped: u64,
}

/// What the herd did to one frontend: its counters, after − before.
#[derive(Debug, Clone, Serialize)]
pub struct NodeLoads {
    pub frontend: String,
    /// The node's name (its peer address), as `/stats` and the log lines give it.
    pub node: String,
    /// Requests the herd sent to this frontend.
    pub requests: usize,
    pub gets: u64,
    pub cache_hits: u64,
    pub loads: u64,
    pub loads_deduped: u64,
    pub peer_loads: u64,
    pub local_loads: u64,
    pub server_requests: u64,
    /// Why its counters could not be read after the herd, if they could not.
    pub error: Option<String>,
}

/// Why a herd could not start.
#[derive(Debug, thiserror::Error)]
pub enum HerdError {
    #[error("the dbserver has no {0:?}; leave out --key to use a fresh one")]
    NoSuchKey(String),
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Runs the herd and prints the report; the exit code says whether every answer was right.
pub async fn run(plan: Plan, json: bool) -> u8 {
    match measure(&plan, !json, tokio::signal::ctrl_c()).await {
        Ok(report) => {
            print_report(&report, render, json);
            if report.interrupted {
                exit::INTERRUPTED
            } else if report.check.as_ref().is_some_and(|v| !v.valid) {
                exit::INVALID
            } else if report.errors + report.wrong_values + report.not_found == 0 {
                exit::FOUND
            } else {
                exit::UNREACHABLE
            }
        }
        Err(e @ HerdError::NoSuchKey(_)) => fail(exit::NOT_FOUND, &e.to_string(), json),
        Err(e) => fail(exit::UNREACHABLE, &e.to_string(), json),
    }
}

/// Fires the herd and counts, until every answer is in or `interrupt` completes (Ctrl-C).
/// `progress` shows a bar on stderr (only at a terminal).
pub async fn measure(
    plan: &Plan,
    progress: bool,
    interrupt: impl std::future::Future,
) -> Result<Report, HerdError> {
    let db = DbClient::new(&plan.db, TIMEOUT);
    let frontends: Vec<FrontendClient> = plan
        .frontends
        .iter()
        .map(|addr| FrontendClient::new(addr, plan.client_timeout))
        .collect();

    let (key, expected) = match &plan.key {
        Some(key) => match db.get(key).await? {
            Some(value) => (key.clone(), value),
            None => return Err(HerdError::NoSuchKey(key.clone())),
        },
        None => {
            let key = format!("herd-{}", fastrand_word(8));
            let value = Bytes::from(format!("value-{}", fastrand_word(12)));
            db.set(&key, value.clone()).await?;
            (key, value)
        }
    };

    let db_before = db.stats().await?.gets;
    let mut nodes_before = Vec::new();
    for frontend in &frontends {
        nodes_before.push(frontend.stats().await?);
    }
    let owner = frontends[0].owner(&key).await.ok().map(|o| o.owner);

    // One trace for the whole herd; each request is a span of its own in it.
    let root = plan.trace.as_ref().map(|_| TraceParent::new());
    let bar = progress_bar(plan.requests as u64, progress);
    let wall = std::time::SystemTime::now();
    let started = Instant::now();
    // Every request is created before any is awaited, and FuturesUnordered polls them all
    // on its first poll: they leave together, which is the whole point of a herd.
    let mut flights: FuturesUnordered<_> = (0..plan.requests)
        .map(|i| {
            let frontend = &frontends[i % frontends.len()];
            let key = &key;
            let trace = root.map(|r| r.sibling());
            async move {
                let sent = Instant::now();
                let answer = frontend.cget_traced(key, trace).await;
                (
                    answer,
                    sent.elapsed(),
                    sent.saturating_duration_since(started),
                )
            }
        })
        .collect();

    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .expect("bounds 1 µs..60 s with 3 digits are valid");
    let (mut answered, mut wrong_values, mut not_found, mut errors) = (0, 0, 0, 0);
    let mut first_error = None;
    let mut status_codes = std::collections::BTreeMap::new();
    let mut tally = Tally::new(wall);
    let mut checker = Checker::new(plan.client_timeout);
    let mut interrupt = std::pin::pin!(interrupt);
    let mut interrupted = false;
    loop {
        let (answer, took, at) = tokio::select! {
            next = flights.next() => match next {
                Some(next) => next,
                None => break,
            },
            _ = &mut interrupt => {
                interrupted = true;
                break;
            }
        };
        latency.saturating_record(took.as_micros() as u64);
        bar.inc(1);
        checker.answer(&key, &expected, &answer, took);
        let (status, bytes_in, error) = match answer {
            Ok(Some(cached)) => {
                answered += 1;
                if cached.value != expected {
                    wrong_values += 1;
                }
                ("200".to_owned(), cached.value.len() as u64, None)
            }
            Ok(None) => {
                not_found += 1;
                ("404".to_owned(), 0, Some("404 Not Found".to_owned()))
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| e.to_string());
                (super::bench::status_of(&e), 0, Some(e.to_string()))
            }
        };
        *status_codes.entry(status).or_insert(0) += 1;
        tally.add(at, took, bytes_in, error);
    }
    drop(flights); // an interrupted herd hangs up on the requests still waiting
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();

    // What the counters say now. A server that cannot be asked (stopping with Ctrl-C, say)
    // loses its row's numbers, not the whole report. Saturating, in case a server restarted
    // (and its counters with it) mid-herd.
    let db_reads = db
        .stats()
        .await
        .ok()
        .map(|s| s.gets.saturating_sub(db_before));
    let mut nodes = Vec::new();
    let mut nodes_after = Vec::new();
    for (i, (frontend, before)) in frontends.iter().zip(&nodes_before).enumerate() {
        let sent =
            plan.requests / frontends.len() + usize::from(i < plan.requests % frontends.len());
        let after = frontend.stats().await;
        nodes_after.push(after.clone().unwrap_or_else(|_| before.clone()));
        nodes.push(NodeLoads::between(frontend.addr(), sent, before, after));
    }
    let check = (plan.check && !interrupted).then(|| {
        let reads = Reads::between(db_reads, &nodes_before, &nodes_after);
        checker.verdict(&reads)
    });
    let trace = match (root, &plan.trace) {
        (Some(root), Some(path)) => Some(draw_trace(root, path, &key, &frontends, &db).await),
        _ => None,
    };
    Ok(Report {
        trace,
        key,
        owner,
        requests: plan.requests,
        answered,
        wrong_values,
        not_found,
        errors,
        first_error,
        interrupted,
        db_reads,
        nodes,
        latency_ms: Latency::of(&latency),
        seconds,
        check,
        rate: plan.requests as f64 / seconds.max(1e-9),
        throughput: answered as f64 / seconds.max(1e-9),
        status_codes,
        vegeta: Vegeta {
            errors: None,
            ..tally.finish(&latency)
        },
    })
}

/// Gathers the herd's events from every node, counts them and draws them.
async fn draw_trace(
    root: TraceParent,
    path: &std::path::Path,
    key: &str,
    frontends: &[FrontendClient],
    db: &DbClient,
) -> Traced {
    let gathered = super::trace::gather(root.trace, Vec::new(), frontends, db).await;
    let count = |kind: Kind| {
        gathered
            .events
            .iter()
            .filter(|e| e.event.kind == kind)
            .count()
    };
    let mut flights: Vec<(String, usize)> = Vec::new();
    for e in gathered
        .events
        .iter()
        .filter(|e| e.event.kind == Kind::FlightStarted)
    {
        match flights.iter_mut().find(|(node, _)| *node == e.node) {
            Some((_, n)) => *n += 1,
            None => flights.push((e.node.clone(), 1)),
        }
    }
    flights.sort();
    let db_node = gathered
        .lanes
        .last()
        .map(|l| l.node.clone())
        .unwrap_or_default();
    let arrivals = gathered
        .events
        .iter()
        .filter(|e| e.event.kind == Kind::Arrived && e.event.detail.peer.is_none())
        .filter(|e| e.node != db_node)
        .count();
    let title = format!("herd of {arrivals} cgets for {key}");
    let diagram = spacetime::build(&title, gathered.lanes.clone(), &gathered.events);
    let picture = spacetime::save(path, &diagram)
        .map(|()| path.to_owned())
        .map_err(|e| format!("cannot write {}: {e}", path.display()));
    Traced {
        trace: format!("{:032x}", root.trace),
        arrivals,
        flights,
        joined: count(Kind::FlightJoined),
        db_reads: gathered
            .events
            .iter()
            .filter(|e| e.event.kind == Kind::Answered && e.node == db_node)
            .count(),
        peer_calls: count(Kind::PeerCallOut),
        picture,
        lanes: diagram.lanes.len(),
        arrows: diagram.arrows(),
        missing: gathered.missing,
        dropped: gathered.dropped,
    }
}

impl NodeLoads {
    fn between(
        frontend: &str,
        requests: usize,
        before: &NodeStats,
        after: Result<NodeStats, ClientError>,
    ) -> Self {
        let (after, error) = match after {
            Ok(after) => (after, None),
            Err(e) => (before.clone(), Some(e.to_string())),
        };
        NodeLoads {
            frontend: frontend.to_owned(),
            node: before.node.clone(),
            requests,
            // Saturating: a node restarted during the herd starts its counters from zero.
            gets: after.gets.saturating_sub(before.gets),
            cache_hits: after.cache_hits.saturating_sub(before.cache_hits),
            loads: after.loads.saturating_sub(before.loads),
            loads_deduped: after.loads_deduped.saturating_sub(before.loads_deduped),
            peer_loads: after.peer_loads.saturating_sub(before.peer_loads),
            local_loads: after.local_loads.saturating_sub(before.local_loads),
            server_requests: after.server_requests.saturating_sub(before.server_requests),
            error,
        }
    }
}

/// The report as a person reads it.
pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let frontends: Vec<&str> = r.nodes.iter().map(|n| short(&n.frontend)).collect();
    if r.interrupted {
        let _ = writeln!(
            out,
            "herd interrupted (Ctrl-C) after {:.2} s: {} cgets of {} sent over {}, {} answered",
            r.seconds,
            r.requests,
            r.key,
            frontends.join(", "),
            r.answered + r.not_found + r.errors
        );
        let owner = r
            .owner
            .as_deref()
            .map_or("its owner".to_owned(), |o| short(o).to_owned());
        let _ = writeln!(
            out,
            "  the load of {} is still in flight on {owner}: it finishes, and is cached, \
             without the cli",
            r.key
        );
    } else {
        let _ = writeln!(
            out,
            "herd: {} cgets of {} fired at once over {}, all answered within {:.2} s",
            r.requests,
            r.key,
            frontends.join(", "),
            r.seconds
        );
    }
    let _ = writeln!(
        out,
        "  answered {} of {} · wrong values {} · not found {} · errors {}",
        r.answered, r.requests, r.wrong_values, r.not_found, r.errors
    );
    if let Some(e) = &r.first_error {
        let _ = writeln!(out, "  first error: {e}");
    }
    match r.db_reads {
        Some(reads) => {
            let _ = writeln!(out, "  database reads: {reads}");
        }
        None => {
            let _ = writeln!(
                out,
                "  database reads: unknown (the dbserver did not answer)"
            );
        }
    }
    let up: Vec<&NodeLoads> = r.nodes.iter().filter(|n| n.error.is_none()).collect();
    let heads: Vec<String> = up.iter().map(|n| short(&n.node).to_owned()).collect();
    let row = |label: &str, value: fn(&NodeLoads) -> String| {
        (label.to_owned(), up.iter().map(|n| value(n)).collect())
    };
    let rows = vec![
        row("requests", |n| n.requests.to_string()),
        row("gets", |n| n.gets.to_string()),
        row("cache_hits", |n| n.cache_hits.to_string()),
        row("loads", |n| n.loads.to_string()),
        row("loads_deduped", |n| n.loads_deduped.to_string()),
        row("peer_loads", |n| n.peer_loads.to_string()),
        row("local_loads", |n| n.local_loads.to_string()),
        row("server_requests", |n| n.server_requests.to_string()),
    ];
    if !up.is_empty() {
        for line in super::table("  node", &heads, &rows).lines() {
            let _ = writeln!(out, "  {}", line.trim_start_matches("  "));
        }
    }
    for n in r.nodes.iter().filter(|n| n.error.is_some()) {
        let _ = writeln!(
            out,
            "  {}: counters unknown ({})",
            short(&n.frontend),
            n.error.as_deref().unwrap_or_default()
        );
    }
    let l = &r.latency_ms;
    let _ = writeln!(
        out,
        "  latency: p50 {:.1} ms · p90 {:.1} ms · p99 {:.1} ms · max {:.1} ms",
        l.p50, l.p90, l.p99, l.max
    );
    if let Some(t) = &r.trace {
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let per_node: Vec<String> = t
            .flights
            .iter()
            .map(|(node, n)| format!("{n} on {}", short(node)))
            .collect();
        let started: usize = t.flights.iter().map(|(_, n)| n).sum();
        let _ = writeln!(
            out,
            "  trace {}: {} · {} · {}{} · {} joined one · {}",
            t.trace,
            plural(t.arrivals, "arrival", "arrivals"),
            plural(t.db_reads, "database read", "database reads"),
            plural(started, "flight", "flights"),
            if per_node.is_empty() {
                String::new()
            } else {
                format!(" ({})", per_node.join(", "))
            },
            t.joined,
            plural(t.peer_calls, "peer call", "peer calls"),
        );
        out.push_str(&super::trace::gaps(&t.missing, t.dropped));
        let _ = match &t.picture {
            Ok(path) => writeln!(
                out,
                "  picture: {} ({} lanes, {} arrows)",
                path.display(),
                t.lanes,
                t.arrows
            ),
            Err(e) => writeln!(out, "  picture: {e}"),
        };
    }
    if let Some(verdict) = &r.check {
        out.push_str(&super::check::render(verdict));
    }
    out
}

/// A progress bar on stderr, or a hidden one.
pub fn progress_bar(len: u64, visible: bool) -> indicatif::ProgressBar {
    if !visible {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {bar:40.cyan/blue} {pos}/{len} answered · {elapsed} {msg}",
        )
        .expect("the template is valid"),
    );
    // Redrawn on a timer, not only when an answer arrives: under `--delay 5s` nothing
    // arrives for five seconds, and a still screen looks like a hang.
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    bar
}

/// A random lowercase word, so every herd starts cold.
fn fastrand_word(len: usize) -> String {
    (0..len).map(|_| fastrand::lowercase()).collect()
}
