//! The library's map holds: no module imports another that imports it back, however far
//! round. The same check as `../shared/tools/modcycles.py`, here so that `cargo test` runs it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every top-level module of the library and the modules it names as `crate::x`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let pattern = regex::Regex::new(r"crate::([a-z_][a-z0-9_]*)").unwrap();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = vec![];
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && path.file_name().unwrap() != "bin" {
            for inner in std::fs::read_dir(&path).unwrap() {
                files.push((path.clone(), inner.unwrap().path()));
            }
        } else if path.extension().is_some_and(|e| e == "rs") && path.file_stem().unwrap() != "lib"
        {
            files.push((path.with_extension(""), path));
        }
    }
    for (module, file) in files {
        let name = module.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        // A module's own unit tests may use anything; only the module proper counts.
        let text = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        let uses = graph.entry(name.clone()).or_default();
        for found in pattern.captures_iter(text) {
            if found[1] != name {
                uses.insert(found[1].to_owned());
            }
        }
    }
    graph
}

/// A cycle through `start`, if there is one: the path back to it.
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![start.to_owned()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().unwrap();
        for next in graph.get(last).into_iter().flatten() {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(next.clone());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push(longer);
            }
        }
    }
    None
}

#[test]
fn no_module_imports_itself_round_a_circle() {
    let graph = imports();
    assert!(
        graph.contains_key("group") && graph.contains_key("peers"),
        "{graph:?}"
    );
    for module in graph.keys() {
        if let Some(cycle) = cycle_from(&graph, module) {
            panic!("import cycle: {}", cycle.join(" → "));
        }
    }
}

#[test]
fn the_get_path_sits_below_the_servers() {
    let graph = imports();
    // The algorithm modules depend on nothing else in the crate.
    for lesson in ["singleflight", "ring", "cache"] {
        assert_eq!(
            graph[lesson],
            BTreeSet::new(),
            "{lesson} imports {:?}",
            graph[lesson]
        );
    }
    // The Get path knows its pieces, never the servers above it.
    for server in [
        "frontend",
        "peer_server",
        "dbserver",
        "cli",
        "args",
        "topology",
    ] {
        assert!(!graph["group"].contains(server), "group imports {server}");
        assert!(!graph["peers"].contains(server), "peers imports {server}");
    }
    assert!(!graph["peers"].contains("group"), "peers imports group");
}

#[test]
fn the_check_finds_a_cycle_when_there_is_one() {
    let mut graph = BTreeMap::new();
    graph.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    graph.insert("b".to_owned(), BTreeSet::from(["c".to_owned()]));
    graph.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(
        cycle_from(&graph, "a"),
        Some(
            vec!["a", "b", "c", "a"]
                .into_iter()
                .map(String::from)
                .collect()
        )
    );
}
