//! `gclab cli chaos`: a bounded run of load while faults come and go, then a verdict.
//!
//! The schedule of faults is drawn from `--seed` before the run starts, and nothing else
//! decides it, so the same seed gives the same schedule: a run that found a problem can be
//! run again. One fault at a time, each on one node for a few seconds, with quiet gaps
//! between, and the last seconds of the run quiet so that the cluster is seen to recover:
//!
//! ```text
//! quiet │ stall 8002 │ quiet │ partition 8001 (one-way) │ quiet │ drop 8003 30% │ quiet
//! ```
//!
//! The load is `cli bench` in open loop (`--rate`) over key1..keyN, with `--check`: the
//! checker's verdict ends the run, and the timeline shows the faults as shaded bands over
//! the answers (see `timeline.rs`).
//!
//! Not drawn from the seed: which requests a `drop` rule drops, and the jitter of a delay
//! (each frontend draws those itself, as the network would). The schedule is what repeats.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::bench::{self, Mode};
use super::fault::{self, Node};
use super::{exit, fail, print_report, short};
use crate::args::FaultAction;

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub seed: u64,
    pub duration: Duration,
    pub rate: u32,
    pub keys: u32,
    pub frontends: Vec<String>,
    pub db: String,
    pub timeline: PathBuf,
    pub client_timeout: Duration,
}

/// One fault of the schedule: on node `node` (an index into `--frontends`), from `from_s`
/// to `to_s` seconds into the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scheduled {
    pub from_s: f64,
    pub to_s: f64,
    pub node: usize,
    pub fault: Chaos,
}

/// The kinds of fault a chaos run draws from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Chaos {
    /// The others cannot reach the node; with `both`, it cannot reach them either.
    Partition {
        both: bool,
    },
    Delay {
        ms: u64,
        jitter_ms: u64,
    },
    Drop {
        percent: f64,
    },
    Stall,
    DbDelay {
        ms: u64,
    },
    /// `kill -9` of the node's process; `gclab up --restart` starts it again.
    Kill,
}

impl Scheduled {
    /// How a person reads it, with the node's name.
    pub fn describe(&self, node: &str) -> String {
        let node = short(node);
        match &self.fault {
            Chaos::Partition { both: false } => {
                format!("partition {node} (one-way: the others cannot reach it)")
            }
            Chaos::Partition { both: true } => format!("partition {node} --both"),
            Chaos::Delay { ms, jitter_ms } => {
                format!("delay {node} {ms}ms --jitter {jitter_ms}ms")
            }
            Chaos::Drop { percent } => format!("drop {node} {percent}%"),
            Chaos::Stall => format!("stall {node}"),
            Chaos::DbDelay { ms } => format!("db-delay {node} {ms}ms"),
            Chaos::Kill => format!("kill -9 {node} (gclab up starts it again)"),
        }
    }

    /// The same, short enough to label its band in the timeline.
    pub fn label(&self, node: &str) -> String {
        match &self.fault {
            Chaos::Partition { both: false } => format!("partition {} (one-way)", short(node)),
            Chaos::Kill => format!("kill -9 {}", short(node)),
            _ => self.describe(node),
        }
    }

    /// The `cli fault` action that sets it (`None` for a kill, which is no rule).
    fn action(&self, node: &str) -> Option<FaultAction> {
        let node = node.to_owned();
        let from = Vec::new();
        Some(match self.fault {
            Chaos::Partition { both } => FaultAction::Partition { node, from, both },
            Chaos::Delay { ms, jitter_ms } => FaultAction::Delay {
                node,
                by: Duration::from_millis(ms),
                jitter: Duration::from_millis(jitter_ms),
                from,
            },
            Chaos::Drop { percent } => FaultAction::Drop {
                node,
                share: percent,
                from,
            },
            Chaos::Stall => FaultAction::Stall { node, from },
            Chaos::DbDelay { ms } => FaultAction::DbDelay {
                node,
                by: Duration::from_millis(ms),
            },
            Chaos::Kill => return None,
        })
    }
}

