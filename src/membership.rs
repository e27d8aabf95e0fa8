//! Membership: finding the peers, when they are named by DNS or a file instead of `--peers`.
//!
//! `--peers-from dns:NAME:PORT` asks a DNS server for every address of NAME, the way a
//! Kubernetes headless service lists one address per pod; `--peers-from file:PATH` reads
//! a list a person edits. Either way this module looks again every `--resolve-every`, and
//! hands each list it finds to [`Group::set_peers`], which rebuilds the ring when the list
//! changed. It knows nothing of how the ring is used: the Get path reads whichever ring is
//! current, and hands keys over to their new owners (see `group.rs`).
//!
//! Polling, not a watch: DNS has no push, and a file watch (inotify) would add a crate and
//! still need a poll for editors that replace the file rather than write it. A few seconds
//! of delay is what a Kubernetes endpoint change takes to reach DNS anyway.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;

use crate::group::Group;

/// Where a frontend finds its peers (`--peers-from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Every address `name` resolves to, each with `port`: `dns:NAME:PORT`.
    Dns { name: String, port: u16 },
    /// The peers listed in a file, one per line (or comma-separated), `#` for comments.
    File(PathBuf),
}

impl Source {
    /// Parses `dns:NAME:PORT` or `file:PATH` (clap's value parser for `--peers-from`).
    pub fn parse(text: &str) -> Result<Source, String> {
        if let Some(rest) = text.strip_prefix("dns:") {
            let (name, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| format!("{text:?}: give the port too, as dns:NAME:PORT"))?;
            let port = port
                .parse()
                .map_err(|_| format!("{text:?}: {port:?} is not a port"))?;
            if name.is_empty() {
                return Err(format!("{text:?}: the name is empty"));
            }
            return Ok(Source::Dns {
                name: name.to_owned(),
                port,
            });
        }
        if let Some(path) = text.strip_prefix("file:") {
            if path.is_empty() {
                return Err(format!("{text:?}: the path is empty"));
            }
            return Ok(Source::File(PathBuf::from(path)));
        }
        Err(format!("{text:?} is neither dns:NAME:PORT nor file:PATH"))
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Dns { name, port } => write!(f, "dns:{name}:{port}"),
            Source::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

/// How a frontend follows its membership: the source, how often, and which DNS server.
#[derive(Debug, Clone)]
pub struct Follow {
    pub source: Source,
    pub every: Duration,
    /// The DNS server to ask (`--dns-server`); the system's when `None`.
    pub dns_server: Option<SocketAddr>,
}

/// A peer's name from what a person typed: a bare port means one on 127.0.0.1, as the
/// original's `-port 8001` did; anything else is taken as `host:port`.
pub fn address(text: &str) -> String {
    match text.trim().parse::<u16>() {
        Ok(port) => format!("127.0.0.1:{port}"),
        Err(_) => text.trim().to_owned(),
    }
}

/// Looks up the peers a [`Source`] names.
pub struct Finder {
    source: Source,
    /// Made once for a DNS source, so its connections are reused between lookups.
    resolver: Option<TokioResolver>,
}

impl Finder {
    pub fn new(follow: &Follow) -> Result<Finder, String> {
        let resolver = match follow.source {
            Source::Dns { .. } => Some(resolver(follow.dns_server)?),
            Source::File(_) => None,
        };
        Ok(Finder {
            source: follow.source.clone(),
            resolver,
        })
    }

    /// The peers as the source lists them now, sorted, each once.
    pub async fn peers(&self) -> Result<Vec<String>, String> {
        let mut peers = match (&self.source, &self.resolver) {
            (Source::Dns { name, port }, Some(resolver)) => {
                let answer = resolver
                    .lookup_ip(name.as_str())
                    .await
                    .map_err(|e| format!("cannot resolve {name}: {e}"))?;
                answer
                    .iter()
                    .map(|ip| SocketAddr::new(ip, *port).to_string())
                    .collect()
            }
            (Source::File(path), _) => {
                let text = tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                parse_list(&text)
            }
            (Source::Dns { .. }, None) => unreachable!("a DNS source is made with a resolver"),
        };
        peers.sort();
        peers.dedup();
        if peers.is_empty() {
            return Err(format!("{} lists no peers", self.source));
        }
        Ok(peers)
    }
}

/// The peers in a membership file: one per line or comma-separated, `#` starts a comment.
pub fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .flat_map(|line| line.split([',', ' ', '\t']))
        .filter(|peer| !peer.trim().is_empty())
        .map(address)
        .collect()
}

/// A resolver that asks `server` (or the system's servers) and caches nothing: every look
/// must see the answer as it is now, or a pod that left would linger for its record's TTL.
fn resolver(server: Option<SocketAddr>) -> Result<TokioResolver, String> {
    let mut builder = match server {
        Some(server) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = server.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = server.port();
            let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(
                server.ip(),
                true,
                vec![udp, tcp],
            )]);
            let mut builder =
                TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
            // A test's or a lab's server answers for its own names; /etc/hosts is not asked.
            builder.options_mut().use_hosts_file = ResolveHosts::Never;
            builder
        }
        None => TokioResolver::builder_tokio()
            .map_err(|e| format!("cannot read the system's DNS configuration: {e}"))?,
    };
    let options: &mut ResolverOpts = builder.options_mut();
    options.positive_max_ttl = Some(Duration::ZERO);
    options.negative_max_ttl = Some(Duration::ZERO);
    options.timeout = Duration::from_secs(2);
    options.attempts = 1;
    builder
        .build()
        .map_err(|e| format!("cannot make a DNS resolver: {e}"))
}

