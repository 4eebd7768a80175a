//! The owned-name table: records with provenance, the immutable `Snapshot` built from them,
//! and the name matching that the answer engine ([`crate::answer`]) builds on.
//!
//! Sources hand over plain [`Record`]s and typed [`Alias`]es. [`Snapshot::build`] refuses
//! names no one may own (the root, ICANN public suffixes), resolves precedence between sources
//! (a conflict drops the loser and reports it), flattens aliases into A/AAAA records beside
//! the name's other records, and indexes everything by lowercase wire-format key (see
//! [`crate::name_key`]). The result never changes; a refresh builds a new one and swaps it in
//! through [`SharedSnapshot`], so the DNS handler reads one consistent table per query without
//! locks. The rules, with their RFC and AWS references, are in ARCHITECTURE.md.
//!
//! Name matching ([`Snapshot::locate`]): every owned name outside a loaded zone is the apex of
//! its own little zone, as the private zone AWS manages for an endpoint is. A name below it is
//! NXDOMAIN with that SOA, unless a wildcard `*.name` covers it. Names that are neither owned
//! nor below an owned name are not ours and go to the forwarder.
//!
//! A loaded zone (a Route 53 private hosted zone: an SOA record at its apex) is answered as a
//! whole zone instead: its names' negative answers carry the zone's SOA, names between a record
//! and the apex are empty non-terminals (NODATA), and a delegation inside it (NS below the
//! apex) is forwarded. Weighted alternatives of one name and type are separate RRsets, one
//! drawn by weight per query.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::Arc,
};

use arc_swap::ArcSwap;
use hickory_proto::{
    op::ResponseCode,
    rr::{Name, RData, Record as WireRecord, RecordType, rdata::SOA},
    serialize::binary::{BinDecoder, BinEncodable, BinEncoder, NameEncoding, Restrict},
};
use once_cell::race::OnceBox;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::{
    az::{Affinity, AffinityRules, Location, LocationType, Locator, Place, Spread},
    name_key::{is_wildcard, name_key, parent, self_and_ancestors},
    node_table::{Keyed, KeyedTable},
    origin::Origin,
    prepared::Prepared,
};

/// A map keyed by wire-format name keys, hashed with foldhash.
pub type FastMap<V> = HashMap<Box<[u8]>, V, foldhash::fast::RandomState>;

/// A set of wire-format name keys, hashed with foldhash.
pub type FastSet = HashSet<Box<[u8]>, foldhash::fast::RandomState>;

/// The snapshot the DNS handler reads; refreshes replace it whole.
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

/// Which kind of source produced a record. The order is the precedence: when two kinds claim
/// the same name, the earlier one wins (config > Route 53 > endpoint DNS > endpoint tags). A
/// tag comes last: it may add names, never take over a name another source has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// `[[records]]` and `[[aliases]]` in the config file.
    Config,
    /// A Route 53 private hosted zone.
    Route53,
    /// An interface endpoint's own DNS names.
    EndpointDns,
    /// An endpoint's `hubdns:alias` tag.
    EndpointTag,
}

/// Where a record came from, carried to the `explain` and records views.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The kind of source, which sets the precedence.
    pub source: SourceKind,
    /// Human-readable origin: `config demo.toml`, an endpoint id and ENI, a zone id. One copy
    /// is shared by every record of a file, and a source's records share one buffer
    /// ([`crate::origin`]).
    pub origin: Origin,
    /// The line in the file `origin` names, for records from a file; 0 otherwise.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub line: u32,
}

fn is_zero(line: &u32) -> bool {
    *line == 0
}

impl Provenance {
    /// Provenance without a line: an AWS source's.
    pub fn new(source: SourceKind, origin: impl Into<Origin>) -> Self {
        Self { source, origin: origin.into(), line: 0 }
    }

    /// Where it came from, as people read it: `config demo.toml:42`, `route53 zone=Z…`.
    pub fn where_from(&self) -> WhereFrom<'_> {
        WhereFrom(self)
    }
}

/// [`Provenance::where_from`]: the origin, and its line if it has one.
pub struct WhereFrom<'a>(&'a Provenance);

impl fmt::Display for WhereFrom<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.line {
            0 => write!(f, "{}", self.0.origin),
            line => write!(f, "{}:{line}", self.0.origin),
        }
    }
}

/// One owned record as a source produced it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Owner name; a first label `*` makes it a wildcard.
    pub name: Name,
    /// TTL in seconds.
    pub ttl: u32,
    /// The data.
    pub data: RData,
    /// Where it came from.
    pub provenance: Provenance,
    /// For one of several weighted alternatives of this name and type (Route 53 weighted
    /// routing): its set and weight. Each query gets one set, chosen by weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<Weight>,
    /// The Availability Zone ID (`use1-az1`) of the address in `data` — its ENI's — when a
    /// source knows it; `[az]` affinity orders answers by it ([`crate::az`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub az: Option<Arc<str>>,
}

/// A record's place among alternatives of its name and type: drawn by weight per query
/// (Route 53 weighted routing), or chosen by the client's location (Route 53 AZ-affinity
/// routing) when `location` is set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weight {
    /// The set identifier; records with the same one answer together.
    pub set: Arc<str>,
    /// Relative weight; 0 is chosen only when every alternative has 0.
    pub weight: u32,
    /// For an AZ-affinity set: where it answers from (boxed: most sets have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Box<Location>>,
}

/// A name that answers with the A/AAAA records of another owned name (flattened, no CNAME).
/// Like a Route 53 alias record, it is one typed record set of its name: it stands beside the
/// name's other types (the zone apex's SOA and NS included), and an A alias and an AAAA alias
/// may share a name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alias {
    /// The name clients ask for.
    pub name: Name,
    /// The owned name whose addresses it returns.
    pub target: Name,
    /// TTL of the flattened records; `None`: the target's own TTL, as Route 53 answers an
    /// alias to a record in the same zone.
    pub ttl: Option<u32>,
    /// Where the alias came from.
    pub provenance: Provenance,
    /// Only this type (a Route 53 alias is one typed record set: A, AAAA, or another type
    /// aliasing a record set of that type in the same zone); `None`: A and AAAA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtype: Option<RecordType>,
    /// For one of several weighted alternatives (Route 53 weighted alias records): its set and
    /// weight; the flattened records are that alternative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<Weight>,
}

impl Alias {
    /// The address types it answers.
    fn types(&self) -> impl Iterator<Item = RecordType> + '_ {
        let (first, second) = match self.rtype {
            Some(only) => (only, None),
            None => (RecordType::A, Some(RecordType::AAAA)),
        };
        std::iter::once(first).chain(second)
    }
}

/// What goes into the SOA of negative answers for owned names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoaSettings {
    /// MNAME.
    pub mname: Name,
    /// RNAME.
    pub rname: Name,
    /// SOA TTL and MINIMUM: how long resolvers cache our NXDOMAIN / NODATA.
    pub negative_ttl: u32,
}

/// One owned name: its record sets and the SOA for its negative answers.
///
/// Kept small, as a table may hold 100,000 of them: the name is kept once, as its wire-format
/// key, and what only some queries need (the SOA of an owned name outside a zone, the NODATA
/// answer, each set's records as hickory records and its pre-encoded answer) is made the
/// first time it is asked for and kept from then on.
#[derive(Debug)]
pub struct Node {
    /// The lowercase wire-format key ([`crate::name_key`]), then, only when the source spelled
    /// the name with capitals, the name as spelled, in wire format.
    wire: Box<[u8]>,
    /// Where the key ends in `wire`.
    key_len: u8,
    /// In a loaded zone (Route 53): negative answers carry the zone's SOA, and an SOA query
    /// below the apex is NODATA.
    in_zone: bool,
    /// A delegation inside a zone (NS below the apex): the name and everything below it is
    /// forwarded, as a resolver inside the VPC would follow the delegation.
    delegated: bool,
    /// Its record sets, by type; most names have one, kept inline.
    rrsets: SmallVec<[RecordSet; 1]>,
    /// Where its negative answers' SOA comes from: its zone's (one copy for the whole zone),
    /// or the table's settings for names in no loaded zone (one copy for the table).
    authority: Arc<Authority>,
    /// Its own SOA and its NODATA answer, made when first needed.
    made: OnceBox<MadeNode>,
}

// A table holds a node per name and a set per type: growing either costs every name.
const _: () = assert!(std::mem::size_of::<Node>() <= 120 && std::mem::size_of::<RecordSet>() <= 72);

impl Keyed for Node {
    fn key(&self) -> &[u8] {
        &self.wire[..usize::from(self.key_len)]
    }
}

/// What a node makes when first asked for a negative answer.
#[derive(Debug)]
struct MadeNode {
    /// Its own SOA, when it lies in no loaded zone.
    soa: Option<WireRecord>,
    /// The NODATA answer (SOA in the authority section), pre-encoded; `None` for wildcards,
    /// whose SOA is owned by another name than the query's.
    nodata: Option<Prepared>,
}

/// Where a node's SOA comes from.
#[derive(Debug)]
enum Authority {
    /// The SOA of the loaded zone it lies in, its TTL already the negative one.
    Zone(WireRecord),
    /// The settings of the SOA it makes for itself: it lies in no loaded zone, so it is the
    /// apex of its own little zone.
    Own(OwnSoa),
}

/// What every synthesized SOA of one table holds.
#[derive(Debug)]
struct OwnSoa {
    mname: Name,
    rname: Name,
    serial: u32,
    negative_ttl: u32,
}

/// The records of one type at one name, ready to encode, with their provenance.
///
/// The data is kept in wire format; the records as hickory records, and the answer
/// pre-encoded for the fast path, are made from it when first needed. What few sets have
/// (weights, AZs, a CNAME's target) sits in one box beside it.
#[derive(Debug)]
pub struct RecordSet {
    /// The type.
    pub rtype: RecordType,
    /// The TTL of every record (one per RRset, RFC 2181 §5.2).
    pub ttl: u32,
    /// Each record's data in wire format (names uncompressed), after its length (u16, big endian).
    data: Box<[u8]>,
    /// Where each record came from, index for index (most sets have one record).
    provenance: SmallVec<[Provenance; 1]>,
    /// Weight, AZ spread and CNAME target, for the sets that have one.
    extra: Option<Box<SetExtra>>,
    /// The records as hickory records and pre-encoded, made together when first needed.
    made: OnceBox<MadeSet>,
}

/// What only some record sets have.
#[derive(Debug, Default)]
struct SetExtra {
    /// Set among weighted alternatives of the same type; `None` for a plain RRset.
    weight: Option<Weight>,
    /// The records' Availability Zones, for an A/AAAA set whose addresses lie in two AZs or
    /// more, with the name's affinity ([`Snapshot::apply_affinity`]).
    spread: Option<Spread>,
    /// For a CNAME: its target and the target's lookup key, so chains are followed without
    /// allocating.
    target: Option<(Name, Box<[u8]>)>,
}

/// What a record set makes of its data when first asked.
#[derive(Debug)]
struct MadeSet {
    /// The records as hickory records (wildcards still carry the `*` owner).
    records: Box<[WireRecord]>,
    /// The records pre-encoded for the fast path; `None` when that is not possible (a
    /// wildcard whose data holds names, which would be compressed against the `*` label).
    prepared: Option<Prepared>,
}

