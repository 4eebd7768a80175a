//! One query in, one response out: the DNS duties (ARCHITECTURE.md, "Answer rules" and the
//! protocol duties after it) in one place.
//!
//! [`Handler::handle`] is synchronous. It parses the packet, applies the allow list and the
//! protocol checks, and answers owned names straight from the snapshot — so the UDP loop can
//! reply without spawning a task. A name that is not ours becomes a [`ForwardJob`] (holding a
//! slot of the in-flight bound) that [`Handler::forward`] completes asynchronously.
//!
//! Duties, in the order they are checked:
//! - not a query (QR=1), or shorter than a header → dropped (no reflection);
//! - unparsable → FORMERR; client outside the allow list → REFUSED;
//! - opcode other than QUERY → NOTIMP (RFC 1035 §4.1.1), whatever the sections hold;
//! - not exactly one question → FORMERR; EDNS version above 0 → BADVERS (RFC 6891 §6.1.3);
//! - class CH: `version.bind` / `version.server` and `id.server` / `hostname.bind` TXT
//!   answer `server.version` and `server.identity` (RFC 4892); other CH names → REFUSED;
//! - class other than IN → REFUSED;
//! - everything else is the answer engine's ([`crate::answer`]): its plan is encoded here, or,
//!   for a name not owned (or an owned CNAME leading out), forwarded — from the cache when
//!   the target's answer is there.
//!
//! Every response echoes the question bytes as sent (0x20 case) and, when the query had
//! EDNS, an OPT with our payload size and the query's DO bit (RFC 3225 §3). A UDP response
//! that does not fit the client's buffer is replaced by an empty TC=1 response that still
//! carries the OPT (hickory drops it).
//!
//! Every reply says how it was made ([`Served`]: type, rcode, path), and [`Handler::observe`]
//! turns that into metrics and, when asked for, a sampled query log line.
//!
//! Before all that, [`super::fast`] gets the first look: a plain query for an owned name
//! with a pre-encoded answer, or for a forwarded name in the answer cache, is answered by
//! copying bytes. Everything it declines comes here, to the full path.

use std::{
    iter,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Instant,
};

use arc_swap::ArcSwap;
use hickory_proto::{
    op::{Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, ResponseCode},
    rr::{
        DNSClass, Name, RData, Record, RecordType,
        rdata::{
            TXT,
            opt::{EdnsCode, EdnsOption, NSIDPayload},
        },
    },
    serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder},
};
use hickory_server::{net::xfer::Protocol, server::Request, zone_handler::MessageResponseBuilder};

use crate::{
    config::Config,
    dns::{
        acl::Acl,
        fast::{CLASSIC_UDP_PAYLOAD, PlainQuery},
        cache::Entry,
        forwarder::{Ask, Forwarded, Forwarder, for_plain_client},
        ratelimit::{RateLimiter, Verdict},
    },
    answer::{self, Draw, Question},
    metrics::{Limited, Metrics, QueryPath},
    name_key::{key_from_wire, name_key},
    prepared::HEADER_LEN,
    querylog::QueryLog,
    snapshot::SharedSnapshot,
};

/// The transport a query came over: it decides how large a response may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP: the response must fit the client's buffer, else TC=1.
    Udp,
    /// TCP: up to 65535 bytes.
    Tcp,
    /// DNS over TLS (RFC 7858): TCP's framing and sizes inside TLS.
    Tls,
    /// DNS over HTTPS (RFC 8484): one message per HTTP exchange, up to 65535 bytes.
    Https,
}

impl Transport {
    /// Whether answers may take 65535 bytes (every transport but UDP: RFC 7766 §8, RFC 7858
    /// §3.3, RFC 8484 §6).
    pub fn is_stream(self) -> bool {
        self != Self::Udp
    }

    /// What hickory's request parser is told: TCP for every stream transport.
    fn protocol(self) -> Protocol {
        if self.is_stream() { Protocol::Tcp } else { Protocol::Udp }
    }
}

/// The handler the listeners use, swapped whole when the config is reloaded.
pub type SharedHandler = Arc<ArcSwap<Handler>>;

/// What a reply was: the labels it is counted under, and what the query log says of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Served {
    /// The question's type; `None` when the query could not be parsed.
    pub qtype: Option<RecordType>,
    /// The response code sent.
    pub rcode: ResponseCode,
    /// How the answer was made.
    pub path: QueryPath,
}

/// Where an answered query came from and what it was sent, for [`Handler::observe`].
#[derive(Clone, Copy)]
pub struct Seen<'a> {
    /// The client.
    pub src: SocketAddr,
    /// How it asked.
    pub transport: Transport,
    /// Its question section as sent.
    pub question: &'a [u8],
    /// The reply's bytes.
    pub reply: &'a [u8],
}

/// What to do with a packet.
pub enum Outcome {
    /// Send back the bytes [`Handler::handle`] wrote.
    Reply(Served),
    /// Ask upstream, then send [`Handler::forward`]'s bytes back.
    Forward(Box<ForwardJob>),
    /// Send nothing (not a query at all).
    Drop,
}

/// A query that needs an upstream answer.
pub struct ForwardJob {
    query: JobQuery,
    transport: Transport,
    /// CNAME records already followed through owned names.
    chain: Vec<Record>,
    /// What to ask upstream: the query name, or the end of `chain`.
    ask: Ask,
    /// When the job was made, for the latency it is counted with.
    started: Instant,
}

/// The query a forward answers: parsed by the full path, or, from the fast path, the packet of
/// a plain query — answered, when the upstream's answer is cached, by copying its prepared
/// bytes as a cache hit is, without hickory parsing the query or encoding the response.
enum JobQuery {
    Parsed(Request),
    Plain { packet: Box<[u8]>, src: SocketAddr },
}

impl JobQuery {
    fn src(&self) -> SocketAddr {
        match self {
            Self::Parsed(request) => request.src(),
            Self::Plain { src, .. } => *src,
        }
    }

    /// The question section as sent, for the query log.
    fn question(&self) -> &[u8] {
        match self {
            Self::Parsed(request) => request.queries.as_bytes(),
            Self::Plain { packet, .. } => packet.get(HEADER_LEN..).unwrap_or_default(),
        }
    }
}

/// What the fast path made of a plain query.
enum Fast {
    /// Answered from prepared bytes.
    Answered(Served),
    /// A name to forward that the cache does not hold.
    Miss,
    /// Not its to answer: the full path's.
    Declined,
}

