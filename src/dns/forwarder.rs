//! Forwarding of names hubdns does not own: per-domain routes to upstream groups, each a
//! hickory-resolver with its own TTL-honouring cache (positive and negative).
//!
//! The route is the rule with the longest matching domain, else the default upstreams. The
//! resolvers never read /etc/hosts and never append search domains (every query name is
//! absolute). Upstream NXDOMAIN / NODATA come back with the upstream's SOA, so clients cache
//! them as long as the zone says; anything that is not an answer (timeouts, SERVFAIL, REFUSED
//! from every upstream) becomes SERVFAIL within `deadline_ms`, whatever the upstreams do.
//!
//! Each upstream server of a route has a resolver of its own, tried in order — servers that
//! answered their last query first — so every query, error and timeout is counted against
//! the server that caused it (`/metrics`, the status page). A server that fails three times
//! in a row is marked down and left alone for a backoff (1 s doubling to 60 s); a route whose
//! servers are all down answers at once — stale if it can, else SERVFAIL — instead of
//! making every client wait for timeouts.
//!
//! Serve-stale (RFC 8767): when the upstreams fail, or have not answered within
//! `stale_answer_after_ms`, a name whose answer expired less than `serve_stale_secs` ago gets
//! that answer with TTL 30; the upstream query carries on and refreshes the cache. Prefetch:
//! a cached answer asked for in the last tenth of its TTL is refreshed in the background.
//!
//! In front of the resolvers sits an [`AnswerCache`] of final answers, pre-encoded, which the
//! handler's fast path reads without a task or an await.

use std::{
    net::SocketAddr,
    sync::Arc,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::{Duration, Instant},
};

use hickory_proto::{
    op::ResponseCode,
    rr::{Name, Record, RecordType},
};
use hickory_resolver::{
    TokioResolver,
    config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts},
    net::{DnsError, NetError, runtime::TokioRuntimeProvider},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{
    config::{ForwardConfig, Upstream},
    dns::cache::{AnswerCache, Entry},
    metrics::{UpstreamStats, monotonic_ms},
    name_key::{name_key, self_and_ancestors},
    snapshot::FastMap,
};

/// Why the forwarder could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// `system` was asked for but /etc/resolv.conf could not be used.
    #[error("upstream \"system\": cannot read nameservers from /etc/resolv.conf: {0}")]
    SystemConf(String),
    /// hickory-resolver refused the settings.
    #[error("cannot build the resolver for {route}: {source}")]
    Build {
        /// The route (domain or `.`).
        route: String,
        /// hickory's error.
        source: NetError,
    },
}

/// All routes, and the bound on forwarded work.
pub struct Forwarder {
    default: Route,
    rules: FastMap<Route>,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    deadline: Duration,
    cache: AnswerCache,
    /// Zero: serve-stale off.
    stale_window: Duration,
    stale_after: Duration,
    prefetch: bool,
    /// Counters of the fallbacks above.
    pub counters: ForwardCounters,
}

/// How often the forwarder fell back or worked ahead.
#[derive(Debug, Default)]
pub struct ForwardCounters {
    /// Stale answers given.
    pub stale_answers: AtomicU64,
    /// Prefetches started.
    pub prefetches: AtomicU64,
    /// Queries answered at once because every upstream of their route was down.
    pub all_down: AtomicU64,
}

/// TTL of a stale answer (RFC 8767 §4 recommends 30 s).
const STALE_TTL: u32 = 30;

/// One upstream group.
pub struct Route {
    /// The domain it serves (`.` for the default route).
    pub domain: Name,
    /// The upstream servers, `system` already expanded.
    pub upstreams: Vec<SocketAddr>,
    servers: Vec<UpstreamServer>,
}

/// One upstream server: its resolver and its counters.
struct UpstreamServer {
    resolver: TokioResolver,
    stats: Arc<UpstreamStats>,
}

