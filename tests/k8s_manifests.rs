//! deploy/k8s's manifests, read the way Kubernetes reads them, and every command line in them
//! parsed by the binary's own clap definition. A flag renamed in `src/args.rs`, a port that
//! moved, or a probe aimed at a port nothing listens on fails here, not on someone's cluster.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;

use clap::Parser;
use gclab::args::{Command, Gclab};
use serde::Deserialize;
use serde_yaml_ng::Value;

/// What the downward API would give a pod as `status.podIP`.
const POD_IP: &str = "10.1.2.3";

/// Every document of every `deploy/k8s/*.yaml`, each with the file it came from.
fn manifests() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .expect("a directory entry that was listed can be read")
                .path()
        })
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut documents = vec![];
    for file in files {
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (i, document) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let value = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("{name}, document {}: {e}", i + 1));
            // An empty document (a stray `---`) is skipped by kubectl too.
            if !value.is_null() {
                documents.push((name.clone(), value));
            }
        }
    }
    assert!(!documents.is_empty(), "no manifests in {}", dir.display());
    documents
}

/// The string at `path` inside `value`, if there is one.
fn text<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().fold(value, |v, key| &v[*key]).as_str()
}

fn kind(object: &Value) -> &str {
    text(object, &["kind"]).unwrap_or_default()
}

fn name(object: &Value) -> &str {
    text(object, &["metadata", "name"]).unwrap_or_default()
}

fn of_kind<'a>(documents: &'a [(String, Value)], wanted: &str) -> Vec<&'a Value> {
    documents
        .iter()
        .map(|(_, object)| object)
        .filter(|object| kind(object) == wanted)
        .collect()
}

