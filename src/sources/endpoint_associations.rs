//! The names of resource (`Resource`) and service-network (`ServiceNetwork`) endpoints, from
//! their associations: a pure conversion of EC2's DescribeVpcEndpointAssociations (and what
//! VPC Lattice says of the resource configurations and services behind them) into names, each
//! with where its addresses come from. `vpc_endpoints` makes the records.
//!
//! What AWS gives these endpoints (EC2 API reference, DescribeVpcEndpoints and
//! DescribeVpcEndpointAssociations; AWS PrivateLink guide, "Access VPC resources" and "Access
//! service networks", DNS hostnames):
//! - DescribeVpcEndpoints lists no DNS entries for them; each association (one per resource
//!   configuration, and for a service-network endpoint one per service too) has a `DnsEntry`:
//!   `vpce-….rcfg-….<hash>.vpc-lattice-rsc.<region>.on.aws` (resource endpoint),
//!   `vpce-…-snra-….rcfg-….vpc-lattice-rsc…` and `vpce-…-snsa-….vpc-lattice-svcs…`
//!   (service-network endpoint), and, where Lattice made private DNS for a custom domain in the
//!   endpoint's VPC, a `PrivateDnsEntry` with that name.
//! - A resource endpoint's names resolve to its network interfaces' addresses ("Access VPC
//!   resources": traffic to the resource is resolved to the private IP addresses of the
//!   resource endpoint's network interfaces). A service-network endpoint gives each resource
//!   configuration its own address per AZ and the services a /28 per AZ, and EC2 says nowhere
//!   which address is whose; its names are public and answer those private addresses, so they
//!   are answered with what the upstreams say of the association's own name
//!   ([`Answer::Upstream`], `sources::upstream`).
//!
//! Custom domain names (VPC Lattice user guide, "Custom domain names for resource
//! configurations", resource consumers; EC2 `DnsOptions.PrivateDnsPreference`):
//! - an association's private DNS entry is the name VPC Lattice made private DNS for in the
//!   endpoint's VPC, having applied private DNS on/off (the service network's resource
//!   association overriding the endpoint), the endpoint's preference and its other rules: it
//!   is served when its owner verified it, or when it is under the source's
//!   `unverified_domains` — AWS answers an unverified name in one VPC, hubdns would answer
//!   every client. When Lattice says nothing of it, the entry's being there — in EC2's answer
//!   of this fetch — under `VERIFIED_DOMAINS_ONLY`, or not covered by the specified domains
//!   under `VERIFIED_DOMAINS_AND_SPECIFIED_DOMAINS`, says it is verified;
//! - a resource configuration's custom domain name or DNS target with no private DNS entry
//!   is not served: AWS made no private DNS for it;
//! - a service's custom domain name (AWS makes no private DNS for services) is served with
//!   private DNS on, when the preference admits it (`VERIFIED_DOMAINS_ONLY`, the default:
//!   verified ones — which a service's never is; `ALL_DOMAINS`: all;
//!   `VERIFIED_DOMAINS_AND_SPECIFIED_DOMAINS`: verified or listed; `SPECIFIED_DOMAINS_ONLY`:
//!   listed; a listed `*.example.com` covers the names below `example.com`, `*` every name),
//!   and under `unverified_domains`;
//! - no wildcard custom domain name is served (AWS documents none).

use std::collections::HashMap;

use aws_sdk_ec2::types::{VpcEndpoint, VpcEndpointAssociation};
use hickory_proto::rr::Name;

use crate::{
    snapshot::ownable,
    sources::{
        lattice::{Known, ResourceConfig, ServiceDomain},
        output::{DomainSummary, is_verified},
    },
};

/// What VPC Lattice said of the resource configurations (by ARN) and service networks (by
/// ARN) behind the associations.
#[derive(Debug, Default, Clone)]
pub struct LatticeFacts {
    /// GetResourceConfiguration, by resource configuration ARN.
    pub resource_configs: HashMap<String, Known<ResourceConfig>>,
    /// ListServiceNetworkServiceAssociations, by service network ARN.
    pub service_networks: HashMap<String, Known<Vec<ServiceDomain>>>,
    /// Whether the associations are EC2's answer of this fetch (not the last ones kept
    /// through a failure): only then may a private DNS entry speak for its verification.
    pub fresh_associations: bool,
}

