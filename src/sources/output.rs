//! What a source hands the refresh loop: its whole answer ([`SourceOutput`]), with the
//! endpoints and zones behind it in brief. Plain data — no AWS types — so the table can be
//! built from it anywhere (`assemble`), the state file can keep it, and the status page can
//! show it.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::IpAddr,
    sync::Arc,
};

use hickory_proto::rr::Name;
use serde::{Deserialize, Serialize};

use crate::{
    endpoint_list::{Endpoint, EndpointList},
    record_list::RecordList,
    snapshot::Alias,
};

/// One source's last good answer: what the table is built from, and what the state file keeps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceOutput {
    /// The records, compact between builds ([`RecordList`]).
    pub records: RecordList,
    /// Aliases (Route 53 alias records), flattened when the table is built.
    #[serde(default)]
    pub aliases: Vec<Alias>,
    /// Endpoint ids and services → DNS names, as state files of earlier releases kept them
    /// (`handles`): read from such a file, never written, and gone with the source's next
    /// answer. [`handles_of`] uses them only for what no summary names.
    #[serde(default, rename = "handles", skip_serializing, deserialize_with = "legacy_handles")]
    pub legacy_handles: BTreeMap<String, String>,
    /// The endpoints behind the records, in brief (vpc_endpoints sources); shared with the
    /// status board, which shows them.
    #[serde(default)]
    pub endpoints: Arc<EndpointList>,
    /// The private zones whose records these are (route53 sources).
    #[serde(default)]
    pub zones: Vec<ZoneSummary>,
    /// Zones this source left out for another of the same name: (the winner's id, the zone).
    #[serde(default)]
    pub lost_zones: Vec<(String, ZoneSummary)>,
    /// What the fetch left out, and why (for the status page and the log; not for the table).
    #[serde(default)]
    pub skipped: Vec<String>,
    /// What VPC Lattice last said (vpc_endpoints sources), to start from after a restart; not
    /// for the table, so not part of [`SourceOutput::same_content`].
    #[serde(default, skip_serializing_if = "lattice_unknown")]
    pub lattice: LatticeMemory,
    /// The associations of its resource and service-network endpoints (vpc_endpoints
    /// sources), to start from after a restart; not for the table either.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub associations: Vec<AssociationFacts>,
    /// The subnets of the VPCs it reads, with their AZ IDs (vpc_endpoints sources, with
    /// `[az]` on): where clients are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<SubnetFacts>,
    /// When the source answered (RFC 3339).
    pub fetched_at: String,
}

/// One subnet, from DescribeSubnets: a client inside its ranges is in its AZ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetFacts {
    /// `subnet-…`.
    pub id: String,
    /// Its VPC.
    pub vpc: String,
    /// The account that owns it.
    pub account: String,
    /// The region asked.
    pub region: String,
    /// Its AZ ID (`use1-az1`): the same AZ in every account, unlike the AZ name.
    pub az_id: String,
    /// Its IPv4 range and IPv6 ranges.
    pub cidrs: Vec<ipnet::IpNet>,
}

/// A state file's old `handles` map; anything else there is ignored, as it was before.
fn legacy_handles<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Legacy {
        Map(BTreeMap<String, String>),
        Other(serde::de::IgnoredAny),
    }
    Ok(match Legacy::deserialize(deserializer)? {
        Legacy::Map(handles) => handles,
        Legacy::Other(_) => BTreeMap::new(),
    })
}

fn lattice_unknown(memory: &LatticeMemory) -> bool {
    *memory == LatticeMemory::default()
}

impl SourceOutput {
    /// Whether the two answers would build the same table: everything but when they were
    /// fetched and what was skipped. A fetch that says this of the last one is not published.
    pub fn same_content(&self, other: &Self) -> bool {
        self.records == other.records
            && self.aliases == other.aliases
            && self.endpoints == other.endpoints
            && self.zones == other.zones
            && self.lost_zones == other.lost_zones
            && self.subnets == other.subnets
    }
}

/// One copy of each string many endpoints repeat — VPC, type, AZ, AZ ID — for the summaries
/// and records of one conversion: thousands of endpoints name a handful of each.
#[derive(Debug, Default)]
pub struct SharedStrings(HashSet<Arc<str>>);

impl SharedStrings {
    /// `text` as the one copy kept of it.
    pub fn get(&mut self, text: &str) -> Arc<str> {
        if let Some(copy) = self.0.get(text) {
            return copy.clone();
        }
        let copy: Arc<str> = Arc::from(text);
        self.0.insert(copy.clone());
        copy
    }
}

