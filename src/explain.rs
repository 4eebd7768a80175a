//! `explain`: why a name gets the answer it gets.
//!
//! For an owned name: which record set answers, from which source (provenance), whether a
//! wildcard matched, the CNAMEs followed, every weighted alternative with its weight, and who
//! else claimed the name and lost on precedence. For a name not owned: the forwarding rule
//! that matches, its upstreams with their health, and what the answer cache holds.
//!
//! [`explain`] is a pure reading of a snapshot and a forwarder: the admin listener serves it
//! at `/explain`, the status page's search box calls that, and `hubdns explain` prints it.

use std::{fmt, net::IpAddr, sync::atomic::Ordering::Relaxed, time::Instant};

use hickory_proto::rr::{Name, RecordType};
use serde::{Deserialize, Serialize};

use crate::{
    answer::{self, Draw, Hop, MAX_CNAME_HOPS, Outcome, Question, Refusal},
    dns::forwarder::Forwarder,
    dns::health::UpstreamStats,
    metrics::rcode_name,
    name_key::name_key,
    snapshot::{Node, Provenance, RecordSet, Snapshot},
};

/// The answer to "why does this name answer like that?".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// The name asked about, absolute.
    pub name: String,
    /// The type asked about.
    #[serde(rename = "type")]
    pub qtype: String,
    /// `hubdns` when the name asked is owned (AA=1; an owned CNAME chain may still end
    /// upstream, see `forward`), `upstream` when it is forwarded as it is.
    pub answered_by: String,
    /// The response code hubdns gives (for a forwarded name: the cached one, if any).
    pub rcode: Option<String>,
    /// One sentence: why.
    pub reason: String,
    /// The owned name that matched (a wildcard shows as `*.…`), after any CNAMEs.
    pub matched: Option<String>,
    /// The records of the answer, CNAMEs first; weighted alternatives all listed.
    pub records: Vec<RecordView>,
    /// Sources that also claimed the matched name and lost on precedence.
    pub outvoted: Vec<ProvenanceView>,
    /// Where the name goes upstream, when it is forwarded.
    pub forward: Option<ForwardView>,
    /// What an operator should know beyond the answer: an owned name inside a DNSSEC-signed
    /// public zone ([`crate::signed_parents`]).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// `[az]` affinity, when the answer's addresses lie in several AZs and it applies to the
    /// name; the records above are in the order that client gets them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub az: Option<AzView>,
}

/// What `[az]` affinity does with one answer for one client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AzView {
    /// The name's affinity: `prefer` or `only`.
    pub affinity: String,
    /// Each address's AZ ID, as the source listed them (`?`: not known); for Route 53
    /// AZ-affinity sets, the location of the set chosen.
    pub zones: Vec<String>,
    /// The client asked for (`client=` on `/explain`, `--client` on `hubdns explain`).
    pub client: Option<String>,
    /// The client's AZ ID, when known.
    pub client_az: Option<String>,
    /// What placed the client: a subnet, an `[[az.clients]]` or `[[az.forwarders]]` entry,
    /// `az.default`; `None` when nothing covers it.
    pub placed_by: Option<String>,
    /// What was done: `same_az`, `other_az` (its AZ has none), `unknown_az`.
    pub choice: Option<String>,
}

/// One record with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordView {
    /// Owner name.
    pub name: String,
    /// Type.
    #[serde(rename = "type")]
    pub rtype: String,
    /// TTL served.
    pub ttl: u32,
    /// The data, in zone-file form.
    pub data: String,
    /// The kind of source (precedence).
    pub source: String,
    /// The source's own words: config line, endpoint and ENI, zone.
    pub origin: String,
    /// Weighted alternative: its set identifier and weight.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub weight: Option<(String, u32)>,
}

/// A source that claimed a name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvenanceView {
    /// The kind of source.
    pub source: String,
    /// Its origin.
    pub origin: String,
}