/// An upstream's verdict, ready to put in a response.
#[derive(Debug)]
pub struct Forwarded {
    /// NOERROR, NXDOMAIN or SERVFAIL.
    pub rcode: ResponseCode,
    /// Answer records (CNAME chain included), TTLs counted down by the cache.
    pub answers: Vec<Record>,
    /// Authority records: the upstream's SOA for negative answers.
    pub authorities: Vec<Record>,
    /// From the expired cache (serve-stale), not from an upstream.
    pub stale: bool,
}

impl Forwarded {
    fn servfail() -> Self {
        Self { rcode: ResponseCode::ServFail, answers: Vec::new(), authorities: Vec::new(), stale: false }
    }
}

/// A cached answer for `name`/`qtype` decoded back into records, each TTL set by `ttl`.
fn decoded(prepared: &crate::prepared::Prepared, name: &Name, qtype: RecordType, ttl: impl Fn(u32) -> u32, stale: bool) -> Option<Forwarded> {
    let (mut answers, mut authorities) = prepared
        .records(name, qtype)
        .inspect_err(|error| tracing::debug!(%name, %qtype, %error, "cached answer unreadable"))
        .ok()?;
    for record in answers.iter_mut().chain(authorities.iter_mut()) {
        record.ttl = ttl(record.ttl);
    }
    Some(Forwarded { rcode: prepared.rcode, answers, authorities, stale })
}

impl Forwarder {
    /// Builds every route of `config`, reading /etc/resolv.conf once if `system` is used.
    pub fn new(config: &ForwardConfig) -> Result<Self, ForwardError> {
        let mut system = None;
        let default = Route::new(Name::root(), &config.upstreams, config, &mut system)?;
        let mut rules = FastMap::default();
        for rule in &config.rules {
            let rule = rule.get_ref();
            let route = Route::new(rule.domain.name().clone(), &rule.upstreams, config, &mut system)?;
            rules.insert(rule.domain.key(), route);
        }
        Ok(Self {
            default,
            rules,
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
            max_in_flight: config.max_in_flight,
            deadline: Duration::from_millis(config.deadline_ms),
            cache: AnswerCache::new(
                usize::try_from(config.cache_size).unwrap_or(usize::MAX),
                config.cache_max_bytes,
                Duration::from_secs(config.serve_stale_secs),
            ),
            stale_window: Duration::from_secs(config.serve_stale_secs),
            stale_after: Duration::from_millis(config.stale_answer_after_ms),
            prefetch: config.prefetch,
            counters: ForwardCounters::default(),
        })
    }

    /// A live cached answer for `key` (a lowercase name key) and `qtype`.
    pub fn cached(&self, key: &[u8], qtype: RecordType, now: Instant) -> Option<Arc<Entry>> {
        self.cache.get(key, qtype, now)
    }

