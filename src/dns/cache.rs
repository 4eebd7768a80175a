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
//! Bounded by entry count (`forward.cache_size`), evicting with quick_cache's S3-FIFO; keyed by
//! type and lowercase name key.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use hickory_proto::{
    op::ResponseCode,
    rr::{Name, RData, RecordType},
};
use quick_cache::sync::Cache;

use crate::{dns::forwarder::Forwarded, name_key::name_key, prepared::Prepared};

/// Longest any answer is kept, whatever its TTL says.
const MAX_TTL: u32 = 86_400;

/// Longest key: two bytes of type and a name of at most 255.
const MAX_KEY_LEN: usize = 2 + 255;

/// Upstream answers, ready to copy.
pub struct AnswerCache {
    entries: Cache<Box<[u8]>, Arc<Entry>>,
}

/// One cached answer.
pub struct Entry {
    /// The answer and authority records, TTLs as received.
    pub prepared: Prepared,
    stored: Instant,
    expires: Instant,
}

impl Entry {
    /// Seconds since the answer was stored: how much to lower its TTLs.
    pub fn age(&self, now: Instant) -> u32 {
        u32::try_from(now.saturating_duration_since(self.stored).as_secs()).unwrap_or(u32::MAX)
    }
}

impl AnswerCache {
    /// A cache of at most `capacity` answers (0 turns it off).
    pub fn new(capacity: usize) -> Self {
        Self { entries: Cache::new(capacity.max(1)) }
    }

    /// The live answer for `key` (a lowercase name key) and `qtype`, if there is one.
    pub fn get(&self, key: &[u8], qtype: RecordType, now: Instant) -> Option<Arc<Entry>> {
        let mut buf = [0u8; MAX_KEY_LEN];
        let lookup = cache_key(&mut buf, key, qtype)?;
        self.entries.get(lookup).filter(|entry| now < entry.expires)
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
        self.entries.insert(key.into(), Arc::new(Entry { prepared, stored: now, expires }));
    }

    /// How many answers are cached.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Most answers kept.
    pub fn capacity(&self) -> usize {
        usize::try_from(self.entries.capacity()).unwrap_or(usize::MAX)
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
        Forwarded { rcode, answers, authorities }
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
        let cache = AnswerCache::new(10);
        let start = Instant::now();
        let www = name("WWW.Example.");
        cache.insert(&www, RecordType::A, &forwarded(ResponseCode::NoError, vec![a(60)], vec![]), start);
        let key = name_key(&www);
        let hit = cache.get(&key, RecordType::A, start + Duration::from_secs(15)).expect("live");
        assert_eq!(hit.age(start + Duration::from_secs(15)), 15);
        assert!(cache.get(&key, RecordType::AAAA, start).is_none(), "keyed by type");
        assert!(cache.get(&key, RecordType::A, start + Duration::from_secs(60)).is_none(), "expired");
    }
}
