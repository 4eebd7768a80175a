//! The forwarder's answer cache: recent upstream answers, pre-encoded, their TTLs counting down.
//!
//! It holds the final answer for a question as [`Prepared`] bytes, so the fast path answers a
//! repeated forwarded question the way it answers an owned name: by copying, with each TTL
//! lowered by the seconds the answer has spent here. An answer lives for its smallest TTL —
//! and, when it is negative (NXDOMAIN, NODATA, or a CNAME chain ending in one), no longer than
//! its SOA's TTL or MINIMUM, whichever is smaller (RFC 2308 §5) — at most a day. A negative
//! answer without an SOA, and anything with TTL 0, is not kept.
//!
//! The key is the question: type, CD bit, lowercase name (RFC 4035 §3.2.2: a CD=1 answer may
//! hold data a validating upstream would have refused). DO is not in the key: an entry holds
//! the answer as the upstream gave it, DNSSEC records and all, and a second copy without the
//! authenticating records for clients that did not set DO, when that differs
//! ([`crate::dns::forwarder::for_plain_client`]).
//!
//! Failures are kept apart (RFC 9520 §3.2): a name no upstream could answer is remembered
//! until a given instant, without touching an answer kept for serve-stale.
//!
//! An expired answer is kept a while longer (`forward.serve_stale_secs`, RFC 8767) for the
//! forwarder to fall back on when the upstreams fail; only [`AnswerCache::get_stale`] returns
//! it, never the fast path. An answer asked for in the last tenth of its TTL is marked for
//! prefetch once, so a popular name is refreshed before it expires.
//!
//! Bounded by bytes (`forward.cache_max_bytes`: each entry weighs its encoded answer, its name
//! and its bookkeeping) and sized for `forward.cache_size` entries, evicting with quick_cache's
//! S3-FIFO; keyed by type and lowercase name key.

