//! VPC Lattice, asked for what EC2 does not say about resource and service-network endpoints:
//! a resource endpoint's resource configuration — its custom domain name and whether its
//! owner verified it (GetResourceConfiguration) — and the custom domain names of the services
//! in a service network (ListServiceNetworkServiceAssociations).
//!
//! Why these calls (VPC Lattice user guide, "Share VPC Lattice entities", entity consumers): a
//! consumer may describe a resource configuration shared with it, and every service
//! association of a service network shared with it, but not a service reached only through
//! the network — so GetService would fail where the network's association list answers, and it
//! carries each service's `customDomainName` too.
//!
//! What Lattice says of each item is cached, asked again with every fetch of the source, and
//! kept through failures that are not about the item (throttling, 5xx, timeouts) and, through
//! the source's answer in the state file, restarts ([`Lattice::remember`], [`Lattice::restore`]): Lattice
//! failing never fails the EC2 source, whose endpoints' own names need none of it. An item
//! Lattice says is gone or not shared with us (`ResourceNotFoundException`,
//! `AccessDeniedException`, `ValidationException`; VPC Lattice API reference,
//! GetResourceConfiguration, "Errors") is dropped from the cache and known as unknown, which
//! serves only what needs no verification status (see `endpoint_associations`). The calls run
//! in turn as the account's Lattice budget allows — never asked first, then asked longest ago,
//! answered or not — all answering at once, and a fetch waits for them no longer than
//! one API attempt's timeout (at most 5 s): what has not answered by then keeps its last
//! answer, so a hung or busy Lattice delays the endpoints' other names by that much at most,
//! and with more items than one fetch's budget, each is learned, then refreshed, in turn.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use aws_config::SdkConfig;
use aws_sdk_vpclattice::{
    Client,
    operation::get_resource_configuration::GetResourceConfigurationOutput,
    types::{ResourceConfigurationDefinition, ServiceNetworkServiceAssociationSummary},
};

pub use crate::sources::output::{LatticeMemory, ResourceConfig, ServiceDomain};
use crate::sources::aws::{ApiFamily, TokenBucket, budget, item_error, sdk_message};

/// Errors by which VPC Lattice says the item asked about is gone, malformed, or not shared
/// with the caller: that item is unknown, the others stand.
const ITEM_GONE: &[&str] = &["ResourceNotFoundException", "AccessDeniedException", "ValidationException"];

/// GetResourceConfiguration's answer in plain data. Pure.
pub fn resource_config_from(output: &GetResourceConfigurationOutput) -> ResourceConfig {
    let dns_resource_domain = match output.resource_configuration_definition() {
        Some(ResourceConfigurationDefinition::DnsResource(dns)) => dns.domain_name().map(str::to_owned),
        _ => None,
    };
    ResourceConfig {
        arn: output.arn().unwrap_or_default().to_owned(),
        custom_domain: output.custom_domain_name().filter(|d| !d.is_empty()).map(str::to_owned),
        verification: output.domain_verification_status().map(|s| s.as_str().to_owned()),
        dns_resource_domain,
    }
}

/// A service network's service associations in plain data. Pure.
pub fn service_domains_from(items: &[ServiceNetworkServiceAssociationSummary]) -> Vec<ServiceDomain> {
    items
        .iter()
        .filter_map(|item| {
            Some(ServiceDomain {
                association_id: item.id()?.to_owned(),
                service_arn: item.service_arn().unwrap_or_default().to_owned(),
                service_name: item.service_name().unwrap_or_default().to_owned(),
                custom_domain: item.custom_domain_name().filter(|d| !d.is_empty()).map(str::to_owned),
            })
        })
        .collect()
}

/// What is known of one item: Lattice's answer, or why there is none.
pub type Known<T> = Result<T, String>;

/// The VPC Lattice client of one endpoint source, with what it last learned per item.
pub struct Lattice {
    /// Made at the first lookup: most sources have no resource or service-network endpoint,
    /// and need no Lattice client at all.
    client: std::sync::OnceLock<Client>,
    shared: SdkConfig,
    url: Option<String>,
    /// The account's VPC Lattice budget in this region.
    limiter: Arc<TokenBucket>,
    configs: Mutex<Items<ResourceConfig>>,
    networks: Mutex<Items<Vec<ServiceDomain>>>,
    /// How long a fetch waits for Lattice's answers: what has not come by then keeps its last
    /// answer, so a slow Lattice delays the endpoints' other names by this much at most.
    deadline: Duration,
}

