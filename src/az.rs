//! Availability Zones: which AZ a client asks from, and the order of an owned answer's
//! addresses for that client.
//!
//! An endpoint's regional and private names answer every AZ's ENI addresses, so a client
//! that takes the first address crosses an AZ about half the time — $0.01/GB each way, and
//! a provider's NLB with cross-zone balancing off drops what lands in the wrong AZ. hubdns
//! knows each address's AZ (the ENI's subnet) and, from the subnets of the VPCs its sources
//! read and the `[az]` config, each client's; so it can put the client's AZ's addresses
//! first (`prefer`) or answer them alone (`only`), as NLB's DNS AZ affinity does for NLB
//! names (Network Load Balancer user guide, "Edit attributes", "Availability Zone DNS
//! affinity": `dns_record.client_routing_policy`), and
//! Route 53's AZ-affinity routing for private-zone records (Route 53 developer guide,
//! "AZ-affinity routing"). Zones are AZ IDs (`use1-az1`), never AZ names, which differ per
//! account (AWS RAM user guide, "Availability Zone IDs for your AWS resources").
//!
//! Everything here is pure and built once per snapshot: [`Locator`] turns a client address
//! into its placement by longest prefix (a binary search over disjoint ranges, no
//! allocation), and [`Spread`] holds an RRset's per-record AZs with the name's affinity.
//! The answer engine ([`crate::answer`]) decides with them; the handler writes the
//! pre-encoded records in the [`Order`] decided, so no answer is encoded twice.

use std::{net::IpAddr, sync::Arc};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// How an owned name's addresses are ordered for a client whose AZ is known.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Affinity {
    /// As the source listed them, for everyone.
    #[default]
    Off,
    /// The client's AZ's addresses first, the others after (clients that try every address
    /// still reach one when their AZ's fails).
    Prefer,
    /// The client's AZ's addresses alone; every address when that AZ has none.
    Only,
}

impl Affinity {
    /// The word in the config and in `explain`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Prefer => "prefer",
            Self::Only => "only",
        }
    }
}

/// Where a client's placement comes from; on equal prefixes the later kind wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PlacementKind {
    /// `az.default`: everyone no other entry covers.
    Default,
    /// A subnet of a VPC a source reads (DescribeSubnets).
    Subnet,
    /// An `[[az.clients]]` entry.
    Client,
    /// An `[[az.forwarders]]` entry: a resolver whose cache serves clients in every AZ.
    Forwarder,
}

impl PlacementKind {
    /// The word on the status page.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Subnet => "subnet",
            Self::Client => "client",
            Self::Forwarder => "forwarder",
        }
    }
}

/// What a client address range is known to be.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    /// The range.
    pub net: IpNet,
    /// Its AZ ID; `None` for a forwarder (its answers are shared across AZs).
    pub az: Option<Arc<str>>,
    /// The AZ's region, when known (Route 53 AZ-affinity locations need it).
    pub region: Option<Arc<str>>,
    /// Which kind of entry it is.
    pub kind: PlacementKind,
    /// A subnet's VPC and owner account (the query log's `vpc_id`, `account_id`).
    pub vpc: Option<(Arc<str>, Arc<str>)>,
    /// Where it was learned or written: a subnet id and account, `demo.toml:42`, ….
    pub origin: Arc<str>,
}

/// A client's AZ, as far as hubdns knows it.
#[derive(Clone, Copy, Debug)]
pub enum ClientZone<'a> {
    /// In this AZ.
    Known {
        /// The AZ ID.
        az: &'a str,
        /// The entry that says so.
        from: &'a Placement,
    },
    /// A resolver serving many AZs from one cache: no AZ applies.
    Forwarder(&'a Placement),
    /// Nothing covers the address and there is no default.
    Unknown,
}

impl<'a> ClientZone<'a> {
    /// The AZ ID, when known.
    pub fn az(&self) -> Option<&'a str> {
        match self {
            Self::Known { az, .. } => Some(az),
            _ => None,
        }
    }

    /// The placement that decided it, if any.
    pub fn placement(&self) -> Option<&'a Placement> {
        match self {
            Self::Known { from, .. } | Self::Forwarder(from) => Some(from),
            Self::Unknown => None,
        }
    }
}

