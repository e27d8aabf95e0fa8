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
pub async fn run(frontends: &[String], db: &str, watch: bool, json: bool) -> u8 {
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
            print!("{}", render(&nodes, db.addr(), &db_stats));
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

/// Every node's stats; a node that does not answer gets its error instead.
pub async fn collect(
    frontends: &[FrontendClient],
    db: &DbClient,
) -> (Vec<Row>, Result<DbStats, String>) {
    let mut nodes = Vec::new();
    for frontend in frontends {
        let stats = frontend.stats().await.map_err(|e| e.to_string());
        nodes.push((frontend.addr().to_owned(), stats));
    }
    (nodes, db.stats().await.map_err(|e| e.to_string()))
}

/// The table.
pub fn render(nodes: &[Row], db_addr: &str, db: &Result<DbStats, String>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} │ {:>6} {:>9} {:>6} │ {:>6} {:>9} {:>6}",
        "frontend", "gets", "hits", "loads", "deduped", "peer_ld", "peer_er", "local", "loc_err", "srv_req",
        "failovr",
        "main#", "main_B", "evict", "hot#", "hot_B", "evict"
    );
    for (addr, stats) in nodes {
        match stats {
            Ok(s) => {
                let _ = writeln!(
                    out,
                    "{:<10} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} │ {:>6} {:>9} {:>6} │ {:>6} {:>9} {:>6}",
                    short(addr),
                    s.gets,
                    s.cache_hits,
                    s.loads,
                    s.loads_deduped,
                    s.peer_loads,
                    s.peer_errors,
                    s.local_loads,
                    s.local_load_errs,
                    s.server_requests,
                    s.failovers,
                    s.main_cache.items,
                    s.main_cache.bytes,
                    s.main_cache.evictions,
                    s.hot_cache.items,
                    s.hot_cache.bytes,
                    s.hot_cache.evictions,
                );
            }
            Err(e) => {
                let _ = writeln!(out, "{:<10} unreachable: {e}", short(addr));
            }
        }
    }
    match db {
        Ok(d) => {
            let _ = writeln!(
                out,
                "dbserver {}: gets {} · sets {} · keys {}",
                short(db_addr),
                d.gets,
                d.sets,
                d.keys
            );
        }
        Err(e) => {
            let _ = writeln!(out, "dbserver {}: unreachable: {e}", short(db_addr));
        }
    }
    out
}
