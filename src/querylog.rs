//! The query log: one JSON object per answered query, in the schema of Route 53 Resolver's
//! query logs, so the CloudWatch Logs Insights and Athena queries written for those work on
//! hubdns's unchanged.
//!
//! The schema is the one Route 53 documents in "Values that appear in VPC Resolver query logs"
//! and its example (Route 53 Developer Guide, `resolver-query-logs-format`,
//! `resolver-query-logs-example-json`): `version`, `account_id`, `region`, `vpc_id`,
//! `query_timestamp` (ISO 8601, UTC, whole seconds), `query_name` (with its final dot),
//! `query_type`, `query_class`, `rcode` (`NOERROR`, `NXDOMAIN`, …), `answers[]` of
//! `Rdata`/`Type`/`Class`, `srcaddr`, `srcport` (a string, as Resolver writes it), `transport`,
//! `srcids.instance`. Where hubdns knows less than Resolver does, the field is empty, never
//! hubdns's own: `account_id`, `region` and `vpc_id` are those of the subnet the client's
//! address lies in (learned by DescribeSubnets, see [`crate::az`]); the client instance is
//! never known, as hubdns maps no address to an instance.
//!
//! Cost: the query path only copies the reply's bytes into a bounded channel (dropping the
//! line, counted, when the writer is behind: a slow disk never slows an answer). One writer
//! thread wakes every [`POLL`], takes everything waiting, parses each reply with hickory,
//! looks the client up, writes the JSON straight into one buffer and hands it to the kernel in
//! one write. It never sleeps in the channel's receive: a sleeping receiver is woken by every
//! send, a context switch per query. A file is reopened on SIGUSR1, for logrotate.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
        mpsc::{Receiver, SyncSender, TryRecvError, sync_channel},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use hickory_proto::{
    op::{Header, Query, ResponseCode},
    rr::{DNSClass, Record, RecordType},
    serialize::binary::{BinDecodable, BinDecoder},
};

use crate::{
    az::PlacementKind,
    dns::handler::{Seen, Transport},
    metrics::rcode_name,
    snapshot::SharedSnapshot,
};

/// The schema version Resolver writes today (its example's `"1.100000"`).
pub const VERSION: &str = "1.100000";

/// Lines waiting for the writer; past this many, new ones are dropped and counted. With the
/// writer waking every [`POLL`], room for 800,000 queries a second.
const BACKLOG: usize = 16_384;

/// The writer thread's nice value: below the answering threads' (0).
const WRITER_NICE: libc::c_int = 10;

/// Most bytes of replies waiting for the writer; past it, new lines are dropped and counted.
const BACKLOG_BYTES: usize = 8 << 20;

/// How often the writer takes what is waiting: a line is written at most this late.
pub const POLL: Duration = Duration::from_millis(20);

/// The writer's buffer: one write system call per this many bytes under load.
const BUFFER: usize = 64 << 10;

/// Where the query log goes (`log.queries`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Target {
    /// No query log.
    #[default]
    Off,
    /// Standard error, beside the other logs.
    Stderr,
    /// A file, appended to, reopened on SIGUSR1.
    File(PathBuf),
}

/// One answered query, as the query path hands it over: copied bytes, nothing parsed.
struct Entry {
    at: SystemTime,
    src: SocketAddr,
    transport: Transport,
    rcode: ResponseCode,
    qtype: Option<RecordType>,
    /// The reply as sent; when it echoes no question (a bare FORMERR), the query's question
    /// section follows it, and `reply_len` says where the reply ends.
    bytes: Box<[u8]>,
    reply_len: usize,
}

enum Message {
    Entry(Entry),
    Reopen,
}

/// The query log of a running server: cheap to hand a line to, from any thread.
pub struct QueryLog {
    target: Target,
    sender: SyncSender<Message>,
    counters: Arc<Counters>,
}

/// What the log did, for `/metrics`.
#[derive(Default)]
pub struct Counters {
    /// Lines written.
    pub written: AtomicU64,
    /// Lines dropped because the writer was behind.
    pub dropped: AtomicU64,
    /// Writes or reopens that failed.
    pub errors: AtomicU64,
    /// A reopen asked for while the backlog was full.
    reopen: std::sync::atomic::AtomicBool,
    /// Bytes of replies waiting for the writer.
    queued_bytes: std::sync::atomic::AtomicUsize,
}