/// Client address → placement, by longest prefix. Built once per snapshot.
#[derive(Debug, Default)]
pub struct Locator {
    /// IPv4 ranges (a client on a dual-stack socket, `::ffff:10.0.0.5`, is looked up here).
    v4: Ranges,
    /// IPv6 ranges: an IPv6 entry never covers an IPv4 client, not even `::/0`.
    v6: Ranges,
    placements: Box<[Placement]>,
}

/// Disjoint ranges of one address family, each with the placement covering it.
#[derive(Debug, Default)]
struct Ranges {
    /// Start of each range, ascending; a range runs to the next.
    starts: Box<[u128]>,
    /// The placement covering each range, by index into `Locator::placements`.
    covering: Box<[Option<u32>]>,
}

/// An address as a number of its family, IPv4-mapped IPv6 as IPv4: (is IPv4, number).
fn number(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(v4) => (true, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (true, u128::from(u32::from(v4))),
            None => (false, u128::from(v6)),
        },
    }
}

/// The family and the first and last address of a range, in [`number`]'s terms.
fn bounds(net: &IpNet) -> (bool, u128, u128) {
    match net {
        IpNet::V4(v4) => (true, u128::from(u32::from(v4.network())), u128::from(u32::from(v4.broadcast()))),
        IpNet::V6(v6) => (false, u128::from(v6.network()), u128::from(v6.broadcast())),
    }
}

impl Ranges {
    /// The disjoint ranges of `entries` — (first, last, index), sorted outer ranges before
    /// the ranges inside them and, of equal ones, the winner last. Prefixes nest or are
    /// disjoint, so the open ranges form a stack.
    fn new(entries: impl Iterator<Item = (u128, u128, u32)>) -> Self {
        let mut starts: Vec<u128> = Vec::new();
        let mut covering: Vec<Option<u32>> = Vec::new();
        let mut mark = |at: u128, what: Option<u32>| match (starts.last(), covering.last_mut()) {
            (Some(&last), Some(slot)) if last == at => *slot = what,
            _ => {
                starts.push(at);
                covering.push(what);
            }
        };
        let mut open: Vec<(u128, u32)> = Vec::new();
        let close_until = |limit: Option<u128>, open: &mut Vec<(u128, u32)>, mark: &mut dyn FnMut(u128, Option<u32>)| {
            while let Some(&(end, _)) = open.last() {
                if limit.is_some_and(|start| end >= start) {
                    break;
                }
                open.pop();
                // The range ends at the top of the address space: nothing follows it.
                if let Some(next) = end.checked_add(1) {
                    mark(next, open.last().map(|&(_, i)| i));
                }
            }
        };
        for (start, end, index) in entries {
            close_until(Some(start), &mut open, &mut mark);
            open.push((end, index));
            mark(start, Some(index));
        }
        close_until(None, &mut open, &mut mark);
        Self { starts: starts.into(), covering: covering.into() }
    }

    /// The index of the placement covering `at`.
    fn find(&self, at: u128) -> Option<u32> {
        let slot = self.starts.partition_point(|&start| start <= at);
        *slot.checked_sub(1).and_then(|s| self.covering.get(s))?
    }
}

impl Locator {
    /// Indexes `placements`. Of ranges covering an address the longest prefix wins; of equal
    /// ones, the later [`PlacementKind`] (a forwarder over a client over a subnet), then the
    /// later entry.
    pub fn new(mut placements: Vec<Placement>) -> Self {
        // Outer ranges before the ranges inside them; equal ranges by kind, so the winner
        // comes last and sits on top of the stack.
        placements.sort_by(|a, b| {
            let (fa, sa, ea) = bounds(&a.net);
            let (fb, sb, eb) = bounds(&b.net);
            fa.cmp(&fb).then(sa.cmp(&sb)).then(eb.cmp(&ea)).then(a.kind.cmp(&b.kind))
        });
        let family = |v4: bool| {
            let placements = &placements;
            (0..placements.len()).filter_map(move |i| {
                let (is_v4, start, end) = bounds(&placements[i].net);
                (is_v4 == v4).then(|| (start, end, u32::try_from(i).unwrap_or(u32::MAX)))
            })
        };
        let (v4, v6) = (Ranges::new(family(true)), Ranges::new(family(false)));
        Self { v4, v6, placements: placements.into() }
    }

