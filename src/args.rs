//! The command line: `gclab dbserver | frontend | cli | demo | up`, as clap definitions.
//!
//! The doc comments below are the `--help` text. The 2013 walkthrough's spelling
//! (`./cli -port 9002 -cget -key foo`) is translated into this one by [`crate::go_style`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// `8002` → `127.0.0.1:8002`; `host:port` stays as it is. Used for --peers and --frontends.
pub use crate::membership::address;

/// A teaching lab: a slow database, three groupcache peers, and a cli to watch them.
#[derive(Debug, Parser)]
#[command(name = "gclab", version)]
pub struct Gclab {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// A durable key/value store over HTTP, slow to read on purpose; it numbers every write
    /// and streams the changes to frontends that follow them.
    Dbserver(DbserverArgs),
    /// A cache peer: tarpc for other peers on --port, HTTP for clients on --http-port.
    Frontend(FrontendArgs),
    /// Talk to the dbserver (set, put, del, get), a frontend (cget), or all of them (herd,
    /// bench, stats).
    Cli(CliArgs),
    /// The whole story in one go: the walkthrough, the herd three ways, the stats table.
    Demo(DemoArgs),
    /// The whole topology in one terminal: a dbserver and frontends as child processes.
    Up(UpArgs),
    /// A slow wire for lab/hosts.sh where the kernel has no netem: holds each packet queued
    /// to it (iptables -j NFQUEUE) for --delay, and drops --loss of them. Needs root.
    Wire(WireArgs),
}

#[derive(Debug, Args)]
pub struct WireArgs {
    /// How long each packet is held.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub delay: Duration,
    /// The share of packets dropped, e.g. 1%.
    #[arg(long, default_value = "0%", value_parser = percent)]
    pub loss: f64,
    /// The netfilter queue to read (iptables -j NFQUEUE --queue-num N).
    #[arg(long, default_value_t = 0)]
    pub queue: u16,
}

impl WireArgs {
    pub fn wire(&self) -> crate::wire::Wire {
        crate::wire::Wire {
            queue: self.queue,
            delay: self.delay,
            loss_percent: self.loss,
        }
    }
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Leave the topology running at the end, and print commands to try on it.
    #[arg(long)]
    pub keep: bool,
    /// How long every database read waits.
    #[arg(long, default_value = "300ms", value_parser = humantime::parse_duration)]
    pub delay: Duration,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// How many frontends to start.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub frontends: u16,
    /// The first frontend's peer port; the others follow (8001, 8002, 8003).
    #[arg(long, default_value_t = 8001)]
    pub port: u16,
    /// The dbserver's address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub db_addr: String,
    /// Where the dbserver keeps its data.
    #[arg(long, default_value = "gclab-data")]
    pub data_dir: PathBuf,
    /// How long every database read waits.
    #[arg(long, default_value = "300ms", value_parser = humantime::parse_duration)]
    pub delay: Duration,
    /// Start the frontends with --no-singleflight.
    #[arg(long)]
    pub no_singleflight: bool,
    /// Start the frontends with --no-peers.
    #[arg(long)]
    pub no_peers: bool,
    /// Start the frontends with --quiet-hits: loads are logged, each request and hit not.
    #[arg(long)]
    pub quiet_hits: bool,
    /// Start the frontends with --follow-changes.
    #[arg(long)]
    pub follow_changes: bool,
    /// Start a frontend again when a signal kills it (`kill -9`, or `cli chaos`), as a
    /// pod's container is restarted; its cache starts empty.
    #[arg(long)]
    pub restart: bool,
}

