//! The answer engine: the one place that decides what a question about an owned name gets.
//!
//! [`plan`] takes the snapshot and a question and returns a [`Plan`]: the steps taken — the
//! owned names matched, exactly or through a wildcard, and the CNAMEs followed — and the
//! outcome: an answer, NODATA or NXDOMAIN with the SOA, a forward to upstream with its target,
//! REFUSED, or SERVFAIL for a CNAME loop. Everything else reads the plan:
//! - the handler's full path encodes it ([`crate::dns::handler`]);
//! - the fast path copies [`Plan::prepared`], the pre-encoded bytes of the plans whose whole
//!   response is one prepared answer — so it is a memo of this engine, never a second rule;
//! - `explain` renders its steps ([`crate::explain`]).
//! So the three cannot disagree. The rules and their references are in ARCHITECTURE.md,
//! "Answer rules"; [`crate::snapshot::Snapshot::locate`] holds the name matching (RFC 4592
//! closest encloser and wildcards, zone cuts), this module what is done with the match.
//!
//! The engine never allocates: the plan borrows everything from the snapshot and the
//! question, and the chain lives in a fixed array. The fast path runs it on every query.

use hickory_proto::{
    op::ResponseCode,
    rr::{Name, Record, RecordType},
};

use crate::{
    prepared::Prepared,
    snapshot::{Node, RecordSet, Resolution, Snapshot},
};

/// Most CNAMEs followed through owned names before answering with the chain so far
/// (RFC 1034 §3.6.2 asks servers to bound chains; BIND follows a few more, resolvers re-ask).
pub const MAX_CNAME_HOPS: usize = 8;

/// A question as the engine sees it.
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    /// The name's lowercase wire key ([`crate::name_key`]).
    pub key: &'a [u8],
    /// The type asked.
    pub qtype: RecordType,
    /// RD: whether the client wants hubdns to ask upstream for names it does not own.
    pub recursion_desired: bool,
}

/// How one of several weighted alternatives is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Draw {
    /// By weight, per query, as Route 53 answers (the DNS path).
    Random,
    /// Always the first: deterministic, for `explain` and for flattening aliases.
    First,
}

/// One owned name the plan passed through, and the records it answered with.
#[derive(Debug, Clone, Copy)]
pub struct Hop<'a> {
    /// The owned node that matched: a wildcard's `*.` node when synthesized.
    pub node: &'a Node,
    /// The name asked at this step: `None` for the question's own name, else the CNAME
    /// target that led here.
    pub asked: Option<&'a Name>,
    /// The records answering (a wildcard's still carry their `*` owner).
    pub records: &'a [Record],
    /// The RRset they are; `None` for the SOA of an owned name outside a loaded zone.
    pub set: Option<&'a RecordSet>,
    /// Synthesized from a wildcard (RFC 4592 §3.3.1): owners become the name asked.
    pub wildcard: bool,
}

/// Why a question is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// AXFR and IXFR: hubdns serves no zone transfers.
    ZoneTransfer,
    /// RD=0 for a name hubdns does not own: it answers only what it is authoritative for.
    NoRecursion,
}

/// How a plan ends.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// NOERROR; the hops are the answer section.
    Answer,
    /// NOERROR with the hops (maybe none) and no data of the type at the last name: the SOA
    /// goes in the authority section (RFC 2308 §2.2).
    NoData {
        /// The node that exists without data of the type.
        node: &'a Node,
        /// The SOA for the authority section.
        soa: &'a Record,
    },
    /// NXDOMAIN for the last name asked (after CNAMEs, RFC 6604 §2), SOA in the authority
    /// section (RFC 2308 §2.1).
    NxDomain {
        /// The closest existing owned name above it (RFC 4592 §3.3.1 closest encloser).
        encloser: &'a Node,
        /// The SOA for the authority section.
        soa: &'a Record,
    },
    /// Not ours: ask upstream, and put the hops (CNAMEs) before its answer.
    Forward {
        /// The name to ask: `None` for the question's own name, else the CNAME target.
        target: Option<&'a Name>,
        /// The delegation inside a loaded zone that sent it upstream, if that is why.
        delegation: Option<&'a Node>,
    },
    /// REFUSED.
    Refused(Refusal),
    /// SERVFAIL: the owned CNAMEs loop; each is in the answer once, as BIND answers.
    Loop,
    /// NOERROR with the chain cut after [`MAX_CNAME_HOPS`] CNAMEs.
    TooLong,
}

/// What the engine decided, step by step.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    hops: [Option<Hop<'a>>; MAX_CNAME_HOPS + 1],
    len: usize,
    /// How it ends.
    pub outcome: Outcome<'a>,
}

impl<'a> Plan<'a> {
    fn new() -> Self {
        Self { hops: [None; MAX_CNAME_HOPS + 1], len: 0, outcome: Outcome::Answer }
    }

    fn push(&mut self, hop: Hop<'a>) {
        self.hops[self.len] = Some(hop);
        self.len += 1;
    }