    /// Where `client` is. Never allocates.
    pub fn locate(&self, client: IpAddr) -> ClientZone<'_> {
        let (is_v4, at) = number(client);
        let ranges = if is_v4 { &self.v4 } else { &self.v6 };
        let Some(placement) = ranges.find(at).and_then(|i| self.placements.get(i as usize)) else { return ClientZone::Unknown };
        match &placement.az {
            Some(az) => ClientZone::Known { az, from: placement },
            None => ClientZone::Forwarder(placement),
        }
    }

    /// Every entry, for the status page.
    pub fn placements(&self) -> &[Placement] {
        &self.placements
    }
}

/// One RRset's addresses by AZ, with the affinity its name has. Only sets whose addresses lie
/// in two AZs or more have one (a zonal name's are in one already).
#[derive(Debug, Clone, PartialEq)]
pub struct Spread {
    /// The affinity of the name.
    pub affinity: Affinity,
    /// Each record's AZ ID, index for index (`None`: not known).
    pub zones: Box<[Option<Arc<str>>]>,
}

/// What affinity did with one answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// The client's AZ's addresses first (`prefer`) or alone (`only`).
    SameZone,
    /// The client's AZ has none of the addresses: every address, as listed.
    NoneInZone,
    /// The client's AZ is not known (or it is a forwarder): every address, as listed.
    ZoneUnknown,
}

impl Choice {
    /// The `/metrics` label and `explain` word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SameZone => "same_az",
            Self::NoneInZone => "other_az",
            Self::ZoneUnknown => "unknown_az",
        }
    }

    /// Every choice, in the order `/metrics` lists them (the declaration order: a choice's
    /// index is `choice as usize`).
    pub const ALL: [Choice; 3] = [Self::SameZone, Self::NoneInZone, Self::ZoneUnknown];
}

/// The records of a spread set in the order one client gets them.
#[derive(Clone, Copy, Debug)]
pub struct Order<'a> {
    zones: &'a [Option<Arc<str>>],
    az: &'a str,
    only: bool,
}

impl<'a> Order<'a> {
    fn in_zone(&self, i: usize) -> bool {
        self.zones.get(i).and_then(|z| z.as_deref()) == Some(self.az)
    }

    /// How many records the answer has.
    pub fn count(&self) -> usize {
        if self.only { (0..self.zones.len()).filter(|&i| self.in_zone(i)).count() } else { self.zones.len() }
    }

    /// The records' indexes in answer order: the client's AZ's first, in their listed order,
    /// then (unless `only`) the others, in theirs.
    pub fn indexes(self) -> impl Iterator<Item = usize> + 'a {
        let all = 0..self.zones.len();
        let rest = (!self.only).then_some(all.clone()).into_iter().flatten();
        all.filter(move |&i| self.in_zone(i)).chain(rest.filter(move |&i| !self.in_zone(i)))
    }
}

impl Spread {
    /// What this set's answer is for a client in `client`, and the order when it changes.
    pub fn decide<'a>(&'a self, client: &ClientZone<'a>) -> (Choice, Option<Order<'a>>) {
        let Some(az) = client.az() else { return (Choice::ZoneUnknown, None) };
        if !self.zones.iter().any(|z| z.as_deref() == Some(az)) {
            return (Choice::NoneInZone, None);
        }
        let only = self.affinity == Affinity::Only;
        (Choice::SameZone, Some(Order { zones: &self.zones, az, only }))
    }

    /// A spread for records in `zones` (affinity off until the name's is set), when they lie
    /// in two AZs or more; else `None`, and the set always answers as listed.
    pub fn of(zones: Box<[Option<Arc<str>>]>) -> Option<Self> {
        let mut known = zones.iter().flatten();
        let first = known.next()?;
        known.any(|z| z != first).then_some(Self { affinity: Affinity::Off, zones })
    }
}

/// Where a Route 53 AZ-affinity record answers from, from most to least specific: the order
/// Route 53 tries them in (Route 53 developer guide, "AZ-affinity routing"; API reference,
/// data type `AZAffinity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LocationType {
    /// One Availability Zone, by AZ ID (`use1-az1`).
    AvailabilityZone,
    /// Any AZ of a Zone Group (`us-east-1-zg-1`).
    AvailabilityZoneGroup,
    /// Any AZ of a Region (`us-east-1`).
    Region,
    /// Any Region of a partition (`aws`).
    Partition,
    /// Any query, and the only match for a query whose AZ Route 53 does not know.
    Global,
}

impl LocationType {
    /// Every location type, most specific first.
    pub const ALL: [Self; 5] = [Self::AvailabilityZone, Self::AvailabilityZoneGroup, Self::Region, Self::Partition, Self::Global];