/// Looks for the peers every `follow.every` and gives each list found to the group, until
/// `shutdown`. A failed look keeps the peers the node has: a DNS server that is down for a
/// moment must not make a node forget the others.
pub async fn run(
    group: Arc<Group>,
    finder: Finder,
    every: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_error: Option<String> = None;
    // Whether a look has found the peers yet: until then the node is alone.
    let mut found = false;
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticks.tick() => {}
        }
        match finder.peers().await {
            Ok(peers) => {
                let first = !std::mem::replace(&mut found, true);
                if last_error.take().is_some() {
                    tracing::info!(kind = "peer", "{} answers again", finder.source);
                }
                let listed = peers.iter().any(|p| p == group.me());
                if group.set_peers(peers, first) && !listed {
                    tracing::warn!(
                        "{} does not list this node ({}): it owns no keys, and asks the \
                         listed peers for all of them",
                        finder.source,
                        group.me()
                    );
                }
            }
            Err(e) => {
                // Warned once per distinct error, not every few seconds.
                if last_error.as_deref() != Some(e.as_str()) {
                    tracing::warn!("{e}; keeping the peers this node has");
                    last_error = Some(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_and_print_back() {
        for text in [
            "dns:gclab-peers.gclab.svc.cluster.local:8001",
            "file:peers.txt",
        ] {
            assert_eq!(Source::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn bad_sources_say_what_is_wrong() {
        let cases = [
            ("dns:peers", "give the port too"),
            ("dns:peers:80x", "is not a port"),
            ("dns::8001", "the name is empty"),
            ("file:", "the path is empty"),
            ("peers.txt", "neither dns:NAME:PORT nor file:PATH"),
        ];
        for (text, says) in cases {
            let error = Source::parse(text).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn a_membership_file_takes_lines_commas_ports_and_comments() {
        let text = "# the lab's peers\n8001\n127.0.0.1:8002, 8003 # the third\n\n10.77.0.14:8001\n";
        assert_eq!(
            parse_list(text),
            [
                "127.0.0.1:8001",
                "127.0.0.1:8002",
                "127.0.0.1:8003",
                "10.77.0.14:8001"
            ]
        );
    }
}
