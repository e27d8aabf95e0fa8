//! `gclab cli fault`: break the network between the frontends on purpose, and heal it.
//!
//! A rule goes to the node whose calls it hurts (see `faults.rs`): `stall 8001` sets, on
//! 8002 and 8003, "calls to 8001 get no answer". So `partition 8001 --from 8002` is
//! one-way: 8001 can still ask 8002, but 8002 cannot ask 8001. Nodes are named by their
//! peer port or client port (8001 or 9001), or host:port; the cli finds out which frontend
//! is which from each one's `/stats`.

use std::time::Duration;

use serde::Serialize;

use super::{exit, fail, print_report, short, TIMEOUT};
use crate::args::{address, FaultAction};
use crate::client::{FaultList, FrontendClient};
use crate::faults::{Fault, Rule};

/// One frontend: its client and its node name (peer address).
pub struct Node {
    pub client: FrontendClient,
    pub name: String,
    /// Its process, and whether `gclab up --restart` brings it back if it is killed.
    pub pid: u32,
    pub restartable: bool,
}

/// What was done, on which node.
#[derive(Debug, Clone, Serialize)]
pub struct Done {
    /// The node the rule was set on, or healed on (its peer address).
    pub node: String,
    pub rules: Vec<Rule>,
}

/// Runs `cli fault …` and returns the exit code.
pub async fn run(action: FaultAction, frontends: &[String], json: bool) -> u8 {
    // Setting a rule needs every node: a rule meant for one that is down could not be set,
    // and the lab would be broken in a way nobody asked for. Healing and listing go on
    // without the nodes that do not answer (a killed one took its rules with it).
    let partial = matches!(action, FaultAction::Heal { .. } | FaultAction::List);
    let nodes = match reach(frontends).await {
        Ok(nodes) => nodes,
        Err(e) if !partial => return fail(exit::UNREACHABLE, &e, json),
        Err(_) => {
            let mut answered = Vec::new();
            for addr in frontends {
                match reach(std::slice::from_ref(addr)).await {
                    Ok(mut node) => answered.append(&mut node),
                    Err(e) => eprintln!("{}: skipped: {e}", short(addr)),
                }
            }
            answered
        }
    };
    if let FaultAction::List = action {
        return list(&nodes, json).await;
    }
    let plan = match plan(&action, &nodes) {
        Ok(plan) => plan,
        Err(e) => return fail(exit::USAGE, &e, json),
    };
    let mut done = Vec::new();
    for (i, rules) in plan {
        let node = &nodes[i];
        let mut set = Vec::new();
        for rule in rules {
            if let Err(e) = node.client.set_fault(&rule).await {
                let already = done.iter().map(|d: &Done| d.rules.len()).sum::<usize>() + set.len();
                let message = match already {
                    0 => e.to_string(),
                    n => {
                        format!("{e}; {n} rules were set before it, `cli fault heal` removes them")
                    }
                };
                return fail(exit::UNREACHABLE, &message, json);
            }
            set.push(rule);
        }
        done.push(Done {
            node: node.name.clone(),
            rules: set,
        });
    }
    if let FaultAction::Heal { node } = &action {
        let about = node.as_deref().map(|n| named(n, &nodes)).transpose();
        let about = match about {
            Ok(about) => about,
            Err(e) => return fail(exit::USAGE, &e, json),
        };
        for node in &nodes {
            match node.client.heal_faults(about.as_deref()).await {
                Ok(rules) => done.push(Done {
                    node: node.name.clone(),
                    rules,
                }),
                Err(e) => return fail(exit::UNREACHABLE, &e.to_string(), json),
            }
        }
        print_report(&done, |d| render(d, "healed"), json);
    } else {
        print_report(&done, |d| render(d, "set"), json);
    }
    exit::FOUND
}

/// Every frontend's client, name and process; an error if one does not answer.
pub async fn reach(frontends: &[String]) -> Result<Vec<Node>, String> {
    let mut nodes = Vec::new();
    for addr in frontends {
        let client = FrontendClient::new(addr, TIMEOUT);
        let stats = client.stats().await.map_err(|e| e.to_string())?;
        let process = client.faults().await.map_err(|e| e.to_string())?;
        let restartable = process.restartable && is_ours(addr, process.pid);
        nodes.push(Node {
            client,
            name: stats.node,
            pid: process.pid,
            restartable,
        });
    }
    Ok(nodes)
}

/// Whether the frontend at `addr` is a process of this machine running this same program,
/// so that `cli chaos` may signal its pid: a pid from another host, or a recycled one, names
/// some other process here.
fn is_ours(addr: &str, pid: u32) -> bool {
    let local = addr
        .rsplit_once(':')
        .and_then(|(host, _)| host.parse::<std::net::IpAddr>().ok())
        .is_some_and(|ip| ip.is_loopback());
    let exe = |path: std::path::PathBuf| std::fs::canonicalize(path).ok();
    let same = match (
        exe(format!("/proc/{pid}/exe").into()),
        std::env::current_exe().ok().and_then(exe),
    ) {
        (Some(theirs), Some(ours)) => theirs == ours,
        _ => false,
    };
    local && pid > 1 && same
}