    /// A slot for one more forwarded query, or `None` when `max_in_flight` are under way.
    pub fn try_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.in_flight.clone().try_acquire_owned().ok()
    }

    /// The route for the name with wire key `key`: longest matching rule, else the default.
    pub fn route(&self, key: &[u8]) -> &Route {
        self_and_ancestors(key)
            .find_map(|suffix| self.rules.get(suffix))
            .unwrap_or(&self.default)
    }

    /// Every route, the default first.
    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        std::iter::once(&self.default).chain(self.rules.values())
    }

    /// Asks the matching upstreams for `name`/`qtype`, answering within the deadline, and
    /// keeps a cacheable answer for the fast path. With an expired answer at hand, falls back
    /// on it when the upstreams fail or are slower than `stale_answer_after_ms`.
    pub async fn forward(self: &Arc<Self>, name: &Name, qtype: RecordType) -> Forwarded {
        let stale = match self.stale_window.is_zero() {
            true => None,
            false => self.cache.get_stale(&name_key(name), qtype, Instant::now()),
        };
        let Some(stale) = stale else {
            return self.ask_and_keep(name, qtype).await;
        };
        // The upstream query runs on its own, so it goes on refreshing the cache after the
        // client has had the stale answer.
        let this = self.clone();
        let owned = name.clone();
        let mut asking = tokio::spawn(async move { this.ask_and_keep(&owned, qtype).await });
        match tokio::time::timeout(self.stale_after, &mut asking).await {
            Ok(Ok(fresh)) if fresh.rcode != ResponseCode::ServFail => fresh,
            _ => self.stale_answer(&stale.prepared, name, qtype).unwrap_or_else(Forwarded::servfail),
        }
    }

    /// Refreshes `name`/`qtype` in the background, if the cache says it is time, prefetch is
    /// on, and a forwarding slot is free.
    pub fn prefetch_if_due(self: &Arc<Self>, entry: &Entry, now: Instant, runtime: &tokio::runtime::Handle) {
        if !self.prefetch || !entry.wants_prefetch(now) {
            return;
        }
        let Some(permit) = self.try_permit() else { return };
        self.counters.prefetches.fetch_add(1, Relaxed);
        let (this, name, qtype) = (self.clone(), entry.name.clone(), entry.qtype);
        runtime.spawn(async move {
            this.ask_and_keep(&name, qtype).await;
            drop(permit);
        });
    }

    async fn ask_and_keep(&self, name: &Name, qtype: RecordType) -> Forwarded {
        let forwarded = self.ask(name, qtype).await;
        self.cache.insert(name, qtype, &forwarded, Instant::now());
        forwarded
    }

    /// An expired answer served again with TTL 30 (RFC 8767).
    fn stale_answer(&self, prepared: &crate::prepared::Prepared, name: &Name, qtype: RecordType) -> Option<Forwarded> {
        let answer = decoded(prepared, name, qtype, |_| STALE_TTL, true)?;
        self.counters.stale_answers.fetch_add(1, Relaxed);
        tracing::debug!(%name, %qtype, "upstreams failed or slow: answering stale");
        Some(answer)
    }

    /// The live cached answer for `name`/`qtype` as records, TTLs counted down: for an owned
    /// CNAME whose target is outside, answered without asking upstream again.
    pub fn cached_answer(&self, name: &Name, qtype: RecordType, now: Instant) -> Option<Forwarded> {
        let entry = self.cache.get(&name_key(name), qtype, now)?;
        let age = entry.age(now);
        decoded(&entry.prepared, name, qtype, |ttl| ttl.saturating_sub(age), false)
    }

    /// Answers in the cache now.
    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    /// Bytes the cache holds now, and at most.
    pub fn cache_bytes(&self) -> (u64, u64) {
        (self.cache.bytes(), self.cache.capacity_bytes())
    }

    /// Forwarded queries under way now.
    pub fn in_flight(&self) -> usize {
        self.max_in_flight - self.in_flight.available_permits()
    }

    /// The longest a forwarded query may take.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Stores an answer as if `forward` had just received it at `now` (for tests).
    #[cfg(test)]
    pub fn cache_for_test(&self, name: &Name, qtype: RecordType, forwarded: &Forwarded, now: Instant) {
        self.cache.insert(name, qtype, forwarded, now);
    }

    async fn ask(&self, name: &Name, qtype: RecordType) -> Forwarded {
        let route = self.route(&name_key(name));
        let deadline = tokio::time::Instant::now() + self.deadline;
        let servers = route.in_order(monotonic_ms());
        if servers.is_empty() {
            self.counters.all_down.fetch_add(1, Relaxed);
            tracing::debug!(%name, %qtype, route = %route.domain, "every upstream is down: not asking");
        }
        for server in servers {
            let stats = &server.stats;
            stats.queries.fetch_add(1, Relaxed);
            let result = match tokio::time::timeout_at(deadline, server.resolver.lookup(name.clone(), qtype)).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::debug!(%name, %qtype, upstream = %stats.addr, "forward deadline passed");
                    self.failed(stats, true, &route.domain);
                    break;
                }
            };
            let answer = match result {
                Ok(lookup) => Forwarded {
                    rcode: ResponseCode::NoError,
                    answers: lookup.answers().to_vec(),
                    authorities: Vec::new(),
                    stale: false,
                },
                Err(NetError::Dns(DnsError::NoRecordsFound(none)))
                    if matches!(none.response_code, ResponseCode::NXDomain | ResponseCode::NoError) =>
                {
                    Forwarded {
                        rcode: none.response_code,
                        answers: Vec::new(),
                        authorities: none.soa.map(|soa| soa.into_record_of_rdata()).into_iter().collect(),
                        stale: false,
                    }
                }
                Err(error) => {
                    tracing::debug!(%name, %qtype, upstream = %stats.addr, %error, "forward failed; trying the next upstream");
                    self.failed(stats, matches!(error, NetError::Timeout), &route.domain);
                    continue;
                }
            };
            stats.succeeded();
            return answer;
        }
        Forwarded::servfail()
    }

    /// Counts a failure of `stats`'s server and says so when it is marked down.
    fn failed(&self, stats: &UpstreamStats, timeout: bool, route: &Name) {
        if let Some(backoff) = stats.failed(timeout, monotonic_ms()) {
            tracing::warn!(upstream = %stats.addr, %route, backoff_ms = backoff.as_millis() as u64, "upstream marked down after failing in a row");
        }
    }
}