impl QueryLog {
    /// Opens `target` (a file is created if missing, appended to) and starts its writer
    /// thread, which looks clients up in `snapshot`. `None` for [`Target::Off`].
    pub fn open(target: &Target, snapshot: SharedSnapshot) -> io::Result<Option<Self>> {
        let sink = match target {
            Target::Off => return Ok(None),
            Target::Stderr => Sink::Stderr,
            Target::File(path) => Sink::File(path.clone(), open_file(path)?),
        };
        let (sender, receiver) = sync_channel(BACKLOG);
        let counters = Arc::new(Counters::default());
        let writer = Writer { sink, out: Vec::with_capacity(BUFFER), snapshot, counters: counters.clone() };
        std::thread::Builder::new().name("hubdns-querylog".into()).spawn(move || writer.run(receiver))?;
        Ok(Some(Self { target: target.clone(), sender, counters }))
    }

    /// Where this log writes.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// What it has done.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Hands one answered query, asked at `asked`, to the writer; never blocks. The query's
    /// question section is copied only when the reply echoes none.
    pub fn log(&self, asked: SystemTime, seen: Seen<'_>, rcode: ResponseCode, qtype: Option<RecordType>) {
        let Seen { src, transport, question, reply } = seen;
        let echoes = reply.get(4..6).is_some_and(|count| count != [0, 0]);
        // A bare reply (FORMERR, header only) is logged with the query's first question alone,
        // not the rest of what may be a 64 KiB packet.
        let question = match echoes {
            true => &[][..],
            false => {
                let mut decoder = BinDecoder::new(question);
                let end = Query::read(&mut decoder).map_or(0, |_| decoder.index());
                &question[..end]
            }
        };
        let size = reply.len() + question.len();
        // The queue is bounded in bytes as well as lines: large answers to a stalled writer
        // must not grow memory without limit.
        if self.counters.queued_bytes.fetch_add(size, Relaxed) + size > BACKLOG_BYTES {
            self.counters.queued_bytes.fetch_sub(size, Relaxed);
            self.counters.dropped.fetch_add(1, Relaxed);
            return;
        }
        let mut bytes = Vec::with_capacity(size);
        bytes.extend_from_slice(reply);
        bytes.extend_from_slice(question);
        let entry = Entry { at: asked, src, transport, rcode, qtype, bytes: bytes.into(), reply_len: reply.len() };
        if self.sender.try_send(Message::Entry(entry)).is_err() {
            // Full (the writer is behind) or gone (it stopped after a panic): never wait.
            self.counters.queued_bytes.fetch_sub(size, Relaxed);
            self.counters.dropped.fetch_add(1, Relaxed);
        }
    }

    /// Asks the writer to reopen its file (SIGUSR1, after logrotate moved it away).
    pub fn reopen(&self) {
        // With the backlog full the request rides on a flag the writer reads after each line:
        // the signal handler never waits on a writer that may be stuck on a slow disk.
        if self.sender.try_send(Message::Reopen).is_err() {
            self.counters.reopen.store(true, Relaxed);
        }
    }
}

enum Sink {
    Stderr,
    File(PathBuf, File),
}

fn open_file(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

struct Writer {
    sink: Sink,
    out: Vec<u8>,
    snapshot: SharedSnapshot,
    counters: Arc<Counters>,
}

impl Writer {
    /// Until every sender is gone: every [`POLL`], take what is waiting, format it, and write
    /// it (sooner when the buffer fills).
    fn run(mut self, receiver: Receiver<Message>) {
        // A lower priority than the threads answering queries: on a busy core the scheduler
        // lets them run first, so a burst of formatting does not show in answer latency.
        // SAFETY: plain system calls on this thread's own id; a failure only leaves the
        // priority as it was.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, WRITER_NICE);
        }
        let mut clock = Clock::default();
        let mut fragments = Fragments::default();
        let mut scratch = String::with_capacity(256);
        loop {
            loop {
                match receiver.try_recv() {
                    Ok(Message::Entry(entry)) => {
                        self.counters.queued_bytes.fetch_sub(entry.bytes.len(), Relaxed);
                        let snapshot = self.snapshot.load();
                        let client = client_of(&snapshot, &entry.src);
                        format_entry(&entry, client, &mut clock, &mut fragments, &mut scratch, &mut self.out);
                        self.counters.written.fetch_add(1, Relaxed);
                        if self.out.len() >= BUFFER {
                            self.flush();
                        }
                    }
                    Ok(Message::Reopen) => {
                        self.flush();
                        self.reopen();
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.flush();
                        return;
                    }
                }
            }
            self.flush();
            if self.counters.reopen.swap(false, Relaxed) {
                self.reopen();
            }
            std::thread::sleep(POLL);
        }
    }

    fn flush(&mut self) {
        if self.out.is_empty() {
            return;
        }
        let written = match &mut self.sink {
            Sink::Stderr => io::stderr().lock().write_all(&self.out),
            Sink::File(_, file) => file.write_all(&self.out),
        };
        if let Err(error) = written {
            self.counters.errors.fetch_add(1, Relaxed);
            tracing::warn!(%error, "cannot write the query log; these lines are lost");
        }
        self.out.clear();
    }

    fn reopen(&mut self) {
        let Sink::File(path, file) = &mut self.sink else { return };
        match open_file(path) {
            Ok(reopened) => *file = reopened,
            Err(error) => {
                self.counters.errors.fetch_add(1, Relaxed);
                tracing::warn!(path = %path.display(), %error, "cannot reopen the query log; writing on to the file open before");
            }
        }
    }
}

