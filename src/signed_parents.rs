//! Owned names inside publicly signed zones: found, so operators can give validating resolvers
//! a negative trust anchor before those resolvers start failing them.
//!
//! hubdns signs nothing it owns. When the public DNS has the same name inside a zone signed
//! with DNSSEC — an endpoint service's verified private DNS name `internal-api.service.com`,
//! where `service.com` is signed, say — a validating resolver behind hubdns follows the public
//! chain of trust to that zone, finds hubdns's answer unsigned where a signed one (or a proof
//! that the name does not exist) must be, and treats it as bogus: SERVFAIL (RFC 4035 §5.5).
//! The remedy is the resolver's: a negative trust anchor for the name (RFC 7646), which
//! `deploy/forwarders/` gives for each resolver.
//!
//! Found after each change of the served table (and again a minute later while an upstream
//! gave no answer about some apex): each top-most owned apex (a loaded zone, or an
//! owned name outside one) is asked upstream for its SOA with DO and CD set — CD so a validating
//! upstream answers with whatever it holds. An answer carrying RRSIGs (data, NODATA or
//! NXDOMAIN alike) puts the public name inside a signed zone, or below a secure delegation; an
//! answer without any means the public name is unsigned or delegated insecurely, and
//! validators accept hubdns's answers. The findings go to the log (once each), `/status.json`,
//! `explain`, and `hubdns check` (which asks the running server).

use std::sync::Arc;

use hickory_proto::{
    op::ResponseCode,
    rr::{Name, RecordType},
};
use serde::{Deserialize, Serialize};

use crate::{
    dns::forwarder::{Ask, Forwarded, Forwarder},
    snapshot::Snapshot,
};

/// An owned apex whose public name is inside a signed zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedOverlap {
    /// The owned apex, absolute (`internal-api.service.com.`).
    pub name: String,
    /// The signed zone the public name lies in, as the upstream's answer names it.
    pub signed_zone: String,
}

impl SignedOverlap {
    /// What an operator should read about it.
    pub fn advice(&self) -> String {
        format!(
            "{} is inside the DNSSEC-signed public zone {}: validating resolvers that forward to hubdns will find its answers bogus (SERVFAIL) unless they have a negative trust anchor for {} (see deploy/forwarders)",
            self.name, self.signed_zone, self.name
        )
    }

    /// Whether `name` is this apex or below it.
    pub fn covers(&self, name: &Name) -> bool {
        Name::from_ascii(&self.name).is_ok_and(|apex| apex.zone_of(name))
    }
}

/// An owned apex, and whether it is a loaded zone's (it holds an SOA) or an owned name
/// outside any loaded zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Apex {
    /// The apex.
    pub name: Name,
    /// A loaded zone's apex.
    pub loaded: bool,
}

/// The owned apexes to ask about: loaded zones' apexes and owned names outside any, without
/// those below another (a wildcard stands for its parent), sorted.
pub fn apexes(snapshot: &Snapshot) -> Vec<Apex> {
    let mut apexes: Vec<Apex> = snapshot
        .nodes()
        // A wildcard outside a loaded zone owns the names below its parent.
        .filter(|node| node.is_apex() || crate::name_key::is_wildcard(node.key()))
        .map(|node| {
            let name = node.name();
            let loaded = node.rrsets().iter().any(|set| set.rtype == RecordType::SOA);
            Apex { name: if name.is_wildcard() { name.base_name() } else { name }, loaded }
        })
        .collect();
    apexes.sort_by_key(|apex| apex.name.num_labels());
    // Shortest first, so an apex's ancestors are already decided when it comes; each one
    // looks its own ancestors up (a few labels) rather than scanning every apex kept, which
    // took minutes with 100,000 owned names (bench/scale).
    let mut seen: std::collections::HashSet<Name> = std::collections::HashSet::new();
    let mut top = Vec::new();
    for apex in apexes {
        let name = &apex.name;
        let covered = (1..=name.num_labels()).any(|labels| seen.contains(&name.trim_to(usize::from(labels))));
        if !name.is_root() && !covered {
            seen.insert(name.clone());
            top.push(apex);
        }
    }
    top.sort_by(|a, b| a.name.cmp(&b.name));
    top
}

