//! A trace as a spacetime diagram: one lane per process, time flowing down, an arrow per
//! message. What `gclab cli trace cget` and `gclab cli herd --trace` draw.
//!
//! ```text
//!            cli      8001      8002      8003    dbserver
//! request     ●─────────────────▶│                            GET /cache/foo
//! flight      │         │     [started]
//! peer call   │         │◀───────┤                            tarpc get foo
//! flight      │     [started]    │
//! db read     │         ├─────────────────────────────▶       GET /kv/foo
//! db answer   │         │◀─────────────────────────────┤      found (301 ms)
//! peer answer │         ├───────▶│                            value
//! answer      │◀─────────────────┤                            200 · peer
//! ```
//!
//! The rows are the steps of groupcache's Get path, in causal order, not a time scale: a
//! database read is 300 ms and a peer call 0.3 ms, and a linear scale would hide every step
//! but the read. Each row gives its time since the trace began instead.
//!
//! A herd is the same picture with its messages grouped: one arrow per (from, to) says
//! "334 × GET /cache/…", one box per node says how many requests joined its flight. The
//! database reads are never grouped: one read is one arrow, so `--no-singleflight` draws a
//! thousand of them. Colours mean what they mean in the terminal (hit green, peer yellow,
//! database red), and every arrow and box has a label too.

use std::collections::{BTreeMap, HashMap};

use svg::node::element::{Definitions, Group, Line, Marker, Path, Rectangle, Text, Title};
use svg::Document;

use crate::trace::{Kind, NodeEvent, Outcome};

/// The cli's lane name, as its own events name their node.
pub const CLI: &str = "cli";

const WIDTH: f64 = 800.0;
const LEFT: f64 = 120.0;
const RIGHT: f64 = 64.0;
const TOP: f64 = 78.0;
const ROW: f64 = 54.0;
const LEGEND: f64 = 64.0;

/// One process in the picture.
#[derive(Debug, Clone)]
pub struct Lane {
    /// The node's name, as its events give it (a peer address, the dbserver's address, or
    /// [`CLI`]).
    pub node: String,
    /// What the picture calls it: "cli", "frontend 8002", "dbserver 8080".
    pub label: String,
}

/// What a message or box was about; the colour and the legend's word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Request,
    Hit,
    Peer,
    Db,
    Error,
    Plain,
}

impl Style {
    fn colour(self) -> &'static str {
        match self {
            Style::Request => "#3d6fb6",
            Style::Hit => "#2e9e44",
            Style::Peer => "#c99700",
            Style::Db => "#d62728",
            Style::Error => "#222222",
            Style::Plain => "#777777",
        }
    }

    fn of(outcome: Option<Outcome>) -> Style {
        match outcome {
            Some(Outcome::Main | Outcome::Hot) => Style::Hit,
            Some(Outcome::Peer) => Style::Peer,
            Some(Outcome::Db | Outcome::Found) => Style::Db,
            Some(Outcome::NotFound | Outcome::Error) => Style::Error,
            None => Style::Plain,
        }
    }
}

/// An arrow from one lane to another: one message, or a group of alike ones.
#[derive(Debug, Clone)]
pub struct Arrow {
    pub from: usize,
    pub to: usize,
    pub count: usize,
    pub label: String,
    /// What hovering shows: the events behind it.
    pub detail: String,
    pub style: Style,
    /// Where in its row it leaves, 0 (top) to 1: the messages of a row that are drawn one by
    /// one are spread by their time.
    pub at: f64,
    /// Whether a label is drawn (one per group of single database arrows).
    pub labelled: bool,
    /// The step failed (dashed).
    pub failed: bool,
}

/// A box on a lane: a cache lookup, a flight.
#[derive(Debug, Clone)]
pub struct Note {
    pub lane: usize,
    pub lines: Vec<String>,
    pub detail: String,
    pub style: Style,
}

/// One step of the Get path, across every lane.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: &'static str,
    /// Since the trace began, in milliseconds: the row's first and last event.
    pub from_ms: f64,
    pub to_ms: f64,
    pub arrows: Vec<Arrow>,
    pub notes: Vec<Note>,
}

/// The whole picture, before it is drawn.
#[derive(Debug, Clone)]
pub struct Diagram {
    pub title: String,
    pub lanes: Vec<Lane>,
    pub rows: Vec<Row>,
}

