//! The DNS front end: sockets in, answers out.
//!
//! - [`listener`]: UDP sockets (several per address, SO_REUSEPORT) and TCP listeners, with
//!   the resource bounds: TCP connection cap, idle and read timeouts, in-flight forwards.
//! - [`tls`]: the DoT and DoH certificate, reloaded when its files change.
//! - [`dot`]: DNS over TLS (RFC 7858): a handshake, then the TCP stream loop.
//! - [`doh`]: DNS over HTTPS (RFC 8484) on hyper, HTTP/2 and HTTP/1.1.
//! - [`handler`]: one query → one response; owned names are answered synchronously from the
//!   snapshot, everything else becomes a forward job.
//! - [`fast`]: plain queries with pre-encoded answers, answered by copying bytes.
//! - [`forwarder`]: per-domain upstream routes, coalescing, failure caching, DNSSEC passthrough.
//! - [`upstream`]: one upstream server's sockets: a query's bytes out, its response back.
//! - [`health`]: whether an upstream server is worth asking, from failures across names.
//! - [`cache`]: the forwarder's cache of final answers, pre-encoded for the fast path.
//! - [`acl`]: the client allow list.
//! - [`ratelimit`]: per-client-network token buckets over UDP (drop, or TC=1 every Nth).
//!
//! hickory-proto and hickory-server's message types do all parsing and encoding; the loops are
//! ours because hickory-server's `Server` spawns a task per UDP packet and has no connection
//! cap or in-flight bound.

pub mod acl;
pub mod cache;
#[cfg(feature = "tls")]
pub mod doh;
#[cfg(feature = "tls")]
pub mod dot;
pub mod fast;
pub mod forwarder;
pub mod handler;
pub mod health;
pub mod listener;
pub mod ratelimit;
#[cfg(feature = "tls")]
pub mod tls;
pub mod upstream;
