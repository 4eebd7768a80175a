//! Source `vpc_endpoints`: the DNS names of VPC endpoints — interface, resource and
//! service-network — learned from EC2 (and VPC Lattice, for custom domain names).
//!
//! [`VpcEndpointSource::inventory`] makes the AWS calls for one region (and one account,
//! through an optional assumed role): DescribeVpcEndpoints (paginated, optionally filtered by
//! VPC and tag), then, for the endpoints that will be published, DescribeNetworkInterfaces for
//! their ENIs (in batches), DescribeVpcEndpointServices for the private DNS names of
//! services with private DNS enabled (asked every fetch: a provider may rename them; a service
//! that no longer exists is left out alone), DescribeVpcEndpointAssociations for resource and
//! service-network endpoints, and VPC Lattice for their custom domain names (`lattice`, which
//! never fails the fetch). The answer is an [`Inventory`] of SDK values;
//! [`records_from`] turns it into records, a pure function tested on hand-built values shaped
//! like real AWS responses.
//!
//! What becomes a record (DESIGN "Answer semantics"), for Interface endpoints in state
//! `available` (compared case-insensitively: the SDK parses AWS's lowercase states as
//! `Unknown`):
//! - the regional name `vpce-….<service>.vpce.amazonaws.com` → every ENI's address;
//! - a zonal name `vpce-…-<az>.…` → the address of the ENI in that AZ only;
//! - private DNS names (DnsEntries outside vpce names, and the service's private DNS names
//!   when `PrivateDnsEnabled`) → every ENI's address; `*.` entries stay wildcards;
//! - A from ENI IPv4 addresses, AAAA from IPv6 when the endpoint's DNS record type is
//!   dual-stack or IPv6;
//! - the tag `hubdns:alias` (comma-separated names) → those names with the same addresses, at
//!   tag precedence, for names under the source's `alias_tag_domains` only (a tag may add
//!   names, never take over someone else's);
//! - no source may publish the root or an ICANN public suffix ([`ownable`]).
//!
//! Resource and service-network endpoints are named by their associations
//! (`endpoint_associations`, where the rules and their references are); a service-network
//! endpoint's names are answered with what the upstreams say of each association's own name,
//! resolved at fetch time (`upstream`). Gateway endpoints have no addresses and are ignored.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::{Arc, Mutex},
};

use aws_sdk_ec2::{
    Client,
    types::{Filter, NetworkInterface, Subnet, VpcEndpoint, VpcEndpointAssociation},
};
use hickory_proto::rr::{
    Name, RData, RecordType,
    rdata::{A, AAAA},
};

use crate::{
    config::{Accounts, AwsAccess, VpcEndpointsConfig},
    sources::output::{AssociationFacts, EndpointSummary, InterfaceSummary, SharedStrings, SubnetFacts, vpce_zone},
    origin::Origin,
    snapshot::{Provenance, Record, SourceKind, ownable},
    sources::{
        BoxFuture, Build, Entry, Env, Source, SourceOutput, SubnetNeed,
        aws::{ApiFamily, FetchError, TokenBucket, budget, item_error, now_rfc3339, same_account, sdk_config, sdk_message, worth_narrowing},
        endpoint_associations::{Answer, LatticeFacts, names_from},
        lattice::Lattice,
        upstream::{ExternalAlias, Resolutions},
    },
    events::{Change, Service},
};

/// The tag whose value lists extra names for an endpoint.
pub const ALIAS_TAG: &str = "hubdns:alias";

/// ENI ids per DescribeNetworkInterfaces call: the most values one EC2 filter takes.
const ENI_BATCH: usize = 200;

/// DescribeVpcEndpointServices's error for a service that no longer exists ("The Vpc
/// Endpoint Service '…' does not exist"; EC2 API reference, "Error codes"). It fails the
/// whole call, so a batch that fails is asked again service by service (as Cloud Custodian
/// does, cloud-custodian#10741).
const SERVICE_GONE: &[&str] = &["InvalidServiceName"];

/// Service names per DescribeVpcEndpointServices call.
const SERVICE_BATCH: usize = 50;

/// Associations per DescribeVpcEndpointAssociations page: the most it returns (EC2 API
/// reference, DescribeVpcEndpointAssociations: `MaxResults`, 1 to 100).
const ASSOCIATION_PAGE: i32 = 100;

/// Everything the EC2 APIs said about one region, as the SDK returned it.
#[derive(Debug, Default, Clone)]
pub struct Inventory {
    /// From DescribeVpcEndpoints.
    pub endpoints: Vec<VpcEndpoint>,
    /// From DescribeNetworkInterfaces, by ENI id: what is read of each.
    pub interfaces: HashMap<String, Eni>,
    /// From DescribeVpcEndpointServices: service name → its private DNS names.
    pub private_dns_names: HashMap<String, Vec<String>>,
    /// From DescribeVpcEndpointAssociations: endpoint id → its associations (resource and
    /// service-network endpoints).
    pub associations: HashMap<String, Vec<VpcEndpointAssociation>>,
    /// What VPC Lattice said of the resource configurations and service networks behind them.
    pub lattice: LatticeFacts,
    /// From DescribeSubnets, by subnet id: the AZ ID of ENIs that do not carry their own.
    pub subnets: HashMap<String, Subnet>,
}

/// What the conversion reads of a network interface. The SDK's `NetworkInterface` is over a
/// kilobyte inline even when empty: 10,000 ENIs kept whole made the largest allocation of a
/// refresh (17 MB, heaptrack at 5,000 endpoints).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Eni {
    /// `AvailabilityZone`.
    pub zone: Option<String>,
    /// `AvailabilityZoneId`, when EC2 gives it.
    pub zone_id: Option<String>,
    /// `SubnetId`: where the AZ ID is found when the ENI does not carry it.
    pub subnet: Option<String>,
    /// `PrivateIpAddress`.
    pub private_ip: Option<String>,
    /// `Ipv6Addresses[].Ipv6Address`.
    pub ipv6: Vec<String>,
}

impl From<NetworkInterface> for Eni {
    fn from(eni: NetworkInterface) -> Self {
        Self {
            zone: eni.availability_zone,
            zone_id: eni.availability_zone_id,
            subnet: eni.subnet_id,
            private_ip: eni.private_ip_address,
            ipv6: eni.ipv6_addresses.unwrap_or_default().into_iter().filter_map(|a| a.ipv6_address).collect(),
        }
    }
}

/// Facts about the fetch that the records' provenance carries.
#[derive(Debug, Clone)]
pub struct FetchContext {
    /// The region asked.
    pub region: String,
    /// TTL for the records.
    pub ttl: u32,
    /// Where `hubdns:alias` tags may publish names (`alias_tag_domains`).
    pub alias_tag_domains: Vec<Name>,
    /// Where unverified custom domain names may be served (`unverified_domains`).
    pub unverified_domains: Vec<Name>,
}

/// What [`records_from`] made of an inventory.
#[derive(Debug, Default)]
pub struct Converted {
    /// The records.
    pub records: crate::record_list::RecordList,
    /// Endpoints left out, and why (not available, no ENI known, …), for the log.
    pub skipped: Vec<String>,
    /// Each published endpoint in brief, for the status page.
    pub endpoints: Vec<EndpointSummary>,
    /// Names answered with what the upstreams say of another (service-network endpoints).
    pub external: Vec<ExternalAlias>,
    /// One copy of each string many endpoints repeat.
    shared: SharedStrings,
}

/// Which addresses a name answers with.
#[derive(Debug, Clone, PartialEq)]
enum Scope {
    /// Every ENI of the endpoint.
    All,
    /// Only the ENI in this availability zone.
    Zone(String),
    /// What the upstreams answer for this name (a service-network endpoint's association).
    Upstream(Name),
}

/// One ENI's addresses, as far as the endpoint's DNS record type publishes them.
struct EniAddresses<'a> {
    id: &'a str,
    zone: &'a str,
    /// The AZ ID: the ENI's own field, else its subnet's.
    zone_id: Option<Arc<str>>,
    addresses: Vec<IpAddr>,
}

/// Converts what EC2 said into records. Pure: no I/O, no clock.
pub fn records_from(inventory: &Inventory, ctx: &FetchContext) -> Converted {
    let mut out = Converted::default();
    // Names already published, by endpoint: a custom domain name another endpoint claimed
    // first is left out, never mixed with its addresses. Interface endpoints go first.
    let mut claimed: HashMap<Name, String> = HashMap::new();
    let interface = |e: &&VpcEndpoint| kind_of(e) == "Interface";
    let ordered = inventory.endpoints.iter().filter(interface).chain(inventory.endpoints.iter().filter(|e| !interface(e)));
    for endpoint in ordered {
        if let Err(reason) = convert_endpoint(endpoint, inventory, ctx, &mut claimed, &mut out) {
            out.skipped.push(format!("{}: {reason}", endpoint.vpc_endpoint_id().unwrap_or("(no id)")));
        }
    }
    out
}

