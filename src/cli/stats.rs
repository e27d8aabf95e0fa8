//! `gclab cli stats`: every frontend's counters and caches, and the dbserver's, in one table.
//!
//! The lab pages point at this table: after each experiment, the counter that moved is the
//! explanation. `--watch` redraws it every second.

use std::fmt::Write;
use std::io::IsTerminal;
use std::time::Duration;

use serde_json::json;

use super::{exit, short, TIMEOUT};
use crate::client::{DbClient, FrontendClient};
use crate::stats::{DbStats, NodeStats};

/// Prints the table once, or every second with `watch` until Ctrl-C.
pub async fn run(frontends: &[String], db: &str, watch: bool, wide: bool, json: bool) -> u8 {
    let clients: Vec<FrontendClient> = frontends
        .iter()
        .map(|a| FrontendClient::new(a, TIMEOUT))
        .collect();
    let db = DbClient::new(db, TIMEOUT);
    // One Ctrl-C future for the whole watch, so a Ctrl-C during a redraw is not lost.
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let (nodes, db_stats) = collect(&clients, &db).await;
        if json {
            let nodes: Vec<_> = nodes
                .iter()
                .map(|(addr, stats)| match stats {
                    Ok(s) => json!({ "frontend": addr, "stats": s }),
                    Err(e) => json!({ "frontend": addr, "error": e }),
                })
                .collect();
            let db = match &db_stats {
                Ok(s) => json!({ "dbserver": db.addr(), "stats": s }),
                Err(e) => json!({ "dbserver": db.addr(), "error": e }),
            };
            println!("{}", json!({ "frontends": nodes, "dbserver": db }));
        } else {
            if watch && std::io::stdout().is_terminal() {
                print!("\x1b[2J\x1b[H"); // clear the screen, cursor home
            }
            print!("{}", render(&nodes, db.addr(), &db_stats, wide));
        }
        let all_up = nodes.iter().all(|(_, s)| s.is_ok()) && db_stats.is_ok();
        if !watch {
            return if all_up {
                exit::FOUND
            } else {
                exit::UNREACHABLE
            };
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = &mut interrupted => return exit::FOUND,
        }
    }
}

type Row = (String, Result<NodeStats, String>);

/// Every node's stats, asked of all at once; a node that does not answer gets its error.
pub async fn collect(
    frontends: &[FrontendClient],
    db: &DbClient,
) -> (Vec<Row>, Result<DbStats, String>) {
    let asks = frontends.iter().map(|frontend| async move {
        let stats = frontend.stats().await.map_err(|e| e.to_string());
        (frontend.addr().to_owned(), stats)
    });
    let (nodes, db) = tokio::join!(futures::future::join_all(asks), db.stats());
    (nodes, db.map_err(|e| e.to_string()))
}

/// Which optional rows the table has: the change-stream counters when some node follows
/// changes, the fault counters when some node has had fault rules, `integrity_errors` when
/// some node refused a blob. Without them the groupcache table stays as it is.
#[derive(Debug, Clone, Copy)]
pub struct Sections {
    pub changes: bool,
    pub faults: bool,
    /// Some node's peers changed (`--peers-from`), or two nodes list different peers.
    pub membership: bool,
    /// Some node refused a blob whose bytes did not match its key.
    pub integrity: bool,
}

impl Sections {
    fn of<'a>(nodes: impl Iterator<Item = &'a NodeStats> + Clone) -> Sections {
        Sections {
            changes: nodes.clone().any(|s| s.following),
            faults: nodes.clone().any(|s| s.faults != Default::default()),
            integrity: nodes.clone().any(|s| s.integrity_errors > 0),
            membership: nodes.clone().any(|s| s.membership_changes > 0)
                || nodes
                    .clone()
                    .zip(nodes.skip(1))
                    .any(|(a, b)| a.peers != b.peers),
        }
    }
}

