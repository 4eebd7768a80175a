//! The [`Source`] trait every kind of AWS source implements, and [`planned`]: the one place
//! that says which config sections make which sources (one per account with `accounts`), with
//! the ids they are known by.

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use crate::{
    config::{Accounts, AwsAccess, Config},
    dns::forwarder::Forwarder,
    events::Change,
    sources::{
        SourceOutput,
        aws::{FetchError, source_id},
        organization,
    },
};

/// Sets a source up (SDK clients, credentials); run first thing on its own task.
pub type Build = Box<dyn FnOnce() -> BoxFuture<'static, Box<dyn Source>> + Send>;

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

    /// The 15 minutes after a change are over: forget what it named (an endpoint left
    /// pendingAcceptance for days), so a later change starts a window of its own.
    fn stop_settling(&self) {}

    /// The source's last answer (from the state file, or kept over a reload) before its first
    /// fetch: what it learned from calls that may fail on their own (an upstream's answer,
    /// VPC Lattice's) is kept from it until those calls answer again.
    fn restore(&self, last: &Arc<SourceOutput>) {
        let _ = last;
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
    /// Which subnets endpoint sources read (DescribeSubnets) for `[az]`.
    pub subnets: SubnetNeed,
}

/// Which subnets `[az]` needs the endpoint sources to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubnetNeed {
    /// None: affinity is off.
    None,
    /// Those of ENIs that do not carry their AZ ID, so addresses have AZs.
    EniZones,
    /// Every subnet of the VPCs a source reads: where clients are, too.
    Learn,
}

impl Env {
    /// Whether a fetch made with `other` would come out the same.
    pub fn same_as(&self, other: &Self) -> bool {
        self.ttl == other.ttl
            && self.interval == other.interval
            && self.max_backoff == other.max_backoff
            && self.subnets == other.subnets
            && Arc::ptr_eq(&self.forwarder, &other.forwarder)
    }
}

/// A source as the config names it: enough to set it up on its own task, and to tell on a
/// reload whether it changed.
pub struct Planned {
    /// Kind, region and role; when two sources share those, each adds `#` and what it reads
    /// (its VPCs, zones or tags), so an id never moves to another source when one is removed.
    pub id: String,
    /// What it reads, for telling apart sources of one kind, region and role.
    scope: String,
    /// `vpc_endpoints` or `route53`.
    pub kind: &'static str,
    /// The region it asks.
    pub region: String,
    /// Its settings as text: two sources with the same text are the same source.
    pub settings: String,
    /// Sets the source up (SDK clients, credentials); run on the source's own task, so a slow
    /// credential provider holds up nothing else.
    pub build: Build,
}

/// What the registry needs of one config entry of a source kind. Each kind's file implements
/// it beside `Source`; [`entries`] lists the entries of every kind.
pub trait Entry {
    /// `vpc_endpoints`, `route53`.
    fn kind(&self) -> &'static str;
    /// Its AWS access settings (region, role, timeouts).
    fn access(&self) -> AwsAccess<'_>;
    /// `accounts`, `role_name`, `organization_role_arn` and `role_arn`.
    fn account_settings(&self) -> (Option<&Accounts>, Option<&str>, Option<&str>, Option<&str>);
    /// What it reads (VPCs, zones, tags), telling apart entries of one kind, region and role.
    fn scope(&self) -> String;
    /// The source reading one account: this entry with `role_arn` and no `accounts`; its
    /// settings as text, and how to build it with `api_share` of the account's API budget.
    fn through(&self, role_arn: Option<String>, api_share: f64) -> (String, Build);
}

/// Every source entry of `config`, in config order. Registering a kind is a line here.
fn entries(config: &Config) -> Vec<&dyn Entry> {
    let endpoints = config.sources.vpc_endpoints.iter().map(|s| s.get_ref() as &dyn Entry);
    let zones = config.sources.route53.iter().map(|s| s.get_ref() as &dyn Entry);
    endpoints.chain(zones).collect()
}