/// Where a client is, as the log says it: the VPC of the subnet its address lies in.
#[derive(Default, Clone, Copy)]
struct Client<'a> {
    account: &'a str,
    region: &'a str,
    vpc: &'a str,
}

fn client_of<'a>(snapshot: &'a crate::snapshot::Snapshot, src: &SocketAddr) -> Client<'a> {
    let Some(placement) = snapshot.locator().locate(src.ip()).placement() else { return Client::default() };
    match (placement.kind, &placement.vpc) {
        (PlacementKind::Subnet, Some((vpc, account))) => Client { account, region: placement.region.as_deref().unwrap_or_default(), vpc },
        _ => Client::default(),
    }
}

/// The last second formatted, so a busy log formats a timestamp once a second.
#[derive(Default)]
struct Clock {
    second: u64,
    text: String,
}

impl Clock {
    fn format(&mut self, at: SystemTime) -> &str {
        let second = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if self.text.is_empty() || second != self.second {
            self.second = second;
            self.text = iso8601(second);
        }
        &self.text
    }
}

/// `2021-02-04T17:51:55Z` for a count of seconds since 1970 (UTC; the proleptic Gregorian
/// calendar, by the days-to-civil method of Howard Hinnant's "chrono-Compatible Low-Level
/// Date Algorithms").
pub fn iso8601(unix_secs: u64) -> String {
    let days = unix_secs / 86_400;
    let rem = unix_secs % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// What Resolver's `transport` says for each way in: `UDP` and `TCP` as Resolver writes them,
/// `DoH` as its inbound DoH endpoints do, `DoT` (Resolver has none) after the same pattern.
pub fn transport_name(transport: Transport) -> &'static str {
    match transport {
        Transport::Udp => "UDP",
        Transport::Tcp => "TCP",
        Transport::Tls => "DoT",
        Transport::Https => "DoH",
    }
}

/// The question and answers a reply holds, as hickory reads them; `None` where it cannot.
fn parse(bytes: &[u8], reply_len: usize) -> (Option<Query>, Vec<Record>) {
    let mut decoder = BinDecoder::new(&bytes[..reply_len.min(bytes.len())]);
    let Ok(header) = Header::read(&mut decoder) else { return (None, Vec::new()) };
    if header.counts.queries == 0 {
        // A bare header: the query's own question section follows the reply.
        let query = bytes.get(reply_len..).and_then(|q| Query::read(&mut BinDecoder::new(q)).ok());
        return (query, Vec::new());
    }
    let Ok(query) = Query::read(&mut decoder) else { return (None, Vec::new()) };
    for _ in 1..header.counts.queries {
        if Query::read(&mut decoder).is_err() {
            return (Some(query), Vec::new());
        }
    }
    let mut answers = Vec::with_capacity(usize::from(header.counts.answers));
    for _ in 0..header.counts.answers {
        match Record::read(&mut decoder) {
            Ok(record) => answers.push(record),
            Err(_) => break,
        }
    }
    (Some(query), answers)
}

/// The middle of recent lines, from `"query_name"` to the end of `"answers"`: everything a
/// reply's bytes decide. A busy server sends the same answer again and again (the ID and the
/// client aside), so a line is mostly a lookup here rather than a parse.
#[derive(Default)]
struct Fragments {
    map: crate::snapshot::FastMap<Box<[u8]>>,
    key: Vec<u8>,
}

/// Fragments kept before the cache starts over (forwarded answers' TTLs age, making new keys).
const FRAGMENTS: usize = 4096;