/// The schedule for `seed`, over a run of `duration` on `nodes` frontends, with `kill -9`
/// among the faults when `kills` (every frontend runs under `gclab up --restart`). A pure
/// function of its arguments: that is what makes a run repeatable. Each node is killed at
/// most once, so the checker's count of restarts (from counters that began again) is exact.
pub fn schedule(seed: u64, duration: Duration, nodes: usize, kills: bool) -> Vec<Scheduled> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let total = duration.as_secs_f64();
    // The last fifth of the run (at most 3 s) stays quiet: the recovery is part of the story.
    let end = total - (total / 5.0).min(3.0);
    let mut schedule = Vec::new();
    let mut t = 0.5 + rng.f64();
    let mut killed = vec![false; nodes];
    while t + 1.0 <= end && nodes > 0 {
        let length = (1.5 + rng.f64() * 2.5).min(end - t);
        let node = rng.usize(..nodes);
        let fault = match rng.u8(..if kills { 7 } else { 6 }) {
            6 if !killed[node] => {
                killed[node] = true;
                Chaos::Kill
            }
            0 => Chaos::Partition { both: false },
            1 => Chaos::Partition { both: true },
            2 => {
                let ms = 20 + rng.u64(0..=180);
                Chaos::Delay {
                    ms,
                    jitter_ms: ms / 5,
                }
            }
            3 => Chaos::Drop {
                percent: (10 * rng.u64(1..=5)) as f64,
            },
            4 => Chaos::Stall,
            5 => Chaos::DbDelay {
                ms: 500 + 100 * rng.u64(0..=25),
            },
            _ => Chaos::Stall, // a second kill of the same node
        };
        schedule.push(Scheduled {
            from_s: round(t),
            to_s: round(t + length),
            node,
            fault,
        });
        t += length + 0.5 + rng.f64();
    }
    schedule
}

/// Tenths of a second: what a schedule line shows, and all the precision it needs.
fn round(seconds: f64) -> f64 {
    (seconds * 10.0).round() / 10.0
}

/// What the run came to.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub seed: u64,
    /// The frontends' node names, in `--frontends` order: `schedule[].node` indexes them.
    pub nodes: Vec<String>,
    pub schedule: Vec<Scheduled>,
    pub bench: bench::Report,
    /// Database reads per key asked for, over the run.
    pub reads_per_key: Option<f64>,
    pub timeline: PathBuf,
}

/// Runs the chaos and prints the report; exit 1 when the verdict is INVALID.
pub async fn run(plan: Plan, json: bool) -> u8 {
    match chaos(&plan, !json).await {
        Ok(report) => {
            print_report(&report, render, json);
            match &report.bench.check {
                Some(v) if v.valid => exit::FOUND,
                _ => exit::INVALID,
            }
        }
        Err(e) => fail(exit::UNREACHABLE, &e, json),
    }
}

/// Runs the load and the schedule side by side, then draws the timeline.
pub async fn chaos(plan: &Plan, progress: bool) -> Result<Report, String> {
    let nodes = fault::reach(&plan.frontends).await?;
    let kills = nodes.iter().all(|n| n.restartable);
    let schedule = schedule(plan.seed, plan.duration, nodes.len(), kills);
    heal_all(&nodes).await?; // a clean start: no rule left from an earlier run
    let db = crate::client::DbClient::new(&plan.db, super::TIMEOUT);
    bench::fill(&db, plan.keys)
        .await
        .map_err(|e| e.to_string())?;
    let load = bench::Plan {
        mode: Mode::Rate(plan.rate),
        duration: plan.duration,
        keys: plan.keys,
        frontends: plan.frontends.clone(),
        db: Some(plan.db.clone()),
        fill: false,
        client_timeout: plan.client_timeout,
        check: true,
        timeline: true,
        restarts: schedule.iter().filter(|s| s.fault == Chaos::Kill).count() as u64,
        hit_ratio: None,
    };
    let started = Instant::now();
    let run = async {
        tokio::join!(
            bench::measure(&load, progress),
            nemesis(&schedule, &nodes, started)
        )
    };
    // Ctrl-C ends the run, but never leaves a rule set behind it.
    let (bench, faults) = tokio::select! {
        done = run => done,
        _ = tokio::signal::ctrl_c() => {
            heal_all(&nodes).await?;
            return Err("interrupted (Ctrl-C); every fault rule is healed".to_owned());
        }
    };
    let healed = heal_all(&nodes).await;
    let bench = bench.map_err(|e| e.to_string())?;
    faults?;
    healed?;
    let timeline = bench.timeline.clone().unwrap_or_else(|| bench::Timeline {
        bin_ms: 250,
        bins: Vec::new(),
    });
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let bands: Vec<super::timeline::Band> = schedule
        .iter()
        .map(|s| super::timeline::Band {
            from_s: s.from_s,
            to_s: s.to_s,
            label: s.label(&names[s.node]),
        })
        .collect();
    let verdict =
        bench
            .check
            .as_ref()
            .map_or("no verdict", |v| if v.valid { "valid" } else { "INVALID" });
    let title = format!(
        "gclab cli chaos --seed {} · {} s at {}/s over {} frontends · {verdict}",
        plan.seed,
        plan.duration.as_secs_f64(),
        plan.rate,
        nodes.len()
    );
    super::timeline::save(&plan.timeline, &title, &timeline, &bands)
        .map_err(|e| format!("cannot write {}: {e}", plan.timeline.display()))?;
    let reads_per_key = bench.check.as_ref().and_then(|_| {
        let keys = bench.keys_asked.max(1) as f64;
        bench.db_reads.map(|r| r as f64 / keys)
    });
    Ok(Report {
        seed: plan.seed,
        nodes: names,
        schedule,
        bench,
        reads_per_key,
        timeline: plan.timeline.clone(),
    })
}