/// The forwarding of a name hubdns does not own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForwardView {
    /// The name sent upstream (the query name, or the end of an owned CNAME chain).
    pub target: String,
    /// The matching rule's domain; `.` for the default upstreams.
    pub rule: String,
    /// Its upstreams, in the order they would be tried.
    pub upstreams: Vec<UpstreamView>,
    /// What the answer cache holds for the target, if anything.
    pub cached: Option<CachedView>,
}

/// One upstream server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamView {
    /// Its address.
    pub addr: String,
    /// Whether it answered its last query.
    pub healthy: bool,
    /// Queries sent to it since start.
    pub queries: u64,
    /// Errors and timeouts since start.
    pub errors: u64,
    /// Timeouts since start.
    pub timeouts: u64,
}

impl UpstreamView {
    /// The view of one upstream's counters now.
    pub fn of(stats: &UpstreamStats) -> Self {
        Self {
            addr: stats.addr.to_string(),
            healthy: !stats.is_marked(),
            queries: stats.queries.load(Relaxed),
            errors: stats.errors.load(Relaxed) + stats.timeouts.load(Relaxed),
            timeouts: stats.timeouts.load(Relaxed),
        }
    }
}

/// A cached upstream answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedView {
    /// Its response code.
    pub rcode: String,
    /// Records in its answer section.
    pub answers: u16,
    /// Seconds it stays cached.
    pub ttl_left: u32,
}

/// A record type as an operator writes it: its mnemonic in any case, `SPF`, or the generic
/// `TYPEnn` of RFC 3597 §5.
pub fn parse_type(text: &str) -> Option<RecordType> {
    let upper = text.trim().to_ascii_uppercase();
    match (upper.as_str(), upper.strip_prefix("TYPE")) {
        ("SPF", _) => Some(RecordType::from(99)),
        (_, Some(number)) if !number.is_empty() => number.parse::<u16>().ok().map(RecordType::from),
        _ => upper.parse().ok(),
    }
}

/// A record type's name as [`parse_type`] reads it back: SPF, and `TYPEnn` for the types hickory
/// has no name for.
pub fn type_name(rtype: RecordType) -> String {
    match u16::from(rtype) {
        99 => "SPF".into(),
        n if matches!(rtype, RecordType::Unknown(_)) => format!("TYPE{n}"),
        _ => rtype.to_string(),
    }
}