impl RecordSet {
    /// A set of `rtype` records with `data`, all with `ttl`.
    fn new(rtype: RecordType, ttl: u32, data: &[RData], provenance: SmallVec<[Provenance; 1]>, weight: Option<Weight>) -> Self {
        thread_local! {
            /// Where each record's data is encoded first: one buffer per building thread.
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let mut wire = Vec::with_capacity(data.len() * 8);
        SCRATCH.with_borrow_mut(|scratch| {
            for rdata in data {
                scratch.clear();
                let mut encoder = BinEncoder::new(scratch);
                encoder.set_name_encoding(NameEncoding::Uncompressed);
                // Data parsed or decoded by hickory encodes; an error would leave the record empty.
                let _ = rdata.emit(&mut encoder);
                let len = u16::try_from(scratch.len()).unwrap_or(0);
                wire.extend_from_slice(&len.to_be_bytes());
                wire.extend_from_slice(&scratch[..usize::from(len)]);
            }
        });
        let target = match data.first() {
            Some(RData::CNAME(target)) => Some((target.0.clone(), name_key(&target.0))),
            _ => None,
        };
        let extra = (weight.is_some() || target.is_some()).then(|| Box::new(SetExtra { weight, spread: None, target }));
        Self { rtype, ttl, data: wire.into_boxed_slice(), provenance, extra, made: OnceBox::new() }
    }

    /// The records' data, decoded.
    pub fn data(&self) -> impl Iterator<Item = RData> + '_ {
        let mut at = 0;
        std::iter::from_fn(move || {
            while at + 2 <= self.data.len() {
                let len = usize::from(u16::from_be_bytes([self.data[at], self.data[at + 1]]));
                let body = self.data.get(at + 2..at + 2 + len)?;
                at += 2 + len;
                // Encoded from hickory's own data by `RecordSet::new`, so it decodes.
                if let Ok(rdata) = RData::read(&mut BinDecoder::new(body), self.rtype, Restrict::new(len as u16)) {
                    return Some(rdata);
                }
            }
            None
        })
    }

    /// How many records the set holds.
    pub fn len(&self) -> usize {
        self.provenance.len()
    }

    /// Whether the set holds no record (never: a set is made from its records).
    pub fn is_empty(&self) -> bool {
        self.provenance.is_empty()
    }

    /// Where each record came from, index for index.
    pub fn provenance(&self) -> &[Provenance] {
        &self.provenance
    }

    /// Its set and weight among weighted alternatives of the same type; `None` for a plain
    /// RRset.
    pub fn weight(&self) -> Option<&Weight> {
        self.extra.as_ref()?.weight.as_ref()
    }

    /// The records' Availability Zones, when its addresses lie in two AZs or more.
    pub fn spread(&self) -> Option<&Spread> {
        self.extra.as_ref()?.spread.as_ref()
    }

    /// The records as hickory records and pre-encoded, for `owner` (the node it belongs to).
    fn made(&self, owner: &Node) -> &MadeSet {
        self.made.get_or_init(|| {
            let name = owner.name();
            let records: Box<[WireRecord]> = self.data().map(|data| WireRecord::from_rdata(name.clone(), self.ttl, data)).collect();
            // A wildcard's answer is prepared for the `*` name; names in its data would be
            // compressed against labels a real query name does not have at that offset.
            let preparable = !name.is_wildcard() || encodes_without_names(self.rtype);
            let prepared = if preparable { prepare(&name, self.rtype, ResponseCode::NoError, &records, &[]) } else { None };
            Box::new(MadeSet { records, prepared })
        })
    }

    /// The records as hickory records owned by `owner` (the node it belongs to).
    pub fn records(&self, owner: &Node) -> &[WireRecord] {
        &self.made(owner).records
    }

    /// The records pre-encoded for a question named as `owner` (the node it belongs to), if
    /// they can be.
    pub fn prepared(&self, owner: &Node) -> Option<&Prepared> {
        self.made(owner).prepared.as_ref()
    }

    /// The AZ spread the answer engine applies: `None` when the addresses lie in one AZ or
    /// the name's affinity is off.
    pub fn affinity(&self) -> Option<&Spread> {
        self.spread().filter(|s| s.affinity != Affinity::Off)
    }

    /// A CNAME's target name and its lookup key.
    pub fn cname_target(&self) -> Option<(&Name, &[u8])> {
        self.extra.as_ref()?.target.as_ref().map(|(name, key)| (name, &key[..]))
    }

    /// Whether `other` holds the same answer: type, TTL, weight, AZs and data.
    fn same_data(&self, other: &RecordSet) -> bool {
        self.rtype == other.rtype
            && self.ttl == other.ttl
            && self.weight() == other.weight()
            && self.spread() == other.spread()
            && self.len() == other.len()
            && self.data == other.data
    }
}

/// Why an alias did not resolve: its target is no owned name (yet: it may come from a source
/// that has not answered).
pub const TARGET_NOT_OWNED: &str = "target is not an owned name";

/// Why an alias did not resolve: its target is owned but has no addresses to flatten.
pub const TARGET_WITHOUT_ADDRESSES: &str = "target has no A or AAAA records";

/// Why an alias did not resolve: its target is itself an alias that does not resolve (one
/// whose target is missing, or a cycle).
pub const TARGET_UNRESOLVED_ALIAS: &str = "target is an alias that does not resolve";

/// Why a CNAME was left out: RFC 1034 §3.6.2 and RFC 2181 §10.1 allow no other data at a
/// CNAME's name, and Route 53 refuses such a record set.
pub const CNAME_BESIDE_DATA: &str = "a CNAME cannot stand beside other data at its name (RFC 2181 §10.1)";

/// Something a build had to leave out, for logs and counters.
#[derive(Debug, Clone, PartialEq)]
pub enum Dropped {
    /// Two sources claimed one name; the lower-precedence one lost.
    Conflict {
        /// The name.
        name: Name,
        /// Who kept it.
        kept: Provenance,
        /// Who lost.
        dropped: Provenance,
    },
    /// An alias whose target is unknown, has no addresses, or is part of a cycle.
    UnresolvedAlias {
        /// The alias.
        alias: Alias,
        /// Why.
        reason: &'static str,
    },
    /// A record or alias no source may publish: its name is the root or a public suffix, or
    /// it is a CNAME beside other data.
    Refused {
        /// The name.
        name: Name,
        /// Who tried.
        provenance: Provenance,
        /// Why not.
        reason: &'static str,
    },
}

/// The immutable owned-name table ([`KeyedTable`]s of nodes, found by lowercase key).
#[derive(Debug)]
pub struct Snapshot {
    exact: KeyedTable<Node>,
    /// Wildcard nodes, found by the name they cover (the owner without its `*` label).
    wildcards: KeyedTable<Node>,
    serial: u32,
    /// Records and aliases left out because a higher-precedence source owns their name.
    conflicts: usize,
    /// Records and aliases refused: a name no one may own, or a CNAME beside other data.
    refused: usize,
    /// Who else claimed a name and lost, by name key: what `explain` reports as outvoted.
    outvoted: FastMap<Vec<Provenance>>,
    /// Records served, by the kind of source they came from (index: [`SourceKind`] order).
    by_kind: [usize; 4],
    /// Which AZ each client asks from (`[az]`, and the subnets the sources learned).
    locator: Locator,
    /// The affinity of names (`[az]`), as applied.
    affinity: AffinityRules,
    /// Zones whose file did not load, with nothing served in their place.
    unloaded: Vec<Unloaded>,
}

/// A zone configured but not loaded (its file did not load, and no earlier copy is served):
/// its names answer SERVFAIL, as BIND 9 answers for a zone "not loaded due to errors", rather
/// than being sent upstream as names no one owns.
#[derive(Debug, Clone)]
pub struct Unloaded {
    key: Box<[u8]>,
    /// The zone's name (or the one name, for [`Unloaded::name`]).
    pub zone: Name,
    /// Why it is not loaded (the config and zone file lines, and the message).
    pub why: Arc<str>,
    /// Only the name itself, not the names below it.
    exact: bool,
}

impl Unloaded {
    /// The zone `zone`, not loaded for `why`.
    pub fn new(zone: &Name, why: &str) -> Self {
        Self { key: name_key(zone), zone: zone.clone(), why: Arc::from(why), exact: false }
    }

    /// The one name `name` (an alias whose target is in a zone not loaded), for `why`.
    pub fn name(name: &Name, why: &str) -> Self {
        Self { exact: true, ..Self::new(name, why) }
    }

    /// Whether the name with lowercase wire key `key` is at or below the zone's apex (is the
    /// name, for [`Unloaded::name`]).
    pub fn holds(&self, key: &[u8]) -> bool {
        match self.exact {
            true => *self.key == *key,
            false => self_and_ancestors(key).any(|ancestor| ancestor == &*self.key),
        }
    }

    /// Whether `key` is the zone's apex.
    pub fn key_is(&self, key: &[u8]) -> bool {
        *self.key == *key
    }
}

impl Default for Snapshot {
    fn default() -> Self {
        Self {
            exact: KeyedTable::new(0),
            // `\x01*` and the base name.
            wildcards: KeyedTable::new(2),
            serial: 0,
            conflicts: 0,
            refused: 0,
            outvoted: FastMap::default(),
            by_kind: [0; 4],
            locator: Locator::default(),
            affinity: AffinityRules::default(),
            unloaded: Vec::new(),
        }
    }
}

