//! `gclab up`: the whole topology in one terminal, like docker-compose.
//!
//! Each server is a real child process (this same binary, run as `gclab dbserver` or
//! `gclab frontend`), so you can `kill -9` one by its pid and watch the others cope: `up`
//! reports the death and keeps the rest running. A child that fails on its own (a port in
//! use at start-up) stops them all, since the topology cannot work without it. Every
//! line a child prints comes out here prefixed by its coloured name:
//!
//! ```text
//! frontend-8001 | 13:26:04.379  asking dbserver for foo
//! dbserver      | 13:26:04.380  getting foo
//! ```
//!
//! With `--restart`, a frontend killed by a signal is started again a second later, as a
//! crashed pod's container is: with an empty cache, and `cli chaos` may then kill frontends
//! as one of its faults.
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

/// How long `--restart` waits before it starts a killed frontend again.
const RESTART_AFTER: Duration = Duration::from_secs(1);

/// How long children get to stop cleanly before they are killed.
pub const GRACE: Duration = Duration::from_secs(10);

/// A started child: its name, for the prefix, and its pid, for signals.
struct Started {
    name: String,
    pid: Pid,
    /// Once it has exited its pid may be reused, so it is never signalled again.
    exited: bool,
    /// Its arguments, to say how to restart it (or to restart it, with `--restart`).
    argv: Vec<String>,
    /// Its coloured name, in front of each line it prints.
    prefix: String,
}

/// What starting a child needs, the first time and again after `--restart`.
struct Launcher {
    exe: std::path::PathBuf,
    color: bool,
    restart: bool,
    exits: mpsc::UnboundedSender<(String, Exit)>,
}

impl Launcher {
    /// Starts one child, forwards its output behind `prefix`, and reports its exit on
    /// `exits`.
    fn spawn(
        &self,
        name: &str,
        argv: &[String],
        prefix: &str,
        forwarders: &mut Vec<tokio::task::JoinHandle<()>>,
    ) -> Result<Started, String> {
        let mut command = Command::new(&self.exe);
        command
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if self.color {
            // Children write to a pipe, not a terminal; tell them colour is still wanted.
            command.env("CLICOLOR_FORCE", "1");
        }
        if self.restart {
            // A frontend says so on /stats, so that `cli chaos` knows it may kill it.
            command.env(crate::stats::RESTARTED_BY_UP, "1");
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        // `kill(0, …)` would signal our whole process group, so a missing pid is an error.
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw)
            .ok_or_else(|| format!("{name} exited as soon as it started"))?;
        println!("{prefix} started: gclab {} (pid {pid})", argv.join(" "));
        if let Some(out) = child.stdout.take() {
            forwarders.push(tokio::spawn(forward(out, prefix.to_owned())));
        }
        if let Some(err) = child.stderr.take() {
            forwarders.push(tokio::spawn(forward(err, prefix.to_owned())));
        }
        let exits = self.exits.clone();
        let child_name = name.to_owned();
        tokio::spawn(async move {
            let exit = match child.wait().await {
                Ok(status) => Exit {
                    how: status.to_string(),
                    code: status.code(),
                },
                Err(e) => Exit {
                    how: format!("could not be waited for: {e}"),
                    code: Some(-1),
                },
            };
            let _ = exits.send((child_name, exit));
        });
        Ok(Started {
            name: name.to_owned(),
            pid,
            exited: false,
            argv: argv.to_vec(),
            prefix: prefix.to_owned(),
        })
    }
}

/// How a child ended: `code` is `None` when a signal killed it.
struct Exit {
    how: String,
    code: Option<i32>,
}