impl Diagram {
    /// How many arrows the picture has (grouped ones count once).
    pub fn arrows(&self) -> usize {
        self.rows.iter().map(|r| r.arrows.len()).sum()
    }
}

/// The steps, in the order a Get takes them. `depth` 0 is the node a client asked, 1 the
/// owner a peer call reached.
const STEPS: [(&str, Step); 10] = [
    ("request", Step::Request),
    ("lookup", Step::Lookup(0)),
    ("flight", Step::Flight(0)),
    ("peer call", Step::PeerCall),
    ("owner lookup", Step::Lookup(1)),
    ("owner flight", Step::Flight(1)),
    ("db read", Step::DbRead),
    ("db answer", Step::DbAnswer),
    ("peer answer", Step::PeerAnswer),
    ("answer", Step::Answer),
];

#[derive(Debug, Clone, Copy)]
enum Step {
    Request,
    Lookup(u8),
    Flight(u8),
    PeerCall,
    DbRead,
    DbAnswer,
    PeerAnswer,
    Answer,
}

/// Builds the diagram of `events` over `lanes` (the cli first, the dbserver last; lanes
/// for nodes the events name but `lanes` lacks, a dead peer say, are added).
pub fn build(title: &str, mut lanes: Vec<Lane>, events: &[NodeEvent]) -> Diagram {
    let mut events: Vec<&NodeEvent> = events.iter().collect();
    events.sort_by_key(|e| e.event.at_ns);
    let t0 = events.first().map_or(0, |e| e.event.at_ns);
    let ms = |e: &NodeEvent| (e.event.at_ns.saturating_sub(t0)) as f64 / 1e6;

    // A request's depth at a frontend: 0 if a client sent it, 1 if a peer did. The
    // dbserver's own events (a read arriving, answered) are drawn by the reads' rows.
    let db_node = lanes.last().map(|l| l.node.clone()).unwrap_or_default();
    let depth: HashMap<(&str, u64), u8> = events
        .iter()
        .filter(|e| e.event.kind == Kind::Arrived && e.node != db_node)
        .map(|e| {
            let from_peer = e.event.detail.peer.is_some();
            ((e.node.as_str(), e.event.span), u8::from(from_peer))
        })
        .collect();
    let depth_of = |e: &NodeEvent| depth.get(&(e.node.as_str(), e.event.span)).copied();
    let key = events
        .iter()
        .find_map(|e| e.event.detail.key.as_deref())
        .map(|k| shorten(k, 24))
        .unwrap_or_default();
    let db_lane = lanes.len().saturating_sub(1);
    for e in &events {
        if !matches!(e.event.kind, Kind::PeerCallOut | Kind::PeerCallIn) {
            continue;
        }
        if let Some(peer) = &e.event.detail.peer {
            if !lanes.iter().any(|l| &l.node == peer) {
                lanes.insert(
                    db_lane.max(1),
                    Lane {
                        node: peer.clone(),
                        label: format!("{} (not asked)", short(peer)),
                    },
                );
            }
        }
    }
    let lane = |node: &str| lanes.iter().position(|l| l.node == node);
    let db = lanes.len() - 1;
    let cli = 0;

    let mut rows = Vec::new();
    for (name, step) in STEPS {
        let picked: Vec<&NodeEvent> = events
            .iter()
            .copied()
            .filter(|e| match step {
                Step::Request => e.event.kind == Kind::Arrived && depth_of(e) == Some(0),
                Step::Lookup(d) => {
                    matches!(e.event.kind, Kind::Hit | Kind::Miss) && depth_of(e) == Some(d)
                }
                Step::Flight(d) => {
                    matches!(e.event.kind, Kind::FlightStarted | Kind::FlightJoined)
                        && depth_of(e) == Some(d)
                }
                Step::PeerCall => e.event.kind == Kind::PeerCallOut,
                Step::DbRead => e.event.kind == Kind::DbReadOut,
                Step::DbAnswer => e.event.kind == Kind::DbReadIn,
                Step::PeerAnswer => e.event.kind == Kind::PeerCallIn,
                Step::Answer => e.event.kind == Kind::Answered && depth_of(e) == Some(0),
            })
            .collect();
        if picked.is_empty() {
            continue;
        }
        let (from_ms, to_ms) = (ms(picked[0]), ms(picked[picked.len() - 1]));
        let mut row = Row {
            name,
            from_ms,
            to_ms,
            arrows: Vec::new(),
            notes: Vec::new(),
        };
        let spread = |e: &NodeEvent| {
            if to_ms > from_ms {
                (ms(e) - from_ms) / (to_ms - from_ms)
            } else {
                0.0
            }
        };
        match step {
            Step::Request => {
                for (node, group) in grouped(&picked, |e| e.node.clone()) {
                    let Some(to) = lane(&node) else { continue };
                    row.arrows.push(arrow(
                        cli,
                        to,
                        &group,
                        if group.len() == 1 {
                            format!("GET /cache/{key}")
                        } else {
                            "requests".to_owned()
                        },
                        Style::Request,
                        ms,
                    ));
                }
            }
            Step::Lookup(_) => {
                for (node, group) in grouped(&picked, |e| e.node.clone()) {
                    let Some(at) = lane(&node) else { continue };
                    let hits = group.iter().filter(|e| e.event.kind == Kind::Hit).count();
                    let misses = group.len() - hits;
                    let mut lines = Vec::new();
                    if hits > 0 {
                        let source = group
                            .iter()
                            .find_map(|e| e.event.detail.outcome)
                            .map_or("cache", Outcome::as_str);
                        lines.push(counted(hits, &format!("hit ({source})"), "hits"));
                    }
                    if misses > 0 {
                        lines.push(counted(misses, "miss", "misses"));
                    }
                    let style = if misses == 0 {
                        Style::Hit
                    } else {
                        Style::Plain
                    };
                    row.notes.push(Note {
                        lane: at,
                        lines,
                        detail: details(&group, ms),
                        style,
                    });
                }
            }
            Step::Flight(_) => {
                for (node, group) in grouped(&picked, |e| e.node.clone()) {
                    let Some(at) = lane(&node) else { continue };
                    let mut flights: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
                    for e in &group {
                        let slot = flights
                            .entry(e.event.detail.flight.unwrap_or(0))
                            .or_default();
                        if e.event.kind == Kind::FlightStarted {
                            slot.0 += 1;
                        } else {
                            slot.1 += 1;
                        }
                    }
                    let mut lines = Vec::new();
                    for (id, (started, joined)) in flights.iter().take(2) {
                        match (started, joined) {
                            (1, 0) => lines.push(format!("flight #{id} started")),
                            (0, j) => lines.push(format!("{j} joined flight #{id}")),
                            (s, j) => {
                                lines.push(format!("flight #{id}:"));
                                lines.push(format!("{s} started, {j} joined"));
                            }
                        }
                    }
                    if flights.len() > 2 {
                        lines.push(format!("and {} more flights", flights.len() - 2));
                    }
                    row.notes.push(Note {
                        lane: at,
                        lines,
                        detail: details(&group, ms),
                        style: Style::Plain,
                    });
                }
            }
            Step::PeerCall => {
                for ((node, peer), group) in grouped(&picked, |e| {
                    (
                        e.node.clone(),
                        e.event.detail.peer.clone().unwrap_or_default(),
                    )
                }) {
                    let (Some(from), Some(to)) = (lane(&node), lane(&peer)) else {
                        continue;
                    };
                    // A call that failed is drawn here, where it happened (a refused
                    // connection fails at once), not among the answers.
                    let failure = group.iter().find_map(|out| failed_call(&events, out));
                    let label = match failure {
                        Some(error) => format!("✗ tarpc get {key}: {}", shorten(error, 32)),
                        None => format!("tarpc get {key}"),
                    };
                    let style = if failure.is_some() {
                        Style::Error
                    } else {
                        Style::Peer
                    };
                    let mut call = arrow(from, to, &group, label, style, ms);
                    call.failed = failure.is_some();
                    row.arrows.push(call);
                }
            }
            Step::DbRead | Step::DbAnswer => {
                // One arrow per read, never grouped: the reads are what the lab counts.
                let many = picked.len();
                for (i, e) in picked.iter().enumerate() {
                    let Some(node) = lane(&e.node) else { continue };
                    let (from, to, label, style, failed) = match step {
                        Step::DbRead => (
                            node,
                            db,
                            counted_label(many, &format!("GET /kv/{key}")),
                            Style::Db,
                            false,
                        ),
                        _ => {
                            let outcome = e.event.detail.outcome;
                            let took = read_time(&events, e);
                            let said = match outcome {
                                Some(Outcome::Error) => format!(
                                    "✗ {}",
                                    shorten(
                                        e.event.detail.error.as_deref().unwrap_or("failed"),
                                        40
                                    )
                                ),
                                Some(Outcome::NotFound) => "no such key".to_owned(),
                                _ => "found".to_owned(),
                            };
                            let label = match (many, took) {
                                (1, Some(took)) => format!("{said} ({took:.0} ms)"),
                                (1, None) => said,
                                (n, _) => format!("{n} answers"),
                            };
                            let failed = outcome == Some(Outcome::Error);
                            let style = if failed { Style::Error } else { Style::Db };
                            (db, node, label, style, failed)
                        }
                    };
                    let mut one = arrow(from, to, &[*e], label, style, ms);
                    one.at = spread(e);
                    one.labelled = i == 0;
                    one.failed = failed;
                    row.arrows.push(one);
                }
            }
            Step::PeerAnswer => {
                for ((node, peer, _), group) in grouped(&picked, |e| {
                    (
                        e.node.clone(),
                        e.event.detail.peer.clone().unwrap_or_default(),
                        e.event.detail.outcome.map(Outcome::as_str),
                    )
                }) {
                    let (Some(to), Some(from)) = (lane(&node), lane(&peer)) else {
                        continue;
                    };
                    let (label, style) = match group[0].event.detail.outcome {
                        // Drawn in the call's row (see there).
                        Some(Outcome::Error) => continue,
                        Some(Outcome::NotFound) => ("no such key".to_owned(), Style::Error),
                        _ => ("value".to_owned(), Style::Peer),
                    };
                    row.arrows.push(arrow(from, to, &group, label, style, ms));
                }
            }
            Step::Answer => {
                for ((node, _), group) in grouped(&picked, |e| {
                    (e.node.clone(), e.event.detail.outcome.map(Outcome::as_str))
                }) {
                    let Some(from) = lane(&node) else { continue };
                    let outcome = group[0].event.detail.outcome;
                    let label = match (outcome, group.len()) {
                        (Some(Outcome::NotFound), _) => "404 no such key".to_owned(),
                        (Some(Outcome::Error), _) => "502 could not load".to_owned(),
                        (Some(source), 1) => format!("200 · from {}", source.as_str()),
                        (Some(source), _) => format!("answers · {}", source.as_str()),
                        (None, _) => "answered".to_owned(),
                    };
                    row.arrows
                        .push(arrow(from, cli, &group, label, Style::of(outcome), ms));
                }
            }
        }
        rows.push(row);
    }
    Diagram {
        title: title.to_owned(),
        lanes,
        rows,
    }
}

