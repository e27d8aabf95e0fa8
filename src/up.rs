//! `gclab up`: the whole topology in one terminal, like docker-compose.
//!
//! Each server is a real child process (this same binary, run as `gclab dbserver` or
//! `gclab frontend`), so you can `kill -9` one by its pid and watch the others cope. Every
//! line a child prints comes out here prefixed by its coloured name:
//!
//! ```text
//! frontend-8001 | 13:26:04.379  asking dbserver for foo
//! dbserver      | 13:26:04.380  getting foo
//! ```
//!
//! Ctrl-C stops them all: the terminal already sends SIGINT to every process of the
//! foreground group, and each server shuts down cleanly. SIGTERM sent to `gclab up` alone is
//! forwarded to each child. A child that does not stop within [`GRACE`] is killed.

use std::process::Stdio;
use std::time::Duration;

use colored::{Color, Colorize};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

use crate::args::UpArgs;
use crate::logging;
use crate::shutdown;

/// How long children get to stop cleanly before they are killed.
pub const GRACE: Duration = Duration::from_secs(10);

/// A started child: its name, for the prefix, and its pid, for signals.
struct Started {
    name: String,
    pid: Pid,
    /// Once it has exited its pid may be reused, so it is never signalled again.
    exited: bool,
}

/// Starts the topology and runs until Ctrl-C, SIGTERM, or a child's exit.
pub async fn run(args: UpArgs) -> Result<(), String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find this program's path: {e}"))?;
    let color = logging::stdout_color_enabled();
    colored::control::set_override(color);
    let last = args
        .port
        .checked_add(args.frontends - 1)
        .filter(|last| last.checked_add(1000).is_some())
        .ok_or_else(|| {
            format!(
                "--port {} leaves no room for {} frontends",
                args.port, args.frontends
            )
        })?;
    let ports: Vec<String> = (args.port..=last).map(|p| p.to_string()).collect();
    let delay = humantime::format_duration(args.delay).to_string();
    // The frontends' deadlines follow the delay, so `--delay 5s` still loads: a database
    // read may take the delay plus 2 s, a peer call that read plus 1 s more.
    let db_timeout = humantime::format_duration(args.delay + Duration::from_secs(2)).to_string();
    let peer_timeout = humantime::format_duration(args.delay + Duration::from_secs(3)).to_string();
    let data_dir = args.data_dir.to_string_lossy().into_owned();

    let mut plan: Vec<(String, Vec<String>)> = vec![(
        "dbserver".to_owned(),
        [
            "dbserver",
            "--addr",
            &args.db_addr,
            "--data-dir",
            &data_dir,
            "--delay",
            &delay,
        ]
        .map(String::from)
        .to_vec(),
    )];
    for port in &ports {
        let mut argv = [
            "frontend",
            "--port",
            port,
            "--peers",
            &ports.join(","),
            "--db",
            &args.db_addr,
            "--db-timeout",
            &db_timeout,
            "--peer-timeout",
            &peer_timeout,
        ]
        .map(String::from)
        .to_vec();
        if args.no_singleflight {
            argv.push("--no-singleflight".to_owned());
        }
        if args.no_peers {
            argv.push("--no-peers".to_owned());
        }
        plan.push((format!("frontend-{port}"), argv));
    }

    let stopped = shutdown::signal(); // before any child exists, so no signal goes unheard
    let width = plan.iter().map(|(name, _)| name.len()).max().unwrap_or(8);
    let (exits, mut exited) = mpsc::unbounded_channel::<(String, String, bool)>();
    let mut started: Vec<Started> = Vec::new();
    let mut forwarders = Vec::new();
    for (i, (name, argv)) in plan.into_iter().enumerate() {
        let mut command = Command::new(&exe);
        command
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if color {
            // Children write to a pipe, not a terminal; tell them colour is still wanted.
            command.env("CLICOLOR_FORCE", "1");
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                stop(&started, Signal::SIGTERM);
                return Err(format!("cannot start {name}: {e}"));
            }
        };
        // `kill(0, …)` would signal our whole process group, so a missing pid is an error.
        let Some(pid) = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw)
        else {
            stop(&started, Signal::SIGTERM);
            return Err(format!("{name} exited as soon as it started"));
        };
        let prefix = format!("{name:<width$} |")
            .color(PALETTE[i % PALETTE.len()])
            .to_string();
        println!("{prefix} started: gclab {} (pid {pid})", argv.join(" "));
        if let Some(out) = child.stdout.take() {
            forwarders.push(tokio::spawn(forward(out, prefix.clone())));
        }
        if let Some(err) = child.stderr.take() {
            forwarders.push(tokio::spawn(forward(err, prefix.clone())));
        }
        let exits = exits.clone();
        let child_name = name.clone();
        tokio::spawn(async move {
            let (how, ok) = match child.wait().await {
                Ok(status) => (status.to_string(), status.success()),
                Err(e) => (format!("could not be waited for: {e}"), false),
            };
            let _ = exits.send((child_name, how, ok));
        });
        started.push(Started {
            name,
            pid,
            exited: false,
        });
    }
    drop(exits);

    let mut failed = false;
    let mut running = started.len();
    tokio::select! {
        () = stopped => {
            println!("up: stopping {running} processes");
        }
        Some((name, how, ok)) = exited.recv() => {
            // A clean exit here is usually the same Ctrl-C, noticed through the child first.
            println!("up: {name} stopped ({how}); stopping the others");
            failed = !ok;
            running -= 1;
            mark_exited(&mut started, &name);
        }
    }
    // A Ctrl-C reached every child already; a SIGTERM reached only us. Send it on either way:
    // a second request to stop is harmless.
    stop(&started, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + GRACE;
    while running > 0 {
        match tokio::time::timeout_at(deadline, exited.recv()).await {
            Ok(Some((name, how, ok))) => {
                running -= 1;
                failed |= !ok;
                mark_exited(&mut started, &name);
                println!("up: {name} stopped ({how})");
            }
            Ok(None) => break,
            Err(_) => {
                println!("up: {running} still running after {GRACE:?}; killing them");
                stop(&started, Signal::SIGKILL);
                failed = true;
                break;
            }
        }
    }
    // The children are gone, so their pipes close: wait for their last lines to be printed.
    for forwarder in forwarders {
        let _ = forwarder.await;
    }
    if failed {
        Err("not every process stopped cleanly; see the lines above".to_owned())
    } else {
        Ok(())
    }
}

/// Prefix colours: red is the database's colour in the lab, so the dbserver gets it.
const PALETTE: [Color; 6] = [
    Color::Red,
    Color::Cyan,
    Color::Magenta,
    Color::Blue,
    Color::Green,
    Color::Yellow,
];

fn mark_exited(started: &mut [Started], name: &str) {
    if let Some(child) = started.iter_mut().find(|c| c.name == name) {
        child.exited = true;
    }
}

/// Sends `signal` to every started child that has not exited.
fn stop(started: &[Started], signal: Signal) {
    for child in started.iter().filter(|c| !c.exited) {
        if let Err(e) = kill(child.pid, signal) {
            if e != nix::errno::Errno::ESRCH {
                println!("up: cannot signal {} (pid {}): {e}", child.name, child.pid);
            }
        }
    }
}

/// Copies a child's output to ours, line by line, behind its prefix.
async fn forward(stream: impl AsyncRead + Unpin, prefix: String) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        println!("{prefix} {line}");
    }
}
