//! `gclab cli trace cget`: one cget, traced, its events gathered from every node and drawn.
//!
//! The cli begins a trace (a W3C `traceparent` on its request), notes when it sent and
//! when the answer came, then asks every frontend and the dbserver for their events of
//! that trace (`GET /events?trace=ID`). The events are printed as a list, oldest first, and
//! drawn as a spacetime diagram ([`super::spacetime`]). `herd --trace` gathers the same
//! way ([`gather`]).

use std::path::PathBuf;

use serde::Serialize;

use super::spacetime::{self, Lane, CLI};
use super::{exit, fail, print_report, short, TIMEOUT};
use crate::client::{ClientError, DbClient, FrontendClient};
use crate::trace::{now_ns, Detail, Event, Kind, NodeEvent, Outcome, Span, TraceParent};

/// What to trace, and where to draw it.
#[derive(Debug, Clone)]
pub struct Plan {
    pub key: String,
    /// The frontend to ask (HTTP address).
    pub frontend: String,
    /// Every frontend, whose events are gathered (HTTP addresses).
    pub frontends: Vec<String>,
    pub db: String,
    pub output: PathBuf,
}

/// What a trace came to.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub trace: String,
    pub key: String,
    /// Where the value came from (`main`, `hot`, `peer`, `db`), or what went wrong.
    pub outcome: String,
    pub events: Vec<NodeEvent>,
    /// Nodes whose events could not be gathered, and why.
    pub missing: Vec<String>,
    /// Events the nodes' rings had already let go (a busy node, a small `--events`).
    pub dropped: u64,
    pub picture: PathBuf,
    /// The dbserver's address, as its events name it.
    pub db: String,
    pub lanes: usize,
    pub arrows: usize,
}

/// Every node's events of one trace.
#[derive(Debug, Clone, Default)]
pub struct Gathered {
    pub events: Vec<NodeEvent>,
    /// The lanes: cli, each frontend that answered, the dbserver.
    pub lanes: Vec<Lane>,
    pub missing: Vec<String>,
    pub dropped: u64,
}

/// Asks every frontend and the dbserver for their events of `trace`, and adds the cli's own.
pub async fn gather(
    trace: u128,
    cli_events: Vec<Event>,
    frontends: &[FrontendClient],
    db: &DbClient,
) -> Gathered {
    let mut gathered = Gathered {
        lanes: vec![Lane {
            node: CLI.to_owned(),
            label: "cli".to_owned(),
        }],
        ..Gathered::default()
    };
    gathered
        .events
        .extend(cli_events.into_iter().map(|event| NodeEvent {
            node: CLI.to_owned(),
            event,
        }));
    let mut keep = |answer: Result<crate::trace::EventsAnswer, ClientError>,
                    what: &str,
                    label: &dyn Fn(&str) -> String| match answer {
        Ok(answer) => {
            gathered.dropped += answer.dropped;
            gathered.lanes.push(Lane {
                label: label(&answer.node),
                node: answer.node,
            });
            gathered.events.extend(answer.events);
        }
        Err(e) => gathered.missing.push(format!("{what}: {e}")),
    };
    for frontend in frontends {
        let answer = frontend.events(trace).await;
        keep(answer, frontend.addr(), &|node| {
            format!("frontend {}", short(node))
        });
    }
    let answer = db.events(trace).await;
    keep(answer, db.addr(), &|node| {
        format!("dbserver {}", short(node))
    });
    if gathered.missing.iter().any(|m| m.starts_with(db.addr())) {
        // Its lane is still drawn, so the frontends' reads point somewhere.
        gathered.lanes.push(Lane {
            node: db.addr().to_owned(),
            label: format!("dbserver {} (not asked)", short(db.addr())),
        });
    }
    gathered.events.sort_by_key(|e| e.event.at_ns);
    gathered
}