/// Where a name stands in the table: the name matching of RFC 1034 §4.3.2 and RFC 4592, for
/// the answer engine.
#[derive(Debug, Clone, Copy)]
pub enum Resolution<'a> {
    /// The name itself is owned (a wildcard owner asked literally included, RFC 4592 §2.2.1).
    Exact(&'a Node),
    /// The wildcard at the closest encloser covers it (RFC 4592 §3.3.1).
    Wildcard(&'a Node),
    /// It is at or below a delegation inside a zone: forwarded.
    Delegated(&'a Node),
    /// It does not exist; this owned name is its closest encloser: NXDOMAIN.
    Below(&'a Node),
    /// Not owned: forwarded.
    NotOwned,
}

/// Whether a name may be owned at all, from any source: `Err` with the reason for the root
/// (owning it would answer NXDOMAIN for every name not owned) and for ICANN public suffixes
/// (`com`, `co.uk`: owning one would take over every name under it). The Public Suffix
/// List's private section (AWS's own names such as S3's among them) may be owned. A wildcard
/// is judged by the name it covers.
pub fn ownable(name: &Name) -> Result<(), &'static str> {
    ownable_key(&name_key(name))
}

/// [`ownable`] for the name with lowercase wire key `key`, without allocating: the name is
/// spelled out for the suffix list in a buffer on the stack.
fn ownable_key(key: &[u8]) -> Result<(), &'static str> {
    let base = if is_wildcard(key) { parent(key).unwrap_or(b"\x00") } else { key };
    if base == b"\x00" {
        return Err("the root cannot be an owned name: every other name would answer NXDOMAIN");
    }
    // `\x03foo\x07example\x00` → `foo.example`.
    let mut text = [0u8; 255];
    let mut len = 0;
    for rest in self_and_ancestors(base) {
        let label = usize::from(rest[0]);
        if label == 0 {
            break;
        }
        if len > 0 {
            text[len] = b'.';
            len += 1;
        }
        text[len..len + label].copy_from_slice(&rest[1..=label]);
        len += label;
    }
    let text = &text[..len];
    match psl::suffix(text) {
        Some(suffix) if suffix.typ() == Some(psl::Type::Icann) && suffix.as_bytes() == text => {
            Err("an ICANN public suffix cannot be an owned name: it would take over every name under it")
        }
        _ => Ok(()),
    }
}

/// Makes the names inside `rdata` absolute. Sources whose record values are always fully
/// qualified (the config file, Route 53 — which may leave the final dot out) parse them with
/// hickory, which keeps a name without the dot relative; on the wire that is the same name,
/// but `explain`, `/records` and change detection would show and compare it differently.
pub fn absolute_names(rdata: &mut RData) {
    use hickory_proto::rr::rdata::{MX, SRV};
    let fix = |name: &Name| {
        let mut name = name.clone();
        name.set_fqdn(true);
        name
    };
    match rdata {
        RData::CNAME(c) => c.0 = fix(&c.0),
        RData::PTR(p) => p.0 = fix(&p.0),
        RData::NS(ns) => ns.0 = fix(&ns.0),
        RData::MX(mx) => *mx = MX::new(mx.preference, fix(&mx.exchange)),
        RData::SRV(srv) => *srv = SRV::new(srv.priority, srv.weight, srv.port, fix(&srv.target)),
        RData::SOA(soa) => {
            soa.mname = fix(&soa.mname);
            soa.rname = fix(&soa.rname);
        }
        _ => {}
    }
}

/// From how many records a build's scratch is freed on a thread of its own
/// ([`crate::memory::free_later`]).
const FREE_LATER_FROM: usize = 10_000;

/// Records of a build by their place in its list: each record stays where it came in, and
/// the groups pass indexes around. Moving the records themselves (386 bytes each) into a
/// vector per name was half of building 100,000 names (perf).
type Ids = SmallVec<[u32; 2]>;

/// The index of the record at `at` in a build's list. A list of four billion records would
/// need terabytes before it got here.
fn id(at: usize) -> u32 {
    u32::try_from(at).unwrap_or(u32::MAX)
}

/// What one kind of source claims at one name.
#[derive(Default)]
struct Claim {
    records: Ids,
    aliases: Vec<Alias>,
}

/// From how many names their nodes are made on two threads ([`make_nodes`]).
const PARALLEL_FROM: usize = 10_000;

/// Puts the node of every group that answers with records in the table, in the groups' order.
/// Each node is made on its own (sorted, grouped into sets, encoded): with many names, half
/// are made on a second thread — 90 ms of building 100,000 names on one. This thread's half
/// goes straight into the table, and the other's list is the only copy made: a list of every
/// node beside the table was 12 MB more at the peak of loading 100,000 names.
fn make_nodes(groups: &Groups, all: &[Record], own: &Arc<Authority>, table: &mut Snapshot) {
    let answering: Vec<&Group> = groups.iter().filter(|group| !group.records.is_empty()).collect();
    let make = |group: &&Group| Node::new(group.key.clone(), group.name(all), group.records.iter().map(|&at| &all[at as usize]), own);
    if answering.len() < PARALLEL_FROM {
        answering.iter().map(make).for_each(|node| table.insert(node));
        return;
    }
    let (mine, theirs) = answering.split_at(answering.len() / 2);
    std::thread::scope(|scope| {
        let other = scope.spawn(|| theirs.iter().map(make).collect::<Vec<Node>>());
        mine.iter().map(make).for_each(|node| table.insert(node));
        // Making a node does not panic; if it ever did, that half is made again here.
        let nodes = other.join().unwrap_or_else(|_| theirs.iter().map(make).collect());
        nodes.into_iter().for_each(|node| table.insert(node));
    });
}

/// A build's groups, found by their name's key: kept in one vector with an index of four
/// bytes a slot ([`KeyedTable`]), where a hash map's slots — a power of two, an eighth left
/// empty — held a key and a group each: 369 MB at a million names.
type Groups = KeyedTable<Group>;

/// Where a group's name is spelled: the record that claimed it first (no copy per name), or
/// the alias that did.
enum Owner {
    Record(u32),
    /// Boxed: a group per name, and most are a record's.
    Alias(Box<Name>),
}

/// Everything claimed at one name while a build groups them, and which claim answers.
struct Group {
    /// Its name's lowercase wire key.
    key: Box<[u8]>,
    /// Its name as first claimed.
    owner: Owner,
    /// Every kind's claim, in precedence order.
    /// A short list (one entry per kind, at most four; inline for the usual one): a map here
    /// would cost far more per name than the records it holds.
    claims: SmallVec<[(SourceKind, Claim); 1]>,
    /// The kind whose claim answers now: the best, or the next when the best had nothing but
    /// aliases and none of them resolved.
    kind: SourceKind,
    /// The answering claim's plain records, then its aliases flattened so far.
    records: Ids,
    /// The answering claim's aliases not yet flattened.
    pending: Vec<Alias>,
    /// Who answers the name, once its node is built: what a loser is reported against. (A
    /// name without aliases hands its records to its node, so they are not held twice.)
    kept: Option<Provenance>,
}

/// The claim of `kind` at `name`, made empty if new; `Err` with the reason for a name no one
/// may own ([`ownable`], judged once per name).
fn claim<'g>(groups: &'g mut Groups, name: &Name, record: Option<u32>, kind: SourceKind) -> Result<&'g mut Claim, &'static str> {
    let key = name_key(name);
    let group = groups.get_or_try_insert(&key, || {
        ownable_key(&key)?;
        let owner = record.map_or_else(|| Owner::Alias(Box::new(name.clone())), Owner::Record);
        Ok::<_, &'static str>(Group { key: key.clone(), owner, claims: SmallVec::new(), kind, records: Ids::new(), pending: Vec::new(), kept: None })
    })?;
    let at = match group.claims.binary_search_by_key(&kind, |(k, _)| *k) {
        Ok(at) => at,
        Err(at) => {
            group.claims.insert(at, (kind, Claim::default()));
            at
        }
    };
    Ok(&mut group.claims[at].1)
}

impl Group {
    /// Its name, as first claimed (`all`: the build's records).
    fn name<'a>(&'a self, all: &'a [Record]) -> &'a Name {
        match &self.owner {
            Owner::Record(at) => &all[*at as usize].name,
            Owner::Alias(name) => name,
        }
    }

    /// Makes the claim of `kind` the answering one. A CNAME beside other data, and an alias
    /// of a type the claim also has plain records of, are left out and reported.
    fn answer_with(&mut self, kind: SourceKind, all: &[Record], dropped: &mut Vec<Dropped>) {
        self.kind = kind;
        let claim = match self.claims.iter().position(|(k, _)| *k == kind) {
            Some(at) => self.claims.remove(at).1,
            None => Claim::default(),
        };
        let rtype = |at: u32| all[at as usize].data.record_type();
        let (mut records, mut aliases) = (claim.records, claim.aliases);
        let has_other = records.iter().any(|&at| rtype(at) != RecordType::CNAME) || !aliases.is_empty();
        if has_other {
            records.retain(|at| {
                let keep = rtype(*at) != RecordType::CNAME;
                if !keep {
                    let r = &all[*at as usize];
                    dropped.push(Dropped::Refused { name: r.name.clone(), provenance: r.provenance.clone(), reason: CNAME_BESIDE_DATA });
                }
                keep
            });
        }
        aliases.retain(|alias| {
            let clash = records.iter().find(|&&at| alias.types().any(|t| t == rtype(at)));
            if let Some(&at) = clash {
                dropped.push(Dropped::Conflict {
                    name: alias.name.clone(),
                    kept: all[at as usize].provenance.clone(),
                    dropped: alias.provenance.clone(),
                });
            }
            clash.is_none()
        });
        // A zone's apex stays its zone's: whoever wins the name, the SOA and NS of a zone
        // there are kept beside it (a config record at an apex must not unmake the zone).
        if !records.iter().any(|&at| rtype(at) == RecordType::SOA) {
            for (_, claim) in self.claims.iter_mut().filter(|(_, c)| c.records.iter().any(|&at| rtype(at) == RecordType::SOA)) {
                let (zone, rest): (Ids, Ids) = claim.records.iter().copied().partition(|&at| matches!(rtype(at), RecordType::SOA | RecordType::NS));
                claim.records = rest;
                records.extend(zone);
            }
        }
        self.records = records;
        self.pending = aliases;
    }

    /// The next kind with a claim, after the answering one.
    fn next_kind(&self) -> Option<SourceKind> {
        self.claims.iter().map(|(k, _)| *k).find(|k| *k > self.kind)
    }
}

impl Snapshot {
    /// An empty table (nothing owned, everything forwarded).
    pub fn empty() -> Self {
        Self::default()
    }

    /// Builds a table from everything the sources know. Never fails: what cannot be used is
    /// returned in the list of [`Dropped`] items for the caller to log and count.
    pub fn build(records: Vec<Record>, aliases: Vec<Alias>, soa: &SoaSettings, serial: u32) -> (Self, Vec<Dropped>) {
        let mut dropped = Vec::new();
        let mut groups = Groups::with_capacity(0, records.len());
        // Every record stays here; alias flattening adds its records at the end.
        let mut all = records;
        for (at, record) in all.iter().enumerate() {
            match claim(&mut groups, &record.name, Some(id(at)), record.provenance.source) {
                // Identical data from the same source (one name listed twice) is kept once.
                Ok(claim) if claim.records.iter().any(|&i| all[i as usize].data == record.data && all[i as usize].weight == record.weight) => {}
                Ok(claim) => claim.records.push(id(at)),
                Err(reason) => dropped.push(Dropped::Refused { name: record.name.clone(), provenance: record.provenance.clone(), reason }),
            }
        }
        for alias in aliases {
            match claim(&mut groups, &alias.name, None, alias.provenance.source) {
                Ok(claim) => claim.aliases.push(alias),
                Err(reason) => dropped.push(Dropped::Refused { name: alias.name, provenance: alias.provenance, reason }),
            }
        }
        for group in groups.iter_mut() {
            let best = group.claims.first().map_or(SourceKind::Config, |(k, _)| *k);
            group.answer_with(best, &all, &mut dropped);
        }

        let own = Arc::new(Authority::Own(OwnSoa { mname: soa.mname.clone(), rname: soa.rname.clone(), serial, negative_ttl: soa.negative_ttl }));
        let mut snapshot = Self { serial, ..Self::default() };
        snapshot.exact.reserve(groups.len());
        for group in groups.iter_mut() {
            group.kept = group.records.first().map(|&at| all[at as usize].provenance.clone());
        }
        make_nodes(&groups, &all, &own, &mut snapshot);
        snapshot.flatten_aliases(&mut groups, &mut all, &own, &mut dropped);

        // Who lost on precedence, now that every name's answering claim is final.
        for group in groups.iter() {
            let Some(kept) = group.kept.clone().or_else(|| group.records.first().map(|&at| all[at as usize].provenance.clone())) else { continue };
            // The claims left are those after the answering one (earlier ones failed).
            let losers: Vec<Provenance> = group
                .claims
                .iter()
                .flat_map(|(_, claim)| claim.records.iter().map(|&at| &all[at as usize].provenance).chain(claim.aliases.iter().map(|a| &a.provenance)))
                .cloned()
                .collect();
            for loser in &losers {
                dropped.push(Dropped::Conflict { name: group.name(&all).clone(), kept: kept.clone(), dropped: loser.clone() });
            }
            if !losers.is_empty() {
                snapshot.outvoted.insert(group.key.clone(), losers);
            }
        }
        snapshot.apply_zones(&own);
        snapshot.exact.shrink_to_fit();
        snapshot.wildcards.shrink_to_fit();
        snapshot.conflicts = dropped.iter().filter(|d| matches!(d, Dropped::Conflict { .. })).count();
        snapshot.refused = dropped.iter().filter(|d| matches!(d, Dropped::Refused { .. })).count();
        let mut by_kind = [0; 4];
        for provenance in snapshot.nodes().flat_map(|n| n.rrsets.iter()).flat_map(|set| set.provenance()) {
            by_kind[provenance.source as usize] += 1;
        }
        snapshot.by_kind = by_kind;
        let large = all.len() >= FREE_LATER_FROM;
        crate::memory::free_later((all, groups), large);
        (snapshot, dropped)
    }