/// Explains `name`/`qtype` against `snapshot` and `forwarder`: the answer engine's plan for
/// it (as a client asking with RD=1 gets it), step by step. Fails only on a name that is not
/// a domain name.
///
/// With a `client`, the answer is the one that client gets under `[az]` affinity.
pub fn explain(snapshot: &Snapshot, forwarder: &Forwarder, name: &str, qtype: RecordType, client: Option<IpAddr>) -> Result<Explanation, String> {
    let mut asked = Name::from_utf8(name.trim()).map_err(|e| format!("`{name}` is not a domain name: {e}"))?;
    asked.set_fqdn(true);
    let key = name_key(&asked);
    let plan = answer::plan(snapshot, Question { key: &key, qtype, recursion_desired: true, client }, Draw::First);
    let mut out = Explanation {
        name: asked.to_string(),
        qtype: type_name(qtype),
        answered_by: "hubdns".into(),
        rcode: Some(rcode_name(plan.rcode())),
        reason: String::new(),
        matched: None,
        records: Vec::new(),
        outvoted: Vec::new(),
        forward: None,
        warnings: forwarder.signed_overlaps().iter().filter(|o| o.covers(&asked)).map(|o| o.advice()).collect(),
        az: None,
    };
    for hop in plan.hops() {
        let owner = hop.asked.unwrap_or(&asked);
        out.matched = Some(hop.node.name().to_string());
        match hop.set {
            Some(set) => out.records.extend(alternatives(hop.node, set).flat_map(|set| view_set(set, &hop.node.name(), owner, hop.wildcard))),
            None => out.records.extend(hop.records.iter().map(|soa| RecordView::synthesized(soa, SOA_OF_OWNED_NAME))),
        }
    }
    out.az = az_view(&plan, client);
    // The answering set's records in the order this client gets them (a spread set has no
    // weighted alternatives: it is the last records listed).
    if let (Some(order), Some(set)) = (plan.order(), plan.hops().last().and_then(|hop| hop.set)) {
        let tail = out.records.split_off(out.records.len().saturating_sub(set.len()));
        out.records.extend(order.indexes().filter_map(|i| tail.get(i).cloned()));
    }
    // The name the last step asked about: the end of the CNAME chain, if there is one.
    let last = plan.hops().last().and_then(target_of).unwrap_or(&asked);
    match plan.outcome {
        Outcome::Refused(Refusal::ZoneTransfer) => out.reason = "zone transfers are refused".into(),
        Outcome::Refused(Refusal::NoRecursion) => out.reason = "not owned, and recursion was not asked for".into(),
        Outcome::Forward { target, delegation } => {
            let why = match (delegation, target) {
                (Some(cut), _) => format!("{} is delegated inside a loaded zone, so it is forwarded", cut.name()),
                (None, Some(target)) => format!("the CNAME chain leaves the owned names at {target}"),
                (None, None) if qtype == RecordType::DS && is_owned(snapshot, &key) => {
                    "it is an apex hubdns serves, and DS belongs to the parent zone (RFC 4035 §3.1.4.1)".into()
                }
                (None, None) => "no source owns it".into(),
            };
            let mut out = forwarded(out, forwarder, target.unwrap_or(&asked), qtype, why);
            if target.is_some() {
                // The question's name is ours (AA=1); the chain's end is the upstream's.
                out.answered_by = "hubdns".into();
            } else if delegation.is_some() || !is_owned(snapshot, &key) {
                out.warnings.clear();
            }
            return Ok(out);
        }
        Outcome::NxDomain { encloser, .. } => {
            out.matched = Some(encloser.name().to_string());
            out.reason = format!("{last} does not exist below the owned name {} (NXDOMAIN with its SOA)", encloser.name());
        }
        Outcome::NoData { node, .. } => {
            out.matched = Some(node.name().to_string());
            out.outvoted = snapshot.outvoted(node.key()).iter().map(view_provenance).collect();
            out.reason = match node.rrsets().is_empty() {
                _ if plan.located.is_some_and(|l| l.matched.is_none()) => {
                    format!("{} has Route 53 AZ-affinity sets, and none matches this client's location: NODATA", node.name())
                }
                true => format!("{} is an empty non-terminal of a zone: NODATA", node.name()),
                false => format!("{} is owned but has no {} records: NODATA with its SOA", node.name(), type_name(qtype)),
            };
        }
        Outcome::Unloaded(zone) => {
            out.matched = Some(zone.zone.to_string());
            out.reason = format!("{last} is at or below {}, not loaded: SERVFAIL, as BIND answers for a zone not loaded ({})", zone.zone, zone.why);
        }
        Outcome::Loop => out.reason = "the owned CNAMEs loop back to an earlier name: SERVFAIL, each CNAME once".into(),
        Outcome::TooLong => {
            out.reason = format!("CNAME chain longer than {MAX_CNAME_HOPS} owned names: answered with the chain so far");
        }
        Outcome::Answer => {
            let Some(hop) = plan.hops().last() else { return Ok(out) };
            out.outvoted = snapshot.outvoted(hop.node.key()).iter().map(view_provenance).collect();
            let sets = hop.set.map_or(0, |set| alternatives(hop.node, set).count());
            let location = hop.set.and_then(|set| set.weight()?.location.as_ref());
            let how = match (hop.wildcard, sets) {
                (_, _) if location.is_some() => {
                    let at = location.map(|l| format!("{} {}", l.kind, l.id)).unwrap_or_default();
                    format!("{} has Route 53 AZ-affinity sets; the client's location matches {at} first", hop.node.name())
                }
                (true, _) => format!("the wildcard {} matches", hop.node.name()),
                (false, 0 | 1) => format!("{} is owned", hop.node.name()),
                (false, n) => format!("{} has {n} weighted alternatives, one drawn per query by weight", hop.node.name()),
            };
            let by = hop
                .set
                .and_then(|set| set.provenance().first())
                .map_or_else(|| format!("hubdns itself ({SOA_OF_OWNED_NAME})"), |p| format!("{} ({})", p.source, p.where_from()));
            out.reason = format!("{how}; answered from {by}");
        }
    }
    Ok(out)
}