/// [`handles`] of every source's summaries, for the table's config aliases; a state file's
/// old map only for what no summary names (the oldest files have no summaries).
pub fn handles_of(outputs: &[Arc<SourceOutput>]) -> HashMap<String, String> {
    let opened: Vec<_> = outputs.iter().map(|o| o.endpoints.open()).collect();
    let mut handles: HashMap<String, String> = self::handles(opened.iter().flat_map(|o| o.iter())).into_iter().map(|(handle, name)| (handle, name.to_owned())).collect();
    for (handle, name) in outputs.iter().flat_map(|o| o.legacy_handles.iter()) {
        handles.entry(handle.to_ascii_lowercase()).or_insert_with(|| name.clone());
    }
    handles
}

/// Endpoint ids and service names, lowercase, → the endpoint's regional DNS name
/// ([`EndpointSummary::regional_at`]), for config aliases that name an endpoint so; the first endpoint of
/// a service wins. Derived from the summaries when a table is built rather than kept beside
/// them: kept, 5,000 endpoints' 10,000 handles held 2.8 MB between builds (heaptrack).
pub fn handles<'a>(endpoints: impl IntoIterator<Item = Endpoint<'a>>) -> HashMap<String, &'a str> {
    let mut handles = HashMap::new();
    for endpoint in endpoints {
        let Some(regional) = endpoint.regional() else { continue };
        for handle in [endpoint.id(), endpoint.service()].into_iter().filter(|h| !h.is_empty()) {
            handles.entry(handle.to_ascii_lowercase()).or_insert(regional);
        }
    }
    handles
}

/// One published endpoint in brief: its names and its addresses per AZ. What a conversion
/// makes and the state file and `/status.json` show; kept between fetches in an
/// [`EndpointList`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointSummary {
    /// `vpce-…`.
    pub id: Box<str>,
    /// The service (or resource configuration) it connects to.
    pub service: Box<str>,
    /// Its VPC.
    pub vpc: Arc<str>,
    /// Every name it is published under, the regional one first (then zonal, private, tag
    /// aliases).
    pub names: Box<[Box<str>]>,
    /// Its network interfaces.
    pub interfaces: Box<[InterfaceSummary]>,
    /// Its type as EC2 spells it: `Interface`, `Resource`, `ServiceNetwork`.
    #[serde(default)]
    pub kind: Arc<str>,
    /// The custom domain names of its associations (resource and service-network endpoints),
    /// served or not, and why.
    #[serde(default)]
    pub domains: Vec<DomainSummary>,
}

/// One custom domain name an endpoint association could be served under.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DomainSummary {
    /// The name.
    pub name: String,
    /// Where it comes from: the association's private DNS entry, the resource configuration's
    /// custom domain name or DNS resource, the service's custom domain name.
    pub from: String,
    /// Whether its owner verified it: `VERIFIED`, `PENDING`, `VERIFICATION_TIMED_OUT`, or why
    /// that is not known.
    pub verification: String,
    /// Whether hubdns serves it.
    pub served: bool,
    /// Why (not).
    pub why: String,
}

impl EndpointSummary {
    /// Where its regional DNS name is among its names: the one config aliases that name the
    /// endpoint by id or service answer as ([`handles`]). An interface endpoint's is the first
    /// `vpce-…` name without an AZ (EC2 lists `DnsEntries` in no promised order), a wildcard
    /// only when there is none other (an S3 endpoint's are all wildcards), else a name for
    /// every AZ (its private DNS name); a resource or service-network endpoint's is its first
    /// association's name, which it lists first.
    pub fn regional_at(&self) -> Option<usize> {
        regional_at(&self.kind, self.names.iter().map(|n| &**n))
    }
}

/// Where the regional DNS name is among an endpoint's `names`, given its `kind`
/// ([`EndpointSummary::regional_at`]).
pub fn regional_at<'a>(kind: &str, mut names: impl Iterator<Item = &'a str>) -> Option<usize> {
    if !(kind.is_empty() || kind == "Interface") {
        return names.next().map(|_| 0);
    }
    let rank = |name: &str| (vpce_zone(name).is_some(), !is_vpce_name(name), name.starts_with("*."));
    names.enumerate().min_by_key(|(_, name)| rank(name)).map(|(at, _)| at)
}

/// Whether `name` is an endpoint-specific `vpce-…` name (regional or zonal, wildcard or not).
pub fn is_vpce_name(name: &str) -> bool {
    name.trim_start_matches("*.").starts_with("vpce-")
}

