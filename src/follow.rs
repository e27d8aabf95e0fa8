//! `--follow-changes`: a frontend reads the dbserver's change stream and applies each change
//! to its caches.
//!
//! One task per frontend, for as long as the node runs:
//!
//! ```text
//! connect ─▶ GET /changes?since=<last applied>  ─▶ each line: Group::apply_change
//!    ▲            │ 410: the log lost the gap ─▶ drop every cached value, start from now
//!    └─ back-off ─┴ refused, or the stream broke
//! ```
//!
//! The first connection has no `since`: it starts from the dbserver's current version, and
//! drops what the node cached before (a value loaded before the stream was open may have
//! missed its change). After that, a broken stream resumes where it left off, so no change
//! is missed, and only a gap the dbserver's log no longer holds costs the whole cache.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::client::{ChangesError, DbClient, StreamLine};
use crate::group::Group;

/// The first wait after a failed connection; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Follows `db`'s change stream for `group` until `shutdown`.
pub async fn run(group: Arc<Group>, db: DbClient, shutdown: impl Future<Output = ()>) {
    tokio::select! {
        () = follow(&group, &db) => {}
        () = shutdown => {}
    }
}

async fn follow(group: &Group, db: &DbClient) {
    let mut since: Option<u64> = None;
    let mut backoff = FIRST_BACKOFF;
    let mut said_down = false;
    loop {
        let mut stream = match db.changes(since).await {
            Ok(stream) => stream,
            Err(ChangesError::Gone(reason)) => {
                start_over(group, &reason);
                since = None;
                continue;
            }
            Err(ChangesError::Client(e)) => {
                if !std::mem::replace(&mut said_down, true) {
                    tracing::warn!("cannot follow changes: {e}; retrying");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        said_down = false;
        let connected = std::time::Instant::now();
        loop {
            match stream.next().await {
                Ok(Some(StreamLine::Hello { hello })) => {
                    if since.is_none() {
                        let dropped = group.drop_everything();
                        let note = match dropped {
                            0 => String::new(),
                            n => format!(" (dropped the {n} cached before it)"),
                        };
                        group.invalidation().restart_at(hello);
                        tracing::info!(
                            kind = "change",
                            "following changes from dbserver {} at v{hello}{note}",
                            db.addr()
                        );
                    } else {
                        tracing::info!(
                            kind = "change",
                            "resumed the change stream after v{}",
                            since.unwrap_or(0)
                        );
                    }
                    since = Some(since.unwrap_or(hello));
                }
                Ok(Some(StreamLine::Change { version, key, .. })) => {
                    // Every write has a version of its own, one more than the last, so a
                    // jump means changes were lost on the way (trimmed from the log while
                    // it was replayed): start over rather than miss them.
                    let expected = since.map_or(version, |v| v + 1);
                    if version != expected {
                        start_over(group, &format!("got v{version} after v{}", expected - 1));
                        since = None;
                        break;
                    }
                    group.apply_change(&key, version);
                    since = Some(version);
                    backoff = FIRST_BACKOFF; // the stream works: a break now is news
                }
                Ok(None) => {
                    tracing::warn!("the dbserver ended the change stream; reconnecting");
                    break;
                }
                Err(e) => {
                    tracing::warn!("the change stream broke ({e}); reconnecting");
                    break;
                }
            }
        }
        // A stream that breaks again and again, without a change in between, is retried
        // less and less often; one that had stayed up a while is retried at once.
        if connected.elapsed() > MAX_BACKOFF {
            backoff = FIRST_BACKOFF;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The stream cannot resume where this node left it: any cached value may have missed its
/// change, so all of them go, and the node follows from the dbserver's current version.
fn start_over(group: &Group, reason: &str) {
    let dropped = group.drop_everything();
    tracing::warn!(
        "cannot resume the change stream: {reason}. Dropped every cached value ({dropped}), \
         since any of them may have changed; following from now on"
    );
}