/// Whether the name with key `key` is itself owned.
fn is_owned(snapshot: &Snapshot, key: &[u8]) -> bool {
    matches!(snapshot.locate(key), crate::snapshot::Resolution::Exact(_))
}

/// Where the SOA answered at an owned name outside a loaded zone comes from.
const SOA_OF_OWNED_NAME: &str = "the SOA of an owned name outside a loaded zone, from [answers]";

/// The CNAME target a hop leads to, if it is a CNAME.
fn target_of<'a>(hop: &Hop<'a>) -> Option<&'a Name> {
    hop.set?.cname_target().map(|(name, _)| name)
}

/// Whether `set` is one of several weighted alternatives drawn per query (an AZ-affinity set
/// is chosen for the client instead, and stands alone).
fn drawn(set: &RecordSet) -> bool {
    set.weight().is_some_and(|w| w.location.is_none())
}

/// `set` and, when it is one of several weighted alternatives, the others of its type.
fn alternatives<'a>(node: &'a Node, set: &'a RecordSet) -> impl Iterator<Item = &'a RecordSet> {
    node.rrsets()
        .iter()
        .filter(move |other| std::ptr::eq(*other, set) || (drawn(set) && other.rtype == set.rtype))
}

/// The records of `set` at `node_name` as views; a wildcard's owned by `owner`, the name asked.
fn view_set<'a>(set: &'a RecordSet, node_name: &Name, owner: &'a Name, wildcard: bool) -> impl Iterator<Item = RecordView> + use<'a> {
    RecordView::of_set(set, node_name).map(move |mut view| {
        if wildcard {
            view.name = owner.to_string();
        }
        view
    })
}

impl RecordView {
    /// A record hubdns makes itself, saying why.
    fn synthesized(record: &hickory_proto::rr::Record, why: &str) -> Self {
        Self {
            name: record.name.to_string(),
            rtype: type_name(record.record_type()),
            ttl: record.ttl,
            data: record.data.to_string(),
            source: "hubdns".into(),
            origin: why.into(),
            weight: None,
        }
    }

    /// Every record of `set`, owned by `owner`, with its provenance and the set's weight.
    pub fn of_set<'a>(set: &'a RecordSet, owner: &Name) -> impl Iterator<Item = RecordView> + use<'a> {
        let name = owner.to_string();
        set.data().zip(set.provenance()).map(move |(data, provenance)| RecordView {
            name: name.clone(),
            rtype: type_name(set.rtype),
            ttl: set.ttl,
            data: data.to_string(),
            source: provenance.source.to_string(),
            origin: provenance.where_from().to_string(),
            weight: set.weight().map(|w| (w.set.to_string(), w.weight)),
        })
    }
}

fn view_provenance(provenance: &Provenance) -> ProvenanceView {
    ProvenanceView { source: provenance.source.to_string(), origin: provenance.where_from().to_string() }
}

/// Fills in the forwarding of `target`.
fn forwarded(mut out: Explanation, forwarder: &Forwarder, target: &Name, qtype: RecordType, why: String) -> Explanation {
    let key = name_key(target);
    let route = forwarder.route(&key);
    let rule = route.domain.to_string();
    let cached = forwarder.cached(&key, qtype, false, Instant::now()).map(|entry| CachedView {
        rcode: rcode_name(entry.prepared(true).rcode),
        answers: entry.prepared(false).answers,
        ttl_left: entry.prepared(true).min_ttl().saturating_sub(entry.age(Instant::now())),
    });
    let mut upstreams: Vec<UpstreamView> = route.stats().map(|s| UpstreamView::of(s)).collect();
    upstreams.sort_by_key(|u| !u.healthy);
    let rule_text = match rule.as_str() {
        "." => "the default upstreams (no forward rule matches)".to_owned(),
        domain => format!("forward rule {domain}"),
    };
    out.answered_by = "upstream".into();
    out.rcode = cached.as_ref().map(|c| c.rcode.clone());
    out.reason = format!(
        "{why}; sent to {rule_text}{}",
        if cached.is_some() { ", answered from the cache until it expires" } else { "" }
    );
    out.forward = Some(ForwardView { target: target.to_string(), rule, upstreams, cached });
    out
}