/// The containers of a StatefulSet's pods.
fn containers(set: &Value) -> &[Value] {
    set["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .map_or(&[], Vec::as_slice)
}

/// Whether every label a selector asks for is on the pods of `set`.
fn selects(selector: &Value, set: &Value) -> bool {
    let labels = &set["spec"]["template"]["metadata"]["labels"];
    selector
        .as_mapping()
        .is_some_and(|wanted| !wanted.is_empty() && wanted.iter().all(|(k, v)| &labels[k] == v))
}

/// A port as a manifest gives it (a number, or a container port's name), as a number.
fn port_number(port: &Value, container: &Value) -> Option<u16> {
    if let Some(number) = port.as_u64() {
        return u16::try_from(number).ok();
    }
    let wanted = port.as_str()?;
    container["ports"]
        .as_sequence()?
        .iter()
        .find(|p| p["name"].as_str() == Some(wanted))
        .and_then(|p| p["containerPort"].as_u64())
        .and_then(|n| u16::try_from(n).ok())
}

/// The port numbers a container declares.
fn declared_ports(container: &Value) -> BTreeSet<u16> {
    container["ports"]
        .as_sequence()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(|p| p["containerPort"].as_u64())
        .filter_map(|n| u16::try_from(n).ok())
        .collect()
}

/// `$(NAME)` replaced by the variable's value, `$$` by `$`, as the kubelet does; a variable
/// the container does not define is an error here, where the kubelet would pass `$(NAME)`
/// on unchanged.
fn expand(arg: &str, env: &[(String, String)]) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some((var, after)) = rest.strip_prefix("$(").and_then(|r| r.split_once(')')) {
            let (_, value) = env.iter().find(|(name, _)| name == var).ok_or_else(|| {
                format!("{arg:?} uses $({var}), which the container's env does not define")
            })?;
            out.push_str(value);
            rest = after;
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The container's env, each variable with the value its pod would see.
fn environment(container: &Value) -> Result<Vec<(String, String)>, String> {
    let mut env = vec![];
    for var in container["env"]
        .as_sequence()
        .map_or(&[][..], Vec::as_slice)
    {
        let name = text(var, &["name"]).ok_or("an env entry has no name")?;
        let value = match (
            text(var, &["value"]),
            text(var, &["valueFrom", "fieldRef", "fieldPath"]),
        ) {
            (Some(value), _) => value.to_owned(),
            (None, Some("status.podIP")) => POD_IP.to_owned(),
            _ => return Err(format!("env {name}: this test has no sample value for it")),
        };
        env.push((name.to_owned(), value));
    }
    Ok(env)
}

/// Checks one container as the kubelet and then the binary would treat it: its env fills in
/// `$(VAR)`, clap parses `command` + `args`, a frontend's flags make a configuration it
/// accepts, the container declares exactly the ports those flags listen on, and its probes
/// ask the right one (an HTTP probe the HTTP port, not the peer port's tarpc). Returns the
/// parsed command.
fn check_container(container: &Value) -> Result<Command, String> {
    let env = environment(container)?;
    let mut argv = vec![];
    for part in ["command", "args"] {
        for arg in container[part].as_sequence().map_or(&[][..], Vec::as_slice) {
            // Kubernetes takes only strings here: an unquoted 8001 is an int, and refused.
            let arg = arg
                .as_str()
                .ok_or_else(|| format!("{part}: {arg:?} is not a string; quote it"))?;
            argv.push(expand(arg, &env)?);
        }
    }
    if argv.first().map(String::as_str) != Some("gclab") {
        return Err(format!("{argv:?} does not run gclab, the image's binary"));
    }
    let line = argv.join(" ");
    let parsed = Gclab::try_parse_from(&argv).map_err(|e| format!("`{line}`:\n{e}"))?;
    // The ports the flags open, and which of them speaks HTTP (the one `GET /stats` asks).
    let port = |addr: &str| {
        addr.parse::<SocketAddr>()
            .map(|a| a.port())
            .map_err(|e| format!("`{line}`: {addr}: {e}"))
    };
    let (listens, http) = match &parsed.command {
        Command::Frontend(args) => {
            let (config, http) = args.config().map_err(|e| format!("`{line}`: {e}"))?;
            if args.bind.to_string() != POD_IP {
                return Err(format!(
                    "`{line}`: --bind {} is not the pod's IP, the name DNS gives it to its peers",
                    args.bind
                ));
            }
            let http = port(&http)?;
            (BTreeSet::from([port(&config.group.me)?, http]), http)
        }
        Command::Dbserver(args) => {
            if args
                .addr
                .parse::<SocketAddr>()
                .is_ok_and(|a| a.ip().is_loopback())
            {
                return Err(format!(
                    "`{line}`: --addr {} answers only inside the pod",
                    args.addr
                ));
            }
            let http = port(&args.addr)?;
            (BTreeSet::from([http]), http)
        }
        _ => return Err(format!("`{line}` runs no server")),
    };
    let declared = declared_ports(container);
    if declared != listens {
        return Err(format!(
            "`{line}` listens on {listens:?}, but the container declares ports {declared:?}"
        ));
    }
    if container["readinessProbe"].is_null() {
        return Err(format!("`{line}` has no readinessProbe"));
    }
    for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
        let (asked, wanted) = match &container[probe] {
            Value::Null => continue,
            p if !p["httpGet"].is_null() => (&p["httpGet"]["port"], BTreeSet::from([http])),
            p => (&p["tcpSocket"]["port"], listens.clone()),
        };
        if !port_number(asked, container).is_some_and(|n| wanted.contains(&n)) {
            return Err(format!(
                "`{line}`: {probe} asks port {asked:?}; it should ask one of {wanted:?}"
            ));
        }
    }
    Ok(parsed.command)
}

/// The StatefulSet whose first container runs `gclab SUBCOMMAND …`. Found by the word alone,
/// not by `check_container`, so that the tests built on it fail for their own reason only.
fn running<'a>(documents: &'a [(String, Value)], subcommand: &str) -> &'a Value {
    of_kind(documents, "StatefulSet")
        .into_iter()
        .find(|set| {
            containers(set)
                .first()
                .is_some_and(|c| c["args"][0].as_str() == Some(subcommand))
        })
        .unwrap_or_else(|| panic!("no StatefulSet runs `gclab {subcommand}`"))
}