/// The AZ of a zonal endpoint name: `vpce-<id>-<suffix>-<az>.…` → `<az>`; `None` for regional
/// and private names.
pub fn vpce_zone(name: &str) -> Option<String> {
    if !is_vpce_name(name) {
        return None;
    }
    let label = name.trim_start_matches("*.").split('.').next()?;
    let mut parts = label.splitn(4, '-');
    let (_vpce, _id, _suffix) = (parts.next()?, parts.next()?, parts.next()?);
    parts.next().filter(|az| !az.is_empty()).map(str::to_ascii_lowercase)
}

/// One endpoint network interface.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InterfaceSummary {
    /// `eni-…`.
    pub id: Box<str>,
    /// Its availability zone.
    pub az: Arc<str>,
    /// Its AZ ID, when known.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub az_id: Arc<str>,
    /// The addresses published for it.
    pub addresses: Box<[IpAddr]>,
}

fn is_empty(text: &Arc<str>) -> bool {
    text.is_empty()
}

/// What GetResourceConfiguration said of one resource configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceConfig {
    /// Its ARN.
    pub arn: String,
    /// `customDomainName`: the name consumers' private DNS may answer.
    pub custom_domain: Option<String>,
    /// `domainVerificationStatus` as AWS spells it (`VERIFIED`, `PENDING`,
    /// `VERIFICATION_TIMED_OUT`), when a custom domain name is set.
    pub verification: Option<String>,
    /// `resourceConfigurationDefinition.dnsResource.domainName`: the name the provider's
    /// resource gateway resolves (for DNS resources).
    pub dns_resource_domain: Option<String>,
}

impl ResourceConfig {
    /// Whether its owner proved the custom domain name theirs (`VERIFIED`).
    pub fn verified(&self) -> bool {
        self.verification.as_deref().is_some_and(is_verified)
    }
}

/// One service of a service network, from ListServiceNetworkServiceAssociations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDomain {
    /// The association id (`snsa-…`), which the endpoint's name for the service carries.
    pub association_id: String,
    /// The service's ARN.
    pub service_arn: String,
    /// The service's name.
    pub service_name: String,
    /// Its custom domain name, if it has one.
    pub custom_domain: Option<String>,
}

/// Whether a domain verification status (VPC Lattice's `domainVerificationStatus`) says
/// verified.
pub fn is_verified(status: &str) -> bool {
    status.eq_ignore_ascii_case("verified")
}

/// One endpoint association as DescribeVpcEndpointAssociations gave it, in plain data: kept in
/// the answer (so in the state file) so that a restart while the call fails keeps the names of
/// resource and service-network endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssociationFacts {
    /// The endpoint's id.
    pub endpoint_id: String,
    /// The association's id.
    pub id: String,
    /// `DnsEntry.DnsName`.
    pub dns_name: Option<String>,
    /// `PrivateDnsEntry.DnsName`.
    pub private_dns_name: Option<String>,
    /// `AssociatedResourceArn`.
    pub resource_arn: Option<String>,
    /// `ServiceNetworkArn`.
    pub service_network_arn: Option<String>,
    /// `AssociatedResourceAccessibility`.
    pub accessibility: Option<String>,
    /// `FailureCode`.
    pub failure_code: Option<String>,
    /// `FailureReason`.
    pub failure_reason: Option<String>,
}

/// What VPC Lattice last said of the items behind a source's endpoints. Kept in the answer
/// (so in the state file) for one reason: a restart while Lattice fails starts from it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatticeMemory {
    /// Resource configurations.
    pub resource_configs: Vec<ResourceConfig>,
    /// Service networks (ARN) and their services.
    pub service_networks: Vec<(String, Vec<ServiceDomain>)>,
}

/// A zone whose records a source serves: its id and apex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneSummary {
    /// The zone id.
    pub id: String,
    /// The apex.
    pub name: Name,
}


/// One endpoint record's answer, for tests of what is built from answers.
#[cfg(test)]
pub(crate) fn sample_output() -> SourceOutput {
    let name = Name::from_ascii("vpce-1.svc.us-east-1.vpce.amazonaws.com.").unwrap();
    SourceOutput {
        records: RecordList::from(vec![crate::snapshot::Record {
            name,
            ttl: 60,
            data: hickory_proto::rr::RData::A(hickory_proto::rr::rdata::A(std::net::Ipv4Addr::new(10, 0, 0, 1))),
            provenance: crate::snapshot::Provenance::new(crate::snapshot::SourceKind::EndpointDns, "vpc_endpoints vpce-1"),
            weight: None,
            az: None,
        }]),
        fetched_at: "2026-11-21T15:00:00Z".into(),
        ..SourceOutput::default()
    }
}