/// An endpoint's type as EC2 spells it (`Interface`, `Resource`, …), whatever the case it
/// came in.
fn kind_of(endpoint: &VpcEndpoint) -> &str {
    let kind = endpoint.vpc_endpoint_type().map_or("", |t| t.as_str());
    ["Interface", "Resource", "ServiceNetwork", "Gateway", "GatewayLoadBalancer"].into_iter().find(|k| k.eq_ignore_ascii_case(kind)).unwrap_or(kind)
}

/// Whether an endpoint is named by its associations (`Resource`, `ServiceNetwork`).
fn named_by_associations(endpoint: &VpcEndpoint) -> bool {
    matches!(kind_of(endpoint), "Resource" | "ServiceNetwork")
}

fn convert_endpoint(
    endpoint: &VpcEndpoint,
    inventory: &Inventory,
    ctx: &FetchContext,
    claimed: &mut HashMap<Name, String>,
    out: &mut Converted,
) -> Result<(), String> {
    let id = endpoint.vpc_endpoint_id().ok_or("no endpoint id")?;
    let kind = kind_of(endpoint);
    // Resource and service-network endpoints are named by their associations (`endpoint_associations`).
    let associated = named_by_associations(endpoint);
    let service_network = kind == "ServiceNetwork";
    if !(kind == "Interface" || associated) {
        return Err(format!("type {kind} has no addresses to publish"));
    }
    let state = endpoint.state().map_or("", |s| s.as_str());
    if !state.eq_ignore_ascii_case("available") {
        return Err(format!("state {state}"));
    }

    let family = endpoint
        .dns_options()
        .and_then(|o| o.dns_record_ip_type())
        .map(|t| t.as_str().to_ascii_lowercase())
        .filter(|t| t != "service-defined")
        .or_else(|| endpoint.ip_address_type().map(|t| t.as_str().to_ascii_lowercase()))
        .unwrap_or_else(|| "ipv4".into());
    let (want_v4, want_v6) = (family != "ipv6", family == "ipv6" || family == "dualstack");

    let mut enis = Vec::new();
    for eni_id in endpoint.network_interface_ids() {
        let Some(eni) = inventory.interfaces.get(eni_id) else {
            out.skipped.push(format!("{id}: ENI {eni_id} not found (deleted, or not yet visible)"));
            continue;
        };
        let mut addresses: Vec<IpAddr> = Vec::new();
        if want_v4 {
            addresses.extend(eni.private_ip.as_deref().and_then(|ip| ip.parse::<IpAddr>().ok()));
        }
        if want_v6 {
            addresses.extend(eni.ipv6.iter().filter_map(|a| a.parse::<IpAddr>().ok()));
        }
        let zone_id = eni
            .zone_id
            .as_deref()
            .or_else(|| inventory.subnets.get(eni.subnet.as_deref()?)?.availability_zone_id())
            .filter(|z| !z.is_empty())
            .map(|z| out.shared.get(z));
        enis.push(EniAddresses { id: eni_id, zone: eni.zone.as_deref().unwrap_or(""), zone_id, addresses });
    }
    // A service-network endpoint's names are answered from upstream, not from its ENIs.
    if !service_network && enis.iter().all(|e| e.addresses.is_empty()) {
        return Err("no ENI addresses known".into());
    }

    // Names and the addresses each answers with, first claim wins; what an association's
    // name is, for its provenance.
    let mut names: Vec<(Name, Scope, SourceKind)> = Vec::new();
    let mut origins: HashMap<Name, String> = HashMap::new();
    let mut add = |text: &str, scope: Scope, source: SourceKind, names: &mut Vec<(Name, Scope, SourceKind)>| {
        match Name::from_ascii(text.trim().trim_end_matches('.')) {
            Ok(mut name) => {
                name.set_fqdn(true);
                let name = name.to_lowercase();
                if let Err(reason) = ownable(&name) {
                    out.skipped.push(format!("{id}: name `{}` skipped: {reason}", text.trim()));
                } else if source == SourceKind::EndpointTag && !ctx.alias_tag_domains.iter().any(|d| d.zone_of(&name)) {
                    out.skipped.push(format!("{id}: {ALIAS_TAG} name `{name}` skipped: outside alias_tag_domains"));
                } else if source == SourceKind::EndpointTag && name.is_wildcard() {
                    out.skipped.push(format!("{id}: {ALIAS_TAG} name `{name}` skipped: a tag may add names, not a wildcard over every missing one"));
                } else if !names.iter().any(|(n, _, _)| *n == name) {
                    names.push((name, scope, source));
                }
            }
            Err(error) => out.skipped.push(format!("{id}: name `{text}` skipped: {error}")),
        }
    };
    let (mut domains, mut association_skipped) = (Vec::new(), Vec::new());
    if associated {
        let associations: Vec<&VpcEndpointAssociation> = inventory.associations.get(id).into_iter().flatten().collect();
        let planned = names_from(endpoint, &associations, &inventory.lattice, &ctx.unverified_domains);
        association_skipped = planned.skipped;
        domains = planned.domains;
        for named in planned.names {
            let scope = match named.answer {
                Answer::Enis => Scope::All,
                Answer::Upstream(target) => Scope::Upstream(target),
            };
            if let Some(other) = claimed.get(&named.name).filter(|other| named.custom && other.as_str() != id) {
                let why = format!("already served for {other}");
                association_skipped.push(format!("{id}: custom domain name `{}` left out: {why}", named.name));
                let text = named.name.to_string();
                for domain in domains.iter_mut().filter(|d| text.trim_end_matches('.').eq_ignore_ascii_case(&d.name)) {
                    (domain.served, domain.why) = (false, why.clone());
                }
                continue;
            }
            origins.insert(named.name.clone(), named.origin);
            if !names.iter().any(|(n, _, _)| *n == named.name) {
                names.push((named.name, scope, SourceKind::EndpointDns));
            }
        }
    } else {
        for entry in endpoint.dns_entries() {
            let Some(text) = entry.dns_name() else { continue };
            let scope = vpce_zone(text).map_or(Scope::All, Scope::Zone);
            add(text, scope, SourceKind::EndpointDns, &mut names);
        }
        if endpoint.private_dns_enabled() == Some(true) {
            let service = endpoint.service_name().unwrap_or("");
            for private in inventory.private_dns_names.get(service).into_iter().flatten() {
                add(private, Scope::All, SourceKind::EndpointDns, &mut names);
            }
        }
    }
    // Tag names answer as the endpoint's ENIs; a service-network endpoint's, as its one
    // association (with several, which one a tag means is unknown).
    let tag_scope = match service_network {
        false => Some(Scope::All),
        true => {
            let mut targets: Vec<&Scope> = names.iter().map(|(_, scope, _)| scope).filter(|s| matches!(s, Scope::Upstream(_))).collect();
            targets.dedup();
            match targets[..] {
                [only] => Some(only.clone()),
                _ => None,
            }
        }
    };
    for tag in endpoint.tags().iter().filter(|t| t.key() == Some(ALIAS_TAG)) {
        let Some(scope) = &tag_scope else {
            association_skipped.push(format!("{id}: {ALIAS_TAG} tag skipped: a service-network endpoint's tag names need exactly one association"));
            break;
        };
        for alias in tag.value().unwrap_or("").split(',').filter(|a| !a.trim().is_empty()) {
            add(alias, scope.clone(), SourceKind::EndpointTag, &mut names);
        }
    }
    out.skipped.append(&mut association_skipped);
    // Tag names claim nothing: a tag may add names, never take one over (the table's
    // precedence puts endpoint names above tags).
    for (name, _, source) in &names {
        if *source == SourceKind::EndpointDns {
            claimed.entry(name.clone()).or_insert_with(|| id.to_owned());
        }
    }
    if names.is_empty() {
        return Err(if associated { format!("no association with a DNS name, and no {ALIAS_TAG} tag") } else { "no DNS names".into() });
    }

    let vpc = endpoint.vpc_id().unwrap_or("");
    let account = endpoint.owner_id().unwrap_or("");
    let service = endpoint.service_name().or(endpoint.resource_configuration_arn()).or(endpoint.service_network_arn()).unwrap_or("");
    let mut shared_origins: HashMap<(String, usize), Origin> = HashMap::new();
    for (name, scope, source) in &names {
        let what = match origins.get(name) {
            Some(origin) => format!(" type={kind} {origin}"),
            None if associated => format!(" type={kind}"),
            None => String::new(),
        };
        if let Scope::Upstream(target) = scope {
            let provenance = Provenance::new(
                *source,
                format!("vpc_endpoints {id}{what} vpc={vpc} account={account} region={} answered_as={target}", ctx.region),
            );
            // Dual-stack: a name the upstreams give only A (or only AAAA) is no news.
            for (rtype, wanted) in [(RecordType::A, want_v4), (RecordType::AAAA, want_v6)] {
                if wanted {
                    let optional = want_v4 && want_v6;
                    out.external.push(ExternalAlias { name: name.clone(), rtype, target: target.clone(), provenance: provenance.clone(), weight: None, optional });
                }
            }
            continue;
        }
        for (at, eni) in enis.iter().enumerate().filter(|(_, e)| match scope {
            Scope::All => true,
            Scope::Zone(zone) => e.zone == zone,
            Scope::Upstream(_) => false,
        }) {
            // One origin per ENI and name kind, shared by the records of all its names.
            let origin = shared_origins
                .entry((what.clone(), at))
                .or_insert_with(|| {
                    let az_id = eni.zone_id.as_deref().map_or(String::new(), |z| format!(" az_id={z}"));
                    Origin::from(format!(
                        "vpc_endpoints {id}{what} eni={} az={}{az_id} vpc={vpc} account={account} region={} service={service}",
                        eni.id, eni.zone, ctx.region
                    ))
                })
                .clone();
            for address in &eni.addresses {
                out.records.push(Record {
                    name: name.clone(),
                    ttl: ctx.ttl,
                    data: match address {
                        IpAddr::V4(v4) => RData::A(A(*v4)),
                        IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
                    },
                    provenance: Provenance::new(*source, origin.clone()),
                    weight: None,
                    az: eni.zone_id.clone(),
                });
            }
        }
    }

    let interfaces = enis
        .iter()
        .map(|e| InterfaceSummary {
            id: e.id.into(),
            az: out.shared.get(e.zone),
            az_id: e.zone_id.clone().unwrap_or_default(),
            addresses: e.addresses.as_slice().into(),
        })
        .collect();
    let mut summary = EndpointSummary {
        id: id.into(),
        service: service.into(),
        vpc: out.shared.get(vpc),
        names: names.iter().map(|(n, _, _)| n.to_string().into_boxed_str()).collect(),
        interfaces,
        kind: out.shared.get(kind),
        domains,
    };
    // Listed first, for the status board.
    if let Some(at) = summary.regional_at() {
        summary.names[..=at].rotate_right(1);
    }
    out.endpoints.push(summary);

    Ok(())
}