/// Sets and heals each fault at its time. The first error stops the schedule.
async fn nemesis(schedule: &[Scheduled], nodes: &[Node], started: Instant) -> Result<(), String> {
    for s in schedule {
        tokio::time::sleep_until((started + Duration::from_secs_f64(s.from_s)).into()).await;
        let node = &nodes[s.node];
        let name = &node.name;
        tracing::info!("chaos: {}", s.describe(name));
        let Some(action) = s.action(name) else {
            kill(node)?;
            tokio::time::sleep_until((started + Duration::from_secs_f64(s.to_s)).into()).await;
            back(node).await?;
            continue;
        };
        for (i, rules) in fault::plan(&action, nodes)? {
            for rule in rules {
                nodes[i]
                    .client
                    .set_fault(&rule)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        tokio::time::sleep_until((started + Duration::from_secs_f64(s.to_s)).into()).await;
        for node in nodes {
            node.client
                .heal_faults(Some(name))
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// `kill -9` of a frontend that `gclab up --restart` will start again.
fn kill(node: &Node) -> Result<(), String> {
    use nix::sys::signal::{kill, Signal};
    // A pid of 0 or 1 would signal our own group or init: never sent.
    let pid = i32::try_from(node.pid)
        .ok()
        .filter(|pid| *pid > 1)
        .ok_or_else(|| format!("{} reported no pid to kill", node.name))?;
    kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL)
        .map_err(|e| format!("cannot kill {} (pid {pid}): {e}", node.name))
}

/// Waits, up to 10 s, until a killed frontend answers again.
async fn back(node: &Node) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match node.client.faults().await {
            Ok(process) if process.pid != node.pid => return Ok(()),
            _ if Instant::now() > deadline => {
                return Err(format!(
                    "{} did not come back within 10 s of its kill: is it under gclab up --restart?",
                    node.name
                ))
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn heal_all(nodes: &[Node]) -> Result<(), String> {
    for node in nodes {
        node.client
            .heal_faults(None)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The report as a person reads it.
pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let b = &r.bench;
    let names: Vec<&str> = r.nodes.iter().map(|n| short(n)).collect();
    let _ = writeln!(
        out,
        "chaos: seed {} · {} s at {}/s over {} · keys key1..key{}",
        r.seed,
        b.duration_s,
        b.target,
        names.join(", "),
        b.keys
    );
    let _ = writeln!(
        out,
        "  faults (drawn from the seed; the same seed draws the same):"
    );
    if r.schedule.is_empty() {
        let _ = writeln!(out, "    none: the run is too short for one");
    }
    for s in &r.schedule {
        let _ = writeln!(
            out,
            "    {:>5.1} – {:>5.1} s  {}",
            s.from_s,
            s.to_s,
            s.describe(&r.nodes[s.node])
        );
    }
    let codes: Vec<String> = b
        .status_codes
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let _ = writeln!(
        out,
        "  requests {} · answered {:.2}% · status {} · p99 {:.1} ms · max {:.1} ms",
        b.requests,
        b.success_ratio * 100.0,
        codes.join(" · "),
        b.latency_ms.p99,
        b.latency_ms.max
    );
    if let (Some(reads), Some(per_key)) = (b.db_reads, r.reads_per_key) {
        let _ = writeln!(
            out,
            "  database reads {reads} for {} keys asked: {per_key:.2} per key",
            b.keys_asked
        );
    }
    if let Some(verdict) = &b.check {
        out.push_str(&super::check::render(verdict));
    }
    let _ = writeln!(out, "timeline: {}", r.timeline.display());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_schedule_and_another_seed_another() {
        let thirty = Duration::from_secs(30);
        let a = schedule(7, thirty, 3, false);
        assert!(a.len() >= 4, "{a:?}");
        assert_eq!(a, schedule(7, thirty, 3, false));
        assert_ne!(a, schedule(8, thirty, 3, false));
        assert!(a.iter().all(|s| s.fault != Chaos::Kill));
    }

    #[test]
    fn faults_never_overlap_and_the_end_of_the_run_is_quiet() {
        for seed in 0..50 {
            let s = schedule(seed, Duration::from_secs(20), 3, true);
            for node in 0..3 {
                let kills = s
                    .iter()
                    .filter(|f| f.node == node && f.fault == Chaos::Kill);
                assert!(kills.count() <= 1, "seed {seed}: {s:?}");
            }
            for pair in s.windows(2) {
                assert!(pair[0].to_s < pair[1].from_s, "seed {seed}: {pair:?}");
            }
            assert!(
                s.iter().all(|f| f.to_s <= 17.0 && f.node < 3),
                "seed {seed}"
            );
        }
    }
}
