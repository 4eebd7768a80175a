//! The configuration file: serde structs, their defaults, and `load` = read → parse → validate.
//!
//! Every struct denies unknown keys, so a typo is an error and never a silently ignored
//! setting. Values that TOML alone cannot check (record data, alias targets, duplicate names)
//! are validated after parsing, and every error names the file, the line, the key and what is
//! allowed. `config/hubdns.toml` is the commented reference for every key here; a unit test
//! parses every file in `config/` so the reference cannot drift from the code.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    str::FromStr,
    sync::Arc,
};

use hickory_proto::rr::{Name, RData, RecordType, rdata::TXT};
use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::{
    az::Affinity,
    name_key::name_key,
    snapshot::{absolute_names, ownable},
    zonefile::ZoneFile,
};

/// The whole configuration of one hubdns process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where and to whom hubdns answers.
    #[serde(default)]
    pub server: ServerConfig,
    /// How owned names are answered: TTLs and the SOA used for negative answers.
    #[serde(default)]
    pub answers: AnswerConfig,
    /// Where names hubdns does not own are sent, and how their answers are cached.
    #[serde(default)]
    pub forward: ForwardConfig,
    /// Names that answer with another name's (or a fixed list of) addresses, flattened to A/AAAA.
    #[serde(default)]
    pub aliases: Vec<Spanned<AliasConfig>>,
    /// Static records served as they are written.
    #[serde(default)]
    pub records: Vec<Spanned<RecordConfig>>,
    /// Zone files (RFC 1035 master format), each served as a whole zone.
    #[serde(default)]
    pub zones: Vec<Spanned<ZoneConfig>>,
    /// Where else owned names come from: the AWS APIs.
    #[serde(default)]
    pub sources: SourcesConfig,
    /// How often sources are asked again, and where the last good answers are kept.
    #[serde(default)]
    pub refresh: RefreshConfig,
    /// Change events from an SQS queue, so AWS changes are served within seconds.
    #[serde(default)]
    pub events: Option<EventsConfig>,
    /// The admin HTTP listener (health, readiness); off unless `admin.listen` is set.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Log format and level, and the query log.
    #[serde(default)]
    pub log: LogConfig,
    /// Per-client rate limits over UDP.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// Availability Zone affinity: which AZ each client is in, and how owned answers'
    /// addresses are ordered for it.
    #[serde(default)]
    pub az: AzConfig,
    /// The file this configuration came from, for provenance and messages (`<demo>` for the
    /// built-in demo).
    #[serde(skip)]
    pub origin: String,
    /// Byte offset of the start of each line of the source text, to turn spans into line numbers.
    #[serde(skip)]
    line_starts: Vec<usize>,
    /// The `[[zones]]` files served, in entry order; shared by every copy of the config. Index
    /// for index with `zones` unless one did not load ([`Config::zone_faults`]).
    #[serde(skip)]
    pub zone_files: Vec<Arc<ZoneFile>>,
    /// The `[[zones]]` files that did not load while serving: the rest of the config runs
    /// without them ([`Config::parse_serving`]). Always empty from [`Config::parse`].
    #[serde(skip)]
    pub zone_faults: Vec<ZoneFault>,
}

/// A `[[zones]]` file that did not load when a server started or reloaded. As BIND does with a
/// zone that does not load, the server goes on with every other zone; the zone itself is
/// served from the running server's copy of the same file if it has one (a reload), and
/// otherwise answers SERVFAIL for its names (BIND 9's answer for a zone "not loaded due to
/// errors"), so that they are not sent upstream as if no one owned them.
#[derive(Debug, Clone)]
pub struct ZoneFault {
    /// The `[[zones]]` entry's index.
    pub entry: usize,
    /// The file as the entry names it, resolved from the config file's directory.
    pub file: PathBuf,
    /// The zone's name: the entry's `origin`, else the file's first `$ORIGIN` if the reading
    /// got that far. `None`: unknown, and its names are forwarded like any name not owned.
    pub zone: Option<Name>,
    /// Whether the running server's copy of the file is served in its place.
    pub kept: bool,
    /// Why, with the config file's line and the zone file's (`config:3: zones[0].file: z:7: …`).
    pub error: String,
    /// Every file the reading opened: what to watch for a fix.
    pub read: Vec<PathBuf>,
}

/// What [`Config::load_zones`] does with a zone file that does not load.
#[derive(Clone, Copy)]
enum OnZoneFault<'a> {
    /// Refuses the config (`hubdns check`, and every caller of [`Config::parse`]).
    Refuse,
    /// Goes on without it, keeping the running server's copy of the same file if one is given.
    Isolate { running: &'a [Arc<ZoneFile>] },
}

/// Listeners, client access, and the resource bounds of the DNS front end.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Addresses to serve DNS on, over both UDP and TCP. Port 0 picks a free port (tests).
    #[serde(default = "default_listen")]
    pub listen: Vec<SocketAddr>,
    /// Client networks allowed to query; everyone else gets REFUSED. hubdns is never an open
    /// resolver, so the default is loopback and private ranges only.
    #[serde(default = "default_allow")]
    pub allow: Vec<IpNet>,
    /// UDP sockets bound per listen address with SO_REUSEPORT, so the kernel spreads queries
    /// across cores. 0 means one per CPU.
    #[serde(default)]
    pub udp_sockets_per_address: usize,
    /// Largest UDP response hubdns sends to EDNS clients (RFC 9715 / DNS flag day 2020: 1232
    /// avoids IP fragmentation). Larger answers are truncated (TC=1) and the client retries
    /// over TCP.
    #[serde(default = "default_max_udp_payload")]
    pub max_udp_payload: u16,
    /// Most TCP connections open at once; connections beyond it are closed at accept.
    #[serde(default = "default_tcp_max_connections")]
    pub tcp_max_connections: usize,
    /// Most TCP connections open at once from one client address.
    #[serde(default = "default_tcp_max_connections_per_client")]
    pub tcp_max_connections_per_client: usize,
    /// A TCP connection that sends no complete query for this long is closed.
    #[serde(default = "default_tcp_idle_timeout_secs")]
    pub tcp_idle_timeout_secs: u64,
    /// Most forwarded queries one TCP connection may have in flight at once; past it, the
    /// connection reads no further query until one is answered, so one client cannot take
    /// every `forward.max_in_flight` slot.
    #[serde(default = "default_tcp_forwards_per_connection")]
    pub tcp_forwards_per_connection: usize,
    /// Addresses to serve DNS over TLS on (RFC 7858; port 853 by convention). They share
    /// the TCP connection caps, idle timeout and allow list.
    #[serde(default)]
    pub tls_listen: Vec<SocketAddr>,
    /// Addresses to serve DNS over HTTPS on (RFC 8484; HTTP/2 and HTTP/1.1, port 443 by
    /// convention), at `https_path`.
    #[serde(default)]
    pub https_listen: Vec<SocketAddr>,
    /// The PEM certificate chain (server certificate first) for DoT and DoH; reloaded when
    /// the file changes.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// Its PEM private key (PKCS#8, PKCS#1 or SEC1); reloaded with it.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// The DoH path: GET `?dns=` and POST `application/dns-message` (RFC 8484 §4.1).
    #[serde(default = "default_https_path")]
    pub https_path: String,
    /// Most queries one TCP, DoT or DoH connection may send; the connection is closed once
    /// they are answered, and the client opens another (resending what it sent meanwhile).
    /// 0, the default: no limit, as dnsdist's `setMaxTCPQueriesPerConnection` defaults to —
    /// a forwarder's long-lived connection is the normal case, not an abuse.
    #[serde(default = "default_queries_per_connection")]
    pub queries_per_connection: usize,
    /// Most HTTP/2 streams (queries) one DoH connection may have open at once.
    #[serde(default = "default_http2_max_streams")]
    pub http2_max_streams: u32,
    /// What `dig CH TXT id.server` (and `hostname.bind`) answers; unset: the host name.
    /// An empty string refuses those queries.
    #[serde(default)]
    pub identity: Option<String>,
    /// What `dig CH TXT version.bind` (and `version.server`) answers; unset: `hubdns <version>`.
    /// An empty string refuses those queries.
    #[serde(default)]
    pub version: Option<String>,
    /// Re-read the config file when it changes (checked every second, applied once it has
    /// stayed the same for half a second), as SIGHUP does.
    #[serde(default = "default_true")]
    pub watch_config: bool,
}

/// `[az]`: keep each client's traffic in its own Availability Zone (see `crate::az`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzConfig {
    /// `off` (the default: answers as listed), `prefer` (the client's AZ's addresses first)
    /// or `only` (those alone, all when its AZ has none).
    #[serde(default)]
    pub affinity: Affinity,
    /// The AZ of clients nothing else places: `off` (unknown), an AZ ID (`use1-az1`), or
    /// `instance`: the hubdns instance's own, from the instance metadata service at start.
    #[serde(default = "default_az")]
    pub default: Spanned<String>,
    /// Learn clients' AZs from the subnets of the VPCs the endpoint sources read
    /// (DescribeSubnets); on by default.
    #[serde(default = "default_true")]
    pub learn_subnets: bool,
    /// Client networks and their AZ (on-premises sites, anything the subnets do not cover).
    #[serde(default)]
    pub clients: Vec<Spanned<AzClientConfig>>,
    /// Resolvers asking for clients in many AZs (Route 53 Resolver outbound endpoints,
    /// on-premises DNS servers): their caches share one answer, so their AZ counts as unknown.
    #[serde(default)]
    pub forwarders: Vec<Spanned<AzForwarderConfig>>,
    /// Affinity per name: an exact name, or `*.domain` for the names below it.
    #[serde(default)]
    pub names: Vec<Spanned<AzNameConfig>>,
    /// With `default = "instance"`: the instance's (AZ ID, region), as the instance metadata
    /// service said at start; `None` until asked, or when it could not say.
    #[serde(skip)]
    pub instance: Option<(String, String)>,
}

impl Default for AzConfig {
    fn default() -> Self {
        Self {
            affinity: Affinity::Off,
            default: default_az(),
            learn_subnets: true,
            clients: Vec::new(),
            forwarders: Vec::new(),
            names: Vec::new(),
            instance: None,
        }
    }
}

impl AzConfig {
    /// Whether affinity applies to any name, so that clients' AZs matter.
    pub fn enabled(&self) -> bool {
        self.affinity != Affinity::Off || self.names.iter().any(|n| n.get_ref().affinity != Affinity::Off)
    }
}

fn default_az() -> Spanned<String> {
    Spanned::new(0..0, "off".into())
}

/// An `[[az.clients]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzClientConfig {
    /// The client network.
    pub cidr: IpNet,
    /// Its AZ ID (`use1-az1`): AZ names (`us-east-1a`) differ per account.
    pub az_id: String,
    /// The AZ's region, for Route 53 AZ-affinity records' Region, zone-group and partition
    /// locations.
    #[serde(default)]
    pub region: Option<String>,
}

/// An `[[az.forwarders]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzForwarderConfig {
    /// The resolvers' network.
    pub cidr: IpNet,
}

/// An `[[az.names]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzNameConfig {
    /// A name, or `*.domain` for every name below `domain`.
    pub name: DomainName,
    /// Its affinity.
    pub affinity: Affinity,
}

