//! Source `route53`: private hosted zones, served as whole zones to everyone hubdns serves.
//!
//! [`Route53Source::zones`] finds the zones — every private zone associated with the given
//! VPCs (ListHostedZonesByVPC) and the zones listed by id — and reads each one's record sets
//! with ListResourceRecordSets, paging by hand (the SDK has no paginator for it) and refusing a
//! next-record token that repeats. A zone whose record-set count (GetHostedZone) has not
//! changed is re-read only every `reread_secs`, or when a change event names it: Route 53
//! has no serial, so without events a change that keeps the count (an edited value) is seen
//! within that bound. Every call waits on the account's Route 53 budget
//! ([`crate::sources::aws::budget`]: by default half of AWS's bucket), shared by every source
//! reading that account, so hubdns leaves room for the account's other tools.
//!
//! [`records_from_zones`] is the pure conversion, tested on hand-built SDK values:
//! - names are unescaped (Route 53 writes `*` as `\052` and other octets as `\ooo`);
//! - values are parsed from their presentation format by hickory (A, AAAA, CNAME, TXT, MX,
//!   SRV, PTR, CAA, NS, SOA); other types are skipped and reported;
//! - a zone nested in another loaded zone owns its names: the parent's records there are left
//!   out, as Route 53 resolves the most specific zone;
//! - routing policies are chosen as Route 53 answers inside the hub VPC (see [`select`]);
//!   health checks are not evaluated;
//! - an alias to an interface endpoint (a `vpce-…` name) or to a name in a loaded
//!   zone becomes a typed [`Alias`], flattened to that name's addresses when the table is built;
//!   an alias to anything else (ELB, CloudFront, S3 website) is resolved through the forwarder
//!   at refresh time ([`Resolutions::resolve`]), its TTL capped at the refresh
//!   interval, its last good answer kept while the upstream fails. An alias whose target
//!   does not exist is logged and left out;
//! - of private zones with the same name, one wins whole (see [`records_from_zones`]).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use aws_sdk_route53::{
    Client,
    error::{ProvideErrorMetadata, SdkError},
    types::{ResourceRecordSet, ResourceRecordSetFailover, RrType, VpcRegion},
};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::time::Instant;

use crate::{
    az::Location,
    config::{Accounts, AwsAccess, Route53Config},
    sources::output::ZoneSummary,
    snapshot::{Alias, Provenance, Record, SourceKind, Weight, absolute_names},
    sources::{
        BoxFuture, Build, Entry, Env, Source, SourceOutput,
        aws::{ApiFamily, FetchError, TokenBucket, budget, item_error, now_rfc3339, same_account, sdk_config, sdk_message},
        route53_affinity::{SetKey, send_with_affinities, set_key},
        upstream::{ExternalAlias, Resolutions},
    },
    events::{Change, Service},
};


/// GetHostedZone's errors that speak for the zone asked about (Route 53 API reference,
/// GetHostedZone, "Errors"): it was deleted (`NoSuchHostedZone`), or its id in `zone_ids` is
/// malformed (`InvalidInput`). The zone is left out; the other zones are read.
const ZONE_GONE_OR_MALFORMED: &[&str] = &["NoSuchHostedZone", "InvalidInput"];

/// ListResourceRecordSets's: the zone was deleted between GetHostedZone and this call. Its
/// `InvalidInput` is about the page request hubdns built, so it fails the fetch instead.
const ZONE_GONE: &[&str] = &["NoSuchHostedZone"];

/// ListHostedZonesByVPC's first page: `InvalidInput` for a VPC id it does not take.
const VPC_GONE: &[&str] = &["InvalidInput"];

/// The suffix of interface endpoint DNS names, whose addresses the endpoint source knows.
const VPCE_SUFFIX: &str = ".vpce.amazonaws.com";

/// One hosted zone as Route 53 listed it.
#[derive(Debug, Clone)]
pub struct Zone {
    /// The zone id, without the `/hostedzone/` prefix.
    pub id: String,
    /// The zone's name as Route 53 wrote it (escaped, with a trailing dot).
    pub name: String,
    /// Where it stands among zones of the same name: the index in `vpc_ids` of the first VPC
    /// it is associated with (zones listed only in `zone_ids` come after every VPC).
    pub rank: usize,
    /// Every record set.
    pub record_sets: Vec<ResourceRecordSet>,
    /// The AZ-affinity sets' locations, by (name, type, set identifier) as the SDK spells
    /// them: read from the raw body, which the SDK's model drops ([`route53_affinity`]).
    pub affinities: HashMap<SetKey, Location>,
}

impl Zone {
    /// The location of an AZ-affinity set of this zone.
    pub fn location_of(&self, set: &ResourceRecordSet) -> Option<&Location> {
        self.affinities.get(&set_key(set)?)
    }
}

/// Facts the conversion needs besides the zones.
#[derive(Debug, Clone)]
pub struct ZoneContext {
    /// The hub's region: latency records for it win.
    pub region: String,
    /// TTL of flattened aliases (Route 53 aliases have none of their own).
    pub alias_ttl: u32,
}

/// What [`records_from_zones`] made of the zones.
#[derive(Debug, Default)]
pub struct Converted {
    /// The zones served (of several with one name, the one that won).
    pub zones: Vec<ZoneSummary>,
    /// Zones left out for one of the same name: (the winner's id, the zone left out).
    pub lost_zones: Vec<(String, ZoneSummary)>,
    /// Records, weighted alternatives included.
    pub records: crate::record_list::RecordList,
    /// Aliases to endpoint names and to names in loaded zones.
    pub aliases: Vec<Alias>,
    /// Aliases to resolve through the forwarder.
    pub external: Vec<ExternalAlias>,
    /// What was left out, and why.
    pub skipped: Vec<String>,
}

