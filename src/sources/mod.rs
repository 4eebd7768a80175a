//! Sources of owned names. Each returns the whole set it knows — never a diff — as plain
//! [`crate::snapshot::Record`]s and [`crate::snapshot::Alias`]es with provenance, through a
//! pure conversion function that is unit-tested on its own.
//!
//! - [`aliases`]: the config file's `[[records]]` and `[[aliases]]`.
//! - [`vpc_endpoints`]: PrivateLink interface endpoints from EC2.
//! - [`route53`]: private hosted zones from Route 53.
//! - [`aws`]: what the AWS sources share (SDK settings, errors, rate limit).
//! - [`runner`]: the task each AWS source runs as: its schedule, backoff and status.
//!
//! Every AWS source kind implements [`Source`]; [`planned`] is the one place that says which
//! config sections make which sources. Adding a kind is a file implementing `Source` and a
//! line in `planned`.

pub mod aliases;
pub mod aws;
pub mod route53;
pub mod runner;
pub mod vpc_endpoints;

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use hickory_proto::rr::Name;
use serde::{Deserialize, Serialize};

use crate::{
    config::Config,
    dns::forwarder::Forwarder,
    events::Change,
    snapshot::{Alias, Record},
    sources::{
        aws::{FetchError, source_id},
        route53::{Route53Source, ZoneSummary},
        vpc_endpoints::{EndpointSummary, VpcEndpointSource},
    },
};

/// A future a source returns, boxed so that `Source` can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What every kind of AWS source does: ask for its whole set.
pub trait Source: Send + Sync + 'static {
    /// Asks AWS for everything the source covers and converts it. Items that cannot be
    /// published (an endpoint pending acceptance, a zone deleted since it was configured) are
    /// left out with their reason in [`SourceOutput::skipped`] and the rest is returned; an
    /// error means nothing could be learned this time, and the last good answer stays.
    fn fetch<'a>(&'a self, env: &'a Env) -> BoxFuture<'a, Result<SourceOutput, FetchError>>;

    /// Whether a change AWS reported (an event) may change this source's answer; the source
    /// may note what it names (a zone to read again whatever its record count, endpoints to
    /// watch until they settle). A source it concerns fetches again at once.
    fn concerns(&self, change: &Change) -> bool {
        let _ = change;
        false
    }

    /// Whether everything the changes named has reached a lasting state (an endpoint created
    /// `pending` becomes `available` with no further event): until then the source is asked
    /// again with growing intervals, up to 15 minutes after the change.
    fn settled(&self) -> bool {
        true
    }
}

/// What a fetch may use besides its own settings; the refresh loop replaces it on reload.
#[derive(Clone)]
pub struct Env {
    /// TTL of the records sources make (`answers.ttl`).
    pub ttl: u32,
    /// Seconds between refreshes (`refresh.interval_secs`).
    pub interval: Duration,
    /// Longest wait between retries of a failing source (`refresh.max_backoff_secs`).
    pub max_backoff: Duration,
    /// For Route 53 aliases to outside names, resolved at refresh time.
    pub forwarder: Arc<Forwarder>,
}

/// One source's last good answer: what the table is built from, and what the state file keeps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceOutput {
    /// The records.
    pub records: Vec<Record>,
    /// Aliases (Route 53 alias records), flattened when the table is built.
    #[serde(default)]
    pub aliases: Vec<Alias>,
    /// Endpoint ids and service names → regional DNS name, for config aliases.
    #[serde(default)]
    pub handles: BTreeMap<String, Name>,
    /// The endpoints behind the records, in brief (vpc_endpoints sources).
    #[serde(default)]
    pub endpoints: Vec<EndpointSummary>,
    /// The private zones whose records these are (route53 sources).
    #[serde(default)]
    pub zones: Vec<ZoneSummary>,
    /// Zones this source left out for another of the same name: (the winner's id, the zone).
    #[serde(default)]
    pub lost_zones: Vec<(String, ZoneSummary)>,
    /// What the fetch left out, and why (for the status page and the log; not for the table).
    #[serde(default)]
    pub skipped: Vec<String>,
    /// When the source answered (RFC 3339).
    pub fetched_at: String,
}