/// Where a name's addresses come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The endpoint's network interfaces (resource endpoints).
    Enis,
    /// What the upstreams answer for this name (a service-network association's own name).
    Upstream(Name),
}

/// One name to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Named {
    /// The name.
    pub name: Name,
    /// Where its addresses come from.
    pub answer: Answer,
    /// What it is, for its provenance: association, resource or service, custom domain and
    /// its verification.
    pub origin: String,
    /// A custom domain name (not one AWS generated for the endpoint): another endpoint may
    /// claim it too, and only the first is served.
    pub custom: bool,
}

/// What [`names_from`] made of one endpoint's associations.
#[derive(Debug, Default)]
pub struct Planned {
    /// Names to publish, first claim wins.
    pub names: Vec<Named>,
    /// Every custom domain name considered, served or not.
    pub domains: Vec<DomainSummary>,
    /// Associations and names left out, and why.
    pub skipped: Vec<String>,
}

/// A candidate custom domain name of one association.
struct Candidate {
    name: String,
    from: &'static str,
    /// Its key in the provenance (`custom_domain=…`).
    key: &'static str,
    /// `Ok(status)` when its owner's verification is known (`VERIFIED`, …); `Err(why)` when not.
    verification: Result<String, String>,
    /// What AWS decided about it.
    gate: Gate,
}

/// What AWS decided about a candidate name, before hubdns's own verification rule.
#[derive(Clone, Copy, PartialEq)]
enum Gate {
    /// The association's private DNS entry: VPC Lattice made private DNS for it in the
    /// endpoint's VPC, having applied private DNS on/off (the service network's resource
    /// association overriding the endpoint), the preference and its other rules.
    AwsAnswersIt,
    /// A resource configuration's name without a private DNS entry: AWS made no private DNS
    /// for it (private DNS off, not admitted, a group without a group domain, …).
    AwsDoesNot,
    /// A service's custom domain name: AWS makes no private DNS for services at all; served
    /// on the consumer's settings (private DNS on, the preference) alone.
    Consumer,
}