    /// Flattens every group's aliases into A/AAAA records beside its other records. Aliases
    /// may target other aliases, so this goes in rounds until nothing moves; an alias waits
    /// while its target still has aliases pending. A name whose answering claim had only
    /// aliases, none of which resolved, falls back on the next source's claim (a broken alias
    /// never hides another source's records); what is left pending then is reported.
    fn flatten_aliases(&mut self, groups: &mut Groups, all: &mut Vec<Record>, own: &Arc<Authority>, dropped: &mut Vec<Dropped>) {
        loop {
            loop {
                let waiting = waiting_keys(groups);
                let mut changed = Vec::new();
                for group in groups.iter_mut() {
                    let mut flattened = Vec::new();
                    group.pending.retain(|alias| {
                        if waiting.contains(&name_key(&alias.target)) {
                            return true;
                        }
                        match self.alias_records(alias) {
                            Ok(records) => {
                                flattened.extend(records);
                                false
                            }
                            Err(_) => true,
                        }
                    });
                    if !flattened.is_empty() {
                        for record in flattened {
                            group.records.push(id(all.len()));
                            all.push(record);
                        }
                        changed.push(group.key.clone());
                    }
                }
                for key in &changed {
                    let group = groups.get(key).expect("a key of the table");
                    self.insert(Node::new(key.clone(), group.name(all), group.records.iter().map(|&at| &all[at as usize]), own));
                }
                if changed.is_empty() {
                    break;
                }
            }
            let waiting = waiting_keys(groups);
            let mut fell_back = false;
            // The names that answer nothing yet but aliases still pending.
            let keys: Vec<Box<[u8]>> = groups.iter().filter(|g| g.records.is_empty() && !g.pending.is_empty()).map(|g| g.key.clone()).collect();
            for key in keys {
                let group = groups.get_mut(&key).expect("a key of the table");
                let Some(next) = group.next_kind() else { continue };
                for alias in std::mem::take(&mut group.pending) {
                    let reason = self.alias_failure(&alias, &waiting);
                    dropped.push(Dropped::UnresolvedAlias { alias, reason });
                }
                group.answer_with(next, all, dropped);
                if !group.records.is_empty() {
                    self.insert(Node::new(key.clone(), group.name(all), group.records.iter().map(|&at| &all[at as usize]), own));
                }
                fell_back = true;
            }
            if !fell_back {
                break;
            }
        }
        // An alias that never resolved at a name that answers with other records: its types
        // come from the next source that has them, so a broken alias hides nothing.
        let waiting = waiting_keys(groups);
        for group in groups.iter_mut() {
            let mut filled = false;
            for alias in std::mem::take(&mut group.pending) {
                let type_of = |at: u32| all[at as usize].data.record_type();
                for rtype in alias.types() {
                    if group.records.iter().any(|&at| type_of(at) == rtype) {
                        continue;
                    }
                    let next = group.claims.iter_mut().find(|(_, c)| c.records.iter().any(|&at| type_of(at) == rtype));
                    if let Some((_, claim)) = next {
                        let (taken, rest): (Ids, Ids) = claim.records.iter().copied().partition(|&at| type_of(at) == rtype);
                        claim.records = rest;
                        group.records.extend(taken);
                        filled = true;
                    }
                }
                let reason = self.alias_failure(&alias, &waiting);
                dropped.push(Dropped::UnresolvedAlias { alias, reason });
            }
            if filled {
                self.insert(Node::new(group.key.clone(), group.name(all), group.records.iter().map(|&at| &all[at as usize]), own));
            }
        }
    }

    /// Gives names inside loaded zones (those with an SOA record at their apex) the zone's
    /// SOA, marks delegations, and adds the empty non-terminals between names and their apex
    /// so that they answer NODATA rather than NXDOMAIN (RFC 8020).
    fn apply_zones(&mut self, own: &Arc<Authority>) {
        // Negative answers carry the zone's SOA with the TTL of the lesser of its own TTL and
        // its MINIMUM (RFC 2308 §3, §5); an SOA query at the apex gets the record as it is.
        let apexes: FastMap<Arc<Authority>> = self
            .exact
            .iter()
            .filter_map(|node| {
                let set = node.rrsets.iter().find(|s| s.rtype == RecordType::SOA)?;
                let mut soa = set.records(node).first()?.clone();
                if let RData::SOA(data) = &soa.data {
                    soa.ttl = soa.ttl.min(data.minimum);
                }
                Some((node.key().into(), Arc::new(Authority::Zone(soa))))
            })
            .collect();
        if apexes.is_empty() {
            return;
        }
        let zone_of = |key: &[u8]| self_and_ancestors(key).find_map(|k| apexes.get(k).map(|soa| (k.len(), soa)));
        let mut empty_non_terminals: Vec<(Box<[u8]>, Arc<Authority>)> = Vec::new();
        for node in self.exact.iter_mut() {
            let key = node.key();
            let Some((apex_len, soa)) = zone_of(key) else { continue };
            let is_apex = apex_len == key.len();
            // The names between this one and the apex, exclusive.
            let mut at = parent(key);
            while let Some(ancestor) = at.filter(|a| a.len() > apex_len) {
                empty_non_terminals.push((ancestor.into(), soa.clone()));
                at = parent(ancestor);
            }
            let delegated = !is_apex && node.rrsets.iter().any(|s| s.rtype == RecordType::NS);
            node.join_zone(soa, delegated);
        }
        for node in self.wildcards.iter_mut() {
            let base = &node.key()[2..];
            let Some((apex_len, soa)) = zone_of(base) else { continue };
            let mut at = Some(base);
            while let Some(ancestor) = at.filter(|a| a.len() > apex_len) {
                empty_non_terminals.push((ancestor.into(), soa.clone()));
                at = parent(ancestor);
            }
            node.join_zone(soa, false);
        }
        // A wildcard owner with names below it (`x.*.w`) is no empty non-terminal: it has its
        // records, in the wildcard table. Each is added once, with room made for exactly those:
        // the table doubling for a few was 24 MB at the peak of loading 100,000 names.
        let present = |key: &[u8]| self.exact.contains_key(key) || (is_wildcard(key) && self.wildcards.contains_key(&key[2..]));
        empty_non_terminals.retain(|(key, _)| !present(key));
        empty_non_terminals.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        empty_non_terminals.dedup_by(|a, b| a.0 == b.0);
        self.exact.reserve(empty_non_terminals.len());
        for (key, soa) in empty_non_terminals {
            self.exact.insert(Node::empty(key, soa, own.clone()));
        }
        // Names below a zone cut are not the zone's to answer (RFC 1034 §4.2.1: data there is
        // glue or occluded): they are forwarded like the cut itself.
        let cuts: FastSet = self.exact.iter().filter(|n| n.delegated).map(|n| n.key().into()).collect();
        if cuts.is_empty() {
            return;
        }
        for node in self.exact.iter_mut() {
            if self_and_ancestors(node.key()).skip(1).any(|a| cuts.contains(a)) {
                node.delegated = true;
            }
        }
        for node in self.wildcards.iter_mut() {
            // Below the `*` label: the base and its ancestors.
            if self_and_ancestors(node.key()).skip(1).any(|a| cuts.contains(a)) {
                node.delegated = true;
            }
        }
    }

    fn insert(&mut self, node: Node) {
        if is_wildcard(node.key()) { self.wildcards.insert(node) } else { self.exact.insert(node) }
    }