/// The ACTIVE accounts of each organization listed so far, by [`OrgListing::key`].
pub type OrgAccounts = BTreeMap<String, Vec<String>>;

/// How one organization is listed (sources naming the same `organization_role_arn`, or none,
/// share one listing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgListing {
    /// `organization_role_arn`, or `own credentials`.
    pub key: String,
    /// The region of the first source that asked for it.
    pub region: String,
    /// The role to list through.
    pub role_arn: Option<String>,
    /// Attempts per API call.
    pub max_attempts: u32,
    /// Seconds per API attempt.
    pub api_timeout_secs: u64,
    /// Fixed local credentials (demo and tests).
    pub static_credentials: bool,
}

/// The key an organization's listing is kept under.
fn org_key(organization_role_arn: Option<&str>) -> String {
    organization_role_arn.unwrap_or("own credentials").to_owned()
}

/// The organizations `config`'s sources ask to be listed, one per key.
pub fn org_listings(config: &Config) -> Vec<OrgListing> {
    let mut listings: Vec<OrgListing> = Vec::new();
    for entry in entries(config) {
        let ((accounts, _, org_role, _), access) = (entry.account_settings(), entry.access());
        let key = org_key(org_role);
        if matches!(accounts, Some(Accounts::Organization(_))) && !listings.iter().any(|l| l.key == key) {
            listings.push(OrgListing {
                key,
                region: access.region.to_owned(),
                role_arn: org_role.map(str::to_owned),
                max_attempts: access.max_attempts,
                api_timeout_secs: access.api_timeout_secs,
                static_credentials: access.static_credentials,
            });
        }
    }
    listings
}

/// The accounts a source entry reads, each through its role: `None` for an entry without
/// `accounts` (its own credentials, or its `role_arn`).
fn accounts_of(
    (accounts, role_name, org_role, _): (Option<&Accounts>, Option<&str>, Option<&str>, Option<&str>),
    region: &str,
    orgs: &OrgAccounts,
) -> Option<Vec<String>> {
    let mut ids = match accounts? {
        Accounts::List(ids) => ids.clone(),
        Accounts::Organization(_) => orgs.get(&org_key(org_role)).cloned().unwrap_or_default(),
    };
    ids.sort();
    ids.dedup();
    let role_name = role_name.unwrap_or_default();
    Some(ids.iter().map(|account| organization::role_arn(region, account, role_name)).collect())
}