/// The names of one available `Resource` or `ServiceNetwork` endpoint, from its
/// `associations`, what Lattice said (`facts`), and the domains unverified names may be
/// served under. Pure.
pub fn names_from(endpoint: &VpcEndpoint, associations: &[&VpcEndpointAssociation], facts: &LatticeFacts, unverified_domains: &[Name]) -> Planned {
    let mut out = Planned::default();
    let id = endpoint.vpc_endpoint_id().unwrap_or("(no id)");
    let service_network = endpoint.vpc_endpoint_type().is_some_and(|t| t.as_str().eq_ignore_ascii_case("servicenetwork"));
    let private_dns = endpoint.private_dns_enabled() == Some(true);
    let options = endpoint.dns_options();
    // EC2 API reference, DnsOptions: VERIFIED_DOMAINS_ONLY unless the consumer chose otherwise.
    let preference = options.and_then(|o| o.private_dns_preference()).filter(|p| !p.is_empty()).unwrap_or("VERIFIED_DOMAINS_ONLY").to_ascii_uppercase();
    let specified: Vec<String> = options.map(|o| o.private_dns_specified_domains().to_vec()).unwrap_or_default();

    for association in associations {
        let assoc = association.id().unwrap_or("(no id)");
        let resource = association.associated_resource_arn().unwrap_or("");
        if let Some(code) = association.failure_code().filter(|c| !c.is_empty()) {
            let reason = association.failure_reason().unwrap_or("");
            out.skipped.push(format!("{id}: association {assoc} ({resource}) failed: {code}: {reason}"));
            continue;
        }
        if let Some(access) = association.associated_resource_accessibility().filter(|a| !a.eq_ignore_ascii_case("accessible")) {
            out.skipped.push(format!("{id}: association {assoc} ({resource}) skipped: resource {access}"));
            continue;
        }
        let Some(own) = association.dns_entry().and_then(|e| e.dns_name()).filter(|n| !n.trim().trim_end_matches('.').is_empty()).and_then(|n| parse(n).ok()) else {
            out.skipped.push(format!("{id}: association {assoc} ({resource}) has no DNS name"));
            continue;
        };
        let answer = if service_network { Answer::Upstream(own.clone()) } else { Answer::Enis };
        let network = association.service_network_arn().map(|n| format!(" service_network={n}")).unwrap_or_default();
        let origin = format!("association={assoc} resource={resource}{network}");
        push(&mut out, &own, Named { name: own.clone(), answer: answer.clone(), origin: origin.clone(), custom: false }, id);

        for candidate in candidates(association, facts, &own, &preference, &specified, facts.fresh_associations) {
            let verified = candidate.verification.as_deref().is_ok_and(is_verified);
            let verification = candidate.verification.clone().unwrap_or_else(|why| format!("unknown ({why})"));
            let refused = match parse(&candidate.name) {
                Err(error) => Some(format!("not a domain name: {error}")),
                Ok(name) => match ownable(&name) {
                    Err(reason) => Some(reason.to_string()),
                    Ok(()) if name.is_wildcard() => Some("a wildcard custom domain name is not served (AWS documents none)".to_owned()),
                    Ok(()) if candidate.gate == Gate::AwsDoesNot => {
                        Some("VPC Lattice made no private DNS for it in the endpoint's VPC (the association has no private DNS entry)".to_owned())
                    }
                    Ok(()) if candidate.gate == Gate::Consumer && !private_dns => Some("private DNS is off for this endpoint".to_owned()),
                    Ok(()) if candidate.gate == Gate::Consumer && !admitted(&preference, &specified, &name, verified) => {
                        Some(format!("the endpoint's private DNS preference {preference} does not admit it"))
                    }
                    Ok(()) if !verified && !unverified_domains.iter().any(|d| d.zone_of(&name)) => {
                        Some("not verified by its owner, and not under unverified_domains".to_owned())
                    }
                    Ok(()) => {
                        let status = candidate.verification.as_deref().unwrap_or("unknown");
                        let origin = format!("{origin} {}={} verification={status}", candidate.key, candidate.name);
                        push(&mut out, &own, Named { name, answer: answer.clone(), origin, custom: true }, id);
                        None
                    }
                },
            };
            out.domains.push(DomainSummary {
                name: candidate.name.clone(),
                from: candidate.from.to_owned(),
                verification,
                served: refused.is_none(),
                why: refused.clone().unwrap_or_else(|| if verified { "verified".to_owned() } else { "under unverified_domains".to_owned() }),
            });
            if let Some(reason) = refused {
                out.skipped.push(format!("{id}: {} `{}` of {assoc} not served: {reason}", candidate.from, candidate.name));
            }
        }
    }
    out
}

/// Adds `named` unless its name is taken (first claim wins) or no one may own it.
fn push(out: &mut Planned, own: &Name, named: Named, id: &str) {
    if let Err(reason) = ownable(&named.name) {
        out.skipped.push(format!("{id}: name `{}` skipped: {reason}", named.name));
    } else if !out.names.iter().any(|n| n.name == named.name) {
        out.names.push(named);
    } else if named.name != *own {
        out.skipped.push(format!("{id}: name `{}` already published for another association", named.name));
    }
}