impl Route {
    fn new(
        domain: Name,
        upstreams: &[Upstream],
        config: &ForwardConfig,
        system: &mut Option<Vec<SocketAddr>>,
    ) -> Result<Self, ForwardError> {
        let mut servers: Vec<SocketAddr> = Vec::new();
        for upstream in upstreams {
            match upstream {
                Upstream::Addr(addr) => servers.push(*addr),
                Upstream::System => {
                    if system.is_none() {
                        *system = Some(system_nameservers()?);
                    }
                    servers.extend(system.iter().flatten());
                }
            }
        }
        servers.dedup();

        let mut opts = ResolverOpts::default();
        opts.use_hosts_file = ResolveHosts::Never;
        opts.ndots = 0;
        // The answer cache in front is the cache: a second one here would answer a prefetch
        // or a stale refresh from itself instead of asking the upstream.
        opts.cache_size = 0;
        opts.timeout = Duration::from_millis(config.timeout_ms);
        opts.attempts = config.attempts;
        opts.preserve_intermediates = true;
        opts.edns0 = true;
        let servers_built = servers
            .iter()
            .map(|addr| {
                let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                    .into_iter()
                    .map(|mut c| {
                        c.port = addr.port();
                        c
                    })
                    .collect();
                let name_server = NameServerConfig::new(addr.ip(), true, connections);
                let resolver = TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![name_server]),
                    TokioRuntimeProvider::default(),
                )
                .with_options(opts.clone())
                .build()
                .map_err(|source| ForwardError::Build { route: domain.to_string(), source })?;
                Ok(UpstreamServer { resolver, stats: UpstreamStats::new(*addr) })
            })
            .collect::<Result<_, ForwardError>>()?;
        Ok(Self { domain, upstreams: servers, servers: servers_built })
    }

    /// The servers to try, in order: those not marked down, the ones that answered their last
    /// query first (in config order), then the failing ones, fewest failures first. Empty
    /// when every server is down.
    fn in_order(&self, now_ms: u64) -> Vec<&UpstreamServer> {
        let mut order: Vec<&UpstreamServer> = self.servers.iter().filter(|s| !s.stats.is_down(now_ms)).collect();
        order.sort_by_key(|s| s.stats.consecutive_failures.load(Relaxed));
        order
    }

    /// Each upstream server's counters.
    pub fn stats(&self) -> impl Iterator<Item = &Arc<UpstreamStats>> {
        self.servers.iter().map(|s| &s.stats)
    }
}

/// The nameservers of /etc/resolv.conf — only those: its search list and options are not
/// ours to apply to other people's queries.
fn system_nameservers() -> Result<Vec<SocketAddr>, ForwardError> {
    let (config, _) = hickory_resolver::system_conf::read_system_conf()
        .map_err(|e| ForwardError::SystemConf(e.to_string()))?;
    let mut servers: Vec<SocketAddr> = config
        .name_servers()
        .iter()
        .map(|ns| SocketAddr::new(ns.ip, ns.connections.first().map_or(53, |c| c.port)))
        .collect();
    servers.dedup();
    if servers.is_empty() {
        return Err(ForwardError::SystemConf("it lists no nameserver".into()));
    }
    Ok(servers)
}
