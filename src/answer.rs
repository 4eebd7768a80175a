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
//!
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

use std::net::IpAddr;

use crate::{
    az::{Choice, ClientZone, LocationType, Order, Spread},
    prepared::Prepared,
    snapshot::{Node, RecordSet, Resolution, Snapshot, Unloaded},
};

/// Most CNAMEs followed through owned names (RFC 1034 §3.6.2 asks servers to bound chains).
/// BIND 9's bound, so both answer alike: a chain of up to 11 CNAMEs is answered whole, a
/// longer one is SERVFAIL with the 12 followed ("max. restarts reached").
pub const MAX_CNAME_HOPS: usize = 11;

/// A question as the engine sees it.
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    /// The name's lowercase wire key ([`crate::name_key`]).
    pub key: &'a [u8],
    /// The type asked.
    pub qtype: RecordType,
    /// RD: whether the client wants hubdns to ask upstream for names it does not own.
    pub recursion_desired: bool,
    /// Who asks, when it matters for the answer: `[az]` affinity orders addresses for the
    /// client's Availability Zone. `None`: no client (as listed).
    pub client: Option<IpAddr>,
}

/// What `[az]` affinity made of the answer: the client's AZ as known, and the choice.
#[derive(Debug, Clone, Copy)]
pub struct AzDecision<'a> {
    /// The answering set's spread over AZs, with its name's affinity.
    pub spread: &'a Spread,
    /// The client's AZ.
    pub client: ClientZone<'a>,
    /// What was done.
    pub choice: Choice,
    /// The order of the records, when it is not as listed.
    pub order: Option<Order<'a>>,
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
    /// SERVFAIL: the chain needs more than [`MAX_CNAME_HOPS`] CNAMEs; those followed are in
    /// the answer, as BIND answers.
    TooLong,
    /// SERVFAIL: the name is in a zone whose file did not load (and no other source serves the
    /// data asked there),
    /// as BIND 9 answers for a zone "not loaded due to errors", recursion asked or not: an
    /// empty answer, not authoritative, as BIND's (the CNAMEs followed to it are in the plan's
    /// hops, for `explain`, not in the answer).
    Unloaded(&'a Unloaded),
}

/// What the engine decided, step by step.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    hops: [Option<Hop<'a>>; MAX_CNAME_HOPS + 1],
    len: usize,
    /// How it ends.
    pub outcome: Outcome<'a>,
    /// What AZ affinity did with the last hop's addresses; `None` when none applies.
    pub az: Option<AzDecision<'a>>,
    /// How a Route 53 AZ-affinity set was chosen, when the last name had them.
    pub located: Option<Located<'a>>,
}

/// How a Route 53 AZ-affinity set was chosen for the client.
#[derive(Debug, Clone, Copy)]
pub struct Located<'a> {
    /// The client's AZ.
    pub client: ClientZone<'a>,
    /// The location type of the set chosen; `None` when none matched (NODATA).
    pub matched: Option<LocationType>,
}

impl Located<'_> {
    /// The answer in `/metrics`' terms: the client's own AZ's set, another location's, or
    /// the client's AZ not known.
    pub fn choice(&self) -> Choice {
        match (self.client.az(), self.matched) {
            (None, _) => Choice::ZoneUnknown,
            (Some(_), Some(LocationType::AvailabilityZone)) => Choice::SameZone,
            (Some(_), _) => Choice::NoneInZone,
        }
    }
}

impl<'a> Plan<'a> {
    fn new() -> Self {
        Self { hops: [None; MAX_CNAME_HOPS + 1], len: 0, outcome: Outcome::Answer, az: None, located: None }
    }

    /// What AZ affinity (ours, or a Route 53 AZ-affinity set) made of the answer, for
    /// `/metrics`.
    pub fn az_choice(&self) -> Option<Choice> {
        self.az.map(|az| az.choice).or_else(|| self.located.map(|l| l.choice()))
    }