use std::{
    borrow::Borrow,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use hickory_proto::{
    op::ResponseCode,
    rr::{Name, RData, RecordType},
};
use quick_cache::{Weighter, sync::Cache};

use crate::{
    dns::forwarder::{Forwarded, for_plain_client},
    prepared::Prepared,
};

/// Longest a failure is remembered (RFC 9520 §3.2: at most five minutes).
const MAX_FAILURE: Duration = Duration::from_secs(300);

/// How many times the base period a name that keeps failing is remembered at most.
const FAILURE_BACKOFF: u32 = 4;

/// Longest any answer is kept, whatever its TTL says.
const MAX_TTL: u32 = 86_400;

/// Longest key: two bytes of type, one of CD, and a name of at most 255.
const MAX_KEY_LEN: usize = 3 + 255;

/// A question, as the cache and the forwarder's coalescing know it: type, CD, name key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key(Box<[u8]>);

impl Key {
    /// The key of the name with lowercase wire key `name`, type `qtype`, and the CD bit.
    pub fn new(name: &[u8], qtype: RecordType, checking_disabled: bool) -> Self {
        let mut buf = [0u8; MAX_KEY_LEN];
        Self(key_bytes(&mut buf, name, qtype, checking_disabled).unwrap_or_default().into())
    }
}

impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

/// Upstream answers, ready to copy, and recent failures.
pub struct AnswerCache {
    entries: Cache<Key, Arc<Entry>, EntryBytes>,
    /// Questions no upstream could answer: until when, and for how long that was.
    failures: Cache<Key, (Instant, Duration)>,
    /// How long an expired answer is kept for serve-stale.
    stale_window: Duration,
}

/// One cached answer.
pub struct Entry {
    /// The answer and authority records, TTLs as received, DNSSEC records included.
    full: Prepared,
    /// The same without RRSIG, NSEC and NSEC3, when the answer has any (RFC 4035 §3.2.1).
    plain: Option<Prepared>,
    /// The question it answers, for a prefetch.
    pub name: Name,
    /// Its type.
    pub qtype: RecordType,
    /// Its CD bit.
    pub checking_disabled: bool,
    stored: Instant,
    expires: Instant,
    /// Until when it may be served stale.
    stale_until: Instant,
    /// Set once a prefetch has been asked for.
    prefetching: AtomicBool,
}

/// Weighs an entry by what it holds: the encoded answer, the name, and the fixed parts.
#[derive(Clone)]
struct EntryBytes;

impl Weighter<Key, Arc<Entry>> for EntryBytes {
    fn weight(&self, key: &Key, entry: &Arc<Entry>) -> u64 {
        let plain = entry.plain.as_ref().map_or(0, Prepared::len);
        let bytes = key.0.len() + entry.full.len() + plain + entry.name.len() + std::mem::size_of::<Entry>() + 64;
        u64::try_from(bytes).unwrap_or(u64::MAX)
    }
}

impl Entry {
    /// The answer for a client that set DO (`dnssec_ok`) or not.
    pub fn prepared(&self, dnssec_ok: bool) -> &Prepared {
        match (&self.plain, dnssec_ok) {
            (Some(plain), false) => plain,
            _ => &self.full,
        }
    }

    /// Seconds since the answer was stored: how much to lower its TTLs.
    pub fn age(&self, now: Instant) -> u32 {
        u32::try_from(now.saturating_duration_since(self.stored).as_secs()).unwrap_or(u32::MAX)
    }

    /// True once, for the first hit in the last tenth of its TTL: time to prefetch.
    pub fn wants_prefetch(&self, now: Instant) -> bool {
        let lifetime = self.expires.saturating_duration_since(self.stored);
        let left = self.expires.saturating_duration_since(now);
        left * 10 <= lifetime && !self.prefetching.swap(true, Relaxed)
    }
}

impl AnswerCache {
    /// A cache sized for about `entries` answers, holding at most `max_bytes`, keeping expired
    /// answers for `stale_window` (zero: no serve-stale).
    pub fn new(entries: usize, max_bytes: u64, stale_window: Duration) -> Self {
        Self {
            entries: Cache::with_weighter(entries.max(1), max_bytes.max(1), EntryBytes),
            failures: Cache::new((entries / 8).max(64)),
            stale_window,
        }
    }

    /// The live answer for `key` (see [`Key`]; a slice of its bytes will do), if there is one.
    pub fn get<K: Borrow<[u8]> + ?Sized>(&self, key: &K, now: Instant) -> Option<Arc<Entry>> {
        self.entries.get(key.borrow()).filter(|entry| now < entry.expires)
    }

    /// The live answer for a name key, type and CD bit, looked up without allocating.
    pub fn get_parts(&self, name: &[u8], qtype: RecordType, checking_disabled: bool, now: Instant) -> Option<Arc<Entry>> {
        let mut buf = [0u8; MAX_KEY_LEN];
        self.get(key_bytes(&mut buf, name, qtype, checking_disabled)?, now)
    }

    /// An expired answer for `key` still inside the serve-stale window.
    pub fn get_stale(&self, key: &Key, now: Instant) -> Option<Arc<Entry>> {
        self.entries.get(key).filter(|entry| entry.expires <= now && now < entry.stale_until)
    }

    /// Remembers at `now` that no upstream could answer `key`: for `base`, or, when it failed
    /// again within a period of its last remembering ending, for twice as long as then — at
    /// most [`FAILURE_BACKOFF`] times `base`, and 5 minutes (RFC 9520 §3.2: back off for names
    /// that keep failing; kept short, because a name also fails while a whole upstream is
    /// down, and must answer soon after it is back).
    pub fn fail(&self, key: &Key, now: Instant, base: Duration) {
        let period = match self.failures.get(key) {
            Some((until, period)) if now < until + period => (period * 2).clamp(base, (base * FAILURE_BACKOFF).min(MAX_FAILURE)),
            _ => base,
        };
        self.failures.insert(key.clone(), (now + period, period));
    }

    /// Whether `key` failed and `now` is before the end of its remembering.
    pub fn failed(&self, key: &Key, now: Instant) -> bool {
        self.failures.get(key).is_some_and(|(until, _)| now < until)
    }

    /// Keeps `forwarded`, the upstream's answer to the question `key` (`name`, `qtype`, CD),
    /// if it may be cached. A fresh answer ends a remembered failure.
    pub fn insert(&self, key: &Key, name: &Name, qtype: RecordType, checking_disabled: bool, forwarded: &Forwarded, now: Instant) -> Option<Arc<Entry>> {
        self.failures.remove(key);
        let ttl = cacheable_ttl(forwarded, qtype)?;
        let prepare = |answers: &[hickory_proto::rr::Record], authorities: &[hickory_proto::rr::Record]| {
            let mut prepared = Prepared::build(name, qtype, forwarded.rcode, false, answers, authorities)?;
            prepared.authentic = forwarded.authentic;
            Ok::<_, hickory_proto::ProtoError>(prepared)
        };
        let all = forwarded.answers.iter().chain(&forwarded.authorities);
        let plain = match all.clone().all(|r| for_plain_client(r, qtype)) {
            true => Ok(None),
            false => {
                let keep = |records: &[hickory_proto::rr::Record]| records.iter().filter(|r| for_plain_client(r, qtype)).cloned().collect::<Vec<_>>();
                prepare(&keep(&forwarded.answers), &keep(&forwarded.authorities)).map(Some)
            }
        };
        let prepared = prepare(&forwarded.answers, &forwarded.authorities).and_then(|full| Ok((full, plain?)));
        let (full, plain) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                tracing::debug!(%name, %qtype, %error, "upstream answer not cached");
                return None;
            }
        };
        let expires = now + Duration::from_secs(u64::from(ttl));
        let entry = Entry {
            full,
            plain,
            name: name.clone(),
            qtype,
            checking_disabled,
            stored: now,
            expires,
            stale_until: expires + self.stale_window,
            prefetching: AtomicBool::new(false),
        };
        let entry = Arc::new(entry);
        self.entries.insert(key.clone(), entry.clone());
        Some(entry)
    }

    /// How many answers are cached.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes the entries weigh now.
    pub fn bytes(&self) -> u64 {
        self.entries.weight()
    }

    /// Most bytes kept.
    pub fn capacity_bytes(&self) -> u64 {
        self.entries.capacity()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// How long `forwarded` may be cached, or `None` if it must not be: its smallest TTL, and
/// for a negative answer (NXDOMAIN, or NOERROR without the asked-for data) no longer than
/// its SOA says (RFC 2308 §5), which it must have.
fn cacheable_ttl(forwarded: &Forwarded, qtype: RecordType) -> Option<u32> {
    let negative = match forwarded.rcode {
        ResponseCode::NXDomain => true,
        ResponseCode::NoError => !forwarded.answers.iter().any(|r| r.record_type() == qtype || qtype == RecordType::ANY),
        _ => return None,
    };
    let soa = forwarded.authorities.iter().find_map(|soa| match &soa.data {
        RData::SOA(data) => Some(soa.ttl.min(data.minimum)),
        _ => None,
    });
    let ttl = match (negative, soa) {
        (true, None) => return None,
        (true, Some(soa)) => forwarded.answers.iter().map(|r| r.ttl).fold(soa, u32::min),
        (false, _) => forwarded.answers.iter().map(|r| r.ttl).min()?,
    };
    (ttl > 0).then_some(ttl.min(MAX_TTL))
}

/// Type, CD, then name key, in `buf`.
fn key_bytes<'b>(buf: &'b mut [u8; MAX_KEY_LEN], name: &[u8], qtype: RecordType, checking_disabled: bool) -> Option<&'b [u8]> {
    let len = 3 + name.len();
    let out = buf.get_mut(..len)?;
    out[..2].copy_from_slice(&u16::from(qtype).to_be_bytes());
    out[2] = u8::from(checking_disabled);
    out[3..].copy_from_slice(name);
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::rr::{Record, rdata};

    use super::*;
    use crate::name_key::name_key;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn a(ttl: u32) -> Record {
        Record::from_rdata(name("www.example."), ttl, RData::A(rdata::A(Ipv4Addr::new(192, 0, 2, 1))))
    }

    fn cname(ttl: u32) -> Record {
        Record::from_rdata(name("alias.example."), ttl, RData::CNAME(rdata::CNAME(name("www.example."))))
    }

    fn soa(ttl: u32, minimum: u32) -> Record {
        let data = rdata::SOA::new(name("ns.example."), name("h.example."), 1, 2, 3, 4, minimum);
        Record::from_rdata(name("example."), ttl, RData::SOA(data))
    }

    fn rrsig(owner: &str) -> Record {
        let rdata = rdata::NULL::with(vec![0, 1, 8, 2, 0, 0, 0, 60]);
        Record::from_rdata(name(owner), 60, RData::Unknown { code: RecordType::RRSIG, rdata })
    }

    fn forwarded(rcode: ResponseCode, answers: Vec<Record>, authorities: Vec<Record>) -> Forwarded {
        Forwarded { rcode, answers, authorities, stale: false, authentic: false }
    }

    fn key(n: &Name, qtype: RecordType) -> Key {
        Key::new(&name_key(n), qtype, false)
    }

    #[test]
    fn what_is_kept_and_for_how_long() {
        let ttl = |f: Forwarded| cacheable_ttl(&f, RecordType::A);
        assert_eq!(ttl(forwarded(ResponseCode::NoError, vec![a(300), a(60)], vec![])), Some(60));
        assert_eq!(ttl(forwarded(ResponseCode::NoError, vec![a(10 * MAX_TTL)], vec![])), Some(MAX_TTL));
        assert_eq!(ttl(forwarded(ResponseCode::NXDomain, vec![], vec![soa(900, 30)])), Some(30));
        assert_eq!(ttl(forwarded(ResponseCode::NoError, vec![], vec![soa(20, 300)])), Some(20));
        assert_eq!(ttl(forwarded(ResponseCode::NoError, vec![], vec![])), None, "NODATA without SOA");
        assert_eq!(ttl(forwarded(ResponseCode::ServFail, vec![], vec![])), None);
        assert_eq!(ttl(forwarded(ResponseCode::NoError, vec![a(0)], vec![])), None);
        // A chain ending in NXDOMAIN or NODATA: no longer than the chain, nor than the SOA says.
        assert_eq!(ttl(forwarded(ResponseCode::NXDomain, vec![cname(600)], vec![soa(900, 120)])), Some(120));
        assert_eq!(ttl(forwarded(ResponseCode::NoError, vec![cname(50)], vec![soa(900, 120)])), Some(50));
        assert_eq!(ttl(forwarded(ResponseCode::NoError, vec![cname(50)], vec![])), None, "NODATA after a chain, no SOA");
        assert_eq!(cacheable_ttl(&forwarded(ResponseCode::NoError, vec![cname(50)], vec![]), RecordType::CNAME), Some(50));
    }

    #[test]
    fn entries_age_and_expire() {
        let cache = AnswerCache::new(10, 1 << 20, Duration::from_secs(3600));
        let start = Instant::now();
        let www = name("WWW.Example.");
        let k = key(&www, RecordType::A);
        cache.insert(&k, &www, RecordType::A, false, &forwarded(ResponseCode::NoError, vec![a(60)], vec![]), start);
        let hit = cache.get(&k, start + Duration::from_secs(15)).expect("live");
        assert_eq!(hit.age(start + Duration::from_secs(15)), 15);
        assert!(cache.get_parts(&name_key(&www), RecordType::A, false, start).is_some(), "found by parts");
        assert!(cache.get(&key(&www, RecordType::AAAA), start).is_none(), "keyed by type");
        assert!(cache.get(&Key::new(&name_key(&www), RecordType::A, true), start).is_none(), "keyed by CD");
        assert!(cache.get(&k, start + Duration::from_secs(60)).is_none(), "expired");
        assert!(cache.get_stale(&k, start + Duration::from_secs(59)).is_none(), "not stale while fresh");
        let stale = cache.get_stale(&k, start + Duration::from_secs(60)).expect("stale");
        assert_eq!((stale.name.to_ascii(), stale.qtype), ("WWW.Example.".to_owned(), RecordType::A));
        assert!(cache.get_stale(&k, start + Duration::from_secs(60 + 3600)).is_none(), "past the window");
    }

    #[test]
    fn failures_are_kept_apart_and_end_with_an_answer() {
        let cache = AnswerCache::new(10, 1 << 20, Duration::from_secs(3600));
        let start = Instant::now();
        let www = name("www.example.");
        let k = key(&www, RecordType::A);
        cache.insert(&k, &www, RecordType::A, false, &forwarded(ResponseCode::NoError, vec![a(60)], vec![]), start);
        let five = Duration::from_secs(5);
        cache.fail(&k, start + Duration::from_secs(60), five);
        assert!(cache.failed(&k, start + Duration::from_secs(61)));
        assert!(cache.get_stale(&k, start + Duration::from_secs(61)).is_some(), "the stale answer is still there");
        assert!(!cache.failed(&k, start + Duration::from_secs(65)), "remembered for 5 s");
        // Failing again right after: 10 s, then 20 s; after a quiet spell, 5 s again.
        cache.fail(&k, start + Duration::from_secs(66), five);
        assert!(cache.failed(&k, start + Duration::from_secs(75)) && !cache.failed(&k, start + Duration::from_secs(76)));
        cache.fail(&k, start + Duration::from_secs(77), five);
        assert!(cache.failed(&k, start + Duration::from_secs(96)) && !cache.failed(&k, start + Duration::from_secs(97)));
        cache.fail(&k, start + Duration::from_secs(98), five);
        assert!(!cache.failed(&k, start + Duration::from_secs(118)), "at most four times the base");
        cache.fail(&k, start + Duration::from_secs(500), five);
        assert!(!cache.failed(&k, start + Duration::from_secs(505)), "back to 5 s");
        cache.fail(&k, start + Duration::from_secs(100), five);
        cache.insert(&k, &www, RecordType::A, false, &forwarded(ResponseCode::NoError, vec![a(60)], vec![]), start);
        assert!(!cache.failed(&k, start), "an answer ends the failure");
    }

    #[test]
    fn clients_without_do_get_the_answer_without_dnssec_records() {
        let cache = AnswerCache::new(10, 1 << 20, Duration::ZERO);
        let start = Instant::now();
        let www = name("www.example.");
        let k = key(&www, RecordType::A);
        let signed = forwarded(ResponseCode::NoError, vec![a(60), rrsig("www.example.")], vec![]);
        cache.insert(&k, &www, RecordType::A, false, &signed, start);
        let entry = cache.get(&k, start).expect("cached");
        assert_eq!(entry.prepared(true).answers, 2);
        assert_eq!(entry.prepared(false).answers, 1);
        let unsigned = key(&name("plain.example."), RecordType::A);
        cache.insert(&unsigned, &name("plain.example."), RecordType::A, false, &forwarded(ResponseCode::NoError, vec![a(60)], vec![]), start);
        assert!(cache.get(&unsigned, start).expect("cached").plain.is_none(), "one copy when nothing differs");
    }

    #[test]
    fn a_hit_in_the_last_tenth_of_the_ttl_asks_for_one_prefetch() {
        let cache = AnswerCache::new(10, 1 << 20, Duration::ZERO);
        let start = Instant::now();
        let www = name("www.example.");
        let k = key(&www, RecordType::A);
        cache.insert(&k, &www, RecordType::A, false, &forwarded(ResponseCode::NoError, vec![a(100)], vec![]), start);
        let entry = cache.get(&k, start).expect("live");
        assert!(!entry.wants_prefetch(start + Duration::from_secs(89)), "11 s of 100 left");
        assert!(entry.wants_prefetch(start + Duration::from_secs(91)), "9 s left");
        assert!(!entry.wants_prefetch(start + Duration::from_secs(92)), "once");
    }

    #[test]
    fn the_cache_is_bounded_by_bytes() {
        let cache = AnswerCache::new(1000, 20_000, Duration::ZERO);
        let start = Instant::now();
        let many: Vec<Record> = (0..50).map(|i| Record::from_rdata(name("big.example."), 60, RData::A(rdata::A(Ipv4Addr::new(192, 0, 2, i))))).collect();
        for i in 0..200 {
            let owner = name(&format!("n{i}.example."));
            let records: Vec<Record> = many.iter().map(|r| Record::from_rdata(owner.clone(), r.ttl, r.data.clone())).collect();
            cache.insert(&key(&owner, RecordType::A), &owner, RecordType::A, false, &forwarded(ResponseCode::NoError, records, vec![]), start);
        }
        assert!(cache.bytes() <= 20_000, "{} bytes", cache.bytes());
        assert!(cache.len() < 200 && !cache.is_empty(), "{} entries", cache.len());
    }
}
