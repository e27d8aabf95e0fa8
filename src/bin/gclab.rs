//! `gclab`: parses the command line, binds the sockets, and hands over to the library.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use gclab::args::{Command, DbserverArgs, FrontendArgs, Gclab, WireArgs};
use gclab::{cli, dbserver, demo, fd_limit, frontend, go_style, logging, shutdown, up, wire};
use tokio::net::TcpListener;

/// jemalloc, not the system's glibc malloc. A frontend's cache is many small, long-lived
/// entries allocated among many short-lived request buffers; glibc keeps the holes those
/// leave in its per-thread arenas, so a node caching 11 MB of keys and values held 79 MiB.
/// jemalloc's size classes keep long-lived entries of one size together and give unused
/// pages back (measured in bench/rss.sh; see bench/RESULTS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read once at start-up (its `malloc_conf`, under the prefix the crate
/// builds it with): a background thread returns freed pages after a second, instead of
/// waiting for the next allocations to notice that ten seconds have gone by.
#[export_name = "_rjem_malloc_conf"]
static JEMALLOC_CONF: &[u8; 60] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

fn main() -> ExitCode {
    fd_limit::raise();
    let args: Gclab = go_style::parse(std::env::args_os());
    match args.command {
        // herd and bench want every core; one request starts faster single-threaded.
        Command::Cli(cli_args) => runtime(cli_args.is_load()).block_on(cli::run(cli_args)),
        Command::Dbserver(db_args) => report(runtime(true).block_on(run_dbserver(db_args))),
        Command::Frontend(fe_args) => report(runtime(true).block_on(run_frontend(fe_args))),
        Command::Demo(demo_args) => report(runtime(true).block_on(demo::run(demo_args))),
        Command::Up(up_args) => report(runtime(true).block_on(up::run(up_args))),
        Command::Wire(wire_args) => report(runtime(false).block_on(run_wire(wire_args))),
    }
}

/// The wire's loop blocks its thread, so it runs beside the runtime, which waits for a
/// signal to stop it.
async fn run_wire(args: WireArgs) -> Result<(), String> {
    logging::init(false);
    let stop = shutdown::signal();
    let stopping = Arc::new(AtomicBool::new(false));
    let wire = args.wire();
    let mut held = tokio::task::spawn_blocking({
        let stopping = Arc::clone(&stopping);
        move || wire::run(wire, stopping)
    });
    tokio::select! {
        result = &mut held => return result.map_err(|e| e.to_string())?,
        () = stop => stopping.store(true, Ordering::Relaxed),
    }
    held.await.map_err(|e| e.to_string())?
}

fn runtime(multi_thread: bool) -> tokio::runtime::Runtime {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder
        .enable_all()
        .build()
        .expect("building a tokio runtime fails only if the OS refuses threads or epoll")
}

/// A server's start-up error: one line on stderr and exit code 1, not a backtrace.
fn report(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run_dbserver(args: DbserverArgs) -> Result<(), String> {
    // Bound first, so that its JSON lines name the address it got (`--addr 127.0.0.1:0`).
    let listener = bind(&args.addr, "dbserver", "--addr").await?;
    logging::init_as(false, args.log_format, &local_addr(&listener));
    let stop = shutdown::signal();
    let store = dbserver::Store::open(&args.data_dir, args.delay, args.change_log)
        .map_err(|e| e.to_string())?;
    // The whole path, since `gclab-data` is relative to wherever the dbserver was started.
    let data_dir = std::fs::canonicalize(&args.data_dir).unwrap_or(args.data_dir.clone());
    tracing::info!(
        "dbserver listening on {} (pid {}, data in {}, reads wait {}; log times are UTC)",
        local_addr(&listener),
        std::process::id(),
        data_dir.display(),
        humantime::format_duration(args.delay)
    );
    // The pid also goes in a file beside the data, so a lab page can `kill -9` exactly this
    // dbserver (`pkill dbserver` would miss `gclab dbserver` and hit other people's).
    let pid_file = args.data_dir.join("dbserver.pid");
    if let Err(e) = std::fs::write(&pid_file, format!("{}\n", std::process::id())) {
        tracing::warn!("cannot write {}: {e}", pid_file.display());
    }
    dbserver::run(listener, Arc::new(store), args.config(), stop).await;
    let _ = std::fs::remove_file(&pid_file);
    Ok(())
}

async fn run_frontend(args: FrontendArgs) -> Result<(), String> {
    let (config, http_addr) = args.config()?;
    logging::init_as(args.quiet_hits, args.log_format, &config.group.me);
    let stop = shutdown::signal();
    let group = &config.group;
    let peer_listener = bind(&group.me, "frontend", "--port").await?;
    let http_listener = bind(&http_addr, "frontend", "--http-port").await?;
    let mode = group.mode().map_or(String::new(), |m| format!(" ({m})"));
    let peers = match &config.membership {
        Some(follow) => format!(
            "{} (looked up every {})",
            follow.source,
            humantime::format_duration(follow.every)
        ),
        None => group.peers.join(","),
    };
    tracing::info!(
        "frontend {}{mode}: peers on {peers}, clients on http://{}, dbserver {}",
        group.me,
        local_addr(&http_listener),
        group.db_addr
    );
    frontend::run(peer_listener, http_listener, config, stop)
        .await
        .map_err(|e| e.to_string())
}

async fn bind(addr: &str, server: &str, flag: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr).await.map_err(|e| {
        let advice = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                format!(" — is another {server} running? Pick another port with {flag}")
            }
            _ => String::new(),
        };
        format!("cannot listen on {addr}: {e}{advice}")
    })
}

fn local_addr(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|e| format!("? ({e})"), |a| a.to_string())
}
