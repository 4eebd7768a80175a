//! hubdns: a private DNS resolver for an AWS hub VPC.
//!
//! It answers the names it owns — PrivateLink endpoint names, Route 53 private zones,
//! operator-defined aliases and records — and forwards every other name upstream with a cache.
//!
//! ```text
//!  sources (each returns the whole set it knows, never a diff)
//!    config aliases/records ─┐
//!    EC2 VPC endpoints ──────┤   build            swap (ArcSwap, lock-free reads)
//!    Route 53 private zones ─┼──────────► Snapshot ───────────────► DNS handler ──► client
//!    state file (last good) ─┘  (off to the side,                        │
//!                                validated)                              └── miss: forwarder
//! ```
//!
//! ARCHITECTURE.md has the whole picture: the code map, the invariants, and the answer rules
//! with the RFC and AWS references they come from.
//!
//! Module map:
//! - [`config`]: the TOML file: serde structs, defaults, load = read → parse → validate.
//! - [`zonefile`]: `[[zones]]` zone files (RFC 1035 master format), read with hickory's parser.
//! - [`snapshot`]: records with provenance, the immutable table, name matching.
//! - [`node_table`]: the table's storage: nodes in one vector, found by key through an index.
//! - [`answer`]: the answer engine: what a question gets, as a plan the DNS paths encode
//!   and `explain` renders.
//! - [`memory`]: returning freed heap to the OS after large builds.
//! - [`name_key`]: lowercase wire-format name keys for allocation-free ancestor walks.
//! - [`prepared`]: answers encoded once and copied into responses (the fast path's data).
//! - [`sources`]: one module per source of owned names, each a pure conversion.
//! - [`record_list`]: a source's records between builds, compact (and in the state file).
//! - [`origin`]: provenance text, a source's origins sealed together in LZ4 blocks.
//! - [`endpoint_list`]: a source's endpoint summaries between fetches, compact (and in the
//!   state file).
//! - [`assemble`]: config + every source's answer → the table (pure).
//! - [`refresh`]: the refresh loop: a task per source, rebuilding the table, readiness.
//! - [`state_file`]: every source's last good answer, kept across restarts.
//! - [`events`]: change events from an SQS queue, so AWS changes are served in seconds.
//! - [`dns`]: listeners, the query handler, the forwarder, the allow list.
//! - [`server`]: start and stop: everything above wired together.
//! - [`metrics`]: per-query counters and the latency histogram, sharded per thread.
//! - [`querylog`]: the query log, in Route 53 Resolver's query-log schema.
//! - [`status`]: the status board: what each source did last, and config reloads.
//! - [`live`]: what the admin views read of a running server.
//! - [`explain`]: why a name answers as it does (owned: which source; else: which upstream).
//! - [`signed_parents`]: owned names inside publicly signed zones, which validating resolvers
//!   need a negative trust anchor for.
//! - [`admin`]: the admin HTTP listener (`/metrics`, `/healthz`, `/readyz`, `/records`,
//!   `/explain`, the status page) and its probe.
//! - [`reload`]: re-reading the config on SIGHUP and when the file changes.
//! - [`logging`]: text or JSON logs, the level following reloads.
//! - [`inspect`]: `hubdns explain` — the running server's answer, or one built offline.
//! - [`summary`]: the `hubdns check` report.
//! - [`demo`]: the demo's local stand-in for the EC2 and Route 53 APIs (recorded responses).

// The allocator whose C API `memory` calls.
#[cfg(feature = "mimalloc")]
use mimalloc as _;

// Without the default `aws` feature (the fuzz build), what talks to AWS is left out: the
// sources' API calls, the refresh loop, events, the demo's stand-in, and what runs a server.
pub mod admin;
pub mod answer;
pub mod assemble;
pub mod az;
pub mod config;
#[cfg(feature = "aws")]
pub mod demo;
pub mod dns;
#[cfg(feature = "aws")]
pub mod events;
pub mod explain;
#[cfg(feature = "aws")]
pub mod inspect;
pub mod live;
pub mod logging;
pub mod endpoint_list;
pub mod memory;
pub mod metrics;
pub mod name_key;
pub mod node_table;
pub mod origin;
pub mod prepared;
pub mod querylog;
pub mod record_list;
#[cfg(feature = "aws")]
pub mod refresh;
#[cfg(feature = "aws")]
pub mod reload;
#[cfg(feature = "aws")]
pub mod server;
pub mod signed_parents;
pub mod snapshot;
pub mod sources;
#[cfg(feature = "aws")]
pub mod state_file;
pub mod status;
pub mod summary;
pub mod zonefile;

/// The built-in demo configuration (`hubdns demo`), the same file as `config/demo.toml`.
pub const DEMO_CONFIG: &str = include_str!("../config/demo.toml");