    /// The owned names passed through, in order: CNAMEs followed, then the answering set.
    pub fn hops(&self) -> impl Iterator<Item = &Hop<'a>> {
        self.hops[..self.len].iter().flatten()
    }

    /// The response code the plan answers with (`NoError` for a forward: upstream decides).
    pub fn rcode(&self) -> ResponseCode {
        match self.outcome {
            Outcome::NxDomain { .. } => ResponseCode::NXDomain,
            Outcome::Refused(_) => ResponseCode::Refused,
            Outcome::Loop => ResponseCode::ServFail,
            Outcome::Answer | Outcome::NoData { .. } | Outcome::Forward { .. } | Outcome::TooLong => ResponseCode::NoError,
        }
    }

    /// Whether the answer is hubdns's own (AA=1): every outcome that passed an owned name.
    pub fn authoritative(&self) -> bool {
        match self.outcome {
            Outcome::Refused(_) | Outcome::Forward { .. } => false,
            Outcome::Answer | Outcome::TooLong | Outcome::Loop => self.len > 0,
            Outcome::NoData { .. } | Outcome::NxDomain { .. } => true,
        }
    }

    /// The authority section: the SOA of a negative answer.
    pub fn authority(&self) -> &'a [Record] {
        match self.outcome {
            Outcome::NoData { soa, .. } | Outcome::NxDomain { soa, .. } => std::slice::from_ref(soa),
            _ => &[],
        }
    }

    /// The whole response's records pre-encoded, when the plan is exactly one prepared
    /// answer: one RRset (no CNAME to follow), or NODATA at the question's own name.
    pub fn prepared(&self) -> Option<&'a Prepared> {
        match (self.outcome, self.len) {
            (Outcome::Answer, 1) => self.hops[0].and_then(|hop| hop.set?.prepared.as_ref()),
            (Outcome::NoData { node, .. }, 0) => node.nodata(),
            _ => None,
        }
    }

    /// The answer section for a question named `qname`: every hop's records, a wildcard's
    /// owned by the name asked. Borrowed when no owner changes.
    pub fn answers(&self, qname: &Name) -> std::borrow::Cow<'a, [Record]> {
        if let (1, Some(hop)) = (self.len, self.hops[0])
            && !hop.wildcard
        {
            return std::borrow::Cow::Borrowed(hop.records);
        }
        let mut answers = Vec::with_capacity(self.hops().map(|hop| hop.records.len()).sum());
        for hop in self.hops() {
            answers.extend(hop.records.iter().map(|record| {
                let mut record = record.clone();
                if hop.wildcard {
                    record.name = hop.asked.unwrap_or(qname).clone();
                }
                record
            }));
        }
        std::borrow::Cow::Owned(answers)
    }
}

/// Decides what `question` gets from `snapshot`. Never allocates.
pub fn plan<'a>(snapshot: &'a Snapshot, question: Question<'a>, draw: Draw) -> Plan<'a> {
    let mut plan = Plan::new();
    let qtype = question.qtype;
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        plan.outcome = Outcome::Refused(Refusal::ZoneTransfer);
        return plan;
    }
    // The keys asked so far, to see a CNAME loop (RFC 1034 §3.6.2: each CNAME once).
    let mut asked_keys: [&[u8]; MAX_CNAME_HOPS + 1] = [&[]; MAX_CNAME_HOPS + 1];
    asked_keys[0] = question.key;
    let mut asked: Option<&'a Name> = None;
    loop {
        let key = asked_keys[plan.len];
        let (node, wildcard) = match snapshot.locate(key) {
            Resolution::Exact(node) => (node, false),
            Resolution::Wildcard(node) => (node, true),
            Resolution::Below(encloser) => {
                plan.outcome = Outcome::NxDomain { encloser, soa: encloser.soa() };
                return plan;
            }
            resolution @ (Resolution::NotOwned | Resolution::Delegated(_)) => {
                let delegation = match resolution {
                    Resolution::Delegated(node) => Some(node),
                    _ => None,
                };
                plan.outcome = match (question.recursion_desired, plan.len) {
                    (true, _) => Outcome::Forward { target: asked, delegation },
                    (false, 0) => Outcome::Refused(Refusal::NoRecursion),
                    // RD=0 after owned CNAMEs: the chain so far, as an authoritative server
                    // answers a CNAME out of its zones (RFC 1034 §4.3.2 step 3a).
                    (false, _) => Outcome::Answer,
                };
                return plan;
            }
        };
        let Some(set) = node.answering(qtype, draw) else {
            if qtype == RecordType::SOA && !wildcard && !node.in_zone() {
                // An owned name outside a loaded zone is the apex of its own little zone.
                plan.push(Hop { node, asked, records: std::slice::from_ref(node.soa()), set: None, wildcard });
                plan.outcome = Outcome::Answer;
            } else {
                plan.outcome = Outcome::NoData { node, soa: node.soa() };
            }
            return plan;
        };
        plan.push(Hop { node, asked, records: &set.records, set: Some(set), wildcard });
        let follow = set.rtype == RecordType::CNAME && !matches!(qtype, RecordType::CNAME | RecordType::ANY);
        let Some((target, target_key)) = set.cname_target().filter(|_| follow) else {
            plan.outcome = Outcome::Answer;
            return plan;
        };
        if asked_keys[..plan.len].contains(&target_key) {
            plan.outcome = Outcome::Loop;
            return plan;
        }
        if plan.len > MAX_CNAME_HOPS {
            plan.outcome = Outcome::TooLong;
            return plan;
        }
        asked_keys[plan.len] = target_key;
        asked = Some(target);
    }
}
