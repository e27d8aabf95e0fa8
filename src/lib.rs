//! groupcache-lab: watch a distributed read-through cache avoid the thundering herd.
//!
//! Three programs in one binary, `gclab`: a deliberately slow key/value `dbserver`, cache
//! peers called `frontend`s that share the work of loading keys (groupcache's design), and a
//! `cli` to poke them. Start reading at [`group`], the Get path; everything else serves it.
//!
//! # Layout
//!
//! The lesson — each small enough to read in one sitting:
//! - [`group`] — the Get path: `lookup_cache`, `load`, `get_from_peer`, `get_locally`,
//!   `populate_cache`, with groupcache's names and counters.
//! - [`singleflight`] — concurrent loads of one key become one.
//! - [`ring`] — who owns a key: rendezvous hashing over the peer list.
//! - [`membership`] — who the peers are, when DNS or a file names them
//!   (`--peers-from`): looked up again every few seconds, the ring rebuilt on a change.
//! - [`cache`] — a byte-counting LRU cache (the main and hot caches).
//! - [`peers`] — how a frontend asks a key's owner: the tarpc service, or groupcache's
//!   `GET /_groupcache/{key}` (`--peer-transport`), behind one client set.
//! - [`invalidation`] — what the change stream has told a node: floors against the
//!   stale-set race, and the version applied.
//!
//! The servers and the tools around them:
//! - [`frontend`] — a cache node: its configuration and its HTTP API for clients.
//! - [`peer_server`] — how a node answers its peers' calls with its Get path, on either
//!   transport, refusing the one its peers do not use.
//! - [`trace`] — trace ids on every request (W3C `traceparent`, tarpc's context), and the
//!   bounded ring of events each server keeps for `GET /events` and `gclab cli trace`.
//! - [`faults`] — faults on demand: rules that break a node's calls to its peers and to
//!   the dbserver (`cli fault`), where a real network would.
//! - [`follow`] — `--follow-changes`: reading the dbserver's change stream, resuming it.
//! - [`dbserver`] — the slow, durable store behind HTTP, and its change stream.
//! - [`store`] — the store itself: versioned values and the change log, in sled.
//! - [`client`] — HTTP clients for the dbserver and the frontends.
//! - [`cli`] — `gclab cli set | put | get | cget | del | herd | bench | stats | fault |
//!   chaos`, and the `--check` verdict.
//! - [`demo`] — `gclab demo`: the walkthrough, the herd three ways, and the stats table.
//! - [`up`] — `gclab up`: the whole topology as child processes in one terminal.
//! - [`args`] — the command line, as clap definitions (the `--help` text).
//! - [`go_style`] — the 2013 walkthrough's spelling: `./cli -port 9002 -cget -key foo`.
//! - [`stats`] — the counters, as `GET /stats` returns them.
//! - [`metrics`] — the same counters and request latencies as `GET /metrics`, for Prometheus.
//! - [`key`] — what a valid key is and how it travels in a URL.
//! - [`blob`] — content-addressed blobs: a value named by its SHA-256, checked on every load.
//! - [`http`] — error replies and socket options the HTTP servers share.
//! - [`logging`] — the coloured event lines a node prints.
//! - [`shutdown`] — stopping on Ctrl-C, SIGTERM or SIGHUP.
//! - [`fd_limit`] — raising the open-file limit, so a herd of a thousand connections fits.
//! - [`topology`] — a dbserver and N frontends in one process, for the demo and the tests.
//! - [`wire`] — `gclab wire`: packets held and dropped, for `lab/hosts.sh delay` where the
//!   kernel has no netem.

pub mod args;
pub mod blob;
pub mod cache;
pub mod cli;
pub mod client;
pub mod dbserver;
pub mod demo;
pub mod faults;
pub mod fd_limit;
pub mod follow;
pub mod frontend;
pub mod go_style;
pub mod group;
pub mod http;
pub mod invalidation;
pub mod key;
pub mod logging;
pub mod membership;
pub mod metrics;
pub mod peer_server;
pub mod peers;
pub mod ring;
pub mod shutdown;
pub mod singleflight;
pub mod stats;
pub mod store;
pub mod topology;
pub mod trace;
pub mod up;
pub mod wire;