#[derive(Debug, Args)]
pub struct DbserverArgs {
    /// Address for the HTTP API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Where sled keeps the data; it survives restarts and crashes.
    #[arg(long, default_value = "gclab-data")]
    pub data_dir: PathBuf,
    /// How long every read waits before it answers, so a database hit is felt.
    #[arg(long, default_value = "300ms", value_parser = humantime::parse_duration)]
    pub delay: Duration,
    /// The largest value a set or a blob (`cli put`) may store (memcached's limit by
    /// default).
    #[arg(long, default_value = "1MiB", value_parser = parse_bytes)]
    pub max_value_bytes: u64,
    /// How long a client may take to send a request's headers (slower ones are cut off).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub client_timeout: Duration,
    /// How many changes the change log keeps for frontends that lost their stream to
    /// catch up from (`GET /changes?since=V`); one that fell further behind starts over.
    #[arg(long, default_value_t = crate::store::CHANGE_LOG, value_parser = clap::value_parser!(u64).range(1..))]
    pub change_log: u64,
    /// How many trace events to keep for `GET /events` (each read's arrival and answer);
    /// 0 records none.
    #[arg(long, default_value_t = crate::trace::DEFAULT_CAPACITY, value_parser = events_capacity)]
    pub events: usize,
    /// How events are written to stderr: human lines, or one JSON object per line (for a
    /// log stack such as Loki).
    #[arg(long, value_enum, default_value_t = crate::logging::Format::Human)]
    pub log_format: crate::logging::Format,
}

#[derive(Debug, Args)]
pub struct FrontendArgs {
    /// This node's peer port (tarpc), and with --bind its name in the ring.
    #[arg(long, default_value_t = 8001)]
    pub port: u16,
    /// The address both listeners bind, and this node's name to its peers. Anything but
    /// loopback exposes an unauthenticated cache to the network.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    /// Every peer, this node included: ports (on 127.0.0.1) or host:port, comma-separated.
    /// All frontends must be given the same list.
    #[arg(long, value_delimiter = ',', default_value = "8001,8002,8003")]
    pub peers: Vec<String>,
    /// Find the peers instead of listing them, and follow their changes:
    /// `dns:NAME:PORT` (every address NAME resolves to, e.g. a Kubernetes headless
    /// service) or `file:PATH` (one peer per line, as in --peers; re-read when it changes).
    #[arg(long, conflicts_with = "peers", value_parser = crate::membership::Source::parse)]
    pub peers_from: Option<crate::membership::Source>,
    /// How often --peers-from looks again.
    #[arg(long, default_value = "2s", value_parser = positive_duration)]
    pub resolve_every: Duration,
    /// The DNS server `--peers-from dns:` asks, as IP:PORT [default: the system's, from
    /// /etc/resolv.conf]
    #[arg(long, env = "GCLAB_DNS_SERVER")]
    pub dns_server: Option<std::net::SocketAddr>,
    /// The HTTP port for clients [default: --port + 1000]
    #[arg(long)]
    pub http_port: Option<u16>,
    /// The dbserver's address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub db: String,
    /// Memory for the main and hot caches together, e.g. 64MiB or 500KB.
    #[arg(long, default_value = "64MiB", value_parser = parse_bytes)]
    pub cache_bytes: u64,
    /// How long a dbserver read may take, its delay included.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub db_timeout: Duration,
    /// How long a peer call may take; must exceed --db-timeout, since the owner may be
    /// reading from the dbserver while we wait.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub peer_timeout: Duration,
    /// How long a client may take to send a request's headers (slower ones are cut off).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub client_timeout: Duration,
    /// How peers ask each other for keys: `tarpc` (on --port, many calls over one
    /// connection) or `http` (groupcache's `GET /_groupcache/{key}` on a peer's --port +
    /// 1000, over pooled keep-alive connections). Every frontend must use the same one.
    #[arg(long, value_enum, default_value_t = crate::peers::PeerTransport::Tarpc)]
    pub peer_transport: crate::peers::PeerTransport,
    /// Contrast switch: every cache miss does its own load (no singleflight).
    #[arg(long)]
    pub no_singleflight: bool,
    /// Contrast switch: never ask a peer; every node loads every key itself.
    #[arg(long)]
    pub no_peers: bool,
    /// Contrast switch: keep no hot cache, so every get of another node's key asks its owner.
    #[arg(long)]
    pub no_hot_cache: bool,
    /// Contrast switch: when a key's owner changes, load it from the dbserver rather than
    /// first asking the previous owner's cache (the warm hand-off).
    #[arg(long)]
    pub no_handoff: bool,
    /// Leave out the lines every request prints ("cli asked for foo", "foo found in the
    /// main cache"), keeping the loads: database and peer lines, and warnings.
    #[arg(long)]
    pub quiet_hits: bool,
    /// How events are written to stderr: human lines, or one JSON object per line (for a
    /// log stack such as Loki), with one more per request: its key, source and duration.
    #[arg(long, value_enum, default_value_t = crate::logging::Format::Human)]
    pub log_format: crate::logging::Format,
    /// Follow the dbserver's change stream: a changed key leaves every node's caches within
    /// milliseconds. Off by default, as in groupcache, where a cached value never changes.
    #[arg(long)]
    pub follow_changes: bool,
    /// Contrast switch: cache a load's value even when a newer change arrived while it
    /// loaded (the stale-set race), so the race can be seen.
    #[arg(long)]
    pub no_stale_guard: bool,
    /// Serve a cached value for at most this long (less up to 10% at random), then reload
    /// it on its next get, e.g. 30s.
    #[arg(long, value_parser = positive_duration)]
    pub ttl: Option<Duration>,
    /// How many trace events to keep for `GET /events` and `gclab cli trace` (the oldest
    /// go first); 0 records none.
    #[arg(long, default_value_t = crate::trace::DEFAULT_CAPACITY, value_parser = events_capacity)]
    pub events: usize,
}