/// The node a person named, as its peer address.
fn named(text: &str, nodes: &[Node]) -> Result<String, String> {
    index(text, nodes).map(|i| nodes[i].name.clone())
}

fn index(text: &str, nodes: &[Node]) -> Result<usize, String> {
    let wanted = address(text);
    nodes
        .iter()
        .position(|n| n.name == wanted || n.client.addr() == wanted)
        .ok_or_else(|| {
            let known: Vec<String> = nodes
                .iter()
                .map(|n| format!("{} (clients {})", short(&n.name), short(n.client.addr())))
                .collect();
            format!(
                "unknown node {text}: the frontends are {}; name one by its peer or client \
                 port, or pass --frontends",
                known.join(", ")
            )
        })
}

/// Which rules go to which node (by index), for a set action.
pub fn plan(action: &FaultAction, nodes: &[Node]) -> Result<Vec<(usize, Vec<Rule>)>, String> {
    let peer_rule = |node: &str, from: &[String], fault: Fault| {
        let target = index(node, nodes)?;
        let sources: Vec<usize> = if from.is_empty() {
            (0..nodes.len()).filter(|i| *i != target).collect()
        } else {
            from.iter()
                .map(|f| index(f, nodes))
                .collect::<Result<_, _>>()?
        };
        if sources.contains(&target) {
            return Err(format!("{node} cannot be cut off from itself"));
        }
        Ok((target, sources, fault))
    };
    let to_each = |(target, sources, fault): (usize, Vec<usize>, Fault)| {
        sources
            .into_iter()
            .map(|s| {
                let rule = Rule {
                    about: nodes[target].name.clone(),
                    to: Some(nodes[target].name.clone()),
                    fault: fault.clone(),
                };
                (s, vec![rule])
            })
            .collect::<Vec<_>>()
    };
    let ms = |d: &Duration| d.as_millis() as u64;
    Ok(match action {
        FaultAction::Partition { node, from, both } => {
            let (target, sources, fault) = peer_rule(node, from, Fault::Partition)?;
            let mut plan = to_each((target, sources.clone(), fault.clone()));
            if *both {
                let back = sources
                    .iter()
                    .map(|s| Rule {
                        about: nodes[target].name.clone(),
                        to: Some(nodes[*s].name.clone()),
                        fault: fault.clone(),
                    })
                    .collect();
                plan.push((target, back));
            }
            plan
        }
        FaultAction::Delay {
            node,
            by,
            jitter,
            from,
        } => to_each(peer_rule(
            node,
            from,
            Fault::Delay {
                ms: ms(by),
                jitter_ms: ms(jitter),
            },
        )?),
        FaultAction::Drop { node, share, from } => {
            to_each(peer_rule(node, from, Fault::Drop { percent: *share })?)
        }
        FaultAction::Stall { node, from } => to_each(peer_rule(node, from, Fault::Stall)?),
        FaultAction::DbDelay { node, by } => {
            let target = index(node, nodes)?;
            vec![(
                target,
                vec![Rule {
                    about: nodes[target].name.clone(),
                    to: None,
                    fault: Fault::DbDelay { ms: ms(by) },
                }],
            )]
        }
        FaultAction::Heal { .. } | FaultAction::List => Vec::new(),
    })
}

/// `cli fault list`: every node's rules and counts.
async fn list(nodes: &[Node], json: bool) -> u8 {
    let mut all: Vec<(String, FaultList)> = Vec::new();
    for node in nodes {
        match node.client.faults().await {
            Ok(list) => all.push((node.name.clone(), list)),
            Err(e) => return fail(exit::UNREACHABLE, &e.to_string(), json),
        }
    }
    let render_list = |all: &Vec<(String, FaultList)>| {
        use std::fmt::Write;
        let mut out = String::new();
        for (name, list) in all {
            let c = &list.counts;
            let _ = writeln!(
                out,
                "{}: {} · calls hurt: partitioned {} · dropped {} · delayed {} · stalled {} · \
                 db reads delayed {}",
                short(name),
                match list.rules.len() {
                    0 => "no rules".to_owned(),
                    1 => "1 rule".to_owned(),
                    n => format!("{n} rules"),
                },
                c.partitioned,
                c.dropped,
                c.delayed,
                c.stalled,
                c.db_delayed
            );
            for rule in &list.rules {
                let _ = writeln!(out, "  {}", shorten(&rule.to_string()));
            }
        }
        out
    };
    print_report(&all, render_list, json);
    exit::FOUND
}

fn render(done: &[Done], verb: &str) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for d in done {
        for rule in &d.rules {
            let _ = writeln!(
                out,
                "{} {verb}: {}",
                short(&d.node),
                shorten(&rule.to_string())
            );
        }
    }
    if out.is_empty() {
        out = format!("no rules to be {verb}\n");
    }
    out
}

/// `127.0.0.1:8001` → `8001` inside a sentence, as `short` does for a lone address.
fn shorten(text: &str) -> String {
    text.replace("127.0.0.1:", "")
}