/// What affinity did in `plan`, or would do: with no client given, the name's affinity and
/// its addresses' AZs alone. For Route 53 AZ-affinity sets: the location matched.
fn az_view(plan: &answer::Plan<'_>, client: Option<IpAddr>) -> Option<AzView> {
    let (affinity, zones, decided) = match (plan.located, plan.az) {
        (Some(located), _) => {
            let matched = plan.hops().last().and_then(|hop| hop.set?.weight()?.location.as_ref());
            let zones = matched.map(|l| format!("{} {}", l.kind, l.id)).into_iter().collect();
            ("route53 AZ-affinity".to_owned(), zones, Some((located.client, located.choice())))
        }
        (None, decision) => {
            let spread = decision.map(|az| az.spread).or_else(|| plan.hops().last()?.set?.affinity())?;
            let zones = spread.zones.iter().map(|z| z.as_deref().unwrap_or("?").to_owned()).collect();
            (spread.affinity.as_str().to_owned(), zones, decision.map(|d| (d.client, d.choice)))
        }
    };
    Some(AzView {
        affinity,
        zones,
        client: client.map(|c| c.to_string()),
        client_az: decided.and_then(|(zone, _)| zone.az()).map(str::to_owned),
        placed_by: decided.and_then(|(zone, _)| zone.placement()).map(|p| format!("{} {}", p.net, p.origin)),
        choice: decided.map(|(_, choice)| choice.as_str().to_owned()),
    })
}

