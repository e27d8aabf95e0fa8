//! What a node prints in its terminal: one line per event a learner watches.
//!
//! Lines go to stderr through `tracing`, so `RUST_LOG=warn` quiets a node under load.
//! Colours carry meaning — green for a cache hit, yellow for a peer, red for the database —
//! but never carry it alone: every line also says it in words. They are off when `NO_COLOR`
//! is set or stderr is not a terminal, so logs piped to a file stay plain text.

use std::io::IsTerminal;

use colored::{ColoredString, Colorize};
use tracing_subscriber::fmt::{format::Writer, time::FormatTime};
use tracing_subscriber::EnvFilter;

/// Whether stderr gets colours: a terminal, and nobody asked for `NO_COLOR`.
pub fn color_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// Starts logging to stderr at `info`, unless `RUST_LOG` says otherwise.
/// Calling it twice is harmless (tests start many servers in one process).
pub fn init() {
    let color = color_enabled();
    colored::control::set_override(color);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(false)
        .with_timer(ClockTime)
        .try_init();
}

/// `13:15:07.123`, UTC: short enough to compare lines across terminals at a glance.
/// The alternative, tracing's default RFC 3339 stamp, is three times as long.
struct ClockTime;

impl FormatTime for ClockTime {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let (secs, millis) = (now.as_secs(), now.subsec_millis());
        let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
        write!(w, "{h:02}:{m:02}:{s:02}.{millis:03}")
    }
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