/// The events grouped by `by`, groups in the order their first event came.
fn grouped<'a, K: PartialEq + Clone>(
    events: &[&'a NodeEvent],
    by: impl Fn(&NodeEvent) -> K,
) -> Vec<(K, Vec<&'a NodeEvent>)> {
    let mut groups: Vec<(K, Vec<&NodeEvent>)> = Vec::new();
    for e in events {
        let k = by(e);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, group)) => group.push(e),
            None => groups.push((k, vec![e])),
        }
    }
    groups
}

fn arrow(
    from: usize,
    to: usize,
    group: &[&NodeEvent],
    label: String,
    style: Style,
    ms: impl Fn(&NodeEvent) -> f64,
) -> Arrow {
    Arrow {
        from,
        to,
        count: group.len(),
        label: counted_label(group.len(), &label),
        detail: details(group, ms),
        style,
        at: 0.0,
        labelled: true,
        failed: false,
    }
}

/// "GET /cache/foo", or "334 × GET /cache/foo".
fn counted_label(n: usize, label: &str) -> String {
    if n == 1 {
        label.to_owned()
    } else {
        format!("{n} × {label}")
    }
}

fn counted(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        one.to_owned()
    } else {
        format!("{n} {many}")
    }
}

/// Why the peer call `out` failed, if its answer (`peer_call_in`) says it did.
fn failed_call<'a>(events: &[&'a NodeEvent], out: &NodeEvent) -> Option<&'a str> {
    events
        .iter()
        .find(|e| {
            e.event.kind == Kind::PeerCallIn
                && e.node == out.node
                && e.event.span == out.event.span
                && e.event.detail.peer == out.event.detail.peer
                && e.event.at_ns >= out.event.at_ns
        })
        .filter(|e| e.event.detail.outcome == Some(Outcome::Error))
        .map(|e| e.event.detail.error.as_deref().unwrap_or("failed"))
}

