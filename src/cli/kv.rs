//! `gclab cli set | put | del | get | cget`: one key, one answer, and where it came from.
//!
//! The value alone goes to stdout, so `$(gclab cli cget --key foo)` works. When stderr is a
//! terminal, one more line there explains the answer:
//!
//! ```text
//! bar  ← 8002 · owner 8001 · from peer · 1.2 ms
//! ```
//!
//! A set or a delete says its version, and how many of the frontends that follow changes
//! have applied it, and how long after the dbserver acknowledged it:
//!
//! ```text
//! stored foo v7 · 1.1 ms · seen by 3/3 frontends in 2.4 ms
//! ```
//!
//! `put FILE` stores a blob and prints the address the dbserver gave it, `sha256:…`;
//! `cget --key sha256:… -o FILE` writes the value to a file instead of stdout, byte for byte.
//!
//! `--json` prints everything as one object on stdout instead. Exit codes: 0 found,
//! 1 not found, 2 usage error (clap's own, or a key the server refused), 3 a server could
//! not be reached or failed.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;

use super::{exit, short, TIMEOUT};
use crate::args::CliCommand;
use crate::client::{ClientError, DbClient, FrontendClient};
use crate::dbserver::MAX_VALUE_BYTES;
use crate::key;
use crate::logging;

/// Runs `set`, `put`, `del`, `get` or `cget` and returns the exit code.
pub async fn run(command: CliCommand, json: bool) -> u8 {
    let out = Output { json };
    if let CliCommand::Put { path, file, db } = command {
        // clap makes sure one of the two is given.
        let path = path.or(file).unwrap_or_default();
        return put(&path, &db, &out).await;
    }
    let key = match &command {
        CliCommand::Set { key, .. }
        | CliCommand::Del { key, .. }
        | CliCommand::Get { key, .. }
        | CliCommand::Cget { key, .. } => key,
        _ => unreachable!("cli::run sends only set, get and cget here"),
    };
    if let Err(e) = key::validate(key) {
        return out.error(exit::USAGE, &format!("invalid --key: {e}"));
    }
    let started = Instant::now();
    match command {
        CliCommand::Set {
            key,
            value,
            value_file,
            db,
            frontends,
        } => {
            let value = match read_value(value, value_file) {
                Ok(value) => value,
                Err(message) => return out.error(exit::USAGE, &message),
            };
            let db = DbClient::new(&db, TIMEOUT);
            match db.set(&key, value).await {
                Ok(version) => {
                    let took = started.elapsed();
                    let reach = reach(&frontends, version).await;
                    out.written("stored", &key, db.addr(), version, took, &reach)
                }
                Err(e) => out.client_error(&e),
            }
        }
        CliCommand::Del { key, db, frontends } => {
            let db = DbClient::new(&db, TIMEOUT);
            match db.delete(&key).await {
                Ok(Some(version)) => {
                    let took = started.elapsed();
                    let reach = reach(&frontends, version).await;
                    out.written("deleted", &key, db.addr(), version, took, &reach)
                }
                Ok(None) => out.not_found(&key, &format!("dbserver {}", short(db.addr()))),
                Err(e) => out.client_error(&e),
            }
        }
        CliCommand::Get { key, db } => {
            let db = DbClient::new(&db, TIMEOUT);
            match db.get(&key).await {
                Ok(Some(value)) => out.value(
                    &key,
                    &value,
                    &format!("dbserver {}", db.addr()),
                    json!({"source": "db", "dbserver": db.addr()}),
                    started.elapsed(),
                ),
                Ok(None) => out.not_found(&key, &format!("dbserver {}", short(db.addr()))),
                Err(e) => out.client_error(&e),
            }
        }
        CliCommand::Cget {
            key,
            port,
            frontend,
            output,
        } => {
            let addr = frontend.unwrap_or_else(|| format!("127.0.0.1:{port}"));
            let frontend = FrontendClient::new(&addr, TIMEOUT);
            match frontend.cget(&key).await {
                Ok(Some(cached)) => {
                    // Nodes go by their peer address, as in the ring and the log lines:
                    // asked at 9002, the node that answers is 8002.
                    let story = format!(
                        "{} · owner {} · from {}",
                        short(&cached.node),
                        short(&cached.owner),
                        logging::source(&cached.source)
                    );
                    let facts = json!({
                        "frontend": addr,
                        "node": cached.node,
                        "owner": cached.owner,
                        "source": cached.source,
                    });
                    match output {
                        Some(path) => out.to_file(&path, &cached.value, &story, facts, started),
                        None => out.value(&key, &cached.value, &story, facts, started.elapsed()),
                    }
                }
                Ok(None) => out.not_found(&key, &format!("through frontend {}", short(&addr))),
                Err(e) => out.client_error(&e),
            }
        }
        _ => unreachable!("cli::run sends only set, get and cget here"),
    }
}