impl SourceOutput {
    /// Whether the two answers would build the same table: everything but when they were
    /// fetched and what was skipped. A fetch that says this of the last one is not published.
    pub fn same_content(&self, other: &Self) -> bool {
        self.records == other.records
            && self.aliases == other.aliases
            && self.handles == other.handles
            && self.endpoints == other.endpoints
            && self.zones == other.zones
            && self.lost_zones == other.lost_zones
    }
}

/// A source as the config names it: enough to set it up on its own task, and to tell on a
/// reload whether it changed.
pub struct Planned {
    /// Kind, region and role, with `#2`, `#3`… for a later source with the same three, so no
    /// two share a place in the state file.
    pub id: String,
    /// `vpc_endpoints` or `route53`.
    pub kind: &'static str,
    /// The region it asks.
    pub region: String,
    /// Its settings as text: two sources with the same text are the same source.
    pub settings: String,
    /// Sets the source up (SDK clients, credentials); run on the source's own task, so a slow
    /// credential provider holds up nothing else.
    pub build: Box<dyn FnOnce() -> BoxFuture<'static, Box<dyn Source>> + Send>,
}

/// The AWS sources `config` names, in config order (earlier sources win zones of one name).
pub fn planned(config: &Config) -> Vec<Planned> {
    let mut all = Vec::new();
    for source in &config.sources.vpc_endpoints {
        let c = source.get_ref().clone();
        let (region, settings) = (c.region.clone(), format!("{c:?}"));
        let id = source_id("vpc_endpoints", &c.region, c.role_arn.as_deref());
        let build = Box::new(move || -> BoxFuture<'static, Box<dyn Source>> {
            Box::pin(async move { Box::new(VpcEndpointSource::new(c).await) as Box<dyn Source> })
        });
        all.push(Planned { id, kind: "vpc_endpoints", region, settings, build });
    }
    for source in &config.sources.route53 {
        let c = source.get_ref().clone();
        let (region, settings) = (c.region.clone(), format!("{c:?}"));
        let id = source_id("route53", &c.region, c.role_arn.as_deref());
        let build = Box::new(move || -> BoxFuture<'static, Box<dyn Source>> {
            Box::pin(async move { Box::new(Route53Source::new(c).await) as Box<dyn Source> })
        });
        all.push(Planned { id, kind: "route53", region, settings, build });
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for planned in &mut all {
        let count = seen.entry(planned.id.clone()).or_default();
        *count += 1;
        if *count > 1 {
            planned.id = format!("{}#{count}", planned.id);
        }
    }
    all
}

/// One endpoint record's answer, for tests of what is built from answers.
#[cfg(test)]
pub(crate) fn sample_output() -> SourceOutput {
    let name = Name::from_ascii("vpce-1.svc.us-east-1.vpce.amazonaws.com.").unwrap();
    SourceOutput {
        records: vec![crate::snapshot::Record {
            name: name.clone(),
            ttl: 60,
            data: hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A(std::net::Ipv4Addr::new(10, 0, 0, 1))),
            provenance: crate::snapshot::Provenance { source: crate::snapshot::SourceKind::EndpointDns, origin: Arc::from("vpc_endpoints vpce-1") },
            weight: None,
        }],
        handles: [("vpce-1".to_owned(), name)].into(),
        fetched_at: "2026-11-21T15:00:00Z".into(),
        ..SourceOutput::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14 item 7: two Route 53 sources of one region and role keep separate state.
    #[test]
    fn sources_alike_get_ids_of_their_own() {
        let text = "[[sources.route53]]\nregion = \"us-east-1\"\nvpc_ids = [\"vpc-1\"]\n\
                    [[sources.route53]]\nregion = \"us-east-1\"\nvpc_ids = [\"vpc-2\"]\n\
                    [[sources.vpc_endpoints]]\nregion = \"us-east-1\"\n";
        let planned = planned(&Config::parse(text, "t.toml").unwrap());
        let ids: Vec<&str> = planned.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["vpc_endpoints/us-east-1", "route53/us-east-1", "route53/us-east-1#2"]);
        assert_ne!(planned[1].settings, planned[2].settings, "settings tell the two apart");
    }
}
