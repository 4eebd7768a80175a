//! Forwarding of names hubdns does not own: per-domain routes to upstream servers, a cache of
//! their answers, and the duties of a DNSSEC-aware forwarder (ARCHITECTURE.md, "Forwarding").
//!
//! The route is the rule with the longest matching domain, else the default upstreams. Each
//! server is asked directly over hickory-proto messages ([`super::upstream`]); nothing reads
//! /etc/hosts or appends search domains.
//!
//! - **Answers pass through whole.** NOERROR and NXDOMAIN come back with their answer section
//!   as the upstream sent it — a CNAME chain stays, even when it ends in NXDOMAIN or NODATA —
//!   and with the SOA, NSEC, NSEC3 and their RRSIGs from the authority section, so clients
//!   cache negative answers as long as the zone says (RFC 2308 §5) and validators get their
//!   proofs. Other authority and additional records are left out.
//! - **DNSSEC** (RFC 4035 §3.2): DO is always set upstream; CD is passed on, and is part of the
//!   cache and coalescing keys (DO is not: one answer serves both kinds of client). RRSIG,
//!   NSEC and NSEC3 go to clients that set DO and are stripped for the others, unless asked
//!   for by type ([`for_plain_client`]). AD is passed on only from a route with `trust_ad`,
//!   and only to a client that set DO or AD (RFC 6840 §5.8).
//! - **Failures belong to their name** (RFC 9520): when no server answers a name, the failure
//!   is cached for that name for `forward.servfail_cache_secs`, doubling (up to four times
//!   that) while it keeps failing, and repeats are answered from there (stale if serve-stale has an
//!   answer, else SERVFAIL). A server's health comes from
//!   failures across names ([`super::health`]); a server marked down is skipped only while
//!   another server of the route is up.
//! - **One question, one upstream query.** Queries for the same (name, type, CD) while one is
//!   under way wait for it instead of asking again (coalescing); so do prefetches and the
//!   refreshes behind stale answers, which also need a free `max_in_flight` slot.
//! - **Within the deadline**: whatever the upstreams do, a forward ends by `deadline_ms`.
//!
//! Serve-stale (RFC 8767): when the upstreams fail, or have not answered within
//! `stale_answer_after_ms`, a name whose answer expired less than `serve_stale_secs` ago gets
//! that answer with TTL 30; the upstream query carries on and refreshes the cache. Prefetch:
//! a cached answer asked for in the last tenth of its TTL is refreshed in the background.
//!
//! In front sits an [`AnswerCache`] of final answers, pre-encoded, which the handler's fast
//! path reads without a task or an await.

use std::{
    collections::HashMap,
    hash::BuildHasher,
    net::SocketAddr,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use hickory_proto::{
    ProtoError,
    op::{Edns, Message, Query, ResponseCode},
    rr::{Name, RData, Record, RecordType},
};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore, oneshot},
    task::AbortHandle,
};

use crate::{
    config::{ForwardConfig, Upstream},
    dns::{
        cache::{AnswerCache, Entry, Key},
        health::{Failure, UpstreamStats},
        upstream::{self, Callback, Exchange, ExchangeError, ask_tcp, truncated},
    },
    metrics::monotonic_ms,
    name_key::{name_key, self_and_ancestors},
    signed_parents::SignedOverlap,
    prepared::HEADER_LEN,
    snapshot::FastMap,
};

/// Why the forwarder could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// `system` was asked for but /etc/resolv.conf could not be used.
    #[error("upstream \"system\": cannot read nameservers from /etc/resolv.conf: {0}")]
    SystemConf(String),
}

/// The EDNS payload size asked for upstream: the DNS flag day 2020 value, which fits an
/// unfragmented datagram on any path.
const UPSTREAM_PAYLOAD: u16 = 1232;

/// Size of an OPT record without options: root name, type, class, TTL, RDLENGTH.
const OPT_LEN: usize = 11;

/// TTL of a stale answer (RFC 8767 §4 recommends 30 s).
const STALE_TTL: u32 = 30;

/// How often timed-out queries and due stale answers are looked for: the slack of every
/// timeout; and how often while no query is under way.
const SWEEP: Duration = Duration::from_millis(10);
const IDLE_SWEEP: Duration = Duration::from_millis(100);

/// Longest upstream query: header, a name of 255, type, class, and an OPT without options.
const MAX_QUERY: usize = HEADER_LEN + 255 + 4 + OPT_LEN;

/// Most clients one upstream question keeps waiting; past it they get SERVFAIL at once.
const MAX_WAITERS: usize = 4096;

/// What is told the answer to a forwarded question, once.
pub type Done = Box<dyn FnOnce(&Landed) + Send>;

/// The answer to a forwarded question, and its cache entry when it was just cached (so a
/// plain query's reply can be copied from it).
pub struct Landed {
    /// The answer.
    pub answer: Arc<Forwarded>,
    /// The entry it was cached as; `None` for stale answers, failures and uncacheable ones.
    pub entry: Option<Arc<Entry>>,
}