/// The AWS sources `config` names, in config order (earlier sources win zones of one name):
/// an entry with `accounts` becomes one source per account, reading it through its role;
/// `orgs` holds the organizations listed so far.
pub fn planned(config: &Config, orgs: &OrgAccounts) -> Vec<Planned> {
    let share = config.refresh.api_share;
    let mut all = Vec::new();
    for entry in entries(config) {
        let region = entry.access().region.to_owned();
        let roles = match accounts_of(entry.account_settings(), &region, orgs) {
            Some(roles) => roles.into_iter().map(Some).collect(),
            None => vec![entry.access().role_arn.map(str::to_owned)],
        };
        for role_arn in roles {
            let id = source_id(entry.kind(), &region, role_arn.as_deref());
            let (settings, build) = entry.through(role_arn, share);
            all.push(Planned { id, scope: entry.scope(), kind: entry.kind(), region: region.clone(), settings, build });
        }
    }
    let mut bases: HashMap<String, usize> = HashMap::new();
    for planned in &all {
        *bases.entry(planned.id.clone()).or_default() += 1;
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for planned in &mut all {
        if bases[&planned.id] > 1 {
            planned.id = format!("{}#{}", planned.id, planned.scope);
        }
        // Two sources reading the very same scope: told apart by order, as nothing else can.
        let count = seen.entry(planned.id.clone()).or_default();
        *count += 1;
        if *count > 1 {
            planned.id = format!("{}#{count}", planned.id);
        }
    }
    all
}

/// The organizations' accounts a state file's source ids show, so a restart reads (and serves
/// from the state file) the accounts it knew before the first listing.
pub fn orgs_in_state(config: &Config, ids: &[&String]) -> OrgAccounts {
    let mut orgs = OrgAccounts::new();
    for entry in entries(config) {
        let (accounts, role_name, org_role, _) = entry.account_settings();
        let (Some(Accounts::Organization(_)), Some(role_name)) = (accounts, role_name) else { continue };
        // `kind/region/arn:…:iam::<account>:role/<role_name>`, maybe with `#…`.
        let prefix = format!("{}/{}/", entry.kind(), entry.access().region);
        let suffix = format!(":role/{role_name}");
        let found = ids.iter().filter_map(|id| {
            let arn = id.strip_prefix(&prefix)?.split('#').next()?;
            arn.ends_with(&suffix).then(|| crate::config::role_account(arn).map(str::to_owned)).flatten()
        });
        let found: Vec<String> = found.collect();
        // Nothing known of this organization: it stays unlisted (readiness waits for it).
        if found.is_empty() {
            continue;
        }
        let list = orgs.entry(org_key(org_role)).or_default();
        list.extend(found);
        list.sort();
        list.dedup();
    }
    orgs
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
        let planned = planned(&Config::parse(text, "t.toml").unwrap(), &OrgAccounts::new());
        let ids: Vec<&str> = planned.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["vpc_endpoints/us-east-1", "route53/us-east-1#vpc-1", "route53/us-east-1#vpc-2"]);
        assert_ne!(planned[1].settings, planned[2].settings, "settings tell the two apart");
        // The first one removed: the second keeps its id (and so its answer), never the first's.
        let alone = "[[sources.route53]]\nregion = \"us-east-1\"\nvpc_ids = [\"vpc-2\"]\n";
        assert_eq!(super::planned(&Config::parse(alone, "t.toml").unwrap(), &OrgAccounts::new())[0].id, "route53/us-east-1");
    }

    /// Issue 16: `accounts` makes one source per account, each through its role; an account
    /// joining changes no other account's settings (their tasks keep running).
    #[test]
    fn accounts_become_one_source_each_through_their_role() {
        let text = "[[sources.vpc_endpoints]]\nregion = \"eu-west-1\"\naccounts = [\"222233334444\", \"333344445555\"]\nrole_name = \"hubdns-read\"\n\
                    [[sources.route53]]\nregion = \"us-east-1\"\nvpc_ids = [\"vpc-1\"]\naccounts = \"organization\"\nrole_name = \"hubdns-read\"\n\
                    organization_role_arn = \"arn:aws:iam::999999999999:role/org-read\"\n";
        let config = Config::parse(text, "t.toml").unwrap();
        let listings = org_listings(&config);
        assert_eq!(listings.iter().map(|l| l.key.as_str()).collect::<Vec<_>>(), ["arn:aws:iam::999999999999:role/org-read"]);
        let before = planned(&config, &OrgAccounts::new());
        let ids: Vec<&str> = before.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(
            ids,
            ["vpc_endpoints/eu-west-1/arn:aws:iam::222233334444:role/hubdns-read", "vpc_endpoints/eu-west-1/arn:aws:iam::333344445555:role/hubdns-read"],
            "the organization is not listed yet: none of its accounts"
        );
        let orgs = OrgAccounts::from([(listings[0].key.clone(), vec!["444455556666".to_owned()])]);
        let after = planned(&config, &orgs);
        assert_eq!(after.len(), 3);
        assert_eq!(after[2].id, "route53/us-east-1/arn:aws:iam::444455556666:role/hubdns-read");
        assert_eq!(before[0].settings, after[0].settings, "an account joining changes no other source");
        assert!(!after[2].settings.contains("organization_role_arn: Some"), "{}", after[2].settings);
        // A restart knows the organization's accounts from the state file's ids.
        let ids: Vec<String> = after.iter().map(|p| p.id.clone()).collect();
        assert_eq!(orgs_in_state(&config, &ids.iter().collect::<Vec<_>>()), orgs);
    }
}
