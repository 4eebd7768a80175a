//! Per-client rate limits over UDP: a token bucket per client network.
//!
//! Clients are grouped by network (/24 for IPv4, /56 for IPv6 by default), since one host can
//! use many addresses and a flood's spoofed sources cluster. Each network may ask `qps`
//! queries a second, with bursts up to `burst`. Over the limit a query is dropped — except
//! every `slip`-th, which gets an empty TC=1 answer, so a real client behind a busy network
//! retries over TCP (not limited: TCP cannot be spoofed) and still gets its answer. REFUSED
//! answers have a budget of their own (`refused_qps`), so hubdns cannot be used to reflect
//! REFUSED at a spoofed victim either.
//!
//! The buckets live in a bounded cache (`max_networks`, least recently seen forgotten first),
//! so a flood from a million networks costs a fixed amount of memory. Networks in `exempt`
//! (loopback by default: on-prem resolvers that forward a whole site belong there too) are
//! never limited.

use std::{
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Instant,
};

use ipnet::IpNet;
use quick_cache::sync::Cache;

use crate::config::RateLimitConfig;

/// What to do with a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Answer it.
    Allow,
    /// Send nothing.
    Drop,
    /// Send an empty TC=1 answer: the client may retry over TCP.
    Slip,
}

/// One network's bucket.
struct Bucket {
    /// Tokens left and when they were counted.
    state: Mutex<(f64, Instant)>,
    /// Queries over the limit so far, for the slip count.
    over: AtomicU64,
}

/// A token bucket per client network, with its settings.
struct Buckets {
    buckets: Cache<u128, Arc<Bucket>>,
    /// Tokens per second; 0 turns this limit off.
    rate: f64,
    burst: f64,
}

impl Buckets {
    fn new(rate: u32, burst: u32, networks: usize) -> Self {
        Self { buckets: Cache::new(networks.max(1)), rate: f64::from(rate), burst: f64::from(burst.max(1)) }
    }

    /// Takes a token for `network`; the count of queries over the limit if there was none.
    fn take(&self, network: u128, now: Instant) -> Option<u64> {
        if self.rate == 0.0 {
            return None;
        }
        let bucket = self.buckets.get_or_insert_with(&network, || {
            Ok::<_, ()>(Arc::new(Bucket { state: Mutex::new((self.burst, now)), over: AtomicU64::new(0) }))
        });
        let Ok(bucket) = bucket else { return None };
        let mut state = bucket.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, at) = *state;
        let refilled = (tokens + now.saturating_duration_since(at).as_secs_f64() * self.rate).min(self.burst);
        if refilled >= 1.0 {
            *state = (refilled - 1.0, now);
            return None;
        }
        *state = (refilled, now);
        Some(bucket.over.fetch_add(1, Relaxed) + 1)
    }
}

/// The limits of one handler.
pub struct RateLimiter {
    queries: Buckets,
    refused: Buckets,
    v4_prefix: u8,
    v6_prefix: u8,
    slip: u64,
    exempt: Vec<IpNet>,
}

impl RateLimiter {
    /// The limits `config` sets.
    pub fn new(config: &RateLimitConfig) -> Self {
        Self {
            queries: Buckets::new(config.qps, config.burst, config.max_networks),
            refused: Buckets::new(config.refused_qps, config.refused_qps.max(1), config.max_networks),
            v4_prefix: config.ipv4_prefix,
            v6_prefix: config.ipv6_prefix,
            slip: u64::from(config.slip),
            exempt: config.exempt.clone(),
        }
    }

    /// Whether a query from `client` may be answered now.
    pub fn check(&self, client: IpAddr, now: Instant) -> Verdict {
        if self.queries.rate == 0.0 || self.is_exempt(client) {
            return Verdict::Allow;
        }
        match self.queries.take(self.network(client), now) {
            None => Verdict::Allow,
            Some(over) if self.slip > 0 && over.is_multiple_of(self.slip) => Verdict::Slip,
            Some(_) => Verdict::Drop,
        }
    }

