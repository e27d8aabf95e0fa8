//! Runs every command on every lab page, in order, against live servers on the default
//! ports, and checks the output each page promises. A page that drifts from the code — a
//! changed default port, a reworded log line — fails here.
//!
//! The page format is described for authors in `lab/README.md` ("How the pages are tested").
//! In short, a fenced block ```` ```console NAME ```` is what a learner types and sees in the
//! terminal called NAME:
//! - in the terminal `cli`, each `$ command` runs to completion (under bash) and its output,
//!   stdout and stderr together, must match the lines that follow it, all of them, in order;
//! - in any other terminal, `$ command` starts a server that keeps running; the lines that
//!   follow must appear in its output (other lines may come between). A block with no `$`
//!   line says "now look at that terminal". `$ ^C` is pressing Ctrl-C there.
//!
//! In expected lines, `…` matches any text, a line that is only `…` matches any number of
//! lines, clock times (`13:26:04.379`) match any time, and a number before ` ms` or ` s`
//! matches any number, since times are never the same twice. Counts must match exactly.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use regex::Regex;

mod common;

/// One `$ command` and the output promised after it.
#[derive(Debug)]
struct Step {
    line: usize,
    command: Option<String>,
    expected: Vec<String>,
}

/// One fenced block: the terminal it happens in, and its steps.
#[derive(Debug)]
struct Block {
    terminal: String,
    steps: Vec<Step>,
}

/// Reads the ```` ```console NAME ```` blocks of a page.
fn parse(page: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    for (i, line) in page.lines().enumerate() {
        let line_no = i + 1;
        if let Some(block) = current.as_mut() {
            if line.trim_start().starts_with("```") {
                blocks.push(current.take().expect("inside a block"));
            } else if let Some(command) = line.strip_prefix("$ ") {
                block.steps.push(Step {
                    line: line_no,
                    command: Some(command.trim().to_owned()),
                    expected: Vec::new(),
                });
            } else {
                if block.steps.is_empty() {
                    block.steps.push(Step {
                        line: line_no,
                        command: None,
                        expected: Vec::new(),
                    });
                }
                let step = block.steps.last_mut().expect("pushed above");
                step.expected.push(line.trim_end().to_owned());
            }
        } else if let Some(info) = line.trim_start().strip_prefix("```console") {
            let terminal = info.trim();
            assert!(
                !terminal.is_empty(),
                "line {line_no}: a console block must name its terminal"
            );
            current = Some(Block {
                terminal: terminal.to_owned(),
                steps: Vec::new(),
            });
        }
    }
    for block in &mut blocks {
        for step in &mut block.steps {
            while step.expected.last().is_some_and(|l| l.is_empty()) {
                step.expected.pop();
            }
        }
    }
    blocks
}

/// Turns an expected line into a regex, following the rules in the module doc.
fn pattern(expected: &str) -> Regex {
    let varying = Regex::new(r"(\d\d:\d\d:\d\d\.\d{3})|\d+(?:\.\d+)? (ms|s)\b").unwrap();
    let mut out = String::from("^");
    for (i, piece) in expected.trim_end().split('…').enumerate() {
        if i > 0 {
            out.push_str(".*?");
        }
        let mut last = 0;
        for found in varying.captures_iter(piece) {
            let whole = found.get(0).expect("group 0 always exists");
            out.push_str(&regex::escape(&piece[last..whole.start()]));
            out.push_str(match found.get(2) {
                Some(unit) if unit.as_str() == "ms" => r"[0-9.]+ ms",
                Some(_) => r"[0-9.]+ s",
                None => r"\d\d:\d\d:\d\d\.\d{3}",
            });
            last = whole.end();
        }
        out.push_str(&regex::escape(&piece[last..]));
    }
    out.push('$');
    Regex::new(&out).unwrap_or_else(|e| panic!("bad expected line {expected:?}: {e}"))
}

/// Whether `actual` lines match `expected` lines, all of them, in order.
fn matches_all(expected: &[String], actual: &[String]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first.trim() == "…" => {
            (0..=actual.len()).any(|skip| matches_all(rest, &actual[skip..]))
        }
        Some((first, rest)) => actual.split_first().is_some_and(|(line, more)| {
            pattern(first).is_match(line.trim_end()) && matches_all(rest, more)
        }),
    }
}