impl Fragments {
    /// Appends `entry`'s fragment to `out`, from the cache or parsed anew.
    fn write(&mut self, entry: &Entry, scratch: &mut String, out: &mut Vec<u8>) {
        // The reply after its ID (and the question a bare reply lacks), and the rcode sent
        // (an extended one lives in the OPT, which is in the bytes too).
        self.key.clear();
        self.key.extend_from_slice(&u16::from(entry.rcode).to_be_bytes());
        self.key.extend_from_slice(entry.bytes.get(2..).unwrap_or_default());
        if let Some(fragment) = self.map.get(self.key.as_slice()) {
            out.extend_from_slice(fragment);
            return;
        }
        let at = out.len();
        write_fragment(entry, scratch, out);
        if self.map.len() >= FRAGMENTS {
            self.map.clear();
        }
        self.map.insert(self.key.as_slice().into(), out[at..].into());
    }
}

/// Appends `entry`'s line (with its newline) to `out`: Resolver's fields in its example's
/// order, written straight into the buffer.
fn format_entry(entry: &Entry, client: Client<'_>, clock: &mut Clock, fragments: &mut Fragments, scratch: &mut String, out: &mut Vec<u8>) {
    use std::io::Write as _;
    out.extend_from_slice(b"{\"version\":\"");
    out.extend_from_slice(VERSION.as_bytes());
    out.extend_from_slice(b"\",\"account_id\":");
    json_str(out, client.account);
    out.extend_from_slice(b",\"region\":");
    json_str(out, client.region);
    out.extend_from_slice(b",\"vpc_id\":");
    json_str(out, client.vpc);
    out.extend_from_slice(b",\"query_timestamp\":");
    json_str(out, clock.format(entry.at));
    fragments.write(entry, scratch, out);
    // An address and a port need no escaping. Writing into a Vec cannot fail.
    let _ = write!(out, ",\"srcaddr\":\"{}\",\"srcport\":\"{}\",\"transport\":", entry.src.ip(), entry.src.port());
    json_str(out, transport_name(entry.transport));
    out.extend_from_slice(b",\"srcids\":{\"instance\":\"\"}}\n");
}

/// Appends the fields a reply's bytes decide, parsed with hickory: `"query_name"` to
/// `"answers"`, each with its leading comma.
fn write_fragment(entry: &Entry, scratch: &mut String, out: &mut Vec<u8>) {
    use std::fmt::Write as _;
    let (query, records) = parse(&entry.bytes, entry.reply_len);
    let mut text = |out: &mut Vec<u8>, value: &dyn std::fmt::Display| {
        scratch.clear();
        // Formatting into a String cannot fail.
        let _ = write!(scratch, "{value}");
        json_str(out, scratch);
    };
    out.extend_from_slice(b",\"query_name\":");
    match &query {
        Some(query) => text(out, query.name()),
        None => json_str(out, "-"),
    }
    out.extend_from_slice(b",\"query_type\":");
    match query.as_ref().map(Query::query_type).or(entry.qtype) {
        Some(qtype) => text(out, &TypeName(qtype)),
        None => json_str(out, "-"),
    }
    out.extend_from_slice(b",\"query_class\":");
    text(out, &ClassName(query.as_ref().map_or(DNSClass::IN, Query::query_class)));
    out.extend_from_slice(b",\"rcode\":");
    json_str(out, &rcode_name(entry.rcode));
    out.extend_from_slice(b",\"answers\":[");
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"Rdata\":");
        text(out, &record.data);
        out.extend_from_slice(b",\"Type\":");
        text(out, &TypeName(record.record_type()));
        out.extend_from_slice(b",\"Class\":");
        text(out, &ClassName(record.dns_class));
        out.push(b'}');
    }
    out.push(b']');
}

/// A type's mnemonic, or `TYPE<n>` for one without (RFC 3597 §5; hickory says "Unknown").
struct TypeName(RecordType);

impl std::fmt::Display for TypeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            RecordType::Unknown(n) => write!(f, "TYPE{n}"),
            known => write!(f, "{known}"),
        }
    }
}

/// A class's mnemonic, or `CLASS<n>` for one without (RFC 3597 §5).
struct ClassName(DNSClass);

impl std::fmt::Display for ClassName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            DNSClass::Unknown(n) => write!(f, "CLASS{n}"),
            known => write!(f, "{known}"),
        }
    }
}

