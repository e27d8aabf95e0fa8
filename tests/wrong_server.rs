//! Only a real answer from the right kind of server is ever a value. A cli or a frontend
//! pointed at the wrong server says what it reached, and never prints or caches its page.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gclab::client::ClientError;
use gclab::http::{self, Limits};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use warp::http::StatusCode;
use warp::Filter;

/// Runs `gclab cli <args>` and returns its exit code and stderr.
async fn cli(args: &[&str]) -> (Option<i32>, String) {
    let out = common::run_gclab(&format!("cli {}", args.join(" "))).await;
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cli_pointed_at_the_wrong_kind_of_server_exits_non_zero_naming_what_it_reached() {
    let topology = common::start(1, Duration::ZERO, |_| {}).await;
    let (frontend, db) = (topology.http_addr(0), topology.db_addr());

    let (code, stderr) = cli(&["set", "--key", "foo", "--value", "x", "--db", frontend]).await;
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!("{frontend} is a gclab frontend, not the dbserver")),
        "{stderr}"
    );
    assert!(!stderr.contains("stored"), "{stderr}");

    let (code, stderr) = cli(&["get", "--key", "foo", "--db", frontend]).await;
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("is a gclab frontend, not the dbserver"),
        "{stderr}"
    );

    let (code, stderr) = cli(&["cget", "--key", "foo", "--frontend", db]).await;
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!("{db} is the gclab dbserver, not a frontend")),
        "{stderr}"
    );

    // A frontend's peer port speaks tarpc, not HTTP.
    let peer = &topology.peers[0];
    let (code, stderr) = cli(&["cget", "--key", "foo", "--frontend", peer]).await;
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("a port that does not answer HTTP"),
        "{stderr}"
    );
    assert!(stderr.contains("peer (tarpc) port"), "{stderr}");
    topology.stop().await;
}

/// An HTTP server that is not a dbserver: every request gets `status` and an HTML page.
/// Returns its address, how many requests it has had, and its stop switch.
async fn stranger(status: StatusCode) -> (String, Arc<AtomicUsize>, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&asked);
    let page = warp::any().map(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        http::text(status, "<html>not the dbserver</html>".to_owned())
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let limits = Limits {
        header_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
    };
    tokio::spawn(http::serve(listener, page, limits, "nginx/1.22.1", async {
        let _ = stopped.await;
    }));
    (addr, asked, stop)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frontend_whose_db_is_another_http_server_never_answers_200_and_caches_nothing() {
    for status in [StatusCode::NOT_FOUND, StatusCode::OK] {
        let (addr, asked, _stop) = stranger(status).await;
        let topology = common::start(1, Duration::ZERO, |c| c.group.db_addr = addr.clone()).await;
        let frontend = &topology.frontends[0];
        for _ in 0..2 {
            let before = asked.load(Ordering::SeqCst);
            match frontend.cget("foo").await {
                Err(ClientError::Failed {
                    status: 502,
                    message,
                    ..
                }) => {
                    assert!(
                        message.contains("is not a gclab server (it answered"),
                        "{message}"
                    );
                    assert!(message.contains("nginx/1.22.1"), "{message}");
                }
                other => panic!("with a {status} stranger as --db, cget gave {other:?}"),
            }
            // Each cget asked the stranger again: nothing was kept from its page.
            assert!(asked.load(Ordering::SeqCst) > before);
        }
        let stats = frontend.stats().await.unwrap();
        assert_eq!(stats.main_cache.items, 0);
        assert_eq!(stats.hot_cache.items, 0);
        assert!(stats.local_load_errs >= 2, "{stats:?}");
        topology.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_refuses_a_stranger_as_dbserver_and_names_its_answer() {
    let (addr, _asked, _stop) = stranger(StatusCode::NOT_FOUND).await;
    let (code, stderr) = cli(&["set", "--key", "foo", "--value", "x", "--db", &addr]).await;
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("is not a gclab server (it answered 404 Not Found"),
        "{stderr}"
    );
    let db = gclab::client::DbClient::new(&addr, Duration::from_secs(5));
    assert!(matches!(
        db.get("foo").await,
        Err(ClientError::WrongServer { .. })
    ));
}