impl DbserverArgs {
    /// How the dbserver treats its clients, from its flags.
    pub fn config(&self) -> crate::dbserver::Config {
        crate::dbserver::Config {
            change_log: self.change_log,
            events: self.events,
            ..crate::dbserver::Config::new(self.max_value_bytes, self.client_timeout, self.delay)
        }
    }
}

impl FrontendArgs {
    /// This node's configuration, and the address of its HTTP API, from its flags.
    pub fn config(&self) -> Result<(crate::frontend::Config, String), String> {
        if self.bind.is_unspecified() {
            return Err(format!(
                "--bind {} would listen everywhere but cannot name this node to its peers; \
                 bind one address of this machine",
                self.bind
            ));
        }
        // The HTTP transport finds a peer's HTTP port at its --port + 1000, so must this node.
        if self.peer_transport == crate::peers::PeerTransport::Http
            && self
                .http_port
                .is_some_and(|p| Some(p) != self.port.checked_add(1000))
        {
            return Err(
                "--peer-transport http asks each peer at its --port + 1000; leave out \
                 --http-port, or use --peer-transport tarpc"
                    .to_owned(),
            );
        }
        // The original's convention: clients talk to port + 1000.
        let http_port = match self.http_port {
            Some(port) => port,
            None => self.port.checked_add(1000).ok_or_else(|| {
                format!(
                    "--port {} + 1000 is not a port; give --http-port",
                    self.port
                )
            })?,
        };
        let me = std::net::SocketAddr::new(self.bind, self.port).to_string();
        let config = crate::frontend::Config {
            group: crate::group::Config {
                me: me.clone(),
                // With --peers-from the node starts alone, and takes in the others as soon
                // as it has found them (see `membership`).
                peers: match self.peers_from {
                    Some(_) => vec![me],
                    None => self.peers.iter().map(|p| address(p)).collect(),
                },
                db_addr: address(&self.db),
                cache_bytes: usize::try_from(self.cache_bytes).unwrap_or(usize::MAX),
                db_timeout: self.db_timeout,
                peer_timeout: self.peer_timeout,
                singleflight: !self.no_singleflight,
                use_peers: !self.no_peers,
                hot_cache: !self.no_hot_cache,
                handoff: !self.no_handoff,
                follow_changes: self.follow_changes,
                stale_guard: !self.no_stale_guard,
                ttl: self.ttl,
                events: self.events,
                peer_transport: self.peer_transport,
            },
            client_timeout: self.client_timeout,
            membership: self
                .peers_from
                .clone()
                .map(|source| crate::membership::Follow {
                    source,
                    every: self.resolve_every,
                    dns_server: self.dns_server,
                }),
        };
        config.group.validate().map_err(|e| e.to_string())?;
        let http_addr = std::net::SocketAddr::new(self.bind, http_port).to_string();
        Ok((config, http_addr))
    }
}