/// Whether `text` looks like a region code (`us-east-1`, `us-gov-west-1`), not an AZ name
/// (`us-east-1a`).
pub fn is_region(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
        && parts.last().is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
}

/// Whether `text` looks like an AZ ID (`use1-az1`, `usw2-lax1-az1`), not an AZ name
/// (`us-east-1a`), which means a different AZ in each account.
pub fn is_az_id(text: &str) -> bool {
    let Some((prefix, number)) = text.rsplit_once("-az") else { return false };
    !prefix.is_empty()
        && prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit())
}

/// Per-client rate limits over UDP (see `dns::ratelimit`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Queries a second each client network may ask; 0 turns the limit off.
    #[serde(default = "default_rate_qps")]
    pub qps: u32,
    /// Queries a client network may ask at once before the rate applies.
    #[serde(default = "default_rate_burst")]
    pub burst: u32,
    /// IPv4 clients are grouped by this prefix length.
    #[serde(default = "default_ipv4_prefix")]
    pub ipv4_prefix: u8,
    /// IPv6 clients are grouped by this prefix length.
    #[serde(default = "default_ipv6_prefix")]
    pub ipv6_prefix: u8,
    /// Over the limit, every `slip`-th query gets an empty TC=1 answer (the client retries over
    /// TCP) and the rest are dropped; 0 drops them all.
    #[serde(default = "default_slip")]
    pub slip: u32,
    /// REFUSED answers a second to each client network (clients outside `server.allow`); 0: no limit.
    #[serde(default = "default_refused_qps")]
    pub refused_qps: u32,
    /// Client networks never limited: loopback, and the on-prem resolvers that forward a whole site.
    #[serde(default = "default_rate_exempt")]
    pub exempt: Vec<IpNet>,
    /// Client networks tracked at once; the least recently seen are forgotten first.
    #[serde(default = "default_max_networks")]
    pub max_networks: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            qps: default_rate_qps(),
            burst: default_rate_burst(),
            ipv4_prefix: default_ipv4_prefix(),
            ipv6_prefix: default_ipv6_prefix(),
            slip: default_slip(),
            refused_qps: default_refused_qps(),
            exempt: default_rate_exempt(),
            max_networks: default_max_networks(),
        }
    }
}

fn default_rate_qps() -> u32 {
    2_000
}

fn default_rate_burst() -> u32 {
    4_000
}

fn default_ipv4_prefix() -> u8 {
    24
}

fn default_ipv6_prefix() -> u8 {
    56
}

fn default_slip() -> u32 {
    2
}

fn default_refused_qps() -> u32 {
    10
}

fn default_rate_exempt() -> Vec<IpNet> {
    vec!["127.0.0.0/8".parse().expect("constant"), "::1/128".parse().expect("constant")]
}

fn default_max_networks() -> usize {
    100_000
}

/// Logging: the format, the level, and the optional query log.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (one line per event) or `json` (one object per line, for CloudWatch and Loki).
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `debug`, `info,hubdns::refresh=debug`. `RUST_LOG`, when set,
    /// takes precedence.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// The query log, in Route 53 Resolver's query-log schema: `"off"` (or `false`),
    /// `"stderr"` (or `true`), or a file's path (appended to, reopened on SIGUSR1).
    #[serde(default, deserialize_with = "query_log_target")]
    pub queries: crate::querylog::Target,
    /// Log one query in this many (1: every query).
    #[serde(default = "default_query_sample")]
    pub query_sample: u32,
}

/// `log.queries`: `false` / `"off"`, `true` / `"stderr"`, or a path.
fn query_log_target<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<crate::querylog::Target, D::Error> {
    use crate::querylog::Target;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Switch(bool),
        Text(String),
    }
    Ok(match Raw::deserialize(deserializer)? {
        Raw::Switch(false) => Target::Off,
        Raw::Switch(true) => Target::Stderr,
        Raw::Text(text) => match text.as_str() {
            "off" => Target::Off,
            "stderr" => Target::Stderr,
            "" => return Err(serde::de::Error::custom("an empty path: say \"off\", \"stderr\" or a file's path")),
            _ => Target::File(PathBuf::from(text)),
        },
    })
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The admin HTTP listener. Keep it on loopback or a management network: it is not
/// authenticated.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address for `/healthz` and `/readyz` (the demo uses 127.0.0.1:9153); unset: off.
    pub listen: Option<SocketAddr>,
}

/// How owned names are answered.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerConfig {
    /// TTL of owned records that do not set their own. 60 s, like AWS's endpoint names, so a
    /// replaced endpoint ENI is picked up by clients within a minute.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// TTL of negative answers (NXDOMAIN / NODATA) for owned names: the SOA's TTL and MINIMUM.
    #[serde(default = "default_ttl")]
    pub negative_ttl: u32,
    /// MNAME of the SOA that hubdns puts in negative answers for the names it owns.
    #[serde(default = "default_soa_mname")]
    pub soa_mname: DomainName,
    /// RNAME (the responsible mailbox, `@` written as `.`) of that SOA.
    #[serde(default = "default_soa_rname")]
    pub soa_rname: DomainName,
}

/// Forwarding of names hubdns does not own.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// Upstreams for names no rule matches: `"system"` (the nameservers in /etc/resolv.conf —
    /// in a VPC, the Route 53 Resolver) or `"ip"` / `"ip:port"` / `"[ipv6]:port"`.
    #[serde(default = "default_upstreams")]
    pub upstreams: Vec<Upstream>,
    /// Per-domain upstreams; the rule with the longest matching domain wins.
    #[serde(default)]
    pub rules: Vec<Spanned<ForwardRule>>,
    /// Forwarded answers the cache is sized for (positive and negative, TTL-honouring).
    #[serde(default = "default_cache_size")]
    pub cache_size: u64,
    /// Most bytes the answer cache may hold, whatever the answers' sizes.
    #[serde(default = "default_cache_max_bytes")]
    pub cache_max_bytes: u64,
    /// Serve-stale (RFC 8767): how long past its TTL an answer is kept to fall back on when
    /// every upstream fails or is slow. 0 turns serve-stale off.
    #[serde(default = "default_serve_stale_secs")]
    pub serve_stale_secs: u64,
    /// With a stale answer at hand, how long a client waits for the upstreams before it gets
    /// the stale one (TTL 30 s); the upstream query goes on and refreshes the cache.
    #[serde(default = "default_stale_answer_after_ms")]
    pub stale_answer_after_ms: u64,
    /// Refresh a cached answer asked for in the last tenth of its TTL, before it expires.
    #[serde(default = "default_true")]
    pub prefetch: bool,
    /// How long to wait for one upstream attempt.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts per upstream query before giving up.
    #[serde(default = "default_attempts")]
    pub attempts: usize,
    /// Hard limit on a forwarded query, whatever the upstreams do: past it the client gets
    /// SERVFAIL, well before a typical stub resolver (5 s) gives up on us.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// Most forwarded queries in flight at once; beyond it new ones get SERVFAIL at once, so
    /// an upstream outage cannot pile up unbounded work.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// How long a name that no upstream could answer (SERVFAIL, timeouts) answers SERVFAIL
    /// from memory before it is asked again (RFC 9520 §3.2: 1 to 300 seconds).
    #[serde(default = "default_servfail_cache_secs")]
    pub servfail_cache_secs: u64,
    /// Believe the AD bit of the default upstreams' answers: set it only when they validate
    /// DNSSEC and the path to them cannot be tampered with (RFC 6840 §5.8). Off by default.
    #[serde(default)]
    pub trust_ad: bool,
    /// After each change of the served names, ask the upstreams whether owned names lie in
    /// DNSSEC-signed public zones, which validating resolvers need a negative trust anchor for
    /// (`crate::signed_parents`). Off where the upstreams cannot see public DNS anyway.
    #[serde(default = "default_true")]
    pub check_signed_parents: bool,
}

/// One per-domain forwarding rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardRule {
    /// The domain this rule covers, itself and every name below it.
    pub domain: DomainName,
    /// Where its queries go, in the same forms as `forward.upstreams`.
    pub upstreams: Vec<Upstream>,
    /// Believe the AD bit of these upstreams' answers (see `forward.trust_ad`).
    #[serde(default)]
    pub trust_ad: bool,
    /// Made from a delegation in a `[[zones]]` file (to its glue), not written in `[[forward.rules]]`.
    #[serde(skip)]
    pub from_zone: bool,
}

/// Sources of owned names beyond this file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    /// PrivateLink endpoints from EC2, one entry per region (and account).
    #[serde(default)]
    pub vpc_endpoints: Vec<Spanned<VpcEndpointsConfig>>,
    /// Route 53 private hosted zones, one entry per account.
    #[serde(default)]
    pub route53: Vec<Spanned<Route53Config>>,
}

/// Private hosted zones to serve, from one account.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route53Config {
    /// The hub's region: the region of `vpc_ids`, and the one whose latency records win.
    pub region: String,
    /// Serve every private zone associated with these VPCs (ListHostedZonesByVPC).
    #[serde(default)]
    pub vpc_ids: Vec<String>,
    /// And these zones, by id (`Z0123…` or `/hostedzone/Z0123…`).
    #[serde(default)]
    pub zone_ids: Vec<String>,
    /// A role to assume for another account's zones.
    #[serde(default)]
    pub role_arn: Option<String>,
    /// Read these accounts too: a list of account ids, or `"organization"` for every ACTIVE
    /// account of the AWS Organization (listed again every refresh). Each is read through
    /// the role `role_name` in it, as a source of its own. Not with `role_arn`.
    #[serde(default)]
    pub accounts: Option<Accounts>,
    /// The role assumed in each of `accounts`: `arn:<partition>:iam::<account>:role/<role_name>`.
    #[serde(default)]
    pub role_name: Option<String>,
    /// With `accounts = "organization"`: a role (in the management or a delegated
    /// administrator account) allowed `organizations:ListAccounts`; default: this source's
    /// own credentials.
    #[serde(default)]
    pub organization_role_arn: Option<String>,

    /// Another Route 53 API address (a local emulator in tests).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Attempts per API call; 1 turns retries off.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Seconds one API attempt may take.
    #[serde(default = "default_api_timeout_secs")]
    pub api_timeout_secs: u64,
    /// A zone whose record-set count is unchanged is re-read at most this often (Route 53 has
    /// no serial: an edited value that keeps the count shows up within this bound).
    #[serde(default = "default_reread_secs")]
    pub reread_secs: u64,
    /// Fixed local credentials; set only by code (see `VpcEndpointsConfig`).
    #[serde(skip)]
    pub static_credentials: bool,
}

/// The settings every AWS source has, borrowed: validated in one place, and turned into SDK
/// settings in one place (`sources::aws::sdk_config`).
pub struct AwsAccess<'a> {
    /// The region.
    pub region: &'a str,
    /// A role to assume, if any.
    pub role_arn: Option<&'a str>,
    /// Another API address (a stand-in, a private endpoint).
    pub endpoint_url: Option<&'a str>,
    /// Attempts per API call.
    pub max_attempts: u32,
    /// Seconds per API attempt.
    pub api_timeout_secs: u64,
    /// Fixed local credentials (never from a file; demo and tests only).
    pub static_credentials: bool,
}

