//! `gclab`: parses the command line, binds the sockets, and hands over to the library.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use gclab::args::{self, Command, DbserverArgs, FrontendArgs, Gclab};
use gclab::{cli, dbserver, demo, fd_limit, frontend, logging, shutdown, up};
use tokio::net::TcpListener;

fn main() -> ExitCode {
    fd_limit::raise();
    let args = Gclab::parse_from(args::normalize(std::env::args_os()));
    match args.command {
        // herd and bench want every core; one request starts faster single-threaded.
        Command::Cli(cli_args) => runtime(cli_args.is_load()).block_on(cli::run(cli_args)),
        Command::Dbserver(db_args) => report(runtime(true).block_on(run_dbserver(db_args))),
        Command::Frontend(fe_args) => report(runtime(true).block_on(run_frontend(fe_args))),
        Command::Demo(demo_args) => report(runtime(true).block_on(demo::run(demo_args))),
        Command::Up(up_args) => report(runtime(true).block_on(up::run(up_args))),
    }
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
    logging::init();
    let stop = shutdown::signal();
    let store = dbserver::Store::open(&args.data_dir, args.delay).map_err(|e| e.to_string())?;
    let listener = bind(&args.addr, "dbserver", "--addr").await?;
    tracing::info!(
        "dbserver listening on {} (data in {}, reads wait {})",
        local_addr(&listener),
        args.data_dir.display(),
        humantime::format_duration(args.delay)
    );
    dbserver::run(listener, Arc::new(store), args.config(), stop).await;
    Ok(())
}

async fn run_frontend(args: FrontendArgs) -> Result<(), String> {
    logging::init();
    let stop = shutdown::signal();
    let (config, http_addr) = args.config()?;
    let peer_listener = bind(&config.me, "frontend", "--port").await?;
    let http_listener = bind(&http_addr, "frontend", "--http-port").await?;
    tracing::info!(
        "frontend {}: peers on {}, clients on http://{}, dbserver {}",
        config.me,
        config.peers.join(","),
        local_addr(&http_listener),
        config.db_addr
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