fn events_capacity(text: &str) -> Result<usize, String> {
    let n: usize = text
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number of events"))?;
    if n > MAX_EVENTS {
        return Err(format!(
            "at most {MAX_EVENTS} events (about {} MB); the ring is kept in memory",
            MAX_EVENTS / 10_000
        ));
    }
    Ok(n)
}

/// The largest event ring `--events` allows.
const MAX_EVENTS: usize = 10_000_000;

fn positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("it must be longer than 0s".to_owned()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_bytes(text: &str) -> Result<u64, String> {
    text.parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|e| format!("{e} (try 64MiB or 500KB)"))
}

#[derive(Debug, Args)]
#[command(after_help = "The 2013 walkthrough's spelling works too:\n  \
    gclab cli -set -key foo -value bar\n  gclab cli -get -key foo\n  \
    gclab cli -port 9002 -cget -key foo\n  \
    gclab cli -put -file photo.jpg")]
pub struct CliArgs {
    #[command(subcommand)]
    pub command: CliCommand,
    /// Print the whole answer as one JSON object on stdout.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Store a value in the dbserver, and see which frontends have applied the write.
    Set {
        /// The key: 1 to 250 bytes of UTF-8.
        #[arg(long)]
        key: String,
        /// The value to store (up to the dbserver's --max-value-bytes); `-` reads it from
        /// stdin.
        #[arg(
            long,
            required_unless_present = "value_file",
            conflicts_with = "value_file"
        )]
        value: Option<String>,
        /// Read the value from this file instead: the way to store more than the ~128 KiB
        /// that one command-line argument can carry.
        #[arg(long)]
        value_file: Option<PathBuf>,
        /// The dbserver's address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        db: String,
        /// The frontends to watch the write reach (those that follow changes): HTTP ports
        /// or host:port, comma-separated; an empty list waits for none. The wait is
        /// bounded by 1 s.
        #[arg(long, value_delimiter = ',', default_value = "9001,9002,9003")]
        frontends: Vec<String>,
    },
    /// Read a value straight from the dbserver (pays its delay every time).
    Get {
        /// The key: 1 to 250 bytes of UTF-8.
        #[arg(long)]
        key: String,
        /// The dbserver's address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        db: String,
    },
    /// Read a value through a frontend's cache.
    Cget {
        /// The key: 1 to 250 bytes of UTF-8; a blob's is `sha256:` and 64 lowercase hex
        /// digits, as `put` prints it.
        #[arg(long)]
        key: String,
        /// The frontend's HTTP port, on 127.0.0.1.
        #[arg(long, default_value_t = 9001)]
        port: u16,
        /// The frontend's HTTP address (instead of --port).
        #[arg(long, conflicts_with = "port")]
        frontend: Option<String>,
        /// Write the value to this file, byte for byte, instead of to stdout (for a blob:
        /// `-o photo.jpg`).
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Store a file as a blob: the dbserver names it by its SHA-256, and this prints the
    /// address (`sha256:<64 hex digits>`) to fetch it with: `cget --key sha256:… -o FILE`.
    /// The same bytes always get the same address. Up to the dbserver's --max-value-bytes.
    Put {
        /// The file to store (any bytes).
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        path: Option<PathBuf>,
        /// The same, as a flag: `-put -file F` in the 2013 spelling.
        #[arg(long)]
        file: Option<PathBuf>,
        /// The dbserver's address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        db: String,
    },
    /// Trace a request through the lab and draw its travel: `trace cget -key foo -o foo.svg`.
    Trace {
        #[command(subcommand)]
        what: TraceCommand,
    },
    /// Delete a key in the dbserver.
    Del {
        /// The key: 1 to 250 bytes of UTF-8.
        #[arg(long)]
        key: String,
        /// The dbserver's address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        db: String,
        /// The frontends to watch the delete reach, as for set.
        #[arg(long, value_delimiter = ',', default_value = "9001,9002,9003")]
        frontends: Vec<String>,
    },
    /// Fire many cgets of one fresh key at once, and count how often the database was read.
    Herd {
        /// The key to ask for [default: a fresh one, written to the dbserver first]
        #[arg(long)]
        key: Option<String>,
        /// How many cgets to fire at once.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        requests: u32,
        /// The frontends' HTTP ports (or host:port), comma-separated; requests go round-robin.
        #[arg(long, value_delimiter = ',', default_value = "9001,9002,9003")]
        frontends: Vec<String>,
        /// The dbserver's address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        db: String,
        /// Trace the herd and draw it to FILE.svg or FILE.html: the arrivals grouped per
        /// node, one flight box per node with how many joined it, and every database read.
        #[arg(long, value_parser = picture_path)]
        trace: Option<PathBuf>,
        #[command(flatten)]
        check: CheckArgs,
    },
    /// Load-test the frontends with keys drawn at random from key1..keyN.
    Bench {
        /// Open loop: send this many requests per second, whatever the answers do.
        #[arg(long, conflicts_with = "concurrency", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        rate: Option<u32>,
        /// Closed loop: keep this many requests in flight [default: 32]
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        concurrency: Option<u32>,
        /// How long to send for.
        #[arg(long, default_value = "10s", value_parser = positive_duration)]
        duration: Duration,
        /// How many distinct keys: key1..keyN.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
        keys: u32,
        /// The frontends' HTTP ports (or host:port), comma-separated; requests go round-robin.
        #[arg(long, value_delimiter = ',', default_value = "9001,9002,9003")]
        frontends: Vec<String>,
        /// The dbserver, where key1..keyN are written before the run.
        #[arg(long, default_value = "127.0.0.1:8080")]
        db: String,
        /// Do not write key1..keyN to the dbserver first.
        #[arg(long, conflicts_with = "check")]
        no_fill: bool,
        /// Draw the run's answers over time to this SVG file: per quarter second, by
        /// source, with the p99 below (kill a frontend mid-run and watch the failover).
        #[arg(long)]
        timeline: Option<PathBuf>,
        /// Send this share of requests (0 to 1) to key1..keyN, read once each first, and the
        /// rest to fresh keys no one stored, which miss and read the dbserver; the report
        /// shows the ratio seen beside it.
        #[arg(long, value_parser = ratio, conflicts_with_all = ["check", "no_fill"])]
        hit_ratio: Option<f64>,
        /// Draw the latency distribution to this SVG file: a percentile curve for the hits
        /// (answered from the asked node's cache) and one for the misses.
        #[arg(long)]
        plot: Option<PathBuf>,
        #[command(flatten)]
        check: CheckArgs,
    },
    /// Set fault rules on the frontends' calls to each other and to the dbserver: break the
    /// network on purpose, then `heal` it.
    #[command(after_help = concat!(
        "NODE is a frontend's peer port or client port (8001 or 9001), or its host:port.\n",
        "\nExamples:\n",
        "  gclab cli fault partition 8001 --from 8002,8003\n",
        "  gclab cli fault delay 8003 50ms --jitter 10ms\n",
        "  gclab cli fault drop 8002 10%\n",
        "  gclab cli fault stall 8001\n",
        "  gclab cli fault db-delay 9002 1s\n",
        "  gclab cli fault heal\n",
        "  gclab cli fault list",
    ))]
    Fault {
        #[command(subcommand)]
        action: FaultAction,
        /// The frontends' HTTP ports (or host:port), comma-separated: every node of the lab.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "9001,9002,9003",
            global = true
        )]
        frontends: Vec<String>,
    },
    /// A bounded, seeded run of load while faults come and go, ending with the checker's
    /// verdict and a timeline picture.
    Chaos {
        /// Where the fault schedule comes from: the same seed gives the same schedule.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// How long to run.
        #[arg(long, default_value = "30s", value_parser = chaos_duration, allow_hyphen_values = true)]
        duration: Duration,
        /// Requests per second (open loop), spread over the frontends.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        rate: u32,
        /// How many distinct keys: key1..keyN, written to the dbserver first.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        keys: u32,
        /// The frontends' HTTP ports (or host:port), comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "9001,9002,9003")]
        frontends: Vec<String>,
        /// The dbserver's address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        db: String,
        /// Draw the run's timeline, the faults shaded, to this SVG file.
        #[arg(long, default_value = "chaos.svg")]
        timeline: PathBuf,
        /// The longest a request may take before the checker calls it a failure.
        #[arg(long, default_value = "10s", value_parser = positive_duration)]
        client_timeout: Duration,
    },
    /// One table: every frontend's counters and caches, and the dbserver's.
    Stats {
        /// The frontends' HTTP ports (or host:port), comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "9001,9002,9003")]
        frontends: Vec<String>,
        /// The dbserver's address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        db: String,
        /// Redraw the table every second, until Ctrl-C.
        #[arg(long)]
        watch: bool,
        /// A row per node instead of a column per node (wider than 80 columns).
        #[arg(long)]
        wide: bool,
    },
}