/// Subnets in plain data: where clients are, by AZ ID. Pure; subnets without an AZ ID or a
/// range are left out.
pub fn subnet_facts(subnets: &HashMap<String, Subnet>, region: &str) -> Vec<SubnetFacts> {
    let mut facts: Vec<SubnetFacts> = subnets
        .values()
        .filter_map(|subnet| {
            let az_id = subnet.availability_zone_id().filter(|z| !z.is_empty())?;
            let v6 = subnet.ipv6_cidr_block_association_set().iter().filter_map(|a| a.ipv6_cidr_block());
            let cidrs: Vec<ipnet::IpNet> = subnet.cidr_block().into_iter().chain(v6).filter_map(|c| c.parse().ok()).collect();
            (!cidrs.is_empty()).then(|| SubnetFacts {
                id: subnet.subnet_id().unwrap_or_default().to_owned(),
                vpc: subnet.vpc_id().unwrap_or_default().to_owned(),
                account: subnet.owner_id().unwrap_or_default().to_owned(),
                region: region.to_owned(),
                az_id: az_id.to_owned(),
                cidrs,
            })
        })
        .collect();
    facts.sort_by(|a, b| a.id.cmp(&b.id));
    facts
}

/// A subnet back from plain data (the state file): what [`subnet_facts`] reads of it. Pure.
fn subnet_from(facts: &SubnetFacts) -> Subnet {
    let (v4, v6): (Vec<&ipnet::IpNet>, Vec<&ipnet::IpNet>) = facts.cidrs.iter().partition(|c| matches!(c, ipnet::IpNet::V4(_)));
    let v6 = v6.into_iter().map(|c| aws_sdk_ec2::types::SubnetIpv6CidrBlockAssociation::builder().ipv6_cidr_block(c.to_string()).build()).collect();
    Subnet::builder()
        .subnet_id(&facts.id)
        .vpc_id(&facts.vpc)
        .owner_id(&facts.account)
        .availability_zone_id(&facts.az_id)
        .set_cidr_block(v4.first().map(|c| c.to_string()))
        .set_ipv6_cidr_block_association_set(Some(v6))
        .build()
}

/// An association in plain data (for the state file). Pure.
fn facts_of(endpoint: &str, a: &VpcEndpointAssociation) -> AssociationFacts {
    let text = |v: Option<&str>| v.map(str::to_owned);
    AssociationFacts {
        endpoint_id: endpoint.to_owned(),
        id: a.id().unwrap_or_default().to_owned(),
        dns_name: text(a.dns_entry().and_then(|e| e.dns_name())),
        private_dns_name: text(a.private_dns_entry().and_then(|e| e.dns_name())),
        resource_arn: text(a.associated_resource_arn()),
        service_network_arn: text(a.service_network_arn()),
        accessibility: text(a.associated_resource_accessibility()),
        failure_code: text(a.failure_code()),
        failure_reason: text(a.failure_reason()),
    }
}

/// The association `facts` describe, as the SDK would have returned it. Pure.
fn association_from(facts: &AssociationFacts) -> VpcEndpointAssociation {
    let entry = |name: &Option<String>| name.as_ref().map(|n| aws_sdk_ec2::types::DnsEntry::builder().dns_name(n).build());
    VpcEndpointAssociation::builder()
        .vpc_endpoint_id(&facts.endpoint_id)
        .id(&facts.id)
        .set_dns_entry(entry(&facts.dns_name))
        .set_private_dns_entry(entry(&facts.private_dns_name))
        .set_associated_resource_arn(facts.resource_arn.clone())
        .set_service_network_arn(facts.service_network_arn.clone())
        .set_associated_resource_accessibility(facts.accessibility.clone())
        .set_failure_code(facts.failure_code.clone())
        .set_failure_reason(facts.failure_reason.clone())
        .build()
}

/// One `[[sources.vpc_endpoints]]` entry: a region, maybe an account through a role.
pub struct VpcEndpointSource {
    config: VpcEndpointsConfig,
    client: Client,
    /// Endpoints named by change events, watched until seen in a lasting state.
    watched: Mutex<HashSet<String>>,
    /// The account's EC2 Describe budget in this region, shared with its other sources.
    limiter: Arc<TokenBucket>,
    /// VPC Lattice, for custom domain names.
    lattice: Lattice,
    /// The associations DescribeVpcEndpointAssociations last returned, by endpoint id.
    last_associations: Mutex<HashMap<String, Vec<VpcEndpointAssociation>>>,
    /// Service-network endpoint names, as the upstreams last answered them.
    upstream: Resolutions,
    /// The subnets DescribeSubnets last returned (kept when it fails).
    last_subnets: Mutex<Vec<Subnet>>,
}

impl VpcEndpointSource {
    /// A source for `config`, with credentials from the standard chain (or the role).
    /// `api_share` is the part of the account's EC2 Describe request budget hubdns may use.
    pub async fn new(config: VpcEndpointsConfig, api_share: f64) -> Self {
        let shared = sdk_config(&config.access()).await;
        let account = config.access().account();
        let limiter = budget(ApiFamily::Ec2Describe, account, Some(&config.region), api_share);
        let attempt = std::time::Duration::from_secs(config.api_timeout_secs);
        let lattice = Lattice::new(&shared, config.lattice_endpoint_url.as_deref(), account, &config.region, api_share, attempt);
        Self {
            client: crate::with_endpoint!(aws_sdk_ec2, &shared, config.endpoint_url.as_deref()),
            config,
            watched: Mutex::new(HashSet::new()),
            limiter,
            lattice,
            last_associations: Mutex::new(HashMap::new()),
            upstream: Resolutions::default(),
            last_subnets: Mutex::new(Vec::new()),
        }
    }

    /// Stops watching endpoints that reached a lasting state (or are not there at all).
    fn settle(&self, endpoints: &[VpcEndpoint]) {
        let mut watched = self.watched.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        watched.retain(|id| {
            let state = endpoints.iter().find(|e| e.vpc_endpoint_id() == Some(id)).and_then(|e| e.state()).map(|s| s.as_str().to_ascii_lowercase());
            // EC2 API reference, VpcEndpoint.State: pending, pendingAcceptance and deleting
            // move on without another API call (so without another event).
            matches!(state.as_deref(), Some("pending" | "pendingacceptance" | "deleting"))
        });
    }

    fn error(&self, call: &'static str) -> impl Fn(String) -> FetchError + '_ {
        move |message| FetchError { call, region: self.config.region.clone(), message }
    }

    /// Asks EC2 for everything this source covers. What cannot be asked about one service
    /// (deleted since its endpoint was made) is returned in the second place, as reasons.
    pub async fn inventory(&self, need: SubnetNeed) -> Result<(Inventory, Vec<String>), FetchError> {
        let mut filters = Vec::new();
        if !self.config.vpc_ids.is_empty() {
            filters.push(Filter::builder().name("vpc-id").set_values(Some(self.config.vpc_ids.clone())).build());
        }
        for (key, value) in &self.config.tags {
            filters.push(Filter::builder().name(format!("tag:{key}")).values(value).build());
        }
        let mut pages = self.client.describe_vpc_endpoints().set_filters((!filters.is_empty()).then_some(filters)).into_paginator().send();
        let mut endpoints: Vec<VpcEndpoint> = Vec::new();
        // A token for each request: the first page's, then one per page a next token asks for.
        self.limiter.acquire().await;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("DescribeVpcEndpoints")(sdk_message(&e)))?;
            let more = page.next_token().is_some_and(|t| !t.is_empty());
            endpoints.extend(page.vpc_endpoints.unwrap_or_default());
            if more {
                self.limiter.acquire().await;
            }
        }
        self.settle(&endpoints);
        // Only what will be published is looked up further: a rejected endpoint's service may
        // be gone, and asking about it would fail the call for every other service.
        let published: Vec<&VpcEndpoint> =
            endpoints.iter().filter(|e| e.state().is_some_and(|s| s.as_str().eq_ignore_ascii_case("available"))).collect();

