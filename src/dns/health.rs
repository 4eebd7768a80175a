//! Whether an upstream server is worth asking, judged from evidence across many names — never
//! from one name's repeats.
//!
//! The internet is full of broken names: lame delegations, dead authoritative servers, DNSSEC
//! failures. A recursive upstream answers SERVFAIL for those, or takes longer than our timeout,
//! while it answers everything else at once. So one name failing again and again says nothing
//! about the server, and [`UpstreamStats::failed`] counts each failing name once:
//!
//! - the server is marked down when, since its last answer and within the last 5 minutes,
//!   queries for [`TRANSPORT_NAMES`] distinct names got no usable reply (a timeout, a refused
//!   connection, a malformed or mismatched reply), or queries for [`ANSWER_NAMES`] distinct
//!   names got SERVFAIL or REFUSED (an upstream that fails everything). The window outlasts
//!   the longest backoff, so a dead server's failed probes keep it down;
//! - any answer (NOERROR or NXDOMAIN) makes it healthy at once;
//! - a server marked down is left alone for a backoff (1 s, doubling each time it is marked
//!   down again without answering in between, at most 60 s); then one query probes it (the
//!   others go on skipping it), and the probe's failure marks it down again at once.
//!
//! Being down is the only thing that changes which server is asked: the forwarder asks a
//! route's servers in config order, skips a down server while another server of the route is
//! up, and asks the down ones anyway when none is — so no failure, however many, switches
//! forwarding off (the deadline and the per-name failure cache keep clients from waiting on it
//! twice), and one name's failure never sends the traffic elsewhere.
//!
//! RFC 9520 §3 asks for the same split: a failure belongs to the name (cached per name by the
//! forwarder), and only failures across names may say the server is unusable.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

/// Distinct names without a usable reply that mark a server down.
pub const TRANSPORT_NAMES: usize = 3;

/// Distinct names answered SERVFAIL or REFUSED (or without a usable reply) that mark it down.
pub const ANSWER_NAMES: usize = 10;

/// How far back failures count: longer than the longest backoff.
const WINDOW_MS: u64 = 300_000;

/// Failures remembered: enough for [`ANSWER_NAMES`] distinct names among some repeats.
const RING: usize = 32;

/// How long one probe may take before another query may probe: longer than any deadline.
const PROBE_MS: u64 = 10_000;

/// How long a server first stays down; doubled each time it is marked down again, up to the
/// maximum.
const FIRST_BACKOFF_MS: u64 = 1_000;
const MAX_BACKOFF_MS: u64 = 60_000;

/// What went wrong with one query to one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No reply in time.
    Timeout,
    /// No usable reply: refused connection, malformed or mismatched reply, socket error.
    Transport,
    /// A reply saying it could not answer: SERVFAIL, REFUSED, NOTIMP, FORMERR.
    Answer,
}

/// One upstream server's counters and health, kept by the forwarder and shown per upstream.
#[derive(Debug)]
pub struct UpstreamStats {
    /// The server.
    pub addr: SocketAddr,
    /// Queries sent to it.
    pub queries: AtomicU64,
    /// Queries that failed other than by timing out (SERVFAIL, REFUSED, connection errors).
    pub errors: AtomicU64,
    /// Queries it did not answer in time.
    pub timeouts: AtomicU64,
    /// Failures since its last answer (any names); 0 while it answers.
    pub consecutive_failures: AtomicU64,
    /// Times it has been marked down.
    pub marked_down: AtomicU64,
    /// Not asked until this [`crate::metrics::monotonic_ms`] time; 0 when not marked down.
    down_until_ms: AtomicU64,
    /// Marked down and not answered since (its backoff may have passed).
    marked: std::sync::atomic::AtomicBool,
    /// After the backoff, no other probe until this time (one query probes at a time).
    probe_until_ms: AtomicU64,
    /// When it last answered.
    last_answer_ms: AtomicU64,
    /// Recent failures, by name.
    window: Mutex<Window>,
}

/// The last [`RING`] failures: a hash of the name, when, and whether it was a transport failure.
#[derive(Debug, Default)]
struct Window {
    entries: Vec<(u64, u64, bool)>,
    next: usize,
    /// Times marked down since the last answer, for the backoff.
    downs: u32,
}

impl UpstreamStats {
    /// Fresh counters for `addr`.
    pub fn new(addr: SocketAddr) -> Arc<Self> {
        Arc::new(Self {
            addr,
            queries: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            consecutive_failures: AtomicU64::new(0),
            marked_down: AtomicU64::new(0),
            down_until_ms: AtomicU64::new(0),
            marked: std::sync::atomic::AtomicBool::new(false),
            probe_until_ms: AtomicU64::new(0),
            last_answer_ms: AtomicU64::new(0),
            window: Mutex::new(Window::default()),
        })
    }

    /// Whether it is marked down and its backoff has not passed.
    pub fn is_down(&self, now_ms: u64) -> bool {
        self.down_until_ms.load(Relaxed) > now_ms
    }

    /// Whether it is marked down and has not answered since: what `/metrics` shows.
    pub fn is_marked(&self) -> bool {
        self.marked.load(Relaxed)
    }

    /// Whether a query may be sent to it now: it is not marked down; or its backoff has
    /// passed and no other query is probing it — then this query is the probe.
    pub fn usable(&self, now_ms: u64) -> bool {
        if !self.marked.load(Relaxed) {
            return true;
        }
        if self.is_down(now_ms) {
            return false;
        }
        let probing = self.probe_until_ms.load(Relaxed);
        now_ms >= probing && self.probe_until_ms.compare_exchange(probing, now_ms + PROBE_MS, Relaxed, Relaxed).is_ok()
    }

