//! Traces: what happened to one request, on every node it reached.
//!
//! A trace id travels with a request, the ecosystem's way:
//! - on HTTP as a W3C `traceparent` header (`00-<trace id>-<parent span>-01`), taken from
//!   the client when it sends one and made up otherwise;
//! - between peers in tarpc's own context (`context.trace_context`), which tarpc already
//!   carries in every call.
//!
//! Each server notes the events of a request ([`Kind`]: arrived, hit or miss, flight started
//! or joined, peer call out and in, database read out and in, answered) in its own bounded
//! ring ([`Events`]). `GET /events?trace=ID` serves them as JSON, and `gclab cli trace`
//! gathers them from every node to draw the request's travel.
//!
//! Why a ring in memory, not a tracing exporter (OpenTelemetry, Jaeger): the lab must draw
//! a run with nothing else installed, and a herd's thousand requests are a few thousand
//! events; a ring of 100k of them costs about 10 MB and never grows. When it is full the
//! oldest event goes, and is counted (`dropped`).

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

/// The HTTP header that carries the trace context (W3C Trace Context).
pub const TRACEPARENT: &str = "traceparent";

/// How many events a server keeps by default (`--events`).
pub const DEFAULT_CAPACITY: usize = 100_000;

/// The most events one `GET /events` answer carries; a wider query gets the newest ones.
pub const MAX_ANSWER_EVENTS: usize = 200_000;

/// A trace id and the span of the caller that sent it: one `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace: u128,
    pub parent: u64,
}

impl TraceParent {
    /// A new trace, begun here.
    pub fn new() -> TraceParent {
        TraceParent {
            trace: nonzero_u128(),
            parent: nonzero_u64(),
        }
    }

    /// The same trace, sent by another span of the caller (each request of a herd).
    pub fn sibling(&self) -> TraceParent {
        TraceParent {
            trace: self.trace,
            parent: nonzero_u64(),
        }
    }

    /// Reads a `traceparent` header: version `00`, 32 hex digits of trace id, 16 of parent
    /// span, 2 of flags; all-zero ids are invalid. Anything else is ignored, as the W3C spec
    /// asks, and the request gets a trace of its own.
    pub fn parse(header: &str) -> Option<TraceParent> {
        let mut parts = header.trim().split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        if version != "00" || !hex(trace, 32) || !hex(parent, 16) || !hex(flags, 2) {
            return None;
        }
        let trace = u128::from_str_radix(trace, 16).ok()?;
        let parent = u64::from_str_radix(parent, 16).ok()?;
        (trace != 0 && parent != 0).then_some(TraceParent { trace, parent })
    }

    /// The header value.
    pub fn header(&self) -> String {
        format!("00-{:032x}-{:016x}-01", self.trace, self.parent)
    }
}

impl Default for TraceParent {
    fn default() -> Self {
        TraceParent::new()
    }
}

/// One request at one node: the trace it belongs to, and this node's span for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub trace: u128,
    pub span: u64,
}

impl Span {
    /// A span of its own for a request that arrived carrying `parent` (or nothing).
    pub fn arriving(parent: Option<TraceParent>) -> Span {
        Span {
            trace: parent.map_or_else(nonzero_u128, |p| p.trace),
            span: nonzero_u64(),
        }
    }

    /// The `traceparent` this span sends on its own calls.
    pub fn as_parent(&self) -> TraceParent {
        TraceParent {
            trace: self.trace,
            parent: self.span,
        }
    }
}

/// What happened. The names are the ones `GET /events` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A request arrived: from a client (`peer` empty) or from the peer named.
    Arrived,
    /// The key was in a cache (`outcome`: main or hot).
    Hit,
    Miss,
    /// This request began a load (`flight`: the flight's id on this node).
    FlightStarted,
    /// This request waited for a load already in flight.
    FlightJoined,
    /// A call to `peer` left, and its answer came back (`outcome`, `error`).
    PeerCallOut,
    PeerCallIn,
    /// A read from the dbserver left, and its answer came back.
    DbReadOut,
    DbReadIn,
    /// The request was answered (`outcome`: where the value came from, or what went wrong).
    Answered,
    /// The cli's own events: a request sent, its answer received.
    Sent,
    Received,
}