/// The names to ask upstream, each with the owned apexes its answer speaks for (see [`find`]).
pub fn asks(apexes: Vec<Apex>) -> std::collections::BTreeMap<Name, Vec<Name>> {
    let mut asks: std::collections::BTreeMap<Name, Vec<Name>> = std::collections::BTreeMap::new();
    for apex in apexes {
        let ask = if apex.loaded || apex.name.num_labels() <= 1 { apex.name.clone() } else { apex.name.base_name() };
        asks.entry(ask).or_default().push(apex.name);
    }
    asks
}

/// How many apexes are asked about at once: a check after each table change must not crowd
/// out clients' queries at the upstream (the VPC resolver takes 1,024 packets a second per
/// network interface).
const ASKING_AT_ONCE: usize = 8;

/// What the public DNS says of one owned apex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Inside a signed zone.
    Signed(SignedOverlap),
    /// Unsigned, or delegated insecurely: validators accept hubdns's answers.
    Unsigned,
    /// No answer (SERVFAIL, timeout): nothing learned; what was known stays.
    Unknown,
}

/// What the upstream's answer to `SOA apex` (DO and CD set) says: signed when it carries
/// RRSIGs, unsigned when an answer carries none, unknown when it is no answer at all.
pub fn verdict(apex: &Name, answer: &Forwarded) -> Verdict {
    if !matches!(answer.rcode, ResponseCode::NoError | ResponseCode::NXDomain) {
        return Verdict::Unknown;
    }
    let records = answer.answers.iter().chain(&answer.authorities);
    if !records.clone().any(|r| r.record_type() == RecordType::RRSIG) {
        return Verdict::Unsigned;
    }
    // The zone: the SOA's owner, in the answer (the apex is a zone of its own) or the
    // authority section (the apex lies in its parent's zone).
    let zone = records.into_iter().find(|r| r.record_type() == RecordType::SOA).map_or_else(|| apex.clone(), |soa| soa.name.clone());
    Verdict::Signed(SignedOverlap { name: apex.to_ascii(), signed_zone: zone.to_ascii() })
}