        // ENIs looked up by filter: asking by id fails the whole call when one ENI was deleted
        // between the two calls (an endpoint being deleted), where a filter leaves it out.
        let eni_ids: Vec<String> = published.iter().flat_map(|e| e.network_interface_ids().iter().cloned()).collect();
        let mut interfaces = HashMap::new();
        for batch in eni_ids.chunks(ENI_BATCH) {
            let filter = Filter::builder().name("network-interface-id").set_values(Some(batch.to_vec())).build();
            let mut pages = self.client.describe_network_interfaces().filters(filter).into_paginator().send();
            self.limiter.acquire().await;
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| self.error("DescribeNetworkInterfaces")(sdk_message(&e)))?;
                let more = page.next_token().is_some_and(|t| !t.is_empty());
                for mut eni in page.network_interfaces.unwrap_or_default() {
                    if let Some(id) = eni.network_interface_id.take() {
                        interfaces.insert(id, Eni::from(eni));
                    }
                }
                if more {
                    self.limiter.acquire().await;
                }
            }
        }

        let mut services: Vec<String> = published
            .iter()
            .filter(|e| e.private_dns_enabled() == Some(true))
            .filter_map(|e| e.service_name().map(str::to_owned))
            .collect();
        services.sort();
        services.dedup();
        let mut private_dns_names = HashMap::new();
        let mut skipped = Vec::new();
        for batch in services.chunks(SERVICE_BATCH) {
            self.private_dns_names(batch, &mut private_dns_names, &mut skipped).await?;
        }

        let associated: Vec<String> = published
            .iter()
            .filter(|e| named_by_associations(e))
            .filter_map(|e| e.vpc_endpoint_id().map(str::to_owned))
            .collect();
        let (associations, fresh) = self.associations_or_last(&associated, &mut skipped).await;
        let lattice = self.lattice_facts(&associations, fresh, &mut skipped).await;
        let subnets = self.subnets_or_last(need, &interfaces, &mut skipped).await;
        let subnets = subnets.into_iter().filter_map(|s| Some((s.subnet_id()?.to_owned(), s))).collect();
        Ok((Inventory { endpoints, interfaces, private_dns_names, associations, lattice, subnets }, skipped))
    }

    /// The subnets `[az]` needs: every subnet of the VPCs this source reads (`Learn`: where
    /// clients are), or only those of ENIs that do not carry their AZ ID (`EniZones`). A
    /// failure never fails the fetch: the last subnets stay (and with them the clients'
    /// AZs), noted in `skipped`.
    async fn subnets_or_last(&self, need: SubnetNeed, interfaces: &HashMap<String, Eni>, skipped: &mut Vec<String>) -> Vec<Subnet> {
        let filter = match need {
            SubnetNeed::None => return Vec::new(),
            SubnetNeed::Learn if self.config.vpc_ids.is_empty() => None,
            SubnetNeed::Learn => Some(Filter::builder().name("vpc-id").set_values(Some(self.config.vpc_ids.clone())).build()),
            SubnetNeed::EniZones => {
                let mut ids: Vec<String> =
                    interfaces.values().filter(|e| e.zone_id.is_none()).filter_map(|e| e.subnet.clone()).collect();
                ids.sort();
                ids.dedup();
                if ids.is_empty() {
                    return Vec::new();
                }
                Some(Filter::builder().name("subnet-id").set_values(Some(ids)).build())
            }
        };
        let mut pages = self.client.describe_subnets().set_filters(filter.map(|f| vec![f])).into_paginator().send();
        let mut found = Vec::new();
        self.limiter.acquire().await;
        let mut failure = None;
        while let Some(page) = pages.next().await {
            match page {
                Ok(page) => {
                    found.extend(page.subnets().iter().cloned());
                    if page.next_token().is_some_and(|t| !t.is_empty()) {
                        self.limiter.acquire().await;
                    }
                }
                Err(error) => {
                    failure = Some(self.error("DescribeSubnets")(sdk_message(&error)));
                    break;
                }
            }
        }
        let mut last = self.last_subnets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match failure {
            None => {
                last.clone_from(&found);
                found
            }
            Some(error) => {
                skipped.push(format!("{error}; clients keep the AZs of the last subnets ({} known)", last.len()));
                last.clone()
            }
        }
    }

    /// The associations last known, in plain data, for the source's answer.
    fn remembered_associations(&self) -> Vec<AssociationFacts> {
        let associations = self.last_associations.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut facts: Vec<AssociationFacts> = associations
            .iter()
            .flat_map(|(endpoint, list)| list.iter().map(move |a| facts_of(endpoint, a)))
            .collect();
        facts.sort_by(|a, b| (&a.endpoint_id, &a.id).cmp(&(&b.endpoint_id, &b.id)));
        facts
    }

    /// The associations of `endpoints`; when DescribeVpcEndpointAssociations fails, the last
    /// ones known, with the reason in `skipped`. It never fails the fetch: interface
    /// endpoints need none of it (and an instance whose role lacks the newer permission must
    /// keep serving them).
    /// The second place says whether they are this fetch's (`false`: the last ones kept).
    async fn associations_or_last(&self, endpoints: &[String], skipped: &mut Vec<String>) -> (HashMap<String, Vec<VpcEndpointAssociation>>, bool) {
        let asked = self.associations(endpoints).await;
        let mut last = self.last_associations.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match asked {
            Ok(found) => {
                last.clone_from(&found);
                (found, true)
            }
            Err(error) => {
                // Endpoints gone (or no longer available) take their associations with them.
                last.retain(|id, _| endpoints.contains(id));
                skipped.push(format!("{error}; resource and service-network endpoints keep their last associations ({} known)", last.len()));
                (last.clone(), false)
            }
        }
    }

    /// DescribeVpcEndpointAssociations for `endpoints` (resource and service-network ones), by
    /// endpoint id. Asked by filter, as ENIs are: an endpoint deleted meanwhile is left out
    /// rather than failing the call for the others. The call has no paginator in the SDK, so
    /// its `NextToken` is followed here.
    async fn associations(&self, endpoints: &[String]) -> Result<HashMap<String, Vec<VpcEndpointAssociation>>, FetchError> {
        let mut found: HashMap<String, Vec<VpcEndpointAssociation>> = HashMap::new();
        for batch in endpoints.chunks(ENI_BATCH) {
            let filter = Filter::builder().name("vpc-endpoint-id").set_values(Some(batch.to_vec())).build();
            let mut token: Option<String> = None;
            loop {
                self.limiter.acquire().await;
                let page = self
                    .client
                    .describe_vpc_endpoint_associations()
                    .filters(filter.clone())
                    .max_results(ASSOCIATION_PAGE)
                    .set_next_token(token.clone())
                    .send()
                    .await
                    .map_err(|e| self.error("DescribeVpcEndpointAssociations")(sdk_message(&e)))?;
                for association in page.vpc_endpoint_associations() {
                    if let Some(endpoint) = association.vpc_endpoint_id() {
                        found.entry(endpoint.to_owned()).or_default().push(association.clone());
                    }
                }
                match page.next_token().filter(|t| !t.is_empty()) {
                    Some(next) if token.as_deref() != Some(next) => token = Some(next.to_owned()),
                    Some(_) => return Err(self.error("DescribeVpcEndpointAssociations")("the next token repeats".into())),
                    None => break,
                }
            }
        }
        Ok(found)
    }

    /// What VPC Lattice says of the resource configurations and service networks behind
    /// `associations` (`fresh`: EC2's answer of this fetch, not the last ones kept). Never
    /// fails the fetch: what Lattice will not say is noted in `skipped` and answered as
    /// unknown (see `lattice`).
    async fn lattice_facts(&self, associations: &HashMap<String, Vec<VpcEndpointAssociation>>, fresh: bool, skipped: &mut Vec<String>) -> LatticeFacts {
        let all = || associations.values().flatten();
        // A consumer may read a resource configuration shared with it (a resource endpoint's),
        // not one it reaches only through a shared service network (VPC Lattice user guide,
        // "Share VPC Lattice entities"): only the former is asked about.
        let mut configs: Vec<String> = all()
            .filter(|a| a.service_network_arn().is_none_or(str::is_empty))
            .filter_map(|a| a.associated_resource_arn())
            .filter(|arn| arn.contains(":resourceconfiguration/"))
            .map(str::to_owned)
            .collect();
        let mut networks: Vec<String> = all()
            .filter(|a| !a.associated_resource_arn().is_some_and(|arn| arn.contains(":resourceconfiguration/")))
            .filter_map(|a| a.service_network_arn().map(str::to_owned))
            .collect();
        for list in [&mut configs, &mut networks] {
            list.sort();
            list.dedup();
        }
        let ((resource_configs, mut config_notes), (service_networks, mut network_notes)) =
            tokio::join!(self.lattice.resource_configs(&configs), self.lattice.service_networks(&networks));
        skipped.append(&mut config_notes);
        skipped.append(&mut network_notes);
        LatticeFacts { resource_configs, service_networks, fresh_associations: fresh }
    }

    /// Asks DescribeVpcEndpointServices for the private DNS names of `services`, every fetch:
    /// a provider may rename its service's private DNS name at any time. When the call fails
    /// in a way one service may have caused, each is asked alone, and a service that fails
    /// alone is left out with its reason (its endpoints keep their `vpce-` names).
    async fn private_dns_names(
        &self,
        services: &[String],
        names: &mut HashMap<String, Vec<String>>,
        skipped: &mut Vec<String>,
    ) -> Result<(), FetchError> {
        self.limiter.acquire().await;
        let asked = self.client.describe_vpc_endpoint_services().set_service_names(Some(services.to_vec())).send().await;
        let response = match asked {
            Ok(response) => response,
            Err(error) if services.len() > 1 && worth_narrowing(&error, SERVICE_GONE) => {
                for service in services {
                    Box::pin(self.private_dns_names(std::slice::from_ref(service), names, skipped)).await?;
                }
                return Ok(());
            }
            Err(error) => match item_error(&error, SERVICE_GONE) {
                Some(reason) if services.len() == 1 => {
                    skipped.push(format!("service {}: private DNS names unknown: {reason}", services[0]));
                    return Ok(());
                }
                _ => return Err(self.error("DescribeVpcEndpointServices")(sdk_message(&error))),
            },
        };
        for detail in response.service_details() {
            let Some(service) = detail.service_name() else { continue };
            let mut found: Vec<String> = detail.private_dns_name().map(str::to_owned).into_iter().collect();
            found.extend(detail.private_dns_names().iter().filter_map(|p| p.private_dns_name().map(str::to_owned)));
            found.sort();
            found.dedup();
            names.insert(service.to_owned(), found);
        }
        Ok(())
    }
}