/// How long the read that `answer` ended took, from its `db_read_out`.
fn read_time(events: &[&NodeEvent], answer: &NodeEvent) -> Option<f64> {
    events
        .iter()
        .find(|e| {
            e.event.kind == Kind::DbReadOut
                && e.node == answer.node
                && e.event.span == answer.event.span
        })
        .map(|out| answer.event.at_ns.saturating_sub(out.event.at_ns) as f64 / 1e6)
}

/// The events behind an arrow or box, for hovering: the first few, and how many more.
fn details(group: &[&NodeEvent], ms: impl Fn(&NodeEvent) -> f64) -> String {
    let mut lines: Vec<String> = group
        .iter()
        .take(6)
        .map(|e| {
            let d = &e.event.detail;
            let mut line = format!(
                "+{:.2} ms {} {:?} span {:016x}",
                ms(e),
                short(&e.node),
                e.event.kind,
                e.event.span
            );
            for (name, value) in [
                ("peer", d.peer.as_deref().map(short)),
                ("flight", d.flight.map(|f| format!("#{f}"))),
                ("outcome", d.outcome.map(|o| o.as_str().to_owned())),
                ("error", d.error.as_deref().map(str::to_owned)),
            ] {
                if let Some(value) = value {
                    line.push_str(&format!(" {name} {value}"));
                }
            }
            line
        })
        .collect();
    if group.len() > 6 {
        lines.push(format!("… and {} more", group.len() - 6));
    }
    lines.join("\n")
}