/// Prints `up: ready` once the dbserver and every frontend's client port take connections,
/// so that a learner (or a lab page) knows when the first command can go: the `started:`
/// lines come when the processes exist, before they listen. Gives up saying so after 30 s.
async fn say_when_ready(db: String, frontends: Vec<String>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let all: Vec<&String> = std::iter::once(&db).chain(&frontends).collect();
    for addr in &all {
        while tokio::net::TcpStream::connect(addr.as_str()).await.is_err() {
            if tokio::time::Instant::now() > deadline {
                println!("up: {addr} is still not listening after 30 s; see its lines above");
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let ports: Vec<&str> = frontends
        .iter()
        .map(|f| f.rsplit(':').next().unwrap_or(f))
        .collect();
    println!(
        "up: ready: the dbserver on {db}, clients on {}",
        ports.join(", ")
    );
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
    // The frontends' default deadlines (2 s for a database read, 3 s for a peer call) suit a
    // delay up to a second; a longer one gets deadlines that follow it, so `--delay 5s` still
    // loads: the delay plus 2 s for a read, plus 3 s for a peer call.
    let slow = args.delay > Duration::from_secs(1);
    let db_timeout = format!("{}ms", (args.delay + Duration::from_secs(2)).as_millis());
    let peer_timeout = format!("{}ms", (args.delay + Duration::from_secs(3)).as_millis());
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
        ]
        .map(String::from)
        .to_vec();
        if slow {
            argv.extend(
                ["--db-timeout", &db_timeout, "--peer-timeout", &peer_timeout].map(String::from),
            );
        }
        if args.no_singleflight {
            argv.push("--no-singleflight".to_owned());
        }
        if args.no_peers {
            argv.push("--no-peers".to_owned());
        }
        if args.quiet_hits {
            argv.push("--quiet-hits".to_owned());
        }
        if args.follow_changes {
            argv.push("--follow-changes".to_owned());
        }
        plan.push((format!("frontend-{port}"), argv));
    }

    check_ports_free(&args.db_addr, &ports)?;
    let stopped = shutdown::signal(); // before any child exists, so no signal goes unheard
    let width = plan.iter().map(|(name, _)| name.len()).max().unwrap_or(8);
    let (exits, mut exited) = mpsc::unbounded_channel::<(String, Exit)>();
    let mut started: Vec<Started> = Vec::new();
    let mut forwarders = Vec::new();
    let launcher = Launcher {
        exe,
        color,
        restart: args.restart,
        exits: exits.clone(),
    };
    for (i, (name, argv)) in plan.into_iter().enumerate() {
        let prefix = format!("{name:<width$} |")
            .color(PALETTE[i % PALETTE.len()])
            .to_string();
        match launcher.spawn(&name, &argv, &prefix, &mut forwarders) {
            Ok(child) => started.push(child),
            Err(e) => {
                stop(&started, Signal::SIGTERM);
                return Err(e);
            }
        }
    }
    drop(exits);
    let ready = tokio::spawn(say_when_ready(
        args.db_addr.clone(),
        ports
            .iter()
            .map(|p| format!("127.0.0.1:{}", p.parse::<u16>().unwrap_or(0) + 1000))
            .collect(),
    ));
    let (restarts, mut restart_due) = mpsc::unbounded_channel::<String>();

    // Run until Ctrl-C or SIGTERM. A child killed by a signal (`kill -9`, the lab's failure
    // experiments) is reported and the others keep running; a child that fails on its own (a
    // port in use at start-up) stops the topology, which cannot work without it.
    let mut stopped = std::pin::pin!(stopped);
    let mut failed = false;
    let mut running = started.len();
    while running > 0 {
        tokio::select! {
            // Stopping first: a restart that falls due with Ctrl-C must not start a child.
            biased;
            () = &mut stopped => {
                println!("up: stopping {running} processes");
                break;
            }
            Some(name) = restart_due.recv() => {
                let child = started.iter().find(|c| c.name == name).map(|c| (c.argv.clone(), c.prefix.clone()));
                if let Some((argv, prefix)) = child {
                    match launcher.spawn(&name, &argv, &prefix, &mut forwarders) {
                        Ok(again) => {
                            started.retain(|c| c.name != name);
                            started.push(again);
                            running += 1;
                        }
                        Err(e) => println!("up: {e}; the others keep running"),
                    }
                }
            }
            Some((name, exit)) = exited.recv() => {
                running -= 1;
                mark_exited(&mut started, &name);
                match exit.code {
                    // Usually the same Ctrl-C, noticed through the child first.
                    Some(0) => println!("up: {name} stopped ({})", exit.how),
                    None if args.restart && name.starts_with("frontend") => {
                        // --restart: a frontend killed by a signal (`cli chaos`, or you) comes
                        // back, as a pod's container would, with an empty cache.
                        println!("up: {name} was killed ({}); starting it again in {} s (--restart)", exit.how, RESTART_AFTER.as_secs());
                        // After a pause, as a crashed pod's container comes back after a
                        // moment, not at once: long enough to see its keys fail over.
                        let again = restarts.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(RESTART_AFTER).await;
                            let _ = again.send(name);
                        });
                    }
                    None => {
                        let command = started.iter().find(|c| c.name == name).map_or(String::new(), |c| c.argv.join(" "));
                        println!("up: {name} was killed ({}); the others keep running.", exit.how);
                        println!("up: to bring it back, run in another terminal: gclab {command}");
                    }
                    Some(_) => {
                        println!("up: {name} failed ({}); stopping the others", exit.how);
                        failed = true;
                        break;
                    }
                }
            }
        }
    }
    ready.abort();
    // A Ctrl-C reached every child already; a SIGTERM reached only us. Send it on either way:
    // a second request to stop is harmless.
    stop(&started, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + GRACE;
    while running > 0 {
        match tokio::time::timeout_at(deadline, exited.recv()).await {
            Ok(Some((name, exit))) => {
                running -= 1;
                failed |= exit.code != Some(0);
                mark_exited(&mut started, &name);
                println!("up: {name} stopped ({})", exit.how);
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

/// Refuses to start when the topology's ports are taken, in one sentence that names them
/// and the likely reason, instead of one child after another failing to bind.
fn check_ports_free(db_addr: &str, ports: &[String]) -> Result<(), String> {
    let mut wanted: Vec<String> = vec![db_addr.to_owned()];
    for port in ports {
        let port: u16 = port.parse().expect("made from u16 ports above");
        wanted.push(format!("127.0.0.1:{port}"));
        wanted.push(format!("127.0.0.1:{}", port + 1000));
    }
    let busy: Vec<&str> = wanted
        .iter()
        .filter(|addr| std::net::TcpListener::bind(addr.as_str()).is_err())
        .map(|addr| addr.rsplit(':').next().unwrap_or(addr))
        .collect();
    if busy.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} {} in use: is the five-terminal layout, lab/tmux.sh or another 'gclab up' running? \
         Stop it, or start this one elsewhere with --port and --db-addr",
        busy.join(", "),
        if busy.len() == 1 { "is" } else { "are" }
    ))
}