/// Appends `text` as a JSON string (RFC 8259 §7: quote, backslash and control characters
/// escaped).
fn json_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    for &byte in text.as_bytes() {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1f => {
                let _ = write!(out, "\\u{byte:04x}");
            }
            _ => out.push(byte),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use hickory_proto::{
        op::{Message, MessageType, OpCode},
        rr::{Name, RData, rdata::PTR},
    };

    use super::*;

    /// Route 53's example record ("Route 53 VPC Resolver query log example"), less the three
    /// DNS Firewall fields, as hubdns writes it for the same query, answer and client.
    #[test]
    fn the_documented_example_is_written_field_for_field() {
        let name = Name::from_ascii("15.3.4.32.in-addr.arpa.").expect("name");
        let mut reply = Message::new(7, MessageType::Response, OpCode::Query);
        reply.add_query(Query::query(name.clone(), RecordType::PTR));
        // The example's Rdata is an address, though its type is PTR: a PTR's data is a name.
        let target = Name::from_ascii("203.0.113.9.").expect("name");
        reply.add_answer(Record::from_rdata(name, 300, RData::PTR(PTR(target))));
        let bytes = reply.to_vec().expect("encodes");
        let entry = Entry {
            at: UNIX_EPOCH + std::time::Duration::from_secs(1_612_461_115),
            src: "4.5.64.102:56067".parse().expect("addr"),
            transport: Transport::Udp,
            rcode: ResponseCode::NoError,
            qtype: Some(RecordType::PTR),
            reply_len: bytes.len(),
            bytes: bytes.into(),
        };
        let client = Client { account: "111122223333", region: "us-east-1", vpc: "vpc-7example" };
        let mut out = Vec::new();
        format_entry(&entry, client, &mut Clock::default(), &mut Fragments::default(), &mut String::new(), &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let ours: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        let documented = serde_json::json!({
            "srcaddr": "4.5.64.102",
            "vpc_id": "vpc-7example",
            "answers": [{"Rdata": "203.0.113.9.", "Type": "PTR", "Class": "IN"}],
            "query_name": "15.3.4.32.in-addr.arpa.",
            "query_class": "IN",
            "srcids": {"instance": ""},
            "rcode": "NOERROR",
            "query_type": "PTR",
            "transport": "UDP",
            "version": "1.100000",
            "account_id": "111122223333",
            "srcport": "56067",
            "query_timestamp": "2021-02-04T17:51:55Z",
            "region": "us-east-1"
        });
        assert_eq!(ours, documented);

        // The same answer under another ID, from the fragment cache: the same line.
        let mut fragments = Fragments::default();
        let mut bytes = entry.bytes.to_vec();
        let (mut first, mut again) = (Vec::new(), Vec::new());
        format_entry(&entry, client, &mut Clock::default(), &mut fragments, &mut String::new(), &mut first);
        bytes[..2].copy_from_slice(&[0xbe, 0xef]);
        let other = Entry { bytes: bytes.into(), ..entry };
        format_entry(&other, client, &mut Clock::default(), &mut fragments, &mut String::new(), &mut again);
        assert_eq!(fragments.map.len(), 1, "the second line's middle came from the cache");
        assert_eq!(String::from_utf8_lossy(&first), String::from_utf8_lossy(&again));
        assert_eq!(first, out);
    }

    #[test]
    fn a_bare_error_reply_is_logged_with_the_querys_question() {
        let query = {
            let mut m = Message::new(9, MessageType::Query, OpCode::Query);
            m.add_query(Query::query(Name::from_ascii("x.example.").expect("name"), RecordType::AAAA));
            m.to_vec().expect("encodes")
        };
        // FORMERR, header only: no question echoed.
        let mut reply = query[..12].to_vec();
        reply[2] |= 0x80;
        reply[3] = 1;
        reply[4..6].copy_from_slice(&[0, 0]);
        let (parsed, answers) = parse(&[&reply[..], &query[12..]].concat(), reply.len());
        assert_eq!(parsed.map(|q| (q.name().to_string(), q.query_type())), Some(("x.example.".to_owned(), RecordType::AAAA)));
        assert!(answers.is_empty());
    }

    #[test]
    fn types_and_classes_without_a_mnemonic_are_written_as_rfc_3597_says() {
        assert_eq!(TypeName(RecordType::Unknown(65280)).to_string(), "TYPE65280");
        assert_eq!(TypeName(RecordType::AAAA).to_string(), "AAAA");
        assert_eq!(ClassName(DNSClass::Unknown(300)).to_string(), "CLASS300");
        assert_eq!(ClassName(DNSClass::IN).to_string(), "IN");
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        // Resolver's example timestamp, and a leap day.
        assert_eq!(iso8601(1_612_461_115), "2021-02-04T17:51:55Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(4_107_542_399), "2100-02-28T23:59:59Z");
    }
}