/// Every counter of a node, by its name in `/stats`, with the optional rows `sections` asks for.
pub fn counters(s: &NodeStats, sections: Sections) -> Vec<(&'static str, u64)> {
    let mut counters = vec![
        ("gets", s.gets),
        ("cache_hits", s.cache_hits),
        ("loads", s.loads),
        ("loads_deduped", s.loads_deduped),
        ("peer_loads", s.peer_loads),
        ("peer_errors", s.peer_errors),
        ("local_loads", s.local_loads),
        ("local_load_errs", s.local_load_errs),
        ("server_requests", s.server_requests),
        ("failovers", s.failovers),
        ("main_cache.items", s.main_cache.items),
        ("main_cache.bytes", s.main_cache.bytes),
        ("main_cache.evictions", s.main_cache.evictions),
        ("hot_cache.items", s.hot_cache.items),
        ("hot_cache.bytes", s.hot_cache.bytes),
        ("hot_cache.evictions", s.hot_cache.evictions),
    ];
    if sections.changes {
        counters.extend([
            ("changes_applied", s.changes_applied),
            ("evictions_by_change", s.evictions_by_change),
            ("stale_loads_refused", s.stale_loads_refused),
            ("last_version_applied", s.last_version_applied),
        ]);
    }
    if sections.membership {
        counters.extend([
            ("membership_changes", s.membership_changes),
            ("peer_peeks", s.peer_peeks),
            ("peer_peek_hits", s.peer_peek_hits),
        ]);
    }
    if sections.integrity {
        counters.push(("integrity_errors", s.integrity_errors));
    }
    if sections.faults {
        let f = &s.faults;
        counters.extend([
            ("faults.rules", f.rules),
            ("faults.partitioned", f.partitioned),
            ("faults.dropped", f.dropped),
            ("faults.delayed", f.delayed),
            ("faults.stalled", f.stalled),
            ("faults.db_delayed", f.db_delayed),
        ]);
    }
    counters
}

/// The table: a column per node and a row per counter, which fits 80 columns for up to
/// five nodes; `wide` turns it round, a row per node, for many nodes on a wide terminal.
/// Either way the counters keep their `/stats` names, the same as in `herd`'s table.
pub fn render(nodes: &[Row], db_addr: &str, db: &Result<DbStats, String>, wide: bool) -> String {
    let name = |addr: &str, stats: &Result<NodeStats, String>| match stats {
        Ok(s) if !s.node.is_empty() => short(&s.node).to_owned(),
        _ => format!("({})", short(addr)),
    };
    let up: Vec<(String, &NodeStats)> = nodes
        .iter()
        .filter_map(|(addr, stats)| stats.as_ref().ok().map(|s| (name(addr, stats), s)))
        .collect();
    let names: Vec<String> = up.iter().map(|(n, _)| n.clone()).collect();
    let sections = Sections::of(up.iter().map(|(_, s)| *s));
    let changes = sections.changes;
    let labels: Vec<&str> = counters(&NodeStats::default(), sections)
        .iter()
        .map(|(l, _)| *l)
        .collect();
    let mut out = if up.is_empty() {
        String::new()
    } else if wide {
        let rows: Vec<(String, Vec<String>)> = up
            .iter()
            .map(|(n, s)| {
                (
                    n.clone(),
                    counters(s, sections)
                        .iter()
                        .map(|(_, v)| v.to_string())
                        .collect(),
                )
            })
            .collect();
        let heads: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        super::table("node", &heads, &rows)
    } else {
        let rows: Vec<(String, Vec<String>)> = labels
            .iter()
            .enumerate()
            .map(|(i, label)| {
                let values = up
                    .iter()
                    .map(|(_, s)| counters(s, sections)[i].1.to_string())
                    .collect();
                ((*label).to_owned(), values)
            })
            .collect();
        super::table("node", &names, &rows)
    };
    if sections.membership {
        out.push_str(&peer_lists(&up));
    }
    for (addr, stats) in nodes {
        if let Err(e) = stats {
            // It did not answer, so its node name is unknown: named by the address asked.
            let _ = writeln!(out, "({}): unreachable: {e}", short(addr));
        }
    }
    match db {
        Ok(d) => {
            let _ = writeln!(
                out,
                "dbserver {}: gets {} · sets {} · keys {}{}",
                short(db_addr),
                d.gets,
                d.sets,
                d.keys,
                if changes {
                    format!(" · v{} · followers {}", d.version, d.followers)
                } else {
                    String::new()
                }
            );
        }
        Err(e) => {
            let _ = writeln!(out, "dbserver {}: unreachable: {e}", short(db_addr));
        }
    }
    out
}

/// The peers each node knows now: one line when they agree, a line per node when not.
fn peer_lists(up: &[(String, &NodeStats)]) -> String {
    let list = |s: &NodeStats| {
        s.peers
            .iter()
            .map(|p| short(p))
            .collect::<Vec<_>>()
            .join(",")
    };
    let agree = up.windows(2).all(|w| w[0].1.peers == w[1].1.peers);
    match up.first() {
        None => String::new(),
        Some((_, first)) if agree => format!("peers: {}\n", list(first)),
        Some(_) => up
            .iter()
            .map(|(name, s)| format!("peers of {name}: {} (the nodes disagree)\n", list(s)))
            .collect(),
    }
}