/// A server terminal: a process group and everything it printed.
struct Terminal {
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
    /// How far the page has already looked.
    seen: usize,
}

impl Terminal {
    fn start(dir: &Path, command: &str) -> Terminal {
        use std::os::unix::process::CommandExt;
        let mut child = shell(dir, &format!("exec {command} 2>&1"))
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&output);
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Terminal {
            child,
            output,
            seen: 0,
        }
    }

    /// Waits until each expected line has appeared, in order, after what was seen before.
    fn expect(&mut self, expected: &[String], whence: &str) {
        for line in expected.iter().filter(|l| l.trim() != "…") {
            let wanted = pattern(line);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let output = self.output.lock().unwrap();
                if let Some(at) = output[self.seen..]
                    .iter()
                    .position(|l| wanted.is_match(l.trim_end()))
                {
                    self.seen += at + 1;
                    break;
                }
                let all = output.join("\n");
                drop(output);
                assert!(
                    Instant::now() < deadline,
                    "{whence}: the terminal never printed {line:?}; it printed:\n{all}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Ctrl-C: SIGINT to the whole group, then wait for it to exit.
    fn interrupt(&mut self, whence: &str) {
        signal_group(&self.child, "-INT");
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "{whence}: Ctrl-C did not stop it"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            signal_group(&self.child, "-INT");
            let deadline = Instant::now() + Duration::from_secs(15);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            signal_group(&self.child, "-KILL");
            let _ = self.child.wait();
        }
    }
}

fn signal_group(child: &Child, signal: &str) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill")
        .args([signal, "--", &group])
        .stderr(Stdio::null())
        .status();
}

/// bash in the lab's working directory, set up as the harness needs it.
fn shell(dir: &Path, script: &str) -> Command {
    let mut command = Command::new("bash");
    command
        .args(["-c", script])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("GCLAB_EXPLAIN", "1")
        // lab/hosts.sh runs the binary under test, not one it might find elsewhere.
        .env("GCLAB", env!("CARGO_BIN_EXE_gclab"))
        // Debian keeps nginx (and ip, tc) in /usr/sbin, which a user's PATH often lacks.
        .env(
            "PATH",
            format!(
                "{}:/usr/sbin:/sbin",
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    command
}

/// A fresh working directory with `bin/` links to the binary under test, as `build.sh` makes.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for name in ["gclab", "dbserver", "frontend", "cli"] {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_gclab"), bin.join(name)).unwrap();
    }
    // Pages may refer to the lab's own files (lab/, topology.svg) by their repo paths.
    std::os::unix::fs::symlink(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("lab"),
        dir.path().join("lab"),
    )
    .unwrap();
    dir
}

/// The lab's pages, in course order.
fn pages() -> Vec<PathBuf> {
    let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("lab");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&lab)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".md") && name.chars().next().is_some_and(|c| c.is_ascii_digit())
        })
        .collect();
    pages.sort();
    pages
}

/// What a page needs beyond the harness, from its `<!-- needs: X -->` lines: `root` (network
/// namespaces), or a program on PATH (`nginx`).
fn needs(page: &str) -> Vec<&str> {
    page.lines()
        .filter_map(|l| l.trim().strip_prefix("<!-- needs: "))
        .filter_map(|l| l.strip_suffix(" -->"))
        .map(str::trim)
        .collect()
}

/// Runs `lab/hosts.sh down` when dropped: it stops only what `up` started, and is a no-op when
/// nothing is up.
struct HostsDown;

impl Drop for HostsDown {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/hosts.sh");
        let _ = Command::new("timeout")
            .arg("60")
            .arg("bash")
            .arg(script)
            .arg("down")
            .stdout(Stdio::null())
            .status();
    }
}