    /// The API's spelling (`LocationType` element text).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AvailabilityZone => "AvailabilityZone",
            Self::AvailabilityZoneGroup => "AvailabilityZoneGroup",
            Self::Region => "Region",
            Self::Partition => "Partition",
            Self::Global => "Global",
        }
    }

    /// The location type spelled `text` by the API, exactly (the API's enums are
    /// case-sensitive); `None` for any other text.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

impl std::fmt::Display for LocationType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Route 53 AZ-affinity record set's location.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Location {
    /// `LocationType`.
    pub kind: LocationType,
    /// `LocationId` (lowercase, as the API asks).
    pub id: Arc<str>,
}

/// What a client's AZ is part of, for matching Route 53 locations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place<'a> {
    /// Its AZ ID.
    pub az: &'a str,
    /// Its region, when known (from its subnet, or `region` in `[[az.clients]]`).
    pub region: Option<&'a str>,
}

impl Place<'_> {
    /// Its Zone Group: a standard AZ's is its region's first (`us-east-1-zg-1`, EC2 API
    /// reference, DescribeAvailabilityZones `GroupName`).
    fn zone_group(&self) -> Option<String> {
        self.region.map(|r| format!("{r}-zg-1"))
    }

    /// Its partition, from the region's prefix (AWS General Reference, "ARNs": `aws`,
    /// `aws-cn`, `aws-us-gov`, `aws-iso`, `aws-iso-b`, …).
    fn partition(&self) -> Option<&'static str> {
        let region = self.region?;
        let by_prefix = [("cn-", "aws-cn"), ("us-gov-", "aws-us-gov"), ("us-isob-", "aws-iso-b"), ("us-iso-", "aws-iso"), ("eu-isoe-", "aws-iso-e"), ("us-isof-", "aws-iso-f")];
        Some(by_prefix.iter().find(|(prefix, _)| region.starts_with(prefix)).map_or("aws", |(_, partition)| partition))
    }
}

impl Location {
    /// Whether a query from `place` matches this location; a query whose AZ is not known
    /// (`None`) matches only `Global` (API reference, `AZAffinity`).
    pub fn matches(&self, place: Option<&Place<'_>>) -> bool {
        let Some(place) = place else { return self.kind == LocationType::Global };
        match self.kind {
            LocationType::AvailabilityZone => *self.id == *place.az,
            LocationType::AvailabilityZoneGroup => place.zone_group().is_some_and(|g| *self.id == *g),
            LocationType::Region => place.region.is_some_and(|r| *self.id == *r),
            LocationType::Partition => place.partition().is_some_and(|p| *self.id == *p),
            LocationType::Global => true,
        }
    }
}

impl<'a> ClientZone<'a> {
    /// The client's place for Route 53 locations; `None` when its AZ is not known.
    pub fn place(&self) -> Option<Place<'a>> {
        match self {
            Self::Known { az, from } => Some(Place { az, region: from.region.as_deref() }),
            _ => None,
        }
    }
}

/// The affinity of a name: the most specific `[[az.names]]` pattern matching it (an exact
/// name, or `*.domain` for the names below it), else the default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AffinityRules {
    /// `az.affinity`.
    pub default: Affinity,
    /// (pattern's name without `*.`, covers names below only, affinity), as written.
    pub patterns: Vec<(hickory_proto::rr::Name, bool, Affinity)>,
}

