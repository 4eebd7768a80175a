//! Query counters and the latency histogram: what every answered query adds to `/metrics`.
//!
//! These are bumped on every query, so they are plain relaxed atomics, never a lock or a map
//! lookup by label. Each thread adds to a shard of its own (cache-line aligned), so the UDP
//! threads on different cores never contend for one counter; a scrape sums the shards.
//! Labels are fixed small sets — query type (common types by name, the rest `other`), rcode
//! and path — so every series is an index, and cardinality cannot grow with traffic.
//!
//! Everything else on `/metrics` (sources, upstreams, cache, snapshot) is read at scrape time
//! from where it lives; see [`crate::admin::prometheus`].

use std::{
    sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
    time::Duration,
};

use hickory_proto::{op::ResponseCode, rr::RecordType};

use crate::az::Choice;

/// How a query was answered: the `path` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryPath {
    /// From the snapshot: owned names, and errors hubdns gives itself (FORMERR, NOTIMP, …).
    Local,
    /// From the forwarder's answer cache.
    Cache,
    /// Sent upstream (hickory-resolver's own cache may still have answered it).
    Forwarded,
    /// Answered from an expired cache entry because the upstreams failed or were too slow
    /// (RFC 8767 serve-stale).
    Stale,
    /// Refused: outside the allow list, RD=0 for a name not owned, a zone transfer, a class
    /// other than IN.
    Refused,
}

impl QueryPath {
    /// Every path, in label order.
    pub const ALL: [QueryPath; 5] = [Self::Local, Self::Cache, Self::Forwarded, Self::Stale, Self::Refused];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Cache => "cache",
            Self::Forwarded => "forwarded",
            Self::Stale => "stale",
            Self::Refused => "refused",
        }
    }
}

/// Query types counted by name; every other type is `other`, an unparsable query `none`.
pub const QTYPES: [RecordType; 13] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::MX,
    RecordType::TXT,
    RecordType::SRV,
    RecordType::PTR,
    RecordType::NS,
    RecordType::SOA,
    RecordType::CAA,
    RecordType::HTTPS,
    RecordType::SVCB,
    RecordType::ANY,
];
const QTYPE_OTHER: usize = QTYPES.len();
const QTYPE_NONE: usize = QTYPES.len() + 1;
const N_QTYPES: usize = QTYPES.len() + 2;

/// Response codes counted by name; the rest are `other`.
pub const RCODES: [ResponseCode; 7] = [
    ResponseCode::NoError,
    ResponseCode::FormErr,
    ResponseCode::ServFail,
    ResponseCode::NXDomain,
    ResponseCode::NotImp,
    ResponseCode::Refused,
    ResponseCode::BADVERS,
];
/// Their mnemonics, as dig prints them.
const RCODE_NAMES: [&str; 7] = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS"];
const RCODE_OTHER: usize = RCODES.len();
const N_RCODES: usize = RCODES.len() + 1;

const N_PATHS: usize = QueryPath::ALL.len();

/// Upper bounds of the latency buckets, in seconds (`+Inf` is implied): 50 µs to 2.5 s,
/// covering a cached answer (tens of µs) through a forward that hits the deadline.
pub const LATENCY_BOUNDS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5,
];
const N_BUCKETS: usize = LATENCY_BOUNDS.len() + 1;

/// Shards: more than the threads that answer queries on a small instance, so each mostly has
/// its own.
const SHARDS: usize = 8;

/// One thread's counters, on cache lines of its own.
#[repr(align(128))]
struct Shard {
    queries: [[[AtomicU64; N_PATHS]; N_RCODES]; N_QTYPES],
    latency: [[AtomicU64; N_BUCKETS]; N_PATHS],
    latency_ns: [AtomicU64; N_PATHS],
    dropped: AtomicU64,
    send_failed: AtomicU64,
    limited: [AtomicU64; 3],
    az: [AtomicU64; 3],
}