impl<'a> AwsAccess<'a> {
    /// The account these settings read, when a role names it; `None` for the instance's own
    /// credentials.
    pub fn account(&self) -> Option<&'a str> {
        self.role_arn.and_then(role_account)
    }
}

/// The account of a role ARN (`arn:aws:iam::111122223333:role/hubdns-read` → `111122223333`).
pub fn role_account(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
}

/// The access settings of each AWS source's config.
macro_rules! aws_access {
    ($($config:ty),*) => {$(
        impl $config {
            /// Its AWS access settings.
            pub fn access(&self) -> AwsAccess<'_> {
                AwsAccess {
                    region: &self.region,
                    role_arn: self.role_arn.as_deref(),
                    endpoint_url: self.endpoint_url.as_deref(),
                    max_attempts: self.max_attempts,
                    api_timeout_secs: self.api_timeout_secs,
                    static_credentials: self.static_credentials,
                }
            }
        }
    )*};
}
aws_access!(VpcEndpointsConfig, Route53Config, EventsConfig);

/// The account settings of the source configs.
macro_rules! account_settings {
    ($($config:ty),*) => {$(
        impl $config {
            /// `accounts`, `role_name`, `organization_role_arn` and `role_arn`, for validation.
            pub fn account_settings(&self) -> (Option<&Accounts>, Option<&str>, Option<&str>, Option<&str>) {
                (self.accounts.as_ref(), self.role_name.as_deref(), self.organization_role_arn.as_deref(), self.role_arn.as_deref())
            }
        }
    )*};
}
account_settings!(VpcEndpointsConfig, Route53Config);

/// Change events: an SQS queue that an EventBridge rule fills with "AWS API Call via
/// CloudTrail" events for endpoint and private-zone changes. Each hubdns instance needs a
/// queue of its own (an SQS message reaches one consumer).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// The queue, like `https://sqs.us-east-1.amazonaws.com/111122223333/hubdns-events-a`.
    pub queue_url: String,
    /// The queue's region.
    pub region: String,
    /// A role to assume to read the queue (a queue in another account).
    #[serde(default)]
    pub role_arn: Option<String>,
    /// Another SQS API address: an interface endpoint, or a local emulator in tests.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Attempts per API call; 1 turns retries off.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Seconds one API attempt may take beyond the 20 s long poll.
    #[serde(default = "default_api_timeout_secs")]
    pub api_timeout_secs: u64,
    /// Fixed local credentials; set only by code (see `VpcEndpointsConfig`).
    #[serde(skip)]
    pub static_credentials: bool,
}

fn default_reread_secs() -> u64 {
    300
}

/// One region (and account) of interface endpoints to publish.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VpcEndpointsConfig {
    /// The AWS region to ask, like `us-east-1`.
    pub region: String,
    /// A role to assume for another account's endpoints; default: the instance's own
    /// credentials through the standard chain (environment, profile, instance role).
    #[serde(default)]
    pub role_arn: Option<String>,
    /// Read these accounts too: a list of account ids, or `"organization"` for every ACTIVE
    /// account of the AWS Organization (listed again every refresh). Each is read through
    /// the role `role_name` in it, as a source of its own. Not with `role_arn`.
    #[serde(default)]
    pub accounts: Option<Accounts>,
    /// The role assumed in each of `accounts`: `arn:<partition>:iam::<account>:role/<role_name>`.
    #[serde(default)]
    pub role_name: Option<String>,
    /// With `accounts = "organization"`: a role (in the management or a delegated
    /// administrator account) allowed `organizations:ListAccounts`; default: this source's
    /// own credentials.
    #[serde(default)]
    pub organization_role_arn: Option<String>,

    /// Only endpoints in these VPCs; default: every endpoint the credentials can see.
    #[serde(default)]
    pub vpc_ids: Vec<String>,
    /// Only endpoints with all these tags (key = value).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The domains under which an endpoint's `hubdns:alias` tag may publish names. Default
    /// none: a tag publishes nothing until the operator allows its domain, because anyone with
    /// `ec2:CreateTags` could otherwise point any name (`github.com`) at an endpoint for every
    /// client. A tag may add names; it never takes over names outside these domains.
    #[serde(default)]
    pub alias_tag_domains: Vec<DomainName>,
    /// The domains under which a resource or service-network endpoint's custom domain names
    /// (VPC Lattice) are served although their owner has not verified them. Default none:
    /// only verified names are served, because a resource configuration's or service's owner,
    /// maybe another account, chooses its custom domain name freely, and AWS answers an
    /// unverified one in the endpoint's own VPC only, where hubdns would answer it for every
    /// client. The endpoint's private DNS preference still applies.
    #[serde(default)]
    pub unverified_domains: Vec<DomainName>,
    /// Another EC2 API address: an EC2 interface endpoint in a VPC without internet access,
    /// or a local emulator in tests.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Another VPC Lattice API address (for resource configurations' and services' custom
    /// domain names); default: the SDK's standard settings.
    #[serde(default)]
    pub lattice_endpoint_url: Option<String>,
    /// Attempts per API call (the SDK's standard retry with backoff); 1 turns retries off.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Seconds one API attempt may take before it counts as failed (a partitioned network
    /// must not stall the source forever).
    #[serde(default = "default_api_timeout_secs")]
    pub api_timeout_secs: u64,
    /// Fixed local credentials instead of the credential chain. Set only by code — the demo
    /// and tests, talking to a local stand-in — never by a config file: production always uses
    /// the standard chain, and tests must never fall through to the instance metadata service.
    #[serde(skip)]
    pub static_credentials: bool,
}

/// The refresh loop and the state file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshConfig {
    /// Seconds between successful refreshes of a source (±10 % jitter, so a fleet of hubdns
    /// instances does not call AWS in step). Default 30, or 300 with `[events]`, where the
    /// poll only reconciles what events missed. Read it through [`Config::interval_secs`].
    #[serde(default)]
    pub interval_secs: Option<u64>,
    /// Longest wait between retries of a failing source (backoff doubles up to this).
    #[serde(default = "default_max_backoff_secs")]
    pub max_backoff_secs: u64,
    /// Where the last good answers of every source are kept, so a restart serves at once even
    /// while AWS is unreachable. Unset: nothing is written.
    #[serde(default)]
    pub state_file: Option<PathBuf>,
    /// Seconds `/readyz` waits for a source's first answer: a source that has not answered
    /// by then (its region's API down) no longer keeps a new instance out of service, since
    /// every other name is served.
    #[serde(default = "default_ready_timeout_secs")]
    pub ready_timeout_secs: u64,
    /// The part (0.01 to 1) of each account's AWS API request budget hubdns may use — EC2
    /// Describe calls per region, Route 53 calls — shared by every source reading that
    /// account; the rest is left to the account's other tooling.
    #[serde(default = "default_api_share")]
    pub api_share: f64,
}

/// An alias: a name answering with the A/AAAA records of another owned name, or fixed addresses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasConfig {
    /// The name clients ask for.
    pub name: DomainName,
    /// Another owned name (an endpoint name, a record, another alias) whose addresses it returns.
    #[serde(default)]
    pub target: Option<DomainName>,
    /// Fixed addresses to return instead of a target.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    /// TTL; default: `answers.ttl`.
    #[serde(default)]
    pub ttl: Option<u32>,
}

/// A zone file served as a whole zone, as a Route 53 private hosted zone is.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// The file, in RFC 1035 master format (`$ORIGIN`, `$TTL`, `$INCLUDE`); a relative path
    /// is taken from the config file's directory.
    pub file: PathBuf,
    /// The zone's apex; default: the file's first `$ORIGIN`, else the owner of a first record
    /// that is an SOA.
    #[serde(default)]
    pub origin: Option<DomainName>,
}

/// A static record set: one name, one type, one or more values.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordConfig {
    /// Owner name; `*.example.com` is a wildcard for every name below `example.com`.
    pub name: DomainName,
    /// Record type: A, AAAA, CNAME, TXT, SRV, MX, PTR or CAA.
    #[serde(rename = "type")]
    pub rtype: StaticType,
    /// Values in zone-file presentation format (`"10 mail.example.com."` for MX); for TXT,
    /// each value is the text of one record, split into 255-byte strings as needed.
    pub values: Vec<String>,
    /// TTL; default: `answers.ttl`.
    #[serde(default)]
    pub ttl: Option<u32>,
    /// For A and AAAA: each value's Availability Zone ID, index for index, so `[az]`
    /// affinity orders them as it orders endpoint addresses (a service with one address per
    /// AZ, on premises or in a VPC).
    #[serde(default)]
    pub az_ids: Box<[String]>,
}

/// A fully-qualified DNS name from the config; `*` is allowed only as the first label.
#[derive(Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct DomainName(Name);

/// Which accounts a source reads besides (or instead of) its own credentials' account.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Accounts {
    /// These account ids.
    List(Vec<String>),
    /// `"organization"`: every ACTIVE account of the organization.
    Organization(OrganizationWord),
}

/// The word `organization`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct OrganizationWord;

impl TryFrom<String> for OrganizationWord {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        match text.as_str() {
            "organization" => Ok(Self),
            other => Err(format!("`{other}`: accounts is a list of account ids or \"organization\"")),
        }
    }
}

/// Where forwarded queries go.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Upstream {
    /// The nameservers listed in /etc/resolv.conf.
    System,
    /// One server; port 53 unless given.
    Addr(SocketAddr),
}

/// The record types a `[[records]]` entry may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct StaticType(pub RecordType);

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (toml's message names line, column and key).
    #[error("{origin}: {message}")]
    Parse {
        /// The file.
        origin: String,
        /// toml's message.
        message: String,
    },
    /// A `[[zones]]` file did not load.
    #[error("{origin}:{line}: {key}: {error}")]
    ZoneFile {
        /// The config file.
        origin: String,
        /// 1-based line of the `[[zones]]` entry.
        line: usize,
        /// Which key (`zones[0].file`).
        key: String,
        /// Where in the zone file, and why (boxed: it is large, and rare).
        error: Box<crate::zonefile::ZoneError>,
    },
    /// A value parsed but is not acceptable.
    #[error("{origin}:{line}: {key}: {message}")]
    Invalid {
        /// The file.
        origin: String,
        /// 1-based line of the entry.
        line: usize,
        /// Which key, as a path (`records[2].values[0]`).
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },
}

impl Config {
    /// Seconds between refreshes of each source while events flow: `refresh.interval_secs`,
    /// by default 300 with `[events]` (the poll only reconciles) and 30 without.
    pub fn interval_secs(&self) -> u64 {
        self.interval_secs_when(true)
    }