/// What is known of the items of one kind, and when each was last asked about.
struct Items<T> {
    /// Lattice's last answer about each item.
    cache: HashMap<String, T>,
    /// When each item was last asked about (answered or not), in this process: the one asked
    /// longest ago (or never) is asked first.
    asked: HashMap<String, tokio::time::Instant>,
}

impl<T> Default for Items<T> {
    fn default() -> Self {
        Self { cache: HashMap::new(), asked: HashMap::new() }
    }
}

/// The longest a fetch waits for VPC Lattice, whatever the API attempt timeout and retries.
const DEADLINE: Duration = Duration::from_secs(5);

/// How one lookup ended.
enum Asked<T> {
    Found(T),
    /// The item is gone or not ours to read.
    Gone(String),
    /// Lattice did not answer about it (throttled, failing).
    Failed(String),
    /// Asked, and not answered by the deadline.
    Late,
}

impl Lattice {
    /// A client with `shared` settings, at `url` when given (a stand-in), drawing on the
    /// account's Lattice budget in `region`.
    /// `attempt_timeout` is one API attempt's timeout: a fetch waits no longer than that (nor
    /// than [`DEADLINE`]) for Lattice.
    pub fn new(shared: &SdkConfig, url: Option<&str>, account: Option<&str>, region: &str, share: f64, attempt_timeout: Duration) -> Self {
        Self {
            client: std::sync::OnceLock::new(),
            shared: shared.clone(),
            url: url.map(str::to_owned),
            limiter: budget(ApiFamily::Lattice, account, Some(region), share),
            configs: Mutex::default(),
            networks: Mutex::default(),
            deadline: attempt_timeout.min(DEADLINE),
        }
    }

    fn client(&self) -> &Client {
        self.client.get_or_init(|| crate::with_endpoint!(aws_sdk_vpclattice, &self.shared, self.url.as_deref()))
    }

    /// What Lattice last said of every item, for the source's answer (and so the state file).
    pub fn remember(&self) -> LatticeMemory {
        let configs = self.configs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let networks = self.networks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut memory = LatticeMemory {
            resource_configs: configs.cache.values().cloned().collect(),
            service_networks: networks.cache.iter().map(|(arn, services)| (arn.clone(), services.clone())).collect(),
        };
        memory.resource_configs.sort_by(|a, b| a.arn.cmp(&b.arn));
        memory.service_networks.sort_by(|a, b| a.0.cmp(&b.0));
        memory
    }

    /// Starts from what Lattice said before (a restored answer): each item keeps it until
    /// Lattice answers about it again.
    pub fn restore(&self, memory: &LatticeMemory) {
        let mut configs = self.configs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        configs.cache.extend(memory.resource_configs.iter().map(|c| (c.arn.clone(), c.clone())));
        let mut networks = self.networks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        networks.cache.extend(memory.service_networks.iter().cloned());
    }

    /// What Lattice says of each resource configuration in `arns`, and notes on what it would
    /// not say this time.
    pub async fn resource_configs(&self, arns: &[String]) -> (HashMap<String, Known<ResourceConfig>>, Vec<String>) {
        let answers = self
            .ask(&self.configs, arns, |client, _, arn| async move {
                match client.get_resource_configuration().resource_configuration_identifier(&arn).send().await {
                    Ok(output) => Asked::Found(resource_config_from(&output)),
                    Err(error) => match item_error(&error, ITEM_GONE) {
                        Some(reason) => Asked::Gone(reason),
                        None => Asked::Failed(sdk_message(&error)),
                    },
                }
            })
            .await;
        let mut items = self.configs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.settle(&mut items, arns, answers, "resource configuration", "GetResourceConfiguration")
    }