/// A node's name as the lab says it: the port, for a loopback address.
pub fn short(node: &str) -> String {
    super::short(node).to_owned()
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max - 1).collect();
    format!("{cut}…")
}

/// When a row's events happened, as its label says it.
fn when(row: &Row) -> String {
    let fmt = |ms: f64| {
        if ms >= 1000.0 {
            format!("{:.2} s", ms / 1000.0)
        } else {
            format!("{ms:.1} ms")
        }
    };
    if row.to_ms - row.from_ms < 0.05 {
        format!("+{}", fmt(row.from_ms))
    } else {
        format!("+{}–{}", fmt(row.from_ms), fmt(row.to_ms))
    }
}

/// The picture, as an SVG document, 800 px wide.
pub fn draw(diagram: &Diagram) -> Document {
    let lanes = diagram.lanes.len().max(2);
    let height = TOP + ROW * diagram.rows.len() as f64 + 24.0 + LEGEND;
    let x = |lane: usize| {
        LEFT + 20.0 + (WIDTH - LEFT - RIGHT - 20.0) * lane as f64 / (lanes - 1) as f64
    };
    let y = |row: usize| TOP + ROW * row as f64;
    let bottom = y(diagram.rows.len()) + 8.0;

    let mut doc = Document::new()
        .set("viewBox", (0, 0, WIDTH, height))
        .set("width", WIDTH)
        .set("height", height)
        .set("font-family", "DejaVu Sans, Verdana, sans-serif")
        .add(
            Rectangle::new()
                .set("width", "100%")
                .set("height", "100%")
                .set("fill", "white"),
        )
        .add(Definitions::new().add(
            Marker::new()
                .set("id", "head")
                .set("viewBox", (0, 0, 10, 10))
                .set("refX", 9)
                .set("refY", 5)
                .set("markerWidth", 7)
                .set("markerHeight", 7)
                .set("orient", "auto-start-reverse")
                .add(
                    Path::new()
                        .set("d", "M 0 0 L 10 5 L 0 10 z")
                        .set("fill", "context-stroke"),
                ),
        ))
        .add(text(16.0, 24.0, &diagram.title, 15.0, "start").set("font-weight", "bold"))
        .add(text(
            16.0,
            42.0,
            "time flows down; each row is a step of the Get path, with its time since the trace began",
            11.0,
            "start",
        ).set("fill", "#555"));

    // Shading: what a lane was doing between rows (waiting on a peer, on the database).
    let mut shading = Group::new().set("class", "activity");
    for (lane, _) in diagram.lanes.iter().enumerate() {
        for (out_step, in_step, colour, label) in [
            ("peer call", "peer answer", "#f3dc7a", "waits for the owner"),
            ("db read", "db answer", "#f4a6a6", "waits for the database"),
        ] {
            let row_of = |name: &str| diagram.rows.iter().position(|r| r.name == name);
            let (Some(from), Some(to)) = (row_of(out_step), row_of(in_step)) else {
                continue;
            };
            let sends = diagram.rows[from].arrows.iter().any(|a| a.from == lane);
            let serves = label.contains("database")
                && diagram.rows[from].arrows.iter().any(|a| a.to == lane);
            if !sends && !serves {
                continue;
            }
            let said = if serves { "reading" } else { label };
            let (top, end) = (y(from) + 24.0, y(to) + 30.0);
            shading = shading.add(
                Group::new()
                    .add(Title::new(said))
                    .add(
                        Rectangle::new()
                            .set("x", x(lane) - 6.0)
                            .set("y", top)
                            .set("width", 12)
                            .set("height", end - top)
                            .set("fill", colour),
                    )
                    .add(
                        // Beside the bar, on the side away from the picture's edge.
                        if serves {
                            text(x(lane) - 9.0, end - 4.0, said, 9.5, "end")
                        } else {
                            text(x(lane) + 9.0, top + 24.0, said, 9.5, "start")
                        }
                        .set("fill", "#6b4e00"),
                    ),
            );
        }
    }

    // Lanes: a header and a line down.
    let mut lane_group = Group::new();
    for (i, lane) in diagram.lanes.iter().enumerate() {
        lane_group = lane_group.add(
            Group::new()
                .set("class", "lane")
                .set("data-node", lane.node.as_str())
                .add(Title::new(lane.node.as_str()))
                .add(text(x(i), TOP - 14.0, &lane.label, 12.0, "middle").set("font-weight", "bold"))
                .add(
                    Line::new()
                        .set("x1", x(i))
                        .set("y1", TOP - 6.0)
                        .set("x2", x(i))
                        .set("y2", bottom)
                        .set("stroke", "#999")
                        .set("stroke-width", 1.5),
                ),
        );
    }
    doc = doc.add(shading).add(lane_group);

    for (r, row) in diagram.rows.iter().enumerate() {
        let top = y(r);
        doc = doc
            .add(text(12.0, top + 22.0, row.name, 11.5, "start").set("font-weight", "bold"))
            .add(text(12.0, top + 37.0, &when(row), 10.0, "start").set("fill", "#555"));
        if r > 0 {
            doc = doc.add(
                Line::new()
                    .set("x1", 8)
                    .set("y1", top)
                    .set("x2", WIDTH - 8.0)
                    .set("y2", top)
                    .set("stroke", "#eee"),
            );
        }
        let mut from_lane: HashMap<usize, usize> = HashMap::new();
        for a in &row.arrows {
            let (x1, x2) = (x(a.from), x(a.to));
            // Several groups from one node (a failed call, then the next in line) are
            // stepped down, in the order they happened, so their labels do not overlap.
            let nth = if a.from == 0 || !a.labelled {
                0
            } else {
                let n = from_lane.entry(a.from).or_default();
                *n += 1;
                *n - 1
            };
            let y1 = top + 10.0 + a.at * 20.0 + 14.0 * nth.min(2) as f64;
            let y2 = y1 + 20.0;
            let mut g = Group::new()
                .set("class", "arrow")
                .set("data-count", a.count)
                .set("data-detail", a.detail.as_str())
                .add(Title::new(format!("{}\n{}", a.label, a.detail)))
                .add(
                    Line::new()
                        .set("x1", x1)
                        .set("y1", y1)
                        .set("x2", x2)
                        .set("y2", y2)
                        .set("stroke", a.style.colour())
                        .set("stroke-width", if a.count > 1 { 3.0 } else { 1.8 })
                        .set("stroke-dasharray", if a.failed { "5 3" } else { "none" })
                        .set("marker-end", "url(#head)"),
                );
            if a.labelled {
                // Arrows to and from the cli share its end, so their labels go by the
                // frontend's end; others by their sender: two arrows into one owner
                // would overlap at their middles.
                let (lx, ly, anchor) = if a.from == 0 && a.to != 0 {
                    (x2 - 8.0, y2 - 8.0, "end")
                } else if a.to == 0 && a.from != 0 {
                    (x1 - 8.0, y1 - 4.0, "end")
                } else if x2 < x1 {
                    (x1 - 10.0, y1 + 2.0, "end")
                } else {
                    (x1 + 10.0, y1 + 2.0, "start")
                };
                g = g.add(
                    text(lx, ly, &a.label, 10.5, anchor)
                        .set("fill", a.style.colour())
                        .set("stroke", "white")
                        .set("stroke-width", 3)
                        .set("paint-order", "stroke"),
                );
            }
            doc = doc.add(g);
        }
        for n in &row.notes {
            let w =
                n.lines.iter().map(|l| l.chars().count()).max().unwrap_or(4) as f64 * 6.2 + 12.0;
            let h = 8.0 + 13.0 * n.lines.len() as f64;
            let mut g = Group::new()
                .set("class", "box")
                .set("data-detail", n.detail.as_str())
                .add(Title::new(format!("{}\n{}", n.lines.join("; "), n.detail)))
                .add(
                    Rectangle::new()
                        .set("x", x(n.lane) - w / 2.0)
                        .set("y", top + 27.0 - h / 2.0)
                        .set("width", w)
                        .set("height", h)
                        .set("rx", 5)
                        .set("fill", "white")
                        .set("stroke", n.style.colour())
                        .set("stroke-width", 1.5),
                );
            for (i, line) in n.lines.iter().enumerate() {
                g = g.add(
                    text(
                        x(n.lane),
                        top + 27.0 - h / 2.0 + 15.0 + 13.0 * i as f64,
                        line,
                        10.5,
                        "middle",
                    )
                    .set("fill", n.style.colour()),
                );
            }
            doc = doc.add(g);
        }
    }

    // The legend: every colour, with its word.
    let mut legend = Group::new().set("class", "legend");
    let ly = bottom + 26.0;
    let items: [(&str, Style); 5] = [
        ("request", Style::Request),
        ("hit (cache)", Style::Hit),
        ("peer", Style::Peer),
        ("database", Style::Db),
        ("error / not found", Style::Error),
    ];
    let mut lx = 16.0;
    for (word, style) in items {
        legend = legend
            .add(
                Line::new()
                    .set("x1", lx)
                    .set("y1", ly)
                    .set("x2", lx + 22.0)
                    .set("y2", ly)
                    .set("stroke", style.colour())
                    .set("stroke-width", 3),
            )
            .add(text(lx + 27.0, ly + 4.0, word, 11.0, "start"));
        lx += 30.0 + word.len() as f64 * 6.6;
    }
    legend = legend.add(text(
        16.0,
        ly + 22.0,
        "dashed: the step failed · a thick arrow stands for several alike messages (the label counts them) · hover for the events",
        10.0,
        "start",
    ).set("fill", "#555"));
    doc.add(legend)
}