    /// The order the prepared records go in for this client, when not as listed.
    pub fn order(&self) -> Option<Order<'a>> {
        self.az.and_then(|az| az.order)
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
            Outcome::Loop | Outcome::TooLong | Outcome::Unloaded(_) => ResponseCode::ServFail,
            Outcome::Answer | Outcome::NoData { .. } | Outcome::Forward { .. } => ResponseCode::NoError,
        }
    }

    /// Whether the answer is hubdns's own (AA=1): every outcome that passed an owned name.
    pub fn authoritative(&self) -> bool {
        match self.outcome {
            Outcome::Refused(_) | Outcome::Forward { .. } | Outcome::Unloaded(_) => false,
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
            (Outcome::Answer, 1) => self.hops[0].and_then(|hop| hop.set?.prepared(hop.node)),
            (Outcome::NoData { node, .. }, 0) => node.nodata(),
            _ => None,
        }
    }

    /// The answer section for a question named `qname`: every hop's records, a wildcard's
    /// owned by the name asked. Borrowed when no owner changes.
    pub fn answers(&self, qname: &Name) -> std::borrow::Cow<'a, [Record]> {
        if let Outcome::Unloaded(_) = self.outcome {
            return std::borrow::Cow::Borrowed(&[]);
        }
        let order = self.order();
        if let (1, Some(hop), None) = (self.len, self.hops[0], order)
            && !hop.wildcard
        {
            return std::borrow::Cow::Borrowed(hop.records);
        }
        let mut answers = Vec::with_capacity(self.hops().map(|hop| hop.records.len()).sum());
        for (i, hop) in self.hops().enumerate() {
            let owned = |record: &Record| {
                let mut record = record.clone();
                if hop.wildcard {
                    record.name = hop.asked.unwrap_or(qname).clone();
                }
                record
            };
            // AZ affinity orders the last hop's addresses, the answering set.
            match order.filter(|_| i + 1 == self.len) {
                Some(order) => answers.extend(order.indexes().filter_map(|at| hop.records.get(at)).map(owned)),
                None => answers.extend(hop.records.iter().map(owned)),
            }
        }
        std::borrow::Cow::Owned(answers)
    }
}