impl fmt::Display for Explanation {
    /// The operator's view, as `hubdns explain` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} {}: {} ({})", self.name, self.qtype, self.answered_by, self.rcode.as_deref().unwrap_or("not cached"))?;
        writeln!(f, "  why: {}", self.reason)?;
        if let Some(matched) = &self.matched {
            writeln!(f, "  matched: {matched}")?;
        }
        for r in &self.records {
            let weight = r.weight.as_ref().map(|(set, w)| format!("  [weight {w}, set {set}]")).unwrap_or_default();
            writeln!(f, "  {} {} {} {}{weight}", r.name, r.ttl, r.rtype, r.data)?;
            writeln!(f, "      from {}: {}", r.source, r.origin)?;
        }
        for o in &self.outvoted {
            writeln!(f, "  outvoted: {} ({})", o.source, o.origin)?;
        }
        if let Some(az) = &self.az {
            match az.affinity.starts_with("route53") {
                true => writeln!(f, "  az: {}, the set for {}", az.affinity, az.zones.join(", "))?,
                false => writeln!(f, "  az affinity: {} (addresses in {})", az.affinity, az.zones.join(", "))?,
            }
            match (&az.client, &az.choice) {
                (Some(client), Some(choice)) => {
                    let zone = az.client_az.as_deref().unwrap_or("not known");
                    let by = az.placed_by.as_deref().unwrap_or("nothing covers it");
                    writeln!(f, "    client {client}: AZ {zone} (from {by}); answer: {choice}")?;
                }
                _ => writeln!(f, "    give a client address (--client) to see its order")?,
            }
        }
        for warning in &self.warnings {
            writeln!(f, "  warning: {warning}")?;
        }
        if let Some(forward) = &self.forward {
            writeln!(f, "  forward: {} via rule {}", forward.target, forward.rule)?;
            for u in &forward.upstreams {
                let health = if u.healthy { "healthy" } else { "failing" };
                writeln!(f, "    upstream {} {health}: {} queries, {} errors ({} timeouts)", u.addr, u.queries, u.errors, u.timeouts)?;
            }
            if let Some(c) = &forward.cached {
                writeln!(f, "    cached: {} with {} answers, {} s left", c.rcode, c.answers, c.ttl_left)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::{Config, ForwardConfig, Upstream},
        assemble::build_snapshot,
    };

    /// The shared fixture, and one forwarding rule.
    fn config() -> Config {
        let text = format!("{}\n[[forward.rules]]\ndomain = \"corp.internal\"\nupstreams = [\"127.0.0.1:9\"]\n", include_str!("../tests/fixtures/owned.toml"));
        Config::parse(&text, "t.toml").expect("valid")
    }

    fn setup() -> (Snapshot, Forwarder) {
        let config = config();
        let forward = ForwardConfig {
            upstreams: vec![Upstream::Addr("127.0.0.2:9".parse().expect("addr"))],
            ..config.forward.clone()
        };
        (build_snapshot(&config, &[]).0, Forwarder::new(&forward).expect("forwarder"))
    }

    #[test]
    fn record_types_parse_as_operators_write_them() {
        assert_eq!(parse_type("aaaa"), Some(RecordType::AAAA));
        assert_eq!(parse_type("SPF"), Some(RecordType::from(99)));
        assert_eq!(parse_type("type65"), Some(RecordType::HTTPS));
        assert_eq!(parse_type("TYPE"), None);
        assert_eq!(parse_type("nonsense"), None);
        for text in ["SPF", "TYPE4242", "A", "HTTPS"] {
            assert_eq!(parse_type(text).map(type_name).as_deref(), Some(text), "read back as written");
        }
    }

    #[tokio::test]
    async fn owned_wildcard_cname_nxdomain_and_forwarded() {
        let (snapshot, forwarder) = setup();
        let e = explain(&snapshot, &forwarder, "svc.example.com", RecordType::A, None).expect("explained");
        assert_eq!((e.answered_by.as_str(), e.rcode.as_deref()), ("hubdns", Some("NOERROR")));
        let data: Vec<&str> = e.records.iter().map(|r| r.data.as_str()).collect();
        assert_eq!(data, ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(e.records[0].source, "config");
        assert!(e.records[0].origin.contains("t.toml:"), "{}", e.records[0].origin);

        let e = explain(&snapshot, &forwarder, "a.b.wild.example.", RecordType::AAAA, None).expect("explained");
        assert_eq!(e.matched.as_deref(), Some("*.wild.example."));
        assert_eq!(e.records[0].name, "a.b.wild.example.");
        assert!(e.reason.contains("wildcard"), "{}", e.reason);

        let e = explain(&snapshot, &forwarder, "www.example.com", RecordType::A, None).expect("explained");
        let types: Vec<&str> = e.records.iter().map(|r| r.rtype.as_str()).collect();
        assert_eq!(types, ["CNAME", "A", "A"], "the chain, then the answer");

        let e = explain(&snapshot, &forwarder, "nope.svc.example.com", RecordType::A, None).expect("explained");
        assert_eq!(e.rcode.as_deref(), Some("NXDOMAIN"));

        let e = explain(&snapshot, &forwarder, "svc.example.com", RecordType::MX, None).expect("explained");
        assert!(e.records.is_empty() && e.reason.contains("NODATA"), "{}", e.reason);

        let e = explain(&snapshot, &forwarder, "host.corp.internal", RecordType::A, None).expect("explained");
        let forward = e.forward.expect("forwarded");
        assert_eq!((e.answered_by.as_str(), forward.rule.as_str()), ("upstream", "corp.internal."));
        assert_eq!(forward.upstreams[0].addr, "127.0.0.1:9");
        assert!(forward.cached.is_none() && e.rcode.is_none());

        let e = explain(&snapshot, &forwarder, "out.example.com", RecordType::A, None).expect("explained");
        let forward = e.forward.expect("forwarded at the end of the chain");
        assert_eq!((forward.target.as_str(), forward.rule.as_str()), ("elsewhere.example.net.", "."));
        assert_eq!(e.records.len(), 1, "the owned CNAME is part of the answer");

        assert!(explain(&snapshot, &forwarder, "bad..name", RecordType::A, None).is_err());
    }
}
