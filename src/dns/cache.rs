//! The forwarder's answer cache: recent upstream answers, pre-encoded, their TTLs counting down.
//!
//! hickory-resolver keeps its own cache, but a hit there still costs a task, an async lookup,
//! a clone of the cached message and an encode. This cache sits in front of it and holds the
//! final answer for a question as [`Prepared`] bytes, so the fast path answers a repeated
//! forwarded question the way it answers an owned name: by copying, with each TTL lowered by
//! the seconds the answer has spent here. Positive answers live for their smallest TTL,
//! negative ones (NXDOMAIN, NODATA) for their SOA's TTL or MINIMUM, whichever is smaller
//! (RFC 2308 §5); both at most a day. SERVFAIL and answers without a TTL are not kept.
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

use crate::{dns::forwarder::Forwarded, name_key::name_key, prepared::Prepared};

/// Longest any answer is kept, whatever its TTL says.
const MAX_TTL: u32 = 86_400;

/// Longest key: two bytes of type and a name of at most 255.
const MAX_KEY_LEN: usize = 2 + 255;

/// Upstream answers, ready to copy.
pub struct AnswerCache {
    entries: Cache<Box<[u8]>, Arc<Entry>, EntryBytes>,
    /// How long an expired answer is kept for serve-stale.
    stale_window: Duration,
}

/// One cached answer.
pub struct Entry {
    /// The answer and authority records, TTLs as received.
    pub prepared: Prepared,
    /// The question it answers, for a prefetch.
    pub name: Name,
    /// Its type.
    pub qtype: RecordType,
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

impl Weighter<Box<[u8]>, Arc<Entry>> for EntryBytes {
    fn weight(&self, key: &Box<[u8]>, entry: &Arc<Entry>) -> u64 {
        let bytes = key.len() + entry.prepared.len() + entry.name.len() + std::mem::size_of::<Entry>() + 64;
        u64::try_from(bytes).unwrap_or(u64::MAX)
    }
}

impl Entry {
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
        Self { entries: Cache::with_weighter(entries.max(1), max_bytes.max(1), EntryBytes), stale_window }
    }

    /// The live answer for `key` (a lowercase name key) and `qtype`, if there is one.
    pub fn get(&self, key: &[u8], qtype: RecordType, now: Instant) -> Option<Arc<Entry>> {
        let mut buf = [0u8; MAX_KEY_LEN];
        let lookup = cache_key(&mut buf, key, qtype)?;
        self.entries.get(lookup).filter(|entry| now < entry.expires)
    }

    /// An expired answer for `key` / `qtype` still inside the serve-stale window.
    pub fn get_stale(&self, key: &[u8], qtype: RecordType, now: Instant) -> Option<Arc<Entry>> {
        let mut buf = [0u8; MAX_KEY_LEN];
        let lookup = cache_key(&mut buf, key, qtype)?;
        self.entries.get(lookup).filter(|entry| entry.expires <= now && now < entry.stale_until)
    }

    /// Keeps `forwarded`, the upstream's answer for `name` / `qtype`, if it may be cached.
    pub fn insert(&self, name: &Name, qtype: RecordType, forwarded: &Forwarded, now: Instant) {
        let Some(ttl) = cacheable_ttl(forwarded) else { return };
        let prepared = match Prepared::build(name, qtype, forwarded.rcode, false, &forwarded.answers, &forwarded.authorities) {
            Ok(prepared) => prepared,
            Err(error) => {
                tracing::debug!(%name, %qtype, %error, "upstream answer not cached");
                return;
            }
        };
        let mut buf = [0u8; MAX_KEY_LEN];
        let Some(key) = cache_key(&mut buf, &name_key(name), qtype) else { return };
        let expires = now + Duration::from_secs(u64::from(ttl));
        let entry = Entry {
            prepared,
            name: name.clone(),
            qtype,
            stored: now,
            expires,
            stale_until: expires + self.stale_window,
            prefetching: AtomicBool::new(false),
        };
        self.entries.insert(key.into(), Arc::new(entry));
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

/// How long `forwarded` may be cached, or `None` if it must not be.
fn cacheable_ttl(forwarded: &Forwarded) -> Option<u32> {
    let ttl = match forwarded.rcode {
        ResponseCode::NoError if !forwarded.answers.is_empty() => forwarded.answers.iter().map(|r| r.ttl).min()?,
        ResponseCode::NoError | ResponseCode::NXDomain => {
            let soa = forwarded.authorities.iter().find(|r| r.record_type() == RecordType::SOA)?;
            match &soa.data {
                RData::SOA(data) => soa.ttl.min(data.minimum),
                _ => return None,
            }
        }
        _ => return None,
    };
    (ttl > 0).then_some(ttl.min(MAX_TTL))
}

/// Type, then name key, in `buf`.
fn cache_key<'b>(buf: &'b mut [u8; MAX_KEY_LEN], key: &[u8], qtype: RecordType) -> Option<&'b [u8]> {
    let len = 2 + key.len();
    let out = buf.get_mut(..len)?;
    out[..2].copy_from_slice(&u16::from(qtype).to_be_bytes());
    out[2..].copy_from_slice(key);
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::rr::{Record, rdata};

    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn a(ttl: u32) -> Record {
        Record::from_rdata(name("www.example."), ttl, RData::A(rdata::A(Ipv4Addr::new(192, 0, 2, 1))))
    }

