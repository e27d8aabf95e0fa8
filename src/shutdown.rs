//! Stopping cleanly: the future a server's `run` waits on when started from the command line.
//!
//! Tests pass their own shutdown future (a channel) to `run` instead; that is why servers
//! take one as an argument rather than listening for signals themselves.

use std::future::Future;

/// A future that completes on Ctrl-C (SIGINT), SIGTERM or SIGHUP (its terminal closed, e.g.
/// `tmux kill-session`), whichever comes first.
///
/// The handlers are installed *now*, not when the future is first polled: a signal that
/// arrives between a server's "listening" line and its first poll would otherwise find no
/// handler and kill the process the default way, skipping the clean shutdown.
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        let hangup = signal(SignalKind::hangup());
        async move {
            match (interrupt, terminate, hangup) {
                (Ok(mut interrupt), Ok(mut terminate), Ok(mut hangup)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                        _ = hangup.recv() => {}
                    }
                }
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                    tracing::warn!(
                        "cannot listen for Ctrl-C or SIGTERM ({e}); stop this process with kill -9"
                    );
                    std::future::pending::<()>().await;
                }
            }
            tracing::info!("shutting down: finishing requests in flight");
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down: finishing requests in flight");
    }
}