/// `put`: stores the file's bytes as a blob and prints its address.
async fn put(path: &Path, db: &str, out: &Output) -> u8 {
    let started = Instant::now();
    let bytes = match std::fs::read(path) {
        Ok(bytes) => Bytes::from(bytes),
        Err(e) => return out.error(exit::USAGE, &format!("cannot read {}: {e}", path.display())),
    };
    let size = bytes.len();
    let db = DbClient::new(db, TIMEOUT);
    match db.put_blob(bytes).await {
        Ok((address, version)) => {
            let took = millis(started.elapsed());
            if out.json {
                let facts = json!({
                    "address": address, "bytes": size, "file": path.display().to_string(),
                    "dbserver": db.addr(), "version": version, "ms": took,
                });
                println!("{facts}");
            } else {
                println!("{address}");
                explain(&format!(
                    "stored {} ({size} bytes) as a blob v{version} · {took:.1} ms",
                    path.display()
                ));
            }
            exit::FOUND
        }
        // Over the limit, the dbserver answers 413 without reading the body, and closes the
        // connection; a body much larger than the socket's buffers is then cut off before
        // its 413 can be read, and all the client sees is a broken connection.
        Err(e @ ClientError::WrongServer { .. }) if size as u64 > MAX_VALUE_BYTES => out.error(
            exit::USAGE,
            &format!(
                "cannot store {} ({size} bytes): the dbserver closed the connection while it was \
                 sent, as it does with a value over its --max-value-bytes (1 MiB unless it was \
                 started with more) ({e})",
                path.display()
            ),
        ),
        Err(e) => out.client_error(&e),
    }
}

/// How long `set` and `del` wait for the frontends to apply the write.
const REACH_WAIT: Duration = Duration::from_secs(1);

/// How far a write got: the frontends that follow changes, and which of them applied it.
struct Reach {
    /// The frontends that follow changes.
    followers: Vec<String>,
    seen: usize,
    /// From the acknowledgement to the last report of a frontend that had applied it.
    took: Duration,
    /// Which followers had not applied it when the wait ended, and how so.
    behind: Vec<String>,
}

/// Asks every frontend, at once, to report when it has applied `version`.
async fn reach(frontends: &[String], version: u64) -> Reach {
    let acknowledged = Instant::now();
    let asks = frontends.iter().map(|addr| async move {
        let client = FrontendClient::new(&crate::args::address(addr), TIMEOUT);
        let applied = client.applied(version, REACH_WAIT).await;
        (client.addr().to_owned(), applied, acknowledged.elapsed())
    });
    let mut reach = Reach {
        followers: Vec::new(),
        seen: 0,
        took: Duration::ZERO,
        behind: Vec::new(),
    };
    for (addr, applied, took) in futures::future::join_all(asks).await {
        let applied = match applied {
            Ok(applied) => applied,
            // A frontend that is not running (or is not a frontend) is not among those the
            // write should reach.
            Err(ClientError::Unreachable { .. } | ClientError::WrongServer { .. }) => continue,
            // One that is running but did not say: it may be behind.
            Err(_) => {
                reach.followers.push(addr.clone());
                reach
                    .behind
                    .push(format!("{} did not answer", short(&addr)));
                continue;
            }
        };
        if !applied.following {
            continue;
        }
        reach.followers.push(addr.clone());
        if applied.applied >= version {
            reach.seen += 1;
            reach.took = reach.took.max(took);
        } else {
            reach
                .behind
                .push(format!("{} had not applied it", short(&addr)));
        }
    }
    reach
}

/// The value to set: the `--value` text, stdin for `--value -`, or `--value-file`'s bytes.
fn read_value(value: Option<String>, file: Option<PathBuf>) -> Result<Bytes, String> {
    use std::io::Read;
    match (value.as_deref(), file) {
        (Some("-"), _) => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| format!("cannot read the value from stdin: {e}"))?;
            Ok(Bytes::from(bytes))
        }
        (_, Some(path)) => std::fs::read(&path)
            .map(Bytes::from)
            .map_err(|e| format!("cannot read --value-file {}: {e}", path.display())),
        (Some(_), None) => Ok(Bytes::from(value.unwrap_or_default())),
        (None, None) => {
            Err("give the value with --value, --value - (stdin) or --value-file".into())
        }
    }
}