    /// It answered (NOERROR or NXDOMAIN): healthy again. Two relaxed stores while healthy.
    pub fn answered(&self, now_ms: u64) {
        self.last_answer_ms.store(now_ms, Relaxed);
        if self.consecutive_failures.load(Relaxed) != 0 || self.marked.load(Relaxed) {
            self.consecutive_failures.store(0, Relaxed);
            self.down_until_ms.store(0, Relaxed);
            self.probe_until_ms.store(0, Relaxed);
            self.marked.store(false, Relaxed);
            // A poisoned lock only means a panic elsewhere; the window is plain data.
            let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
            window.downs = 0;
        }
    }

    /// A query for the name hashed to `name` failed this way at `now_ms`. Returns the backoff
    /// when this failure marks the server down.
    pub fn failed(&self, name: u64, failure: Failure, now_ms: u64) -> Option<Duration> {
        match failure {
            Failure::Timeout => self.timeouts.fetch_add(1, Relaxed),
            Failure::Transport | Failure::Answer => self.errors.fetch_add(1, Relaxed),
        };
        self.consecutive_failures.fetch_add(1, Relaxed);
        let since = self.last_answer_ms.load(Relaxed).max(now_ms.saturating_sub(WINDOW_MS));
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let entry = (name, now_ms, failure != Failure::Answer);
        if window.entries.len() < RING {
            window.entries.push(entry);
        } else {
            let at = window.next;
            window.entries[at] = entry;
        }
        window.next = (window.next + 1) % RING;
        let recent = || window.entries.iter().filter(|&&(_, at, _)| at >= since);
        let transport = distinct(recent().filter(|e| e.2).map(|e| e.0));
        let any = distinct(recent().map(|e| e.0));
        // Marked down already: a failed probe marks it down again, whatever the count.
        let probe_failed = self.marked.load(Relaxed) && !self.is_down(now_ms);
        if self.is_down(now_ms) || (!probe_failed && transport < TRANSPORT_NAMES && any < ANSWER_NAMES) {
            return None;
        }
        self.marked.store(true, Relaxed);
        self.probe_until_ms.store(0, Relaxed);
        window.downs = window.downs.saturating_add(1);
        let backoff = (FIRST_BACKOFF_MS << (window.downs - 1).min(6)).min(MAX_BACKOFF_MS);
        self.down_until_ms.store(now_ms + backoff, Relaxed);
        self.marked_down.fetch_add(1, Relaxed);
        Some(Duration::from_millis(backoff))
    }
}

/// How many different values `hashes` holds (a few dozen at most: quadratic is fine).
fn distinct(hashes: impl Iterator<Item = u64>) -> usize {
    let mut seen: Vec<u64> = Vec::with_capacity(RING);
    for hash in hashes {
        if !seen.contains(&hash) {
            seen.push(hash);
        }
    }
    seen.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> Arc<UpstreamStats> {
        UpstreamStats::new("127.0.0.1:53".parse().expect("addr"))
    }

    #[test]
    fn one_name_failing_again_and_again_never_marks_a_server_down() {
        let s = stats();
        for i in 0..100 {
            assert_eq!(s.failed(7, Failure::Timeout, 1_000 + i), None);
            assert_eq!(s.failed(8, Failure::Answer, 1_000 + i), None);
        }
        assert!(!s.is_down(1_200));
        assert_eq!(s.marked_down.load(Relaxed), 0);
    }

    #[test]
    fn timeouts_across_distinct_names_mark_it_down_with_a_doubling_backoff() {
        let s = stats();
        assert_eq!(s.failed(1, Failure::Timeout, 1_000), None);
        assert_eq!(s.failed(2, Failure::Transport, 1_100), None);
        assert_eq!(s.failed(3, Failure::Timeout, 1_200), Some(Duration::from_secs(1)));
        assert!(s.is_down(2_100) && !s.is_down(2_200));
        assert!(!s.usable(2_100), "skipped during the backoff");
        assert!(s.usable(2_250), "then one query probes it");
        assert!(!s.usable(2_260), "and the others go on skipping it");
        assert!(s.is_marked());
        // The probe fails: down for twice as long, at once.
        assert_eq!(s.failed(4, Failure::Timeout, 2_300), Some(Duration::from_secs(2)));
        assert!(!s.usable(4_200) && s.usable(4_300));
        // One answer: healthy, and the next trouble starts from a clean slate.
        s.answered(4_400);
        assert!(!s.is_down(4_400) && !s.is_marked() && s.usable(4_400));
        assert_eq!(s.failed(5, Failure::Timeout, 4_500), None);
    }

    #[test]
    fn an_answer_between_failures_keeps_it_up() {
        let s = stats();
        for i in 0..50u64 {
            assert_eq!(s.failed(i, Failure::Timeout, 1_000 + 10 * i), None, "name {i}");
            s.answered(1_005 + 10 * i);
        }
    }

    #[test]
    fn servfail_for_many_distinct_names_marks_it_down() {
        let s = stats();
        for i in 0..(ANSWER_NAMES as u64 - 1) {
            assert_eq!(s.failed(i, Failure::Answer, 1_000 + i), None);
        }
        assert!(s.failed(99, Failure::Answer, 1_100).is_some());
    }

    #[test]
    fn failures_older_than_the_window_are_forgotten() {
        let s = stats();
        s.failed(1, Failure::Timeout, 1_000);
        s.failed(2, Failure::Timeout, 2_000);
        assert_eq!(s.failed(3, Failure::Timeout, 2_000 + WINDOW_MS), None, "the first is too old");
    }
}