/// Answers queries from the snapshot and the forwarder.
pub struct Handler {
    snapshot: SharedSnapshot,
    forwarder: Arc<Forwarder>,
    acl: Acl,
    /// The OPT we answer EDNS queries with: version 0, our payload size.
    edns: Edns,
    /// The same with the DO bit, for queries that set it (RFC 3225 §3: DO is copied).
    edns_do: Edns,
    /// Both with our NSID (RFC 5001), for queries that ask for it; `None` without an identity.
    edns_nsid: Option<(Edns, Edns)>,
    /// The plain OPTs, encoded, for the fast path.
    opt: Vec<u8>,
    opt_do: Vec<u8>,
    /// Answers to CH TXT `version.bind` and `id.server`; `None` refuses them.
    version: Option<String>,
    identity: Option<String>,
    metrics: Arc<Metrics>,
    /// The query log, and one query in how many it gets; `None`: no query log.
    query_log: Option<(Arc<QueryLog>, u64)>,
    /// Queries seen by the sampler.
    query_seq: AtomicU64,
    /// Where prefetches run; `None` outside a runtime (no prefetch).
    runtime: Option<tokio::runtime::Handle>,
    /// Most forwards one TCP connection may have in flight.
    tcp_forwards: usize,
    /// Per-client limits over UDP; shared with the next handler when a reload leaves
    /// `[rate_limit]` as it was, so a flooder's empty bucket stays empty.
    limits: Arc<RateLimiter>,
}

impl Handler {
    /// A handler answering from `snapshot` and forwarding through `forwarder`, with the
    /// client access, limits, identity and query log of `config`, counting into `metrics`.
    pub fn new(snapshot: SharedSnapshot, forwarder: Arc<Forwarder>, metrics: Arc<Metrics>, config: &Config) -> Self {
        let mut edns = Edns::new();
        edns.set_max_payload(config.server.max_udp_payload).set_version(0);
        let mut edns_do = edns.clone();
        edns_do.set_dnssec_ok(true);
        // An OPT without options is eleven fixed bytes: encoding it cannot fail.
        let opt = edns.to_bytes().unwrap_or_default();
        let opt_do = edns_do.to_bytes().unwrap_or_default();
        let nonempty = |s: String| Some(s).filter(|s| !s.is_empty());
        let identity = nonempty(config.server.identity.clone().unwrap_or_else(host_name));
        let edns_nsid = identity.as_ref().and_then(|identity| {
            // RFC 5001 §2.3: the payload is opaque bytes; ours is the identity's text.
            let payload = NSIDPayload::new(identity.as_bytes()).inspect_err(|error| tracing::warn!(%error, "server.identity cannot be an NSID")).ok()?;
            let with = |e: &Edns| {
                let mut e = e.clone();
                e.options_mut().insert(EdnsOption::NSID(payload.clone()));
                e
            };
            Some((with(&edns), with(&edns_do)))
        });
        Self {
            snapshot,
            forwarder,
            acl: Acl::new(config.server.allow.clone()),
            edns,
            edns_do,
            edns_nsid,
            opt,
            opt_do,
            version: nonempty(config.server.version.clone().unwrap_or_else(|| format!("hubdns {}", env!("CARGO_PKG_VERSION")))),
            identity,
            metrics,
            query_log: None,
            query_seq: AtomicU64::new(0),
            runtime: crate::dns::upstream::home_runtime(),
            tcp_forwards: config.server.tcp_forwards_per_connection,
            limits: Arc::new(RateLimiter::new(&config.rate_limit)),
        }
    }

    /// This handler, writing one query in `log.query_sample` to `log` (opened by the caller
    /// for `log.queries`: a reload that keeps the target keeps the writer).
    pub fn with_query_log(mut self, log: Option<Arc<QueryLog>>, config: &Config) -> Self {
        self.query_log = log.map(|log| (log, u64::from(config.log.query_sample.max(1))));
        self
    }

    /// The query log this handler writes to, if any.
    pub fn query_log(&self) -> Option<&Arc<QueryLog>> {
        self.query_log.as_ref().map(|(log, _)| log)
    }

    /// This handler, taking over `previous`'s rate-limit buckets (same `[rate_limit]`).
    pub fn keeping_limits_of(mut self, previous: &Handler) -> Self {
        self.limits = previous.limits.clone();
        self
    }

    /// Whether a UDP query from `src` may be answered (per-client rate limit); counted.
    pub fn admit(&self, src: SocketAddr, now: Instant) -> Verdict {
        let verdict = self.limits.check(src.ip(), now);
        match verdict {
            Verdict::Allow => {}
            Verdict::Drop => self.metrics.record_limited(Limited::Dropped),
            Verdict::Slip => self.metrics.record_limited(Limited::Slipped),
        }
        verdict
    }

    /// Whether a UDP REFUSED answer to `src` may be sent (its own, smaller budget); counted.
    pub fn admit_refused(&self, src: SocketAddr, now: Instant) -> bool {
        let allowed = self.limits.allow_refused(src.ip(), now);
        if !allowed {
            self.metrics.record_limited(Limited::RefusedDropped);
        }
        allowed
    }

    /// Writes an empty TC=1 answer to `packet` into `out` (a rate-limited client is told to
    /// retry over TCP); `false` if the packet is no query worth answering.
    pub fn truncated(&self, packet: &[u8], src: SocketAddr, out: &mut Vec<u8>) -> bool {
        if packet.len() < HEADER_LEN || packet[2] & 0x80 != 0 {
            return false;
        }
        let Ok(request) = Request::from_bytes(packet.to_vec(), src, Protocol::Udp) else { return false };
        if !question_echoes_safely(&request) {
            return false;
        }
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = true;
        self.write_truncated(&request, metadata, out);
        true
    }

    /// Whether `ip` may use this server at all: a TCP connection from elsewhere is closed at
    /// accept, before it holds a connection slot.
    pub fn allows(&self, ip: std::net::IpAddr) -> bool {
        self.acl.allows(ip)
    }

    /// Most forwards one TCP connection may have in flight (`server.tcp_forwards_per_connection`).
    pub fn tcp_forwards_per_connection(&self) -> usize {
        self.tcp_forwards
    }

    /// The forwarder this handler sends to.
    pub fn forwarder(&self) -> &Arc<Forwarder> {
        &self.forwarder
    }