impl AffinityRules {
    /// The affinity for `name`.
    pub fn for_name(&self, name: &hickory_proto::rr::Name) -> Affinity {
        self.patterns
            .iter()
            // Strictly below: `*.d` covers the wildcard `*.d` itself (hickory counts no `*` label).
            .filter(|(base, below, _)| if *below { base.zone_of(name) && base != name } else { base == name })
            // An exact name is more specific than any `*.` pattern at the same depth.
            .max_by_key(|(base, below, _)| (base.num_labels(), !*below))
            .map_or(self.default, |&(_, _, affinity)| affinity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(net: &str, az: Option<&str>, kind: PlacementKind) -> Placement {
        Placement { net: net.parse().unwrap(), az: az.map(Arc::from), region: None, kind, vpc: None, origin: Arc::from(net) }
    }

    fn az_of(locator: &Locator, ip: &str) -> String {
        match locator.locate(ip.parse().unwrap()) {
            ClientZone::Known { az, .. } => az.to_owned(),
            ClientZone::Forwarder(_) => "forwarder".into(),
            ClientZone::Unknown => "unknown".into(),
        }
    }

    #[test]
    fn longest_prefix_wins_and_ranges_end_where_they_end() {
        let locator = Locator::new(vec![
            placement("10.0.0.0/16", Some("use1-az1"), PlacementKind::Subnet),
            placement("10.0.2.0/24", Some("use1-az2"), PlacementKind::Subnet),
            placement("10.0.2.53/32", None, PlacementKind::Forwarder),
            placement("10.1.0.0/16", Some("use1-az4"), PlacementKind::Client),
            placement("2600:1f18::/56", Some("use1-az6"), PlacementKind::Subnet),
        ]);
        assert_eq!(az_of(&locator, "10.0.1.9"), "use1-az1");
        assert_eq!(az_of(&locator, "10.0.2.9"), "use1-az2");
        assert_eq!(az_of(&locator, "10.0.2.53"), "forwarder");
        assert_eq!(az_of(&locator, "10.0.2.54"), "use1-az2", "the /24 resumes after the /32");
        assert_eq!(az_of(&locator, "10.0.3.0"), "use1-az1", "the /16 resumes after the /24");
        assert_eq!(az_of(&locator, "10.0.255.255"), "use1-az1");
        assert_eq!(az_of(&locator, "10.1.200.1"), "use1-az4");
        assert_eq!(az_of(&locator, "10.2.0.0"), "unknown");
        assert_eq!(az_of(&locator, "9.255.255.255"), "unknown");
        assert_eq!(az_of(&locator, "::ffff:10.0.2.9"), "use1-az2", "IPv4-mapped clients match IPv4 entries");
        assert_eq!(az_of(&locator, "2600:1f18::5"), "use1-az6");
        assert_eq!(az_of(&locator, "2600:1f18:0:100::5"), "unknown");
    }

    #[test]
    fn equal_ranges_go_to_the_later_kind_and_the_default_covers_the_rest() {
        let locator = Locator::new(vec![
            placement("10.0.1.0/24", Some("use1-az1"), PlacementKind::Client),
            placement("10.0.1.0/24", Some("use1-az9"), PlacementKind::Subnet),
            placement("0.0.0.0/0", Some("use1-az5"), PlacementKind::Default),
            placement("::/0", Some("use1-az5"), PlacementKind::Default),
            placement("255.255.255.255/32", Some("use1-az3"), PlacementKind::Client),
        ]);
        assert_eq!(az_of(&locator, "10.0.1.1"), "use1-az1", "an [[az.clients]] entry beats a learned subnet");
        assert_eq!(az_of(&locator, "192.0.2.1"), "use1-az5");
        assert_eq!(az_of(&locator, "2001:db8::1"), "use1-az5");
        assert_eq!(az_of(&locator, "255.255.255.255"), "use1-az3", "a range at the very top");
        assert_eq!(az_of(&locator, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), "use1-az5");
        assert_eq!(az_of(&Locator::default(), "10.0.0.1"), "unknown");
        let v6_only = Locator::new(vec![placement("::/0", None, PlacementKind::Forwarder), placement("::ffff:0:0/96", Some("use1-az2"), PlacementKind::Client)]);
        assert_eq!(az_of(&v6_only, "10.1.2.3"), "unknown", "an IPv6 range never covers an IPv4 client");
        assert_eq!(az_of(&v6_only, "::ffff:10.1.2.3"), "unknown", "nor one on a dual-stack socket");
        assert_eq!(az_of(&v6_only, "2001:db8::1"), "forwarder");
    }

    fn spread(zones: &[&str], affinity: Affinity) -> Option<Spread> {
        let spread = Spread::of(zones.iter().map(|z| (!z.is_empty()).then(|| Arc::from(*z))).collect())?;
        Some(Spread { affinity, ..spread })
    }

    #[test]
    fn prefer_puts_the_clients_zone_first_and_only_keeps_it_alone() {
        let prefer = spread(&["use1-az1", "use1-az2", "use1-az1", ""], Affinity::Prefer).unwrap();
        let client = placement("10.0.2.0/24", Some("use1-az2"), PlacementKind::Subnet);
        let known = ClientZone::Known { az: "use1-az2", from: &client };
        let (choice, order) = prefer.decide(&known);
        assert_eq!(choice, Choice::SameZone);
        let order = order.unwrap();
        assert_eq!((order.count(), order.indexes().collect::<Vec<_>>()), (4, vec![1, 0, 2, 3]));

        let only = spread(&["use1-az1", "use1-az2", "use1-az1"], Affinity::Only).unwrap();
        let home = ClientZone::Known { az: "use1-az1", from: &client };
        let order = only.decide(&home).1.unwrap();
        assert_eq!((order.count(), order.indexes().collect::<Vec<_>>()), (2, vec![0, 2]));

        let elsewhere = ClientZone::Known { az: "use1-az3", from: &client };
        assert!(matches!(only.decide(&elsewhere), (Choice::NoneInZone, None)), "no address there: all of them");
        assert!(matches!(only.decide(&ClientZone::Forwarder(&client)), (Choice::ZoneUnknown, None)));
        assert!(matches!(only.decide(&ClientZone::Unknown), (Choice::ZoneUnknown, None)));
    }

    #[test]
    fn addresses_in_one_zone_need_no_spread() {
        assert!(spread(&["use1-az1", "use1-az1"], Affinity::Prefer).is_none(), "a zonal name");
        assert!(spread(&["use1-az1", ""], Affinity::Prefer).is_none());
        assert!(spread(&["", ""], Affinity::Only).is_none());
        assert!(spread(&["use1-az1", "", "use1-az2"], Affinity::Prefer).is_some());
    }

    #[test]
    fn route53_locations_match_from_the_az_out_and_unknown_clients_only_global() {
        let location = |kind: LocationType, id: &str| Location { kind, id: Arc::from(id) };
        let place = Place { az: "use1-az2", region: Some("us-east-1") };
        assert!(location(LocationType::AvailabilityZone, "use1-az2").matches(Some(&place)));
        assert!(!location(LocationType::AvailabilityZone, "use1-az1").matches(Some(&place)));
        assert!(location(LocationType::AvailabilityZoneGroup, "us-east-1-zg-1").matches(Some(&place)));
        assert!(location(LocationType::Region, "us-east-1").matches(Some(&place)));
        assert!(!location(LocationType::Region, "us-west-2").matches(Some(&place)));
        assert!(location(LocationType::Partition, "aws").matches(Some(&place)));
        assert!(!location(LocationType::Partition, "aws-cn").matches(Some(&place)));
        assert!(location(LocationType::Partition, "aws-us-gov").matches(Some(&Place { az: "usgw1-az1", region: Some("us-gov-west-1") })));
        assert!(location(LocationType::Global, "global").matches(Some(&place)));
        let regionless = Place { az: "use1-az2", region: None };
        assert!(!location(LocationType::Region, "us-east-1").matches(Some(&regionless)), "a region not known matches no region");
        assert!(location(LocationType::AvailabilityZone, "use1-az2").matches(Some(&regionless)));
        assert!(!location(LocationType::AvailabilityZone, "use1-az2").matches(None));
        assert!(!location(LocationType::Partition, "aws").matches(None));
        assert!(location(LocationType::Global, "global").matches(None), "an unknown AZ matches only Global");
        assert_eq!(LocationType::parse("AvailabilityZoneGroup"), Some(LocationType::AvailabilityZoneGroup));
        assert_eq!(LocationType::parse("availabilityzone"), None);
    }

    #[test]
    fn the_most_specific_pattern_sets_a_names_affinity() {
        let name = |s: &str| hickory_proto::rr::Name::from_ascii(s).unwrap();
        let rules = AffinityRules {
            default: Affinity::Prefer,
            patterns: vec![
                (name("amazonaws.com."), true, Affinity::Off),
                (name("s3.us-east-1.amazonaws.com."), true, Affinity::Only),
                (name("s3.us-east-1.amazonaws.com."), false, Affinity::Prefer),
            ],
        };
        assert_eq!(rules.for_name(&name("kms.us-east-1.amazonaws.com.")), Affinity::Off);
        assert_eq!(rules.for_name(&name("b.s3.us-east-1.amazonaws.com.")), Affinity::Only);
        assert_eq!(rules.for_name(&name("s3.us-east-1.amazonaws.com.")), Affinity::Prefer, "`*.` covers names below only");
        assert_eq!(rules.for_name(&name("*.s3.us-east-1.amazonaws.com.")), Affinity::Only, "and the wildcard it names");
        assert_eq!(rules.for_name(&name("internal-api.service.com.")), Affinity::Prefer);
    }
}