impl Entry for VpcEndpointsConfig {
    fn kind(&self) -> &'static str {
        "vpc_endpoints"
    }

    fn access(&self) -> AwsAccess<'_> {
        VpcEndpointsConfig::access(self)
    }

    fn account_settings(&self) -> (Option<&Accounts>, Option<&str>, Option<&str>, Option<&str>) {
        VpcEndpointsConfig::account_settings(self)
    }

    fn scope(&self) -> String {
        let tags = self.tags.iter().map(|(k, v)| format!("{k}={v}"));
        self.vpc_ids.iter().cloned().chain(tags).collect::<Vec<_>>().join("+")
    }

    fn through(&self, role_arn: Option<String>, api_share: f64) -> (String, Build) {
        let config = Self { role_arn, accounts: None, role_name: None, organization_role_arn: None, ..self.clone() };
        let settings = format!("{config:?} share={api_share}");
        (settings, Box::new(move || Box::pin(async move { Box::new(VpcEndpointSource::new(config, api_share).await) as Box<dyn Source> })))
    }
}

impl Source for VpcEndpointSource {
    fn concerns(&self, change: &Change) -> bool {
        let account = self.config.access().account();
        if change.service != Service::Ec2 || change.region != self.config.region || !same_account(account, change.account.as_deref()) {
            return false;
        }
        self.watched.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(change.endpoint_ids.iter().cloned());
        true
    }

    fn settled(&self) -> bool {
        self.watched.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_empty()
    }

    fn stop_settling(&self) {
        self.watched.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }

    fn restore(&self, last: &Arc<SourceOutput>) {
        self.upstream.restore(last.clone());
        self.lattice.restore(&last.lattice);
        let mut associations = self.last_associations.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for facts in &last.associations {
            associations.entry(facts.endpoint_id.clone()).or_default().push(association_from(facts));
        }
        // The subnets learned before the restart stand in until DescribeSubnets answers.
        let mut subnets = self.last_subnets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *subnets = last.subnets.iter().map(subnet_from).collect();
    }