    /// Counts a reply in the metrics and, if sampled, hands it to the query log. `question`
    /// is the query's question section as sent and `reply` the bytes sent back (both only
    /// copied when a line is written); `started` is when the query arrived.
    pub fn observe(&self, served: Served, seen: Seen<'_>, started: Instant) {
        let latency = started.elapsed();
        self.metrics.record(served.qtype, served.rcode, served.path, latency);
        let Some((log, every)) = &self.query_log else { return };
        if *every > 1 && !self.query_seq.fetch_add(1, Relaxed).is_multiple_of(*every) {
            return;
        }
        // Resolver's query_timestamp is when the query arrived, not when it was answered.
        let now = std::time::SystemTime::now();
        let asked = now.checked_sub(latency).unwrap_or(now);
        log.log(asked, seen, served.rcode, served.qtype);
    }

    /// Counts a packet dropped without a reply.
    pub fn observe_drop(&self) {
        self.metrics.record_dropped();
    }

    /// Counts a UDP answer the kernel would not send.
    pub fn observe_send_failed(&self) {
        self.metrics.record_send_failed();
    }

    /// Decides what `packet` from `src` gets; a reply is written to `out`. Never blocks.
    pub fn handle(&self, packet: &[u8], src: SocketAddr, transport: Transport, out: &mut Vec<u8>) -> Outcome {
        if let Some(query) = PlainQuery::parse(packet) {
            match self.fast(&query, src, transport, out) {
                Fast::Answered(served) => return Outcome::Reply(served),
                Fast::Miss => {
                    if let Some(job) = self.plain_forward(&query, packet, src, transport) {
                        return Outcome::Forward(job);
                    }
                }
                Fast::Declined => {}
            }
        }
        self.handle_full(packet, src, transport, out)
    }

    /// The fast path: answers `query` from pre-encoded bytes if it can, else returns `None`.
    #[cfg(test)]
    fn answer_prepared(&self, query: &PlainQuery<'_>, src: SocketAddr, transport: Transport, out: &mut Vec<u8>) -> Option<Served> {
        match self.fast(query, src, transport, out) {
            Fast::Answered(served) => Some(served),
            Fast::Miss | Fast::Declined => None,
        }
    }

    fn fast(&self, query: &PlainQuery<'_>, src: SocketAddr, transport: Transport, out: &mut Vec<u8>) -> Fast {
        if !self.acl.allows(src.ip()) {
            return Fast::Declined;
        }
        match self.try_prepared(query, src, transport, out) {
            Ok(path) => {
                // The prepared answers are NOERROR or NXDOMAIN: the header's low rcode bits say which.
                let rcode = ResponseCode::from_low(out.get(3).map_or(0, |b| b & 0x0F));
                Fast::Answered(Served { qtype: Some(query.qtype), rcode, path })
            }
            Err(fast) => fast,
        }
    }

    /// A forward job for a plain query the cache does not hold; `None` (the full path then
    /// answers SERVFAIL) when every `max_in_flight` slot is taken.
    fn plain_forward(&self, query: &PlainQuery<'_>, packet: &[u8], src: SocketAddr, transport: Transport) -> Option<Box<ForwardJob>> {
        let name = Name::read(&mut BinDecoder::new(packet.get(HEADER_LEN..)?)).ok()?;
        let ask = Ask { name, qtype: query.qtype, checking_disabled: query.checking_disabled() };
        let query = JobQuery::Plain { packet: packet.into(), src };
        Some(Box::new(ForwardJob { query, transport, chain: Vec::new(), ask, started: Instant::now() }))
    }

    fn try_prepared(&self, query: &PlainQuery<'_>, src: SocketAddr, transport: Transport, out: &mut Vec<u8>) -> Result<QueryPath, Fast> {
        let limit = query.limit(transport.is_stream(), self.edns.max_payload());
        let opt = if query.dnssec_ok { &self.opt_do } else { &self.opt };
        let snapshot = self.snapshot.load();
        let question = Question { key: query.key(), qtype: query.qtype, recursion_desired: query.recursion_desired(), client: Some(src.ip()) };
        let plan = answer::plan(&snapshot, question, Draw::Random);
        if let Some(prepared) = plan.prepared() {
            let answered = query.respond(prepared, plan.order(), 0, opt, limit, out);
            if answered && let Some(choice) = plan.az_choice() {
                self.metrics.count_az(choice);
            }
            return answered.then_some(QueryPath::Local).ok_or(Fast::Declined);
        }
        let answer::Outcome::Forward { target: None, .. } = plan.outcome else { return Err(Fast::Declined) };
        let now = Instant::now();
        let Some(entry) = self.forwarder.cached(query.key(), query.qtype, query.checking_disabled(), now) else {
            return Err(Fast::Miss);
        };
        let answered = query.respond(entry.prepared(query.dnssec_ok), None, entry.age(now), opt, limit, out);
        if answered && let Some(runtime) = &self.runtime {
            // The UDP threads are not the runtime's: a prefetch is sent from within it.
            let _runtime = runtime.enter();
            self.forwarder.prefetch_if_due(&entry, now);
        }
        answered.then_some(QueryPath::Cache).ok_or(Fast::Declined)
    }