impl Default for Shard {
    fn default() -> Self {
        Self {
            queries: std::array::from_fn(|_| std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0)))),
            latency: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            latency_ns: std::array::from_fn(|_| AtomicU64::new(0)),
            dropped: AtomicU64::new(0),
            send_failed: AtomicU64::new(0),
            limited: std::array::from_fn(|_| AtomicU64::new(0)),
            az: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// What the rate limit did to a query: the `action` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limited {
    /// Dropped: the client network was over its budget.
    Dropped,
    /// Answered with an empty TC=1 instead of dropped (every `slip`-th).
    Slipped,
    /// A REFUSED answer not sent: over `refused_qps`.
    RefusedDropped,
}

impl Limited {
    /// Every action, in label order.
    pub const ALL: [Limited; 3] = [Self::Dropped, Self::Slipped, Self::RefusedDropped];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dropped => "dropped",
            Self::Slipped => "slipped",
            Self::RefusedDropped => "refused_dropped",
        }
    }
}

/// The per-query counters of one hubdns process; shared by every handler across reloads.
pub struct Metrics {
    shards: Box<[Shard]>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self { shards: (0..SHARDS).map(|_| Shard::default()).collect() }
    }
}

/// Summed counters, read at scrape time.
pub struct QueryTotals {
    /// `(qtype label, rcode label, path, count)` for every series above zero.
    pub queries: Vec<(String, String, QueryPath, u64)>,
    /// Per path: cumulative bucket counts (the last is `+Inf`, the total) and the sum in seconds.
    pub latency: Vec<(QueryPath, [u64; N_BUCKETS], f64)>,
    /// Packets dropped unanswered (responses, runts).
    pub dropped: u64,
    /// UDP answers the kernel refused to send.
    pub send_failed: u64,
    /// Rate-limit actions, in [`Limited::ALL`] order.
    pub limited: [u64; 3],
    /// Answers AZ affinity applied to, by [`Choice::ALL`] order.
    pub az: [u64; 3],
}

impl QueryTotals {
    /// Queries answered on `path`.
    pub fn count(&self, path: QueryPath) -> u64 {
        self.latency.iter().find(|(p, _, _)| *p == path).map_or(0, |(_, buckets, _)| buckets[N_BUCKETS - 1])
    }
}