/// The custom domain names one association could be served under, without repeats: its
/// private DNS entry, its resource configuration's custom domain name and DNS resource, its
/// service's custom domain name.
fn candidates(association: &VpcEndpointAssociation, facts: &LatticeFacts, own: &Name, preference: &str, specified: &[String], fresh: bool) -> Vec<Candidate> {
    let resource = association.associated_resource_arn().unwrap_or("");
    let config: Option<Known<&ResourceConfig>> = resource.contains(":resourceconfiguration/").then(|| match facts.resource_configs.get(resource) {
        Some(Ok(config)) => Ok(config),
        Some(Err(why)) => Err(why.clone()),
        None => Err("not asked".to_owned()),
    });
    let config_status = |name: &str| -> Result<String, String> {
        match &config {
            Some(Ok(c)) if c.custom_domain.as_deref().is_some_and(|d| same_name(d, name)) => {
                c.verification.clone().ok_or_else(|| "no verification status".to_owned())
            }
            Some(Ok(_)) => Err("not the resource configuration's custom domain name".to_owned()),
            Some(Err(why)) => Err(why.clone()),
            None => Err("no resource configuration".to_owned()),
        }
    };
    let mut found: Vec<Candidate> = Vec::new();
    let mut add = |name: &str, (from, key): (&'static str, &'static str), verification: Result<String, String>, gate: Gate| {
        let name = name.trim().trim_end_matches('.');
        if !name.is_empty() && !found.iter().any(|c| same_name(&c.name, name)) && !same_name(&own.to_string(), name) {
            found.push(Candidate { name: name.to_owned(), from, key, verification, gate });
        }
    };

    if let Some(private) = association.private_dns_entry().and_then(|e| e.dns_name()).filter(|n| !n.trim().is_empty()) {
        // Lattice makes private DNS for an unverified name only under ALL_DOMAINS or when the
        // consumer listed it: otherwise the entry's being there says it is verified — when
        // Lattice says nothing, and only of an entry EC2 gave this time (a kept one may be
        // from before the preference changed).
        let listed = parse(private).is_ok_and(|n| specified.iter().any(|s| specified_covers(s, &n)));
        let implied = fresh && (preference == "VERIFIED_DOMAINS_ONLY" || (preference == "VERIFIED_DOMAINS_AND_SPECIFIED_DOMAINS" && !listed));
        let status = config_status(private).or_else(|why| if implied { Ok("VERIFIED".to_owned()) } else { Err(why) });
        add(private, ("private DNS entry", "private_dns_entry"), status, Gate::AwsAnswersIt);
    }
    if let Some(Ok(c)) = &config {
        if let Some(custom) = &c.custom_domain {
            add(custom, ("resource configuration custom domain", "custom_domain"), config_status(custom), Gate::AwsDoesNot);
        }
        if let Some(target) = &c.dns_resource_domain {
            let status = config_status(target).or(Err("a DNS resource's own name is never verified".to_owned()));
            add(target, ("DNS resource domain", "dns_resource"), status, Gate::AwsDoesNot);
        }
    }
    if let Some(network) = association.service_network_arn().filter(|_| !resource.contains(":resourceconfiguration/")) {
        let label = own.iter().next().map(|l| String::from_utf8_lossy(l).to_ascii_lowercase()).unwrap_or_default();
        if let Some(Ok(services)) = facts.service_networks.get(network) {
            let service = services
                .iter()
                .find(|s| (!resource.is_empty() && s.service_arn == resource) || label.ends_with(&s.association_id.to_ascii_lowercase()));
            if let Some(custom) = service.and_then(|s| s.custom_domain.as_deref()) {
                add(custom, ("service custom domain", "service_custom_domain"), Err("VPC Lattice does not verify a service's custom domain name".to_owned()), Gate::Consumer);
            }
        }
    }
    found
}

/// Whether the endpoint's private DNS preference admits `name` (EC2 API reference,
/// DnsOptions.PrivateDnsPreference); an unknown preference admits verified names only.
fn admitted(preference: &str, specified: &[String], name: &Name, verified: bool) -> bool {
    let listed = || specified.iter().any(|s| specified_covers(s, name));
    match preference {
        "ALL_DOMAINS" => true,
        "VERIFIED_DOMAINS_AND_SPECIFIED_DOMAINS" => verified || listed(),
        "SPECIFIED_DOMAINS_ONLY" => listed(),
        _ => verified,
    }
}

/// Whether one of `PrivateDnsSpecifiedDomains` covers `name`: `*` every name (AWS lists it
/// when the consumer named none), `*.example.com` the names below `example.com`, any other
/// entry that name alone.
fn specified_covers(entry: &str, name: &Name) -> bool {
    let entry = entry.trim().trim_end_matches('.');
    if entry == "*" {
        return true;
    }
    match entry.strip_prefix("*.") {
        Some(parent) => parse(parent).is_ok_and(|p| p.zone_of(name) && p != *name),
        None => parse(entry).is_ok_and(|e| e == *name),
    }
}

fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.').eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// An absolute, lowercase name.
fn parse(text: &str) -> Result<Name, String> {
    let mut name = Name::from_ascii(text.trim().trim_end_matches('.')).map_err(|e| e.to_string())?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::types::{DnsEntry, DnsOptions, State, VpcEndpointType};

    use super::*;

    const RCFG: &str = "arn:aws:vpc-lattice:us-east-1:444455556666:resourceconfiguration/rcfg-0e1d2c3b4a5f60789";
    const RSC_NAME: &str = "vpce-0e5c7a9b1d3f50011.rcfg-0e1d2c3b4a5f60789.4232ccc.vpc-lattice-rsc.us-east-1.on.aws";
    const SN: &str = "arn:aws:service-network:us-east-1:444455556666:servicenetwork/sn-0a1b2c3d4e5f60718";

    fn entry(name: &str) -> DnsEntry {
        DnsEntry::builder().dns_name(name).hosted_zone_id("Z03265862FOUNWMZOKUF4").build()
    }

    /// A resource endpoint as DescribeVpcEndpoints returns it: no DNS entries, `IPV4` in upper
    /// case, the private DNS options echoed.
    fn resource_endpoint(preference: Option<&str>, specified: &[&str]) -> VpcEndpoint {
        resource_endpoint_builder(preference, specified).build()
    }

    fn resource_endpoint_builder(preference: Option<&str>, specified: &[&str]) -> aws_sdk_ec2::types::builders::VpcEndpointBuilder {
        let mut options = DnsOptions::builder();
        if let Some(p) = preference {
            options = options.private_dns_preference(p);
        }
        VpcEndpoint::builder()
            .vpc_endpoint_id("vpce-0e5c7a9b1d3f50011")
            .vpc_endpoint_type(VpcEndpointType::from("Resource"))
            .state(State::from("Available"))
            .resource_configuration_arn(RCFG)
            .private_dns_enabled(true)
            .dns_options(options.set_private_dns_specified_domains(Some(specified.iter().map(|s| (*s).to_owned()).collect())).build())
    }

    /// Its association, shaped like the AWS CLI's describe-vpc-endpoint-associations example.
    fn resource_association(private: Option<&str>) -> VpcEndpointAssociation {
        resource_association_builder(private).build()
    }

    fn resource_association_builder(private: Option<&str>) -> aws_sdk_ec2::types::builders::VpcEndpointAssociationBuilder {
        let mut a = VpcEndpointAssociation::builder()
            .id("vpce-rsc-asc-0a810ca6ac8866bf9")
            .vpc_endpoint_id("vpce-0e5c7a9b1d3f50011")
            .associated_resource_accessibility("Accessible")
            .dns_entry(entry(RSC_NAME))
            .associated_resource_arn(RCFG);
        if let Some(p) = private {
            a = a.private_dns_entry(entry(p));
        }
        a
    }

    fn facts(custom: Option<&str>, verification: Option<&str>) -> LatticeFacts {
        let config = ResourceConfig {
            arn: RCFG.into(),
            custom_domain: custom.map(str::to_owned),
            verification: verification.map(str::to_owned),
            dns_resource_domain: Some("proxy.internal.provider.example".into()),
        };
        LatticeFacts { resource_configs: HashMap::from([(RCFG.to_owned(), Ok(config))]), fresh_associations: true, ..LatticeFacts::default() }
    }

    fn served(planned: &Planned) -> Vec<String> {
        planned.names.iter().map(|n| n.name.to_string()).collect()
    }

    fn name(text: &str) -> Name {
        parse(text).expect("name")
    }

    #[test]
    fn a_resource_endpoint_answers_its_own_name_and_its_verified_custom_domain_from_its_enis() {
        let endpoint = resource_endpoint(None, &["*"]);
        let association = resource_association(Some("proxy.egress.example"));
        let planned = names_from(&endpoint, &[&association], &facts(Some("proxy.egress.example"), Some("VERIFIED")), &[]);
        assert_eq!(served(&planned), [format!("{RSC_NAME}."), "proxy.egress.example.".to_owned()]);
        assert!(planned.names.iter().all(|n| n.answer == Answer::Enis));
        let custom = &planned.names[1];
        for part in ["association=vpce-rsc-asc-0a810ca6ac8866bf9", "verification=VERIFIED", RCFG] {
            assert!(custom.origin.contains(part), "{part} in {}", custom.origin);
        }
        // The DNS resource's own name is never verified: not served without unverified_domains.
        let target = planned.domains.iter().find(|d| d.name == "proxy.internal.provider.example").expect("listed");
        assert!(!target.served, "{target:?}");
        assert_eq!(planned.domains.iter().filter(|d| d.served).count(), 1);
    }

    #[test]
    fn an_unverified_private_dns_entry_needs_unverified_domains() {
        let association = resource_association(Some("db.partner.example"));
        let pending = facts(Some("db.partner.example"), Some("PENDING"));
        let allowed = [name("partner.example")];
        let endpoint = resource_endpoint(Some("ALL_DOMAINS"), &["*"]);
        let served_with = |allowed: &[Name]| served(&names_from(&endpoint, &[&association], &pending, allowed)).contains(&"db.partner.example.".to_owned());
        assert!(!served_with(&[]), "AWS answers it in one VPC; hubdns would answer every client");
        assert!(served_with(&allowed));
        // AWS made the entry, having applied private DNS and the preference: not asked again.
        let off = resource_endpoint_builder(Some("SPECIFIED_DOMAINS_ONLY"), &["other.example"]).private_dns_enabled(false).build();
        assert!(served(&names_from(&off, &[&association], &pending, &allowed)).contains(&"db.partner.example.".to_owned()));
    }

    #[test]
    fn a_resource_configurations_name_without_a_private_dns_entry_is_not_served() {
        let verified = facts(Some("db.partner.example"), Some("VERIFIED"));
        let planned = names_from(&resource_endpoint(Some("ALL_DOMAINS"), &["*"]), &[&resource_association(None)], &verified, &[name("partner.example")]);
        assert_eq!(served(&planned), [format!("{RSC_NAME}.")], "AWS made no private DNS for it");
        let custom = planned.domains.iter().find(|d| d.name == "db.partner.example").expect("listed");
        assert!(!custom.served && custom.why.contains("no private DNS entry"), "{custom:?}");
        assert_eq!(custom.verification, "VERIFIED");
    }

    #[test]
    fn a_services_custom_domain_needs_private_dns_the_preference_and_unverified_domains() {
        let association = service_association();
        let facts = service_facts();
        let allowed = [name("svc.example")];
        let served_with = |private_dns: bool, preference: &str, specified: &[&str], allowed: &[Name]| {
            let endpoint = service_network_endpoint(private_dns, preference, specified);
            served(&names_from(&endpoint, &[&association], &facts, allowed)).contains(&"orders.svc.example.".to_owned())
        };
        assert!(served_with(true, "ALL_DOMAINS", &["*"], &allowed));
        assert!(!served_with(true, "ALL_DOMAINS", &["*"], &[]), "never verified: needs unverified_domains");
        assert!(!served_with(false, "ALL_DOMAINS", &["*"], &allowed), "private DNS off");
        assert!(!served_with(true, "VERIFIED_DOMAINS_ONLY", &["*"], &allowed), "the default admits verified names only");
        assert!(served_with(true, "SPECIFIED_DOMAINS_ONLY", &["*.svc.example"], &allowed));
        assert!(!served_with(true, "SPECIFIED_DOMAINS_ONLY", &["svc.example"], &allowed), "an exact entry names itself only");
        assert!(!served_with(true, "VERIFIED_DOMAINS_AND_SPECIFIED_DOMAINS", &["other.example"], &allowed));
        assert!(served_with(true, "VERIFIED_DOMAINS_AND_SPECIFIED_DOMAINS", &["orders.svc.example"], &allowed));
        assert!(!served_with(true, "SOMETHING_NEW", &["*"], &allowed), "an unknown preference admits verified names only");
    }

    #[test]
    fn a_private_dns_entry_under_verified_domains_only_is_verified_even_when_lattice_is_silent() {
        let association = resource_association(Some("proxy.egress.example"));
        let unknown = LatticeFacts {
            resource_configs: HashMap::from([(RCFG.to_owned(), Err("GetResourceConfiguration: AccessDeniedException: not shared".to_owned()))]),
            fresh_associations: true,
            ..LatticeFacts::default()
        };
        let planned = names_from(&resource_endpoint(None, &["*"]), &[&association], &unknown, &[]);
        assert!(served(&planned).contains(&"proxy.egress.example.".to_owned()));
        let planned = names_from(&resource_endpoint(Some("ALL_DOMAINS"), &["*"]), &[&association], &unknown, &[]);
        assert!(!served(&planned).contains(&"proxy.egress.example.".to_owned()), "under ALL_DOMAINS it may be unverified");
        assert!(planned.domains[0].verification.contains("AccessDeniedException"), "{:?}", planned.domains);
        // Verified or listed: not listed, so verified. Listed: it may be either.
        let unlisted = resource_endpoint(Some("VERIFIED_DOMAINS_AND_SPECIFIED_DOMAINS"), &["other.example"]);
        assert!(served(&names_from(&unlisted, &[&association], &unknown, &[])).contains(&"proxy.egress.example.".to_owned()));
        let listed = resource_endpoint(Some("VERIFIED_DOMAINS_AND_SPECIFIED_DOMAINS"), &["*.egress.example"]);
        assert!(!served(&names_from(&listed, &[&association], &unknown, &[])).contains(&"proxy.egress.example.".to_owned()));
        let everything = resource_endpoint(Some("VERIFIED_DOMAINS_AND_SPECIFIED_DOMAINS"), &["*"]);
        assert!(!served(&names_from(&everything, &[&association], &unknown, &[])).contains(&"proxy.egress.example.".to_owned()), "`*` lists every name");
        // An entry kept from an earlier fetch (the call failing now) proves nothing: the
        // preference may have changed since.
        let kept = LatticeFacts { fresh_associations: false, ..unknown.clone() };
        assert!(!served(&names_from(&resource_endpoint(None, &["*"]), &[&association], &kept, &[])).contains(&"proxy.egress.example.".to_owned()));
        // What Lattice says outranks the inference: PENDING is not served, whatever the entry.
        let pending = facts(Some("proxy.egress.example"), Some("PENDING"));
        assert!(!served(&names_from(&resource_endpoint(None, &["*"]), &[&association], &pending, &[])).contains(&"proxy.egress.example.".to_owned()));
    }

    #[test]
    fn failed_and_inaccessible_associations_are_skipped_with_their_reason() {
        let failed = resource_association_builder(None).failure_code("ResourceConfigurationNotFound").failure_reason("The resource configuration was deleted").build();
        let pending = resource_association_builder(None).id("vpce-rsc-asc-2").associated_resource_accessibility("Inaccessible").build();
        let planned = names_from(&resource_endpoint(None, &["*"]), &[&failed, &pending], &LatticeFacts::default(), &[]);
        assert!(planned.names.is_empty());
        assert!(planned.skipped[0].contains("ResourceConfigurationNotFound") && planned.skipped[0].contains("deleted"), "{:?}", planned.skipped);
        assert!(planned.skipped[1].contains("Inaccessible"), "{:?}", planned.skipped);
    }

    /// A service-network endpoint with one resource configuration and one service: their own
    /// names are answered from upstream (EC2 does not say which address is whose), and the
    /// service's custom domain name — never verified — only under unverified_domains.
    const SNSA_NAME: &str = "vpce-0f3e5d7c9b1a20022-snsa-07b06c66e01bdd93f.7d67968.vpc-lattice-svcs.us-east-1.on.aws";

    fn service_network_endpoint(private_dns: bool, preference: &str, specified: &[&str]) -> VpcEndpoint {
        let options = DnsOptions::builder().private_dns_preference(preference).set_private_dns_specified_domains(Some(specified.iter().map(|s| (*s).to_owned()).collect()));
        VpcEndpoint::builder()
            .vpc_endpoint_id("vpce-0f3e5d7c9b1a20022")
            .vpc_endpoint_type(VpcEndpointType::from("ServiceNetwork"))
            .state(State::from("Available"))
            .service_network_arn(SN)
            .private_dns_enabled(private_dns)
            .dns_options(options.build())
            .build()
    }

    /// The association of the service `orders`: no associated resource ARN, matched to the
    /// network's service association by the `snsa-…` id in its name.
    fn service_association() -> VpcEndpointAssociation {
        VpcEndpointAssociation::builder()
            .id("vpce-svc-asc-0b1c2d3e4f5a60789")
            .service_network_arn(SN)
            .associated_resource_accessibility("Accessible")
            .dns_entry(entry(SNSA_NAME))
            .build()
    }

    fn service_facts() -> LatticeFacts {
        let mut facts = facts(None, None);
        facts.service_networks.insert(
            SN.to_owned(),
            Ok(vec![ServiceDomain {
                association_id: "snsa-07b06c66e01bdd93f".into(),
                service_arn: "arn:aws:vpc-lattice:us-east-1:444455556666:service/svc-0285b53b2e1a2b3c4".into(),
                service_name: "orders".into(),
                custom_domain: Some("orders.svc.example".into()),
            }]),
        );
        facts
    }

    #[test]
    fn a_service_network_endpoint_answers_from_its_association_names() {
        let endpoint = service_network_endpoint(true, "VERIFIED_DOMAINS_AND_SPECIFIED_DOMAINS", &["*.svc.example"]);
        let snra = "vpce-0f3e5d7c9b1a20022-snra-08ab290695bf1e2f5.rcfg-0e1d2c3b4a5f60789.4232ccc.vpc-lattice-rsc.us-east-1.on.aws";
        let snsa = SNSA_NAME;
        let resource = VpcEndpointAssociation::builder()
            .id("vpce-rsc-asc-03f2f67b4d6a5e7d5")
            .service_network_arn(SN)
            .service_network_name("shared-services")
            .associated_resource_accessibility("Accessible")
            .dns_entry(entry(snra))
            .associated_resource_arn(RCFG)
            .build();
        let service = service_association();
        let facts = service_facts();
        let planned = names_from(&endpoint, &[&resource, &service], &facts, &[name("svc.example")]);
        assert_eq!(served(&planned), [format!("{snra}."), format!("{snsa}."), "orders.svc.example.".to_owned()]);
        assert_eq!(planned.names[2].answer, Answer::Upstream(name(snsa)), "the service's name answers as its association's");
        assert_eq!(planned.names[0].answer, Answer::Upstream(name(snra)));
        assert!(planned.names[0].origin.contains("service_network="));

        let planned = names_from(&endpoint, &[&resource, &service], &facts, &[]);
        assert_eq!(served(&planned).len(), 2, "not verified, not allowed");
        assert!(planned.domains.iter().any(|d| d.name == "orders.svc.example" && !d.served));
    }

    #[test]
    fn specified_domains_match_like_the_private_dns_docs() {
        assert!(specified_covers("*", &name("any.example")));
        assert!(specified_covers("*.example.com", &name("a.b.example.com")));
        assert!(!specified_covers("*.example.com", &name("example.com")));
        assert!(specified_covers("my.example.com", &name("MY.example.com.")));
        assert!(!specified_covers("my.example.com", &name("x.my.example.com")));
    }

    #[test]
    fn no_wildcard_custom_domain_is_served() {
        let association = resource_association(Some("*.egress.example"));
        let planned = names_from(&resource_endpoint(None, &["*"]), &[&association], &facts(Some("*.egress.example"), Some("VERIFIED")), &[]);
        assert_eq!(served(&planned), [format!("{RSC_NAME}.")]);
        assert!(planned.domains[0].why.contains("wildcard"), "{:?}", planned.domains);
    }

    #[test]
    fn no_custom_domain_may_take_over_a_public_suffix() {
        let association = resource_association(Some("co.uk"));
        let planned = names_from(&resource_endpoint(Some("ALL_DOMAINS"), &["*"]), &[&association], &facts(Some("co.uk"), Some("VERIFIED")), &[]);
        assert_eq!(served(&planned), [format!("{RSC_NAME}.")]);
        assert!(planned.domains.iter().all(|d| !d.served));
    }
}