/// The same picture as a self-contained HTML page: no external scripts or styles, and
/// hovering an arrow or box shows its events below the picture.
pub fn html(diagram: &Diagram) -> String {
    let svg = draw(diagram).to_string();
    let title = escape(&diagram.title);
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: "DejaVu Sans", Verdana, sans-serif; margin: 16px; max-width: 820px; }}
.arrow, .box {{ cursor: default; }}
.arrow:hover line {{ stroke-width: 5; }}
.box:hover rect {{ stroke-width: 3; }}
#details {{ white-space: pre-wrap; background: #f6f6f6; padding: 8px; min-height: 4em; font-size: 12px; }}
</style>
</head>
<body>
<p id="summary"></p>
{svg}
<pre id="details">Hover over an arrow or a box to see the events behind it.</pre>
<script>
// Inline, so the page works from a file with nothing else: hovering shows an element's events.
const details = document.getElementById("details");
for (const el of document.querySelectorAll("[data-detail]")) {{
  el.addEventListener("mouseenter", () => {{ details.textContent = el.getAttribute("data-detail"); }});
}}
const lanes = document.querySelectorAll(".lane").length;
const arrows = document.querySelectorAll(".arrow").length;
document.getElementById("summary").textContent = lanes + " lanes, " + arrows + " arrows";
</script>
</body>
</html>
"#
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn text(x: f64, y: f64, content: &str, size: f64, anchor: &str) -> Text {
    Text::new(content)
        .set("x", x)
        .set("y", y)
        .set("font-size", size)
        .set("text-anchor", anchor)
}

/// Writes the picture to `path`: HTML if it ends in `.html`, else SVG.
pub fn save(path: &std::path::Path, diagram: &Diagram) -> std::io::Result<()> {
    let is_html = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
    if is_html {
        std::fs::write(path, html(diagram))
    } else {
        svg::save(path, &draw(diagram))
    }
}