    /// The services of each service network in `arns` (ARNs), and notes on what Lattice would
    /// not say this time.
    pub async fn service_networks(&self, arns: &[String]) -> (HashMap<String, Known<Vec<ServiceDomain>>>, Vec<String>) {
        let answers = self
            .ask(&self.networks, arns, |client, limiter, arn| async move {
                let mut pages = client.list_service_network_service_associations().service_network_identifier(&arn).into_paginator().send();
                let mut items = Vec::new();
                loop {
                    match pages.next().await {
                        None => break Asked::Found(service_domains_from(&items)),
                        Some(Ok(page)) => {
                            items.extend(page.items().iter().cloned());
                            if page.next_token().is_some_and(|t| !t.is_empty()) {
                                limiter.acquire().await;
                            }
                        }
                        Some(Err(error)) => match item_error(&error, ITEM_GONE) {
                            Some(reason) => break Asked::Gone(reason),
                            None => break Asked::Failed(sdk_message(&error)),
                        },
                    }
                }
            })
            .await;
        let mut items = self.networks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.settle(&mut items, arns, answers, "service network", "ListServiceNetworkServiceAssociations")
    }

    /// `arns` in the order to ask them: never asked first, then asked longest ago (answered
    /// or not) — so with more items than the budget allows in one fetch, each is asked in
    /// turn, and items that fail or are gone do not keep the others waiting.
    fn order<T>(items: &Items<T>, arns: &[String]) -> Vec<String> {
        let mut order: Vec<(Option<tokio::time::Instant>, &String)> = arns.iter().map(|arn| (items.asked.get(arn).copied(), arn)).collect();
        order.sort();
        order.into_iter().map(|(_, arn)| arn.clone()).collect()
    }

    /// Asks about the items of `arns` in turn ([`Lattice::order`]), one token of the budget
    /// each, all answering at once; what has not answered by the deadline is `Late`, and what
    /// was not asked by then (the budget ran out first) is left out: no news.
    async fn ask<T, U, F, Fut>(&self, items: &Mutex<Items<U>>, arns: &[String], lookup: F) -> HashMap<String, Asked<T>>
    where
        T: Send + 'static,
        F: Fn(Client, Arc<TokenBucket>, String) -> Fut,
        Fut: std::future::Future<Output = Asked<T>> + Send + 'static,
    {
        let order = Self::order(&items.lock().unwrap_or_else(std::sync::PoisonError::into_inner), arns);
        let until = tokio::time::Instant::now() + self.deadline;
        let (mut lookups, mut asked) = (tokio::task::JoinSet::new(), Vec::new());
        let _ = tokio::time::timeout_at(until, async {
            for arn in order {
                self.limiter.acquire().await;
                let answer = lookup(self.client().clone(), self.limiter.clone(), arn.clone());
                items.lock().unwrap_or_else(std::sync::PoisonError::into_inner).asked.insert(arn.clone(), tokio::time::Instant::now());
                asked.push(arn.clone());
                lookups.spawn(async move { (arn, answer.await) });
            }
        })
        .await;
        let mut answers = collect(lookups, until).await;
        for arn in asked {
            answers.entry(arn).or_insert(Asked::Late);
        }
        answers
    }

    /// Folds this round's answers into `items` (only the items asked about stay) and says
    /// what is known of each: a failed or late lookup keeps the last answer, a gone item is
    /// forgotten, an item not asked this time keeps its answer quietly. A Lattice that
    /// answered none of the lookups it was asked is said once.
    fn settle<T: Clone>(
        &self,
        items: &mut Items<T>,
        arns: &[String],
        mut answers: HashMap<String, Asked<T>>,
        what: &str,
        call: &str,
    ) -> (HashMap<String, Known<T>>, Vec<String>) {
        let (mut known, mut notes) = (HashMap::new(), Vec::new());
        let late = answers.values().filter(|a| matches!(a, Asked::Late)).count();
        if late > 0 && late == answers.len() {
            notes.push(format!("VPC Lattice answered none of {late} {call} lookups within {:?}", self.deadline));
        }
        for arn in arns {
            let result = match answers.remove(arn) {
                Some(Asked::Found(value)) => {
                    items.cache.insert(arn.clone(), value.clone());
                    Ok(value)
                }
                Some(Asked::Gone(reason)) => {
                    items.cache.remove(arn);
                    notes.push(format!("{what} {arn}: {call}: {reason}"));
                    Err(format!("{call}: {reason}"))
                }
                Some(Asked::Failed(reason)) => match items.cache.get(arn) {
                    Some(last) => {
                        notes.push(format!("{what} {arn}: {call} failed, its last answer kept: {reason}"));
                        Ok(last.clone())
                    }
                    None => {
                        notes.push(format!("{what} {arn}: {call} failed, nothing known of it yet: {reason}"));
                        Err(format!("{call} failed: {reason}"))
                    }
                },
                Some(Asked::Late) | None => match items.cache.get(arn) {
                    Some(last) => Ok(last.clone()),
                    None => {
                        notes.push(format!("{what} {arn}: {call} not answered within {:?}, nothing known of it yet", self.deadline));
                        Err(format!("{call} not answered yet"))
                    }
                },
            };
            known.insert(arn.clone(), result);
        }
        items.cache.retain(|arn, _| arns.contains(arn));
        items.asked.retain(|arn, _| arns.contains(arn));
        (known, notes)
    }
}