    /// Seconds between refreshes: `refresh.interval_secs` when set; else 300 while `[events]`
    /// brings changes (`events_flowing`: the queue answered last time it was read) and 30
    /// otherwise — a dead queue must not leave sources five minutes stale. A default never
    /// exceeds `max_backoff_secs`.
    pub fn interval_secs_when(&self, events_flowing: bool) -> u64 {
        let default = if self.events.is_some() && events_flowing { 300 } else { 30 };
        self.refresh.interval_secs.unwrap_or_else(|| default.min(self.refresh.max_backoff_secs))
    }

    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates `text`; `origin` names it in messages and provenance. A zone file
    /// that does not load refuses the whole config, as `hubdns check` must.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        Self::parse_with(text, origin, OnZoneFault::Refuse)
    }

    /// [`Config::load`] for a server starting: a zone file that does not load is left out and
    /// listed in [`Config::zone_faults`], never the whole server.
    pub fn load_serving(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_serving(&text, &path.display().to_string(), &[])
    }

    /// [`Config::parse`] for a server: a zone file that does not load is listed in
    /// [`Config::zone_faults`], and the running server's copy of the same file (in `running`,
    /// its zone files) is served in its place if it has one. Every other error still refuses.
    pub fn parse_serving(text: &str, origin: &str, running: &[Arc<ZoneFile>]) -> Result<Self, ConfigError> {
        Self::parse_with(text, origin, OnZoneFault::Isolate { running })
    }

    fn parse_with(text: &str, origin: &str, on_fault: OnZoneFault<'_>) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.origin = origin.to_owned();
        config.line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        config.validate()?;
        config.load_zones(on_fault)?;
        Ok(config)
    }

    /// Reads every `[[zones]]` file, relative paths from the config file's directory, and
    /// forwards each delegation with glue inside them to its glue addresses, unless a
    /// `[[forward.rules]]` entry names that domain.
    fn load_zones(&mut self, on_fault: OnZoneFault<'_>) -> Result<(), ConfigError> {
        let base = Path::new(&self.origin).parent().map(Path::to_path_buf).unwrap_or_default();
        // Each zone served, with its entry; and where it is in that list, by its name's key.
        let mut files: Vec<(usize, Arc<ZoneFile>)> = Vec::with_capacity(self.zones.len());
        let mut faults: Vec<ZoneFault> = Vec::new();
        let mut apexes: HashMap<Box<[u8]>, usize> = HashMap::new();
        for (i, entry) in self.zones.iter().enumerate() {
            let zone = entry.get_ref();
            let path = base.join(&zone.file);
            let started = std::time::Instant::now();
            let read = match ZoneFile::load(&path, zone.origin.as_ref().map(DomainName::name)) {
                Ok(read) => Arc::new(read),
                Err(why) => {
                    let (apex, read) = (why.apex.as_deref().cloned(), why.read.clone());
                    let error = ConfigError::ZoneFile { origin: self.origin.clone(), line: self.line_of(entry), key: format!("zones[{i}].file"), error: Box::new(why) };
                    let OnZoneFault::Isolate { running } = on_fault else { return Err(error) };
                    // The running copy of this entry: the same file, read as the same zone
                    // when the entry names one (one file may serve several zones).
                    let same = |z: &&Arc<ZoneFile>| z.files.first() == Some(&path) && zone.origin.as_ref().is_none_or(|o| *o.name() == z.origin);
                    let kept = running.iter().find(same).cloned();
                    // A name no one may own (the root, a public suffix: a file in BIND's
                    // relative form starts with `$ORIGIN .`) is no zone to answer SERVFAIL for.
                    let apex = kept.as_ref().map(|k| k.origin.clone()).or(apex).filter(|a| ownable(a).is_ok());
                    faults.push(ZoneFault { entry: i, file: path.clone(), zone: apex, kept: kept.is_some(), error: error.to_string(), read });
                    let Some(kept) = kept else { continue };
                    kept
                }
            };
            if let Err(why) = ownable(&read.origin) {
                return Err(self.invalid(entry, format!("zones[{i}]"), format!("{}: {why}", read.origin)));
            }
            if faults.last().is_none_or(|f| f.entry != i) {
                tracing::info!(zone = %read.origin, file = %path.display(), records = read.len(), took_ms = started.elapsed().as_millis(), "zone file read");
            }
            // Two entries for one zone: a config error, unless one is a copy kept from before
            // (its file broken), which gives way to the one that loaded.
            let kept_copy = |entry: usize| faults.iter().any(|f| f.entry == entry && f.kept);
            match apexes.entry(name_key(&read.origin)) {
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(files.len());
                    files.push((i, read));
                }
                std::collections::hash_map::Entry::Occupied(_) if kept_copy(i) => faults.iter_mut().filter(|f| f.entry == i).for_each(|f| f.kept = false),
                std::collections::hash_map::Entry::Occupied(slot) if kept_copy(files[*slot.get()].0) => {
                    let before = std::mem::replace(&mut files[*slot.get()], (i, read)).0;
                    faults.iter_mut().filter(|f| f.entry == before).for_each(|f| f.kept = false);
                }
                std::collections::hash_map::Entry::Occupied(_) => {
                    return Err(self.invalid(entry, format!("zones[{i}]"), format!("another [[zones]] entry is also {}", read.origin)));
                }
            }
        }
        files.sort_by_key(|(entry, _)| *entry);
        let apexes = apexes.into_keys();
        // A cut that another zone file serves (a nested zone) is answered, not forwarded; so is
        // one whose file did not load (SERVFAIL), as for a nested zone that loaded.
        let failed = faults.iter().filter(|f| !f.kept).filter_map(|f| f.zone.as_ref()).map(name_key);
        let ruled: HashSet<Box<[u8]>> = self.forward.rules.iter().map(|r| r.get_ref().domain.key()).chain(apexes).chain(failed).collect();
        for (entry, read) in files.iter().map(|(i, read)| (&self.zones[*i], read)) {
            for cut in read.delegations.iter().filter(|c| !c.servers.is_empty() && !ruled.contains(&name_key(&c.name))) {
                let rule = ForwardRule {
                    domain: DomainName(cut.name.clone()),
                    upstreams: cut.servers.iter().map(|s| Upstream::Addr(*s)).collect(),
                    trust_ad: false,
                    from_zone: true,
                };
                self.forward.rules.push(Spanned::new(entry.span(), rule));
            }
        }
        self.zone_files = files.into_iter().map(|(_, file)| file).collect();
        self.zone_faults = faults;
        Ok(())
    }

    /// The zones whose file did not load and nothing is served in its place: each name, the
    /// fault. Their names answer SERVFAIL. A zone another entry's file serves is that file's.
    pub fn unloaded_zones(&self) -> impl Iterator<Item = (&Name, &ZoneFault)> {
        let failed = self.zone_faults.iter().filter(|f| !f.kept).filter_map(|f| Some((f.zone.as_ref()?, f)));
        failed.filter(|(name, _)| !self.zone_files.iter().any(|z| z.origin == **name))
    }

    /// The 1-based line on which a spanned entry starts.
    pub fn line_of<T>(&self, entry: &Spanned<T>) -> usize {
        self.line_starts
            .partition_point(|&start| start <= entry.span().start)
            .max(1)
    }

    /// UDP sockets per listen address, with 0 resolved to the number of CPUs.
    pub fn udp_sockets_per_address(&self) -> usize {
        match self.server.udp_sockets_per_address {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }

    /// Checks the settings every AWS source has, reporting them under `key`.
    fn check_aws_access<T>(&self, entry: &Spanned<T>, key: &str, v: &AwsAccess<'_>) -> Result<(), ConfigError> {
        if v.region.is_empty() || !v.region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            return Err(self.invalid(entry, format!("{key}.region"), format!("`{}` is not a region name like us-east-1", v.region)));
        }
        if v.role_arn.is_some_and(|r| !r.starts_with("arn:")) {
            return Err(self.invalid(entry, format!("{key}.role_arn"), "a role ARN starts with `arn:` (arn:aws:iam::123456789012:role/hubdns)"));
        }
        if v.endpoint_url.is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
            return Err(self.invalid(entry, format!("{key}.endpoint_url"), "must start with https:// (or http:// for a local emulator)"));
        }
        if v.max_attempts == 0 || v.api_timeout_secs == 0 {
            return Err(self.invalid(entry, format!("{key}.max_attempts / api_timeout_secs"), "must be at least 1"));
        }
        Ok(())
    }

    /// `accounts`, `role_name` and `organization_role_arn` of a source entry.
    fn check_accounts<T>(
        &self,
        entry: &Spanned<T>,
        key: &str,
        (accounts, role_name, org_role, role_arn): (Option<&Accounts>, Option<&str>, Option<&str>, Option<&str>),
    ) -> Result<(), ConfigError> {
        let Some(accounts) = accounts else {
            if role_name.is_some() || org_role.is_some() {
                return Err(self.invalid(entry, format!("{key}.role_name"), "role_name and organization_role_arn go with accounts"));
            }
            return Ok(());
        };
        if role_arn.is_some() {
            return Err(self.invalid(entry, format!("{key}.role_arn"), "role_arn names one account; with accounts, give role_name instead"));
        }
        if role_name.is_none_or(|r| r.is_empty() || r.contains([':', '*'])) {
            return Err(self.invalid(entry, format!("{key}.role_name"), "accounts needs role_name: the role's name in each account, like hubdns-read"));
        }
        match accounts {
            Accounts::List(ids) => {
                if ids.is_empty() {
                    return Err(self.invalid(entry, format!("{key}.accounts"), "name at least one account, or \"organization\""));
                }
                if let Some(bad) = ids.iter().find(|id| id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit())) {
                    return Err(self.invalid(entry, format!("{key}.accounts"), format!("`{bad}` is not a 12-digit account id")));
                }
                if org_role.is_some() {
                    return Err(self.invalid(entry, format!("{key}.organization_role_arn"), "only with accounts = \"organization\""));
                }
            }
            Accounts::Organization(_) => {
                if org_role.is_some_and(|r| !r.starts_with("arn:")) {
                    return Err(self.invalid(entry, format!("{key}.organization_role_arn"), "a role ARN starts with `arn:`"));
                }
            }
        }
        Ok(())
    }

    /// `[az]`: AZ IDs, never AZ names.
    fn validate_az(&self) -> Result<(), ConfigError> {
        let az = &self.az;
        let id_help = |text: &str| format!("`{text}` is not an AZ ID: write the ID (`use1-az1`), not the AZ name (`us-east-1a`), which names a different AZ in each account");
        let default = az.default.get_ref();
        if !matches!(default.as_str(), "off" | "instance") && !is_az_id(default) {
            let message = format!("{}; or \"off\", or \"instance\" (the instance's own, from instance metadata)", id_help(default));
            return Err(self.invalid(&az.default, "az.default".into(), message));
        }
        for (i, entry) in az.clients.iter().enumerate() {
            let client = entry.get_ref();
            if !is_az_id(&client.az_id) {
                return Err(self.invalid(entry, format!("az.clients[{i}].az_id"), id_help(&client.az_id)));
            }
            if let Some(region) = client.region.as_deref().filter(|r| !is_region(r)) {
                return Err(self.invalid(entry, format!("az.clients[{i}].region"), format!("`{region}` is not a region code like us-east-1")));
            }
        }
        let mut patterns = std::collections::HashSet::new();
        for (i, entry) in az.names.iter().enumerate() {
            if !patterns.insert(entry.get_ref().name.key()) {
                return Err(self.invalid(entry, format!("az.names[{i}].name"), format!("{} is listed twice", entry.get_ref().name)));
            }
        }
        Ok(())
    }

    fn invalid<T>(&self, entry: &Spanned<T>, key: String, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.clone(),
            line: self.line_of(entry),
            key,
            message: message.into(),
        }
    }

    /// Checks what the schema cannot: ranges, record data, and names used twice.
    fn validate(&self) -> Result<(), ConfigError> {
        let top = |key: &str, message: String| ConfigError::Invalid {
            origin: self.origin.clone(),
            line: 1,
            key: key.to_owned(),
            message,
        };
        let server = &self.server;
        if server.listen.is_empty() {
            return Err(top("server.listen", "at least one address is needed".into()));
        }
        if !(512..=4096).contains(&server.max_udp_payload) {
            return Err(top(
                "server.max_udp_payload",
                format!("{} is out of range: allowed 512 to 4096", server.max_udp_payload),
            ));
        }
        self.validate_az()?;
        let limits = &self.rate_limit;
        if limits.ipv4_prefix > 32 || limits.ipv6_prefix > 128 || limits.max_networks == 0 {
            return Err(top(
                "rate_limit.ipv4_prefix / ipv6_prefix / max_networks",
                "prefixes are at most 32 (IPv4) and 128 (IPv6); max_networks at least 1".into(),
            ));
        }
        if limits.qps > 0 && limits.burst < limits.qps.min(1) {
            return Err(top("rate_limit.burst", "must be at least 1 when qps is set".into()));
        }
        if server.tcp_forwards_per_connection == 0 {
            return Err(top("server.tcp_forwards_per_connection", "must be at least 1".into()));
        }
        if server.tcp_max_connections_per_client == 0 {
            return Err(top("server.tcp_max_connections_per_client", "must be at least 1".into()));
        }
        if server.tcp_max_connections == 0 || server.tcp_idle_timeout_secs == 0 {
            return Err(top(
                "server.tcp_max_connections / tcp_idle_timeout_secs",
                "must be at least 1".into(),
            ));
        }
        if server.http2_max_streams == 0 {
            return Err(top("server.http2_max_streams", "must be at least 1".into()));
        }
        let encrypted = !server.tls_listen.is_empty() || !server.https_listen.is_empty();
        if encrypted && (server.tls_cert.is_none() || server.tls_key.is_none()) {
            return Err(top(
                "server.tls_cert / tls_key",
                "tls_listen and https_listen need a certificate and key: PEM files (`hubdns demo` makes a self-signed pair)".into(),
            ));
        }
        // The characters a request path carries as they are (RFC 3986 §3.3: unreserved,
        // sub-delims, ':', '@', '/'); anything else arrives percent-encoded and would never match.
        let path_char = |c: char| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/".contains(c);
        if !server.https_path.starts_with('/') || !server.https_path.chars().all(path_char) {
            return Err(top(
                "server.https_path",
                format!("`{}` is not a path: it starts with / and holds only letters, digits and -._~!$&'()*+,;=:@/", server.https_path),
            ));
        }
        if self.log.query_sample == 0 {
            return Err(top("log.query_sample", "must be at least 1 (1 logs every query)".into()));
        }
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(top("log.level", format!("`{}` is not a log filter: {error}", self.log.level)));
        }
        let forward = &self.forward;
        if forward.upstreams.is_empty() {
            return Err(top(
                "forward.upstreams",
                "at least one upstream is needed: \"system\" or an ip[:port]".into(),
            ));
        }
        if forward.timeout_ms == 0 || forward.deadline_ms == 0 || forward.attempts == 0 {
            return Err(top(
                "forward.timeout_ms / deadline_ms / attempts",
                "must be at least 1".into(),
            ));
        }
        if forward.stale_answer_after_ms == 0 {
            return Err(top("forward.stale_answer_after_ms", "must be at least 1".into()));
        }
        if forward.cache_max_bytes < 64 << 10 {
            return Err(top("forward.cache_max_bytes", format!("{} is too small: at least 65536", forward.cache_max_bytes)));
        }
        if forward.max_in_flight == 0 {
            return Err(top("forward.max_in_flight", "must be at least 1".into()));
        }
        if !(1..=300).contains(&forward.servfail_cache_secs) {
            return Err(top(
                "forward.servfail_cache_secs",
                format!("{} is outside 1..=300 (RFC 9520 §3.2: at least 1 s, at most 5 min)", forward.servfail_cache_secs),
            ));
        }

        if self.refresh.max_backoff_secs == 0 || self.refresh.interval_secs.is_some_and(|i| i == 0 || self.refresh.max_backoff_secs < i) {
            return Err(top(
                "refresh.interval_secs / max_backoff_secs",
                "interval must be at least 1 and max_backoff_secs at least the interval".into(),
            ));
        }
        if !(0.01..=1.0).contains(&self.refresh.api_share) {
            return Err(top("refresh.api_share", format!("{} is outside 0.01..=1 (a part of AWS's request budget)", self.refresh.api_share)));
        }
        let mut seen_sources = HashSet::new();
        for (i, source) in self.sources.vpc_endpoints.iter().enumerate() {
            let key = format!("sources.vpc_endpoints[{i}]");
            let v = source.get_ref();
            self.check_aws_access(source, &key, &v.access())?;
            self.check_accounts(source, &key, v.account_settings())?;
            // Entries with `accounts` may share a region (the hub's own account, and others);
            // what they read per account is told apart by the sources' ids.
            if v.accounts.is_none() && !seen_sources.insert((v.region.clone(), v.role_arn.clone())) {
                return Err(self.invalid(source, key, "this region and role are already a source"));
            }
            check_vpc_ids(&v.vpc_ids).map_err(|m| self.invalid(source, format!("{key}.vpc_ids"), m))?;
            if v.lattice_endpoint_url.as_deref().is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
                return Err(self.invalid(source, format!("{key}.lattice_endpoint_url"), "must start with https:// (or http:// for a local emulator)"));
            }
            // Allowing tags (or unverified custom domains) under the root or a public suffix would let them take over any name.
            for (field, domains) in [("alias_tag_domains", &v.alias_tag_domains), ("unverified_domains", &v.unverified_domains)] {
                for domain in domains {
                    if let Err(reason) = ownable(domain.name()) {
                        return Err(self.invalid(source, format!("{key}.{field}"), format!("{domain}: {reason}")));
                    }
                    if domain.name().iter().any(|label| label == b"*") {
                        return Err(self.invalid(source, format!("{key}.{field}"), format!("{domain}: a domain, not a wildcard (`example.com` covers every name below it)")));
                    }
                }
            }
        }

        if let Some(events) = &self.events {
            let entry = Spanned::new(0..0, ());
            self.check_aws_access(&entry, "events", &events.access())?;
            if !(events.queue_url.starts_with("https://") || events.queue_url.starts_with("http://")) {
                return Err(top("events.queue_url", "a queue URL, like https://sqs.us-east-1.amazonaws.com/111122223333/hubdns-events".into()));
            }
        }

        for (i, source) in self.sources.route53.iter().enumerate() {
            let key = format!("sources.route53[{i}]");
            let v = source.get_ref();
            self.check_aws_access(source, &key, &v.access())?;
            self.check_accounts(source, &key, v.account_settings())?;
            if v.vpc_ids.is_empty() && v.zone_ids.is_empty() {
                return Err(self.invalid(source, key, "name the zones: vpc_ids (their associated private zones), zone_ids, or both"));
            }
            if let Some(bad) = v.zone_ids.iter().find(|id| {
                let id = id.trim_start_matches("/hostedzone/");
                id.is_empty() || !id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            }) {
                return Err(self.invalid(source, format!("{key}.zone_ids"), format!("`{bad}` is not a hosted zone id like Z0123456789ABCDEFGHIJ")));
            }
            check_vpc_ids(&v.vpc_ids).map_err(|m| self.invalid(source, format!("{key}.vpc_ids"), m))?;
        }

        let mut rule_domains = HashSet::new();
        for (i, rule) in forward.rules.iter().enumerate() {
            let key = format!("forward.rules[{i}]");
            if rule.get_ref().domain.0.is_root() || rule.get_ref().domain.is_wildcard() {
                return Err(self.invalid(
                    rule,
                    format!("{key}.domain"),
                    "a rule needs a domain below the root, without `*`; \
                     the root is what forward.upstreams is for",
                ));
            }
            if rule.get_ref().upstreams.is_empty() {
                return Err(self.invalid(rule, format!("{key}.upstreams"), "at least one upstream is needed"));
            }
            if !rule_domains.insert(rule.get_ref().domain.key()) {
                return Err(self.invalid(
                    rule,
                    format!("{key}.domain"),
                    format!("{} already has a rule", rule.get_ref().domain),
                ));
            }
        }

        // A name is one kind of thing in the config: an alias or a record set per type.
        let mut owners: HashSet<(Box<[u8]>, Option<RecordType>)> = HashSet::new();
        let mut alias_names = HashSet::new();
        for (i, alias) in self.aliases.iter().enumerate() {
            let key = format!("aliases[{i}]");
            let a = alias.get_ref();
            match (&a.target, a.addresses.is_empty()) {
                (Some(_), false) | (None, true) => {
                    return Err(self.invalid(
                        alias,
                        key,
                        "set exactly one of `target` (an owned name) or `addresses` (a list of IPs)",
                    ));
                }
                (Some(target), true) if target.key() == a.name.key() => {
                    return Err(self.invalid(alias, format!("{key}.target"), "an alias cannot target itself"));
                }
                _ => {}
            }
            if let Err(reason) = ownable(a.name.name()) {
                return Err(self.invalid(alias, format!("{key}.name"), format!("{}: {reason}", a.name)));
            }
            if !alias_names.insert(a.name.key()) {
                return Err(self.invalid(alias, format!("{key}.name"), format!("{} is already an alias", a.name)));
            }
            owners.insert((a.name.key(), None));
        }
        for (i, record) in self.records.iter().enumerate() {
            let key = format!("records[{i}]");
            let r = record.get_ref();
            if let Err(reason) = ownable(r.name.name()) {
                return Err(self.invalid(record, format!("{key}.name"), format!("{}: {reason}", r.name)));
            }
            // An alias is the name's A and AAAA records, as a Route 53 alias is one record set:
            // other types may stand beside it.
            if alias_names.contains(&r.name.key()) && matches!(r.rtype.0, RecordType::A | RecordType::AAAA | RecordType::CNAME) {
                return Err(self.invalid(
                    record,
                    format!("{key}.name"),
                    format!("{} is an alias, which answers its A and AAAA; it cannot also have {} records", r.name, r.rtype.0),
                ));
            }
            if !owners.insert((r.name.key(), Some(r.rtype.0))) {
                return Err(self.invalid(
                    record,
                    key,
                    format!(
                        "{} {} is defined twice: list all its values in one entry",
                        r.name, r.rtype.0
                    ),
                ));
            }
            if !r.az_ids.is_empty() {
                if !matches!(r.rtype.0, RecordType::A | RecordType::AAAA) {
                    return Err(self.invalid(record, format!("{key}.az_ids"), "only A and AAAA records have AZs"));
                }
                if r.az_ids.len() != r.values.len() {
                    return Err(self.invalid(record, format!("{key}.az_ids"), format!("one AZ ID per value: {} values, {} AZ IDs", r.values.len(), r.az_ids.len())));
                }
                if let Some(name) = r.az_ids.iter().find(|z| !is_az_id(z)) {
                    return Err(self.invalid(record, format!("{key}.az_ids"), format!("`{name}` is not an AZ ID: write the ID (`use1-az1`), not the AZ name")));
                }
            }
            if r.values.is_empty() {
                return Err(self.invalid(record, format!("{key}.values"), "at least one value is needed"));
            }
            for (j, value) in r.values.iter().enumerate() {
                if let Err(message) = parse_rdata(r.rtype.0, value) {
                    return Err(self.invalid(record, format!("{key}.values[{j}]"), message));
                }
            }
        }
        // CNAME cannot share its name with other data (RFC 1034 §3.6.2).
        for record in &self.records {
            let r = record.get_ref();
            if r.rtype.0 == RecordType::CNAME
                && self.records.iter().any(|o| {
                    o.get_ref().name.key() == r.name.key() && o.get_ref().rtype.0 != RecordType::CNAME
                })
            {
                return Err(self.invalid(
                    record,
                    "records.name".into(),
                    format!("{} has a CNAME, so it cannot have other records", r.name),
                ));
            }
        }
        self.check_cname_loops()
    }

    /// Refuses CNAMEs among `[[records]]` that lead back to themselves: such a chain can only
    /// answer SERVFAIL (RFC 1034 §3.6.2 asks that CNAME loops be avoided).
    fn check_cname_loops(&self) -> Result<(), ConfigError> {
        let cnames: BTreeMap<Box<[u8]>, (Box<[u8]>, &Spanned<RecordConfig>)> = self
            .records
            .iter()
            .filter(|r| r.get_ref().rtype.0 == RecordType::CNAME)
            .filter_map(|r| match r.get_ref().rdata().ok()?.first()? {
                RData::CNAME(target) => Some((r.get_ref().name.key(), (name_key(&target.0), r))),
                _ => None,
            })
            .collect();
        for (start, (_, record)) in &cnames {
            let mut at = start;
            for _ in 0..=cnames.len() {
                let Some((next, _)) = cnames.get(at) else { break };
                if next == start {
                    let name = &record.get_ref().name;
                    return Err(self.invalid(record, "records.values".into(), format!("the CNAME at {name} leads back to {name}: a loop")));
                }
                at = next;
            }
        }
        Ok(())
    }
}