    /// Whether a REFUSED answer to `client` may be sent now.
    pub fn allow_refused(&self, client: IpAddr, now: Instant) -> bool {
        if self.refused.rate == 0.0 || self.is_exempt(client) {
            return true;
        }
        self.refused.take(self.network(client), now).is_none()
    }

    fn is_exempt(&self, client: IpAddr) -> bool {
        self.exempt.iter().any(|net| net.contains(&client))
    }

    /// The client's network as a number: the address with its host bits cleared, IPv4 mapped
    /// into the IPv6 space.
    fn network(&self, client: IpAddr) -> u128 {
        match client {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.v4_prefix)).unwrap_or(0);
                u128::from(u32::from(v4) & mask) | 0xffff_0000_0000
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.v6_prefix)).unwrap_or(0);
                u128::from(v6) & mask
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limiter(qps: u32, burst: u32, slip: u32) -> RateLimiter {
        RateLimiter::new(&RateLimitConfig { qps, burst, slip, exempt: vec!["10.9.0.0/16".parse().unwrap()], ..RateLimitConfig::default() })
    }

    #[test]
    fn a_network_gets_its_burst_then_its_rate_with_every_second_over_slipped() {
        let limits = limiter(10, 5, 2);
        let t0 = Instant::now();
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        let verdicts: Vec<Verdict> = (0..9).map(|_| limits.check(client, t0)).collect();
        use Verdict::*;
        assert_eq!(verdicts, [Allow, Allow, Allow, Allow, Allow, Drop, Slip, Drop, Slip]);
        // A neighbour in the same /24 shares the bucket; another /24 has its own.
        assert_eq!(limits.check("192.0.2.200".parse().unwrap(), t0), Drop);
        assert_eq!(limits.check("192.0.3.7".parse().unwrap(), t0), Allow);
        // 10 per second: after 0.3 s, three more.
        let later = t0 + Duration::from_millis(300);
        let allowed = (0..5).filter(|_| limits.check(client, later) == Allow).count();
        assert_eq!(allowed, 3);
    }

    #[test]
    fn exempt_networks_ipv6_prefixes_and_off() {
        let limits = limiter(1, 1, 0);
        let t0 = Instant::now();
        assert!((0..100).all(|_| limits.check("10.9.3.4".parse().unwrap(), t0) == Verdict::Allow), "exempt");
        assert_eq!(limits.check("2001:db8:0:1::1".parse().unwrap(), t0), Verdict::Allow);
        assert_eq!(limits.check("2001:db8:0:1:ffff::9".parse().unwrap(), t0), Verdict::Drop, "same /56, no slip");
        assert_eq!(limits.check("2001:db8:0:100::1".parse().unwrap(), t0), Verdict::Allow, "another /56");
        let off = limiter(0, 0, 2);
        assert!((0..1000).all(|_| off.check("192.0.2.1".parse().unwrap(), t0) == Verdict::Allow));
    }

    #[test]
    fn refused_answers_have_their_own_budget() {
        let limits = RateLimiter::new(&RateLimitConfig { refused_qps: 2, exempt: Vec::new(), ..RateLimitConfig::default() });
        let t0 = Instant::now();
        let outsider: IpAddr = "198.51.100.1".parse().unwrap();
        let sent = (0..10).filter(|_| limits.allow_refused(outsider, t0)).count();
        assert_eq!(sent, 2);
    }

    #[test]
    fn the_number_of_networks_tracked_is_bounded() {
        let limits = RateLimiter::new(&RateLimitConfig { qps: 1, burst: 1, max_networks: 1000, exempt: Vec::new(), ..RateLimitConfig::default() });
        let t0 = Instant::now();
        for i in 0..100_000u32 {
            limits.check(IpAddr::from((0x0b00_0000u32 + (i << 8)).to_be_bytes()), t0);
        }
        assert!(limits.queries.buckets.len() <= 1100, "{}", limits.queries.buckets.len());
    }
}
