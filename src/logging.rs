//! What a node prints in its terminal: one line per event a learner watches.
//!
//! Lines go to stderr through `tracing`, so `RUST_LOG=warn` quiets a node under load.
//! An event names its kind in a field, `tracing::info!(kind = "db", "asking dbserver for
//! {key}")`, and the line is painted by kind: green for a cache hit, yellow for a peer, red
//! for the database. The words say the same, so the colour is never the only carrier of
//! meaning. Colours are off when `NO_COLOR` is set or stderr is not a terminal, so logs
//! piped to a file stay plain text.
//!
//! `--log-format json` prints each event as one JSON object instead, for a log stack such as
//! Loki: tracing-subscriber's JSON formatter, with the node's name added, and one more event
//! per request (`kind: "answer"`, with `key`, `source`, `status` and `duration_ms`) that
//! the human format leaves out, since the lines around it already tell that story.
//!
//! Why paint whole lines by a field rather than colour words inside the message:
//! `tracing-subscriber` escapes control characters in messages (a key could otherwise
//! smuggle terminal escapes into your screen), which turns inline colour codes into
//! visible `\x1b[31m` noise.

use std::fmt;
use std::io::IsTerminal;

use colored::{ColoredString, Colorize};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Whether stderr gets colours: never with `NO_COLOR`, always with `CLICOLOR_FORCE` (which
/// `gclab up` sets for its children, whose stderr is a pipe), else when it is a terminal.
pub fn color_enabled() -> bool {
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        return false;
    }
    std::env::var_os("CLICOLOR_FORCE").is_some_and(|v| !v.is_empty() && v != "0")
        || std::io::stderr().is_terminal()
}

/// Whether stdout gets colours (for commands that print their story there: demo, up).
pub fn stdout_color_enabled() -> bool {
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        return false;
    }
    std::env::var_os("CLICOLOR_FORCE").is_some_and(|v| !v.is_empty() && v != "0")
        || std::io::stdout().is_terminal()
}

/// The target of the lines every request prints (`cli asked for foo`, `foo found in the
/// main cache`), so that `--quiet-hits` (or `RUST_LOG=info,gclab::hits=off`) can drop them
/// and leave the loads: the database and peer lines a learner is looking for.
pub const HITS: &str = "gclab::hits";

/// The target of the one event per answered request (`kind: "answer"`), which only the JSON
/// format prints.
pub const ANSWERS: &str = "gclab::answers";

/// Our events at `info`. tarpc's own only at `error`: its warnings about connections that
/// close are the lab's to tell, in its own words (see `peers.rs`).
const DEFAULT_FILTER: &str = "info,tarpc=error";

/// How a server writes its events: `human` lines, or `json` objects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Human,
    Json,
}

/// Starts logging to stderr at `info`, unless `RUST_LOG` says otherwise; `quiet_hits`
/// drops the per-request lines. `node` names the server in JSON objects. Calling it twice is
/// harmless (tests start many servers in one process).
pub fn init(quiet_hits: bool) {
    init_as(quiet_hits, Format::Human, "");
}

/// [`init`], in the given format.
pub fn init_as(quiet_hits: bool, format: Format, node: &str) {
    let color = color_enabled() && format == Format::Human;
    colored::control::set_override(color);
    let mut default = DEFAULT_FILTER.to_owned();
    if quiet_hits {
        default.push_str(&format!(",{HITS}=off,{ANSWERS}=off"));
    } else if format == Format::Human {
        default.push_str(&format!(",{ANSWERS}=off"));
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // When stderr is gone (its terminal closed: `tmux kill-session`), a line that cannot
        // be written is dropped. tracing-subscriber's default reports the failure with
        // `eprintln!`, to the same dead stderr, which panics: the task that logged died
        // half-way through, and a node could be left with its peer port closed and its
        // HTTP port still serving, deaf to the SIGHUP that should have stopped it.
        .log_internal_errors(false);
    let _ = match format {
        Format::Human => builder.event_format(Line).try_init(),
        Format::Json => builder
            .event_format(JsonWithNode {
                inner: tracing_subscriber::fmt::format()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false),
                node: node.to_owned(),
            })
            .try_init(),
    };
}

/// tracing-subscriber's JSON object for an event, with `"node"` added. The formatter has no
/// place for a field of the process's own, and a span entered around the server would not
/// reach the tasks it spawns; so the object is made, then given the field.
struct JsonWithNode {
    inner: tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Json>,
    node: String,
}

impl<S, N> FormatEvent<S, N> for JsonWithNode
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut object = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut object), event)?;
        match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&object) {
            Ok(mut fields) => {
                let mut line = serde_json::Map::new();
                line.insert("node".to_owned(), self.node.clone().into());
                line.append(&mut fields);
                writeln!(w, "{}", serde_json::Value::Object(line))
            }
            // Never expected; the object as tracing-subscriber made it is still one line.
            Err(_) => write!(w, "{object}"),
        }
    }
}

/// One event as one line: `13:15:07.123  asking dbserver for foo`, painted by its kind.
/// Warnings and errors say so in words. The time is UTC, short enough to compare lines
/// across terminals at a glance (tracing's default RFC 3339 stamp is three times as long).
struct Line;

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let (secs, millis) = (now.as_secs(), now.subsec_millis());
        let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = match *event.metadata().level() {
            Level::ERROR => "error: ",
            Level::WARN => "warning: ",
            _ => "",
        };
        let line = format!("{level}{}", fields.message);
        let line = match fields.kind.as_str() {
            "hit" => hit(&line),
            "peer" => peer(&line),
            "db" => db(&line),
            _ if !level.is_empty() => line.bold(),
            _ => line.normal(),
        };
        writeln!(w, "{h:02}:{m:02}:{s:02}.{millis:03}  {line}")
    }
}

/// The two fields our events carry: the message and its kind.
#[derive(Default)]
struct Fields {
    message: String,
    kind: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "kind" => self.kind = value.to_owned(),
            "message" => self.message = printable(value),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = printable(&format!("{value:?}"));
        }
    }
}

/// Escapes control characters, so text from the network (a key) cannot drive the terminal.
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| match c.is_control() {
            true => c.escape_default().collect::<Vec<_>>(),
            false => vec![c],
        })
        .collect()
}

/// A cache hit: green.
pub fn hit(text: &str) -> ColoredString {
    text.green()
}

/// A peer: yellow.
pub fn peer(text: &str) -> ColoredString {
    text.yellow()
}

/// The database: red.
pub fn db(text: &str) -> ColoredString {
    text.red()
}

/// The colour that goes with a Get's source (`main`, `hot`, `peer`, `db`).
pub fn source(source: &str) -> ColoredString {
    match source {
        "main" | "hot" => hit(source),
        "peer" => peer(source),
        "db" => db(source),
        other => other.normal(),
    }
}

/// A value as a log line shows it: lossy UTF-8, cut after 60 characters.
pub fn preview(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}… ({} bytes)", &text[..cut], value.len()),
        None => text.into_owned(),
    }
}