impl RecordConfig {
    /// The record data of every value (validated at load, so errors here are unexpected).
    pub fn rdata(&self) -> Result<Vec<RData>, String> {
        self.values.iter().map(|v| parse_rdata(self.rtype.0, v)).collect()
    }
}

/// Parses one value of a static record in presentation format.
fn parse_rdata(rtype: RecordType, value: &str) -> Result<RData, String> {
    if rtype == RecordType::TXT {
        // TXT strings are at most 255 bytes each; long text is split, as zone files do.
        let strings = value
            .as_bytes()
            .chunks(255)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>();
        return Ok(RData::TXT(TXT::new(if strings.is_empty() { vec![String::new()] } else { strings })));
    }
    let mut rdata = RData::try_from_str(rtype, value)
        .map_err(|e| format!("`{value}` is not valid {rtype} data: {e}"))?;
    // Names inside record data are absolute in this file, with or without the final dot.
    absolute_names(&mut rdata);
    Ok(rdata)
}

impl DomainName {
    /// The hickory name (absolute).
    pub fn name(&self) -> &Name {
        &self.0
    }

    /// The lookup key of this name.
    pub fn key(&self) -> Box<[u8]> {
        name_key(&self.0)
    }

    /// Whether the first label is `*`.
    pub fn is_wildcard(&self) -> bool {
        self.0.is_wildcard()
    }
}