pub(super) fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

/// Writes answers the way the module doc describes.
struct Output {
    json: bool,
}

impl Output {
    fn value(
        &self,
        key: &str,
        value: &[u8],
        story: &str,
        mut facts: serde_json::Value,
        took: Duration,
    ) -> u8 {
        if self.json {
            facts["key"] = key.into();
            facts["found"] = true.into();
            facts["value"] = String::from_utf8_lossy(value).into();
            facts["ms"] = millis(took).into();
            println!("{facts}");
        } else {
            let mut stdout = std::io::stdout().lock();
            // A closed stdout (`| head -c0`) is the reader's choice, not our error.
            let _ = stdout
                .write_all(value)
                .and_then(|()| stdout.write_all(b"\n"));
            explain(&format!(
                "{}  ← {story} · {:.1} ms",
                logging::preview(value),
                millis(took)
            ));
        }
        exit::FOUND
    }

    /// `cget -o FILE`: the value goes to the file, the story to stderr as usual.
    fn to_file(
        &self,
        path: &Path,
        value: &[u8],
        story: &str,
        mut facts: serde_json::Value,
        started: Instant,
    ) -> u8 {
        if let Err(e) = std::fs::write(path, value) {
            return self.error(
                exit::USAGE,
                &format!("cannot write {}: {e}", path.display()),
            );
        }
        let took = started.elapsed();
        if self.json {
            facts["found"] = true.into();
            facts["output"] = path.display().to_string().into();
            facts["bytes"] = value.len().into();
            facts["ms"] = millis(took).into();
            println!("{facts}");
        } else {
            explain(&format!(
                "wrote {} bytes to {}  ← {story} · {:.1} ms",
                value.len(),
                path.display(),
                millis(took)
            ));
        }
        exit::FOUND
    }

    fn written(
        &self,
        what: &str,
        key: &str,
        db: &str,
        version: u64,
        took: Duration,
        reach: &Reach,
    ) -> u8 {
        if self.json {
            println!(
                "{}",
                json!({
                    "key": key, what: true, "dbserver": db, "version": version,
                    "ms": millis(took), "followers": reach.followers,
                    "seen_by": reach.seen, "seen_ms": millis(reach.took),
                })
            );
            return exit::FOUND;
        }
        let mut line = format!("{what} {key} v{version} · {:.1} ms", millis(took));
        if !reach.followers.is_empty() {
            line += &format!(
                " · seen by {}/{} frontends in {:.1} ms",
                reach.seen,
                reach.followers.len(),
                millis(reach.took)
            );
            if !reach.behind.is_empty() {
                line += &format!(
                    " ({} within {} s)",
                    reach.behind.join(", "),
                    REACH_WAIT.as_secs()
                );
            }
        }
        explain(&line);
        exit::FOUND
    }

    fn not_found(&self, key: &str, asked: &str) -> u8 {
        if self.json {
            println!("{}", json!({"key": key, "found": false, "asked": asked}));
        }
        // Quoted, so that a key of spaces (or none visible) can be seen.
        eprintln!("no such key: {key:?} — the dbserver has none (asked {asked})");
        exit::NOT_FOUND
    }

    fn client_error(&self, error: &ClientError) -> u8 {
        let code = match error {
            ClientError::Refused { .. } => exit::USAGE,
            _ => exit::UNREACHABLE,
        };
        self.error(code, &error.to_string())
    }

    fn error(&self, code: u8, message: &str) -> u8 {
        super::fail(code, message, self.json)
    }
}

/// The explaining line: only for a person at a terminal, never mixed into piped output.
///
/// `GCLAB_EXPLAIN=1` asks for it anyway: the lab's page harness runs the cli without a
/// terminal but checks the pages' explaining lines too.
fn explain(line: &str) {
    let asked = std::env::var_os("GCLAB_EXPLAIN").is_some_and(|v| v == "1");
    if asked || std::io::stderr().is_terminal() {
        eprintln!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_round_to_two_places() {
        assert_eq!(millis(Duration::from_micros(1234)), 1.23);
    }
}