/// The lookups' answers, as far as they came by `until`; the rest are dropped (and aborted).
async fn collect<T: 'static>(mut lookups: tokio::task::JoinSet<(String, Asked<T>)>, until: tokio::time::Instant) -> HashMap<String, Asked<T>> {
    let mut answers = HashMap::new();
    let _ = tokio::time::timeout_at(until, async {
        while let Some(done) = lookups.join_next().await {
            if let Ok((arn, asked)) = done {
                answers.insert(arn, asked);
            }
        }
    })
    .await;
    answers
}

#[cfg(test)]
mod tests {
    use aws_sdk_vpclattice::types::{DnsEntry, DnsResource, IpResource, ResourceConfigurationType, VerificationStatus};

    use super::*;

    /// GetResourceConfiguration for a DNS resource with a verified custom domain name, shaped
    /// like the API reference's response (camelCase members, upper-case enum values).
    #[test]
    fn resource_configuration_in_plain_data() {
        let output = GetResourceConfigurationOutput::builder()
            .arn("arn:aws:vpc-lattice:us-east-1:444455556666:resourceconfiguration/rcfg-0e1d2c3b4a5f60789")
            .id("rcfg-0e1d2c3b4a5f60789")
            .name("egress-proxy")
            .r#type(ResourceConfigurationType::Single)
            .custom_domain_name("proxy.egress.example")
            .domain_verification_status(VerificationStatus::Verified)
            .resource_configuration_definition(ResourceConfigurationDefinition::DnsResource(
                DnsResource::builder().domain_name("proxy.internal.provider.example").build(),
            ))
            .build();
        let config = resource_config_from(&output);
        assert_eq!(config.custom_domain.as_deref(), Some("proxy.egress.example"));
        assert_eq!(config.dns_resource_domain.as_deref(), Some("proxy.internal.provider.example"));
        assert!(config.verified());

        let pending = resource_config_from(
            &GetResourceConfigurationOutput::builder()
                .arn("arn:aws:vpc-lattice:us-east-1:444455556666:resourceconfiguration/rcfg-1")
                .custom_domain_name("db.partner.example")
                .domain_verification_status(VerificationStatus::from("VERIFICATION_TIMED_OUT"))
                .resource_configuration_definition(ResourceConfigurationDefinition::IpResource(IpResource::builder().ip_address("10.0.14.85").build()))
                .build(),
        );
        assert!(!pending.verified());
        assert_eq!(pending.dns_resource_domain, None);
        assert_eq!(pending.verification.as_deref(), Some("VERIFICATION_TIMED_OUT"));
    }

    #[test]
    fn service_associations_in_plain_data() {
        let item = |id: &str, domain: Option<&str>| {
            ServiceNetworkServiceAssociationSummary::builder()
                .id(id)
                .service_arn(format!("arn:aws:vpc-lattice:us-east-1:444455556666:service/svc-{id}"))
                .service_name("orders")
                .dns_entry(DnsEntry::builder().domain_name("orders-0123.7d67968.vpc-lattice-svcs.us-east-1.on.aws").build())
                .set_custom_domain_name(domain.map(str::to_owned))
                .build()
        };
        let domains = service_domains_from(&[item("snsa-0a", Some("orders.svc.example")), item("snsa-0b", None)]);
        assert_eq!(domains.len(), 2);
        assert_eq!(domains[0].custom_domain.as_deref(), Some("orders.svc.example"));
        assert_eq!(domains[1].custom_domain, None);
    }