#[test]
fn every_manifest_parses_into_named_kubernetes_objects() {
    let documents = manifests();
    let namespaces = of_kind(&documents, "Namespace");
    assert_eq!(namespaces.len(), 1, "one Namespace");
    let namespace = name(namespaces[0]);
    for (file, object) in &documents {
        for field in [&["apiVersion"][..], &["kind"], &["metadata", "name"]] {
            assert!(
                text(object, field).is_some_and(|t| !t.is_empty()),
                "{file}: a {} without {}",
                kind(object),
                field.join(".")
            );
        }
        if kind(object) != "Namespace" {
            assert_eq!(
                text(object, &["metadata", "namespace"]),
                Some(namespace),
                "{file}: {} {} belongs in the namespace {namespace}",
                kind(object),
                name(object)
            );
        }
    }
    let kinds: Vec<&str> = documents.iter().map(|(_, o)| kind(o)).collect();
    for (wanted, count) in [("Namespace", 1), ("StatefulSet", 2), ("Service", 3)] {
        assert_eq!(
            kinds.iter().filter(|k| **k == wanted).count(),
            count,
            "{wanted}s in {kinds:?}"
        );
    }
}

#[test]
fn every_container_runs_a_command_line_the_binary_accepts() {
    let documents = manifests();
    let mut commands = vec![];
    for set in of_kind(&documents, "StatefulSet") {
        assert!(
            !containers(set).is_empty(),
            "StatefulSet {} has no containers",
            name(set)
        );
        for container in containers(set) {
            match check_container(container) {
                Ok(command) => commands.push(command),
                Err(e) => panic!(
                    "StatefulSet {}, container {:?}: {e}",
                    name(set),
                    container["name"]
                ),
            }
        }
    }
    assert!(
        commands.iter().any(|c| matches!(c, Command::Frontend(_))),
        "{commands:?}"
    );
    assert!(
        commands.iter().any(|c| matches!(c, Command::Dbserver(_))),
        "{commands:?}"
    );
}

#[test]
fn every_service_reaches_ports_its_pods_listen_on() {
    let documents = manifests();
    let sets = of_kind(&documents, "StatefulSet");
    for service in of_kind(&documents, "Service") {
        let selector = &service["spec"]["selector"];
        let chosen: Vec<_> = sets.iter().filter(|set| selects(selector, set)).collect();
        assert_eq!(
            chosen.len(),
            1,
            "Service {} selects one StatefulSet's pods",
            name(service)
        );
        let container = &containers(chosen[0])[0];
        for port in service["spec"]["ports"]
            .as_sequence()
            .expect("a Service lists its ports")
        {
            // No targetPort means the same number as the Service's port.
            let target = match &port["targetPort"] {
                Value::Null => &port["port"],
                target => target,
            };
            assert!(
                port_number(target, container)
                    .is_some_and(|n| declared_ports(container).contains(&n)),
                "Service {}: targetPort {target:?} is none of {}'s ports",
                name(service),
                name(chosen[0])
            );
        }
    }
    for set in &sets {
        assert!(
            selects(&set["spec"]["selector"]["matchLabels"], set),
            "StatefulSet {}: its selector must match its own pods",
            name(set)
        );
    }
}