    fn soa(ttl: u32, minimum: u32) -> Record {
        let data = rdata::SOA::new(name("ns.example."), name("h.example."), 1, 2, 3, 4, minimum);
        Record::from_rdata(name("example."), ttl, RData::SOA(data))
    }

    fn forwarded(rcode: ResponseCode, answers: Vec<Record>, authorities: Vec<Record>) -> Forwarded {
        Forwarded { rcode, answers, authorities, stale: false }
    }

    #[test]
    fn what_is_kept_and_for_how_long() {
        assert_eq!(cacheable_ttl(&forwarded(ResponseCode::NoError, vec![a(300), a(60)], vec![])), Some(60));
        assert_eq!(cacheable_ttl(&forwarded(ResponseCode::NoError, vec![a(10 * MAX_TTL)], vec![])), Some(MAX_TTL));
        assert_eq!(cacheable_ttl(&forwarded(ResponseCode::NXDomain, vec![], vec![soa(900, 30)])), Some(30));
        assert_eq!(cacheable_ttl(&forwarded(ResponseCode::NoError, vec![], vec![soa(20, 300)])), Some(20));
        assert_eq!(cacheable_ttl(&forwarded(ResponseCode::NoError, vec![], vec![])), None, "NODATA without SOA");
        assert_eq!(cacheable_ttl(&forwarded(ResponseCode::ServFail, vec![], vec![])), None);
        assert_eq!(cacheable_ttl(&forwarded(ResponseCode::NoError, vec![a(0)], vec![])), None);
    }

    #[test]
    fn entries_age_and_expire() {
        let cache = AnswerCache::new(10, 1 << 20, Duration::from_secs(3600));
        let start = Instant::now();
        let www = name("WWW.Example.");
        cache.insert(&www, RecordType::A, &forwarded(ResponseCode::NoError, vec![a(60)], vec![]), start);
        let key = name_key(&www);
        let hit = cache.get(&key, RecordType::A, start + Duration::from_secs(15)).expect("live");
        assert_eq!(hit.age(start + Duration::from_secs(15)), 15);
        assert!(cache.get(&key, RecordType::AAAA, start).is_none(), "keyed by type");
        assert!(cache.get(&key, RecordType::A, start + Duration::from_secs(60)).is_none(), "expired");
        assert!(cache.get_stale(&key, RecordType::A, start + Duration::from_secs(59)).is_none(), "not stale while fresh");
        let stale = cache.get_stale(&key, RecordType::A, start + Duration::from_secs(60)).expect("stale");
        assert_eq!((stale.name.to_ascii(), stale.qtype), ("WWW.Example.".to_owned(), RecordType::A));
        assert!(cache.get_stale(&key, RecordType::A, start + Duration::from_secs(60 + 3600)).is_none(), "past the window");
    }

    #[test]
    fn a_hit_in_the_last_tenth_of_the_ttl_asks_for_one_prefetch() {
        let cache = AnswerCache::new(10, 1 << 20, Duration::ZERO);
        let start = Instant::now();
        let www = name("www.example.");
        cache.insert(&www, RecordType::A, &forwarded(ResponseCode::NoError, vec![a(100)], vec![]), start);
        let entry = cache.get(&name_key(&www), RecordType::A, start).expect("live");
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
            cache.insert(&owner, RecordType::A, &forwarded(ResponseCode::NoError, records, vec![]), start);
        }
        assert!(cache.bytes() <= 20_000, "{} bytes", cache.bytes());
        assert!(cache.len() < 200 && !cache.is_empty(), "{} entries", cache.len());
    }
}