/// Turns zones into records, aliases and external aliases. Pure: no I/O, no clock.
///
/// Of private zones with the same name (two VPCs, say), one view wins whole, never a mix:
/// the zone associated with the earliest VPC in `vpc_ids`, then the lowest zone id; the
/// others are left out and reported. (Route 53 answers each VPC from the zone associated
/// with it; hubdns answers every client as the hub does.)
pub fn records_from_zones(zones: &[Zone], ctx: &ZoneContext) -> Converted {
    let mut out = Converted::default();
    let mut apexes: Vec<(Name, &Zone)> = Vec::new();
    let mut ranked: Vec<&Zone> = zones.iter().collect();
    ranked.sort_by(|a, b| (a.rank, &a.id).cmp(&(b.rank, &b.id)));
    for zone in ranked {
        let Some(apex) = unescape(&zone.name) else {
            out.skipped.push(format!("zone {}: cannot read its name {:?}", zone.id, zone.name));
            continue;
        };
        if let Some((_, winner)) = apexes.iter().find(|(other, _)| *other == apex) {
            out.skipped.push(format!(
                "zone {} ({apex}) left out: zone {} has the same name and is associated with an earlier VPC in vpc_ids",
                zone.id, winner.id
            ));
            out.lost_zones.push((winner.id.clone(), ZoneSummary { id: zone.id.clone(), name: apex }));
            continue;
        }
        apexes.push((apex, zone));
    }
    out.zones = apexes.iter().map(|(apex, zone)| ZoneSummary { id: zone.id.clone(), name: apex.clone() }).collect();
    // What the zones hold, by name and type, to judge an alias's target health by.
    let present: HashSet<(Name, u16)> = apexes
        .iter()
        .flat_map(|(_, zone)| &zone.record_sets)
        .filter(|set| !set.resource_records().is_empty() || set.alias_target().is_some())
        .filter_map(|set| Some((unescape(set.name())?.to_lowercase(), u16::from(record_type(set.r#type())))))
        .collect();
    let alias_target_exists = |set: &ResourceRecordSet| {
        let Some(target) = set.alias_target().and_then(|a| unescape(a.dns_name())) else { return false };
        // A target outside the loaded zones (an endpoint, a load balancer) cannot be judged.
        !apexes.iter().any(|(apex, _)| apex.zone_of(&target))
            || present.contains(&(target.to_lowercase(), u16::from(record_type(set.r#type()))))
    };
    for (apex, zone) in &apexes {
        // Group the zone's sets by name and type: routing policies choose among a group.
        let mut groups: BTreeMap<(String, u16), (Name, Vec<&ResourceRecordSet>)> = BTreeMap::new();
        for set in &zone.record_sets {
            let Some(name) = unescape(set.name()) else {
                out.skipped.push(format!("zone {}: cannot read the name {:?}", zone.id, set.name()));
                continue;
            };
            // A more specific loaded zone owns this name (the parent's delegation included).
            if apexes.iter().any(|(other, _)| other != apex && apex.zone_of(other) && other.zone_of(&name)) {
                out.skipped.push(format!("zone {}: {name} belongs to a more specific loaded zone", zone.id));
                continue;
            }
            let key = (name.to_lowercase().to_ascii(), u16::from(record_type(set.r#type())));
            groups.entry(key).or_insert_with(|| (name, Vec::new())).1.push(set);
        }
        for (name, sets) in groups.into_values() {
            for (set, weight) in select(&sets, &ctx.region, &alias_target_exists, &|s| zone.location_of(s).cloned()) {
                convert_set(&name, set, weight, zone, apexes.iter().map(|(a, _)| a), ctx, &mut out);
            }
        }
    }
    out
}

/// The record sets of one name and type that answer, as Route 53 answers a query from inside
/// the hub VPC, with a weight for those chosen per query:
/// - weighted: every set, each with its weight (the draw happens per query);
/// - failover: PRIMARY unless it is unhealthy by what the zones show — no data, or an alias
///   with Evaluate Target Health to a name in the loaded zones that has no records of its
///   type (Route 53 developer guide, "Evaluate target health") — then SECONDARY; health
///   checks are not evaluated;
/// - multivalue: every set, merged into one answer;
/// - latency: the set for the hub's region, else the first by set identifier;
/// - geolocation: the default (`*`) set, else the first by set identifier;
/// - AZ-affinity: every set with its location, chosen per query by the client's AZ
///   ([`crate::snapshot::Node::located`]); an alias evaluating target health to a name
///   without records is unhealthy and left out while a healthy set remains (Route 53 API
///   reference, `AZAffinity`: fall back to a less specific location when a record is
///   unhealthy; every one unhealthy → answer as if healthy);
/// - anything else with set identifiers (geoproximity, CIDR): the first by set identifier.
pub fn select<'s>(
    sets: &[&'s ResourceRecordSet],
    region: &str,
    alias_target_exists: &dyn Fn(&ResourceRecordSet) -> bool,
    location_of: &dyn Fn(&ResourceRecordSet) -> Option<Location>,
) -> Vec<(&'s ResourceRecordSet, Option<Alternative>)> {
    let mut sets: Vec<&ResourceRecordSet> = sets.to_vec();
    sets.sort_by(|a, b| a.set_identifier().cmp(&b.set_identifier()));
    let Some(first) = sets.first().copied() else { return Vec::new() };
    let healthy = |s: &&ResourceRecordSet| match s.alias_target() {
        Some(alias) => !alias.evaluate_target_health() || alias_target_exists(s),
        None => !s.resource_records().is_empty(),
    };
    if sets.iter().any(|s| location_of(s).is_some()) {
        let located: Vec<(&ResourceRecordSet, Location)> = sets.iter().filter_map(|s| Some((*s, location_of(s)?))).collect();
        let any_healthy = located.iter().any(|(s, _)| healthy(s));
        return located.into_iter().filter(|(s, _)| !any_healthy || healthy(s)).map(|(s, l)| (s, Some(Alternative::Located(l)))).collect();
    }
    if first.set_identifier().is_none() || sets.len() == 1 && first.weight().is_none() {
        return vec![(first, None)];
    }
    if sets.iter().any(|s| s.weight().is_some()) {
        return sets.into_iter().map(|s| (s, Some(Alternative::Weighted(u32::try_from(s.weight().unwrap_or(0)).unwrap_or(0))))).collect();
    }
    if sets.iter().any(|s| s.failover().is_some()) {
        let has_data = |s: &&&ResourceRecordSet| healthy(s);
        let primary = sets.iter().find(|s| s.failover() == Some(&ResourceRecordSetFailover::Primary)).filter(has_data);
        let secondary = sets.iter().find(|s| s.failover() == Some(&ResourceRecordSetFailover::Secondary));
        return primary.or(secondary).map(|s| vec![(*s, None)]).unwrap_or_default();
    }
    if sets.iter().any(|s| s.multi_value_answer() == Some(true)) {
        return sets.into_iter().map(|s| (s, None)).collect();
    }
    if sets.iter().any(|s| s.region().is_some()) {
        let local = sets.iter().find(|s| s.region().is_some_and(|r| r.as_str() == region));
        return vec![(*local.unwrap_or(&first), None)];
    }
    if sets.iter().any(|s| s.geo_location().is_some()) {
        let default = sets.iter().find(|s| s.geo_location().and_then(|g| g.country_code()) == Some("*"));
        return vec![(*default.unwrap_or(&first), None)];
    }
    vec![(first, None)]
}

/// How a chosen set stands among its name's alternatives.
#[derive(Debug, Clone, PartialEq)]
pub enum Alternative {
    /// Drawn per query by this weight (weighted routing).
    Weighted(u32),
    /// Chosen per query by the client's AZ (AZ-affinity routing).
    Located(Location),
}

/// One chosen record set of `name` into records, an alias, or an external alias.
fn convert_set<'a>(
    name: &Name,
    set: &ResourceRecordSet,
    weight: Option<Alternative>,
    zone: &Zone,
    mut apexes: impl Iterator<Item = &'a Name>,
    ctx: &ZoneContext,
    out: &mut Converted,
) {
    let name = name.clone();
    let rtype = record_type(set.r#type());
    let origin = match (set.set_identifier(), &weight) {
        (Some(id), Some(Alternative::Located(at))) => format!("route53 zone={} set={id} location={}:{}", zone.id, at.kind, at.id),
        (Some(id), _) => format!("route53 zone={} set={id}", zone.id),
        (None, _) => format!("route53 zone={}", zone.id),
    };
    let weight = weight.map(|alternative| {
        let set = Arc::from(set.set_identifier().unwrap_or_default());
        match alternative {
            Alternative::Weighted(weight) => Weight { set, weight, location: None },
            Alternative::Located(location) => Weight { set, weight: 0, location: Some(Box::new(location)) },
        }
    });
    let provenance = Provenance::new(SourceKind::Route53, origin);

    if let Some(alias) = set.alias_target() {
        let Some(target) = unescape(alias.dns_name()) else {
            out.skipped.push(format!("{name} {rtype}: cannot read the alias target {:?}", alias.dns_name()));
            return;
        };
        let in_zones = apexes.any(|apex| apex.zone_of(&target));
        if in_zones || is_endpoint_name(&target) && matches!(rtype, RecordType::A | RecordType::AAAA) {
            // Route 53 answers an alias with its target's TTL (an endpoint's names: answers.ttl);
            // an alias of any type may name a record set of its type in the same zone.
            out.aliases.push(Alias { name, target, ttl: None, provenance, rtype: Some(rtype), weight });
        } else if !matches!(rtype, RecordType::A | RecordType::AAAA) {
            out.skipped.push(format!("{name} {rtype}: an alias of this type must target a record in a loaded zone"));
        } else {
            out.external.push(ExternalAlias { name, rtype, target, provenance, weight, optional: false });
        }
        return;
    }

    if !SERVED.contains(&rtype) && rtype != spf() {
        out.skipped.push(format!("{name} {rtype}: type not served"));
        return;
    }
    let ttl = set.ttl().and_then(|t| u32::try_from(t).ok()).unwrap_or(ctx.alias_ttl);
    for value in set.resource_records() {
        let data = match rtype {
            RecordType::TXT => txt_from_route53(value.value()),
            _ if rtype == spf() => spf_from_route53(value.value()),
            _ => RData::try_from_str(rtype, value.value()).map_err(|e| e.to_string()).map(|mut data| {
                // Route 53's names are fully qualified, final dot or not.
                absolute_names(&mut data);
                data
            }),
        };
        match data {
            Ok(data) => out.records.push(Record { name: name.clone(), ttl, data, provenance: provenance.clone(), weight: weight.clone(), az: None }),
            Err(error) => out.skipped.push(format!("{name} {rtype} {:?}: {error}", value.value())),
        }
    }
}

/// An SPF value (RFC 7208 §3.1: TXT's format under type 99), which Route 53 still serves. hickory
/// has no SPF type of its own, so the TXT data goes out as type 99's opaque RDATA.
fn spf_from_route53(value: &str) -> Result<RData, String> {
    use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
    let RData::TXT(txt) = txt_from_route53(value)? else { return Err("not text".into()) };
    let mut bytes = Vec::new();
    txt.emit(&mut BinEncoder::new(&mut bytes)).map_err(|e| e.to_string())?;
    Ok(RData::Unknown { code: spf(), rdata: hickory_proto::rr::rdata::NULL::with(bytes) })
}

/// Type 99, SPF, which hickory does not name.
fn spf() -> RecordType {
    RecordType::from(99)
}

/// A TXT value as Route 53 writes it: character strings, each quoted (or a bare word), where
/// `\ooo` is the byte with that octal value and `\x` is `x` — byte by byte, so `"caf\303\251"`
/// is the UTF-8 of `café` (Route 53 developer guide, "Supported DNS record types", TXT record
/// type: <https://docs.aws.amazon.com/Route53/latest/DeveloperGuide/ResourceRecordTypes.html#TXTFormat>).
/// hickory's presentation-format parser reads such escapes as characters, not bytes.
fn txt_from_route53(value: &str) -> Result<RData, String> {
    crate::zonefile::txt_rdata(value, crate::zonefile::Escape::Octal)
}

/// Whether `name` is an interface endpoint's DNS name, whose addresses the endpoint source
/// publishes: `vpce-…` first label (regional and zonal names) or a `vpce.amazonaws.com` name.
fn is_endpoint_name(name: &Name) -> bool {
    let text = name.to_ascii().to_ascii_lowercase();
    text.starts_with("vpce-") || text.trim_end_matches('.').ends_with(VPCE_SUFFIX)
}

/// The record types served from zones.
const SERVED: [RecordType; 15] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::TXT,
    RecordType::MX,
    RecordType::SRV,
    RecordType::PTR,
    RecordType::CAA,
    RecordType::NS,
    RecordType::SOA,
    RecordType::NAPTR,
    RecordType::SSHFP,
    RecordType::TLSA,
    RecordType::SVCB,
    RecordType::HTTPS,
];

fn record_type(rtype: &RrType) -> RecordType {
    match rtype {
        RrType::Spf => spf(),
        other => other.as_str().parse().unwrap_or(RecordType::Unknown(0)),
    }
}

/// A name as Route 53 writes it: `\ooo` is the octet with that octal value (`\052` is `*`),
/// `\x` is `x`. `None` if the escapes or labels are malformed.
pub fn unescape(text: &str) -> Option<Name> {
    let mut labels: Vec<Vec<u8>> = vec![Vec::new()];
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'\\' => {
                let first = bytes.next()?;
                if first.is_ascii_digit() {
                    let (second, third) = (bytes.next()?, bytes.next()?);
                    let digits = [first, second, third];
                    if !digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                        return None;
                    }
                    let value = digits.iter().fold(0u16, |acc, d| acc * 8 + u16::from(d - b'0'));
                    labels.last_mut()?.push(u8::try_from(value).ok()?);
                } else {
                    labels.last_mut()?.push(first);
                }
            }
            b'.' => labels.push(Vec::new()),
            b => labels.last_mut()?.push(b),
        }
    }
    if labels.last().is_some_and(Vec::is_empty) {
        labels.pop(); // the trailing dot
    }
    let mut name = Name::from_labels(labels).ok()?;
    name.set_fqdn(true);
    Some(name)
}

/// A zone read earlier, kept until its record-set count changes or it is due a re-read.
struct CachedZone {
    count: Option<i64>,
    read_at: Instant,
    zone: Zone,
}

/// One `[[sources.route53]]` entry.
pub struct Route53Source {
    config: Route53Config,
    client: Client,
    /// The account's Route 53 budget, shared with its other Route 53 sources.
    limiter: Arc<TokenBucket>,
    zones: Mutex<HashMap<String, CachedZone>>,
    /// Zones named by change events: read again at the next fetch, whatever their count.
    reread: Mutex<HashSet<String>>,
    /// The last resolution of each outside alias, kept through upstream failures.
    external: Resolutions,
}

impl Route53Source {
    /// A source for `config`, with credentials from the standard chain (or the role).
    /// `api_share` is the part of the account's Route 53 request budget hubdns may use.
    pub async fn new(config: Route53Config, api_share: f64) -> Self {
        let shared = sdk_config(&config.access()).await;
        Self {
            client: crate::with_endpoint!(aws_sdk_route53, &shared, config.endpoint_url.as_deref()),
            limiter: budget(ApiFamily::Route53, config.access().account(), None, api_share),
            config,
            zones: Mutex::new(HashMap::new()),
            reread: Mutex::new(HashSet::new()),
            external: Resolutions::default(),
        }
    }

    fn error(&self, call: &'static str) -> impl Fn(String) -> FetchError + '_ {
        move |message| FetchError { call, region: self.config.region.clone(), message }
    }

    /// Reads every zone this source covers; unchanged zones come from the last read. A zone
    /// or VPC that Route 53 says is gone or invalid is left out with its reason (second
    /// place) and every other zone is read as usual.
    pub async fn zones(&self) -> Result<(Vec<Zone>, Vec<String>), FetchError> {
        let mut skipped = Vec::new();
        let mut wanted: BTreeMap<String, usize> = BTreeMap::new(); // id → rank
        'vpcs: for (rank, vpc) in self.config.vpc_ids.iter().enumerate() {
            let mut token: Option<String> = None;
            let mut found = Vec::new();
            loop {
                self.limiter.acquire().await;
                let page = self
                    .client
                    .list_hosted_zones_by_vpc()
                    .vpc_id(vpc)
                    .vpc_region(VpcRegion::from(self.config.region.as_str()))
                    .set_next_token(token.clone())
                    .send()
                    .await;
                let page = match page {
                    Ok(page) => page,
                    // Only the first page speaks for the VPC; a later page's error is ours.
                    Err(error) => match item_error(&error, if token.is_none() { VPC_GONE } else { &[] }) {
                        Some(reason) => {
                            skipped.push(format!("VPC {vpc}: {reason}"));
                            continue 'vpcs;
                        }
                        None => return Err(self.error("ListHostedZonesByVPC")(sdk_message(&error))),
                    },
                };
                found.extend(page.hosted_zone_summaries().iter().map(|zone| zone_id(zone.hosted_zone_id())));
                match page.next_token() {
                    Some(next) if Some(next) != token.as_deref() => token = Some(next.to_owned()),
                    _ => break,
                }
            }
            for id in found {
                wanted.entry(id).or_insert(rank);
            }
        }
        for id in &self.config.zone_ids {
            wanted.entry(zone_id(id)).or_insert(self.config.vpc_ids.len());
        }

        let mut zones = Vec::with_capacity(wanted.len());
        for (id, rank) in &wanted {
            match self.zone(id, *rank).await {
                Ok(zone) => zones.push(zone),
                Err(Blamed::Item(reason)) => skipped.push(format!("zone {id}: {reason}")),
                Err(Blamed::Fetch(error)) => return Err(error),
            }
        }
        // Zones no longer covered leave the cache with the fetch that stopped asking for them,
        // and events about zones this source does not read are forgotten.
        if let Ok(mut cache) = self.zones.lock() {
            cache.retain(|id, _| wanted.contains_key(id));
        }
        if let Ok(mut reread) = self.reread.lock() {
            reread.retain(|id| wanted.contains_key(id));
        }
        Ok((zones, skipped))
    }

    /// One zone: from the cache when its record-set count is unchanged and it was read less
    /// than `reread_secs` ago, else read whole.
    async fn zone(&self, id: &str, rank: usize) -> Result<Zone, Blamed> {
        self.limiter.acquire().await;
        let hosted = self.client.get_hosted_zone().id(id).send().await.map_err(|e| self.blame("GetHostedZone", &e, ZONE_GONE_OR_MALFORMED))?;
        let Some(hosted) = hosted.hosted_zone() else {
            return Err(Blamed::Item("GetHostedZone returned no zone".into()));
        };
        let count = hosted.resource_record_set_count();
        let reread = Duration::from_secs(self.config.reread_secs);
        let changed = self.reread.lock().is_ok_and(|r| r.contains(id));
        if !changed && let Some(zone) = self.cached(id, count, reread) {
            return Ok(Zone { rank, ..zone });
        }
        let (record_sets, affinities) = self.record_sets(id).await?;
        if let Ok(mut reread) = self.reread.lock() {
            reread.remove(id);
        }
        let zone = Zone { id: id.to_owned(), name: hosted.name().to_owned(), rank, record_sets, affinities };
        self.remember(id, count, &zone);
        Ok(zone)
    }

    /// Whether an error about one zone leaves out that zone or fails the fetch.
    fn blame<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug + 'static>(
        &self,
        call: &'static str,
        error: &SdkError<E, R>,
        codes: &[&str],
    ) -> Blamed {
        match item_error(error, codes) {
            Some(reason) => Blamed::Item(reason),
            None => Blamed::Fetch(self.error(call)(sdk_message(error))),
        }
    }

    fn cached(&self, id: &str, count: Option<i64>, reread: Duration) -> Option<Zone> {
        let zones = self.zones.lock().ok()?;
        let cached = zones.get(id)?;
        (cached.count == count && count.is_some() && cached.read_at.elapsed() < reread).then(|| cached.zone.clone())
    }

    fn remember(&self, id: &str, count: Option<i64>, zone: &Zone) {
        if let Ok(mut zones) = self.zones.lock() {
            zones.insert(id.to_owned(), CachedZone { count, read_at: Instant::now(), zone: zone.clone() });
        }
    }

    /// Every record set of zone `id`, paging by hand.
    /// With the AZ-affinity sets' locations, which the SDK's model drops: read from each
    /// page's raw body ([`route53_affinity`]); a body that cannot be read fails the fetch, as
    /// serving those sets without their policy would answer wrongly.
    async fn record_sets(&self, id: &str) -> Result<(Vec<ResourceRecordSet>, HashMap<SetKey, Location>), Blamed> {
        let mut sets = Vec::new();
        let mut affinities = HashMap::new();
        let mut start: Option<(String, RrType, Option<String>)> = None;
        loop {
            self.limiter.acquire().await;
            let mut call = self.client.list_resource_record_sets().hosted_zone_id(id);
            if let Some((name, rtype, identifier)) = &start {
                call = call.start_record_name(name).start_record_type(rtype.clone()).set_start_record_identifier(identifier.clone());
            }
            let (page, located) = send_with_affinities(call).await.map_err(|e| self.blame("ListResourceRecordSets", &e, ZONE_GONE))?;
            let located = located.map_err(|e| Blamed::Fetch(self.error("ListResourceRecordSets")(format!("zone {id}: AZ-affinity sets unreadable: {e}"))))?;
            affinities.extend(located.into_map());
            sets.extend(page.resource_record_sets().iter().cloned());
            if !page.is_truncated() {
                return Ok((sets, affinities));
            }
            let next = (
                page.next_record_name().unwrap_or_default().to_owned(),
                page.next_record_type().cloned().unwrap_or(RrType::A),
                page.next_record_identifier().map(str::to_owned),
            );
            if start.as_ref() == Some(&next) {
                let repeats = format!("zone {id}: the next-record token repeats ({})", next.0);
                return Err(Blamed::Fetch(self.error("ListResourceRecordSets")(repeats)));
            }
            start = Some(next);
        }
    }
}

/// Why one zone could not be read.
enum Blamed {
    /// Route 53 says the zone is gone or its id invalid: leave it out.
    Item(String),
    /// Anything else: the fetch fails, and the source keeps its last good answer.
    Fetch(FetchError),
}

impl Entry for Route53Config {
    fn kind(&self) -> &'static str {
        "route53"
    }

    fn access(&self) -> AwsAccess<'_> {
        Route53Config::access(self)
    }

    fn account_settings(&self) -> (Option<&Accounts>, Option<&str>, Option<&str>, Option<&str>) {
        Route53Config::account_settings(self)
    }

    fn scope(&self) -> String {
        self.vpc_ids.iter().chain(&self.zone_ids).cloned().collect::<Vec<_>>().join("+")
    }

    fn through(&self, role_arn: Option<String>, api_share: f64) -> (String, Build) {
        let config = Self { role_arn, accounts: None, role_name: None, organization_role_arn: None, ..self.clone() };
        let settings = format!("{config:?} share={api_share}");
        (settings, Box::new(move || Box::pin(async move { Box::new(Route53Source::new(config, api_share).await) as Box<dyn Source> })))
    }
}

impl Source for Route53Source {
    /// Route 53 is global: every zone change concerns every Route 53 source of the account.
    /// The zones it names are read again whatever their record count (an edited value keeps
    /// the count).
    fn concerns(&self, change: &Change) -> bool {
        let account = self.config.access().account();
        if change.service != Service::Route53 || !same_account(account, change.account.as_deref()) {
            return false;
        }
        if let Ok(mut reread) = self.reread.lock() {
            reread.extend(change.zone_ids.iter().cloned());
        }
        true
    }

    fn fetch<'a>(&'a self, env: &'a Env) -> BoxFuture<'a, Result<SourceOutput, FetchError>> {
        Box::pin(async move {
            let (zones, mut skipped) = self.zones().await?;
            let ctx = ZoneContext { region: self.config.region.clone(), alias_ttl: env.ttl };
            let mut converted = records_from_zones(&zones, &ctx);
            skipped.append(&mut converted.skipped);
            let max_ttl = u32::try_from(env.interval.as_secs()).unwrap_or(u32::MAX);
            let (external, unresolved) = self.external.resolve(&env.forwarder, &converted.external, max_ttl).await;
            converted.records.extend(external);
            converted.records.compact();
            skipped.extend(unresolved);
            Ok(SourceOutput {
                records: converted.records,
                aliases: converted.aliases,
                zones: converted.zones,
                lost_zones: converted.lost_zones,
                skipped,
                fetched_at: now_rfc3339(),
                ..SourceOutput::default()
            })
        })
    }
}

/// `/hostedzone/Z123` → `Z123`.
fn zone_id(id: &str) -> String {
    id.trim_start_matches("/hostedzone/").to_owned()
}

#[cfg(test)]
mod tests {
    //! Conversion tests on SDK values shaped like real ListResourceRecordSets responses.

    use aws_sdk_route53::types::{AliasTarget, GeoLocation, ResourceRecord, ResourceRecordSetRegion};

    use super::*;

    fn set(name: &str, rtype: RrType, ttl: i64, values: &[&str]) -> aws_sdk_route53::types::builders::ResourceRecordSetBuilder {
        let mut b = ResourceRecordSet::builder().name(name).r#type(rtype).ttl(ttl);
        for v in values {
            b = b.resource_records(ResourceRecord::builder().value(*v).build().expect("value"));
        }
        b
    }

    fn alias(name: &str, target: &str) -> ResourceRecordSet {
        ResourceRecordSet::builder()
            .name(name)
            .r#type(RrType::A)
            .alias_target(AliasTarget::builder().hosted_zone_id("Z7HUB22UULQXV").dns_name(target).evaluate_target_health(false).build().expect("alias"))
            .build()
            .expect("set")
    }

    fn ctx() -> ZoneContext {
        ZoneContext { region: "us-east-1".into(), alias_ttl: 60 }
    }

    fn zone(id: &str, name: &str, record_sets: Vec<ResourceRecordSet>) -> Zone {
        Zone { id: id.into(), name: name.into(), rank: 0, record_sets, affinities: HashMap::new() }
    }

    /// Issue 14 item 7: two private zones of one name are never merged; the zone of the first
    /// VPC in `vpc_ids` wins whole.
    #[test]
    fn of_zones_with_one_name_the_first_vpcs_wins_whole() {
        let soa = |serial: &str| set("corp.example.", RrType::Soa, 900, &[&format!("ns-1.awsdns-1.co.uk. awsdns-hostmaster.amazon.com. {serial} 7200 900 1209600 86400")]).build().expect("set");
        let second_vpc = Zone {
            rank: 1,
            ..zone("ZAAA", "corp.example.", vec![soa("2"), set("only-b.corp.example.", RrType::A, 60, &["10.0.0.2"]).build().expect("set")])
        };
        let first_vpc = zone("ZZZZ", "corp.example.", vec![soa("1"), set("only-a.corp.example.", RrType::A, 60, &["10.0.0.1"]).build().expect("set")]);
        let out = records_from_zones(&[second_vpc, first_vpc], &ctx());
        assert_eq!(out.zones, [ZoneSummary { id: "ZZZZ".into(), name: Name::from_ascii("corp.example.").expect("name") }]);
        assert!(out.records.iter().all(|r| r.provenance.origin.text().contains("zone=ZZZZ")), "{:?}", out.records);
        assert!(out.records.iter().any(|r| r.name.to_ascii() == "only-a.corp.example."));
        assert!(out.skipped.iter().any(|s| s.contains("ZAAA") && s.contains("same name")), "{:?}", out.skipped);
        assert_eq!(out.lost_zones.iter().map(|(w, z)| (w.as_str(), z.id.as_str())).collect::<Vec<_>>(), [("ZZZZ", "ZAAA")], "a conflict");
    }

    #[test]
    fn route53_escapes_are_octal() {
        assert_eq!(unescape("\\052.corp.example.").expect("name").to_ascii(), "*.corp.example.");
        assert_eq!(unescape("a\\040b.example.").expect("name").iter().next(), Some(&b"a b"[..]));
        assert_eq!(unescape("dot\\.in.label.").expect("name").iter().next(), Some(&b"dot.in"[..]));
        assert_eq!(unescape("plain.example").expect("name").to_ascii(), "plain.example.");
        assert!(unescape("bad\\09x.example.").is_none(), "9 is not octal");
        assert!(unescape("cut\\05").is_none());
    }

    #[test]
    fn every_plain_type_becomes_records() {
        let sets = vec![
            set("corp.example.", RrType::Soa, 900, &["ns-1.awsdns-1.co.uk. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400"]),
            set("corp.example.", RrType::Ns, 172800, &["ns-1.awsdns-1.co.uk."]),
            set("api.corp.example.", RrType::A, 300, &["10.1.0.1", "10.1.0.2"]),
            set("api.corp.example.", RrType::Aaaa, 300, &["fd00::1"]),
            set("www.corp.example.", RrType::Cname, 300, &["api.corp.example"]),
            set("corp.example.", RrType::Txt, 300, &["\"v=spf1 -all\"", "\"two\" \"strings\""]),
            set("corp.example.", RrType::Mx, 300, &["10 mail.corp.example."]),
            set("_ldap._tcp.corp.example.", RrType::Srv, 300, &["0 10 389 dc1.corp.example."]),
            set("1.0.1.10.in-addr.arpa.", RrType::Ptr, 300, &["api.corp.example."]),
            set("corp.example.", RrType::Caa, 300, &["0 issue \"amazon.com\""]),
            set("\\052.apps.corp.example.", RrType::A, 60, &["10.1.9.9"]),
            set("corp.example.", RrType::Spf, 300, &["\"v=spf1 -all\""]),
            set("naptr.corp.example.", RrType::Naptr, 300, &["100 10 \"u\" \"E2U+sip\" \"!^.*$!sip:info@corp.example!\" ."]),
            set("host.corp.example.", RrType::Sshfp, 300, &["1 1 123456789abcdef67890123456789abcdef67890"]),
            set("_443._tcp.corp.example.", RrType::Tlsa, 300, &["3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"]),
            set("_svc.corp.example.", RrType::Svcb, 300, &["1 svc.corp.example. alpn=h2"]),
            set("corp.example.", RrType::Https, 300, &["1 . alpn=h2"]),
        ];
        let sets = sets.into_iter().map(|b| b.build().expect("set")).collect();
        let out = records_from_zones(&[zone("Z1", "corp.example.", sets)], &ctx());
        let types: Vec<RecordType> = out.records.iter().map(|r| r.data.record_type()).collect();
        let cname = out.records.iter().find(|r| r.data.record_type() == RecordType::CNAME).expect("CNAME");
        assert_eq!(cname.data.to_string(), "api.corp.example.", "a name without its final dot is still absolute");
        for t in SERVED {
            assert!(types.contains(&t), "{t} served: {types:?}");
        }
        assert_eq!(out.records.len(), 19);
        assert!(out.records.iter().any(|r| r.name.is_wildcard()), "\\052 becomes a wildcard");
        assert!(out.records.iter().all(|r| r.provenance.source == SourceKind::Route53));
        assert!(out.skipped.is_empty(), "{:?}", out.skipped);
    }

    /// Issue 14 item 4: Route 53's `\ooo` escapes in TXT values are octal bytes.
    #[test]
    fn txt_escapes_are_octal_bytes() {
        let txt = |value: &str| match txt_from_route53(value) {
            Ok(RData::TXT(txt)) => txt.txt_data.iter().map(|s| s.to_vec()).collect::<Vec<_>>(),
            other => panic!("{value}: {other:?}"),
        };
        assert_eq!(txt(r#""\101""#), [b"A".to_vec()]);
        assert_eq!(txt(r#""caf\303\251""#), ["café".as_bytes().to_vec()]);
        assert_eq!(txt(r#""v=spf1 -all""#), [b"v=spf1 -all".to_vec()]);
        assert_eq!(txt(r#""two" "strings""#), [b"two".to_vec(), b"strings".to_vec()]);
        assert_eq!(txt(r#""say \"hi\" \\ back""#), [br#"say "hi" \ back"#.to_vec()]);
        assert_eq!(txt("bare"), [b"bare".to_vec()]);
        assert_eq!(txt(r#""""#), [Vec::<u8>::new()]);
        let split = format!("\"{}\" \"{}\"", "x".repeat(255), "y".repeat(45));
        assert_eq!(txt(&split).iter().map(Vec::len).collect::<Vec<_>>(), [255, 45]);
        assert!(txt_from_route53(&format!("\"{}\"", "x".repeat(256))).is_err(), "one string of 256 bytes");
        // SPF is TXT's format under its own type (RFC 7208 §3.1).
        let Ok(RData::Unknown { code, rdata }) = spf_from_route53(r#""v=spf1 -all""#) else { panic!("SPF") };
        assert_eq!((code, &rdata.anything[..]), (spf(), &b"\x0bv=spf1 -all"[..]));
        for bad in [r#""open"#, r#""\09x""#, r#""\400""#, r#""\1""#, ""] {
            assert!(txt_from_route53(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn az_affinity_sets_are_all_kept_with_their_locations_and_unhealthy_aliases_left_out() {
        use crate::az::LocationType;
        let located = |id: &str, ip: &str| set("c.corp.example.", RrType::A, 60, &[ip]).set_identifier(id).build().expect("set");
        let sets = [located("az1", "10.0.0.1"), located("region", "10.0.0.2"), located("global", "10.0.0.3")];
        let location_of = |s: &ResourceRecordSet| {
            let (kind, id) = match s.set_identifier()? {
                "az1" => (LocationType::AvailabilityZone, "use1-az1"),
                "region" => (LocationType::Region, "us-east-1"),
                "global" => (LocationType::Global, "global"),
                _ => return None,
            };
            Some(Location { kind, id: Arc::from(id) })
        };
        let chosen = select(&sets.iter().collect::<Vec<_>>(), "us-east-1", &|_| true, &location_of);
        let kinds: Vec<Option<LocationType>> =
            chosen.iter().map(|(_, a)| match a { Some(Alternative::Located(l)) => Some(l.kind), _ => None }).collect();
        assert_eq!(kinds, [Some(LocationType::AvailabilityZone), Some(LocationType::Global), Some(LocationType::Region)], "all, by set id");

        let alias = |id: &str, target: &str| {
            ResourceRecordSet::builder()
                .name("c.corp.example.")
                .r#type(RrType::A)
                .set_identifier(id)
                .alias_target(AliasTarget::builder().hosted_zone_id("Z").dns_name(target).evaluate_target_health(true).build().expect("alias"))
                .build()
                .expect("set")
        };
        let aliases = [alias("az1", "down.corp.example."), alias("global", "up.corp.example.")];
        let up = |s: &ResourceRecordSet| s.alias_target().is_some_and(|a| a.dns_name() == "up.corp.example.");
        let chosen = select(&aliases.iter().collect::<Vec<_>>(), "us-east-1", &up, &location_of);
        assert_eq!(chosen.iter().map(|(s, _)| s.set_identifier()).collect::<Vec<_>>(), [Some("global")], "the unhealthy AZ set falls back");
        let chosen = select(&aliases.iter().collect::<Vec<_>>(), "us-east-1", &|_| false, &location_of);
        assert_eq!(chosen.len(), 2, "all unhealthy: answered as if healthy");
    }

    #[test]
    fn routing_policies_choose_as_route53_does_in_the_hub() {
        let weighted = |id: &str, w: i64, ip: &str| set("w.corp.example.", RrType::A, 60, &[ip]).set_identifier(id).weight(w).build().expect("set");
        let failover = |id: &str, f: ResourceRecordSetFailover, ips: &[&str]| {
            set("f.corp.example.", RrType::A, 60, ips).set_identifier(id).failover(f).build().expect("set")
        };
        let latency = |id: &str, region: &str, ip: &str| {
            set("l.corp.example.", RrType::A, 60, &[ip]).set_identifier(id).region(ResourceRecordSetRegion::from(region)).build().expect("set")
        };
        let geo = |id: &str, country: &str, ip: &str| {
            set("g.corp.example.", RrType::A, 60, &[ip])
                .set_identifier(id)
                .geo_location(GeoLocation::builder().country_code(country).build())
                .build()
                .expect("set")
        };
        let multi = |id: &str, ip: &str| set("m.corp.example.", RrType::A, 60, &[ip]).set_identifier(id).multi_value_answer(true).build().expect("set");

        let w = [weighted("blue", 3, "10.0.0.1"), weighted("green", 1, "10.0.0.2")];
        let chosen = select(&w.iter().collect::<Vec<_>>(), "us-east-1", &|_| true, &|_| None);
        assert_eq!(chosen.iter().map(|(_, w)| w.clone()).collect::<Vec<_>>(), vec![Some(Alternative::Weighted(3)), Some(Alternative::Weighted(1))]);

        let f = [failover("a", ResourceRecordSetFailover::Primary, &["10.0.1.1"]), failover("b", ResourceRecordSetFailover::Secondary, &["10.0.1.2"])];
        assert_eq!(select(&f.iter().collect::<Vec<_>>(), "us-east-1", &|_| true, &|_| None)[0].0.set_identifier(), Some("a"), "primary");
        let f = [failover("a", ResourceRecordSetFailover::Primary, &[]), failover("b", ResourceRecordSetFailover::Secondary, &["10.0.1.2"])];
        assert_eq!(select(&f.iter().collect::<Vec<_>>(), "us-east-1", &|_| true, &|_| None)[0].0.set_identifier(), Some("b"), "primary without data");

        let l = [latency("eu", "eu-west-1", "10.0.2.1"), latency("use1", "us-east-1", "10.0.2.2")];
        assert_eq!(select(&l.iter().collect::<Vec<_>>(), "us-east-1", &|_| true, &|_| None)[0].0.set_identifier(), Some("use1"));
        assert_eq!(select(&l.iter().collect::<Vec<_>>(), "ap-south-1", &|_| true, &|_| None)[0].0.set_identifier(), Some("eu"), "else any (first)");

        let g = [geo("de", "DE", "10.0.3.1"), geo("default", "*", "10.0.3.2")];
        assert_eq!(select(&g.iter().collect::<Vec<_>>(), "us-east-1", &|_| true, &|_| None)[0].0.set_identifier(), Some("default"));

        let m = [multi("one", "10.0.4.1"), multi("two", "10.0.4.2")];
        assert_eq!(select(&m.iter().collect::<Vec<_>>(), "us-east-1", &|_| true, &|_| None).len(), 2, "multivalue: all");

        // A primary alias that evaluates its target's health, to a name the zones lack.
        let alias_primary = ResourceRecordSet::builder()
            .name("fo.corp.example.")
            .r#type(RrType::A)
            .set_identifier("a")
            .failover(ResourceRecordSetFailover::Primary)
            .alias_target(AliasTarget::builder().hosted_zone_id("Z1").dns_name("nothing.corp.example.").evaluate_target_health(true).build().expect("alias"))
            .build()
            .expect("set");
        let secondary = failover("b", ResourceRecordSetFailover::Secondary, &["10.0.1.2"]);
        let pair = [&alias_primary, &secondary];
        assert_eq!(select(&pair, "us-east-1", &|_| false, &|_| None)[0].0.set_identifier(), Some("b"), "unhealthy primary alias");
        assert_eq!(select(&pair, "us-east-1", &|_| true, &|_| None)[0].0.set_identifier(), Some("a"), "healthy primary alias");

        let all: Vec<ResourceRecordSet> = w.into_iter().chain(f).chain(l).chain(g).chain(m).collect();
        let out = records_from_zones(&[zone("Z1", "corp.example.", all)], &ctx());
        let count = |n: &str| out.records.iter().filter(|r| r.name.to_ascii() == n).count();
        assert_eq!((count("w.corp.example."), count("f.corp.example."), count("l.corp.example.")), (2, 1, 1));
        assert_eq!((count("g.corp.example."), count("m.corp.example.")), (1, 2));
        assert!(out.records.iter().filter(|r| r.name.to_ascii() == "w.corp.example.").all(|r| r.weight.is_some()));
    }

    #[test]
    fn aliases_are_classified_by_target() {
        let sets = vec![
            set("corp.example.", RrType::Soa, 900, &["ns-1.awsdns-1.co.uk. awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400"]).build().expect("set"),
            alias("internal-api.service.com.", "vpce-0123456789abcdef0-k9x7w2pd.vpce-svc-0a9b8c7d6e5f43210.us-east-1.vpce.amazonaws.com."),
            alias("app.corp.example.", "api.corp.example."),
            alias("lb.corp.example.", "internal-web-123.us-east-1.elb.amazonaws.com."),
        ];
        let out = records_from_zones(&[zone("Z1", "corp.example.", sets)], &ctx());
        let targets: Vec<String> = out.aliases.iter().map(|a| a.target.to_ascii()).collect();
        assert_eq!(targets.len(), 2, "{targets:?}");
        assert!(out.aliases.iter().all(|a| a.rtype == Some(RecordType::A) && a.provenance.source == SourceKind::Route53));
        assert_eq!(out.external.len(), 1);
        assert_eq!(out.external[0].target.to_ascii(), "internal-web-123.us-east-1.elb.amazonaws.com.");
    }

    #[test]
    fn a_nested_zone_owns_its_names() {
        let parent = zone(
            "Z1",
            "corp.example.",
            vec![
                set("sub.corp.example.", RrType::Ns, 300, &["ns-9.awsdns-9.org."]).build().expect("set"),
                set("x.sub.corp.example.", RrType::A, 300, &["10.0.0.1"]).build().expect("set"),
                set("y.corp.example.", RrType::A, 300, &["10.0.0.2"]).build().expect("set"),
            ],
        );
        let child = zone("Z2", "sub.corp.example.", vec![set("x.sub.corp.example.", RrType::A, 300, &["10.9.0.1"]).build().expect("set")]);
        let out = records_from_zones(&[parent, child], &ctx());
        let x: Vec<Record> = out.records.iter().filter(|r| r.name.to_ascii() == "x.sub.corp.example.").collect();
        assert_eq!(x.len(), 1);
        assert!(x[0].provenance.origin.text().contains("zone=Z2"));
        assert_eq!(out.skipped.len(), 2, "{:?}", out.skipped);
    }
}