    /// The full path: every duty, every kind of answer.
    fn handle_full(&self, packet: &[u8], src: SocketAddr, transport: Transport, out: &mut Vec<u8>) -> Outcome {
        // Shorter than a header, or a response (QR, the top bit of byte 2): never answered, so
        // hubdns cannot be used to reflect traffic.
        if packet.len() < HEADER_LEN || packet[2] & 0x80 != 0 {
            return Outcome::Drop;
        }
        let request = match Request::from_bytes(packet.to_vec(), src, transport.protocol()) {
            Ok(request) => request,
            Err(error) => {
                let rcode = if self.acl.allows(src.ip()) { ResponseCode::FormErr } else { ResponseCode::Refused };
                tracing::debug!(%src, %error, %rcode, "unparsable query");
                let path = if rcode == ResponseCode::Refused { QueryPath::Refused } else { QueryPath::Local };
                return match Header::read(&mut BinDecoder::new(packet)) {
                    Ok(header) => {
                        header_only(&header.metadata, rcode, out);
                        Outcome::Reply(Served { qtype: None, rcode, path })
                    }
                    Err(_) => Outcome::Drop,
                };
            }
        };
        // An opcode other than QUERY is not implemented, whatever its sections hold.
        if request.metadata.op_code != OpCode::Query {
            if !self.acl.allows(src.ip()) {
                header_only(&request.metadata, ResponseCode::Refused, out);
                return Outcome::Reply(Served { qtype: None, rcode: ResponseCode::Refused, path: QueryPath::Refused });
            }
            self.not_implemented(&request, out);
            return Outcome::Reply(Served { qtype: None, rcode: ResponseCode::NotImp, path: QueryPath::Local });
        }
        // The question is echoed byte for byte; a compression pointer in it that leads outside
        // the question section (into the header, or forward) would point at other bytes in our
        // reply and corrupt it. No real client writes one.
        // So would echoing a question section of many questions (hickory writes it whole, past
        // any size limit): a query of other than one question gets a bare header.
        if !question_echoes_safely(&request) {
            let rcode = if self.acl.allows(src.ip()) { ResponseCode::FormErr } else { ResponseCode::Refused };
            let path = if rcode == ResponseCode::Refused { QueryPath::Refused } else { QueryPath::Local };
            header_only(&request.metadata, rcode, out);
            return Outcome::Reply(Served { qtype: None, rcode, path });
        }
        if !self.acl.allows(src.ip()) {
            return self.reply(out, &request, transport, ResponseCode::Refused, false, &[], &[]);
        }
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            return self.reply(out, &request, transport, ResponseCode::BADVERS, false, &[], &[]);
        }
        let [query] = request.queries.queries() else {
            // Checked above; answered the same way should that check ever change.
            header_only(&request.metadata, ResponseCode::FormErr, out);
            return Outcome::Reply(Served { qtype: None, rcode: ResponseCode::FormErr, path: QueryPath::Local });
        };
        let qtype = query.query_type();
        if query.query_class() == DNSClass::CH {
            return self.chaos(out, &request, transport, query.original().name(), qtype);
        }
        if query.query_class() != DNSClass::IN {
            return self.reply(out, &request, transport, ResponseCode::Refused, false, &[], &[]);
        }
        // The question's own bytes are the key, lowercased; hickory's parse already checked them.
        let key = key_from_wire(request.queries.as_bytes()).unwrap_or_else(|| name_key(query.name()));
        let snapshot = self.snapshot.load();
        let question = Question { key: &key, qtype, recursion_desired: request.metadata.recursion_desired, client: Some(src.ip()) };
        let plan = answer::plan(&snapshot, question, Draw::Random);
        let qname = query.original().name();
        let answer::Outcome::Forward { target, .. } = plan.outcome else {
            if let Some(choice) = plan.az_choice() {
                self.metrics.count_az(choice);
            }
            let answers = plan.answers(qname);
            return self.reply(out, &request, transport, plan.rcode(), plan.authoritative(), &answers, plan.authority());
        };
        let chain = plan.answers(qname).into_owned();
        let ask = Ask { name: target.unwrap_or(qname).clone(), qtype, checking_disabled: request.metadata.checking_disabled };
        let now = Instant::now();
        // From the cache or the failure cache, if it can be: an owned CNAME's outside target,
        // or a query the fast path could not copy for (too big for the client, NSID, ANY).
        if let Some(settled) = self.forwarder.answer_now(&ask, now) {
            let path = if settled.stale { QueryPath::Stale } else { QueryPath::Cache };
            self.encode_forwarded(&request, transport, &chain, &settled, out);
            return Outcome::Reply(Served { qtype: Some(qtype), rcode: settled.rcode, path });
        }
        Outcome::Forward(Box::new(ForwardJob { query: JobQuery::Parsed(request), transport, chain, ask, started: Instant::now() }))
    }

    /// Sends a forward job's question upstream; `reply` gets the encoded response when the
    /// answer comes, on whichever thread settles it, and says whether it could send it (a
    /// refused send is counted, as the reply is). Must run inside the runtime; never blocks.
    pub fn start_forward(self: Arc<Self>, job: Box<ForwardJob>, reply: impl FnOnce(Vec<u8>) -> bool + Send + 'static) {
        let forwarder = self.forwarder.clone();
        let ask = job.ask.clone();
        forwarder.start(
            ask,
            Box::new(move |landed| {
                let forwarded = &landed.answer;
                let mut out = Vec::with_capacity(512);
                let copied = match (&job.query, &landed.entry) {
                    (JobQuery::Plain { packet, .. }, Some(entry)) => self.copy_answer(packet, job.transport, entry, &mut out),
                    _ => false,
                };
                if !copied {
                    match &job.query {
                        JobQuery::Parsed(request) => self.encode_forwarded(request, job.transport, &job.chain, forwarded, &mut out),
                        JobQuery::Plain { packet, src } => {
                            match Request::from_bytes(packet.to_vec(), *src, job.transport.protocol()) {
                                Ok(request) => self.encode_forwarded(&request, job.transport, &job.chain, forwarded, &mut out),
                                // The fast path reads only the framing; hickory refuses some
                                // option contents (a malformed client subnet, say), as the full
                                // path would have: FORMERR, header only.
                                Err(error) => {
                                    tracing::debug!(%error, "a plain query did not parse for its reply");
                                    if let Ok(header) = Header::read(&mut BinDecoder::new(packet)) {
                                        header_only(&header.metadata, ResponseCode::FormErr, &mut out);
                                    }
                                }
                            }
                        }
                    }
                }
                let path = if forwarded.stale { QueryPath::Stale } else { QueryPath::Forwarded };
                let served = Served { qtype: Some(job.ask.qtype), rcode: forwarded.rcode, path };
                let seen = Seen { src: job.query.src(), transport: job.transport, question: job.query.question(), reply: &out };
                self.observe(served, seen, job.started);
                if !out.is_empty() && !reply(out) {
                    self.observe_send_failed();
                }
            }),
        );
    }

    /// [`Handler::start_forward`], awaited: the encoded response.
    pub async fn forward(self: Arc<Self>, job: Box<ForwardJob>) -> Vec<u8> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.start_forward(job, move |bytes| {
            // A caller that went away is no failed send: nothing was sent.
            let _ = tx.send(bytes);
            true
        });
        // The forwarder tells every question its answer; should that ever fail, nothing is sent.
        rx.await.unwrap_or_default()
    }

    /// The reply to the plain query `packet` by copying the answer just cached, as a cache hit
    /// is answered; `false` if it does not fit (the full encoder then truncates properly).
    fn copy_answer(&self, packet: &[u8], transport: Transport, entry: &Entry, out: &mut Vec<u8>) -> bool {
        let Some(query) = PlainQuery::parse(packet) else { return false };
        let limit = query.limit(transport.is_stream(), self.edns.max_payload());
        let opt = if query.dnssec_ok { &self.opt_do } else { &self.opt };
        query.respond(entry.prepared(query.dnssec_ok), None, 0, opt, limit, out)
    }

    /// Encodes an upstream's answer, after the owned CNAMEs of `chain` that led to it. AA
    /// speaks for the query name (RFC 1035 §4.1.1): set when an owned CNAME led here. AD only
    /// as RFC 6840 §5.8 allows: the upstream is trusted for it, and the client set DO or AD.
    /// Without DO, the authenticating records go (RFC 4035 §3.2.1).
    fn encode_forwarded(&self, request: &Request, transport: Transport, chain: &[Record], forwarded: &Forwarded, out: &mut Vec<u8>) {
        let dnssec_ok = request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
        let qtype = request.queries.queries().first().map_or(RecordType::A, |q| q.query_type());
        let keep = |r: &&Record| dnssec_ok || for_plain_client(r, qtype);
        // AD vouches for every RRset of the answer (RFC 4035 §3.2.3): never with an owned,
        // unsigned CNAME in front.
        let flags = Flags {
            authoritative: !chain.is_empty(),
            authentic: forwarded.authentic && chain.is_empty() && (dnssec_ok || request.metadata.authentic_data),
        };
        let answers = chain.iter().chain(forwarded.answers.iter().filter(keep));
        let authorities = forwarded.authorities.iter().filter(keep);
        self.encode(request, transport, forwarded.rcode, flags, answers, authorities, out);
    }

    /// Answers a CH-class query: the server's version and identity (RFC 4892), nothing else.
    fn chaos(&self, out: &mut Vec<u8>, request: &Request, transport: Transport, name: &Name, qtype: RecordType) -> Outcome {
        let asked = name.to_lowercase().to_ascii();
        let text = match asked.trim_end_matches('.') {
            "version.bind" | "version.server" => self.version.as_deref(),
            "id.server" | "hostname.bind" => self.identity.as_deref(),
            _ => None,
        };
        let Some(text) = text else {
            return self.reply(out, request, transport, ResponseCode::Refused, false, &[], &[]);
        };
        if !matches!(qtype, RecordType::TXT | RecordType::ANY) {
            return self.reply(out, request, transport, ResponseCode::NoError, true, &[], &[]);
        }
        let mut record = Record::from_rdata(name.clone(), 0, RData::TXT(TXT::new(vec![text.to_owned()])));
        record.dns_class = DNSClass::CH;
        self.reply(out, request, transport, ResponseCode::NoError, true, &[record], &[])
    }

    #[allow(clippy::too_many_arguments)] // the parts of a response, named at each call
    fn reply(
        &self,
        out: &mut Vec<u8>,
        request: &Request,
        transport: Transport,
        rcode: ResponseCode,
        authoritative: bool,
        answers: &[Record],
        authorities: &[Record],
    ) -> Outcome {
        self.encode(request, transport, rcode, Flags { authoritative, authentic: false }, answers, authorities, out);
        let qtype = request.queries.queries().first().map(|q| q.query_type());
        let path = if rcode == ResponseCode::Refused { QueryPath::Refused } else { QueryPath::Local };
        Outcome::Reply(Served { qtype, rcode, path })
    }

    /// Encodes a response into `out`, truncating it properly for UDP when it does not fit.
    #[allow(clippy::too_many_arguments)] // the parts of a response, named at each call
    fn encode<'r>(
        &self,
        request: &Request,
        transport: Transport,
        rcode: ResponseCode,
        flags: Flags,
        answers: impl IntoIterator<Item = &'r Record, IntoIter: Send> + Send + 'r,
        authorities: impl IntoIterator<Item = &'r Record, IntoIter: Send> + Send + 'r,
        out: &mut Vec<u8>,
    ) {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = rcode;
        metadata.authoritative = flags.authoritative;
        metadata.authentic_data = flags.authentic;
        metadata.recursion_available = true;
        let edns = self.response_edns(request);
        let limit = match (transport.is_stream(), &request.edns) {
            (true, _) => u16::MAX,
            (false, None) => CLASSIC_UDP_PAYLOAD,
            (false, Some(_)) => request.max_payload().min(self.edns.max_payload()),
        };

        out.clear();
        let mut encoder = BinEncoder::new(out);
        encoder.set_max_size(limit);
        let response = MessageResponseBuilder::new(&request.queries, edns).build(
            metadata,
            answers,
            authorities,
            iter::empty(),
            iter::empty(),
        );
        match response.destructive_emit(&mut encoder) {
            // hickory copies the question section without checking the size limit: check it.
            Ok(info) if !info.truncation && out.len() <= usize::from(limit) => return,
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "response did not encode whole; truncating"),
        }
        if transport.is_stream() {
            // Over TCP only a message above 64 KiB fails to fit: say so rather than send half.
            return header_only(&metadata, ResponseCode::ServFail, out);
        }
        // Did not fit: an empty TC=1 answer, OPT kept, so the client retries over TCP.
        self.write_truncated(request, metadata, out);
    }

    /// NOTIMP to a message of an opcode hubdns does not implement (RFC 1035 §4.1.1), as BIND
    /// answers it: the header with QR and the opcode, no question echoed (its sections may
    /// mean anything under that opcode), no RD, CD or RA, and our OPT if it had EDNS.
    fn not_implemented(&self, request: &Request, out: &mut Vec<u8>) {
        let mut response = Message::new(request.metadata.id, MessageType::Response, request.metadata.op_code);
        response.metadata.response_code = ResponseCode::NotImp;
        if let Some(edns) = self.response_edns(request) {
            response.set_edns(edns.clone());
        }
        out.clear();
        match response.to_vec() {
            Ok(bytes) => out.extend(bytes),
            Err(error) => {
                tracing::warn!(%error, "cannot encode a NOTIMP response");
                header_only(&request.metadata, ResponseCode::NotImp, out);
            }
        }
    }

    /// The OPT a response to `request` carries: none without EDNS; ours, with the DO bit
    /// copied from the query (RFC 3225 §3), and our NSID if the query asked for it (RFC 5001).
    fn response_edns(&self, request: &Request) -> Option<&Edns> {
        let edns = request.edns.as_ref()?;
        let dnssec_ok = edns.flags().dnssec_ok;
        // Only clients that may use the server learn its identity.
        let nsid = edns.options().get(EdnsCode::NSID).is_some() && self.acl.allows(request.src().ip());
        Some(match (&self.edns_nsid, nsid, dnssec_ok) {
            (Some((_, with_do)), true, true) => with_do,
            (Some((plain, _)), true, false) => plain,
            (_, _, true) => &self.edns_do,
            (_, _, false) => &self.edns,
        })
    }

    /// Writes an empty TC=1 answer to `request` (with our OPT if it had EDNS) into `out`.
    fn write_truncated(&self, request: &Request, mut metadata: Metadata, out: &mut Vec<u8>) {
        metadata.truncation = true;
        out.clear();
        let edns = self.response_edns(request);
        let truncated = MessageResponseBuilder::new(&request.queries, edns).build_no_records(metadata);
        if let Err(error) = truncated.destructive_emit(&mut BinEncoder::new(out)) {
            tracing::warn!(%error, "cannot encode even a truncated response");
            header_only(&metadata, ResponseCode::ServFail, out);
        }
    }
}