    fn fetch<'a>(&'a self, env: &'a Env) -> BoxFuture<'a, Result<SourceOutput, FetchError>> {
        Box::pin(async move {
            let (inventory, mut skipped) = self.inventory(env.subnets).await?;
            let ctx = FetchContext {
                region: self.config.region.clone(),
                ttl: env.ttl,
                alias_tag_domains: self.config.alias_tag_domains.iter().map(|d| d.name().clone()).collect(),
                unverified_domains: self.config.unverified_domains.iter().map(|d| d.name().clone()).collect(),
            };
            let mut converted = records_from(&inventory, &ctx);
            skipped.extend(converted.skipped);
            let max_ttl = u32::try_from(env.interval.as_secs()).unwrap_or(u32::MAX);
            let (resolved, unresolved) = self.upstream.resolve(&env.forwarder, &converted.external, max_ttl).await;
            converted.records.extend(resolved);
            skipped.extend(unresolved);
            // Kept until the next fetch: no room to grow (20,000 records grown by doubling
            // hold room for 32,768), origins in one buffer.
            converted.records.compact();
            Ok(SourceOutput {
                records: converted.records,
                endpoints: Arc::new(converted.endpoints.into()),
                skipped,
                lattice: self.lattice.remember(),
                associations: self.remembered_associations(),
                subnets: if env.subnets == SubnetNeed::Learn { subnet_facts(&inventory.subnets, &self.config.region) } else { Vec::new() },
                fetched_at: now_rfc3339(),
                ..SourceOutput::default()
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::types::{
        DnsEntry, DnsOptions, DnsRecordIpType, IpAddressType, NetworkInterfaceIpv6Address, State, Tag, VpcEndpointType,
    };
    use std::collections::BTreeMap;

    use hickory_proto::rr::RecordType;

    use super::*;
    use crate::endpoint_list::EndpointList;

    const SM_ID: &str = "vpce-0f1e2d3c4b5a69788";
    const SM_REGIONAL: &str = "vpce-0f1e2d3c4b5a69788-8m2kq4xz.secretsmanager.us-east-1.vpce.amazonaws.com";

    fn ctx() -> FetchContext {
        FetchContext {
            region: "us-east-1".into(),
            ttl: 60,
            alias_tag_domains: vec![Name::from_ascii("corp.example.").expect("name")],
            unverified_domains: Vec::new(),
        }
    }

    fn eni(id: &str, zone: &str, v4: &str, v6: &[&str]) -> NetworkInterface {
        NetworkInterface::builder()
            .network_interface_id(id)
            .availability_zone(zone)
            .private_ip_address(v4)
            .set_ipv6_addresses(Some(v6.iter().map(|a| NetworkInterfaceIpv6Address::builder().ipv6_address(*a).build()).collect()))
            .vpc_id("vpc-0a1b2c3d4e5f60718")
            .build()
    }

    fn entry(name: &str) -> DnsEntry {
        DnsEntry::builder().dns_name(name).hosted_zone_id("Z7HUB3ZSPD4E8").build()
    }

    /// Secrets Manager, as DescribeVpcEndpoints returns it: lowercase state and type strings,
    /// regional + two zonal + private DNS entries.
    fn secrets_manager() -> VpcEndpoint {
        sm().build()
    }

    fn sm() -> aws_sdk_ec2::types::builders::VpcEndpointBuilder {
        VpcEndpoint::builder()
            .vpc_endpoint_id(SM_ID)
            .vpc_endpoint_type(VpcEndpointType::from("interface"))
            .vpc_id("vpc-0a1b2c3d4e5f60718")
            .service_name("com.amazonaws.us-east-1.secretsmanager")
            .state(State::from("available"))
            .owner_id("111122223333")
            .private_dns_enabled(true)
            .ip_address_type(IpAddressType::from("ipv4"))
            .network_interface_ids("eni-0aaa1111bbbb2222c")
            .network_interface_ids("eni-0ddd3333eeee4444f")
            .dns_entries(entry(SM_REGIONAL))
            .dns_entries(entry("vpce-0f1e2d3c4b5a69788-8m2kq4xz-us-east-1a.secretsmanager.us-east-1.vpce.amazonaws.com"))
            .dns_entries(entry("vpce-0f1e2d3c4b5a69788-8m2kq4xz-us-east-1b.secretsmanager.us-east-1.vpce.amazonaws.com"))
            .dns_entries(entry("secretsmanager.us-east-1.amazonaws.com"))
    }

    fn inventory(endpoints: Vec<VpcEndpoint>) -> Inventory {
        let interfaces = [
            eni("eni-0aaa1111bbbb2222c", "us-east-1a", "10.10.1.25", &[]),
            eni("eni-0ddd3333eeee4444f", "us-east-1b", "10.10.2.41", &[]),
            eni("eni-0s3a", "us-east-1a", "10.10.1.90", &["2600:1f18:6a2b:e101::5a"]),
            eni("eni-0s3b", "us-east-1b", "10.10.2.91", &["2600:1f18:6a2b:e102::5b"]),
        ]
        .into_iter()
        .map(|e| (e.network_interface_id().unwrap().to_owned(), Eni::from(e)))
        .collect();
        let lattice = LatticeFacts { fresh_associations: true, ..LatticeFacts::default() };
        Inventory { endpoints, interfaces, lattice, ..Inventory::default() }
    }

    /// name → sorted "TYPE address" strings, per source kind.
    fn table(converted: &Converted) -> BTreeMap<(String, SourceKind), Vec<String>> {
        let mut t: BTreeMap<(String, SourceKind), Vec<String>> = BTreeMap::new();
        for r in converted.records.iter() {
            t.entry((r.name.to_string(), r.provenance.source))
                .or_default()
                .push(format!("{} {}", r.data.record_type(), r.data));
        }
        t.values_mut().for_each(|v| v.sort());
        t
    }

    fn get<'t>(t: &'t BTreeMap<(String, SourceKind), Vec<String>>, name: &str) -> &'t [String] {
        t.iter().find(|((n, _), _)| n == name).map(|(_, v)| v.as_slice()).unwrap_or(&[])
    }

    #[test]
    fn regional_zonal_and_private_names() {
        let converted = records_from(&inventory(vec![secrets_manager()]), &ctx());
        let t = table(&converted);
        let both = ["A 10.10.1.25", "A 10.10.2.41"];
        assert_eq!(get(&t, &format!("{SM_REGIONAL}.")), both);
        assert_eq!(get(&t, "secretsmanager.us-east-1.amazonaws.com."), both);
        assert_eq!(
            get(&t, "vpce-0f1e2d3c4b5a69788-8m2kq4xz-us-east-1a.secretsmanager.us-east-1.vpce.amazonaws.com."),
            ["A 10.10.1.25"]
        );
        assert_eq!(
            get(&t, "vpce-0f1e2d3c4b5a69788-8m2kq4xz-us-east-1b.secretsmanager.us-east-1.vpce.amazonaws.com."),
            ["A 10.10.2.41"]
        );
        assert_eq!(t.len(), 4);
        assert!(converted.skipped.is_empty(), "{:?}", converted.skipped);
        let r = &converted.records.iter().next().expect("a record");
        assert_eq!(r.ttl, 60);
        assert_eq!(r.provenance.source, SourceKind::EndpointDns);
        for part in [SM_ID, "eni=eni-0aaa1111bbbb2222c", "az=us-east-1a", "vpc=vpc-0a1b2c3d4e5f60718", "account=111122223333", "region=us-east-1", "service=com.amazonaws.us-east-1.secretsmanager"] {
            assert!(r.provenance.origin.text().contains(part), "{part} missing from {}", r.provenance.origin);
        }
        let list = EndpointList::from(converted.endpoints.clone());
        let open = list.open();
        let handles = crate::sources::output::handles(open.iter());
        assert_eq!(handles.get(SM_ID).copied(), Some(format!("{SM_REGIONAL}.").as_str()));
        let [summary] = converted.endpoints.as_slice() else { panic!("one endpoint: {:?}", converted.endpoints) };
        assert_eq!((&*summary.id, &*summary.service), (SM_ID, "com.amazonaws.us-east-1.secretsmanager"));
        assert_eq!(summary.names.len(), 4);
        let per_az: Vec<(String, String)> = summary.interfaces.iter().map(|i| (i.az.to_string(), i.addresses[0].to_string())).collect();
        assert_eq!(per_az, [("us-east-1a".into(), "10.10.1.25".into()), ("us-east-1b".into(), "10.10.2.41".into())]);
        assert_eq!(handles.get("com.amazonaws.us-east-1.secretsmanager").copied(), Some(format!("{SM_REGIONAL}.").as_str()));
    }

    /// An S3 interface endpoint with these ENIs and DNS entries, in this order.
    fn s3_endpoint(enis: &[&str], entries: &[&str]) -> VpcEndpoint {
        VpcEndpoint::builder()
            .vpc_endpoint_id("vpce-0aa11bb22cc33dd44")
            .vpc_endpoint_type(VpcEndpointType::from("interface"))
            .service_name("com.amazonaws.us-east-1.s3")
            .state(State::from("available"))
            .set_network_interface_ids(Some(enis.iter().map(|e| e.to_string()).collect()))
            .set_dns_entries(Some(entries.iter().map(|e| entry(e)).collect()))
            .build()
    }

    /// EC2 does not promise the regional name first among `DnsEntries`: the summary puts it
    /// first whatever the order, so an alias by endpoint id or service answers as the regional
    /// name, not as one AZ's.
    #[test]
    fn an_alias_by_id_answers_as_the_regional_name_whatever_order_ec2_lists_them() {
        let zonal = "vpce-0f1e2d3c4b5a69788-8m2kq4xz-us-east-1b.secretsmanager.us-east-1.vpce.amazonaws.com";
        let endpoint = sm().set_dns_entries(Some(vec![entry(zonal), entry("secretsmanager.us-east-1.amazonaws.com"), entry(SM_REGIONAL)])).build();
        let converted = records_from(&inventory(vec![endpoint]), &ctx());
        let [summary] = converted.endpoints.as_slice() else { panic!("one endpoint: {:?}", converted.endpoints) };
        let regional = format!("{SM_REGIONAL}.");
        assert_eq!(*summary.names, [regional.clone(), format!("{zonal}."), "secretsmanager.us-east-1.amazonaws.com.".into()].map(String::into_boxed_str));
        let list = EndpointList::from(converted.endpoints.clone());
        let open = list.open();
        let handles = crate::sources::output::handles(open.iter());
        assert_eq!(handles.get(SM_ID).copied(), Some(regional.as_str()));
        assert_eq!(handles.get("com.amazonaws.us-east-1.secretsmanager").copied(), Some(regional.as_str()));

        // An S3 endpoint's names are all wildcards: the regional one is still first.
        let s3 = s3_endpoint(
            &["eni-0s3a", "eni-0s3b"],
            &["*.vpce-0aa11bb22cc33dd44-q1w2e3r4-us-east-1a.s3.us-east-1.vpce.amazonaws.com", "*.vpce-0aa11bb22cc33dd44-q1w2e3r4.s3.us-east-1.vpce.amazonaws.com"],
        );
        let converted = records_from(&inventory(vec![s3]), &ctx());
        let list = EndpointList::from(converted.endpoints.clone());
        let open = list.open();
        let handles = crate::sources::output::handles(open.iter());
        assert_eq!(handles.get("vpce-0aa11bb22cc33dd44").copied(), Some("*.vpce-0aa11bb22cc33dd44-q1w2e3r4.s3.us-east-1.vpce.amazonaws.com."));
        // With no regional name at all, a name for every AZ rather than one AZ's.
        let zonal_only = s3_endpoint(&["eni-0s3a"], &["*.vpce-0aa11bb22cc33dd44-q1w2e3r4-us-east-1a.s3.us-east-1.vpce.amazonaws.com", "s3.us-east-1.amazonaws.com"]);
        let converted = records_from(&inventory(vec![zonal_only]), &ctx());
        let list = EndpointList::from(converted.endpoints.clone());
        let open = list.open();
        let handles = crate::sources::output::handles(open.iter());
        assert_eq!(handles.get("vpce-0aa11bb22cc33dd44").copied(), Some("s3.us-east-1.amazonaws.com."));
    }

    #[test]
    fn s3_wildcards_and_dual_stack() {
        let s3 = VpcEndpoint::builder()
            .vpc_endpoint_id("vpce-0aa11bb22cc33dd44")
            .vpc_endpoint_type(VpcEndpointType::from("interface"))
            .service_name("com.amazonaws.us-east-1.s3")
            .state(State::from("available"))
            .private_dns_enabled(true)
            .ip_address_type(IpAddressType::from("dualstack"))
            .dns_options(DnsOptions::builder().dns_record_ip_type(DnsRecordIpType::from("dualstack")).build())
            .network_interface_ids("eni-0s3a")
            .network_interface_ids("eni-0s3b")
            .dns_entries(entry("*.vpce-0aa11bb22cc33dd44-q1w2e3r4.s3.us-east-1.vpce.amazonaws.com"))
            .dns_entries(entry("*.vpce-0aa11bb22cc33dd44-q1w2e3r4-us-east-1a.s3.us-east-1.vpce.amazonaws.com"))
            .dns_entries(entry("s3.us-east-1.amazonaws.com"))
            .dns_entries(entry("*.s3.us-east-1.amazonaws.com"))
            .build();
        let t = table(&records_from(&inventory(vec![s3]), &ctx()));
        let all = ["A 10.10.1.90", "A 10.10.2.91", "AAAA 2600:1f18:6a2b:e101::5a", "AAAA 2600:1f18:6a2b:e102::5b"];
        assert_eq!(get(&t, "*.s3.us-east-1.amazonaws.com."), all);
        assert_eq!(get(&t, "s3.us-east-1.amazonaws.com."), all);
        assert_eq!(get(&t, "*.vpce-0aa11bb22cc33dd44-q1w2e3r4.s3.us-east-1.vpce.amazonaws.com."), all);
        assert_eq!(
            get(&t, "*.vpce-0aa11bb22cc33dd44-q1w2e3r4-us-east-1a.s3.us-east-1.vpce.amazonaws.com."),
            ["A 10.10.1.90", "AAAA 2600:1f18:6a2b:e101::5a"]
        );
    }

    #[test]
    fn ip_family_follows_dns_record_type_then_ip_address_type() {
        let with = |ip_type: &str, record_type: Option<&str>| {
            let mut e = sm();
            e = e.network_interface_ids("eni-0s3a").ip_address_type(IpAddressType::from(ip_type));
            e = e.set_network_interface_ids(Some(vec!["eni-0s3a".into()]));
            if let Some(rt) = record_type {
                e = e.dns_options(DnsOptions::builder().dns_record_ip_type(DnsRecordIpType::from(rt)).build());
            }
            let converted = records_from(&inventory(vec![e.build()]), &ctx());
            let mut types: Vec<RecordType> = converted.records.iter().map(|r| r.data.record_type()).collect();
            types.sort_by_key(|t| u16::from(*t));
            types.dedup();
            types
        };
        assert_eq!(with("ipv4", None), [RecordType::A]);
        assert_eq!(with("dualstack", None), [RecordType::A, RecordType::AAAA], "moto gives no DnsOptions");
        assert_eq!(with("dualstack", Some("ipv4")), [RecordType::A], "DNS record type wins");
        assert_eq!(with("dualstack", Some("service-defined")), [RecordType::A, RecordType::AAAA]);
        assert_eq!(with("ipv6", Some("ipv6")), [RecordType::AAAA]);
    }

    #[test]
    fn service_private_dns_names_apply_only_with_private_dns_enabled() {
        let mut inv = inventory(vec![secrets_manager()]);
        inv.private_dns_names.insert(
            "com.amazonaws.us-east-1.secretsmanager".into(),
            vec!["secretsmanager.us-east-1.amazonaws.com".into(), "secrets.example.internal".into()],
        );
        let t = table(&records_from(&inv, &ctx()));
        assert_eq!(get(&t, "secrets.example.internal.").len(), 2, "every name the service lists");
        assert_eq!(t.len(), 5, "the entry already in DnsEntries is not doubled");

        inv.endpoints = vec![sm().private_dns_enabled(false).build()];
        let t = table(&records_from(&inv, &ctx()));
        assert!(get(&t, "secrets.example.internal.").is_empty());
    }

    #[test]
    fn only_available_interface_and_resource_endpoints() {
        let with_state = |state: &str| sm().state(State::from(state)).build();
        for state in ["pendingAcceptance", "pending", "deleting", "deleted", "rejected", "failed"] {
            let converted = records_from(&inventory(vec![with_state(state)]), &ctx());
            assert!(converted.records.is_empty(), "{state}");
            assert!(converted.skipped[0].contains(state), "{:?}", converted.skipped);
        }
        // Case-insensitive: the SDK's own enum value works as well as AWS's lowercase text.
        assert!(!records_from(&inventory(vec![sm().state(State::Available).build()]), &ctx()).records.is_empty());

        let gateway = VpcEndpoint::builder()
            .vpc_endpoint_id("vpce-0gw")
            .vpc_endpoint_type(VpcEndpointType::from("gateway"))
            .service_name("com.amazonaws.us-east-1.dynamodb")
            .state(State::from("available"))
            .build();
        let converted = records_from(&inventory(vec![gateway]), &ctx());
        assert!(converted.records.is_empty());
        assert!(converted.skipped[0].contains("Gateway"));
    }

    /// Thousands of endpoints' summaries name a handful of VPCs, types and AZs: one copy each.
    #[test]
    fn summaries_keep_what_endpoints_repeat_once() {
        let other = sm().vpc_endpoint_id("vpce-0other").set_dns_entries(Some(vec![entry("vpce-0other-1.secretsmanager.us-east-1.vpce.amazonaws.com")]));
        let converted = records_from(&inventory(vec![sm().build(), other.build()]), &ctx());
        let list = EndpointList::from(converted.endpoints);
        let open = list.open();
        let [one, two] = open.iter().collect::<Vec<_>>()[..] else { panic!("two endpoints: {list:?}") };
        assert_eq!((one.id(), two.id()), (SM_ID, "vpce-0other"));
        assert_eq!((one.vpc(), one.kind()), (two.vpc(), two.kind()));
        let second = one.interfaces().nth(1).expect("a second ENI");
        assert_eq!((&*second.az, &*second.id), ("us-east-1b", "eni-0ddd3333eeee4444f"));
        // The VPC, the type, and each ENI's AZ and AZ ID: once for both endpoints.
        let distinct: std::collections::HashSet<String> =
            [one.vpc(), one.kind()].into_iter().map(str::to_owned).chain(one.interfaces().flat_map(|i| [i.az.to_string(), i.az_id.to_string()])).collect();
        assert_eq!(list.distinct_shared(), distinct.len());
    }

    #[test]
    fn missing_enis_are_skipped_not_fatal() {
        let mut e = sm();
        e = e.network_interface_ids("eni-0gone");
        let converted = records_from(&inventory(vec![e.build()]), &ctx());
        assert_eq!(get(&table(&converted), "secretsmanager.us-east-1.amazonaws.com.").len(), 2);
        assert!(converted.skipped.iter().any(|s| s.contains("eni-0gone")));

        let orphan = sm().set_network_interface_ids(Some(vec!["eni-0gone".into()])).build();
        let converted = records_from(&inventory(vec![orphan]), &ctx());
        assert!(converted.records.is_empty());
        assert!(converted.skipped.iter().any(|s| s.contains("no ENI addresses")));
    }

    #[test]
    fn alias_tags_and_resource_endpoints() {
        let tagged = sm()
            .tags(Tag::builder().key(ALIAS_TAG).value("secrets.corp.example, vault.corp.example").build())
            .tags(Tag::builder().key("Name").value("ignored").build())
            .build();
        let resource_builder = VpcEndpoint::builder()
            .vpc_endpoint_id("vpce-0rc")
            .vpc_endpoint_type(VpcEndpointType::from("resource"))
            .resource_configuration_arn("arn:aws:vpc-lattice:us-east-1:111122223333:resourceconfiguration/rcfg-0abc")
            .state(State::from("available"))
            .network_interface_ids("eni-0s3b")
            .dns_entries(entry("vpce-0rc-abc.rcfg-0abc.4232ccc.vpc-lattice-rsc.us-east-1.on.aws"))
            .tags(Tag::builder().key(ALIAS_TAG).value("db.corp.example").build());
        let untagged_resource = resource_builder.clone().vpc_endpoint_id("vpce-0rc2").set_tags(None).build();
        let resource = resource_builder.build();
        let converted = records_from(&inventory(vec![tagged, resource, untagged_resource]), &ctx());
        let t = table(&converted);
        assert_eq!(t.get(&("secrets.corp.example.".into(), SourceKind::EndpointTag)).map(Vec::len), Some(2));
        assert_eq!(t.get(&("vault.corp.example.".into(), SourceKind::EndpointTag)).map(Vec::len), Some(2));
        assert_eq!(get(&t, "db.corp.example."), ["A 10.10.2.91"], "resource endpoint under its tag name");
        assert!(get(&t, "vpce-0rc-abc.rcfg-0abc.4232ccc.vpc-lattice-rsc.us-east-1.on.aws.").is_empty());
        assert!(converted.skipped.iter().any(|s| s.starts_with("vpce-0rc2") && s.contains(ALIAS_TAG)));
        let list = EndpointList::from(converted.endpoints.clone());
        assert_eq!(crate::sources::output::handles(list.open().iter()).get("vpce-0rc").copied(), Some("db.corp.example."));
    }

    /// A service-network endpoint's names are answered from upstream (records come later, from
    /// the resolution); its tag names answer as its one association, and with two, which one a
    /// tag means is unknown.
    #[test]
    fn service_network_endpoints_are_answered_from_upstream_and_tags_need_one_association() {
        let snsa = "vpce-0f3e-snsa-07b0.7d67968.vpc-lattice-svcs.us-east-1.on.aws";
        let association = |id: &str, name: &str| {
            aws_sdk_ec2::types::VpcEndpointAssociation::builder()
                .id(id)
                .vpc_endpoint_id("vpce-0f3e")
                .service_network_arn("arn:aws:vpc-lattice:us-east-1:444455556666:servicenetwork/sn-1")
                .associated_resource_accessibility("Accessible")
                .dns_entry(entry(name))
                .build()
        };
        let endpoint = VpcEndpoint::builder()
            .vpc_endpoint_id("vpce-0f3e")
            .vpc_endpoint_type(VpcEndpointType::from("ServiceNetwork"))
            .state(State::from("Available"))
            .ip_address_type(IpAddressType::from("DUALSTACK"))
            .tags(Tag::builder().key(ALIAS_TAG).value("orders.corp.example").build())
            .build();
        let mut inv = inventory(vec![endpoint]);
        inv.associations.insert("vpce-0f3e".into(), vec![association("a1", snsa)]);
        let converted = records_from(&inv, &ctx());
        assert!(converted.records.is_empty(), "no ENI records: EC2 does not say which address is whose");
        let asked: Vec<(String, RecordType, String)> =
            converted.external.iter().map(|e| (e.name.to_string(), e.rtype, e.target.to_string())).collect();
        let target = format!("{snsa}.");
        assert_eq!(
            asked,
            [
                (target.clone(), RecordType::A, target.clone()),
                (target.clone(), RecordType::AAAA, target.clone()),
                ("orders.corp.example.".into(), RecordType::A, target.clone()),
                ("orders.corp.example.".into(), RecordType::AAAA, target.clone()),
            ],
            "dual-stack: A and AAAA, the tag name as the association"
        );
        assert_eq!(&*converted.endpoints[0].kind, "ServiceNetwork");

        inv.associations.insert("vpce-0f3e".into(), vec![association("a1", snsa), association("a2", "vpce-0f3e-snsa-0999.7d67968.vpc-lattice-svcs.us-east-1.on.aws")]);
        let converted = records_from(&inv, &ctx());
        assert!(!converted.external.iter().any(|e| e.name.to_string() == "orders.corp.example."));
        assert!(converted.skipped.iter().any(|s| s.contains("exactly one association")), "{:?}", converted.skipped);
    }

    /// A resource endpoint (lower-case type and state, as may come) on one ENI, and its
    /// association with the private DNS entry `private`.
    fn resource_endpoint_with(private: &str) -> (VpcEndpoint, aws_sdk_ec2::types::VpcEndpointAssociation) {
        let resource = VpcEndpoint::builder()
            .vpc_endpoint_id("vpce-0rc")
            .vpc_endpoint_type(VpcEndpointType::from("resource"))
            .state(State::from("available"))
            .private_dns_enabled(true)
            .network_interface_ids("eni-0s3b")
            .build();
        let association = aws_sdk_ec2::types::VpcEndpointAssociation::builder()
            .id("vpce-rsc-asc-1")
            .vpc_endpoint_id("vpce-0rc")
            .associated_resource_arn("arn:aws:vpc-lattice:us-east-1:444455556666:resourceconfiguration/rcfg-1")
            .dns_entry(entry("vpce-0rc.rcfg-1.4232ccc.vpc-lattice-rsc.us-east-1.on.aws"))
            .private_dns_entry(entry(private))
            .build();
        (resource, association)
    }

    /// A custom domain name another endpoint published first (here the Secrets Manager
    /// endpoint's private DNS name) is left out, never mixed with its addresses.
    #[test]
    fn a_custom_domain_claimed_by_another_endpoint_is_left_out() {
        let (resource, association) = resource_endpoint_with("secretsmanager.us-east-1.amazonaws.com");
        // The resource endpoint is listed first; interface endpoints still claim first.
        let mut inv = inventory(vec![resource, secrets_manager()]);
        inv.associations.insert("vpce-0rc".into(), vec![association]);
        let converted = records_from(&inv, &ctx());
        let t = table(&converted);
        assert_eq!(get(&t, "secretsmanager.us-east-1.amazonaws.com."), ["A 10.10.1.25", "A 10.10.2.41"], "the interface endpoint's alone");
        assert!(converted.skipped.iter().any(|s| s.contains("already served for vpce-0f1e2d3c4b5a69788")), "{:?}", converted.skipped);
        let summary = converted.endpoints.iter().find(|e| &*e.id == "vpce-0rc").expect("published");
        assert_eq!(&*summary.kind, "Resource", "EC2's spelling, whatever the case it came in");
        assert!(!summary.domains[0].served);
    }

    /// A tag claims nothing: a verified custom domain another endpoint's tag names is still
    /// published (the table puts endpoint names above tags).
    #[test]
    fn a_tag_never_takes_a_custom_domain_over() {
        let (resource, association) = resource_endpoint_with("proxy.corp.example");
        let tagged = sm().tags(Tag::builder().key(ALIAS_TAG).value("proxy.corp.example").build()).build();
        let mut inv = inventory(vec![tagged, resource]);
        inv.associations.insert("vpce-0rc".into(), vec![association]);
        let t = table(&records_from(&inv, &ctx()));
        assert_eq!(t.get(&("proxy.corp.example.".into(), SourceKind::EndpointDns)).map(Vec::as_slice), Some(&["A 10.10.2.91".to_owned()][..]));
        assert!(t.contains_key(&("proxy.corp.example.".into(), SourceKind::EndpointTag)), "the tag's too, which the table ranks below");
    }

    /// An association survives its trip through the state file.
    #[test]
    fn subnets_round_trip_through_plain_data() {
        use aws_sdk_ec2::types::SubnetIpv6CidrBlockAssociation;
        let subnet = Subnet::builder()
            .subnet_id("subnet-0a11a11a11a11a11a")
            .vpc_id("vpc-0a1b2c3d4e5f60718")
            .owner_id("111122223333")
            .availability_zone("us-east-1a")
            .availability_zone_id("use1-az1")
            .cidr_block("10.10.1.0/24")
            .ipv6_cidr_block_association_set(SubnetIpv6CidrBlockAssociation::builder().ipv6_cidr_block("2600:1f18:6a2b:e101::/64").build())
            .build();
        let no_zone = Subnet::builder().subnet_id("subnet-x").cidr_block("10.9.0.0/24").build();
        let subnets = HashMap::from([("subnet-0a11a11a11a11a11a".to_owned(), subnet), ("subnet-x".to_owned(), no_zone)]);
        let facts = subnet_facts(&subnets, "us-east-1");
        assert_eq!(facts.len(), 1, "a subnet without an AZ ID places no one");
        assert_eq!(facts[0].cidrs.iter().map(ToString::to_string).collect::<Vec<_>>(), ["10.10.1.0/24", "2600:1f18:6a2b:e101::/64"]);
        let back: HashMap<String, Subnet> = facts.iter().map(|f| (f.id.clone(), subnet_from(f))).collect();
        assert_eq!(subnet_facts(&back, "us-east-1"), facts);
    }

    #[test]
    fn associations_round_trip_through_plain_data() {
        let association = aws_sdk_ec2::types::VpcEndpointAssociation::builder()
            .id("vpce-rsc-asc-1")
            .vpc_endpoint_id("vpce-0rc")
            .dns_entry(entry("vpce-0rc.rcfg-1.4232ccc.vpc-lattice-rsc.us-east-1.on.aws"))
            .private_dns_entry(entry("proxy.corp.example"))
            .associated_resource_arn("arn:aws:vpc-lattice:us-east-1:4:resourceconfiguration/rcfg-1")
            .associated_resource_accessibility("Accessible")
            .build();
        let facts = facts_of("vpce-0rc", &association);
        let back = association_from(&facts);
        assert_eq!(facts_of("vpce-0rc", &back), facts);
        assert_eq!(back.private_dns_entry().and_then(|e| e.dns_name()), Some("proxy.corp.example"));
    }

    /// Issue 14 item 3: a tag names only what its domain allows, and no source owns the root or
    /// a public suffix (a tag of `.` used to switch resolution off for every client).
    #[test]
    fn tags_and_entries_never_take_over_names_they_do_not_own() {
        let tagged = sm()
            .tags(Tag::builder().key(ALIAS_TAG).value("ok.corp.example,.,com, co.uk,github.com,x.corp.example.evil.test,*.corp.example").build())
            .dns_entries(entry("."))
            .dns_entries(entry(""))
            .build();
        let converted = records_from(&inventory(vec![tagged]), &ctx());
        let t = table(&converted);
        let tag_names: Vec<&String> = t.keys().filter(|(_, kind)| *kind == SourceKind::EndpointTag).map(|(n, _)| n).collect();
        assert_eq!(tag_names, ["ok.corp.example."], "{:?}", converted.skipped);
        assert!(!t.keys().any(|(n, _)| n == "."), "the root is never owned");
        for refused in ["`.`", "`com`", "`co.uk`"] {
            assert!(converted.skipped.iter().any(|s| s.contains(refused) && s.contains("cannot be an owned name")), "{refused}: {:?}", converted.skipped);
        }
        assert!(converted.skipped.iter().any(|s| s.contains("*.corp.example.") && s.contains("wildcard")), "{:?}", converted.skipped);
        for outside in ["github.com.", "x.corp.example.evil.test."] {
            assert!(converted.skipped.iter().any(|s| s.contains(outside) && s.contains("alias_tag_domains")), "{outside}: {:?}", converted.skipped);
        }
        let mut closed = ctx();
        closed.alias_tag_domains.clear();
        let converted = records_from(&inventory(vec![sm().tags(Tag::builder().key(ALIAS_TAG).value("ok.corp.example").build()).build()]), &closed);
        assert!(!table(&converted).keys().any(|(_, kind)| *kind == SourceKind::EndpointTag), "default: tags publish nothing");
    }

    #[test]
    fn zonal_names_are_recognised() {
        assert_eq!(vpce_zone("vpce-0f1e-8m2kq4xz-us-east-1a.secretsmanager.us-east-1.vpce.amazonaws.com"), Some("us-east-1a".into()));
        assert_eq!(vpce_zone("*.vpce-0aa-q1w2-eu-west-2c.s3.eu-west-2.vpce.amazonaws.com"), Some("eu-west-2c".into()));
        assert_eq!(vpce_zone("vpce-0f1e-8m2kq4xz.secretsmanager.us-east-1.vpce.amazonaws.com"), None);
        assert_eq!(vpce_zone("secretsmanager.us-east-1.amazonaws.com"), None);
    }
}
