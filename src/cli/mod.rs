//! `gclab cli`: the client side of the lab.
//!
//! - [`kv`] — `set`, `put` (a blob) and `get` on the dbserver, `cget` through a frontend;
//! - [`herd`] — many cgets of one cold key at once, and the database reads they cost;
//! - [`bench`] — a load generator: open loop at a rate, or closed loop at a concurrency;
//! - [`stats`] — every node's counters as one table;
//! - [`fault`] — fault rules on the frontends' calls: partitions, delays, drops, stalls;
//! - [`check`] — `--check`: the verdict on a herd or bench, valid or INVALID;
//! - [`trace`] — `trace cget`: one request's events from every node, and its picture;
//! - [`spacetime`] — a trace drawn as a spacetime diagram (SVG or self-contained HTML);
//! - [`chaos`] — a seeded run of load while faults come and go, with its timeline.
//!
//! Values and reports go to stdout, explanations and errors to stderr. Exit codes: 0 found
//! (or done), 1 not found, 2 usage error (clap's own, or a request a server refused),
//! 3 a server could not be reached or failed, 130 interrupted by Ctrl-C. With `--check`,
//! 1 also means the verdict was INVALID.

use std::process::ExitCode;
use std::time::Duration;

use crate::args::{address, CliArgs, CliCommand, TraceCommand};
use crate::logging;

pub mod bench;
pub mod chaos;
pub mod check;
pub mod fault;
pub mod herd;
pub mod kv;
pub mod plot;
pub mod spacetime;
pub mod stats;
pub mod timeline;
pub mod trace;
pub mod vegeta;

/// How long the cli waits for an answer: far beyond the database delay, short of forever.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The documented exit codes.
pub mod exit {
    pub const FOUND: u8 = 0;
    pub const NOT_FOUND: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const UNREACHABLE: u8 = 3;
    /// `--check` found a claim broken (the verdict says which).
    pub const INVALID: u8 = 1;
    /// Stopped by Ctrl-C (128 + SIGINT, as shells report it).
    pub const INTERRUPTED: u8 = 130;
}

/// Runs one cli command and returns the process's exit code.
pub async fn run(args: CliArgs) -> ExitCode {
    colored::control::set_override(logging::color_enabled());
    let json = args.json;
    let code = match args.command {
        CliCommand::Herd {
            key,
            requests,
            frontends,
            db,
            trace,
            check,
        } => {
            let plan = herd::Plan {
                trace,
                key,
                requests: requests as usize,
                frontends: frontends.iter().map(|f| address(f)).collect(),
                db: address(&db),
                client_timeout: check.client_timeout,
                check: check.check,
            };
            herd::run(plan, json).await
        }
        CliCommand::Bench {
            rate,
            concurrency,
            duration,
            keys,
            frontends,
            db,
            no_fill,
            timeline,
            check,
            hit_ratio,
            plot,
        } => {
            let plan = bench::Plan {
                mode: match rate {
                    Some(rate) => bench::Mode::Rate(rate),
                    None => bench::Mode::Concurrency(concurrency.unwrap_or(32)),
                },
                duration,
                keys,
                frontends: frontends.iter().map(|f| address(f)).collect(),
                db: Some(address(&db)),
                fill: !no_fill,
                client_timeout: check.client_timeout,
                check: check.check,
                timeline: timeline.is_some(),
                restarts: 0,
                hit_ratio,
            };
            bench::run(plan, timeline, plot, json).await
        }
        CliCommand::Stats {
            frontends,
            db,
            watch,
            wide,
        } => {
            let frontends: Vec<String> = frontends.iter().map(|f| address(f)).collect();
            stats::run(&frontends, &address(&db), watch, wide, json).await
        }
        CliCommand::Fault { action, frontends } => {
            let frontends: Vec<String> = frontends.iter().map(|f| address(f)).collect();
            fault::run(action, &frontends, json).await
        }
        CliCommand::Chaos {
            seed,
            duration,
            rate,
            keys,
            frontends,
            db,
            timeline,
            client_timeout,
        } => {
            let plan = chaos::Plan {
                seed,
                duration,
                rate,
                keys,
                frontends: frontends.iter().map(|f| address(f)).collect(),
                db: address(&db),
                timeline,
                client_timeout,
            };
            chaos::run(plan, json).await
        }
        CliCommand::Trace {
            what:
                TraceCommand::Cget {
                    key,
                    port,
                    frontend,
                    frontends,
                    db,
                    output,
                },
        } => {
            let plan = trace::Plan {
                key,
                frontend: frontend.map_or_else(|| format!("127.0.0.1:{port}"), |f| address(&f)),
                frontends: frontends.iter().map(|f| address(f)).collect(),
                db: address(&db),
                output,
            };
            trace::run(plan, json).await
        }
        command => kv::run(command, json).await,
    };
    ExitCode::from(code)
}

/// Prints a report: one JSON object with `--json`, else the text `render` makes of it.
pub fn print_report<R: serde::Serialize>(
    report: &R,
    render: impl FnOnce(&R) -> String,
    json: bool,
) {
    if json {
        let object =
            serde_json::to_string(report).expect("reports are plain data and always serialize");
        println!("{object}");
    } else {
        print!("{}", render(report));
    }
}

/// Reports a failure the same way for every command: the message on stderr, and with
/// `--json` also as `{"error": …}` on stdout, so a script reading stdout sees it. Returns `code`.
pub fn fail(code: u8, message: &str, json: bool) -> u8 {
    if json {
        println!("{}", serde_json::json!({ "error": message }));
    }
    eprintln!("error: {message}");
    code
}

/// A plain-text table: `corner` over the row labels, then a right-aligned column per head.
pub fn table(corner: &str, heads: &[String], rows: &[(String, Vec<String>)]) -> String {
    use std::fmt::Write;
    let label_width = rows
        .iter()
        .map(|(label, _)| label.chars().count())
        .chain([corner.chars().count()])
        .max()
        .unwrap_or(0);
    let widths: Vec<usize> = heads
        .iter()
        .enumerate()
        .map(|(i, head)| {
            rows.iter()
                .filter_map(|(_, values)| values.get(i))
                .map(|v| v.chars().count())
                .chain([head.chars().count(), 6])
                .max()
                .unwrap_or(6)
        })
        .collect();
    let mut out = String::new();
    let mut line = |label: &str, cells: &[String]| {
        let _ = write!(out, "{label:<label_width$}");
        for (cell, width) in cells.iter().zip(&widths) {
            let _ = write!(out, "  {cell:>width$}");
        }
        out.push('\n');
    };
    line(corner, heads);
    for (label, values) in rows {
        line(label, values);
    }
    out
}

/// `127.0.0.1:9002` → `9002`: on one machine the port is the name a person recognises.
pub fn short(addr: &str) -> &str {
    match addr.rsplit_once(':') {
        Some(("127.0.0.1" | "localhost", port)) => port,
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_addresses_shorten_to_their_port() {
        assert_eq!(short("127.0.0.1:9002"), "9002");
        assert_eq!(short("10.0.0.7:9002"), "10.0.0.7:9002");
    }
}