/// What `gclab cli trace` traces.
#[derive(Debug, Subcommand)]
pub enum TraceCommand {
    /// One cget, traced: its events from every node, listed and drawn as a spacetime
    /// diagram (lanes cli, each frontend, dbserver; time flowing down).
    Cget {
        /// The key: 1 to 250 bytes of UTF-8.
        #[arg(long)]
        key: String,
        /// The frontend's HTTP port, on 127.0.0.1.
        #[arg(long, default_value_t = 9001)]
        port: u16,
        /// The frontend's HTTP address (instead of --port).
        #[arg(long, conflicts_with = "port")]
        frontend: Option<String>,
        /// Every frontend, whose events are gathered: HTTP ports or host:port.
        #[arg(long, value_delimiter = ',', default_value = "9001,9002,9003")]
        frontends: Vec<String>,
        /// The dbserver's address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        db: String,
        /// The picture to write: FILE.svg, or FILE.html (the same, self-contained, with
        /// each arrow's events shown on hover).
        #[arg(short = 'o', long, value_parser = picture_path)]
        output: PathBuf,
    },
}

/// A picture the cli can draw: FILE.svg or FILE.html.
fn picture_path(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if ["svg", "html", "htm"].contains(&e.to_ascii_lowercase().as_str()) => Ok(path),
        _ => Err(format!(
            "{text} should end in .svg or .html: those are the pictures the cli draws"
        )),
    }
}