/// How a step ended: where a value came from, or what went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Main,
    Hot,
    Peer,
    Db,
    /// The dbserver had the key (its own answer).
    Found,
    NotFound,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Main => "main",
            Outcome::Hot => "hot",
            Outcome::Peer => "peer",
            Outcome::Db => "db",
            Outcome::Found => "found",
            Outcome::NotFound => "not_found",
            Outcome::Error => "error",
        }
    }
}

/// What an event says beyond its kind; each kind fills the fields it needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Detail {
    /// The key, on `arrived`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<CompactString>,
    /// The caller's span, on `arrived`, from its `traceparent`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "hex64_opt")]
    pub parent: Option<u64>,
    /// The peer called, or the peer that called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flight: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Why it failed, for an `error` outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Box<str>>,
}

/// One event, as a server keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(with = "hex128")]
    pub trace: u128,
    #[serde(with = "hex64")]
    pub span: u64,
    /// When, in nanoseconds since the Unix epoch: the nodes of this lab share one clock.
    pub at_ns: u64,
    pub kind: Kind,
    #[serde(flatten)]
    pub detail: Detail,
}

/// An event with the node that recorded it: one element of `GET /events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeEvent {
    pub node: String,
    #[serde(flatten)]
    pub event: Event,
}

/// `GET /events`: a node's events for the query, and how full its ring is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventsAnswer {
    pub node: String,
    pub capacity: usize,
    /// Events recorded since the node started, and those the ring has let go.
    pub recorded: u64,
    pub dropped: u64,
    pub events: Vec<NodeEvent>,
}

/// A server's bounded ring of events.
pub struct Events {
    node: String,
    capacity: usize,
    // std `Mutex`, not a lock-free queue: a push holds it for a few nanoseconds, and a
    // node has a handful of threads; `GET /events` copies out under it.
    ring: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    events: VecDeque<Slot>,
    recorded: u64,
    dropped: u64,
}

/// An event as the ring keeps it: 48 bytes, its detail boxed only when it says more than an
/// outcome. Most events of a cache hit (the hit, the answer) are only a kind and an outcome,
/// and a ring of 100k full-size events (144 bytes) would cost the hit path its memory traffic.
struct Slot {
    trace: u128,
    span: u64,
    at_ns: u64,
    kind: Kind,
    outcome: Option<Outcome>,
    rest: Option<Box<Detail>>,
}

impl Slot {
    fn new(at_ns: u64, span: Span, kind: Kind, detail: Detail) -> Slot {
        let only_outcome = detail.key.is_none()
            && detail.parent.is_none()
            && detail.peer.is_none()
            && detail.flight.is_none()
            && detail.error.is_none();
        Slot {
            trace: span.trace,
            span: span.span,
            at_ns,
            kind,
            outcome: detail.outcome,
            rest: (!only_outcome).then(|| Box::new(detail)),
        }
    }

    fn event(&self) -> Event {
        let mut detail = self.rest.as_deref().cloned().unwrap_or_default();
        detail.outcome = self.outcome;
        Event {
            trace: self.trace,
            span: self.span,
            at_ns: self.at_ns,
            kind: self.kind,
            detail,
        }
    }
}

impl Events {
    /// A ring for `node` that keeps the last `capacity` events; 0 records nothing.
    pub fn new(node: &str, capacity: usize) -> Events {
        Events {
            node: node.to_owned(),
            capacity,
            ring: Mutex::new(Ring::default()),
        }
    }

    /// Notes an event of `span`, now.
    pub fn note(&self, span: Span, kind: Kind, detail: Detail) {
        if self.capacity > 0 {
            self.note_at(now_ns(), span, kind, detail);
        }
    }

    /// Notes an event that happened at `at_ns` (taken earlier with [`now_ns`]).
    pub fn note_at(&self, at_ns: u64, span: Span, kind: Kind, detail: Detail) {
        if self.capacity == 0 {
            return;
        }
        let slot = Slot::new(at_ns, span, kind, detail);
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        if ring.events.len() == self.capacity {
            ring.events.pop_front();
            ring.dropped += 1;
        }
        ring.events.push_back(slot);
        ring.recorded += 1;
    }

