//! Names answered with what the upstreams say of another name, looked up when a source
//! refreshes: Route 53 aliases to outside targets (a load balancer, CloudFront), and the names
//! of service-network endpoints, whose addresses AWS publishes only in DNS (AWS PrivateLink
//! guide, "Access service networks through a VPC endpoint", DNS resolution: the endpoint's
//! names are public and answer its private addresses). One place keeps the rule for both:
//! TTL capped at the refresh interval, the last good answer kept through upstream failures.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use hickory_proto::rr::{Name, RecordType};

use crate::{
    dns::forwarder::{Ask, Forwarder},
    snapshot::{Provenance, Record, Weight},
    sources::output::SourceOutput,
};

/// A name answered with the upstreams' records of another (`target`; may be the name itself).
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalAlias {
    /// The alias name.
    pub name: Name,
    /// A or AAAA.
    pub rtype: RecordType,
    /// Where it points.
    pub target: Name,
    /// Its zone and set.
    pub provenance: Provenance,
    /// Its place among weighted alternatives, if it is one.
    pub weight: Option<Weight>,
    /// An empty answer is no news (a dual-stack name the upstreams give no AAAA): not
    /// reported as left out.
    pub optional: bool,
}

/// The last resolution of each name a source resolves upstream (name, type, target), kept
/// through upstream failures.
#[derive(Debug, Default)]
pub struct Resolutions {
    last: Mutex<HashMap<(Name, RecordType, Name), Vec<Record>>>,
    /// The source's last answer (the state file's, or kept over a reload), shared, not
    /// copied: its records are what a name keeps while the upstreams fail before they ever
    /// answered it. Taken by the first resolution.
    restored: Mutex<Option<Arc<SourceOutput>>>,
}

impl Resolutions {
    /// Keeps `last` (a restored answer) to fall back on until the upstreams answer.
    pub fn restore(&self, last: Arc<SourceOutput>) {
        *self.restored.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(last);
    }

    /// Resolves aliases to outside names through `forwarder`, all at once (the forwarder
    /// asks each target once however many aliases share it); each answer's TTL is capped at
    /// `max_ttl` (the refresh interval), so it is never served staler than one refresh. When
    /// the upstream fails (SERVFAIL, a timeout) the alias keeps its last good resolution: one
    /// bad moment upstream must not turn a name in the zone into an NXDOMAIN that clients
    /// cache. A definite answer (the target is gone) replaces it. Aliases left with nothing
    /// are returned as reasons, for the source's `skipped` (logged once, counted).
    pub async fn resolve(&self, forwarder: &Arc<Forwarder>, aliases: &[ExternalAlias], max_ttl: u32) -> (Vec<Record>, Vec<String>) {
        let mut lookups = tokio::task::JoinSet::new();
        for (i, alias) in aliases.iter().enumerate() {
            let (forwarder, ask) = (forwarder.clone(), Ask::new(alias.target.clone(), alias.rtype));
            lookups.spawn(async move { (i, forwarder.forward(&ask).await) });
        }
        let mut answers = vec![None; aliases.len()];
        while let Some(done) = lookups.join_next().await {
            if let Ok((i, answer)) = done {
                answers[i] = Some(answer);
            }
        }
        let last = self.last.lock().map(|last| last.clone()).unwrap_or_default();
        // A restored answer stands in once, for resolutions this process has not made yet:
        // from then on `last` carries what it gave.
        let restored = self.restored.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        // Of the restored records, those of the names resolved here, by name and type.
        let wanted: HashSet<(&Name, RecordType)> = aliases.iter().map(|a| (&a.name, a.rtype)).collect();
        let mut restored_records: HashMap<(Name, RecordType), Vec<Record>> = HashMap::new();
        for record in restored.iter().flat_map(|last| last.records.iter()) {
            let rtype = record.data.record_type();
            if wanted.contains(&(&record.name, rtype)) {
                restored_records.entry((record.name.clone(), rtype)).or_default().push(record);
            }
        }
        let (mut records, mut skipped, mut resolved) = (Vec::new(), Vec::new(), HashMap::new());
        for (alias, answer) in aliases.iter().zip(answers) {
            let key = (alias.name.clone(), alias.rtype, alias.target.clone());
            let failed = answer.as_ref().is_none_or(|a| a.rcode == hickory_proto::op::ResponseCode::ServFail);
            let found: Vec<Record> = match &answer {
                Some(answer) if !failed => answer
                    .answers
                    .iter()
                    .filter(|r| r.record_type() == alias.rtype)
                    .map(|r| Record {
                        name: alias.name.clone(),
                        ttl: r.ttl.min(max_ttl),
                        data: r.data.clone(),
                        provenance: alias.provenance.clone(),
                        weight: alias.weight.clone(),
                        az: None,
                    })
                    .collect(),
                _ => last.get(&key).or_else(|| restored_records.get(&(alias.name.clone(), alias.rtype))).cloned().unwrap_or_default(),
            };
            let expected_empty = alias.optional && !failed;
            if found.is_empty() && !expected_empty {
                let why = match &answer {
                    Some(answer) if !failed => format!("answered {:?} with no {}", answer.rcode, alias.rtype),
                    _ => "the upstreams did not answer".to_owned(),
                };
                skipped.push(format!("{} {}: alias to {} left out: {why}", alias.name, alias.rtype, alias.target));
            }
            records.extend(found.iter().cloned());
            resolved.insert(key, found);
        }
        if let Ok(mut last) = self.last.lock() {
            *last = resolved;
        }
        (records, skipped)
    }
}