    /// The A/AAAA records an alias flattens to, owned by the alias name: every RRset of its
    /// types at the target, weighted alternatives staying weighted, as Route 53 answers an
    /// alias to weighted records.
    fn alias_records(&self, alias: &Alias) -> Result<Vec<Record>, &'static str> {
        let node = match self.locate(&name_key(&alias.target)) {
            Resolution::Exact(node) | Resolution::Wildcard(node) => node,
            Resolution::Below(_) | Resolution::Delegated(_) | Resolution::NotOwned => return Err(TARGET_NOT_OWNED),
        };
        let mut out = Vec::new();
        for rtype in alias.types() {
            for set in node.rrsets.iter().filter(|s| s.rtype == rtype) {
                out.extend(set.data().map(|data| Record {
                    name: alias.name.clone(),
                    ttl: alias.ttl.unwrap_or(set.ttl),
                    data,
                    provenance: alias.provenance.clone(),
                    weight: alias.weight.clone().or_else(|| set.weight().cloned()),
                    az: None,
                }));
                // The addresses keep their AZs: an alias of an endpoint name is ordered as
                // the endpoint name is.
                if let Some(spread) = set.spread() {
                    let first = out.len() - set.len();
                    for (record, zone) in out[first..].iter_mut().zip(spread.zones.iter()) {
                        record.az = zone.clone();
                    }
                }
            }
        }
        if out.is_empty() { Err(TARGET_WITHOUT_ADDRESSES) } else { Ok(out) }
    }

    /// Why `alias` did not flatten, once every round is done; `waiting` holds the names
    /// whose own aliases are still pending.
    fn alias_failure(&self, alias: &Alias, waiting: &FastSet) -> &'static str {
        if waiting.contains(&name_key(&alias.target)) {
            return TARGET_UNRESOLVED_ALIAS;
        }
        self.alias_records(alias).err().unwrap_or(TARGET_UNRESOLVED_ALIAS)
    }

    /// Where the name with lowercase wire key `key` stands (RFC 1034 §4.3.2 step 3, RFC 4592
    /// §3.3.1): owned; covered by the wildcard at its closest encloser; at or below a zone
    /// cut; nonexistent below its closest encloser; or not owned. Walking up from the name,
    /// the first ancestor that exists — an owned name, an empty non-terminal, or a wildcard
    /// owner itself — is the closest encloser: only its own `*` child may match, so
    /// `x.*.apps.example` is NXDOMAIN, not a match of `*.apps.example`.
    pub fn locate(&self, key: &[u8]) -> Resolution<'_> {
        if let Some(node) = self.exact.get(key) {
            return if node.delegated { Resolution::Delegated(node) } else { Resolution::Exact(node) };
        }
        if is_wildcard(key)
            && let Some(node) = parent(key).and_then(|base| self.wildcards.get(base))
        {
            return if node.delegated { Resolution::Delegated(node) } else { Resolution::Exact(node) };
        }
        for ancestor in self_and_ancestors(key).skip(1) {
            let exact = self.exact.get(ancestor);
            if let Some(node) = exact.filter(|n| n.delegated) {
                return Resolution::Delegated(node);
            }
            if let Some(node) = self.wildcards.get(ancestor) {
                return if node.delegated { Resolution::Delegated(node) } else { Resolution::Wildcard(node) };
            }
            if let Some(node) = exact {
                // The source of synthesis `*.<encloser>` may exist only as an empty
                // non-terminal (it has names below it, `*.*.w`): it matches, with no data
                // (RFC 4592 §4.2), as BIND answers.
                return match self.empty_wildcard(ancestor) {
                    Some(empty) => Resolution::Wildcard(empty),
                    None => Resolution::Below(node),
                };
            }
            if is_wildcard(ancestor)
                && let Some(node) = parent(ancestor).and_then(|base| self.wildcards.get(base))
            {
                return Resolution::Below(node);
            }
        }
        Resolution::NotOwned
    }

    /// The empty non-terminal `*.<encloser>` (`encloser` a lowercase key), if the table has
    /// one: a wildcard owner that holds no records but has names below it.
    fn empty_wildcard(&self, encloser: &[u8]) -> Option<&Node> {
        let mut key = [0u8; 2 + 255];
        let wildcard = key.get_mut(..2 + encloser.len())?;
        wildcard[..2].copy_from_slice(b"\x01*");
        wildcard[2..].copy_from_slice(encloser);
        self.exact.get(wildcard)
    }

    /// Whether `other` answers every question as this table does: the same names, record
    /// sets (data, TTLs, weights and set identifiers), SOAs (serial aside) and zone cuts.
    /// Provenance is left out: it changes with every fetch.
    pub fn answers_like(&self, other: &Snapshot) -> bool {
        let same = |a: &KeyedTable<Node>, b: &KeyedTable<Node>| {
            a.len() == b.len() && a.iter().all(|node| b.get(a.key_of(node)).is_some_and(|o| node.answers_like(o)))
        };
        same(&self.exact, &other.exact) && same(&self.wildcards, &other.wildcards)
    }

    /// The names whose answers differ between `old` and this table, each as (its node in
    /// `old`, its node here); a name only one of them owns has `None` on the other side.
    pub fn changed_since<'a>(&'a self, old: &'a Snapshot) -> Vec<(Option<&'a Node>, Option<&'a Node>)> {
        let mut changed = Vec::new();
        for (mine, theirs) in [(&self.exact, &old.exact), (&self.wildcards, &old.wildcards)] {
            for node in mine.iter() {
                match theirs.get(mine.key_of(node)) {
                    Some(before) if before.answers_like(node) => {}
                    before => changed.push((before, Some(node))),
                }
            }
            changed.extend(theirs.iter().filter(|before| !mine.contains_key(theirs.key_of(before))).map(|before| (Some(before), None)));
        }
        changed
    }

    /// Who else claimed the name with key `key` and lost to its owner.
    pub fn outvoted(&self, key: &[u8]) -> &[Provenance] {
        self.outvoted.get(key).map_or(&[], Vec::as_slice)
    }

    /// Records served per kind of source.
    pub fn records_by_kind(&self) -> [(SourceKind, usize); 4] {
        [SourceKind::Config, SourceKind::Route53, SourceKind::EndpointDns, SourceKind::EndpointTag]
            .map(|kind| (kind, self.by_kind[kind as usize]))
    }

    /// Every owned node, exact names first, each kind in the order the build added them.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.exact.iter().chain(self.wildcards.iter())
    }

    /// How many names (wildcards included) are owned.
    pub fn name_count(&self) -> usize {
        self.exact.len() + self.wildcards.len()
    }

    /// How many records are owned.
    pub fn record_count(&self) -> usize {
        self.nodes().flat_map(|n| n.rrsets.iter()).map(RecordSet::len).sum()
    }

    /// The serial in this table's SOAs.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// How many records and aliases the build left out because a source of higher precedence
    /// owns their name (each is also in the build's [`Dropped`] list, to be logged).
    pub fn conflicts(&self) -> usize {
        self.conflicts
    }

    /// How many records and aliases the build refused: names no one may own (the root, a
    /// public suffix) and CNAMEs beside other data.
    pub fn refused(&self) -> usize {
        self.refused
    }

    /// Counts `more` conflicts found before the build (whole zones that lost to an earlier
    /// source's zone of the same name).
    pub fn note_conflicts(&mut self, more: usize) {
        self.conflicts += more;
    }

    /// Gives every spread set its name's affinity (`[az]`; sets whose name's is off drop
    /// their spread, and answer as listed) and installs where clients are.
    pub fn apply_affinity(&mut self, rules: &AffinityRules, locator: Locator) {
        // One copy of each AZ ID for the whole table (records restored from the state file
        // carry one each).
        let mut ids: HashSet<Arc<str>> = HashSet::new();
        for node in self.exact.iter_mut().chain(self.wildcards.iter_mut()) {
            if node.rrsets.iter().all(|set| set.spread().is_none()) {
                continue;
            }
            let affinity = rules.for_name(&node.name());
            for set in node.rrsets.iter_mut().filter_map(|set| set.extra.as_deref_mut()) {
                if affinity == Affinity::Off {
                    set.spread = None;
                } else if let Some(spread) = &mut set.spread {
                    spread.affinity = affinity;
                    for zone in spread.zones.iter_mut().flatten() {
                        match ids.get(zone) {
                            Some(shared) => *zone = shared.clone(),
                            None => {
                                ids.insert(zone.clone());
                            }
                        }
                    }
                }
            }
        }
        self.locator = locator;
        self.affinity = rules.clone();
    }

    /// The affinity rules the table was built with.
    pub fn affinity_rules(&self) -> &AffinityRules {
        &self.affinity
    }

    /// Where clients are, by AZ.
    pub fn locator(&self) -> &Locator {
        &self.locator
    }

    /// Marks `zones` as configured but not loaded: their names not otherwise owned answer
    /// SERVFAIL.
    pub fn mark_unloaded(&mut self, zones: Vec<Unloaded>) {
        self.unloaded = zones;
    }

    /// The zone not loaded that is the closest zone of the name with lowercase wire key
    /// `key`, which `locate` found at `resolution`: the closest such zone holding it, unless
    /// a zone that did load lies between (its names are its own).
    #[inline]
    pub fn unloaded_zone(&self, key: &[u8], resolution: Resolution<'_>) -> Option<&Unloaded> {
        // Every query asks: with no zone down (the usual case) the answer is one comparison.
        if self.unloaded.is_empty() {
            return None;
        }
        self.unloaded_zone_of(key, resolution)
    }

    /// [`Snapshot::unloaded_zone`] when some zone is down.
    fn unloaded_zone_of(&self, key: &[u8], resolution: Resolution<'_>) -> Option<&Unloaded> {
        let zone = self_and_ancestors(key).find_map(|ancestor| self.unloaded.iter().find(|u| *u.key == *ancestor && u.holds(key)))?;
        let node = match resolution {
            Resolution::Exact(node) | Resolution::Wildcard(node) | Resolution::Below(node) | Resolution::Delegated(node) => node,
            Resolution::NotOwned => return Some(zone),
        };
        let loaded_inside = node.in_zone() && {
            let apex = name_key(&node.soa().name);
            apex.len() > zone.key.len() && zone.holds(&apex)
        };
        (!loaded_inside).then_some(zone)
    }

    /// Records that `loser` claimed `name` and lost before the table was built (a zone or a
    /// custom domain name an earlier source serves), for `explain`.
    pub fn note_outvoted(&mut self, name: &Name, loser: Provenance) {
        self.outvoted.entry(crate::name_key::name_key(name)).or_default().push(loser);
    }
}