/// `--check`: hold the run to the lab's claims.
#[derive(Debug, Clone, Copy, Args)]
pub struct CheckArgs {
    /// End with a verdict, valid or INVALID: every answer was the right value, the
    /// database was read no more than the design allows, no request outlived
    /// --client-timeout. Exits 1 when invalid.
    #[arg(long)]
    pub check: bool,
    /// How long a request may take; one that takes longer is cut off, and fails the check.
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    pub client_timeout: Duration,
}

/// What `gclab cli fault` does.
#[derive(Debug, Subcommand)]
pub enum FaultAction {
    /// Calls to NODE from the --from nodes fail at once; one-way, unless --both.
    Partition {
        node: String,
        /// The nodes cut off from NODE [default: every other frontend]
        #[arg(long, value_delimiter = ',')]
        from: Vec<String>,
        /// Cut the way back too: NODE's calls to them fail as well.
        #[arg(long)]
        both: bool,
    },
    /// Calls to NODE wait this long before they leave, e.g. 50ms.
    Delay {
        node: String,
        #[arg(value_parser = fault_duration, allow_hyphen_values = true)]
        by: Duration,
        /// Up to this much more, at random, per call.
        #[arg(long, default_value = "0ms", value_parser = fault_duration, allow_hyphen_values = true)]
        jitter: Duration,
        /// The nodes whose calls wait [default: every other frontend]
        #[arg(long, value_delimiter = ',')]
        from: Vec<String>,
    },
    /// This share of calls to NODE fail at once, e.g. 10%.
    Drop {
        node: String,
        #[arg(value_parser = percent)]
        share: f64,
        /// The nodes whose calls are dropped [default: every other frontend]
        #[arg(long, value_delimiter = ',')]
        from: Vec<String>,
    },
    /// Calls to NODE get no answer: each waits its --peer-timeout, then fails.
    Stall {
        node: String,
        /// The nodes whose calls stall [default: every other frontend]
        #[arg(long, value_delimiter = ',')]
        from: Vec<String>,
    },
    /// NODE's reads from the dbserver wait this long first, inside its --db-timeout.
    DbDelay {
        node: String,
        #[arg(value_parser = fault_duration, allow_hyphen_values = true)]
        by: Duration,
    },
    /// Remove the rules about NODE on every frontend, or every rule.
    Heal { node: Option<String> },
    /// The rules set on every frontend, and the calls they hurt.
    List,
}