#[test]
fn the_frontends_find_their_peers_and_the_dbserver_by_names_the_manifests_give() {
    let documents = manifests();
    let (frontends, dbserver) = (
        running(&documents, "frontend"),
        running(&documents, "dbserver"),
    );
    let namespace = text(frontends, &["metadata", "namespace"]).unwrap_or_default();
    let domain = |service: &str| format!("{service}.{namespace}.svc.cluster.local");
    let Command::Frontend(args) = check_container(&containers(frontends)[0]).unwrap() else {
        panic!("`gclab frontend …` parsed as another subcommand")
    };
    let Command::Dbserver(db_args) = check_container(&containers(dbserver)[0]).unwrap() else {
        panic!("`gclab dbserver …` parsed as another subcommand")
    };

    // The peers: every address of the frontends' headless Service, ready or not.
    let service = text(frontends, &["spec", "serviceName"]).unwrap_or_default();
    let peers = of_kind(&documents, "Service")
        .into_iter()
        .find(|s| name(s) == service)
        .unwrap_or_else(|| panic!("the frontends' serviceName {service:?} is no Service"));
    assert_eq!(
        text(peers, &["spec", "clusterIP"]),
        Some("None"),
        "{service} is headless"
    );
    assert_eq!(
        peers["spec"]["publishNotReadyAddresses"].as_bool(),
        Some(true),
        "{service} lists pods before they are ready"
    );
    assert!(
        selects(&peers["spec"]["selector"], frontends),
        "{service} lists the frontends"
    );
    assert_eq!(
        args.peers_from.as_ref().map(ToString::to_string),
        Some(format!("dns:{}:{}", domain(service), args.port))
    );

    // The dbserver: its one pod's own DNS name, under its headless Service.
    let db_service = text(dbserver, &["spec", "serviceName"]).unwrap_or_default();
    let db_port = db_args.addr.parse::<SocketAddr>().map(|a| a.port());
    assert_eq!(
        args.db,
        format!(
            "{}-0.{}:{}",
            name(dbserver),
            domain(db_service),
            db_port.unwrap_or(0)
        )
    );
    assert_eq!(
        dbserver["spec"]["replicas"].as_u64(),
        Some(1),
        "one dbserver, one sled"
    );
}

/// The frontends' container, its args changed by `edit`.
fn frontend_with(edit: impl FnOnce(&mut Vec<Value>)) -> Value {
    let documents = manifests();
    let mut container = containers(running(&documents, "frontend"))[0].clone();
    edit(
        container["args"]
            .as_sequence_mut()
            .expect("the frontend has args"),
    );
    container
}

#[test]
fn a_flag_the_binary_does_not_know_fails_the_check() {
    let container = frontend_with(|args| args.push("--no-such-flag".into()));
    let error = check_container(&container).unwrap_err();
    assert!(error.contains("--no-such-flag"), "{error}");
}

#[test]
fn a_frontend_bound_to_every_address_fails_the_check() {
    let container = frontend_with(|args| {
        for arg in args.iter_mut().filter(|a| a.as_str() == Some("$(POD_IP)")) {
            *arg = "0.0.0.0".into();
        }
    });
    // Refused by the frontend's own configuration, which a real pod would run into too.
    let error = check_container(&container).unwrap_err();
    assert!(
        error.contains("--bind 0.0.0.0 would listen everywhere"),
        "{error}"
    );
}

#[test]
fn a_port_the_container_does_not_declare_fails_the_check() {
    let container = frontend_with(|args| {
        let at = args.iter().position(|a| a.as_str() == Some("--port"));
        args[at.expect("the frontend gives --port") + 1] = "8002".into();
    });
    let error = check_container(&container).unwrap_err();
    assert!(error.contains("declares ports"), "{error}");
}

#[test]
fn an_unquoted_number_or_an_undefined_variable_fails_the_check() {
    let container = frontend_with(|args| args.extend(["--http-port".into(), 9001.into()]));
    assert!(check_container(&container)
        .unwrap_err()
        .contains("quote it"));
    let container = frontend_with(|args| args.extend(["--db".into(), "$(DB_HOST):8080".into()]));
    assert!(check_container(&container)
        .unwrap_err()
        .contains("$(DB_HOST)"));
}

#[test]
fn an_http_probe_on_the_peer_port_fails_the_check() {
    let mut container = frontend_with(|_| {});
    container["livenessProbe"]["httpGet"]["port"] = "peer".into();
    let error = check_container(&container).unwrap_err();
    assert!(error.contains("livenessProbe asks port"), "{error}");
}