impl TryFrom<String> for DomainName {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        if text.is_empty() {
            return Err("a domain name cannot be empty (write \".\" for the root)".into());
        }
        let mut name =
            Name::from_ascii(&text).map_err(|e| format!("`{text}` is not a valid domain name: {e}"))?;
        name.set_fqdn(true);
        if name.iter().skip(1).any(|label| label.contains(&b'*'))
            || name.iter().next().is_some_and(|l| l.contains(&b'*') && l != b"*")
        {
            return Err(format!("`{text}`: `*` is allowed only as the whole first label (`*.example.com`)"));
        }
        Ok(Self(name))
    }
}

impl FromStr for DomainName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::try_from(s.to_owned())
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl TryFrom<String> for Upstream {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        if text == "system" {
            return Ok(Self::System);
        }
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(Self::Addr(addr));
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Self::Addr(SocketAddr::new(ip, 53)));
        }
        Err(format!(
            "`{text}` is not an upstream: allowed are \"system\" (the nameservers in \
             /etc/resolv.conf), \"10.0.0.2\", \"10.0.0.2:5353\", \"fd00::2\" or \"[fd00::2]:5353\""
        ))
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::System => f.write_str("system"),
            Self::Addr(addr) => write!(f, "{addr}"),
        }
    }
}

/// Types a static record may have, in the order the error message lists them.
const STATIC_TYPES: [RecordType; 8] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::TXT,
    RecordType::SRV,
    RecordType::MX,
    RecordType::PTR,
    RecordType::CAA,
];

impl TryFrom<String> for StaticType {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let upper = text.to_ascii_uppercase();
        STATIC_TYPES
            .iter()
            .find(|t| t.to_string() == upper)
            .map(|t| Self(*t))
            .ok_or_else(|| {
                let allowed: Vec<String> = STATIC_TYPES.iter().map(|t| t.to_string()).collect();
                format!("`{text}` is not a supported record type: allowed are {}", allowed.join(", "))
            })
    }
}

impl Default for RefreshConfig {
    fn default() -> Self {
        Self {
            interval_secs: None,
            max_backoff_secs: default_max_backoff_secs(),
            state_file: None,
            ready_timeout_secs: default_ready_timeout_secs(),
            api_share: default_api_share(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            allow: default_allow(),
            udp_sockets_per_address: 0,
            max_udp_payload: default_max_udp_payload(),
            tcp_max_connections: default_tcp_max_connections(),
            tcp_max_connections_per_client: default_tcp_max_connections_per_client(),
            tcp_idle_timeout_secs: default_tcp_idle_timeout_secs(),
            tcp_forwards_per_connection: default_tcp_forwards_per_connection(),
            tls_listen: Vec::new(),
            https_listen: Vec::new(),
            tls_cert: None,
            tls_key: None,
            https_path: default_https_path(),
            queries_per_connection: default_queries_per_connection(),
            http2_max_streams: default_http2_max_streams(),
            identity: None,
            version: None,
            watch_config: true,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: default_log_level(),
            queries: crate::querylog::Target::Off,
            query_sample: default_query_sample(),
        }
    }
}

impl Default for AnswerConfig {
    fn default() -> Self {
        Self {
            ttl: default_ttl(),
            negative_ttl: default_ttl(),
            soa_mname: default_soa_mname(),
            soa_rname: default_soa_rname(),
        }
    }
}

impl Default for ForwardConfig {
    fn default() -> Self {
        Self {
            upstreams: default_upstreams(),
            rules: Vec::new(),
            cache_size: default_cache_size(),
            cache_max_bytes: default_cache_max_bytes(),
            serve_stale_secs: default_serve_stale_secs(),
            stale_answer_after_ms: default_stale_answer_after_ms(),
            prefetch: true,
            timeout_ms: default_timeout_ms(),
            attempts: default_attempts(),
            deadline_ms: default_deadline_ms(),
            max_in_flight: default_max_in_flight(),
            servfail_cache_secs: default_servfail_cache_secs(),
            trust_ad: false,
            check_signed_parents: true,
        }
    }
}

fn default_max_attempts() -> u32 {
    3
}

fn default_api_timeout_secs() -> u64 {
    20
}


/// VPC ids look like `vpc-0a1b2c3d4e5f60718`: a mistyped one would fail every fetch.
fn check_vpc_ids(ids: &[String]) -> Result<(), String> {
    match ids.iter().find(|id| !id.strip_prefix("vpc-").is_some_and(|hex| !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()))) {
        Some(bad) => Err(format!("`{bad}` is not a VPC id like vpc-0a1b2c3d4e5f60718")),
        None => Ok(()),
    }
}

fn default_api_share() -> f64 {
    0.5
}

fn default_ready_timeout_secs() -> u64 {
    60
}

fn default_max_backoff_secs() -> u64 {
    300
}

fn default_cache_max_bytes() -> u64 {
    64 << 20
}

fn default_serve_stale_secs() -> u64 {
    86_400
}

fn default_stale_answer_after_ms() -> u64 {
    1_800
}

fn default_true() -> bool {
    true
}

fn default_log_level() -> String {
    "info".into()
}

fn default_query_sample() -> u32 {
    1
}

fn default_listen() -> Vec<SocketAddr> {
    vec![SocketAddr::from(([0, 0, 0, 0], 53))]
}

/// Loopback, RFC 1918, RFC 6598 shared address space (carrier-grade NAT, used by some
/// on-prem links), and IPv6 unique local addresses.
pub fn default_allow() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"]
        .iter()
        .map(|net| net.parse().expect("the built-in allow list is valid CIDR")) // constant input
        .collect()
}

fn default_max_udp_payload() -> u16 {
    1232
}

fn default_tcp_max_connections() -> usize {
    1024
}

fn default_tcp_max_connections_per_client() -> usize {
    64
}

fn default_tcp_idle_timeout_secs() -> u64 {
    10
}

fn default_https_path() -> String {
    "/dns-query".into()
}

fn default_queries_per_connection() -> usize {
    0
}

fn default_http2_max_streams() -> u32 {
    100
}

fn default_ttl() -> u32 {
    60
}

fn default_soa_mname() -> DomainName {
    DomainName(Name::from_ascii("hubdns.invalid.").expect("constant name is valid")) // constant input
}

fn default_soa_rname() -> DomainName {
    DomainName(Name::from_ascii("hostmaster.hubdns.invalid.").expect("constant name is valid")) // constant input
}

fn default_upstreams() -> Vec<Upstream> {
    vec![Upstream::System]
}

fn default_cache_size() -> u64 {
    10_000
}

fn default_timeout_ms() -> u64 {
    1_000
}

fn default_attempts() -> usize {
    2
}

fn default_deadline_ms() -> u64 {
    2_500
}

fn default_max_in_flight() -> usize {
    1_024
}

fn default_servfail_cache_secs() -> u64 {
    5
}