/// A fault's duration: humantime, at most an hour (longer is an outage, not a delay).
fn fault_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        if text.trim_start().starts_with('-') {
            "a duration cannot be negative".to_owned()
        } else {
            format!("{e} (try 50ms or 2s)")
        }
    })?;
    if d > Duration::from_secs(3600) {
        return Err("over an hour is not a delay but an outage; use stall".to_owned());
    }
    Ok(d)
}

/// A chaos run's duration: positive, at most an hour.
fn chaos_duration(text: &str) -> Result<Duration, String> {
    let d = positive_duration(text)?;
    if d > Duration::from_secs(3600) {
        return Err("a chaos run lasts at most an hour".to_owned());
    }
    Ok(d)
}

/// A share from 0 to 1, such as 0.8.
fn ratio(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        Ok(r) => Err(format!("{r} is not a ratio between 0 and 1 (try 0.8)")),
        Err(_) => Err(format!("{text:?} is not a ratio between 0 and 1 (try 0.8)")),
    }
}

/// `10%` or `10` → 10.0; only 0 to 100.
fn percent(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%');
    match number.parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        Ok(p) => Err(format!("{p}% is not a share between 0% and 100%")),
        Err(_) => Err(format!("{text:?} is not a percentage (try 10%)")),
    }
}

impl CliArgs {
    /// Whether the command generates load (and wants a multi-threaded runtime).
    pub fn is_load(&self) -> bool {
        matches!(
            self.command,
            CliCommand::Herd { .. } | CliCommand::Bench { .. } | CliCommand::Chaos { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_help_text_is_well_formed() {
        Gclab::command().debug_assert();
    }

    fn frontend(args: &str) -> FrontendArgs {
        let argv = format!("gclab frontend {args}");
        match Gclab::try_parse_from(argv.split_whitespace()) {
            Ok(Gclab {
                command: Command::Frontend(args),
            }) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_http_transport_refuses_an_http_port_its_peers_would_not_find() {
        let refused = frontend("--peer-transport http --http-port 9999").config();
        assert!(refused.unwrap_err().contains("--port + 1000"));
        assert!(frontend("--peer-transport http --http-port 9001")
            .config()
            .is_ok());
        assert!(frontend("--http-port 9999").config().is_ok());
        let (config, _) = frontend("--peer-transport http").config().unwrap();
        assert_eq!(
            config.group.peer_transport,
            crate::peers::PeerTransport::Http
        );
    }
}