/// Decides what `question` gets from `snapshot`. Never allocates.
pub fn plan<'a>(snapshot: &'a Snapshot, question: Question<'_>, draw: Draw) -> Plan<'a> {
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
        let resolution = snapshot.locate(key);
        // A zone whose file did not load (BIND: "not loaded due to errors") answers SERVFAIL
        // for its names, not what a parent zone, a wildcard above it or upstream would say:
        // only data another source serves at or below its apex is answered there.
        let unloaded = snapshot.unloaded_zone(key, resolution);
        // DS lives on the parent side of a zone cut (RFC 4035 §3.1.4.1, RFC 4034 §5): at a
        // delegation inside a loaded zone the zone answers it (no DS: NODATA with its SOA);
        // at an apex hubdns serves — a loaded zone's, an owned name outside any, which is its
        // own apex, or a zone's that did not load — the parent does, so it is forwarded, unless
        // the parent side is in a zone that did not load.
        if qtype == RecordType::DS {
            let apex = matches!(resolution, Resolution::Exact(node) if node.is_apex()) || unloaded.is_some_and(|zone| zone.key_is(key));
            let parent_side = || crate::name_key::parent(key).and_then(|up| snapshot.unloaded_zone(up, snapshot.locate(up)));
            match resolution {
                Resolution::Delegated(cut) if cut.is_cut() && cut.key_is(key) => {
                    plan.outcome = Outcome::NoData { node: cut, soa: cut.soa() };
                    return plan;
                }
                _ if apex => match parent_side() {
                    Some(zone) => {
                        plan.outcome = Outcome::Unloaded(zone);
                        return plan;
                    }
                    None if question.recursion_desired => {
                        plan.outcome = Outcome::Forward { target: asked, delegation: None };
                        return plan;
                    }
                    None => {}
                },
                _ => {}
            }
        }
        let inside = |zone: &Unloaded| matches!(resolution, Resolution::Exact(node) | Resolution::Wildcard(node) if zone.holds(node.key()));
        if let Some(zone) = unloaded.filter(|zone| !inside(zone)) {
            plan.outcome = Outcome::Unloaded(zone);
            return plan;
        }
        let (node, wildcard) = match resolution {
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
        // Route 53 AZ-affinity alternatives: the one for the client's place.
        let mut answering = node.answering(qtype, draw);
        if let Some(first) = answering.filter(|s| s.weight().is_some_and(|w| w.location.is_some())) {
            let client = question.client.map_or(ClientZone::Unknown, |c| snapshot.locator().locate(c));
            let located = node.located(first.rtype, client.place().as_ref());
            plan.located = Some(Located { client, matched: located.map(|(_, kind)| kind) });
            answering = located.map(|(set, _)| set);
        }
        let Some(set) = answering else {
            // Another source's name in a zone that did not load: what the zone holds there
            // is not known, so no negative answer is given for it.
            if let Some(zone) = unloaded {
                plan.outcome = Outcome::Unloaded(zone);
                return plan;
            }
            if qtype == RecordType::SOA && !wildcard && !node.in_zone() {
                // An owned name outside a loaded zone is the apex of its own little zone.
                plan.push(Hop { node, asked, records: std::slice::from_ref(node.soa()), set: None, wildcard });
                plan.outcome = Outcome::Answer;
            } else {
                plan.outcome = Outcome::NoData { node, soa: node.soa() };
            }
            return plan;
        };
        plan.push(Hop { node, asked, records: set.records(node), set: Some(set), wildcard });
        if let (Some(spread), Some(client)) = (set.affinity(), question.client) {
            let client = snapshot.locator().locate(client);
            let (choice, order) = spread.decide(&client);
            plan.az = Some(AzDecision { spread, client, choice, order });
        }
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

/// The owned CNAMEs whose chains can only answer SERVFAIL — a loop (a wildcard's included)
/// or more than [`MAX_CNAME_HOPS`] — with why, for `hubdns check`.
pub fn broken_chains(snapshot: &Snapshot) -> Vec<(Name, &'static str)> {
    let mut broken: Vec<(Name, &'static str)> = snapshot
        .nodes()
        .filter(|node| node.rrsets().iter().any(|set| set.rtype == RecordType::CNAME))
        .filter_map(|node| {
            let key = node.key();
            let question = Question { key, qtype: RecordType::A, recursion_desired: true, client: None };
            match plan(snapshot, question, Draw::First).outcome {
                Outcome::Loop => Some((node.name(), "its CNAME chain loops back")),
                Outcome::TooLong => Some((node.name(), "its CNAME chain is longer than 11")),
                _ => None,
            }
        })
        .collect();
    broken.sort();
    broken
}

#[cfg(test)]
mod tests {
    //! The engine's rules, one test per rule, each naming the reference it follows. The
    //! conformance suite (tests/conformance) checks the same against real servers and AWS.

    use std::{
        net::{Ipv4Addr, Ipv6Addr},
        sync::Arc,
    };

    use hickory_proto::rr::{RData, rdata};

    use super::*;
    use crate::{
        name_key::name_key,
        snapshot::{Alias, Dropped, Provenance, Record as Owned, SoaSettings, SourceKind, Weight},
    };

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    fn owned(owner: &str, data: RData, source: SourceKind) -> Owned {
        Owned { name: name(owner), ttl: 300, data, provenance: Provenance::new(source, owner), weight: None, az: None }
    }

    fn a(owner: &str, last: u8, source: SourceKind) -> Owned {
        owned(owner, RData::A(rdata::A(Ipv4Addr::new(10, 0, 0, last))), source)
    }

    fn alias(owner: &str, target: &str, rtype: Option<RecordType>, source: SourceKind) -> Alias {
        Alias { name: name(owner), target: name(target), ttl: None, provenance: Provenance::new(source, owner), rtype, weight: None }
    }

    fn zone_soa(apex: &str) -> Owned {
        let soa = rdata::SOA::new(name("ns-1.awsdns-1.co.uk."), name("awsdns-hostmaster.amazon.com."), 1, 7200, 900, 1_209_600, 86_400);
        owned(apex, RData::SOA(soa), SourceKind::Route53)
    }

    fn build(records: Vec<Owned>, aliases: Vec<Alias>) -> (Snapshot, Vec<Dropped>) {
        let soa = SoaSettings { mname: name("hubdns.invalid."), rname: name("hostmaster.hubdns.invalid."), negative_ttl: 60 };
        Snapshot::build(records, aliases, &soa, 7)
    }

    /// The rcode and the answer section as `owner type data` lines, for a query with RD=1.
    fn ask(snapshot: &Snapshot, qname: &str, qtype: RecordType) -> (ResponseCode, Vec<String>) {
        let key = name_key(&name(qname));
        let plan = plan(snapshot, Question { key: &key, qtype, recursion_desired: true, client: None }, Draw::First);
        let lines = plan.answers(&name(qname)).iter().map(|r| format!("{} {} {}", r.name, r.record_type(), r.data)).collect();
        (plan.rcode(), lines)
    }

    /// Issue 14 items 1 and 2. Route 53 developer guide, "Choosing between alias and non-alias
    /// records": an alias may be created at the zone apex, beside its SOA and NS; an alias is
    /// one typed record set, so an A alias and an AAAA alias share a name, and an alias may
    /// stand beside a TXT or MX record.
    #[test]
    fn aliases_stand_beside_the_names_other_records() {
        let vpce = "vpce-1.secretsmanager.us-east-1.vpce.amazonaws.com.";
        let apex = "secretsmanager.us-east-1.amazonaws.com.";
        let (snapshot, dropped) = build(
            vec![
                a(vpce, 1, SourceKind::EndpointDns),
                owned(vpce, RData::AAAA(rdata::AAAA(Ipv6Addr::LOCALHOST)), SourceKind::EndpointDns),
                zone_soa(apex),
                owned(apex, RData::NS(rdata::NS(name("ns-1.awsdns-1.co.uk."))), SourceKind::Route53),
                owned(apex, RData::TXT(rdata::TXT::new(vec!["v=spf1 -all".into()])), SourceKind::Route53),
                owned(apex, RData::MX(rdata::MX::new(10, name("mail.example."))), SourceKind::Route53),
            ],
            vec![
                alias(apex, vpce, Some(RecordType::A), SourceKind::Route53),
                alias(apex, vpce, Some(RecordType::AAAA), SourceKind::Route53),
            ],
        );
        assert!(dropped.iter().all(|d| !matches!(d, Dropped::UnresolvedAlias { .. })), "{dropped:?}");
        assert_eq!(ask(&snapshot, apex, RecordType::A), (ResponseCode::NoError, vec![format!("{apex} A 10.0.0.1")]));
        assert_eq!(ask(&snapshot, apex, RecordType::AAAA), (ResponseCode::NoError, vec![format!("{apex} AAAA ::1")]));
        for rtype in [RecordType::SOA, RecordType::NS, RecordType::TXT, RecordType::MX] {
            let (rcode, answers) = ask(&snapshot, apex, rtype);
            assert_eq!((rcode, answers.len()), (ResponseCode::NoError, 1), "{rtype}");
        }
    }

    /// Route 53 developer guide, "Value/route traffic to" for alias records: an alias takes
    /// its target's TTL, and an alias to weighted records answers as they do.
    #[test]
    fn aliases_take_their_targets_ttl_and_weights() {
        let weighted = |set: &str, weight: u32, last: u8| Owned {
            weight: Some(Weight { set: Arc::from(set), weight, location: None }),
            ..a("w.corp.example.", last, SourceKind::Route53)
        };
        let (snapshot, _) = build(
            vec![zone_soa("corp.example."), weighted("blue", 1, 1), weighted("green", 0, 2), a("t.corp.example.", 9, SourceKind::Route53)],
            vec![
                alias("to-weighted.corp.example.", "w.corp.example.", Some(RecordType::A), SourceKind::Route53),
                alias("to-alias.corp.example.", "to-weighted.corp.example.", Some(RecordType::A), SourceKind::Route53),
                alias("to-t.corp.example.", "t.corp.example.", Some(RecordType::A), SourceKind::Route53),
            ],
        );
        let key = name_key(&name("to-alias.corp.example."));
        for _ in 0..50 {
            let plan = plan(&snapshot, Question { key: &key, qtype: RecordType::A, recursion_desired: true, client: None }, Draw::Random);
            let data: Vec<String> = plan.answers(&name("x.")).iter().map(|r| r.data.to_string()).collect();
            assert_eq!(data, ["10.0.0.1"], "weight 0 is never drawn while another is not 0");
        }
        let key = name_key(&name("to-t.corp.example."));
        let plan = plan(&snapshot, Question { key: &key, qtype: RecordType::A, recursion_desired: true, client: None }, Draw::First);
        assert_eq!(plan.hops().next().expect("answer").records[0].ttl, 300, "the target's TTL");
    }

    /// Issue 14 item 6: a name whose best source has only an alias that cannot resolve keeps
    /// the next source's records, and a failed alias never takes the name's other types.
    #[test]
    fn a_broken_alias_hides_nothing() {
        let (snapshot, dropped) = build(
            vec![
                a("api.corp.example.", 5, SourceKind::Route53),
                owned("txt.corp.example.", RData::TXT(rdata::TXT::new(vec!["kept".into()])), SourceKind::Route53),
            ],
            vec![
                alias("api.corp.example.", "missing.example.", None, SourceKind::Config),
                alias("txt.corp.example.", "missing.example.", Some(RecordType::A), SourceKind::Route53),
            ],
        );
        assert_eq!(ask(&snapshot, "api.corp.example.", RecordType::A).1, ["api.corp.example. A 10.0.0.5"]);
        assert_eq!(ask(&snapshot, "txt.corp.example.", RecordType::TXT).1, ["txt.corp.example. TXT kept"]);
        assert_eq!(dropped.iter().filter(|d| matches!(d, Dropped::UnresolvedAlias { .. })).count(), 2, "{dropped:?}");
    }

    /// RFC 1034 §3.6.2, RFC 2181 §10.1: no other data beside a CNAME. Route 53 refuses such a
    /// record set, so it can only come from a faulty source: the CNAME is left out, reported,
    /// and the name's other records answer.
    #[test]
    fn a_cname_beside_other_data_is_left_out_with_its_reason() {
        let (snapshot, dropped) = build(
            vec![a("both.corp.example.", 4, SourceKind::Route53), owned("both.corp.example.", RData::CNAME(rdata::CNAME(name("x.example."))), SourceKind::Route53)],
            vec![],
        );
        assert_eq!(ask(&snapshot, "both.corp.example.", RecordType::A).1, ["both.corp.example. A 10.0.0.4"]);
        assert_eq!(ask(&snapshot, "both.corp.example.", RecordType::CNAME), (ResponseCode::NoError, vec![]));
        assert!(matches!(&dropped[..], [Dropped::Refused { reason, .. }] if *reason == crate::snapshot::CNAME_BESIDE_DATA), "{dropped:?}");
        assert_eq!(snapshot.refused(), 1);
    }

    /// Issue 14 item 3: a tag may add names, never take one over; and whoever wins a zone's
    /// apex, the zone keeps its SOA and NS there.
    #[test]
    fn tags_only_add_names_and_a_zone_keeps_its_apex() {
        let ns = |owner: &str| owned(owner, RData::NS(rdata::NS(name("ns-1.awsdns-1.co.uk."))), SourceKind::Route53);
        let (snapshot, _) = build(
            vec![
                zone_soa("corp.example."),
                ns("corp.example."),
                a("api.corp.example.", 1, SourceKind::Route53),
                a("api.corp.example.", 9, SourceKind::EndpointTag),
                a("corp.example.", 8, SourceKind::EndpointTag),
                a("new.corp.example.", 7, SourceKind::EndpointTag),
                owned("corp.example.", RData::TXT(rdata::TXT::new(vec!["operator".into()])), SourceKind::Config),
            ],
            vec![],
        );
        assert_eq!(ask(&snapshot, "api.corp.example.", RecordType::A).1, ["api.corp.example. A 10.0.0.1"], "the tag lost");
        assert_eq!(ask(&snapshot, "new.corp.example.", RecordType::A).1, ["new.corp.example. A 10.0.0.7"], "the tag added a name");
        assert_eq!(ask(&snapshot, "corp.example.", RecordType::TXT).1, ["corp.example. TXT operator"], "config wins the apex");
        assert_eq!(ask(&snapshot, "corp.example.", RecordType::SOA).1.len(), 1, "the zone keeps its SOA");
        assert_eq!(ask(&snapshot, "corp.example.", RecordType::NS).1.len(), 1, "and its NS");
        assert_eq!(ask(&snapshot, "nope.corp.example.", RecordType::A).0, ResponseCode::NXDomain, "still a zone");
    }

    /// Issue 14 item 6: a broken alias at a name with other records takes its type from the
    /// next source that has it.
    #[test]
    fn a_broken_alias_type_comes_from_the_next_source() {
        let apex = "secretsmanager.us-east-1.amazonaws.com.";
        let (snapshot, _) = build(
            vec![
                zone_soa(apex),
                owned(apex, RData::TXT(rdata::TXT::new(vec!["peered".into()])), SourceKind::Route53),
                a(apex, 3, SourceKind::EndpointDns),
            ],
            vec![alias(apex, "vpce-missing.example.", Some(RecordType::A), SourceKind::Route53)],
        );
        assert_eq!(ask(&snapshot, apex, RecordType::A).1, [format!("{apex} A 10.0.0.3")]);
        assert_eq!(ask(&snapshot, apex, RecordType::TXT).1, [format!("{apex} TXT peered")]);
    }

    /// RFC 1034 §4.2.1: below a zone cut the data is not the zone's; forwarded, as the cut is.
    /// RFC 2308 §3: a zone's negative answers carry its SOA with TTL min(TTL, MINIMUM).
    #[test]
    fn below_a_cut_is_forwarded_and_negative_ttls_follow_rfc_2308() {
        let ns = |owner: &str| owned(owner, RData::NS(rdata::NS(name("ns1.lab.corp.example."))), SourceKind::Route53);
        let (snapshot, _) = build(
            vec![zone_soa("corp.example."), ns("lab.corp.example."), a("host.lab.corp.example.", 1, SourceKind::Route53), a("*.w.lab.corp.example.", 2, SourceKind::Route53)],
            vec![],
        );
        for below in ["host.lab.corp.example.", "x.w.lab.corp.example.", "lab.corp.example."] {
            let key = name_key(&name(below));
            let plan = plan(&snapshot, Question { key: &key, qtype: RecordType::A, recursion_desired: true, client: None }, Draw::First);
            assert!(matches!(plan.outcome, Outcome::Forward { .. }), "{below}: {:?}", plan.outcome);
        }
        let key = name_key(&name("nope.corp.example."));
        let plan = plan(&snapshot, Question { key: &key, qtype: RecordType::A, recursion_desired: true, client: None }, Draw::First);
        assert_eq!(plan.authority()[0].ttl, 300, "min(SOA TTL 300, MINIMUM 86400)");
        let (_, soa) = ask(&snapshot, "corp.example.", RecordType::SOA);
        assert_eq!(soa.len(), 1);
    }

    /// RFC 2181 §10.1, RFC 4035 §2.5: RRSIG and NSEC may sit beside a CNAME; asked for, the
    /// CNAME does not answer them.
    #[test]
    fn rrsig_and_nsec_at_a_cname_are_nodata() {
        let (snapshot, _) = build(vec![owned("c.example.", RData::CNAME(rdata::CNAME(name("c.example."))), SourceKind::Config)], vec![]);
        for qtype in [RecordType::RRSIG, RecordType::NSEC] {
            assert_eq!(ask(&snapshot, "c.example.", qtype), (ResponseCode::NoError, vec![]), "{qtype}");
        }
    }

    /// Route 53 developer guide, "Weighted routing": weighted alias records are alternatives,
    /// one drawn per query — never merged into one answer.
    #[test]
    fn weighted_aliases_stay_alternatives() {
        let weighted = |target: &str, set: &str, weight: u32| Alias {
            weight: Some(Weight { set: Arc::from(set), weight, location: None }),
            ..alias("walias.corp.example.", target, Some(RecordType::A), SourceKind::Route53)
        };
        let (snapshot, _) = build(
            vec![zone_soa("corp.example."), a("api.corp.example.", 10, SourceKind::Route53), a("dc1.corp.example.", 6, SourceKind::Route53)],
            vec![weighted("api.corp.example.", "one", 1), weighted("dc1.corp.example.", "two", 0)],
        );
        let key = name_key(&name("walias.corp.example."));
        for _ in 0..30 {
            let plan = plan(&snapshot, Question { key: &key, qtype: RecordType::A, recursion_desired: true, client: None }, Draw::Random);
            let data: Vec<String> = plan.answers(&name("x.")).iter().map(|r| r.data.to_string()).collect();
            assert_eq!(data, ["10.0.0.10"], "weight 0 never drawn while another is not 0");
        }
    }

    /// Issue 14 item 3: no source may own the root or an ICANN public suffix.
    #[test]
    fn the_root_and_public_suffixes_are_never_owned() {
        let (snapshot, dropped) = build(
            vec![a(".", 1, SourceKind::EndpointTag), a("com.", 2, SourceKind::EndpointDns), a("*.co.uk.", 3, SourceKind::Route53)],
            vec![alias(".", "x.example.", None, SourceKind::Config)],
        );
        assert_eq!(snapshot.name_count(), 0);
        assert_eq!(dropped.iter().filter(|d| matches!(d, Dropped::Refused { .. })).count(), 4, "{dropped:?}");
        assert_eq!(snapshot.refused(), 4, "counted, for /metrics");
        assert_eq!(ask(&snapshot, "github.com.", RecordType::A).0, ResponseCode::NoError, "forwarded, not NXDOMAIN");
    }

    /// Issue 14 item 8. RFC 4592 §2.2.1 and §3.3.1: a wildcard matches only below its closest
    /// encloser; `*.apps` exists itself, so `x.*.apps` has it as closest encloser and no
    /// `*.*.apps`: NXDOMAIN. The wildcard owner asked literally is an ordinary name.
    #[test]
    fn a_wildcard_never_answers_below_its_own_owner() {
        let (snapshot, _) = build(vec![zone_soa("corp.example."), a("*.apps.corp.example.", 7, SourceKind::Route53)], vec![]);
        assert_eq!(ask(&snapshot, "x.apps.corp.example.", RecordType::A).1, ["x.apps.corp.example. A 10.0.0.7"]);
        assert_eq!(ask(&snapshot, "a.b.apps.corp.example.", RecordType::A).0, ResponseCode::NoError, "any depth below");
        assert_eq!(ask(&snapshot, "x.*.apps.corp.example.", RecordType::A), (ResponseCode::NXDomain, vec![]));
        assert_eq!(ask(&snapshot, "*.apps.corp.example.", RecordType::A).1, ["*.apps.corp.example. A 10.0.0.7"]);
        assert_eq!(ask(&snapshot, "apps.corp.example.", RecordType::A), (ResponseCode::NoError, vec![]), "ENT");
    }

    /// Issue 14 item 9. RFC 1034 §3.6.2: CNAME loops are to be avoided; BIND answers one with
    /// SERVFAIL and each CNAME once.
    #[test]
    fn an_owned_cname_loop_is_servfail_with_each_cname_once() {
        let cname = |from: &str, to: &str| owned(from, RData::CNAME(rdata::CNAME(name(to))), SourceKind::Config);
        let (snapshot, _) = build(
            vec![cname("a.example.", "b.example."), cname("b.example.", "c.example."), cname("c.example.", "a.example."), cname("self.example.", "self.example.")],
            vec![],
        );
        let (rcode, answers) = ask(&snapshot, "a.example.", RecordType::A);
        assert_eq!(rcode, ResponseCode::ServFail);
        assert_eq!(answers, ["a.example. CNAME b.example.", "b.example. CNAME c.example.", "c.example. CNAME a.example."]);
        assert_eq!(ask(&snapshot, "self.example.", RecordType::A), (ResponseCode::ServFail, vec!["self.example. CNAME self.example.".into()]));
        assert_eq!(ask(&snapshot, "a.example.", RecordType::CNAME).1.len(), 1, "CNAME asked: not followed");
    }

    /// `hubdns check` is told of every chain that can only be SERVFAIL, wildcards included.
    #[test]
    fn broken_chains_are_found_for_check() {
        let cname = |from: &str, to: &str| owned(from, RData::CNAME(rdata::CNAME(name(to))), SourceKind::Config);
        let mut records: Vec<Owned> = (0..13).map(|i| cname(&format!("c{i}.example."), &format!("c{}.example.", i + 1))).collect();
        records.push(cname("*.w.example.", "x.w.example."));
        records.push(cname("fine.example.", "c12.example."));
        let (snapshot, _) = build(records, vec![]);
        let mut broken: Vec<String> = broken_chains(&snapshot).into_iter().map(|(n, _)| n.to_string()).collect();
        broken.sort();
        assert_eq!(broken, ["*.w.example.", "c0.example.", "c1.example."]);
    }

    /// RFC 1034 §3.6.2 and BIND: a chain longer than the bound is SERVFAIL with what was
    /// followed.
    #[test]
    fn long_chains_stop_at_the_bound() {
        let records = (0..14).map(|i| owned(&format!("c{i}.example."), RData::CNAME(rdata::CNAME(name(&format!("c{}.example.", i + 1)))), SourceKind::Config)).collect();
        let (snapshot, _) = build(records, vec![]);
        let key = name_key(&name("c0.example."));
        let plan = plan(&snapshot, Question { key: &key, qtype: RecordType::A, recursion_desired: true, client: None }, Draw::First);
        assert!(matches!(plan.outcome, Outcome::TooLong), "{:?}", plan.outcome);
        assert_eq!((plan.rcode(), plan.hops().count()), (ResponseCode::ServFail, MAX_CNAME_HOPS + 1));
        let key = name_key(&name("c3.example."));
        let whole = super::plan(&snapshot, Question { key: &key, qtype: RecordType::A, recursion_desired: true, client: None }, Draw::First);
        assert!(matches!(whole.outcome, Outcome::Forward { .. }), "11 CNAMEs: followed to the end, {:?}", whole.outcome);
    }

    /// RFC 4035 §3.1.4.1: DS is the parent's. At a delegation inside a zone the zone answers
    /// it (NODATA, AA, the zone's SOA); at an apex hubdns serves, it is forwarded.
    #[test]
    fn ds_is_answered_on_the_parent_side() {
        let ns = |owner: &str| owned(owner, RData::NS(rdata::NS(name("ns.elsewhere.example."))), SourceKind::Route53);
        let (snapshot, _) = build(
            vec![zone_soa("corp.example."), ns("corp.example."), ns("sub.corp.example."), a("www.corp.example.", 1, SourceKind::Route53), a("solo.example.", 2, SourceKind::Config)],
            vec![],
        );
        let ds = |qname: &str| {
            let key = name_key(&name(qname));
            plan(&snapshot, Question { key: &key, qtype: RecordType::DS, recursion_desired: true, client: None }, Draw::First).outcome
        };
        assert!(matches!(ds("sub.corp.example."), Outcome::NoData { soa, .. } if soa.name == name("corp.example.")));
        assert!(matches!(ds("corp.example."), Outcome::Forward { target: None, .. }), "a zone apex");
        assert!(matches!(ds("solo.example."), Outcome::Forward { target: None, .. }), "an owned name is its own apex");
        assert!(matches!(ds("www.corp.example."), Outcome::NoData { .. }), "inside the zone: no DS");
        assert!(matches!(ds("host.sub.corp.example."), Outcome::Forward { .. }), "below the cut");
    }

    /// RFC 1034 §4.3.2 step 3, RFC 6604 §2: a chain that ends in a name below an owned name is
    /// NXDOMAIN with the chain; one that leaves the owned names is forwarded, or with RD=0
    /// answered as far as it goes; a name not owned with RD=0 is refused.
    #[test]
    fn chains_end_in_nxdomain_forward_or_refusal() {
        let cname = |from: &str, to: &str| owned(from, RData::CNAME(rdata::CNAME(name(to))), SourceKind::Config);
        let (snapshot, _) = build(vec![cname("x.example.", "nope.y.example."), a("y.example.", 1, SourceKind::Config), cname("out.example.", "elsewhere.test.")], vec![]);
        assert_eq!(ask(&snapshot, "x.example.", RecordType::A), (ResponseCode::NXDomain, vec!["x.example. CNAME nope.y.example.".into()]));
        let key = name_key(&name("out.example."));
        let forward = plan(&snapshot, Question { key: &key, qtype: RecordType::A, recursion_desired: true, client: None }, Draw::First);
        assert!(matches!(forward.outcome, Outcome::Forward { target: Some(t), .. } if *t == name("elsewhere.test.")));
        let norec = plan(&snapshot, Question { key: &key, qtype: RecordType::A, recursion_desired: false, client: None }, Draw::First);
        assert!(matches!(norec.outcome, Outcome::Answer) && norec.authoritative());
        let key = name_key(&name("elsewhere.test."));
        let refused = plan(&snapshot, Question { key: &key, qtype: RecordType::A, recursion_desired: false, client: None }, Draw::First);
        assert!(matches!(refused.outcome, Outcome::Refused(Refusal::NoRecursion)));
        for qtype in [RecordType::AXFR, RecordType::IXFR] {
            let key = name_key(&name("y.example."));
            let transfer = plan(&snapshot, Question { key: &key, qtype, recursion_desired: true, client: None }, Draw::First);
            assert!(matches!(transfer.outcome, Outcome::Refused(Refusal::ZoneTransfer)));
        }
    }

    /// Issue 14 item 12. RFC 8482 §4.1: ANY at an owned name is one RRset; ANY for a name not
    /// owned is the upstream's to answer.
    #[test]
    fn any_is_one_rrset_when_owned_and_forwarded_otherwise() {
        let (snapshot, _) = build(
            vec![a("m.example.", 1, SourceKind::Config), owned("m.example.", RData::TXT(rdata::TXT::new(vec!["t".into()])), SourceKind::Config)],
            vec![],
        );
        assert_eq!(ask(&snapshot, "m.example.", RecordType::ANY).1.len(), 1);
        let key = name_key(&name("not-owned.test."));
        let any = plan(&snapshot, Question { key: &key, qtype: RecordType::ANY, recursion_desired: true, client: None }, Draw::First);
        assert!(matches!(any.outcome, Outcome::Forward { target: None, .. }));
    }

    /// Issue 14 item 5: a change of weight, set identifier or SOA setting is a change; a new
    /// serial alone is not.
    #[test]
    fn changes_are_seen_in_weights_set_ids_and_soa_settings() {
        let weighted = |set: &str, weight: u32| Owned { weight: Some(Weight { set: Arc::from(set), weight, location: None }), ..a("w.example.", 1, SourceKind::Route53) };
        let soa = |ttl: u32, mname: &str| SoaSettings { mname: name(mname), rname: name("h.invalid."), negative_ttl: ttl };
        let table = |weight: u32, set: &str, settings: &SoaSettings, serial: u32| Snapshot::build(vec![weighted(set, weight)], vec![], settings, serial).0;
        let base = table(3, "blue", &soa(60, "hubdns.invalid."), 1);
        assert!(base.answers_like(&table(3, "blue", &soa(60, "hubdns.invalid."), 2)), "a serial alone");
        assert!(!base.answers_like(&table(0, "blue", &soa(60, "hubdns.invalid."), 1)), "weight 3 -> 0");
        assert!(!base.answers_like(&table(3, "green", &soa(60, "hubdns.invalid."), 1)), "set identifier");
        assert!(!base.answers_like(&table(3, "blue", &soa(30, "hubdns.invalid."), 1)), "negative_ttl");
        assert!(!base.answers_like(&table(3, "blue", &soa(60, "ns.invalid."), 1)), "soa_mname");
        let ttl = |ttl: u32| Snapshot::build(vec![Owned { ttl, ..weighted("blue", 3) }], vec![], &soa(60, "hubdns.invalid."), 1).0;
        assert!(!ttl(300).answers_like(&ttl(7)), "a TTL alone");
    }
}