fn default_tcp_forwards_per_connection() -> usize {
    16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "test.toml")
    }

    #[test]
    fn az_names_are_refused_where_an_az_id_belongs() {
        let client = "[az]\naffinity = \"prefer\"\n\n[[az.clients]]\ncidr = \"10.0.0.0/8\"\naz_id = \"us-east-1a\"\n";
        let error = Config::parse(client, "t.toml").expect_err("an AZ name").to_string();
        assert!(error.contains("t.toml:") && error.contains("az.clients[0].az_id") && error.contains("not an AZ ID"), "{error}");
        let default = Config::parse("[az]\naffinity = \"only\"\ndefault = \"us-east-1b\"\n", "t.toml").expect_err("an AZ name").to_string();
        assert!(default.contains("t.toml:3") && default.contains("az.default"), "{default}");
        let region = "[az]\naffinity = \"prefer\"\n[[az.clients]]\ncidr = \"10.0.0.0/8\"\naz_id = \"use1-az1\"\nregion = \"us-east-1a\"\n";
        let region = Config::parse(region, "t.toml").expect_err("an AZ name as region").to_string();
        assert!(region.contains("az.clients[0].region"), "{region}");
        let twice = "[az]\naffinity = \"prefer\"\n[[az.names]]\nname = \"x.example\"\naffinity = \"only\"\n[[az.names]]\nname = \"X.example.\"\naffinity = \"off\"\n";
        assert!(Config::parse(twice, "t.toml").expect_err("twice").to_string().contains("listed twice"));
        let good = "[az]\naffinity = \"prefer\"\ndefault = \"use1-az4\"\n[[az.clients]]\ncidr = \"10.0.0.0/8\"\naz_id = \"usw2-lax1-az1\"\n\
                    [[az.names]]\nname = \"*.s3.us-east-1.amazonaws.com\"\naffinity = \"off\"\n";
        let config = Config::parse(good, "t.toml").expect("AZ IDs, a Local Zone's included");
        assert!(config.az.enabled());
        assert!(!Config::parse("", "t.toml").expect("empty").az.enabled(), "off by default");
        assert!(Config::parse("[az]\naffinity = \"sometimes\"\n", "t.toml").is_err());
    }

    #[test]
    fn every_file_in_config_dir_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("config/ exists") {
            let path = entry.expect("readable dir entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                Config::load(&path).unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()));
                seen += 1;
            }
        }
        assert!(seen >= 2, "expected hubdns.toml and demo.toml in config/, found {seen} files");
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.server.listen, vec!["0.0.0.0:53".parse().unwrap()]);
        assert_eq!(c.server.allow.len(), 7);
        assert_eq!(c.server.max_udp_payload, 1232);
        assert_eq!(c.answers.ttl, 60);
        assert_eq!(c.forward.upstreams, vec![Upstream::System]);
    }

    #[test]
    fn unknown_keys_are_errors_with_line_and_allowed_keys() {
        let err = parse("[server]\nlisten = [\"127.0.0.1:53\"]\nlisen = 1\n").unwrap_err().to_string();
        assert!(err.contains("test.toml"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("unknown field `lisen`"), "{err}");
        assert!(err.contains("`listen`"), "{err}");
        let err = parse("[nope]\n").unwrap_err().to_string();
        assert!(err.contains("unknown field `nope`"), "{err}");
    }

    #[test]
    fn bad_values_name_line_key_and_what_is_allowed() {
        let err = parse("\n[forward]\nupstreams = [\"dns.google\"]\n").unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("allowed are \"system\""), "{err}");

        let text = "[[records]]\nname = \"a.example.\"\ntype = \"A\"\nvalues = [\"10.0.0.1\"]\n\n\
                    [[records]]\nname = \"b.example.\"\ntype = \"MX\"\nvalues = [\"mail.example.\"]\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.starts_with("test.toml:6: records[1].values[0]:"), "{err}");
        assert!(err.contains("not valid MX data"), "{err}");

        let err = parse("[[records]]\nname = \"a.\"\ntype = \"SOA\"\nvalues = [\"x\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("allowed are A, AAAA, CNAME"), "{err}");

        let err = parse("[[records]]\nname = \"a.*.b\"\ntype = \"A\"\nvalues = [\"10.0.0.1\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("only as the whole first label"), "{err}");

        let err = parse("[server]\nallow = [\"10.0.0.0/33\"]\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn aliases_and_records_are_checked_for_conflicts() {
        let both = "[[aliases]]\nname = \"x.\"\ntarget = \"y.\"\naddresses = [\"10.0.0.1\"]\n";
        assert!(parse(both).unwrap_err().to_string().contains("exactly one of"));

        let dup = "[[aliases]]\nname = \"x.\"\naddresses = [\"10.0.0.1\"]\n\
                   [[records]]\nname = \"X.\"\ntype = \"A\"\nvalues = [\"10.0.0.2\"]\n";
        let err = parse(dup).unwrap_err().to_string();
        assert!(err.contains("test.toml:4: records[0].name") && err.contains("is an alias"), "{err}");

        let twice = "[[records]]\nname = \"x.\"\ntype = \"A\"\nvalues = [\"10.0.0.1\"]\n\
                     [[records]]\nname = \"x.\"\ntype = \"a\"\nvalues = [\"10.0.0.2\"]\n";
        assert!(parse(twice).unwrap_err().to_string().contains("defined twice"));

        let cname = "[[records]]\nname = \"x.\"\ntype = \"CNAME\"\nvalues = [\"y.\"]\n\
                     [[records]]\nname = \"x.\"\ntype = \"TXT\"\nvalues = [\"t\"]\n";
        assert!(parse(cname).unwrap_err().to_string().contains("has a CNAME"));

        // An alias is its name's A and AAAA: a TXT may stand beside it, as in Route 53.
        let beside = "[[aliases]]\nname = \"x.example.\"\naddresses = [\"10.0.0.1\"]\n\
                      [[records]]\nname = \"x.example.\"\ntype = \"TXT\"\nvalues = [\"t\"]\n";
        assert!(parse(beside).is_ok());

        let rule = "[[forward.rules]]\ndomain = \"corp.\"\nupstreams = [\"10.0.0.2\"]\n\
                    [[forward.rules]]\ndomain = \"CORP\"\nupstreams = [\"10.0.0.3\"]\n";
        let err = parse(rule).unwrap_err().to_string();
        assert!(err.contains("test.toml:4: forward.rules[1].domain") && err.contains("already has a rule"), "{err}");
    }

    /// Issue 14 items 3 and 9: no config may own the root or a public suffix, and a CNAME loop
    /// is refused with its line rather than served as SERVFAIL.
    #[test]
    fn names_no_one_may_own_and_cname_loops_are_refused() {
        for (name, why) in [(".", "the root"), ("com", "public suffix"), ("co.uk.", "public suffix"), ("*.com", "public suffix")] {
            let record = format!("[[records]]\nname = \"{name}\"\ntype = \"A\"\nvalues = [\"10.0.0.1\"]\n");
            let err = parse(&record).unwrap_err().to_string();
            assert!(err.contains("records[0].name") && err.contains(why), "{name}: {err}");
            let alias = format!("[[aliases]]\nname = \"{name}\"\naddresses = [\"10.0.0.1\"]\n");
            assert!(parse(&alias).unwrap_err().to_string().contains(why), "{name}");
        }
        let domains = |d: &str| format!("[[sources.vpc_endpoints]]\nregion = \"us-east-1\"\nalias_tag_domains = [\"{d}\"]\n");
        for bad in [".", "com", "co.uk"] {
            assert!(parse(&domains(bad)).unwrap_err().to_string().contains("alias_tag_domains"), "{bad}");
            let unverified = format!("[[sources.vpc_endpoints]]\nregion = \"us-east-1\"\nunverified_domains = [\"{bad}\"]\n");
            assert!(parse(&unverified).unwrap_err().to_string().contains("unverified_domains"), "{bad}");
        }
        let wildcard = "[[sources.vpc_endpoints]]\nregion = \"us-east-1\"\nunverified_domains = [\"*.svc.example\"]\n";
        assert!(parse(wildcard).unwrap_err().to_string().contains("not a wildcard"));
        assert!(parse(&domains("corp.example")).is_ok());
        // The PSL's private section (AWS's own names) may be owned.
        assert!(parse("[[records]]\nname = \"s3.us-east-1.amazonaws.com\"\ntype = \"A\"\nvalues = [\"10.0.0.1\"]\n").is_ok());

        let cname = |from: &str, to: &str| format!("[[records]]\nname = \"{from}\"\ntype = \"CNAME\"\nvalues = [\"{to}\"]\n");
        let looped = [cname("a.example.", "b.example."), cname("b.example.", "c.example."), cname("c.example.", "A.example.")].concat();
        let err = parse(&looped).unwrap_err().to_string();
        assert!(err.contains("a loop"), "{err}");
        assert!(parse(&cname("self.example.", "self.example.")).unwrap_err().to_string().contains("a loop"));
        assert!(parse(&[cname("a.example.", "b.example."), cname("b.example.", "out.example.net.")].concat()).is_ok());
    }

    #[test]
    fn sources_and_refresh() {
        let text = r#"
[refresh]
interval_secs = 15
state_file = "/var/lib/hubdns/state.json"

[[sources.vpc_endpoints]]
region = "us-east-1"

[[sources.vpc_endpoints]]
region = "eu-west-1"
role_arn = "arn:aws:iam::111122223333:role/hubdns-read"
vpc_ids = ["vpc-0a1b2c3d4e5f60718"]
tags = { hubdns = "publish" }
"#;
        let c = parse(text).unwrap();
        assert_eq!(c.interval_secs(), 15);
        assert_eq!(c.refresh.max_backoff_secs, 300);
        let v = c.sources.vpc_endpoints[1].get_ref();
        assert_eq!(v.max_attempts, 3);
        assert_eq!(v.tags["hubdns"], "publish");
        assert!(!v.static_credentials, "never from a file");

        let err = parse("[[sources.vpc_endpoints]]\nregion = \"us-east-1\"\nstatic_credentials = true\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `static_credentials`"), "{err}");
        let err = parse("\n[[sources.vpc_endpoints]]\nregion = \"US East\"\n").unwrap_err().to_string();
        assert!(err.starts_with("test.toml:2: sources.vpc_endpoints[0].region"), "{err}");
        let err = parse("[[sources.vpc_endpoints]]\nregion = \"us-east-1\"\nrole_arn = \"hubdns\"\n").unwrap_err().to_string();
        assert!(err.contains("arn:"), "{err}");
        let dup = "[[sources.vpc_endpoints]]\nregion = \"us-east-1\"\n[[sources.vpc_endpoints]]\nregion = \"us-east-1\"\n";
        assert!(parse(dup).unwrap_err().to_string().contains("already a source"));
        assert!(parse("[refresh]\ninterval_secs = 0\n").is_err());
        let accounts = |extra: &str| parse(&format!("[[sources.vpc_endpoints]]\nregion = \"us-east-1\"\n{extra}")).map_err(|e| e.to_string());
        assert!(accounts("accounts = \"organization\"\nrole_name = \"hubdns-read\"\n").is_ok());
        assert!(accounts("accounts = [\"222233334444\"]\n").unwrap_err().contains("role_name"));
        assert!(accounts("accounts = [\"2222\"]\nrole_name = \"r\"\n").unwrap_err().contains("12-digit"));
        assert!(accounts("accounts = \"everyone\"\nrole_name = \"r\"\n").is_err());
        assert!(accounts("accounts = [\"222233334444\"]\nrole_name = \"r\"\nrole_arn = \"arn:aws:iam::1:role/x\"\n").unwrap_err().contains("role_name instead"));
        assert!(accounts("role_name = \"r\"\n").unwrap_err().contains("go with accounts"));
        assert!(accounts("vpc_ids = [\"vpc 1\"]\n").unwrap_err().contains("VPC id"));
        // The hub's own account and other accounts, in one region.
        let both = "[[sources.vpc_endpoints]]\nregion = \"us-east-1\"\n[[sources.vpc_endpoints]]\nregion = \"us-east-1\"\n\
                    accounts = [\"222233334444\"]\nrole_name = \"hubdns-read\"\n";
        assert!(parse(both).is_ok(), "{:?}", parse(both).err().map(|e| e.to_string()));
        // With [events], the poll defaults to 300 s while the queue answers, 30 s while it
        // fails, and never beyond max_backoff_secs.
        let events = "[events]\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/111122223333/q\"\nregion = \"us-east-1\"\n";
        let c = parse(events).unwrap();
        assert_eq!((c.interval_secs_when(true), c.interval_secs_when(false)), (300, 30));
        let c = parse(&format!("{events}[refresh]\nmax_backoff_secs = 120\n")).unwrap();
        assert_eq!(c.interval_secs(), 120, "a default stays within max_backoff_secs");
        let zones = |ids: &str| parse(&format!("[[sources.route53]]\nregion = \"us-east-1\"\nzone_ids = [{ids}]\n")).map_err(|e| e.to_string());
        assert!(zones("\"Z0C0RP5EXAMPLE1DEMO0\", \"/hostedzone/Z2\"").is_ok());
        for bad in ["\"\"", "\"/hostedzone/\"", "\"z lower\""] {
            assert!(zones(bad).unwrap_err().contains("hosted zone id"), "{bad}");
        }
        assert!(accounts("accounts = [\"222233334444\"]\nrole_name = \"r\"\norganization_role_arn = \"arn:aws:iam::1:role/o\"\n").is_err());
    }

    #[test]
    fn upstream_forms() {
        let u = |s: &str| Upstream::try_from(s.to_owned());
        assert_eq!(u("system"), Ok(Upstream::System));
        assert_eq!(u("10.0.0.2"), Ok(Upstream::Addr("10.0.0.2:53".parse().unwrap())));
        assert_eq!(u("127.0.0.9:5300"), Ok(Upstream::Addr("127.0.0.9:5300".parse().unwrap())));
        assert_eq!(u("fd00::2"), Ok(Upstream::Addr("[fd00::2]:53".parse().unwrap())));
        assert!(u("dns.google").is_err());
    }

    #[test]
    fn record_values_in_presentation_format() {
        let text = r#"
[[records]]
name = "_sip._tcp.example."
type = "SRV"
values = ["0 5 5060 sip.example"]

[[records]]
name = "txt.example."
type = "TXT"
values = ["v=spf1 -all", "a long one"]
"#;
        let c = parse(text).unwrap();
        let srv = c.records[0].get_ref().rdata().unwrap();
        assert_eq!(srv[0].to_string(), "0 5 5060 sip.example.");
        let txt = c.records[1].get_ref().rdata().unwrap();
        assert_eq!(txt.len(), 2);
        let long = parse_rdata(RecordType::TXT, &"x".repeat(600)).unwrap();
        let RData::TXT(t) = long else { panic!("TXT expected") };
        assert_eq!(t.txt_data.iter().map(|s| s.len()).collect::<Vec<_>>(), vec![255, 255, 90]);
    }

    /// A zone file that does not load refuses the config for `check` ([`Config::parse`]), and
    /// for a server ([`Config::parse_serving`]) is left out and listed: with the running
    /// server's copy served in its place when it has one, else with its name (for SERVFAIL).
    #[test]
    fn a_zone_file_that_does_not_load_is_one_zone_down_for_a_server() {
        let dir = std::env::temp_dir().join(format!("hubdns-zonefault-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = "$ORIGIN good.example.\n$TTL 300\n@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 10.0.0.1\n";
        let bad_text = "$ORIGIN bad.example.\n$TTL 300\n@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 10.0.0.1\nwww A 10.0.0.2\n";
        std::fs::write(dir.join("good.zone"), good).unwrap();
        std::fs::write(dir.join("bad.zone"), bad_text).unwrap();
        let text = "[[zones]]\nfile = \"bad.zone\"\n\n[[zones]]\nfile = \"good.zone\"\n\n[[zones]]\nfile = \"missing.zone\"\norigin = \"gone.example\"\n\n[[zones]]\nfile = \"unnamed.zone\"\n";
        let origin = dir.join("t.toml").display().to_string();
        std::fs::write(dir.join("unnamed.zone"), "$TTL 300\n").unwrap();

        // The first start: bad.zone loads; the others do not.
        let running = Config::parse_serving(text, &origin, &[]).expect("a server starts");
        assert_eq!(running.zone_files.iter().map(|z| z.origin.to_string()).collect::<Vec<_>>(), ["bad.example.", "good.example."]);
        let faults: Vec<(usize, Option<String>, bool)> = running.zone_faults.iter().map(|f| (f.entry, f.zone.as_ref().map(ToString::to_string), f.kept)).collect();
        assert_eq!(faults, [(2, Some("gone.example.".into()), false), (3, None, false)]);
        assert!(running.zone_faults[0].error.starts_with(&format!("{origin}:7: zones[2].file: ")), "{}", running.zone_faults[0].error);
        assert!(running.zone_faults[0].read.contains(&dir.join("missing.zone")), "watched for a fix");
        assert_eq!(running.unloaded_zones().map(|(n, _)| n.to_string()).collect::<Vec<_>>(), ["gone.example."]);
        let error = Config::parse(text, &origin).expect_err("check refuses").to_string();
        assert!(error.contains("zones[2].file") && error.contains("missing.zone"), "{error}");

        // bad.zone broken after its name is known: a reload keeps the running copy; a start
        // has none, and knows the zone's name from its $ORIGIN.
        std::fs::write(dir.join("bad.zone"), bad_text.replace("www A 10.0.0.2", "www A 10.0.0.2 10.0.0.3")).unwrap();
        let reloaded = Config::parse_serving(text, &origin, &running.zone_files).expect("a reload applies");
        assert!(Arc::ptr_eq(&reloaded.zone_files[0], &running.zone_files[0]), "the running copy is served");
        let fault = &reloaded.zone_faults[0];
        assert_eq!((fault.entry, fault.kept, fault.zone.as_ref().map(ToString::to_string)), (0, true, Some("bad.example.".into())));
        assert!(fault.error.contains("bad.zone:6:"), "{}", fault.error);
        assert_eq!(reloaded.unloaded_zones().count(), 1, "a kept zone is served");
        let started = Config::parse_serving(text, &origin, &[]).expect("a server starts");
        assert_eq!(started.zone_files.len(), 1);
        assert_eq!(started.unloaded_zones().map(|(n, _)| n.to_string()).collect::<Vec<_>>(), ["bad.example.", "gone.example."]);
    }

    /// What a review found of zone faults: a file in BIND's relative form (`$ORIGIN .` first)
    /// names no zone to answer SERVFAIL for; one file served as two zones keeps each zone's
    /// own copy; an entry given a new `origin` while its file is broken keeps no copy; a
    /// broken entry never makes another entry's zone a duplicate.
    #[test]
    fn zone_faults_keep_each_zone_apart() {
        let dir = std::env::temp_dir().join(format!("hubdns-zonefault2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let origin = dir.join("t.toml").display().to_string();
        let names = |c: &Config| c.unloaded_zones().map(|(n, _)| n.to_string()).collect::<Vec<_>>();

        std::fs::write(dir.join("rel.zone"), "$ORIGIN .\n$TTL 300\ncorp.test IN SOA ns.corp.test. h.corp.test. 1 2 3 4 5\n$ORIGIN corp.test.\n@ NS ns\nns A 10.0.0.1 10.0.0.2\n").unwrap();
        let rel = Config::parse_serving("[[zones]]\nfile = \"rel.zone\"\n", &origin, &[]).expect("serves");
        assert_eq!((rel.zone_faults.len(), names(&rel).len()), (1, 0), "the root is no zone to fail");

        let shared = "$TTL 300\n@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 10.0.0.1\n";
        std::fs::write(dir.join("shared.zone"), shared).unwrap();
        let two = "[[zones]]\nfile = \"shared.zone\"\norigin = \"one.test\"\n[[zones]]\nfile = \"shared.zone\"\norigin = \"two.test\"\n";
        let running = Config::parse_serving(two, &origin, &[]).expect("serves");
        std::fs::write(dir.join("shared.zone"), format!("{shared}www A 10.0.0.1 10.0.0.2\n")).unwrap();
        let reloaded = Config::parse_serving(two, &origin, &running.zone_files).expect("a reload applies");
        let kept: Vec<String> = reloaded.zone_files.iter().map(|z| z.origin.to_string()).collect();
        assert_eq!(kept, ["one.test.", "two.test."], "each zone its own copy");
        let renamed = Config::parse_serving(&two.replace("two.test", "new.test"), &origin, &running.zone_files).expect("applies");
        assert_eq!(names(&renamed), ["new.test."], "a new name has no copy to keep");
        assert_eq!(renamed.zone_files.len(), 1);

        std::fs::write(dir.join("dup-good.zone"), format!("$ORIGIN dup.test.\n{shared}")).unwrap();
        std::fs::write(dir.join("dup-bad.zone"), format!("$ORIGIN dup.test.\n{shared}www A 10.0.0.1 10.0.0.2\n")).unwrap();
        for (first, second) in [("dup-bad", "dup-good"), ("dup-good", "dup-bad")] {
            let text = format!("[[zones]]\nfile = \"{first}.zone\"\n[[zones]]\nfile = \"{second}.zone\"\n");
            let config = Config::parse_serving(&text, &origin, &[]).unwrap_or_else(|e| panic!("{first} first: {e}"));
            assert_eq!((config.zone_files.len(), names(&config).len()), (1, 0), "{first} first: the loaded one serves dup.test");
        }
        // A copy kept from before gives way to a new entry for the same zone that loads, in
        // either order, where a start with that config would serve the new one.
        std::fs::write(dir.join("dup-a.zone"), format!("$ORIGIN dup.test.\n{shared}")).unwrap();
        let running = Config::parse_serving("[[zones]]\nfile = \"dup-a.zone\"\n", &origin, &[]).expect("serves");
        std::fs::write(dir.join("dup-a.zone"), format!("$ORIGIN dup.test.\n{shared}www A 10.0.0.1 10.0.0.2\n")).unwrap();
        for text in ["[[zones]]\nfile = \"dup-a.zone\"\n[[zones]]\nfile = \"dup-good.zone\"\n", "[[zones]]\nfile = \"dup-good.zone\"\n[[zones]]\nfile = \"dup-a.zone\"\n"] {
            let reloaded = Config::parse_serving(text, &origin, &running.zone_files).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(reloaded.zone_files.iter().map(|z| z.files[0].clone()).collect::<Vec<_>>(), [dir.join("dup-good.zone")], "{text}");
            assert!(reloaded.zone_faults.iter().all(|f| !f.kept) && names(&reloaded).is_empty(), "{text}");
            let statuses = crate::status::ZoneStatus::of(&reloaded);
            assert_eq!(statuses.iter().filter(|z| z.state == crate::status::ZoneState::Loaded).map(|z| z.file.clone()).collect::<Vec<_>>(), [dir.join("dup-good.zone").display().to_string()]);
        }
    }
}