/// Asks upstream about the apexes, a few at a time (each within the forwarder's deadline). Returns the
/// overlaps found and the apexes nothing was learned about, each sorted.
pub async fn find(forwarder: &Arc<Forwarder>, apexes: Vec<Apex>) -> (Vec<SignedOverlap>, Vec<String>) {
    // A loaded zone's apex is asked about itself (it may shadow a public zone of its name).
    // Owned names outside loaded zones — thousands of endpoint names, a config's records —
    // are asked about through their parent, once per parent: the public zone that holds the
    // parent holds them too (unless one is a public zone of its own, which private names
    // are not expected to be), and the upstream is spared a query per name.
    //
    // Only the questions in flight are tasks: the rest wait as plain names, and each group is
    // freed once answered (5,000 tasks spawned at once held megabytes while an upstream was
    // down).
    let mut waiting = asks(apexes).into_iter();
    let mut asking = tokio::task::JoinSet::new();
    let (mut found, mut unknown) = (Vec::new(), Vec::new());
    loop {
        while asking.len() < ASKING_AT_ONCE {
            let Some((ask, owned)) = waiting.next() else { break };
            let forwarder = forwarder.clone();
            asking.spawn(async move {
                let answer = forwarder.forward(&Ask { name: ask.clone(), qtype: RecordType::SOA, checking_disabled: true }).await;
                (owned, verdict(&ask, &answer))
            });
        }
        let Some(joined) = asking.join_next().await else { break };
        // A task that panicked (forwarding does not) taught nothing.
        let Ok((owned, verdict)) = joined else { continue };
        for apex in owned {
            match &verdict {
                Verdict::Signed(overlap) => found.push(SignedOverlap { name: apex.to_ascii(), ..overlap.clone() }),
                Verdict::Unsigned => {}
                Verdict::Unknown => unknown.push(apex.to_ascii()),
            }
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    unknown.sort();
    (found, unknown)
}

/// The overlaps to show now: those just `found`, and the previous ones of apexes nothing
/// could be learned about this time (an upstream failing at check time forgets nothing).
pub fn merge(previous: &[SignedOverlap], found: Vec<SignedOverlap>, unknown: &[String]) -> Vec<SignedOverlap> {
    let mut merged = found;
    merged.extend(previous.iter().filter(|o| unknown.contains(&o.name)).cloned());
    merged.sort_by(|a, b| a.name.cmp(&b.name));
    merged.dedup();
    merged
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::rr::{
        RData, Record,
        rdata::{A, NULL, SOA},
    };

    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    fn rrsig(owner: &str) -> Record {
        Record::from_rdata(name(owner), 60, RData::Unknown { code: RecordType::RRSIG, rdata: NULL::with(vec![0, 6]) })
    }

    fn soa(zone: &str) -> Record {
        Record::from_rdata(name(zone), 60, RData::SOA(SOA::new(name("ns.x."), name("h.x."), 1, 2, 3, 4, 5)))
    }

    fn answer(rcode: ResponseCode, answers: Vec<Record>, authorities: Vec<Record>) -> Forwarded {
        Forwarded { rcode, answers, authorities, stale: false, authentic: false }
    }

    #[test]
    fn signatures_in_the_public_answer_make_an_overlap() {
        let apex = name("internal-api.service.com.");
        let signed = SignedOverlap { name: "internal-api.service.com.".into(), signed_zone: "service.com.".into() };
        let nx = answer(ResponseCode::NXDomain, vec![], vec![soa("service.com."), rrsig("service.com.")]);
        assert_eq!(verdict(&apex, &nx), Verdict::Signed(signed.clone()));
        let own_zone = answer(ResponseCode::NoError, vec![soa("internal-api.service.com."), rrsig("internal-api.service.com.")], vec![]);
        let Verdict::Signed(own) = verdict(&apex, &own_zone) else { panic!("signed") };
        assert_eq!(own.signed_zone, "internal-api.service.com.");
        let unsigned = answer(ResponseCode::NXDomain, vec![], vec![soa("service.com.")]);
        assert_eq!(verdict(&apex, &unsigned), Verdict::Unsigned, "no signatures: validators accept unsigned answers");
        assert_eq!(verdict(&apex, &answer(ResponseCode::ServFail, vec![], vec![])), Verdict::Unknown, "nothing learned");
        let a = Record::from_rdata(apex.clone(), 60, RData::A(A(Ipv4Addr::new(192, 0, 2, 1))));
        assert_eq!(verdict(&apex, &answer(ResponseCode::NoError, vec![a], vec![])), Verdict::Unsigned);
        // An upstream failing at the next check forgets nothing; an answer without signatures does.
        let previous = [signed.clone()];
        assert_eq!(merge(&previous, vec![], &["internal-api.service.com.".to_owned()]), previous);
        assert_eq!(merge(&previous, vec![], &[]), []);
    }

    #[test]
    fn only_top_most_apexes_are_asked() {
        let config = crate::config::Config::parse(
            "[[records]]\nname = \"a.example.com\"\ntype = \"A\"\nvalues = [\"10.0.0.1\"]\n\
             [[records]]\nname = \"b.a.example.com\"\ntype = \"A\"\nvalues = [\"10.0.0.2\"]\n\
             [[records]]\nname = \"*.wild.example.net\"\ntype = \"A\"\nvalues = [\"10.0.0.3\"]\n",
            "t.toml",
        )
        .expect("valid");
        let (snapshot, _) = crate::assemble::build_snapshot(&config, &[]);
        let found: Vec<String> = apexes(&snapshot).iter().map(|a| a.name.to_ascii()).collect();
        assert_eq!(found, ["a.example.com.", "wild.example.net."]);
    }

    /// 100,000 owned names under one parent make one question upstream, not 100,000; a
    /// loaded zone's apex is asked about itself.
    #[test]
    fn names_outside_zones_are_asked_about_once_per_parent() {
        let name = |s: &str| Name::from_ascii(s).expect("name");
        let mut owned: Vec<Apex> = (0..1000).map(|i| Apex { name: name(&format!("r{i}.static.example.")), loaded: false }).collect();
        owned.push(Apex { name: name("corp.example."), loaded: true });
        owned.push(Apex { name: name("corp."), loaded: false });
        let asks = asks(owned);
        let keys: Vec<String> = asks.keys().map(Name::to_ascii).collect();
        assert_eq!(keys, ["corp.", "corp.example.", "static.example."], "a top-level name is asked about itself");
        assert_eq!(asks[&name("static.example.")].len(), 1000);
    }
}