/// Runs one page; panics with the page, line and difference on the first broken promise.
fn run_page(page: &Path) {
    let name = page.file_name().unwrap().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(page).unwrap();
    for need in needs(&text) {
        let missing = match need {
            "root" => common::cannot_make_namespaces(),
            program => (!shell(Path::new("/"), &format!("command -v {program}"))
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()))
            .then(|| format!("no `{program}` on PATH")),
        };
        if let Some(why) = missing {
            // On CI a skipped page would hide a broken one.
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{name} needs {need}, and on CI it must run: {why}"
            );
            eprintln!("skipping {name}: it needs {need}: {why}");
            return;
        }
    }
    // Whatever the page does, a lab it put up goes down, also when a promise breaks midway.
    let _hosts = text.contains("<!-- needs: root -->").then_some(HostsDown);
    for port in [8080, 8001, 8002, 8003, 8004, 9000, 9001, 9002, 9003, 9004] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "{name}: port {port} is in use; stop any lab servers you are running before `cargo test`"
        );
    }
    let dir = workdir();
    let mut terminals: Vec<(String, Terminal)> = Vec::new();
    for block in parse(&text) {
        for step in &block.steps {
            let whence = format!("{name}:{} ({})", step.line, block.terminal);
            if block.terminal == "cli" {
                let command = step
                    .command
                    .as_ref()
                    .unwrap_or_else(|| panic!("{whence}: output with no command"));
                let output = shell(dir.path(), &format!("{{ {command} ; }} 2>&1"))
                    .output()
                    .unwrap();
                let actual: Vec<String> = String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .map(str::to_owned)
                    .collect();
                assert!(
                    matches_all(&step.expected, &actual),
                    "{whence}: `{command}` printed\n{}\nbut the page promises\n{}",
                    actual.join("\n"),
                    step.expected.join("\n")
                );
                continue;
            }
            let at = terminals.iter().position(|(t, _)| *t == block.terminal);
            match step.command.as_deref() {
                Some("^C") => {
                    let (_, terminal) = &mut terminals
                        [at.unwrap_or_else(|| panic!("{whence}: nothing runs there"))];
                    terminal.interrupt(&whence);
                    terminal.expect(&step.expected, &whence);
                }
                Some(command) => {
                    let terminal = Terminal::start(dir.path(), command);
                    match at {
                        Some(i) => terminals[i].1 = terminal,
                        None => terminals.push((block.terminal.clone(), terminal)),
                    }
                    let i = at.unwrap_or(terminals.len() - 1);
                    terminals[i].1.expect(&step.expected, &whence);
                }
                None => {
                    let (_, terminal) = &mut terminals
                        [at.unwrap_or_else(|| panic!("{whence}: nothing runs there"))];
                    terminal.expect(&step.expected, &whence);
                }
            }
        }
    }
    // Dropping the terminals presses Ctrl-C in each, and kills what is left.
}

#[test]
fn every_lab_page_runs_as_written() {
    // GCLAB_LAB_PAGE=03 runs only the pages whose names contain "03", while writing one.
    let only = std::env::var("GCLAB_LAB_PAGE").unwrap_or_default();
    for page in pages() {
        if page.to_string_lossy().contains(&only) {
            run_page(&page);
        }
    }
}

#[test]
fn the_course_has_at_least_eight_exercises_and_the_index_links_each() {
    let pages = pages();
    assert!(pages.len() >= 8, "{pages:?}");
    let index =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/README.md"))
            .unwrap();
    for page in pages {
        let name = page.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            index.contains(&format!("]({name})")),
            "lab/README.md does not link {name}"
        );
    }
}

#[test]
fn the_matcher_wildcards_times_but_not_counts() {
    let e = |lines: &[&str]| lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    assert!(matches_all(
        &e(&["bar  ← 9001 · from db · 302.5 ms"]),
        &e(&["bar  ← 9001 · from db · 1.2 ms"])
    ));
    assert!(matches_all(
        &e(&["13:26:04.379  getting foo"]),
        &e(&["09:01:02.003  getting foo"])
    ));
    assert!(!matches_all(
        &e(&["database reads: 1"]),
        &e(&["database reads: 1000"])
    ));
    assert!(matches_all(&e(&["a", "…", "z"]), &e(&["a", "b", "c", "z"])));
    assert!(matches_all(
        &e(&["{\"gets\":…}"]),
        &e(&["{\"gets\":3,\"x\":1}"])
    ));
    assert!(!matches_all(&e(&["a"]), &e(&["a", "extra"])));
}