/// The header bits a response sets beyond the query's.
#[derive(Clone, Copy)]
struct Flags {
    /// AA: the answer is ours.
    authoritative: bool,
    /// AD: a trusted upstream validated it.
    authentic: bool,
}

/// Whether `request`'s question section can be echoed byte for byte into a response: exactly
/// one question, whose compression pointers stay inside it.
fn question_echoes_safely(request: &Request) -> bool {
    request.queries.queries().len() == 1 && pointers_stay_in_question(request.queries.as_bytes())
}

/// Whether every compression pointer in `question` (the question section as sent, which
/// starts at offset 12 of the message) points backwards into the question section itself.
fn pointers_stay_in_question(question: &[u8]) -> bool {
    let mut at = 0;
    while at < question.len() {
        // One name: labels until the root or a pointer, then type and class.
        loop {
            let Some(&len) = question.get(at) else { return false };
            if len & 0xC0 == 0xC0 {
                let Some(&low) = question.get(at + 1) else { return false };
                let target = (usize::from(len & 0x3F) << 8) | usize::from(low);
                if target < HEADER_LEN || target >= HEADER_LEN + at {
                    return false;
                }
                at += 2;
                break;
            }
            at += 1 + usize::from(len);
            if len == 0 {
                break;
            }
        }
        at += 4;
    }
    at == question.len()
}