/// Runs the traced cget, prints what happened and draws it.
pub async fn run(plan: Plan, json: bool) -> u8 {
    let frontend = FrontendClient::new(&plan.frontend, TIMEOUT);
    let frontends: Vec<FrontendClient> = plan
        .frontends
        .iter()
        .map(|f| FrontendClient::new(f, TIMEOUT))
        .collect();
    let db = DbClient::new(&plan.db, TIMEOUT);

    let root = TraceParent::new();
    let me = Span {
        trace: root.trace,
        span: root.parent,
    };
    let mut mine = vec![cli_event(
        me,
        Kind::Sent,
        Detail {
            key: Some(plan.key.as_str().into()),
            peer: Some(plan.frontend.clone()),
            ..Detail::default()
        },
    )];
    let answer = frontend.cget_traced(&plan.key, Some(root)).await;
    let (outcome, code) = match &answer {
        Ok(Some(cached)) => (cached.source.clone(), exit::FOUND),
        Ok(None) => ("not_found".to_owned(), exit::NOT_FOUND),
        // Nothing was traced: say why, as cget would.
        Err(e @ (ClientError::Unreachable { .. } | ClientError::WrongServer { .. })) => {
            return fail(exit::UNREACHABLE, &e.to_string(), json);
        }
        Err(e) => (format!("error: {e}"), exit::UNREACHABLE),
    };
    mine.push(cli_event(
        me,
        Kind::Received,
        Detail {
            outcome: Some(match outcome.as_str() {
                "main" => Outcome::Main,
                "hot" => Outcome::Hot,
                "peer" => Outcome::Peer,
                "db" => Outcome::Db,
                "not_found" => Outcome::NotFound,
                _ => Outcome::Error,
            }),
            ..Detail::default()
        },
    ));

    let gathered = gather(root.trace, mine, &frontends, &db).await;
    let title = format!(
        "cget {} through {}: {}",
        plan.key,
        short(&plan.frontend),
        outcome
    );
    let diagram = spacetime::build(&title, gathered.lanes.clone(), &gathered.events);
    if let Err(e) = spacetime::save(&plan.output, &diagram) {
        return fail(
            exit::USAGE,
            &format!("cannot write {}: {e}", plan.output.display()),
            json,
        );
    }
    let report = Report {
        trace: format!("{:032x}", root.trace),
        key: plan.key,
        outcome,
        events: gathered.events,
        missing: gathered.missing,
        dropped: gathered.dropped,
        picture: plan.output,
        db: gathered
            .lanes
            .last()
            .map(|l| l.node.clone())
            .unwrap_or_default(),
        lanes: diagram.lanes.len(),
        arrows: diagram.arrows(),
    };
    print_report(&report, render, json);
    code
}

fn cli_event(span: Span, kind: Kind, detail: Detail) -> Event {
    Event {
        trace: span.trace,
        span: span.span,
        at_ns: now_ns(),
        kind,
        detail,
    }
}

/// The trace as a list, oldest first: one line per event.
pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "trace {} · cget {} → {}", r.trace, r.key, r.outcome);
    let t0 = r.events.first().map_or(0, |e| e.event.at_ns);
    for e in &r.events {
        let _ = writeln!(
            out,
            "  {:>10}  {:<8} {}",
            format!("+{:.2} ms", e.event.at_ns.saturating_sub(t0) as f64 / 1e6),
            if e.node == r.db {
                "dbserver"
            } else {
                short(&e.node)
            },
            said(e)
        );
    }
    out.push_str(&gaps(&r.missing, r.dropped));
    let _ = writeln!(
        out,
        "picture: {} ({} lanes, {} arrows)",
        r.picture.display(),
        r.lanes,
        r.arrows
    );
    out
}

/// What a gathered trace may lack, one line each: nodes that could not be asked, and events
/// their rings had already let go.
pub fn gaps(missing: &[String], dropped: u64) -> String {
    let mut out = String::new();
    for missing in missing {
        out.push_str(&format!("  (no events from {missing})\n"));
    }
    if dropped > 0 {
        out.push_str(&format!(
            "  (the nodes' rings had let {dropped} older events go: the picture may miss some)\n"
        ));
    }
    out
}

/// One event in words.
pub fn said(e: &NodeEvent) -> String {
    let d = &e.event.detail;
    let peer = d.peer.as_deref().map(short).unwrap_or("?");
    let outcome = d.outcome.map_or("", Outcome::as_str);
    let error = d.error.as_deref().unwrap_or("");
    match e.event.kind {
        Kind::Sent => format!(
            "sent GET /cache/{} to {peer}",
            d.key.as_deref().unwrap_or("")
        ),
        Kind::Received => format!("received the answer ({outcome})"),
        Kind::Arrived if d.peer.is_some() => format!("asked by {peer} (tarpc get)"),
        Kind::Arrived => format!("request arrived: {}", d.key.as_deref().unwrap_or("")),
        Kind::Hit => format!("hit in the {outcome} cache"),
        Kind::Miss => "cache miss".to_owned(),
        Kind::FlightStarted => format!("started flight #{}", d.flight.unwrap_or(0)),
        Kind::FlightJoined => format!("joined flight #{}", d.flight.unwrap_or(0)),
        Kind::PeerCallOut => format!("asks {peer}"),
        Kind::PeerCallIn if d.outcome == Some(Outcome::Error) => {
            format!("{peer} could not answer: {error}")
        }
        Kind::PeerCallIn => format!("{peer} answered ({outcome})"),
        Kind::DbReadOut => "reads the dbserver".to_owned(),
        Kind::DbReadIn if d.outcome == Some(Outcome::Error) => format!("the read failed: {error}"),
        Kind::DbReadIn => format!("the dbserver answered ({outcome})"),
        Kind::Answered => format!("answered ({outcome})"),
    }
}