    fn lattice() -> Lattice {
        Lattice::new(&SdkConfig::builder().build(), None, None, "us-east-1", 1.0, DEADLINE)
    }

    /// A hung lookup is given up at the deadline; the ones that answered stand.
    #[tokio::test(start_paused = true)]
    async fn a_hung_lookup_is_given_up_at_the_deadline() {
        let mut lookups = tokio::task::JoinSet::new();
        lookups.spawn(async { ("fast".to_owned(), Asked::Found(1)) });
        lookups.spawn(async {
            std::future::pending::<()>().await;
            ("hung".to_owned(), Asked::Found(2))
        });
        let answers = collect(lookups, tokio::time::Instant::now() + DEADLINE).await;
        assert_eq!(answers.keys().collect::<Vec<_>>(), ["fast"]);
    }

    /// With more items than the budget gives in one fetch, each is asked in turn: never asked
    /// first, then asked longest ago, whether it answered or not; an item not asked keeps its
    /// answer quietly.
    #[tokio::test(start_paused = true)]
    async fn items_are_asked_in_turn_and_gone_ones_wait_theirs() {
        let lattice = lattice();
        let arns: Vec<String> = ["a", "b", "c"].map(str::to_owned).to_vec();
        let mut items = Items { cache: HashMap::from([("a".to_owned(), 1), ("b".to_owned(), 2)]), asked: HashMap::new() };
        items.asked.insert("b".into(), tokio::time::Instant::now());
        tokio::time::advance(Duration::from_secs(1)).await;
        items.asked.insert("a".into(), tokio::time::Instant::now());
        assert_eq!(Lattice::order(&items, &arns), ["c", "b", "a"]);
        // "c" is gone: it is asked again only after the others had their turn.
        tokio::time::advance(Duration::from_secs(1)).await;
        items.asked.insert("c".into(), tokio::time::Instant::now());
        let answers = HashMap::from([("c".to_owned(), Asked::Gone("ResourceNotFoundException".into()))]);
        let (known, notes) = lattice.settle(&mut items, &arns, answers, "thing", "Get");
        assert_eq!((known["a"].clone(), known["b"].clone()), (Ok(1), Ok(2)));
        assert_eq!(notes.len(), 1, "the gone item only: {notes:?}");
        assert_eq!(Lattice::order(&items, &arns), ["b", "a", "c"]);

        let late = HashMap::from([("b".to_owned(), Asked::Late)]);
        let (known, notes) = lattice.settle(&mut items, &arns, late, "thing", "Get");
        assert_eq!(known["b"], Ok(2), "late keeps the last answer");
        assert!(notes.iter().any(|n| n.contains("answered none of 1")), "{notes:?}");
    }

    #[test]
    fn failures_keep_the_last_answer_and_gone_items_are_forgotten() {
        let lattice = lattice();
        let arns = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let mut items: Items<u32> = Items::default();
        let answers = HashMap::from([("a".into(), Asked::Found(1)), ("b".into(), Asked::Found(2)), ("c".into(), Asked::Failed("slow".into()))]);
        let (known, notes) = lattice.settle(&mut items, &arns, answers, "thing", "Get");
        assert_eq!((known["a"].clone(), known["b"].clone()), (Ok(1), Ok(2)));
        assert!(known["c"].is_err(), "nothing known yet");
        assert_eq!(notes.len(), 1, "and said so: {notes:?}");

        let answers = HashMap::from([("a".into(), Asked::Failed("throttled".into())), ("b".into(), Asked::Gone("ResourceNotFoundException".into()))]);
        let (known, notes) = lattice.settle(&mut items, &arns[..2], answers, "thing", "Get");
        assert_eq!(known["a"], Ok(1), "kept through a failure");
        assert!(known["b"].as_ref().is_err_and(|e| e.contains("ResourceNotFoundException")));
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert_eq!(items.cache.keys().collect::<Vec<_>>(), ["a"], "gone and unasked items leave the cache");
    }
}