/// This machine's host name, for `id.server`.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer we own.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match ok {
        true => String::from_utf8_lossy(&buf[..len]).into_owned(),
        false => "hubdns".to_owned(),
    }
}

/// A response of just a header, for queries too broken to echo, written to `out`.
fn header_only(request: &Metadata, rcode: ResponseCode, out: &mut Vec<u8>) {
    let mut metadata = Metadata::response_from_request(request);
    metadata.response_code = rcode;
    metadata.recursion_available = true;
    let header = Header { metadata, counts: HeaderCounts::default() };
    out.clear();
    // Encoding twelve fixed bytes into a Vec cannot fail.
    out.extend(header.to_bytes().unwrap_or_default());
}

#[cfg(test)]
mod tests {
    //! The fast path against the full path: for every shape of query the fast path takes, both
    //! must give the same response (names compared case-insensitively, as DNS does).

    use hickory_proto::{
        op::{Message, Query},
        rr::rdata::{A, AAAA},
    };

    use super::*;
    use crate::metrics::rcode_name;
    use crate::{
        config::{Config, ForwardConfig, Upstream},
        dns::forwarder::Forwarded,
        assemble::build_snapshot,
    };

    const RECORDS: &str = include_str!("../../tests/fixtures/owned.toml");

    fn handler() -> Handler {
        let config = Config::parse(RECORDS, "test.toml").expect("valid");
        let (snapshot, dropped) = build_snapshot(&config, &[]);
        assert!(dropped.is_empty(), "{dropped:?}");
        let forward = ForwardConfig {
            upstreams: vec![Upstream::Addr("127.0.0.1:9".parse().expect("addr"))],
            ..ForwardConfig::default()
        };
        let forwarder = Arc::new(Forwarder::new(&forward).expect("forwarder"));
        let mut config = config;
        config.server.allow = vec!["127.0.0.0/8".parse().expect("net")];
        config.server.identity = Some("hub-a".into());
        Handler::new(Arc::new(ArcSwap::from_pointee(snapshot)), forwarder, Arc::default(), &config)
    }

    fn packet(name: &str, qtype: RecordType, edns: Option<u16>, rd: bool) -> Vec<u8> {
        let mut message = Message::query();
        message.metadata.id = 0x4242;
        message.metadata.recursion_desired = rd;
        message.metadata.checking_disabled = true;
        message.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
        if let Some(payload) = edns {
            let mut e = Edns::new();
            e.set_max_payload(payload);
            message.set_edns(e);
        }
        message.to_vec().expect("encodes")
    }

    const CLIENT: &str = "127.0.0.1:5000";

    /// Both paths' responses to `packet`, decoded; `None` for the fast path if it declined,
    /// and for the full path if it forwards.
    fn both(handler: &Handler, packet: &[u8], transport: Transport) -> (Option<Message>, Option<Message>) {
        let src = CLIENT.parse().expect("addr");
        let mut fast = Vec::new();
        let fast = PlainQuery::parse(packet)
            .filter(|q| handler.answer_prepared(q, src, transport, &mut fast).is_some())
            .map(|_| Message::from_vec(&fast).expect("fast response decodes"));
        let mut full = Vec::new();
        let full = match handler.handle_full(packet, src, transport, &mut full) {
            Outcome::Reply(_) => Some(Message::from_vec(&full).expect("full response decodes")),
            Outcome::Forward(_) => None,
            Outcome::Drop => panic!("a query was dropped"),
        };
        (fast, full)
    }

    #[tokio::test]
    async fn fast_answers_equal_full_answers() {
        let handler = handler();
        let cases = [
            ("svc.example.com.", RecordType::A),
            ("SVC.eXample.COM.", RecordType::A),
            ("svc.example.com.", RecordType::TXT),
            ("svc.example.com.", RecordType::MX), // NODATA
            ("api.example.com.", RecordType::A),
            ("api.example.com.", RecordType::AAAA), // NODATA for a flattened alias
            ("a.wild.example.", RecordType::AAAA),
            ("Deep.Er.Wild.Example.", RecordType::AAAA),
            ("alias.target.example.", RecordType::CNAME),
        ];
        for (name, qtype) in cases {
            for edns in [None, Some(512), Some(4096)] {
                for rd in [true, false] {
                    for transport in [Transport::Udp, Transport::Tcp] {
                        let packet = packet(name, qtype, edns, rd);
                        let (fast, full) = both(&handler, &packet, transport);
                        let fast = fast.unwrap_or_else(|| panic!("{name} {qtype}: fast path declined"));
                        assert_eq!(Some(&fast), full.as_ref(), "{name} {qtype} edns={edns:?} rd={rd} {transport:?}");
                        assert!(fast.queries[0].name().eq_case(&Name::from_ascii(name).expect("name")), "0x20 echoed");
                    }
                }
            }
        }
    }