    /// The events of `trace` (all traces if `None`) at or after `since_ns`, oldest first.
    pub fn query(&self, trace: Option<u128>, since_ns: u64) -> EventsAnswer {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let matching: Vec<&Slot> = ring
            .events
            .iter()
            .filter(|e| trace.is_none_or(|t| e.trace == t) && e.at_ns >= since_ns)
            .collect();
        let newest = &matching[matching.len().saturating_sub(MAX_ANSWER_EVENTS)..];
        EventsAnswer {
            node: self.node.clone(),
            capacity: self.capacity,
            recorded: ring.recorded,
            dropped: ring.dropped,
            events: newest
                .iter()
                .map(|e| NodeEvent {
                    node: self.node.clone(),
                    event: e.event(),
                })
                .collect(),
        }
    }

    /// How many events the ring holds now.
    pub fn len(&self) -> usize {
        self.ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .events
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Now, in nanoseconds since the Unix epoch. The wall clock, not `Instant`: events from
/// several processes are put on one time line.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Parses a trace id as `GET /events?trace=` takes it: 32 hex digits (or fewer).
pub fn parse_trace_id(text: &str) -> Option<u128> {
    (!text.is_empty() && text.len() <= 32)
        .then(|| u128::from_str_radix(text, 16).ok())
        .flatten()
}

fn nonzero_u128() -> u128 {
    fastrand::u128(1..)
}

fn nonzero_u64() -> u64 {
    fastrand::u64(1..)
}

mod hex128 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{id:032x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let text = String::deserialize(d)?;
        u128::from_str_radix(&text, 16).map_err(serde::de::Error::custom)
    }
}

mod hex64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{id:016x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = String::deserialize(d)?;
        u64::from_str_radix(&text, 16).map_err(serde::de::Error::custom)
    }
}

mod hex64_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => super::hex64::serialize(id, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| u64::from_str_radix(&t, 16).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips_and_garbage_is_ignored() {
        let tp = TraceParent::new();
        assert_eq!(TraceParent::parse(&tp.header()), Some(tp));
        let w3c = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = TraceParent::parse(w3c).unwrap();
        assert_eq!(parsed.trace, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(parsed.parent, 0x00f067aa0ba902b7);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-zzf067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_events_and_counts_the_rest() {
        let events = Events::new("n", 3);
        let span = Span::arriving(None);
        for i in 0..5 {
            events.note_at(i, span, Kind::Arrived, Detail::default());
        }
        let answer = events.query(None, 0);
        assert_eq!((answer.recorded, answer.dropped), (5, 2));
        let times: Vec<u64> = answer.events.iter().map(|e| e.event.at_ns).collect();
        assert_eq!(times, [2, 3, 4]);
        assert_eq!(events.query(None, 4).events.len(), 1);
        assert_eq!(events.query(Some(span.trace + 1), 0).events.len(), 0);
    }

    #[test]
    fn a_ring_slot_is_small() {
        // The hit path writes three of these per request; see `Slot`.
        assert!(std::mem::size_of::<Slot>() <= 48);
    }

    #[test]
    fn a_ring_of_capacity_zero_records_nothing() {
        let events = Events::new("n", 0);
        events.note(Span::arriving(None), Kind::Arrived, Detail::default());
        assert!(events.is_empty());
    }

    #[test]
    fn events_read_back_as_they_were_written() {
        let events = Events::new("127.0.0.1:8001", 10);
        let span = Span::arriving(Some(TraceParent::new()));
        events.note(
            span,
            Kind::PeerCallIn,
            Detail {
                peer: Some("127.0.0.1:8002".into()),
                outcome: Some(Outcome::Error),
                error: Some("connection refused".into()),
                parent: Some(7),
                ..Detail::default()
            },
        );
        let json = serde_json::to_string(&events.query(None, 0)).unwrap();
        let back: EventsAnswer = serde_json::from_str(&json).unwrap();
        assert_eq!(back.events, events.query(None, 0).events);
        assert!(json.contains(r#""kind":"peer_call_in""#), "{json}");
    }
}