impl Landed {
    fn uncached(answer: Forwarded) -> Self {
        Self { answer: Arc::new(answer), entry: None }
    }
}

/// `localhost.`, answered without asking anyone (see [`localhost`]).
static LOCALHOST: std::sync::LazyLock<Name> = std::sync::LazyLock::new(|| Name::from_labels([&b"localhost"[..]]).unwrap_or_else(|_| Name::root()));

/// All routes, the cache, and the bound on forwarded work.
pub struct Forwarder {
    default: Route,
    rules: FastMap<Route>,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    deadline: Duration,
    cache: AnswerCache,
    /// Questions under way upstream, by cache key.
    flights: Mutex<HashMap<Key, Flight, foldhash::fast::RandomState>>,
    /// The task of [`Forwarder::sweep`], started with the first flight.
    sweeper: OnceLock<AbortHandle>,
    /// Zero: serve-stale off.
    stale_window: Duration,
    stale_after: Duration,
    prefetch: bool,
    /// How long a name's failure is remembered (RFC 9520 §3.2).
    failure_ttl: Duration,
    /// Counters of the fallbacks above.
    pub counters: ForwardCounters,
    /// Owned apexes whose public names lie in signed zones, as last found upstream.
    signed: arc_swap::ArcSwap<Vec<SignedOverlap>>,
    /// The runtime it was made in, where its own tasks run ([`upstream::home_runtime`]).
    runtime: Option<tokio::runtime::Handle>,
}

/// How often the forwarder fell back, saved work or worked ahead.
#[derive(Debug, Default)]
pub struct ForwardCounters {
    /// Stale answers given.
    pub stale_answers: AtomicU64,
    /// Prefetches started.
    pub prefetches: AtomicU64,
    /// Forwards sent to every server of a route although all were marked down.
    pub all_down: AtomicU64,
    /// Queries that waited for an identical upstream query instead of sending their own.
    pub coalesced: AtomicU64,
    /// Queries answered from the failure cache without asking upstream.
    pub failures_cached: AtomicU64,
    /// Queries answered SERVFAIL (or stale) at once because `max_in_flight` questions were
    /// under way, or too many clients already waited for theirs.
    pub saturated: AtomicU64,
}

/// One upstream group.
pub struct Route {
    /// The domain it serves (`.` for the default route).
    pub domain: Name,
    /// The upstream servers, `system` already expanded.
    pub upstreams: Vec<SocketAddr>,
    /// Whether the AD bit of these servers' answers is believed (they validate, and the path
    /// to them is trusted).
    pub trust_ad: bool,
    servers: Vec<Arc<Server>>,
}

/// One upstream server: its sockets, how long and how often to ask it, and its counters.
struct Server {
    exchange: Exchange,
    timeout: Duration,
    attempts: usize,
    stats: Arc<UpstreamStats>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        if let Some(sweeper) = self.sweeper.get() {
            sweeper.abort();
        }
    }
}

/// A question to ask upstream.
#[derive(Debug, Clone)]
pub struct Ask {
    /// The name, as the client wrote it.
    pub name: Name,
    /// The type.
    pub qtype: RecordType,
    /// The client's CD bit: the upstream should not validate (RFC 4035 §3.2.2).
    pub checking_disabled: bool,
}

impl Ask {
    /// A question with CD clear.
    pub fn new(name: Name, qtype: RecordType) -> Self {
        Self { name, qtype, checking_disabled: false }
    }

    fn key(&self) -> Key {
        Key::new(&name_key(&self.name), self.qtype, self.checking_disabled)
    }
}

/// An upstream's verdict, ready to put in a response.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// NOERROR, NXDOMAIN or SERVFAIL.
    pub rcode: ResponseCode,
    /// Answer records (CNAME chain and RRSIGs included), TTLs counted down by the cache.
    pub answers: Vec<Record>,
    /// Authority records: SOA, NSEC, NSEC3 and their RRSIGs.
    pub authorities: Vec<Record>,
    /// From the expired cache (serve-stale), not from an upstream.
    pub stale: bool,
    /// The upstream set AD and its route is trusted for it.
    pub authentic: bool,
}

impl Forwarded {
    /// No answer: SERVFAIL.
    pub fn servfail() -> Self {
        Self { rcode: ResponseCode::ServFail, answers: Vec::new(), authorities: Vec::new(), stale: false, authentic: false }
    }
}

/// Whether `record` is left out of an answer to `qtype` for a client that did not set DO:
/// RFC 4035 §3.2.1 — the authenticating records (RRSIG, NSEC, NSEC3) are stripped, unless the
/// query asked for that type.
pub fn for_plain_client(record: &Record, qtype: RecordType) -> bool {
    let rtype = record.record_type();
    !(matches!(rtype, RecordType::RRSIG | RecordType::NSEC | RecordType::NSEC3) && rtype != qtype)
}