    /// A query with EDNS and the DO bit as given.
    fn packet_do(name: &str, qtype: RecordType, dnssec_ok: bool) -> Vec<u8> {
        let mut message = Message::from_vec(&packet(name, qtype, Some(1232), true)).expect("decodes");
        let mut edns = message.edns.clone().expect("edns");
        edns.set_dnssec_ok(dnssec_ok);
        message.set_edns(edns);
        message.to_vec().expect("encodes")
    }

    /// Issue 14 item 13: every name and type of the fixture, through the fast path, the full
    /// path and `explain`: the fast path answers as the full path does, and explain reports the
    /// rcode and the answer records the full path sends.
    #[tokio::test]
    async fn every_name_and_type_answers_alike_on_both_paths_and_in_explain() {
        let handler = handler();
        let names = [
            "svc.example.com.", "SVC.Example.COM.", "nope.svc.example.com.", "a.b.nope.svc.example.com.", "a.wild.example.",
            "Deep.Er.Wild.Example.", "wild.example.", "*.wild.example.", "x.*.wild.example.", "x.mx.example.", "alias.target.example.",
            "www.example.com.", "out.example.com.", "big.example.com.", "api.example.com.", "example.com.", "not.owned.test.",
        ];
        let types = [
            RecordType::A, RecordType::AAAA, RecordType::TXT, RecordType::MX, RecordType::CNAME, RecordType::SOA, RecordType::NS,
            RecordType::SRV, RecordType::PTR, RecordType::CAA, RecordType::DS, RecordType::DNSKEY, RecordType::RRSIG, RecordType::ANY,
        ];
        let snapshot = handler.snapshot.load();
        for name in names {
            for qtype in types {
                let (fast, full) = both(&handler, &packet(name, qtype, Some(4096), true), Transport::Tcp);
                let explained = crate::explain::explain(&snapshot, handler.forwarder(), name, qtype, None).expect("explained");
                let Some(full) = full else {
                    assert!(explained.forward.is_some(), "{name} {qtype}: forwarded, so explain names the upstream");
                    assert!(fast.is_none(), "{name} {qtype}: fast path answered a forward");
                    continue;
                };
                if let Some(fast) = fast {
                    assert_eq!(fast, full, "{name} {qtype}: fast and full paths differ");
                }
                assert_eq!(explained.rcode.as_deref(), Some(rcode_name(full.metadata.response_code).as_str()), "{name} {qtype}: {explained:?}");
                assert_eq!(explained.records.len(), full.answers.len(), "{name} {qtype}: {explained:?}");
            }
        }
    }

    /// Issue 14 item 11. RFC 3225 §3: the DO bit is copied into the response's OPT, on both
    /// paths; without it the response's OPT has DO clear.
    #[tokio::test]
    async fn the_do_bit_is_copied_on_both_paths() {
        let handler = handler();
        for dnssec_ok in [true, false] {
            let (fast, full) = both(&handler, &packet_do("svc.example.com.", RecordType::A, dnssec_ok), Transport::Udp);
            let fast = fast.expect("plain query: fast path");
            assert_eq!(fast.edns.as_ref().map(|e| e.flags().dnssec_ok), Some(dnssec_ok));
            assert_eq!(Some(fast), full);
            let (_, nx) = both(&handler, &packet_do("nope.svc.example.com.", RecordType::A, dnssec_ok), Transport::Udp);
            assert_eq!(nx.expect("answered").edns.map(|e| e.flags().dnssec_ok), Some(dnssec_ok), "full path");
        }
    }

    /// Issue 14 item 11. RFC 1035 §4.1.1: an opcode the server does not implement is NOTIMP,
    /// whatever the question section holds (an UPDATE or DSO message may have none). As BIND
    /// answers: QR and the opcode only, no question, no RD, CD or RA.
    #[tokio::test]
    async fn unknown_opcodes_get_notimp_even_without_a_question() {
        let handler = handler();
        let src = CLIENT.parse().expect("addr");
        // ID 7, opcode 5 (UPDATE) with RD, no question; then opcode 6 (DSO) with CD and one question.
        let no_question = b"\x00\x07\x29\x00\x00\x00\x00\x00\x00\x00\x00\x00";
        let mut with_question = packet("svc.example.com.", RecordType::A, None, false);
        with_question[2] = 6 << 3;
        for (packet, question) in [(&no_question[..], false), (&with_question[..], true)] {
            let mut out = Vec::new();
            assert!(matches!(handler.handle(packet, src, Transport::Udp, &mut out), Outcome::Reply(_)));
            let reply = Message::from_vec(&out).expect("parses");
            assert_eq!(reply.metadata.response_code, ResponseCode::NotImp, "{packet:?}");
            assert!(reply.queries.is_empty(), "question: {question}");
            assert_eq!(reply.metadata.op_code, OpCode::from_u8((packet[2] >> 3) & 0x0F));
            let m = &reply.metadata;
            assert!(!m.recursion_desired && !m.checking_disabled && !m.recursion_available && !m.authoritative);
        }
    }

    /// Issue 14 item 10: an owned CNAME to an outside name is answered from the cache once the
    /// target's answer is there, CNAME first; it goes upstream only when it is not.
    #[tokio::test]
    async fn an_owned_cname_to_an_outside_name_is_answered_from_the_cache() {
        let handler = handler();
        let target = Name::from_ascii("elsewhere.example.net.").expect("name");
        let (_, full) = both(&handler, &packet("out.example.com.", RecordType::A, None, true), Transport::Udp);
        assert!(full.is_none(), "not cached yet: forwarded");
        let answers = vec![Record::from_rdata(target.clone(), 300, RData::A(A::new(192, 0, 2, 7)))];
        let forwarded = Forwarded { rcode: ResponseCode::NoError, answers, authorities: Vec::new(), stale: false, authentic: false };
        handler.forwarder.cache_for_test(&target, RecordType::A, true, &forwarded, Instant::now() - std::time::Duration::from_secs(10));
        let mut out = Vec::new();
        let src = CLIENT.parse().expect("addr");
        let Outcome::Reply(served) = handler.handle(&packet("out.example.com.", RecordType::A, None, true), src, Transport::Udp, &mut out) else {
            panic!("answered from the cache")
        };
        assert_eq!(served.path, QueryPath::Cache);
        let reply = Message::from_vec(&out).expect("parses");
        let answers: Vec<(RecordType, u32)> = reply.answers.iter().map(|r| (r.record_type(), r.ttl)).collect();
        assert_eq!(answers, [(RecordType::CNAME, 60), (RecordType::A, 290)], "the chain, then the cached answer counted down");
        assert!(reply.metadata.authoritative, "AA speaks for the query name, which is ours");
    }