impl Node {
    /// The node of `name`, whose key is `key`, holding `records`.
    fn new<'r>(key: Box<[u8]>, name: &Name, records: impl Iterator<Item = &'r Record>, own: &Arc<Authority>) -> Self {
        // By type, then weighted set: each (type, set) pair is one RRset.
        let mut records: SmallVec<[&Record; 2]> = records.collect();
        records.sort_by(|a, b| {
            let set = |r: &Record| r.weight.as_ref().map(|w| w.set.clone());
            u16::from(a.data.record_type()).cmp(&u16::from(b.data.record_type())).then_with(|| set(a).cmp(&set(b)))
        });
        let located = records.iter().any(|r| r.az.is_some());
        let mut rrsets: SmallVec<[RecordSet; 1]> = SmallVec::new();
        let mut records = records.into_iter().peekable();
        while let Some(first) = records.next() {
            let rtype = first.data.record_type();
            let first_set = first.weight.as_ref().map(|w| w.set.clone());
            let same_set = |r: &Record| r.data.record_type() == rtype && r.weight.as_ref().map(|w| &w.set) == first_set.as_ref();
            let mut members: SmallVec<[&Record; 2]> = SmallVec::new();
            members.push(first);
            while let Some(next) = records.next_if(|r| same_set(r)) {
                members.push(next);
            }
            // One TTL per RRset (RFC 2181 §5.2): the smallest, so no record outlives its source.
            let ttl = members.iter().map(|r| r.ttl).min().unwrap_or(0);
            let data: Vec<RData> = members.iter().map(|r| r.data.clone()).collect();
            let weight = members[0].weight.clone();
            let zones: Vec<Option<Arc<str>>> = if located { members.iter().map(|r| r.az.clone()).collect() } else { Vec::new() };
            let provenance: SmallVec<[Provenance; 1]> = members.iter().map(|r| r.provenance.clone()).collect();
            let mut set = RecordSet::new(rtype, ttl, &data, provenance, weight);
            // Only address sets are reordered by AZ: their records encode to equal-sized
            // chunks ([`Prepared::write_in`]).
            if located
                && matches!(rtype, RecordType::A | RecordType::AAAA)
                && let Some(spread) = Spread::of(zones.into())
            {
                set.extra.get_or_insert_default().spread = Some(spread);
            }
            rrsets.push(set);
        }
        rrsets.shrink_to_fit();
        Self::with_sets(key, name, rrsets, own.clone())
    }

    /// A node of `name` (key `key`) with `rrsets`, outside any zone so far.
    fn with_sets(key: Box<[u8]>, name: &Name, rrsets: SmallVec<[RecordSet; 1]>, own: Arc<Authority>) -> Self {
        // The key is lowercase; the name as spelled follows it only when that differs.
        // A wire-format name is at most 255 bytes (RFC 1035 §3.1).
        let key_len = u8::try_from(key.len()).unwrap_or(u8::MAX);
        let spelled = name.iter().any(|label| label.iter().any(u8::is_ascii_uppercase));
        // The key itself when the name has no capitals: no second allocation beside it, which
        // would leave the allocator's pages of small blocks half empty.
        let wire = if !spelled {
            key
        } else {
            let mut wire = Vec::with_capacity(2 * key.len());
            wire.extend_from_slice(&key);
            crate::name_key::write_spelled(name, &mut wire);
            wire.into_boxed_slice()
        };
        Self { wire, key_len, in_zone: false, delegated: false, rrsets, authority: own, made: OnceBox::new() }
    }

    /// An empty non-terminal of a zone, whose key is `key`: no records of its own.
    fn empty(key: Box<[u8]>, zone: Arc<Authority>, own: Arc<Authority>) -> Self {
        let mut node = Self::with_sets(key, &Name::root(), SmallVec::new(), own);
        node.join_zone(&zone, false);
        node
    }

    /// Puts this node in the zone whose SOA is `soa`.
    fn join_zone(&mut self, zone: &Arc<Authority>, delegated: bool) {
        self.authority = zone.clone();
        self.in_zone = true;
        self.delegated = delegated;
        self.made = OnceBox::new();
    }

    /// Its own SOA (outside a loaded zone) and NODATA answer, made on first use.
    fn made(&self) -> &MadeNode {
        self.made.get_or_init(|| {
            let name = self.name();
            let soa = match &*self.authority {
                Authority::Zone(_) => None,
                Authority::Own(own) => Some(own),
            }
            .map(|own| {
                // A wildcard's negative answers speak for the name it covers.
                let apex = if name.is_wildcard() { name.base_name() } else { name.clone() };
                let data = SOA::new(own.mname.clone(), own.rname.clone(), own.serial, 7200, 900, 1_209_600, own.negative_ttl);
                WireRecord::from_rdata(apex, own.negative_ttl, RData::SOA(data))
            });
            let zone_soa = match &*self.authority {
                Authority::Zone(soa) => Some(soa),
                Authority::Own(_) => None,
            };
            let nodata = match (name.is_wildcard(), zone_soa.or(soa.as_ref())) {
                (false, Some(authority)) => prepare(&name, RecordType::A, ResponseCode::NoError, &[], std::slice::from_ref(authority)),
                _ => None,
            };
            Box::new(MadeNode { soa, nodata })
        })
    }

    /// The RRset answering `qtype` here, if any: for ANY the first set (RFC 8482 §4.1: one
    /// RRset rather than all); else a CNAME (which answers every type, RFC 1034 §3.6.2) or
    /// the set of that type. Of weighted alternatives one is drawn by weight — uniformly if
    /// every weight is 0, as Route 53 does — per call, that is, per query.
    pub fn answering(&self, qtype: RecordType, draw: crate::answer::Draw) -> Option<&RecordSet> {
        if qtype == RecordType::ANY {
            return self.rrsets.first();
        }
        // RRSIG and NSEC may stand beside a CNAME (RFC 2181 §10.1, RFC 4035 §2.5): asked for,
        // they are not answered by it.
        let cname_answers = !matches!(qtype, RecordType::RRSIG | RecordType::NSEC);
        let mut matching = self.rrsets.iter().filter(|s| s.rtype == qtype || (cname_answers && s.rtype == RecordType::CNAME));
        let first = matching.next()?;
        // AZ-affinity alternatives are chosen by the client's place, not drawn ([`Node::located`]).
        if first.weight().is_none_or(|w| w.location.is_some()) || draw == crate::answer::Draw::First {
            return Some(first);
        }
        let candidates = || self.rrsets.iter().filter(|s| s.rtype == first.rtype);
        let total: u64 = candidates().map(|s| u64::from(s.weight().map_or(0, |w| w.weight))).sum();
        if total == 0 {
            return candidates().nth(fastrand::usize(..candidates().count()));
        }
        let mut ticket = fastrand::u64(..total);
        candidates().find(|s| {
            let weight = u64::from(s.weight().map_or(0, |w| w.weight));
            if ticket < weight {
                return true;
            }
            ticket -= weight;
            false
        })
    }

    /// Of the AZ-affinity alternatives of `rtype` here, the one a client at `place` gets: the
    /// first whose location it matches, from the AZ out to Global (Route 53 developer guide,
    /// "AZ-affinity routing"); a client whose AZ is not known matches Global alone. `None`
    /// when none matches (NODATA).
    pub fn located(&self, rtype: RecordType, place: Option<&Place<'_>>) -> Option<(&RecordSet, LocationType)> {
        self.rrsets
            .iter()
            .filter(|s| s.rtype == rtype)
            .filter_map(|s| Some((s, s.weight()?.location.as_ref()?)))
            .filter(|(_, location)| location.matches(place))
            .min_by_key(|(_, location)| location.kind)
            .map(|(set, location)| (set, location.kind))
    }

    /// Whether `other` answers as this node does (see [`Snapshot::answers_like`]).
    fn answers_like(&self, other: &Node) -> bool {
        let soa_like = |a: &WireRecord, b: &WireRecord| match (&a.data, &b.data) {
            (RData::SOA(x), RData::SOA(y)) => {
                // The serial changes with every build; everything else is an answer setting.
                a.name == b.name
                    && a.ttl == b.ttl
                    && (&x.mname, &x.rname, x.refresh, x.retry, x.expire, x.minimum)
                        == (&y.mname, &y.rname, y.refresh, y.retry, y.expire, y.minimum)
            }
            _ => a == b,
        };
        let set_like = |a: &RecordSet, b: &RecordSet| match a.rtype {
            // The serial changes with every build.
            RecordType::SOA => {
                b.rtype == RecordType::SOA
                    && a.len() == b.len()
                    && a.records(self).iter().zip(b.records(other)).all(|(x, y)| soa_like(x, y))
            }
            _ => a.same_data(b),
        };
        self.wire == other.wire
            && self.in_zone == other.in_zone
            && self.delegated == other.delegated
            && match (&*self.authority, &*other.authority) {
                (Authority::Zone(a), Authority::Zone(b)) => soa_like(a, b),
                // Their own SOAs, made from the table's settings: compared without making them
                // (the serial changes with every build).
                (Authority::Own(a), Authority::Own(b)) => (&a.mname, &a.rname, a.negative_ttl) == (&b.mname, &b.rname, b.negative_ttl),
                _ => false,
            }
            && self.rrsets.len() == other.rrsets.len()
            && self.rrsets.iter().zip(&other.rrsets).all(|(a, b)| set_like(a, b))
    }

    /// The owner name as the source wrote it (made from its wire form: names are kept once,
    /// compactly, and made into hickory names only where an answer or a view needs one).
    pub fn name(&self) -> Name {
        let key_len = usize::from(self.key_len);
        let spelled = if self.wire.len() > key_len { &self.wire[key_len..] } else { &self.wire[..key_len] };
        crate::name_key::name_from_wire(spelled)
    }

    /// The lowercase wire-format lookup key of its name ([`crate::name_key`]).
    pub fn key(&self) -> &[u8] {
        Keyed::key(self)
    }

    /// The record sets, ordered by type.
    pub fn rrsets(&self) -> &[RecordSet] {
        &self.rrsets
    }

    /// The SOA its negative answers carry.
    pub fn soa(&self) -> &WireRecord {
        match &*self.authority {
            Authority::Zone(soa) => soa,
            // Made whenever there is no zone SOA.
            Authority::Own(_) => self.made().soa.as_ref().unwrap_or_else(|| unreachable!("a node outside a zone makes its own SOA")),
        }
    }

    /// Whether this is the apex of a zone hubdns serves: a loaded zone's (it holds the SOA),
    /// or an owned name outside any loaded zone, which is the apex of its own little zone.
    pub fn is_apex(&self) -> bool {
        (!self.in_zone && !is_wildcard(self.key())) || self.rrsets.iter().any(|s| s.rtype == RecordType::SOA)
    }

    /// Whether this is a zone cut: NS records below a loaded zone's apex.
    pub fn is_cut(&self) -> bool {
        self.delegated && self.rrsets.iter().any(|s| s.rtype == RecordType::NS)
    }

    /// Whether this node's name has the lookup key `key`.
    pub fn key_is(&self, key: &[u8]) -> bool {
        self.key() == key
    }

    /// The NODATA answer at this name, pre-encoded (made when first asked for).
    pub fn nodata(&self) -> Option<&Prepared> {
        self.made().nodata.as_ref()
    }

    /// Whether it lies in a loaded zone (Route 53).
    pub fn in_zone(&self) -> bool {
        self.in_zone
    }
}

/// The keys of the names that still have aliases pending.
fn waiting_keys(groups: &Groups) -> FastSet {
    groups.iter().filter(|g| !g.pending.is_empty()).map(|g| g.key.clone()).collect()
}

impl Keyed for Group {
    fn key(&self) -> &[u8] {
        &self.key
    }
}

/// Whether records of `rtype` carry no domain names in their data, so that a wildcard's
/// answer encoded once for its `*` owner stays valid for every name it covers. Listed by what
/// is safe: a type added later takes the full path until it is named here.
fn encodes_without_names(rtype: RecordType) -> bool {
    matches!(rtype, RecordType::A | RecordType::AAAA | RecordType::TXT | RecordType::CAA)
}