/// A cached answer for `name`/`qtype` decoded back into records, each TTL set by `ttl`.
fn decoded(entry: &Entry, name: &Name, ttl: impl Fn(u32) -> u32, stale: bool) -> Option<Forwarded> {
    let prepared = entry.prepared(true);
    let (mut answers, mut authorities) = prepared
        .records(name, entry.qtype)
        .inspect_err(|error| tracing::debug!(%name, qtype = %entry.qtype, %error, "cached answer unreadable"))
        .ok()?;
    for record in answers.iter_mut().chain(authorities.iter_mut()) {
        record.ttl = ttl(record.ttl);
    }
    Some(Forwarded { rcode: prepared.rcode, answers, authorities, stale, authentic: prepared.authentic })
}

impl Forwarder {
    /// Builds every route of `config`, reading /etc/resolv.conf once if `system` is used.
    /// Sockets are opened when a server is first asked.
    pub fn new(config: &ForwardConfig) -> Result<Self, ForwardError> {
        let mut system = None;
        let default = Route::new(Name::root(), &config.upstreams, config.trust_ad, config, &mut system)?;
        let mut rules = FastMap::default();
        for rule in &config.rules {
            let rule = rule.get_ref();
            let route = Route::new(rule.domain.name().clone(), &rule.upstreams, rule.trust_ad, config, &mut system)?;
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
            flights: Mutex::default(),
            sweeper: OnceLock::new(),
            stale_window: Duration::from_secs(config.serve_stale_secs),
            stale_after: Duration::from_millis(config.stale_answer_after_ms),
            prefetch: config.prefetch,
            failure_ttl: Duration::from_secs(config.servfail_cache_secs),
            counters: ForwardCounters::default(),
            signed: arc_swap::ArcSwap::default(),
            runtime: upstream::home_runtime(),
        })
    }

    /// Starts `task` in the runtime the forwarder was made in, whoever calls.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> tokio::task::JoinHandle<()> {
        match &self.runtime {
            Some(runtime) => runtime.spawn(task),
            None => tokio::spawn(task),
        }
    }

    /// A live cached answer for `key` (a lowercase name key), `qtype` and CD bit.
    pub fn cached(&self, key: &[u8], qtype: RecordType, checking_disabled: bool, now: Instant) -> Option<Arc<Entry>> {
        self.cache.get(&Key::new(key, qtype, checking_disabled), now)
    }

    /// A slot for one more upstream question, or `None` when `max_in_flight` are under way.
    fn try_permit(&self) -> Option<OwnedSemaphorePermit> {
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

    /// What `ask` gets without asking upstream, if anything: the live cached answer, TTLs
    /// counted down; else, when its name failed a moment ago (RFC 9520), the stale answer if
    /// there is one, or SERVFAIL. A live answer beats a remembered failure (a failed prefetch
    /// must not hide it).
    pub fn answer_now(&self, ask: &Ask, now: Instant) -> Option<Forwarded> {
        let key = ask.key();
        if let Some(entry) = self.cache.get(&key, now) {
            let age = entry.age(now);
            return decoded(&entry, &ask.name, |ttl| ttl.saturating_sub(age), false);
        }
        self.failed_at(&key, &ask.name, now)
    }

    /// The answer to the question `key` for `name` when it failed a moment ago: the stale
    /// answer if there is one, else SERVFAIL. `None` when it has not failed.
    fn failed_at(&self, key: &Key, name: &Name, now: Instant) -> Option<Forwarded> {
        if !self.cache.failed(key, now) {
            return None;
        }
        self.counters.failures_cached.fetch_add(1, Relaxed);
        let stale = match self.stale_window.is_zero() {
            true => None,
            false => self.cache.get_stale(key, now),
        };
        Some(stale.and_then(|entry| self.stale_answer(&entry, name)).unwrap_or_else(Forwarded::servfail))
    }

    /// Asks upstream for `ask` and tells `done` the answer: at once when the name failed a
    /// moment ago or is local ([`localhost`]), else when an upstream answers, every server
    /// has failed, or the deadline passes. With an expired answer at hand, `done` gets it
    /// when the upstreams fail or take longer than `stale_answer_after_ms`, and the upstream
    /// query goes on to refresh the cache. Sends from the calling thread, which must be inside
    /// the runtime; `done` runs on whichever thread settles the question.
    pub fn start(self: &Arc<Self>, ask: Ask, done: Done) {
        let now = Instant::now();
        let key = ask.key();
        if let Some(failed) = self.failed_at(&key, &ask.name, now) {
            return done(&Landed::uncached(failed));
        }
        if let Some(loopback) = localhost(&ask) {
            return done(&Landed::uncached(loopback));
        }
        let stale = match self.stale_window.is_zero() {
            true => None,
            false => self.cache.get_stale(&key, now),
        };
        let permit = {
            let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(flight) = flights.get_mut(&key) {
                // Waiting costs no slot: only questions sent upstream hold one, so one name
                // asked again and again cannot take every slot.
                if flight.waiters.len() < MAX_WAITERS {
                    self.counters.coalesced.fetch_add(1, Relaxed);
                    flight.waiters.push(done);
                    return;
                }
                drop(flights);
                self.counters.saturated.fetch_add(1, Relaxed);
                return done(&Landed::uncached(Forwarded::servfail()));
            }
            let Some(permit) = self.try_permit() else {
                drop(flights);
                // Every slot is taken: the stale answer if there is one, else SERVFAIL at once.
                self.counters.saturated.fetch_add(1, Relaxed);
                let answer = stale.and_then(|stale| self.stale_answer(&stale, &ask.name)).unwrap_or_else(Forwarded::servfail);
                return done(&Landed::uncached(answer));
            };
            let stale = stale.map(|entry| (entry, now + self.stale_after));
            flights.insert(key.clone(), Flight { waiters: vec![done], stale });
            permit
        };
        self.launch(ask, key, permit, now);
    }

    /// [`Forwarder::start`], awaited.
    pub async fn forward(self: &Arc<Self>, ask: &Ask) -> Arc<Forwarded> {
        let (tx, rx) = oneshot::channel();
        self.start(ask.clone(), Box::new(move |landed| {
            let _ = tx.send(landed.answer.clone());
        }));
        rx.await.unwrap_or_else(|_| Arc::new(Forwarded::servfail()))
    }

    /// Refreshes the entry's question in the background, if the cache says it is time,
    /// prefetch is on, no query for it is under way, and a forwarding slot is free.
    pub fn prefetch_if_due(self: &Arc<Self>, entry: &Entry, now: Instant) {
        if !self.prefetch || !entry.wants_prefetch(now) {
            return;
        }
        let ask = Ask { name: entry.name.clone(), qtype: entry.qtype, checking_disabled: entry.checking_disabled };
        let key = ask.key();
        let permit = {
            let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            if flights.contains_key(&key) {
                return;
            }
            let Some(permit) = self.try_permit() else { return };
            flights.insert(key.clone(), Flight { waiters: Vec::new(), stale: None });
            permit
        };
        self.counters.prefetches.fetch_add(1, Relaxed);
        self.launch(ask, key, permit, now);
    }

    /// Sends the first query of a new flight.
    fn launch(self: &Arc<Self>, ask: Ask, key: Key, permit: OwnedSemaphorePermit, now: Instant) {
        self.start_sweeper();
        let route = self.route(key_name(&key));
        let query = match upstream_query(&ask) {
            Ok(query) => query,
            Err(error) => {
                tracing::debug!(name = %ask.name, qtype = %ask.qtype, %error, "cannot encode the upstream query");
                return self.land(&key, &ask, Forwarded::servfail());
            }
        };
        let (servers, all_down) = route.in_order(monotonic_ms());
        if all_down {
            self.counters.all_down.fetch_add(1, Relaxed);
        }
        let attempt = Box::new(Attempt {
            name_hash: foldhash::fast::FixedState::default().hash_one(&key),
            ask,
            key,
            query,
            servers,
            trust_ad: route.trust_ad,
            route: route.domain.clone(),
            next: 0,
            tries: 0,
            tcp: false,
            deadline: now + self.deadline,
            _permit: permit,
        });
        self.send(attempt);
    }

    /// Sends the attempt's query to its current server, or ends the flight with SERVFAIL when
    /// no server is left or the deadline has passed.
    fn send(self: &Arc<Self>, attempt: Box<Attempt>) {
        let now = Instant::now();
        let Some(server) = attempt.servers.get(attempt.next).cloned() else {
            return self.land(&attempt.key, &attempt.ask, Forwarded::servfail());
        };
        if now >= attempt.deadline {
            tracing::debug!(name = %attempt.ask.name, qtype = %attempt.ask.qtype, "forward deadline passed");
            return self.land(&attempt.key, &attempt.ask, Forwarded::servfail());
        }
        server.stats.queries.fetch_add(1, Relaxed);
        let expires = (now + server.timeout).min(attempt.deadline);
        // The query is copied for this send (its ID is this send's own); the attempt keeps it
        // for the next.
        let mut query = [0u8; MAX_QUERY];
        let len = attempt.query.0.len().min(MAX_QUERY);
        query[..len].copy_from_slice(&attempt.query.0[..len]);
        let question_len = attempt.query.1;
        let this = self.clone();
        let callback: Callback = Box::new(move |reply| this.on_reply(attempt, reply));
        if let Err((error, callback)) = server.exchange.send(&mut query[..len], question_len, expires, callback) {
            callback(Err(error));
        }
    }

    /// What a server's reply (or its absence) means for the attempt: an answer lands; anything
    /// else counts against the server, and the attempt goes on to the next try or server.
    fn on_reply(self: &Arc<Self>, mut attempt: Box<Attempt>, reply: Result<&[u8], ExchangeError>) {
        let server = attempt.servers[attempt.next].clone();
        let stats = &server.stats;
        let failure = match reply {
            Ok(bytes) if truncated(bytes) && !attempt.tcp => {
                // RFC 7766 §5: a truncated answer is asked again over TCP.
                attempt.tcp = true;
                let (this, wait) = (self.clone(), attempt.deadline.saturating_duration_since(Instant::now()));
                let query = attempt.query.0.clone();
                self.spawn(async move {
                    let reply = ask_tcp(server.exchange.addr(), query, attempt.query.1, wait).await;
                    this.on_reply(attempt, reply.as_deref().map_err(|e| ExchangeError::Io(std::io::Error::other(e.to_string()))));
                });
                return;
            }
            Ok(bytes) => match read_reply(bytes, attempt.trust_ad) {
                Ok(Ok(answer)) => {
                    stats.answered(monotonic_ms());
                    return self.land(&attempt.key, &attempt.ask, answer);
                }
                Ok(Err(rcode)) => {
                    tracing::debug!(name = %attempt.ask.name, qtype = %attempt.ask.qtype, upstream = %stats.addr, %rcode, "upstream could not answer; trying the next");
                    Failure::Answer
                }
                Err(error) => {
                    tracing::debug!(upstream = %stats.addr, %error, "malformed upstream reply; trying the next");
                    Failure::Transport
                }
            },
            Err(ExchangeError::Timeout) if attempt.tries + 1 < server.attempts && Instant::now() < attempt.deadline => {
                // A lost datagram: the same server again, with a new ID.
                attempt.tries += 1;
                return self.send(attempt);
            }
            Err(error) => {
                tracing::debug!(name = %attempt.ask.name, qtype = %attempt.ask.qtype, upstream = %stats.addr, %error, "no usable reply; trying the next upstream");
                error.failure()
            }
        };
        if let Some(backoff) = stats.failed(attempt.name_hash, failure, monotonic_ms()) {
            tracing::warn!(upstream = %stats.addr, route = %attempt.route, backoff_ms = backoff.as_millis() as u64, "upstream marked down: it failed for many different names");
        }
        attempt.next += 1;
        attempt.tries = 0;
        attempt.tcp = false;
        self.send(attempt);
    }

    /// Ends a flight: keeps the verdict, and hands it to everyone waiting — or, when it is
    /// SERVFAIL and an expired answer is at hand, that answer (RFC 8767).
    fn land(&self, key: &Key, ask: &Ask, answer: Forwarded) {
        let entry = self.keep(ask, key, &answer);
        let flight = self.flights.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
        let Some(flight) = flight else { return };
        if flight.waiters.is_empty() {
            return;
        }
        let landed = match (&flight.stale, answer.rcode) {
            (Some((stale, _)), ResponseCode::ServFail) => Landed::uncached(self.stale_answer(stale, &ask.name).unwrap_or(answer)),
            _ => Landed { answer: Arc::new(answer), entry },
        };
        for done in flight.waiters {
            done(&landed);
        }
    }

    /// Starts the task that times queries out and gives stale answers when they are due,
    /// once, on first use; it ends when the forwarder is dropped.
    fn start_sweeper(self: &Arc<Self>) {
        if self.sweeper.get().is_some() {
            return;
        }
        let forwarder = Arc::downgrade(self);
        let task = self.spawn(async move {
            let mut idle = false;
            loop {
                // Nothing under way, nothing can time out: look less often. A flight that
                // starts meanwhile times out at most IDLE_SWEEP late.
                tokio::time::sleep(if idle { IDLE_SWEEP } else { SWEEP }).await;
                let Some(forwarder) = forwarder.upgrade() else { return };
                forwarder.sweep(Instant::now());
                idle = forwarder.flights.lock().unwrap_or_else(|e| e.into_inner()).is_empty();
            }
        });
        if let Err(task) = self.sweeper.set(task.abort_handle()) {
            // Another thread started one first.
            task.abort();
        }
    }

    /// Times out the queries whose time is up, and answers stale those who waited
    /// `stale_answer_after_ms` for a name with an expired answer.
    fn sweep(&self, now: Instant) {
        for route in self.routes() {
            for server in &route.servers {
                server.exchange.sweep(now);
            }
        }
        let due: Vec<(Arc<Entry>, Vec<Done>)> = {
            let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            flights
                .values_mut()
                .filter_map(|flight| match &flight.stale {
                    Some((entry, at)) if *at <= now && !flight.waiters.is_empty() => Some((entry.clone(), std::mem::take(&mut flight.waiters))),
                    _ => None,
                })
                .collect()
        };
        for (entry, waiters) in due {
            let landed = Landed::uncached(self.stale_answer(&entry, &entry.name).unwrap_or_else(Forwarded::servfail));
            for done in waiters {
                done(&landed);
            }
        }
    }

    /// Stores an upstream's verdict: an answer in the cache (returning its entry), a failure in
    /// the failure cache.
    fn keep(&self, ask: &Ask, key: &Key, answer: &Forwarded) -> Option<Arc<Entry>> {
        let now = Instant::now();
        match answer.rcode {
            ResponseCode::ServFail => {
                self.cache.fail(key, now, self.failure_ttl);
                None
            }
            _ => self.cache.insert(key, &ask.name, ask.qtype, ask.checking_disabled, answer, now),
        }
    }

    /// An expired answer served again with TTL 30 (RFC 8767).
    fn stale_answer(&self, entry: &Entry, name: &Name) -> Option<Forwarded> {
        let answer = decoded(entry, name, |_| STALE_TTL, true)?;
        self.counters.stale_answers.fetch_add(1, Relaxed);
        tracing::debug!(%name, qtype = %entry.qtype, "upstreams failed or slow: answering stale");
        Some(answer)
    }

    /// Owned apexes whose public names lie in DNSSEC-signed zones, as last found upstream
    /// ([`crate::signed_parents`]).
    pub fn signed_overlaps(&self) -> Arc<Vec<SignedOverlap>> {
        self.signed.load_full()
    }

    /// Keeps the overlaps just found, and the previous ones of the apexes nothing was learned
    /// about (`unknown`); returns those that are new, for the log.
    pub fn set_signed_overlaps(&self, found: Vec<SignedOverlap>, unknown: &[String]) -> Vec<SignedOverlap> {
        let before = self.signed.load_full();
        let merged = crate::signed_parents::merge(&before, found, unknown);
        self.signed.store(Arc::new(merged.clone()));
        merged.into_iter().filter(|o| !before.contains(o)).collect()
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

    /// Stores an answer as if `forward` had just received it at `now` (for tests).
    #[cfg(test)]
    pub fn cache_for_test(&self, name: &Name, qtype: RecordType, checking_disabled: bool, forwarded: &Forwarded, now: Instant) {
        let ask = Ask { name: name.clone(), qtype, checking_disabled };
        self.cache.insert(&ask.key(), name, qtype, checking_disabled, forwarded, now);
    }
}

/// The answer for `localhost.` and the names below it, which never go upstream: A
/// 127.0.0.1, AAAA ::1, nothing of other types (RFC 6761 §6.3: caching servers answer them
/// with loopback themselves; TTL as Unbound's built-in `localhost.` zone).
fn localhost(ask: &Ask) -> Option<Forwarded> {
    const TTL: u32 = 3600;
    if !LOCALHOST.zone_of(&ask.name) {
        return None;
    }
    let data = match ask.qtype {
        RecordType::A => Some(RData::A(std::net::Ipv4Addr::LOCALHOST.into())),
        RecordType::AAAA => Some(RData::AAAA(std::net::Ipv6Addr::LOCALHOST.into())),
        _ => None,
    };
    let answers = data.map(|data| Record::from_rdata(ask.name.clone(), TTL, data)).into_iter().collect();
    Some(Forwarded { rcode: ResponseCode::NoError, answers, authorities: Vec::new(), stale: false, authentic: false })
}

/// The query sent upstream for `ask`, and the length of its question: RD, the client's CD,
/// and an OPT with DO set (RFC 4035 §3.2.1) and our payload size.
fn upstream_query(ask: &Ask) -> Result<(Vec<u8>, usize), ProtoError> {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.metadata.checking_disabled = ask.checking_disabled;
    message.add_query(Query::query(ask.name.clone(), ask.qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(UPSTREAM_PAYLOAD).set_version(0).set_dnssec_ok(true);
    message.set_edns(edns);
    let bytes = message.to_vec()?;
    let question_len = bytes.len().saturating_sub(HEADER_LEN + OPT_LEN);
    Ok((bytes, question_len))
}

/// What an upstream's reply says: an answer (NOERROR, NXDOMAIN), or the rcode of a reply that
/// is not one (SERVFAIL, REFUSED, ...). Errs if the reply does not parse.
fn read_reply(bytes: &[u8], trust_ad: bool) -> Result<Result<Forwarded, ResponseCode>, ProtoError> {
    let message = Message::from_vec(bytes)?;
    let rcode = message.metadata.response_code;
    if !matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain) {
        return Ok(Err(rcode));
    }
    let authorities = message.authorities.into_iter().filter(kept_in_authority).collect();
    Ok(Ok(Forwarded {
        rcode,
        answers: message.answers,
        authorities,
        stale: false,
        authentic: trust_ad && message.metadata.authentic_data,
    }))
}

/// The authority records an answer keeps: the SOA of a negative answer (RFC 2308 §3), the
/// NSEC / NSEC3 proofs (RFC 4035 §3.1.3), and the RRSIGs over them. Referral NS records and
/// the like are the upstream's business.
fn kept_in_authority(record: &Record) -> bool {
    let proof = |rtype: RecordType| matches!(rtype, RecordType::SOA | RecordType::NSEC | RecordType::NSEC3);
    match (&record.data, record.record_type()) {
        (_, rtype) if proof(rtype) => true,
        // Without hickory's dnssec feature an RRSIG is kept as bytes: type covered first.
        (RData::Unknown { rdata, .. }, RecordType::RRSIG) => {
            rdata.anything.first_chunk::<2>().is_some_and(|covered| proof(RecordType::from(u16::from_be_bytes(*covered))))
        }
        _ => false,
    }
}

/// A question under way upstream: who waits for its answer, and the expired answer to give
/// them if the upstreams take longer than `stale_answer_after_ms`, and from when.
struct Flight {
    waiters: Vec<Done>,
    stale: Option<(Arc<Entry>, Instant)>,
}

/// One flight's progress through its route's servers, moved from callback to callback.
struct Attempt {
    ask: Ask,
    key: Key,
    /// The query as encoded (ID replaced on each send), and its question's length.
    query: (Vec<u8>, usize),
    /// The servers to try, in order.
    servers: Vec<Arc<Server>>,
    trust_ad: bool,
    route: Name,
    /// Index of the server being asked, and how many times it has been.
    next: usize,
    tries: usize,
    /// Asked over TCP after a truncated answer.
    tcp: bool,
    deadline: Instant,
    name_hash: u64,
    /// Its slot of `max_in_flight`.
    _permit: OwnedSemaphorePermit,
}

/// The name of a cache key, for its route (the key holds the lowercase wire name after three
/// bytes of type and CD).
fn key_name(key: &Key) -> &[u8] {
    let bytes: &[u8] = std::borrow::Borrow::borrow(key);
    bytes.get(3..).unwrap_or_default()
}

impl Route {
    fn new(
        domain: Name,
        upstreams: &[Upstream],
        trust_ad: bool,
        config: &ForwardConfig,
        system: &mut Option<Vec<SocketAddr>>,
    ) -> Result<Self, ForwardError> {
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for upstream in upstreams {
            match upstream {
                Upstream::Addr(addr) => addrs.push(*addr),
                Upstream::System => {
                    if system.is_none() {
                        *system = Some(system_nameservers()?);
                    }
                    addrs.extend(system.iter().flatten());
                }
            }
        }
        addrs.dedup();
        let timeout = Duration::from_millis(config.timeout_ms);
        let servers = addrs
            .iter()
            .map(|&addr| Arc::new(Server { exchange: Exchange::new(addr), timeout, attempts: config.attempts.max(1), stats: UpstreamStats::new(addr) }))
            .collect();
        Ok(Self { domain, upstreams: addrs, trust_ad, servers })
    }

    /// The servers to ask, in config order: those not marked down (and one marked down whose
    /// backoff has passed, if this flight is the one to probe it). When every server is down,
    /// all of them anyway — being down never switches a route off — and `true`. One name's
    /// failure changes nothing here: only being marked down does ([`super::health`]).
    fn in_order(&self, now_ms: u64) -> (Vec<Arc<Server>>, bool) {
        let up: Vec<Arc<Server>> = self.servers.iter().filter(|s| s.stats.usable(now_ms)).cloned().collect();
        match up.is_empty() && !self.servers.is_empty() {
            true => (self.servers.clone(), true),
            false => (up, false),
        }
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::{
        op::MessageType,
        rr::rdata::{A, CNAME, SOA},
    };

    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    #[test]
    fn the_upstream_query_sets_do_and_passes_cd() {
        for cd in [false, true] {
            let ask = Ask { name: name("WWW.example."), qtype: RecordType::AAAA, checking_disabled: cd };
            let (bytes, question_len) = upstream_query(&ask).expect("encodes");
            let message = Message::from_vec(&bytes).expect("parses");
            assert!(message.metadata.recursion_desired);
            assert_eq!(message.metadata.checking_disabled, cd);
            let edns = message.edns.expect("OPT");
            assert!(edns.flags().dnssec_ok);
            assert_eq!(edns.max_payload(), UPSTREAM_PAYLOAD);
            assert_eq!(&bytes[HEADER_LEN..HEADER_LEN + question_len], b"\x03WWW\x07example\x00\x00\x1c\x00\x01");
        }
    }

    /// Item 3: a CNAME chain ending in NXDOMAIN keeps its CNAME; the SOA and NSEC proofs stay,
    /// NS and additional records go.
    #[test]
    fn replies_keep_the_chain_and_the_proofs() {
        let mut reply = Message::new(1, MessageType::Response, hickory_proto::op::OpCode::Query);
        reply.metadata.response_code = ResponseCode::NXDomain;
        reply.metadata.authentic_data = true;
        reply.add_query(Query::query(name("a.example."), RecordType::A));
        reply.add_answer(Record::from_rdata(name("a.example."), 60, RData::CNAME(CNAME(name("gone.example.")))));
        let soa = SOA::new(name("ns.example."), name("h.example."), 1, 2, 3, 4, 5);
        reply.add_authority(Record::from_rdata(name("example."), 60, RData::SOA(soa)));
        reply.add_authority(Record::from_rdata(name("example."), 60, RData::NS(hickory_proto::rr::rdata::NS(name("ns.example.")))));
        let rrsig = |covered: RecordType| {
            let mut bytes = u16::from(covered).to_be_bytes().to_vec();
            bytes.extend_from_slice(&[8, 2, 0, 0, 0, 60]);
            RData::Unknown { code: RecordType::RRSIG, rdata: hickory_proto::rr::rdata::NULL::with(bytes) }
        };
        reply.add_authority(Record::from_rdata(name("example."), 60, rrsig(RecordType::SOA)));
        reply.add_authority(Record::from_rdata(name("example."), 60, rrsig(RecordType::NS)));
        reply.add_additional(Record::from_rdata(name("ns.example."), 60, RData::A(A(Ipv4Addr::new(192, 0, 2, 1)))));
        let bytes = reply.to_vec().expect("encodes");
        let answer = read_reply(&bytes, true).expect("parses").expect("an answer");
        assert_eq!(answer.rcode, ResponseCode::NXDomain);
        assert_eq!(answer.answers.len(), 1, "the CNAME stays");
        let kept: Vec<RecordType> = answer.authorities.iter().map(Record::record_type).collect();
        assert_eq!(kept, [RecordType::SOA, RecordType::RRSIG], "SOA and its RRSIG; not NS nor the RRSIG over NS");
        assert!(answer.authentic, "trusted route");
        assert!(!read_reply(&bytes, false).expect("parses").expect("answer").authentic, "untrusted route: AD dropped");
        reply.metadata.response_code = ResponseCode::ServFail;
        assert_eq!(read_reply(&reply.to_vec().expect("encodes"), true).expect("parses").err(), Some(ResponseCode::ServFail));
    }

    /// A forwarder first asked from another runtime — as the refresh loop, which runs on one of
    /// its own and ends first on shutdown, may ask it — keeps its sockets, their readers and its
    /// sweeper in the runtime it was made in: once that other runtime is gone, queries are
    /// still answered (they were not: the readers had died with it, and every query waited out
    /// its deadline).
    #[test]
    fn a_forwarder_first_asked_from_another_runtime_answers_once_that_runtime_is_gone() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = server.local_addr().expect("addr");
        server.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let answering = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            for _ in 0..2 {
                let Ok((len, from)) = server.recv_from(&mut buf) else { return };
                let query = Message::from_vec(&buf[..len]).expect("parses");
                let mut reply = Message::new(query.metadata.id, MessageType::Response, hickory_proto::op::OpCode::Query);
                let question = query.queries[0].clone();
                let owner = question.name().clone();
                reply.add_query(question);
                reply.add_answer(Record::from_rdata(owner, 60, RData::A(A(Ipv4Addr::new(192, 0, 2, 7)))));
                server.send_to(&reply.to_vec().expect("encodes"), from).expect("answer");
            }
        });
        let home = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let config = ForwardConfig { upstreams: vec![crate::config::Upstream::Addr(addr)], deadline_ms: 2000, ..ForwardConfig::default() };
        let forwarder = home.block_on(async { Arc::new(Forwarder::new(&config).expect("forwarder")) });
        let other = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let first = other.block_on(forwarder.forward(&Ask::new(name("first.example."), RecordType::A)));
        assert_eq!((first.rcode, first.answers.len()), (ResponseCode::NoError, 1));
        drop(other);
        // Bounded: with its sweeper gone too, a query nobody reads would never end.
        let ask = Ask::new(name("second.example."), RecordType::A);
        let second = home.block_on(async { tokio::time::timeout(Duration::from_secs(10), forwarder.forward(&ask)).await });
        let second = second.expect("the query ended");
        assert_eq!((second.rcode, second.answers.len()), (ResponseCode::NoError, 1), "answered, not timed out");
        answering.join().expect("server");
    }

    #[test]
    fn plain_clients_lose_only_the_authenticating_records() {
        let rrsig = Record::from_rdata(
            name("a.example."),
            60,
            RData::Unknown { code: RecordType::RRSIG, rdata: hickory_proto::rr::rdata::NULL::with(vec![0, 1]) },
        );
        let a = Record::from_rdata(name("a.example."), 60, RData::A(A(Ipv4Addr::new(192, 0, 2, 1))));
        assert!(!for_plain_client(&rrsig, RecordType::A));
        assert!(for_plain_client(&rrsig, RecordType::RRSIG), "asked for by type");
        assert!(for_plain_client(&a, RecordType::A));
    }
}