    /// Issue 14 item 12: ANY for a name hubdns does not own is the upstream's question.
    #[tokio::test]
    async fn any_for_a_name_not_owned_is_forwarded() {
        let handler = handler();
        let (_, full) = both(&handler, &packet("not.owned.test.", RecordType::ANY, None, true), Transport::Udp);
        assert!(full.is_none(), "forwarded, not answered with an invented HINFO");
        let (_, norec) = both(&handler, &packet("not.owned.test.", RecordType::ANY, None, false), Transport::Udp);
        assert_eq!(norec.expect("answered").metadata.response_code, ResponseCode::Refused);
    }

    #[tokio::test]
    async fn the_fast_path_declines_what_it_cannot_copy() {
        let handler = handler();
        let cases = [
            ("nope.svc.example.com.", RecordType::A, "NXDOMAIN: the SOA is another name's"),
            ("a.wild.example.", RecordType::TXT, "NODATA at a wildcard: SOA of the covered name"),
            ("x.mx.example.", RecordType::MX, "wildcard data holding names"),
            ("alias.target.example.", RecordType::A, "a CNAME to follow"),
            ("svc.example.com.", RecordType::SOA, "the SOA itself"),
            ("svc.example.com.", RecordType::ANY, "ANY"),
            ("not.owned.test.", RecordType::A, "a forward not in the cache"),
        ];
        for (name, qtype, why) in cases {
            let (fast, _) = both(&handler, &packet(name, qtype, Some(1232), true), Transport::Udp);
            assert!(fast.is_none(), "{why}: {name} {qtype}");
        }
        // Outside the allow list: the full path refuses.
        let mut out = Vec::new();
        let query = packet("svc.example.com.", RecordType::A, None, true);
        let plain = PlainQuery::parse(&query).expect("plain");
        assert!(handler.answer_prepared(&plain, "192.0.2.1:53".parse().expect("addr"), Transport::Udp, &mut out).is_none());
    }

    #[test]
    fn question_pointers_must_point_back_into_the_question() {
        let a = b"\x01a\x07example\x00\x00\x01\x00\x01";
        assert!(pointers_stay_in_question(a));
        let mut back = a.to_vec();
        back.extend_from_slice(b"\x01b\xc0\x0e\x00\x01\x00\x01"); // b + pointer to "example" at 14
        assert!(pointers_stay_in_question(&back));
        let mut header = a.to_vec();
        header.extend_from_slice(b"\xc0\x03\x00\x01\x00\x01"); // into the header
        assert!(!pointers_stay_in_question(&header));
        let forward = b"\xc0\x20\x00\x01\x00\x01"; // past itself
        assert!(!pointers_stay_in_question(forward));
    }

    /// Found by the fuzz target: a second question whose name points into the header.
    #[tokio::test]
    async fn a_question_pointing_into_the_header_gets_a_formerr_that_parses() {
        let handler = handler();
        let packet = b"\x00\x02\x01\x00\x00\x02\x00\x00\x00\x00\x00\x00\x01e\x07example\x00\x00\x01\x00\x01\xc0\x03\x00\x1c\x00\x01";
        let mut out = Vec::new();
        let src = CLIENT.parse().expect("addr");
        assert!(matches!(handler.handle(packet, src, Transport::Udp, &mut out), Outcome::Reply(_)));
        let reply = Message::from_vec(&out).expect("the reply parses");
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    }

    /// A rate-limited query slipped a TC=1 answer goes through the same echo check.
    #[tokio::test]
    async fn slipped_answers_echo_only_safe_questions() {
        let handler = handler();
        let src = CLIENT.parse().expect("addr");
        let mut out = Vec::new();
        assert!(handler.truncated(&packet("svc.example.com.", RecordType::A, Some(1232), true), src, &mut out));
        let reply = Message::from_vec(&out).expect("parses");
        assert!(reply.metadata.truncation && reply.answers.is_empty() && reply.edns.is_some());
        let pointer_into_header = b"\x00\x02\x01\x00\x00\x02\x00\x00\x00\x00\x00\x00\x01e\x07example\x00\x00\x01\x00\x01\xc0\x03\x00\x1c\x00\x01";
        assert!(!handler.truncated(pointer_into_header, src, &mut out), "not echoed: dropped");
    }

    #[tokio::test]
    async fn large_answers_fall_back_to_truncation() {
        let config = Config::parse(
            &format!(
                "[[records]]\nname = \"big.example\"\ntype = \"A\"\nvalues = [{}]\n",
                (0..40).map(|i| format!("\"10.0.1.{i}\"")).collect::<Vec<_>>().join(", ")
            ),
            "big.toml",
        )
        .expect("valid");
        let handler = handler();
        handler.snapshot.store(Arc::new(build_snapshot(&config, &[]).0));
        // 40 A records need 12 + 17 + 40 * 16 = 669 bytes: more than 512, less than 1232.
        let (fast, full) = both(&handler, &packet("big.example.", RecordType::A, None, true), Transport::Udp);
        assert!(fast.is_none(), "too large for 512: the full path truncates");
        assert!(full.expect("answered").metadata.truncation);
        let (fast, _) = both(&handler, &packet("big.example.", RecordType::A, Some(1232), true), Transport::Udp);
        assert_eq!(fast.expect("fits 1232").answers.len(), 40);
    }

    #[tokio::test]
    async fn cached_forwards_count_down() {
        let handler = handler();
        let name = Name::from_ascii("www.example.net.").expect("name");
        let answers = vec![
            Record::from_rdata(name.clone(), 300, RData::A(A::new(192, 0, 2, 1))),
            Record::from_rdata(name.clone(), 300, RData::AAAA(AAAA::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))),
        ];
        let forwarded = Forwarded { rcode: ResponseCode::NoError, answers, authorities: Vec::new(), stale: false, authentic: false };
        let stored = Instant::now() - std::time::Duration::from_secs(100);
        handler.forwarder.cache_for_test(&name, RecordType::A, true, &forwarded, stored);
        let (fast, _) = both(&handler, &packet("WWW.example.NET.", RecordType::A, Some(1232), true), Transport::Udp);
        let fast = fast.expect("cached");
        assert!(!fast.metadata.authoritative && fast.metadata.recursion_available);
        assert_eq!(fast.answers.len(), 2);
        assert!(fast.answers.iter().all(|r| r.ttl == 200), "{:?}", fast.answers);
        // RD=0: a cache hit is not ours to give; the full path refuses.
        let (fast, full) = both(&handler, &packet("www.example.net.", RecordType::A, None, false), Transport::Udp);
        assert!(fast.is_none());
        assert_eq!(full.expect("answered").metadata.response_code, ResponseCode::Refused);
    }
}