impl Metrics {
    /// Counts one answered query: its type (`None`: unparsable), rcode, path and latency.
    pub fn record(&self, qtype: Option<RecordType>, rcode: ResponseCode, path: QueryPath, latency: Duration) {
        let shard = &self.shards[shard_index()];
        let t = match qtype {
            None => QTYPE_NONE,
            Some(qtype) => QTYPES.iter().position(|&q| q == qtype).unwrap_or(QTYPE_OTHER),
        };
        let r = RCODES.iter().position(|&c| c == rcode).unwrap_or(RCODE_OTHER);
        let p = path as usize;
        shard.queries[t][r][p].fetch_add(1, Relaxed);
        let seconds = latency.as_secs_f64();
        let bucket = LATENCY_BOUNDS.iter().position(|&bound| seconds <= bound).unwrap_or(N_BUCKETS - 1);
        shard.latency[p][bucket].fetch_add(1, Relaxed);
        shard.latency_ns[p].fetch_add(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Counts what the rate limit did to a query.
    pub fn record_limited(&self, action: Limited) {
        self.shards[shard_index()].limited[action as usize].fetch_add(1, Relaxed);
    }

    /// Counts an owned answer whose addresses lie in several AZs, by what affinity did.
    pub fn count_az(&self, choice: Choice) {
        self.shards[shard_index()].az[choice as usize].fetch_add(1, Relaxed);
    }

    /// Counts a packet dropped without an answer.
    pub fn record_dropped(&self) {
        self.shards[shard_index()].dropped.fetch_add(1, Relaxed);
    }

    /// Counts a UDP answer the kernel would not send (a full buffer, an unreachable client).
    pub fn record_send_failed(&self) {
        self.shards[shard_index()].send_failed.fetch_add(1, Relaxed);
    }

    /// Sums the shards.
    pub fn totals(&self) -> QueryTotals {
        let sum = |f: &dyn Fn(&Shard) -> &AtomicU64| self.shards.iter().map(|s| f(s).load(Relaxed)).sum::<u64>();
        let mut queries = Vec::new();
        for t in 0..N_QTYPES {
            for r in 0..N_RCODES {
                for path in QueryPath::ALL {
                    let n = sum(&|s| &s.queries[t][r][path as usize]);
                    if n > 0 {
                        queries.push((qtype_label(t), rcode_label(r), path, n));
                    }
                }
            }
        }
        let latency = QueryPath::ALL
            .into_iter()
            .map(|path| {
                let p = path as usize;
                let mut cumulative = [0u64; N_BUCKETS];
                let mut running = 0;
                for (b, slot) in cumulative.iter_mut().enumerate() {
                    running += sum(&|s| &s.latency[p][b]);
                    *slot = running;
                }
                (path, cumulative, sum(&|s| &s.latency_ns[p]) as f64 / 1e9)
            })
            .collect();
        let limited = std::array::from_fn(|i| sum(&|s| &s.limited[i]));
        let az = std::array::from_fn(|i| sum(&|s| &s.az[i]));
        QueryTotals { queries, latency, dropped: sum(&|s| &s.dropped), send_failed: sum(&|s| &s.send_failed), limited, az }
    }
}

fn qtype_label(index: usize) -> String {
    match index {
        QTYPE_OTHER => "other".into(),
        QTYPE_NONE => "none".into(),
        i => QTYPES[i].to_string(),
    }
}

fn rcode_label(index: usize) -> String {
    match index {
        RCODE_OTHER => "other".into(),
        i => RCODE_NAMES[i].into(),
    }
}

/// An rcode's mnemonic as dig prints it (`NXDOMAIN`); rarer codes by number (`RCODE9`).
pub fn rcode_name(rcode: ResponseCode) -> String {
    match RCODES.iter().position(|&c| c == rcode) {
        Some(i) => RCODE_NAMES[i].into(),
        None => format!("RCODE{}", u16::from(rcode)),
    }
}

/// This thread's shard: threads are dealt shards in turn as they first count something.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

/// Milliseconds since the process first asked: a clock that fits an atomic.
pub fn monotonic_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    u64::try_from(EPOCH.get_or_init(std::time::Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_their_series_and_buckets() {
        let metrics = Metrics::default();
        metrics.record(Some(RecordType::A), ResponseCode::NoError, QueryPath::Local, Duration::from_micros(30));
        metrics.record(Some(RecordType::A), ResponseCode::NoError, QueryPath::Local, Duration::from_micros(30));
        metrics.record(Some(RecordType::NULL), ResponseCode::NXDomain, QueryPath::Forwarded, Duration::from_millis(3));
        metrics.record(None, ResponseCode::FormErr, QueryPath::Local, Duration::from_secs(10));
        let totals = metrics.totals();
        assert!(totals.queries.contains(&("A".into(), "NOERROR".into(), QueryPath::Local, 2)), "{:?}", totals.queries);
        assert!(totals.queries.contains(&("other".into(), "NXDOMAIN".into(), QueryPath::Forwarded, 1)));
        assert!(totals.queries.contains(&("none".into(), "FORMERR".into(), QueryPath::Local, 1)));
        assert_eq!(totals.count(QueryPath::Local), 3);
        let (_, local, sum) = totals.latency[0];
        assert_eq!(local[0], 2, "30 µs is in the first bucket (50 µs)");
        assert_eq!(local[N_BUCKETS - 2], 2, "10 s is beyond the last bound");
        assert_eq!(local[N_BUCKETS - 1], 3, "+Inf holds every observation");
        assert!((sum - 10.00006).abs() < 1e-6, "{sum}");
        let (_, forwarded, _) = totals.latency[2];
        assert_eq!(forwarded[6], 1, "3 ms is at or under 5 ms…");
        assert_eq!(forwarded[5], 0, "…and over 2.5 ms");
    }

    #[test]
    fn threads_sum_across_shards() {
        let metrics = std::sync::Arc::new(Metrics::default());
        let threads: Vec<_> = (0..12)
            .map(|_| {
                let metrics = metrics.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        metrics.record(Some(RecordType::AAAA), ResponseCode::ServFail, QueryPath::Forwarded, Duration::ZERO);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(metrics.totals().count(QueryPath::Forwarded), 12_000);
    }
}