/// Pre-encodes an owned answer; one that cannot be encoded (too large) takes the full path.
fn prepare(name: &Name, qtype: RecordType, rcode: ResponseCode, answers: &[WireRecord], authorities: &[WireRecord]) -> Option<Prepared> {
    match Prepared::build(name, qtype, rcode, true, answers, authorities) {
        Ok(prepared) => Some(prepared),
        Err(error) => {
            tracing::debug!(%name, %qtype, %error, "answer not pre-encoded; it takes the full path");
            None
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Config => "config",
            Self::Route53 => "route53",
            Self::EndpointDns => "endpoint-dns",
            Self::EndpointTag => "endpoint-tag",
        })
    }
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Conflict { name, kept, dropped } => write!(
                f,
                "{name}: kept {} ({}), dropped {} ({})",
                kept.source,
                kept.where_from(),
                dropped.source,
                dropped.where_from()
            ),
            Self::UnresolvedAlias { alias, reason } => write!(
                f,
                "alias {} -> {} ({}): {reason}",
                alias.name,
                alias.target,
                alias.provenance.where_from()
            ),
            Self::Refused { name, provenance, reason } => {
                write!(f, "{name} from {} ({}) refused: {reason}", provenance.source, provenance.where_from())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use hickory_proto::rr::rdata;

    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn prov(source: SourceKind, origin: &str) -> Provenance {
        Provenance::new(source, origin)
    }

    fn rec(owner: &str, data: RData, source: SourceKind) -> Record {
        Record { name: name(owner), ttl: 60, data, provenance: prov(source, owner), weight: None, az: None }
    }

    fn a(owner: &str, ip: [u8; 4]) -> Record {
        rec(owner, RData::A(rdata::A(Ipv4Addr::from(ip))), SourceKind::Config)
    }

    fn alias(owner: &str, target: &str) -> Alias {
        Alias { name: name(owner), target: name(target), ttl: Some(30), provenance: prov(SourceKind::Config, owner), rtype: None, weight: None }
    }

    fn soa() -> SoaSettings {
        SoaSettings { mname: name("hubdns.invalid."), rname: name("hostmaster.hubdns.invalid."), negative_ttl: 60 }
    }

    fn build(records: Vec<Record>, aliases: Vec<Alias>) -> (Snapshot, Vec<Dropped>) {
        Snapshot::build(records, aliases, &soa(), 7)
    }

    /// Past `PARALLEL_FROM` names the nodes are made on two threads (and the scratch freed on
    /// a third): every name is there once, with its own records, spelling and provenance.
    #[test]
    fn a_table_large_enough_to_be_made_on_two_threads_holds_every_name() {
        let count = PARALLEL_FROM + FREE_LATER_FROM;
        let mut records: Vec<Record> = (0..count).map(|i| a(&format!("R{i}.corp.example."), [10, 2, (i / 256 % 256) as u8, (i % 256) as u8])).collect();
        records.push(a("r7.corp.example.", [10, 9, 9, 9]));
        let (snapshot, dropped) = build(records, vec![]);
        assert!(dropped.is_empty(), "{dropped:?}");
        assert_eq!(snapshot.name_count(), count);
        for i in [0, 7, PARALLEL_FROM / 2, PARALLEL_FROM, count - 1] {
            let node = snapshot.exact.get(&name_key(&name(&format!("r{i}.corp.example.")))).expect("every name");
            assert_eq!(node.name().to_ascii(), format!("R{i}.corp.example."), "spelled as first claimed");
            let set = &node.rrsets()[0];
            let mut data: Vec<String> = set.data().map(|d| d.to_string()).collect();
            data.sort();
            let mut want = vec![format!("10.2.{}.{}", i / 256 % 256, i % 256)];
            if i == 7 {
                want.push("10.9.9.9".into());
            }
            assert_eq!(data, want, "r{i}");
            assert!(set.provenance().iter().all(|p| p.origin.text().starts_with('R') || p.origin.text().starts_with('r')));
        }
    }

    /// What a lookup returned, reduced to something comparable.
    #[derive(Debug, PartialEq)]
    enum Got {
        Found(RecordType, usize, bool),
        NoData(String),
        NxDomain(String),
        NotOwned,
        Loop,
        Unloaded(String),
    }

    /// The answer engine's records for `qname`/`qtype` (the last hop's), or its outcome.
    fn found<'s>(snapshot: &'s Snapshot, key: &'s [u8], qtype: RecordType) -> (crate::answer::Plan<'s>, Option<crate::answer::Hop<'s>>) {
        use crate::answer::{Draw, Outcome, Question, plan};
        let plan = plan(snapshot, Question { key, qtype, recursion_desired: true, client: None }, Draw::Random);
        let hop = match plan.outcome {
            Outcome::Answer | Outcome::TooLong => plan.hops().last().copied(),
            _ => None,
        };
        (plan, hop)
    }

    fn got(snapshot: &Snapshot, qname: &str, qtype: RecordType) -> Got {
        use crate::answer::Outcome;
        let key = name_key(&name(qname));
        let (plan, hop) = found(snapshot, &key, qtype);
        if let Some(hop) = hop {
            return Got::Found(hop.records[0].record_type(), hop.records.len(), hop.wildcard);
        }
        match plan.outcome {
            Outcome::NoData { soa, .. } => Got::NoData(soa.name.to_string()),
            Outcome::NxDomain { soa, .. } => Got::NxDomain(soa.name.to_string()),
            Outcome::Forward { .. } => Got::NotOwned,
            Outcome::Loop => Got::Loop,
            Outcome::Unloaded(zone) => Got::Unloaded(zone.zone.to_string()),
            other => panic!("{qname} {qtype}: {other:?}"),
        }
    }

    /// The records answering `qname`/`qtype`; panics if there are none.
    fn records<'s>(snapshot: &'s Snapshot, key: &'s [u8], qtype: RecordType) -> &'s [WireRecord] {
        found(snapshot, key, qtype).1.expect("an answer").records
    }

    #[test]
    fn lookup_rules() {
        let aaaa = |owner: &str| rec(owner, RData::AAAA(rdata::AAAA(Ipv6Addr::LOCALHOST)), SourceKind::Config);
        let (snapshot, dropped) = build(
            vec![
                a("secretsmanager.us-east-1.amazonaws.com.", [10, 0, 1, 1]),
                a("secretsmanager.us-east-1.amazonaws.com.", [10, 0, 2, 1]),
                a("s3.us-east-1.amazonaws.com.", [10, 0, 1, 9]),
                a("*.s3.us-east-1.amazonaws.com.", [10, 0, 1, 9]),
                aaaa("*.s3.us-east-1.amazonaws.com."),
                a("exact.s3.us-east-1.amazonaws.com.", [10, 0, 3, 3]),
                rec("www.corp.example.", RData::CNAME(rdata::CNAME(name("web.corp.example."))), SourceKind::Config),
                rec("txt.corp.example.", RData::TXT(rdata::TXT::new(vec!["a".into()])), SourceKind::Config),
                a("txt.corp.example.", [10, 9, 9, 9]),
            ],
            vec![],
        );
        assert!(dropped.is_empty(), "{dropped:?}");
        use Got::*;
        use RecordType::*;
        let sm = "secretsmanager.us-east-1.amazonaws.com.";
        let s3 = "s3.us-east-1.amazonaws.com.";
        let table: &[(&str, RecordType, Got)] = &[
            // exact names, any case
            (sm, A, Found(A, 2, false)),
            ("SecretsManager.US-EAST-1.amazonaws.com.", A, Found(A, 2, false)),
            // owned name, other type: NODATA with its own SOA
            (sm, AAAA, NoData(sm.into())),
            (sm, MX, NoData(sm.into())),
            (sm, SOA, Found(SOA, 1, false)),
            // below an owned name: NXDOMAIN with the owned name's SOA
            ("x.secretsmanager.us-east-1.amazonaws.com.", A, NxDomain(sm.into())),
            ("a.b.secretsmanager.us-east-1.amazonaws.com.", AAAA, NxDomain(sm.into())),
            // parents and siblings are not ours
            ("us-east-1.amazonaws.com.", A, NotOwned),
            ("kms.us-east-1.amazonaws.com.", A, NotOwned),
            ("amazonaws.com.", A, NotOwned),
            (".", NS, NotOwned),
            // wildcards cover every depth below their base; the base itself is separate
            (s3, A, Found(A, 1, false)),
            ("bucket.s3.us-east-1.amazonaws.com.", A, Found(A, 1, true)),
            ("a.b.c.s3.us-east-1.amazonaws.com.", AAAA, Found(AAAA, 1, true)),
            ("bucket.s3.us-east-1.amazonaws.com.", TXT, NoData(s3.into())),
            // an exact name under a wildcard wins, and is the closest encloser below it
            ("exact.s3.us-east-1.amazonaws.com.", A, Found(A, 1, false)),
            ("exact.s3.us-east-1.amazonaws.com.", AAAA, NoData("exact.s3.us-east-1.amazonaws.com.".into())),
            ("x.exact.s3.us-east-1.amazonaws.com.", A, NxDomain("exact.s3.us-east-1.amazonaws.com.".into())),
            // CNAME answers any type, followed upstream when its target is not ours; ANY gets
            // one RRset (RFC 8482)
            ("www.corp.example.", A, NotOwned),
            ("www.corp.example.", CNAME, Found(CNAME, 1, false)),
            ("txt.corp.example.", ANY, Found(A, 1, false)),
            ("txt.corp.example.", TXT, Found(TXT, 1, false)),
        ];
        for (qname, qtype, want) in table {
            assert_eq!(&got(&snapshot, qname, *qtype), want, "{qname} {qtype}");
        }
        assert_eq!(snapshot.name_count(), 6);
        assert_eq!(snapshot.record_count(), 9);
    }

    /// A zone whose file did not load answers SERVFAIL at and below its apex, as BIND 9 does
    /// for a zone "not loaded due to errors" (RD=1 or not): never forwarded as if no one owned
    /// it, nor answered by a wildcard above it or by NXDOMAIN below an owned name in it. Data
    /// another source serves there is still answered (but no negative answer, for the zone's
    /// own data there is unknown), and a nested zone that did load is its own. DS at its apex
    /// is the parent's (forwarded, as BIND does); DS at a zone inside it is its own (SERVFAIL).
    #[test]
    fn a_zone_not_loaded_is_servfail_below_its_apex_and_only_there() {
        let (mut snapshot, _) = build(
            vec![
                a("from-route53.bad.example.", [10, 0, 0, 1]),
                rec("inner.bad.example.", RData::SOA(rdata::SOA::new(name("ns.inner.bad.example."), name("h.inner.bad.example."), 1, 2, 3, 4, 5)), SourceKind::Config),
                a("www.inner.bad.example.", [10, 0, 0, 2]),
                rec("to-bad.example.", RData::CNAME(rdata::CNAME(name("www.bad.example."))), SourceKind::Config),
                rec("bad.example.", RData::TXT(rdata::TXT::new(vec!["v=apex".into()])), SourceKind::Config),
                a("*.example.", [10, 9, 9, 9]),
            ],
            vec![],
        );
        snapshot.mark_unloaded(vec![super::Unloaded::new(&name("bad.example."), "z:3: extra input text")]);
        use Got::*;
        use RecordType::*;
        let bad = || Unloaded("bad.example.".into());
        for (qname, qtype, want) in [
            ("bad.example.", SOA, bad()),
            ("bad.example.", A, bad()),
            ("bad.example.", TXT, Found(TXT, 1, false)),
            ("www.bad.example.", A, bad()),
            ("a.b.BAD.example.", TXT, bad()),
            ("from-route53.bad.example.", A, Found(A, 1, false)),
            ("from-route53.bad.example.", AAAA, bad()),
            ("x.from-route53.bad.example.", A, bad()),
            ("www.inner.bad.example.", A, Found(A, 1, false)),
            ("gone.inner.bad.example.", A, NxDomain("inner.bad.example.".into())),
            ("inner.bad.example.", NS, NoData("inner.bad.example.".into())),
            ("notbad.example.", A, Found(A, 1, true)),
            ("example.", A, NotOwned),
            ("bad.example.", DS, NotOwned),
            ("inner.bad.example.", DS, bad()),
        ] {
            assert_eq!(got(&snapshot, qname, qtype), want, "{qname} {qtype}");
        }
        let key = name_key(&name("www.bad.example."));
        let norec = crate::answer::plan(&snapshot, crate::answer::Question { key: &key, qtype: A, recursion_desired: false, client: None }, crate::answer::Draw::First);
        assert_eq!(norec.rcode(), hickory_proto::op::ResponseCode::ServFail, "RD=0 as well");
        // An owned CNAME into it: SERVFAIL with an empty answer and no AA, as BIND answers
        // (the chain stays in the plan, for explain).
        let key = name_key(&name("to-bad.example."));
        let chained = crate::answer::plan(&snapshot, crate::answer::Question { key: &key, qtype: A, recursion_desired: true, client: None }, crate::answer::Draw::First);
        assert_eq!((chained.rcode(), chained.hops().count()), (hickory_proto::op::ResponseCode::ServFail, 1));
        assert!(chained.answers(&name("to-bad.example.")).is_empty() && !chained.authoritative());
    }

    #[test]
    fn soa_carries_serial_and_negative_ttl() {
        let (snapshot, _) = build(vec![a("x.example.", [10, 0, 0, 1])], vec![]);
        let key = name_key(&name("x.example."));
        let (plan, _) = found(&snapshot, &key, RecordType::TXT);
        let crate::answer::Outcome::NoData { soa, .. } = plan.outcome else { panic!("NODATA expected") };
        assert_eq!(soa.ttl, 60);
        let RData::SOA(soa) = &soa.data else { panic!("SOA expected") };
        assert_eq!(soa.serial, 7);
        assert_eq!(soa.minimum, 60);
        assert_eq!(soa.mname.to_string(), "hubdns.invalid.");
    }

    #[test]
    fn precedence_drops_and_reports_the_loser() {
        let endpoint = rec("api.example.", RData::A(rdata::A(Ipv4Addr::new(10, 0, 0, 2))), SourceKind::EndpointDns);
        let r53 = rec("api.example.", RData::A(rdata::A(Ipv4Addr::new(10, 0, 0, 3))), SourceKind::Route53);
        let config = a("api.example.", [10, 0, 0, 1]);
        // Whatever order they arrive in, config wins and both losers are reported.
        for given in [vec![endpoint.clone(), r53.clone(), config.clone()], vec![config.clone(), r53.clone(), endpoint.clone()]] {
            let (snapshot, dropped) = build(given, vec![]);
            let key = name_key(&name("api.example."));
            let records = records(&snapshot, &key, RecordType::A);
            assert_eq!(records.len(), 1);
            assert_eq!(records[0].data, config.data);
            let losers: Vec<SourceKind> = dropped
                .iter()
                .map(|d| match d {
                    Dropped::Conflict { dropped, kept, .. } => {
                        assert_eq!(kept.source, SourceKind::Config);
                        dropped.source
                    }
                    other => panic!("unexpected {other:?}"),
                })
                .collect();
            assert_eq!(losers.len(), 2, "{dropped:?}");
            assert_eq!(snapshot.conflicts(), 2, "counted");
            assert!(losers.contains(&SourceKind::Route53) && losers.contains(&SourceKind::EndpointDns));
        }
    }

    #[test]
    fn same_source_merges_and_dedupes_and_ttls_agree() {
        let mut low = a("m.example.", [10, 0, 0, 2]);
        low.ttl = 10;
        let (snapshot, dropped) = build(vec![a("m.example.", [10, 0, 0, 1]), low, a("m.example.", [10, 0, 0, 1])], vec![]);
        assert!(dropped.is_empty());
        let key = name_key(&name("m.example."));
        let records = records(&snapshot, &key, RecordType::A);
        assert_eq!(records.len(), 2, "identical data kept once");
        assert!(records.iter().all(|r| r.ttl == 10), "one TTL per RRset, the smallest");
    }

    #[test]
    fn aliases_flatten_to_addresses() {
        let (snapshot, dropped) = build(
            vec![
                a("vpce-1.svc.vpce.amazonaws.com.", [10, 0, 1, 1]),
                rec("vpce-1.svc.vpce.amazonaws.com.", RData::AAAA(rdata::AAAA(Ipv6Addr::LOCALHOST)), SourceKind::Config),
                a("*.s3.example.", [10, 0, 9, 9]),
                rec("txt.example.", RData::TXT(rdata::TXT::new(vec!["t".into()])), SourceKind::Config),
            ],
            vec![
                alias("api.service.com.", "vpce-1.svc.vpce.amazonaws.com."),
                // chains resolve whatever the order
                alias("c.example.", "b.example."),
                alias("b.example.", "api.service.com."),
                alias("bucket.example.", "my-bucket.s3.example."),
                alias("loop1.example.", "loop2.example."),
                alias("loop2.example.", "loop1.example."),
                alias("nowhere.example.", "missing.example."),
                alias("notext.example.", "txt.example."),
            ],
        );
        for (qname, count) in [("api.service.com.", 1), ("c.example.", 1), ("bucket.example.", 1)] {
            let key = name_key(&name(qname));
            let records = records(&snapshot, &key, RecordType::A);
            assert_eq!(records.len(), count, "{qname}");
            assert_eq!(records[0].name, name(qname), "flattened under the alias name");
            assert_eq!(records[0].ttl, 30);
        }
        assert_eq!(got(&snapshot, "c.example.", RecordType::AAAA), Got::Found(RecordType::AAAA, 1, false));
        let unresolved: Vec<(String, &str)> = dropped
            .iter()
            .map(|d| match d {
                Dropped::UnresolvedAlias { alias, reason } => (alias.name.to_string(), *reason),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(unresolved.len(), 4, "{unresolved:?}");
        assert!(unresolved.contains(&("nowhere.example.".into(), "target is not an owned name")));
        assert!(unresolved.contains(&("notext.example.".into(), "target has no A or AAAA records")));
        assert!(unresolved.iter().any(|(n, _)| n == "loop1.example."));
        assert_eq!(got(&snapshot, "loop1.example.", RecordType::A), Got::NotOwned);
    }

    fn r53(owner: &str, data: RData) -> Record {
        rec(owner, data, SourceKind::Route53)
    }

    fn ns(target: &str) -> RData {
        RData::NS(rdata::NS(name(target)))
    }

    #[test]
    fn loaded_zones_answer_as_whole_zones() {
        let zone_soa = rdata::SOA::new(name("ns-1.awsdns-1.co.uk."), name("awsdns-hostmaster.amazon.com."), 1, 7200, 900, 1_209_600, 86_400);
        let (snapshot, dropped) = build(
            vec![
                r53("zone.example.", RData::SOA(zone_soa.clone())),
                r53("zone.example.", ns("ns-1.awsdns-1.co.uk.")),
                r53("www.zone.example.", RData::A(rdata::A(Ipv4Addr::new(10, 1, 0, 1)))),
                r53("a.b.zone.example.", RData::A(rdata::A(Ipv4Addr::new(10, 1, 0, 2)))),
                r53("*.w.zone.example.", RData::A(rdata::A(Ipv4Addr::new(10, 1, 0, 3)))),
                r53("sub.zone.example.", ns("ns.elsewhere.example.")),
                // Outside the zone, the old rule: every name is its own apex.
                a("solo.example.", [10, 9, 9, 9]),
            ],
            vec![],
        );
        assert!(dropped.is_empty(), "{dropped:?}");
        let zone = || "zone.example.".to_owned();
        assert_eq!(got(&snapshot, "zone.example.", RecordType::SOA), Got::Found(RecordType::SOA, 1, false));
        assert_eq!(got(&snapshot, "zone.example.", RecordType::NS), Got::Found(RecordType::NS, 1, false));
        assert_eq!(got(&snapshot, "missing.zone.example.", RecordType::A), Got::NxDomain(zone()), "zone SOA");
        assert_eq!(got(&snapshot, "www.zone.example.", RecordType::TXT), Got::NoData(zone()));
        assert_eq!(got(&snapshot, "www.zone.example.", RecordType::SOA), Got::NoData(zone()), "SOA only at the apex");
        assert_eq!(got(&snapshot, "b.zone.example.", RecordType::A), Got::NoData(zone()), "empty non-terminal");
        assert_eq!(got(&snapshot, "x.b.zone.example.", RecordType::A), Got::NxDomain(zone()));
        assert_eq!(got(&snapshot, "q.w.zone.example.", RecordType::A), Got::Found(RecordType::A, 1, true));
        assert_eq!(got(&snapshot, "w.zone.example.", RecordType::A), Got::NoData(zone()), "a wildcard's parent exists");
        assert_eq!(got(&snapshot, "q.w.zone.example.", RecordType::TXT), Got::NoData(zone()));
        assert_eq!(got(&snapshot, "sub.zone.example.", RecordType::NS), Got::NotOwned, "delegation: forwarded");
        assert_eq!(got(&snapshot, "host.sub.zone.example.", RecordType::A), Got::NotOwned);
        assert_eq!(got(&snapshot, "x.solo.example.", RecordType::A), Got::NxDomain("solo.example.".into()));
        // The NODATA answer inside the zone is pre-encoded with the zone's SOA.
        let key = name_key(&name("www.zone.example."));
        let (plan, _) = found(&snapshot, &key, RecordType::MX);
        let (crate::answer::Outcome::NoData { soa, .. }, Some(prepared)) = (plan.outcome, plan.prepared()) else {
            panic!("prepared NODATA");
        };
        assert_eq!(soa.data, RData::SOA(zone_soa));
        assert_eq!(prepared.authorities, 1);
    }

    #[test]
    fn wildcards_with_names_below_them_match_as_bind_answers() {
        // Checked against BIND 9.18 serving the same names from a zone file.
        let zone_soa = rdata::SOA::new(name("ns.zone.example."), name("hm.zone.example."), 1, 7200, 900, 1_209_600, 300);
        let a = |owner: &str, last: u8| r53(owner, RData::A(rdata::A(Ipv4Addr::new(10, 3, 0, last))));
        let (snapshot, dropped) = build(
            vec![
                r53("zone.example.", RData::SOA(zone_soa)),
                r53("zone.example.", ns("ns.zone.example.")),
                a("*.w.zone.example.", 7),
                a("x.*.w.zone.example.", 8),
                a("*.*.w2.zone.example.", 9),
            ],
            vec![],
        );
        assert!(dropped.is_empty(), "{dropped:?}");
        let zone = || "zone.example.".to_owned();
        // The wildcard owner asked literally has its records, though a name lies below it.
        assert_eq!(got(&snapshot, "*.w.zone.example.", RecordType::A), Got::Found(RecordType::A, 1, false));
        assert_eq!(got(&snapshot, "q.w.zone.example.", RecordType::A), Got::Found(RecordType::A, 1, true));
        assert_eq!(got(&snapshot, "x.*.w.zone.example.", RecordType::A), Got::Found(RecordType::A, 1, false));
        assert_eq!(got(&snapshot, "y.*.w.zone.example.", RecordType::A), Got::NxDomain(zone()), "no `*.*.w`");
        // `*.w2` exists only as an empty non-terminal: it matches, with no data (RFC 4592 §4.2).
        assert_eq!(got(&snapshot, "a.w2.zone.example.", RecordType::A), Got::NoData(zone()));
        assert_eq!(got(&snapshot, "b.a.w2.zone.example.", RecordType::A), Got::NoData(zone()));
        assert_eq!(got(&snapshot, "q.*.w2.zone.example.", RecordType::A), Got::Found(RecordType::A, 1, true));
    }

    #[test]
    fn weighted_alternatives_are_drawn_by_weight() {
        let weighted = |set: &str, weight: u32, ip: [u8; 4]| Record {
            weight: Some(Weight { set: Arc::from(set), weight, location: None }),
            ..r53("w.example.", RData::A(rdata::A(Ipv4Addr::from(ip))))
        };
        let (snapshot, _) = build(
            vec![weighted("blue", 3, [10, 0, 0, 1]), weighted("green", 1, [10, 0, 0, 2]), weighted("off", 0, [10, 0, 0, 3])],
            vec![],
        );
        let key = name_key(&name("w.example."));
        let mut counts = [0usize; 4];
        for _ in 0..4000 {
            let (plan, hop) = found(&snapshot, &key, RecordType::A);
            let records = hop.expect("found").records;
            assert_eq!(records.len(), 1);
            assert!(plan.prepared().is_some(), "each alternative has its own prepared answer");
            let RData::A(a) = &records[0].data else { panic!("A") };
            counts[usize::from(a.0.octets()[3])] += 1;
        }
        assert_eq!(counts[3], 0, "weight 0 is never drawn while others are not 0");
        assert!((2700..3300).contains(&counts[1]) && (700..1300).contains(&counts[2]), "{counts:?}");

        let (all_zero, _) = build(vec![weighted("a", 0, [10, 0, 0, 1]), weighted("b", 0, [10, 0, 0, 2])], vec![]);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            seen.insert(records(&all_zero, &key, RecordType::A)[0].data.clone());
        }
        assert_eq!(seen.len(), 2, "all weights 0: every alternative is drawn");
    }

    #[test]
    fn typed_aliases_flatten_only_their_type() {
        let (snapshot, _) = build(
            vec![a("t.example.", [10, 0, 0, 1]), rec("t.example.", RData::AAAA(rdata::AAAA(Ipv6Addr::LOCALHOST)), SourceKind::Config)],
            vec![Alias { rtype: Some(RecordType::AAAA), ..alias("v6.example.", "t.example.") }],
        );
        assert_eq!(got(&snapshot, "v6.example.", RecordType::AAAA), Got::Found(RecordType::AAAA, 1, false));
        assert_eq!(got(&snapshot, "v6.example.", RecordType::A), Got::NoData("v6.example.".into()));
    }
}
