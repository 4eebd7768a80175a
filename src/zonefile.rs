//! Zone files for `[[zones]]`: RFC 1035 §5 master files read into records, served as a whole
//! zone as a Route 53 private hosted zone is (its SOA in negative answers, empty
//! non-terminals, wildcards, delegations forwarded to their glue).
//!
//! Every record is parsed by hickory's zone parser (`hickory_proto::serialize::txt::Parser`),
//! so each type's presentation format is hickory's. The parser is driven one entry at a time,
//! because as it stands (0.26) it reports no line numbers and refuses `$INCLUDE <file>
//! <origin>`, which RFC 1035 §5.1 allows. This module therefore splits the text into entries
//! itself — one line, or several joined by parentheses, comments dropped (§5.1) — and
//! handles the control entries: `$ORIGIN`, `$TTL` (RFC 2308 §4) and `$INCLUDE` with its
//! optional origin, which holds for the included file only ("a $INCLUDE entry never changes
//! the relative origin of the parent file", §5.1). A relative `$INCLUDE` path is taken from
//! the including file's directory. Each record entry goes to hickory with its owner made
//! absolute (a blank owner is the previous entry's, §5.1) and the TTL it defaults to (the
//! `$TTL`, else the last TTL given, as RFC 1035 §5.1 and BIND do; after an SOA without a TTL
//! before any, that SOA's MINIMUM, as BIND does). Any error names file:line.
//!
//! Once read, the zone is checked as BIND's `named-checkzone` would refuse it: data outside
//! the origin, a class other than IN, no SOA or more than one, no NS at the apex (RFC 1035
//! §5.2), a CNAME beside other data (RFC 1034 §3.6.2, RFC 2181 §10.1), an NS target inside a
//! delegation without addresses (its glue, RFC 1034 §4.2.1), and one of the zone's own name
//! servers named inside it without an address, or as a CNAME (RFC 2181 §10.3).
//!
//! The records are kept encoded (wire format with the owner relative to the origin, each
//! with its file and line, LZ4-compressed in blocks), not as parsed records: a zone of 100,000
//! names is held in about a megabyte between table builds, and decoded when a table is built.

use std::{
    borrow::Cow,
    collections::HashSet,
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use hickory_proto::{
    rr::{DNSClass, Name, RData, Record as WireRecord, RecordType},
    serialize::{
        binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder, NameEncoding},
        txt::{Parser, parse_ttl},
    },
};

use smallvec::SmallVec;

use crate::{
    name_key::name_key,
    origin::Origin,
    snapshot::{FastMap, Provenance, Record, SourceKind},
};

/// The text of a zone file's bytes. A byte that is not part of UTF-8 text (Latin-1 in a TXT
/// string, say) is written as its `\DDD` escape, which reads back as that byte (RFC 1035
/// §5.1): BIND reads master files as bytes, and loads such a file as it is.
fn escape_non_utf8(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            let bytes = error.into_bytes();
            let mut text = String::with_capacity(bytes.len() + 16);
            for chunk in bytes.utf8_chunks() {
                text.push_str(chunk.valid());
                for byte in chunk.invalid() {
                    // After a backslash that escapes it (`\<byte>`, the byte itself) the digits
                    // alone complete the escape.
                    let escaped = text.bytes().rev().take_while(|b| *b == b'\\').count() % 2 == 1;
                    let _ = if escaped { write!(text, "{byte:03}") } else { write!(text, "\\{byte:03}") };
                }
            }
            text
        }
    }
}

/// The name of a file's first `$ORIGIN` entry, when it is absolute: the zone's name, for a
/// file that cannot even be split into entries. Lines that begin inside a quoted string are
/// not entries, and a byte-order mark before the first is passed over.
fn first_origin(text: &str) -> Option<Name> {
    let mut quoted = false;
    for line in text.trim_start_matches('\u{feff}').lines() {
        if !quoted {
            let mut words = line.split_whitespace();
            if words.next().is_some_and(|w| w.eq_ignore_ascii_case("$ORIGIN")) {
                let name = words.next()?;
                return name.ends_with('.').then(|| Name::from_ascii(name).ok()).flatten();
            }
        }
        let mut escaped = false;
        for c in line.chars() {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => quoted = !quoted,
                (false, ';') if !quoted => break,
                _ => {}
            }
        }
    }
    None
}

/// How deep `$INCLUDE`s may nest.
const MAX_INCLUDE_DEPTH: usize = 16;

/// A zone file as read: its records, encoded, and what the forwarder needs of it.
#[derive(Debug, PartialEq)]
pub struct ZoneFile {
    /// The zone's apex.
    pub origin: Name,
    /// Every file read, the zone file first and then its includes; a record's file is an
    /// index into it.
    pub files: Vec<PathBuf>,
    /// The delegations inside the zone, each with its name servers' glue addresses.
    pub delegations: Vec<Delegation>,
    /// The records, in LZ4 blocks of about [`BLOCK`] bytes (size prepended). In a block,
    /// for each record: its file index (u16), line (u32) and length (u16), little endian,
    /// then the record in uncompressed wire format, its owner written relative to the origin
    /// ([`relative_owner`]).
    blocks: Vec<Box<[u8]>>,
    /// The origin in wire format, as spelled: what a relative owner ends with.
    origin_wire: Box<[u8]>,
    /// How many records `blocks` hold.
    count: usize,
}

/// A delegation inside a zone (NS records below its apex, RFC 1034 §4.2.1).
#[derive(Debug, Clone, PartialEq)]
pub struct Delegation {
    /// The zone cut.
    pub name: Name,
    /// The addresses of its name servers that the zone holds (glue, or the servers' own
    /// records elsewhere in the zone), port 53; empty when every server lies outside the zone.
    pub servers: Vec<SocketAddr>,
}

/// Why a zone file was refused: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct ZoneError {
    /// The file (the zone file or one it includes).
    pub file: PathBuf,
    /// 1-based line of the entry; 0 when the file as a whole is at fault.
    pub line: usize,
    /// What is wrong.
    pub message: String,
    /// Every file the reading had opened when it stopped (the faulty one among them): what to
    /// watch for a fix.
    pub read: Vec<PathBuf>,
    /// The zone's name as far as the reading got (the `origin` asked for, else the file's
    /// first `$ORIGIN`), so that a zone that did not load can still be answered for as one.
    /// Boxed: rarely there, and the error is returned through every reading step.
    pub apex: Option<Box<Name>>,
}

/// One entry of a master file: a line, or lines joined by parentheses.
#[derive(Debug, PartialEq)]
struct Entry<'a> {
    /// Where it starts.
    line: usize,
    /// Its text, parentheses and comments replaced by spaces; the line itself when it has
    /// neither (most do).
    text: Cow<'a, str>,
}

impl Entry<'_> {
    /// A blank owner field: the previous entry's owner (RFC 1035 §5.1).
    fn owner_blank(&self) -> bool {
        self.text.starts_with([' ', '\t'])
    }
}

/// Splits master-file text into entries (RFC 1035 §5.1): `;` starts a comment outside quotes,
/// parentheses join lines, `\` escapes the next character. `Err` holds a line and why.
fn entries(text: &str) -> Result<Vec<Entry<'_>>, (usize, &'static str)> {
    let mut out = Vec::new();
    // An entry being joined: its first line, text, open parentheses, and whether a quoted
    // string or an escape runs on to the next line.
    let (mut start, mut joined, mut depth, mut quoted, mut escaped) = (0usize, String::new(), 0usize, false, false);
    let mut open = false;
    for (i, line) in text.split('\n').enumerate() {
        let number = i + 1;
        if !open && !line.contains(['(', ')', ';', '"', '\\']) {
            let line = line.trim_end_matches('\r');
            if !line.trim().is_empty() {
                out.push(Entry { line: number, text: Cow::Borrowed(line) });
            }
            continue;
        }
        if open {
            joined.push(if quoted || escaped { '\n' } else { ' ' });
        } else {
            (open, start) = (true, number);
            joined.clear();
        }
        escaped = false;
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    joined.push(c);
                    match chars.next() {
                        Some(next) => joined.push(next),
                        None => escaped = true,
                    }
                }
                '"' => {
                    quoted = !quoted;
                    joined.push(c);
                }
                // The comment runs to the end of the line.
                ';' if !quoted => break,
                '(' if !quoted => {
                    depth += 1;
                    joined.push(' ');
                }
                ')' if !quoted => {
                    depth = depth.checked_sub(1).ok_or((number, "`)` without a `(` before it"))?;
                    joined.push(' ');
                }
                '\r' => joined.push(' '),
                _ => joined.push(c),
            }
        }
        if depth == 0 && !quoted && !escaped {
            open = false;
            if !joined.trim().is_empty() {
                out.push(Entry { line: start, text: Cow::Owned(std::mem::take(&mut joined)) });
            }
        }
    }
    if open && quoted {
        return Err((start, "a quoted string is not closed"));
    }
    if open && depth > 0 {
        return Err((start, "a `(` is not closed"));
    }
    Ok(out)
}


/// The fields of a record entry after its owner (RFC 1035 §5.1: `[<TTL>] [<class>] <type>
/// <RDATA>`, TTL and class in either order): the TTL it gives itself, if any, its type as
/// written, and its data. Owner, TTL and class hold no quotes, so words are enough.
struct Fields<'e> {
    ttl: Option<u32>,
    rtype: &'e str,
    data: &'e str,
}

impl<'e> Fields<'e> {
    fn of(entry: &'e Entry<'_>) -> Self {
        let mut rest = entry.text.trim_start();
        if !entry.owner_blank() {
            rest = rest.find(char::is_whitespace).map_or("", |end| &rest[end..]);
        }
        let mut ttl = None;
        loop {
            rest = rest.trim_start();
            let (word, after) = rest.split_at(rest.find(char::is_whitespace).unwrap_or(rest.len()));
            match parse_ttl(word) {
                Ok(given) if ttl.is_none() => ttl = Some(given),
                _ if matches!(word.to_ascii_uppercase().as_str(), "IN" | "CH" | "HS" | "CS" | "NONE" | "ANY") => {}
                _ => return Self { ttl, rtype: word, data: after },
            }
            rest = after;
        }
    }

    fn is_txt(&self) -> bool {
        self.rtype.eq_ignore_ascii_case("TXT")
    }
}

/// What the digits of a `\ddd` escape in a character string mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Three decimal digits, one octet (RFC 1035 §5.1): zone files.
    Decimal,
    /// Three octal digits, one octet: how Route 53 writes TXT values.
    Octal,
}

/// TXT data from its presentation form: character strings, each quoted or a bare word, where
/// `\ddd` is one octet and `\x` is `x` — byte by byte, so `"caf\195\169"` (decimal) is the
/// UTF-8 of `café`. hickory 0.26's parser reads `\ddd` as a character, not an octet, so TXT is
/// read here. A string over 255 bytes is refused: a character string holds at most 255 octets
/// (RFC 1035 §3.3). BIND refuses such a zone file, and Route 53 such a value
/// (`CharacterStringTooLong`); the long text has to be written as several strings.
pub fn txt_rdata(value: &str, escape: Escape) -> Result<RData, String> {
    let (radix, top, digits_are) = match escape {
        Escape::Decimal => (10u16, b'9', "decimal"),
        Escape::Octal => (8u16, b'7', "octal"),
    };
    let mut strings: Vec<Vec<u8>> = Vec::new();
    let mut bytes = value.bytes().peekable();
    while let Some(&first) = bytes.peek() {
        if first.is_ascii_whitespace() {
            bytes.next();
            continue;
        }
        let quoted = first == b'"';
        if quoted {
            bytes.next();
        }
        let mut string = Vec::new();
        loop {
            match bytes.next() {
                None if quoted => return Err("a quoted string is not closed".into()),
                None => break,
                Some(b'"') if quoted => break,
                Some(b) if !quoted && (b.is_ascii_whitespace() || b == b'"') => break,
                Some(b'\\') => match bytes.next() {
                    Some(d) if d.is_ascii_digit() => {
                        let digits = [d, bytes.next().ok_or("a cut escape")?, bytes.next().ok_or("a cut escape")?];
                        if !digits.iter().all(|d| (b'0'..=top).contains(d)) {
                            return Err(format!("`\\{}` is no escape of three {digits_are} digits", String::from_utf8_lossy(&digits)));
                        }
                        let octet = digits.iter().fold(0u16, |acc, d| acc * radix + u16::from(d - b'0'));
                        string.push(u8::try_from(octet).map_err(|_| format!("`\\{}` is more than a byte", String::from_utf8_lossy(&digits)))?);
                    }
                    Some(other) => string.push(other),
                    None => return Err("a cut escape".into()),
                },
                Some(b) => string.push(b),
            }
        }
        if string.len() > 255 {
            return Err(format!("a string of {} bytes: a TXT string holds at most 255 (RFC 1035 §3.3); write it as several", string.len()));
        }
        strings.push(string);
    }
    if strings.is_empty() {
        return Err("no text".into());
    }
    Ok(RData::TXT(hickory_proto::rr::rdata::TXT::from_bytes(strings.iter().map(Vec::as_slice).collect())))
}


/// An entry as hickory 0.26's parser reads it right. RFC 1035 §5.1's `\DDD` is one octet in
/// decimal, but hickory reads it as octal in names (`\065` would be `5`, not `A`) and as
/// nonsense inside quotes; and it takes `@` for the origin only as an owner, not inside data
/// (`@ MX 10 @`, which BIND reads). So, outside quotes, `\DDD` becomes the character itself
/// when it is a letter, digit, `-`, `_` or `*`, and else hickory's octal escape of the same
/// octet; inside quotes, a printable ASCII octet becomes the character (escaped when it is
/// `"` or `\`). A word `@` becomes `origin`. `Err` names an escape hickory cannot carry:
/// an octet over 127 or a control character inside quotes (TXT data, read by [`txt_rdata`],
/// is exempt: the caller passes `quoted_bytes_ok`).
fn for_hickory<'t>(text: &'t str, origin: Option<&str>, quoted_bytes_ok: bool) -> Result<Cow<'t, str>, String> {
    if !text.contains(['\\', '@']) {
        return Ok(Cow::Borrowed(text));
    }
    let mut out = String::with_capacity(text.len() + 16);
    let bytes = text.as_bytes();
    let (mut i, mut quoted) = (0, false);
    while i < bytes.len() {
        let c = bytes[i];
        let word_start = i == 0 || bytes[i - 1].is_ascii_whitespace();
        let word_end = bytes.get(i + 1).is_none_or(u8::is_ascii_whitespace);
        match c {
            b'"' => {
                quoted = !quoted;
                out.push('"');
                i += 1;
            }
            b'@' if !quoted && word_start && word_end && origin.is_some() => {
                out.push_str(origin.unwrap_or_default());
                i += 1;
            }
            b'\\' if bytes.get(i + 1..i + 4).is_some_and(|d| d.iter().all(u8::is_ascii_digit)) => {
                let digits = &text[i + 1..i + 4];
                let octet: u8 = digits.parse().map_err(|_| format!("`\\{digits}` is more than a byte (RFC 1035 §5.1: \\DDD is decimal)"))?;
                let plain = octet.is_ascii_alphanumeric() || matches!(octet, b'-' | b'_' | b'*');
                match (quoted, octet) {
                    (false, _) if plain => out.push(char::from(octet)),
                    (false, _) => {
                        let _ = write!(out, "\\{octet:03o}");
                    }
                    (true, b'"' | b'\\') => {
                        out.push('\\');
                        out.push(char::from(octet));
                    }
                    (true, 0x20..=0x7e) => out.push(char::from(octet)),
                    (true, _) if quoted_bytes_ok => out.push('?'),
                    (true, _) => return Err(format!("`\\{digits}` inside quotes: only TXT data may hold octets outside printable ASCII here")),
                }
                i += 4;
            }
            b'\\' => {
                // `\X`: the character itself, escaped; hickory reads that as BIND does.
                let end = i + 1 + text[i + 1..].chars().next().map_or(0, char::len_utf8);
                out.push_str(&text[i..end]);
                i = end;
            }
            _ => {
                let end = i + text[i..].chars().next().map_or(1, char::len_utf8);
                out.push_str(&text[i..end]);
                i = end;
            }
        }
    }
    Ok(Cow::Owned(out))
}

/// A record's type, file and line, as the checks see it.
type Seen = (RecordType, usize, u32);

/// What the checks need to know of one name: its records' types (with file and line) and
/// its addresses (for glue). One entry per name, inline for the common single record: a map
/// per fact, each with its own key and vector, was a third of reading a 100,000-record zone.
#[derive(Default)]
struct NameFacts {
    types: SmallVec<[Seen; 1]>,
    addresses: SmallVec<[IpAddr; 1]>,
}

/// The reading of one zone: its state across entries and files.
struct Reader {
    files: Vec<PathBuf>,
    /// The `$TTL` in force (RFC 2308 §4).
    default_ttl: Option<u32>,
    /// The TTL of the last record, the default without `$TTL` (RFC 1035 §5.1).
    last_ttl: Option<u32>,
    /// The last record's owner, for a blank owner field.
    last_owner: Option<Name>,
    /// The last record entry's owner as absolute text, for the entries parsed together.
    last_owner_text: Option<String>,
    /// Record entries read but not yet parsed: parsed together, on both cores, then kept in
    /// order.
    pending: Vec<Job>,
    /// What [`Reader::flush`] parses them into, on this thread and the other; kept for reuse.
    parsed: (Vec<ParseResult>, Vec<ParseResult>),
    /// A full batch being parsed on a thread of its own while the next is read, with the file
    /// and line of its first entry.
    in_flight: Option<(std::thread::JoinHandle<ParsedBatch>, usize, usize)>,
    /// The vector of the batch kept last, emptied: the next batch's, not grown afresh.
    spare: Vec<Job>,
    /// The apex: the configured origin, else the first `$ORIGIN`, else the owner of a first
    /// record that is an SOA.
    apex: Option<Name>,
    /// The block being filled.
    encoded: Vec<u8>,
    /// The blocks filled, compressed.
    blocks: Vec<Box<[u8]>>,
    count: usize,
    scratch: Vec<u8>,
    /// By name key, what the checks need once the file is read.
    seen: FastMap<NameFacts>,
    /// NS targets by the owner of the NS, for glue.
    ns: Vec<(Name, Name, usize, u32)>,
    /// The apex in wire form, once it is known (owners are kept relative to it).
    apex_wire: Vec<u8>,
    /// The first SOA or CNAME at each name, encoded, to see a repeat of it.
    singletons: FastMap<Box<[u8]>>,
}

impl ZoneFile {
    /// Reads the zone file at `path` with `origin` (else the file's first `$ORIGIN`) as its
    /// apex.
    pub fn load(path: &Path, origin: Option<&Name>) -> Result<Self, ZoneError> {
        let mut reader = Reader {
            files: Vec::new(),
            default_ttl: None,
            last_ttl: None,
            last_owner: None,
            last_owner_text: None,
            pending: Vec::new(),
            parsed: (Vec::new(), Vec::new()),
            in_flight: None,
            spare: Vec::new(),
            apex: origin.cloned().map(|mut o| {
                o.set_fqdn(true);
                o
            }),
            encoded: Vec::new(),
            blocks: Vec::new(),
            count: 0,
            scratch: Vec::new(),
            seen: FastMap::default(),
            ns: Vec::new(),
            apex_wire: Vec::new(),
            singletons: FastMap::default(),
        };
        let delegations = match reader.read(path, origin.cloned(), 0).and_then(|()| reader.flush()).and_then(|()| reader.check()) {
            Ok(delegations) => delegations,
            Err(mut error) => {
                error.read = reader.files;
                error.apex = reader.apex.map(Box::new);
                if !error.read.contains(&error.file) {
                    error.read.push(error.file.clone());
                }
                return Err(error);
            }
        };
        reader.seal();
        let Reader { files, mut blocks, count, apex, .. } = reader;
        blocks.shrink_to_fit();
        let origin = apex.ok_or_else(|| ZoneError { file: path.to_owned(), line: 0, message: "the zone has no origin".into(), read: Vec::new(), apex: None })?;
        let origin_wire = wire_name(&origin).into_boxed_slice();
        Ok(Self { origin, files, delegations, blocks, origin_wire, count })
    }

    /// How many records the zone holds.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the zone holds no record (never true of a zone that loaded: it has an SOA).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The records with the file (index into [`ZoneFile::files`]) and line each came from.
    pub fn wire_records(&self) -> impl Iterator<Item = (usize, u32, WireRecord)> + '_ {
        self.wire_records_of(&self.blocks)
    }

    /// [`ZoneFile::wire_records`] of some of the blocks.
    fn wire_records_of<'z>(&'z self, blocks: &'z [Box<[u8]>]) -> impl Iterator<Item = (usize, u32, WireRecord)> + 'z {
        blocks.iter().flat_map(|block| {
            // Compressed by `Reader::seal`, so it decompresses; a block that did not would be
            // skipped rather than stop the zone.
            let plain = lz4_flex::block::decompress_size_prepended(block).unwrap_or_default();
            self.block_records(plain)
        })
    }

    /// The records of one decompressed block.
    fn block_records(&self, block: Vec<u8>) -> impl Iterator<Item = (usize, u32, WireRecord)> + '_ {
        let mut at = 0;
        let mut whole = Vec::new();
        std::iter::from_fn(move || {
            while at + 8 <= block.len() {
                let head = &block[at..at + 8];
                let file = usize::from(u16::from_le_bytes([head[0], head[1]]));
                let line = u32::from_le_bytes([head[2], head[3], head[4], head[5]]);
                let len = usize::from(u16::from_le_bytes([head[6], head[7]]));
                let body = block.get(at + 8..at + 8 + len)?;
                at += 8 + len;
                whole.clear();
                absolute_owner(body, &self.origin_wire, &mut whole);
                // Encoded by `Reader::keep` from a record hickory parsed, so it decodes; a
                // record that did not would be skipped rather than stop the zone.
                if let Ok(record) = WireRecord::read(&mut BinDecoder::new(&whole)) {
                    return Some((file, line, record));
                }
            }
            None
        })
    }

    /// The records as the table takes them, each with its file and line as provenance
    /// (`zone corp.zone:12`).
    pub fn records(&self) -> impl Iterator<Item = Record> + '_ {
        self.records_of(&self.blocks, self.origins())
    }

    /// Every record, as [`ZoneFile::records`] gives them, the blocks decoded on two threads
    /// when there are many (each block is compressed on its own): 50 ms for 100,000 records
    /// on one, on the path to the first answer.
    pub fn all_records(&self) -> Vec<Record> {
        let origins = self.origins();
        if self.blocks.len() < 8 {
            return self.records_of(&self.blocks, origins).collect();
        }
        let (mine, theirs) = self.blocks.split_at(self.blocks.len() / 2);
        // Blocks hold about as many records each: the other half's vector sized from that, not
        // grown (and copied, and faulted in afresh) by doubling.
        let their_share = self.count * theirs.len() / self.blocks.len() + 64;
        std::thread::scope(|scope| {
            let other = scope.spawn(|| {
                let mut records = Vec::with_capacity(their_share);
                records.extend(self.records_of(theirs, origins.clone()));
                records
            });
            let mut records: Vec<Record> = Vec::with_capacity(self.count);
            records.extend(self.records_of(mine, origins.clone()));
            // Decoding does not panic; if it ever did, that half is decoded again here.
            records.extend(other.join().unwrap_or_else(|_| self.records_of(theirs, origins.clone()).collect()));
            records
        })
    }

    /// One provenance origin per file, shared by its records.
    fn origins(&self) -> Vec<Origin> {
        self.files.iter().map(|f| Origin::from(format!("zone {}", f.display()))).collect()
    }

    /// The records of some of the blocks, with their provenance.
    fn records_of<'z>(&'z self, blocks: &'z [Box<[u8]>], origins: Vec<Origin>) -> impl Iterator<Item = Record> + 'z {
        self.wire_records_of(blocks).map(move |(file, line, record)| Record {
            name: record.name,
            ttl: record.ttl,
            data: record.data,
            provenance: Provenance { source: SourceKind::Config, origin: origins[file].clone(), line },
            weight: None,
            az: None,
        })
    }
}

/// `name` in uncompressed wire format, as spelled.
fn wire_name(name: &Name) -> Vec<u8> {
    let mut wire = Vec::with_capacity(name.len() + 2);
    crate::name_key::write_spelled(name, &mut wire);
    wire
}

/// Marks an owner written whole in [`relative_owner`]'s output: no label is this long.
const WHOLE_OWNER: u8 = 0xff;

/// `record` (uncompressed wire format) with its owner written relative to `origin` (wire
/// format): the owner's labels above the origin, then a 0 byte. An owner that does not end
/// with the origin as spelled follows [`WHOLE_OWNER`] whole. Saves the origin's bytes on each
/// record.
fn relative_owner(record: &[u8], origin: &[u8]) -> Vec<u8> {
    let mut owner_len = 0;
    while let Some(&len) = record.get(owner_len) {
        owner_len += 1 + usize::from(len);
        if len == 0 {
            break;
        }
    }
    let (owner, rest) = record.split_at(owner_len.min(record.len()));
    let mut out = Vec::with_capacity(record.len() + 1);
    match owner.strip_suffix(origin) {
        Some(above) => {
            out.extend_from_slice(above);
            out.push(0);
        }
        None => {
            out.push(WHOLE_OWNER);
            out.extend_from_slice(owner);
        }
    }
    out.extend_from_slice(rest);
    out
}

/// The record [`relative_owner`] wrote, whole again, appended to `out`.
fn absolute_owner(body: &[u8], origin: &[u8], out: &mut Vec<u8>) {
    if let Some(whole) = body.strip_prefix(&[WHOLE_OWNER]) {
        out.extend_from_slice(whole);
        return;
    }
    let mut at = 0;
    while let Some(&len) = body.get(at) {
        if len == 0 {
            break;
        }
        at += 1 + usize::from(len);
    }
    let at = at.min(body.len());
    out.extend_from_slice(&body[..at]);
    out.extend_from_slice(origin);
    out.extend_from_slice(body.get(at + 1..).unwrap_or_default());
}

/// A record entry ready for hickory, with everything it needs from the entries before it.
struct Job {
    file: usize,
    line: usize,
    /// The entry as written (its TXT data and TTL field are read from it).
    entry: String,
    /// What hickory parses: the default TTL, the owner, the entry.
    input: String,
    origin: Name,
    /// Neither `$TTL` nor an earlier TTL was known (only an SOA may then go without one).
    no_default_ttl: bool,
}

impl Job {
    /// Whether its record has no TTL at all: none given, none to default to. An SOA then
    /// takes its MINIMUM (`parse_job`), which becomes the default (`keep_parsed`).
    fn without_ttl(&self) -> bool {
        self.no_default_ttl && Fields::of(&Entry { line: self.line, text: Cow::Borrowed(&self.entry) }).ttl.is_none()
    }
}

/// What parsing one entry gave.
type ParseResult = Result<WireRecord, String>;

/// A batch of entries and, in the same order, what parsing each gave.
type ParsedBatch = (Vec<Job>, Vec<ParseResult>);

/// How many bytes of encoded records are compressed together: large enough for LZ4 to find
/// the repeats between records (owners, TTLs, address prefixes), small enough that a build
/// decompresses one block at a time.
const BLOCK: usize = 64 * 1024;

/// How many read entries wait before they are parsed.
const BATCH: usize = 16_384;


/// A control entry's words: split at blanks outside double quotes; a quoted word (a file name
/// with a space) is what is inside its quotes, `\x` standing for `x`, as BIND reads it.
fn control_words(text: &str) -> Vec<String> {
    let (mut words, mut word, mut quoted, mut escaped, mut started) = (Vec::new(), String::new(), false, false, false);
    for c in text.chars() {
        if escaped {
            word.push(c);
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            (quoted, started) = (!quoted, true);
        } else if c.is_whitespace() && !quoted {
            if started {
                words.push(std::mem::take(&mut word));
            }
            started = false;
        } else {
            word.push(c);
            started = true;
        }
    }
    if started {
        words.push(word);
    }
    words
}

/// How many fields the data of a type with a fixed layout has. hickory's parser reads the
/// fields it needs and drops any after them, so `www A 10.0.0.1 10.0.0.2` would serve one
/// address; BIND refuses such a line ("extra input text"), and so does hubdns. Types whose
/// data may run over any number of words (TXT, hex and base64 split by blanks) are left out.
fn fixed_fields(rtype: RecordType) -> Option<usize> {
    match rtype {
        // RFC 1035 §3.3.1, §3.3.11, §3.3.12, §3.4.1; RFC 3596 §2.4.
        RecordType::A | RecordType::AAAA | RecordType::NS | RecordType::CNAME | RecordType::PTR => Some(1),
        // RFC 1035 §3.3.2 (two character strings), §3.3.9.
        RecordType::HINFO | RecordType::MX => Some(2),
        // RFC 8659 §4.1.1: flags, tag, value.
        RecordType::CAA => Some(3),
        // RFC 2782: priority, weight, port, target.
        RecordType::SRV => Some(4),
        // RFC 3403 §4.1.
        RecordType::NAPTR => Some(6),
        // RFC 1035 §3.3.13.
        RecordType::SOA => Some(7),
        _ => None,
    }
}

/// How many fields `data` holds: words split at blanks outside double quotes and not escaped
/// (RFC 1035 §5.1: `\x` stands for `x`).
fn field_count(data: &str) -> usize {
    let (mut count, mut in_word, mut quoted, mut escaped) = (0, false, false, false);
    for c in data.chars() {
        let blank = c.is_whitespace() && !quoted && !escaped;
        if !blank && !in_word {
            count += 1;
        }
        in_word = !blank;
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            _ => {}
        }
    }
    count
}

/// The name a `$ORIGIN` or `$INCLUDE` gives as origin: relative to the one in force, and `@`
/// for that one itself (RFC 1035 §5.1's "@ … denotes the current origin"; BIND reads it so).
fn origin_named(text: &str, origin: Option<&Name>) -> Result<Name, String> {
    match (text, origin) {
        ("@", Some(origin)) => Ok(origin.clone()),
        ("@", None) => Err("`@` is the origin, and there is none before it".into()),
        _ => Name::parse(text, origin).map_err(|e| e.to_string()),
    }
}

/// Parses one record entry with hickory, and reads what hickory reads wrong.
fn parse_job(job: &Job) -> Result<WireRecord, String> {
    let entry = Entry { line: job.line, text: Cow::Borrowed(&job.entry) };
    let (_, sets) = Parser::new(job.input.as_str(), None, Some(job.origin.clone())).parse().map_err(|e| e.to_string())?;
    let mut records = sets.into_values().flat_map(|set| set.into_iter());
    let mut record = records.next().ok_or("no record")?;
    let fields = Fields::of(&entry);
    if job.without_ttl() {
        match &record.data {
            // Without any TTL, an SOA takes its MINIMUM, as BIND does (RFC 1035 §5.1 gives
            // no default).
            RData::SOA(soa) => record.ttl = soa.minimum,
            _ => return Err("no TTL: give one, or a $TTL before it (RFC 2308 §4)".into()),
        }
    }
    // A TTL with the top bit set means 0 (RFC 2181 §8).
    if record.ttl > i32::MAX as u32 {
        record.ttl = 0;
    }
    if record.record_type() == RecordType::TXT {
        record.data = txt_rdata(fields.data, Escape::Decimal)?;
    }
    if let Some(expected) = fixed_fields(record.record_type()) {
        let given = field_count(fields.data);
        if given != expected {
            return Err(format!("{} data of {given} fields, where it has {expected}: the rest would be lost (BIND refuses it too)", record.record_type()));
        }
    }
    if record.dns_class != DNSClass::IN {
        return Err(format!("class {}: only IN is served", record.dns_class));
    }
    Ok(record)
}

impl Reader {
    fn error(&self, file: &Path, line: usize, message: impl Into<String>) -> ZoneError {
        ZoneError { file: file.to_owned(), line, message: message.into(), read: Vec::new(), apex: None }
    }

    /// Reads one file with `origin` as its relative origin; `depth` counts the `$INCLUDE`s
    /// that led here.
    fn read(&mut self, path: &Path, mut origin: Option<Name>, depth: usize) -> Result<(), ZoneError> {
        if self.files.len() >= usize::from(u16::MAX) {
            return Err(self.error(path, 0, "too many included files"));
        }
        // A regular file only: a FIFO would hang the load, /dev/zero fill memory.
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Err(self.error(path, 0, "not a regular file")),
            Err(e) => return Err(self.error(path, 0, format!("cannot read: {e}"))),
        }
        let bytes = std::fs::read(path).map_err(|e| self.error(path, 0, format!("cannot read: {e}")))?;
        let text = escape_non_utf8(bytes);
        let file = self.files.len();
        self.files.push(path.to_owned());
        let entries = match entries(&text) {
            Ok(entries) => entries,
            Err((line, why)) => {
                // The zone's name even so, from its first `$ORIGIN`, so that a zone that does
                // not load is still answered for as one (SERVFAIL), not sent upstream.
                if self.apex.is_none() {
                    self.apex = first_origin(&text);
                }
                return Err(self.error(path, line, why));
            }
        };
        // At most a name per entry: the checks' map is sized once, not rehashed as it grows.
        self.seen.reserve(entries.len());
        let mut origin_text = origin.as_ref().map(ToString::to_string);
        for entry in entries {
            let at = |message: String| ZoneError { file: path.to_owned(), line: entry.line, message, read: Vec::new(), apex: None };
            if !entry.owner_blank() && entry.text.starts_with('$') {
                // Faults are reported in file order: the records before a control entry are
                // parsed and kept before it is read.
                self.flush()?;
                let words = control_words(&entry.text);
                let directive = words.first().map(|w| w.to_ascii_uppercase()).unwrap_or_default();
                let args: Vec<&str> = words.iter().skip(1).map(String::as_str).collect();
                match (directive.as_str(), args.as_slice()) {
                    ("$ORIGIN", [name]) => {
                        let name = origin_named(name, origin.as_ref()).map_err(|e| at(format!("$ORIGIN {name}: {e}")))?;
                        if !name.is_fqdn() {
                            return Err(at(format!("$ORIGIN {name} is relative and there is no origin before it")));
                        }
                        self.apex.get_or_insert_with(|| name.clone());
                        origin_text = Some(name.to_string());
                        origin = Some(name);
                    }
                    ("$TTL", [ttl]) => self.default_ttl = Some(parse_ttl(ttl).map_err(|e| at(format!("$TTL {ttl}: {e}")))?),
                    ("$INCLUDE", [file, rest @ ..]) if rest.len() <= 1 => {
                        if depth >= MAX_INCLUDE_DEPTH {
                            return Err(at(format!("$INCLUDE nested more than {MAX_INCLUDE_DEPTH} deep")));
                        }
                        let included = path.parent().unwrap_or(Path::new(".")).join(file);
                        // Named at the entry that asks for it, as BIND does; kept in the list of
                        // files read, so that its appearing is a change a reload looks for.
                        if let Err(e) = std::fs::metadata(&included) {
                            self.files.push(included.clone());
                            return Err(at(format!("$INCLUDE {file}: cannot read {}: {e}", included.display())));
                        }
                        let included_origin = match rest.first() {
                            Some(name) => Some(origin_named(name, origin.as_ref()).map_err(|e| at(format!("$INCLUDE origin {name}: {e}")))?),
                            None => origin.clone(),
                        };
                        // The included file starts with this one's owner, and its owners do not
                        // carry back: BIND reads a blank owner so on either side (§5.1 says only
                        // that an $INCLUDE never changes the parent's origin).
                        let (owner, owner_text) = (self.last_owner.clone(), self.last_owner_text.clone());
                        self.read(&included, included_origin, depth + 1)?;
                        self.flush()?;
                        (self.last_owner, self.last_owner_text) = (owner, owner_text);
                    }
                    _ => {
                        return Err(at(format!(
                            "`{}`: the control entries are $ORIGIN <name>, $TTL <ttl> and $INCLUDE <file> [<origin>] (RFC 1035 §5.1, RFC 2308 §4)",
                            entry.text.trim()
                        )));
                    }
                }
                continue;
            }
            if entry.owner_blank() && entry.text.trim_start().starts_with('$') {
                // BIND reads it as a record of type `$…` and refuses it too; say why.
                self.flush()?;
                return Err(at(format!("`{}`: a control entry starts at the beginning of its line (RFC 1035 §5.1)", entry.text.trim())));
            }
            let job = self.job(file, &entry, origin.as_ref(), &origin_text).map_err(at);
            match job {
                // A record before any TTL is kept before the next is read: an SOA's MINIMUM
                // may become the default (`keep_parsed`).
                Ok(Some(job)) if job.no_default_ttl => {
                    self.pending.push(job);
                    self.flush()?;
                }
                Ok(Some(job)) => self.pending.push(job),
                // An entry that depends on the record before it is parsed after it.
                Ok(None) => {
                    self.flush()?;
                    let job = self.job(file, &entry, origin.as_ref(), &origin_text).map_err(at)?;
                    self.pending.extend(job);
                    self.flush()?;
                }
                Err(error) => {
                    // Faults are reported in file order: the entries before this one first.
                    self.flush()?;
                    return Err(error);
                }
            }
            if self.pending.len() >= BATCH {
                self.submit(path)?;
            }
        }
        Ok(())
    }

    /// The job for a record entry; `None` when it needs the record before it parsed first
    /// (a blank owner after `$ORIGIN` changed, or no TTL known yet).
    fn job(&mut self, file: usize, entry: &Entry, origin: Option<&Name>, origin_text: &Option<String>) -> Result<Option<Job>, String> {
        let fields = Fields::of(entry);
        let text = for_hickory(&entry.text, origin_text.as_deref(), fields.is_txt())?;
        let given_ttl = fields.ttl;
        let default_ttl = self.default_ttl.or(self.last_ttl);
        let mut input = String::with_capacity(text.len() + 64);
        let _ = writeln!(input, "$TTL {}", default_ttl.unwrap_or(0));
        if entry.owner_blank() {
            let owner = match (&self.last_owner_text, self.settled()) {
                (Some(owner), _) => owner.clone(),
                (None, false) => return Ok(None),
                (None, true) => self.last_owner.as_ref().map(ToString::to_string).ok_or("the owner is left blank, but no record names one before it")?,
            };
            input.push_str(&owner);
        } else {
            // The owner as absolute text, for a blank owner after it.
            let word = text.split_whitespace().next().unwrap_or_default();
            self.last_owner_text = match (word.ends_with('.') && !word.ends_with("\\."), origin_text) {
                (true, _) => Some(word.to_owned()),
                (false, Some(origin)) if origin == "." => Some(format!("{word}.")),
                (false, Some(origin)) => Some(format!("{word}.{origin}")),
                (false, None) => None,
            };
        }
        if default_ttl.is_none() && given_ttl.is_none() && !self.settled() {
            return Ok(None);
        }
        input.push_str(&text);
        input.push('\n');
        if given_ttl.is_some() {
            self.last_ttl = given_ttl;
        }
        Ok(Some(Job {
            file,
            line: entry.line,
            entry: entry.text.to_string(),
            input,
            // hickory needs an origin even when every name is absolute.
            origin: origin.cloned().unwrap_or_else(Name::root),
            no_default_ttl: default_ttl.is_none(),
        }))
    }

    /// Whether every entry read so far is kept: the last record's owner and TTL are known.
    fn settled(&self) -> bool {
        self.pending.is_empty() && self.in_flight.is_none()
    }

    /// Hands a full batch to a thread of its own, to be parsed while this one reads the next,
    /// and keeps the batch handed over before it. Reading, parsing and keeping then overlap on
    /// the two cores, where [`Reader::flush`] leaves one idle while entries are read and kept.
    fn submit(&mut self, path: &Path) -> Result<(), ZoneError> {
        let (file, line) = self.pending.first().map_or((0, 0), |job| (job.file, job.line));
        let jobs = std::mem::replace(&mut self.pending, std::mem::take(&mut self.spare));
        let mut out = std::mem::take(&mut self.parsed.1);
        let handle = std::thread::Builder::new()
            .name("hubdns-zone".into())
            .spawn(move || {
                out.extend(jobs.iter().map(parse_job));
                (jobs, out)
            })
            .map_err(|e| self.error(path, line, format!("cannot start a thread to parse the zone: {e}")))?;
        match self.in_flight.replace((handle, file, line)) {
            // The owner and TTL a blank field takes are the reading's own until all is kept.
            Some(previous) => self.keep_in_flight(previous, false),
            None => Ok(()),
        }
    }

    /// Keeps the batch parsed on its own thread; `track_last`: its last record's owner and
    /// TTL become the reading's.
    fn keep_in_flight(&mut self, (handle, file, line): (std::thread::JoinHandle<ParsedBatch>, usize, usize), track_last: bool) -> Result<(), ZoneError> {
        let Ok((mut jobs, mut parsed)) = handle.join() else {
            // A panic in hickory's parser is a fault of its batch.
            let file = self.files.get(file).cloned().unwrap_or_default();
            return Err(ZoneError { file, line, message: "the zone parser failed".into(), read: Vec::new(), apex: None });
        };
        self.keep_parsed(&jobs, &mut parsed, track_last)?;
        jobs.clear();
        self.spare = jobs;
        self.parsed.1 = parsed;
        Ok(())
    }

    /// Keeps `parsed` (the records of `jobs`, in order), draining it; the first fault in file
    /// order is the error.
    fn keep_parsed(&mut self, jobs: &[Job], parsed: &mut Vec<ParseResult>, track_last: bool) -> Result<(), ZoneError> {
        for (job, record) in jobs.iter().zip(parsed.drain(..)) {
            let kept = record.and_then(|record| {
                if matches!(record.data, RData::SOA(_)) && job.without_ttl() {
                    // An SOA before any TTL took its MINIMUM (`parse_job`), which is then the
                    // default for the records after it without one until a `$TTL`, as BIND
                    // reads it ("using SOA MINTTL instead"): RFC 1035 §3.3.13 made MINIMUM
                    // the least TTL "exported with any RR from this zone".
                    self.default_ttl.get_or_insert(record.ttl);
                }
                if track_last {
                    self.last_ttl = Some(record.ttl);
                    self.last_owner = Some(record.name.clone());
                }
                self.keep(job.file, job.line, record)
            });
            if let Err(message) = kept {
                let file = self.files.get(job.file).cloned().unwrap_or_default();
                return Err(ZoneError { file, line: job.line, message, read: Vec::new(), apex: None });
            }
        }
        Ok(())
    }

    /// Keeps the batch in flight, then parses the waiting entries — on two threads when there
    /// are many — and keeps their records in order; the first fault in file order is the
    /// error.
    fn flush(&mut self) -> Result<(), ZoneError> {
        if let Some(in_flight) = self.in_flight.take() {
            self.keep_in_flight(in_flight, true)?;
        }
        // The batch's vectors are handed back, emptied, for the next: a batch's parsed records
        // are megabytes, which freed and allocated afresh were faulted in again each time.
        let mut jobs = std::mem::take(&mut self.pending);
        let (mut parsed, mut theirs) = std::mem::take(&mut self.parsed);
        if jobs.len() < 2048 {
            parsed.extend(jobs.iter().map(parse_job));
        } else {
            let (first, second) = jobs.split_at(jobs.len() / 2);
            let joined = std::thread::scope(|scope| {
                let other = scope.spawn(|| theirs.extend(second.iter().map(parse_job)));
                parsed.extend(first.iter().map(parse_job));
                other.join()
            });
            // A panic in hickory's parser on the other thread is a fault of that half.
            if joined.is_err() {
                theirs.clear();
                theirs.extend(second.iter().map(|_| Err("the zone parser failed".to_owned())));
            }
            parsed.append(&mut theirs);
        }
        self.keep_parsed(&jobs, &mut parsed, true)?;
        jobs.clear();
        self.pending = jobs;
        self.parsed = (parsed, theirs);
        Ok(())
    }

    /// Compresses the block being filled into `blocks`.
    fn seal(&mut self) {
        if !self.encoded.is_empty() {
            self.blocks.push(lz4_flex::block::compress_prepend_size(&self.encoded).into_boxed_slice());
            self.encoded.clear();
        }
    }

    /// Encodes `record` after the others, and notes what the checks need.
    fn keep(&mut self, file: usize, line: usize, record: WireRecord) -> Result<(), String> {
        // With neither `origin` nor `$ORIGIN`, a first record that is an SOA names the zone:
        // the form `named-compilezone` writes, every name absolute.
        if self.apex.is_none() && record.record_type() == RecordType::SOA {
            self.apex = Some(record.name.to_lowercase());
        }
        let apex = self.apex.as_ref().ok_or("no origin: set `origin` in [[zones]] or $ORIGIN before the first record")?;
        if !apex.zone_of(&record.name) {
            return Err(format!("{} is outside the zone {apex}", record.name));
        }
        self.scratch.clear();
        let mut encoder = BinEncoder::new(&mut self.scratch);
        encoder.set_name_encoding(NameEncoding::Uncompressed);
        record.emit(&mut encoder).map_err(|e| format!("cannot encode: {e}"))?;
        if self.apex_wire.is_empty() {
            self.apex_wire = wire_name(apex);
        }
        let relative = relative_owner(&self.scratch, &self.apex_wire);
        let len = u16::try_from(relative.len()).map_err(|_| "the record is longer than 65535 bytes")?;
        let key = name_key(&record.name);
        // A line repeated word for word is one record, as BIND merges it: for the types a name
        // may hold only one of (SOA, CNAME), a repeat would otherwise read as a second one.
        if matches!(record.record_type(), RecordType::SOA | RecordType::CNAME) {
            match self.singletons.entry(key.clone()) {
                std::collections::hash_map::Entry::Occupied(first) if first.get()[..] == self.scratch[..] => return Ok(()),
                std::collections::hash_map::Entry::Occupied(_) => {}
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(self.scratch.clone().into_boxed_slice());
                }
            }
        }
        let line = u32::try_from(line).unwrap_or(u32::MAX);
        let file_index = u16::try_from(file).unwrap_or(u16::MAX);
        self.encoded.extend_from_slice(&file_index.to_le_bytes());
        self.encoded.extend_from_slice(&line.to_le_bytes());
        self.encoded.extend_from_slice(&len.to_le_bytes());
        self.encoded.extend_from_slice(&relative);
        self.count += 1;
        if self.encoded.len() >= BLOCK {
            self.seal();
        }

        let facts = self.seen.entry(key).or_default();
        facts.types.push((record.record_type(), file, line));
        match &record.data {
            RData::A(a) => facts.addresses.push(IpAddr::V4(a.0)),
            RData::AAAA(a) => facts.addresses.push(IpAddr::V6(a.0)),
            RData::NS(ns) => self.ns.push((record.name.clone(), ns.0.clone(), file, line)),
            _ => {}
        }
        Ok(())
    }

    /// The zone-wide checks (RFC 1035 §5.2, RFC 2181 §10.1, RFC 1034 §4.2.1), and the
    /// delegations with their servers' addresses.
    fn check(&self) -> Result<Vec<Delegation>, ZoneError> {
        let first = self.files.first().cloned().unwrap_or_default();
        let apex = self.apex.clone().ok_or_else(|| self.error(&first, 0, "no records and no origin"))?;
        let at = |file: usize, line: u32, message: String| ZoneError {
            file: self.files.get(file).cloned().unwrap_or_default(),
            line: line as usize,
            message,
            read: Vec::new(),
            apex: None,
        };
        let apex_key = name_key(&apex);
        // Every fault, so that the first in the file is reported whatever the map's order.
        let mut faults: Vec<(usize, u32, String)> = Vec::new();
        let mut soas: Vec<(usize, u32)> = Vec::new();
        for (key, facts) in &self.seen {
            let types = &facts.types;
            for (rtype, file, line) in types {
                if *rtype == RecordType::SOA {
                    soas.push((*file, *line));
                    if *key != apex_key {
                        faults.push((*file, *line, format!("an SOA may stand only at the apex {apex} (RFC 1035 §5.2)")));
                    }
                }
            }
            let cname = types.iter().find(|(t, ..)| *t == RecordType::CNAME);
            let beside = types.iter().any(|(t, ..)| !matches!(t, RecordType::CNAME | RecordType::RRSIG | RecordType::NSEC));
            let cnames = types.iter().filter(|(t, ..)| *t == RecordType::CNAME).count();
            if let Some((_, file, line)) = cname.filter(|_| beside || cnames > 1) {
                faults.push((*file, *line, "a CNAME cannot stand beside other data at its name, nor another CNAME (RFC 1034 §3.6.2, RFC 2181 §10.1)".into()));
            }
        }
        soas.sort_unstable();
        if let Some((file, line)) = soas.get(1) {
            faults.push((*file, *line, format!("a second SOA: a zone has one, at its apex {apex} (RFC 1035 §5.2)")));
        }
        if let Some((file, line, message)) = faults.into_iter().min_by_key(|(file, line, _)| (*file, *line)) {
            return Err(at(file, line, message));
        }
        let apex_types = self.seen.get(&apex_key).map(|facts| &facts.types);
        if !apex_types.is_some_and(|t| t.iter().any(|(t, ..)| *t == RecordType::SOA)) {
            return Err(self.error(&first, 0, format!("no SOA record at the apex {apex} (RFC 1035 §5.2)")));
        }
        if !apex_types.is_some_and(|t| t.iter().any(|(t, ..)| *t == RecordType::NS)) {
            return Err(self.error(&first, 0, format!("no NS records at the apex {apex} (RFC 1035 §5.2)")));
        }
        // Delegations: NS owners below the apex, each with the addresses the zone has for
        // its servers.
        let mut delegations: Vec<Delegation> = Vec::new();
        let mut cut_seen = HashSet::new();
        for (owner, target, file, line) in &self.ns {
            let owner_key = name_key(owner);
            if owner_key == apex_key {
                // The zone's own servers, when named inside it, must be reachable there: BIND
                // refuses the zone when one has no address, or is a CNAME (RFC 2181 §10.3).
                let facts = apex.zone_of(target).then(|| self.seen.get(&name_key(target))).flatten();
                if facts.is_some_and(|f| f.types.iter().any(|(t, ..)| *t == RecordType::CNAME)) {
                    return Err(at(*file, *line, format!("the name server {target} is a CNAME (RFC 2181 §10.3)")));
                }
                if apex.zone_of(target) && facts.is_none_or(|f| f.addresses.is_empty()) {
                    return Err(at(*file, *line, format!("the name server {target} is in the zone and has no A or AAAA record")));
                }
                continue;
            }
            let addresses = self.seen.get(&name_key(target)).map(|facts| &facts.addresses).filter(|a| !a.is_empty());
            // A server named inside its own delegation can only be reached through glue.
            if owner.zone_of(target) && addresses.is_none() {
                return Err(at(*file, *line, format!("{target} lies inside the delegation {owner} and has no A or AAAA record (glue, RFC 1034 §4.2.1)")));
            }
            let servers = addresses.into_iter().flatten().map(|ip| SocketAddr::new(*ip, 53));
            if cut_seen.insert(owner_key) {
                delegations.push(Delegation { name: owner.clone(), servers: servers.collect() });
            } else if let Some(cut) = delegations.iter_mut().find(|d| d.name == *owner) {
                cut.servers.extend(servers);
            }
        }
        for cut in &mut delegations {
            cut.servers.sort();
            cut.servers.dedup();
        }
        delegations.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(delegations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_kept_relative_to_the_origin_and_come_back_whole() {
        let origin = wire_name(&Name::from_ascii("Static.example.").unwrap());
        for owner in ["r1.Static.example.", "Static.example.", "a.b.Static.example.", "r1.static.example.", "other.test."] {
            let mut record = wire_name(&Name::from_ascii(owner).unwrap());
            record.extend_from_slice(&[0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 10, 0, 0, 1]);
            let kept = relative_owner(&record, &origin);
            let mut back = Vec::new();
            absolute_owner(&kept, &origin, &mut back);
            assert_eq!(back, record, "{owner}");
            if owner.ends_with("Static.example.") {
                assert!(kept.len() < record.len(), "{owner} is kept shorter");
            }
        }
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    fn dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hubdns-zonefile-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn lines(zone: &ZoneFile) -> Vec<String> {
        zone.wire_records().map(|(file, line, r)| format!("{file}:{line} {} {} {} {}", r.name, r.ttl, r.record_type(), r.data)).collect()
    }

    #[test]
    fn a_zone_larger_than_a_block_comes_back_whole_and_in_order() {
        let d = dir("blocks");
        let mut text = String::from("$ORIGIN big.example.\n$TTL 300\n@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 10.0.0.53\n");
        for i in 0..40_000 {
            text.push_str(&format!("r{i} A 10.1.{}.{}\n", i / 256, i % 256));
        }
        let zone = ZoneFile::load(&write(&d, "big.zone", &text), None).unwrap();
        assert!(zone.blocks.len() >= 8, "enough blocks to be decoded on two threads: {}", zone.blocks.len());
        let got = lines(&zone);
        assert_eq!(got.len(), 40_003);
        assert_eq!(got[3], "0:6 r0.big.example. 300 A 10.1.0.0");
        assert_eq!(got[40_002], "0:40005 r39999.big.example. 300 A 10.1.156.63");
        // Decoded on two threads, the records come back the same and in the same order.
        assert_eq!(zone.all_records(), zone.records().collect::<Vec<_>>());
    }

    #[test]
    fn entries_join_parentheses_and_drop_comments() {
        let text = "@ IN SOA ns hm ( 1 ; serial\n 2 3\n 4 5 )\n\n; only a comment\nwww A 10.0.0.1 ; c\n  TXT \"a ; (b\" \\;\n";
        let got = entries(text).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!((got[0].line, got[0].text.split_whitespace().collect::<Vec<_>>().join(" ")), (1, "@ IN SOA ns hm 1 2 3 4 5".to_owned()));
        assert_eq!(got[1].line, 6);
        assert_eq!(got[2].line, 7);
        assert!(got[2].owner_blank());
        assert!(got[2].text.contains("\"a ; (b\" \\;"), "{:?}", got[2].text);
        assert_eq!(entries("a ( b\n").unwrap_err(), (1, "a `(` is not closed"));
        assert_eq!(entries("a\nb )\n").unwrap_err(), (2, "`)` without a `(` before it"));
    }

    #[test]
    fn reads_origin_ttl_include_with_origin_blank_owners_and_lines() {
        let d = dir("read");
        write(&d, "hosts.inc", "; hosts\n$TTL 60\nweb A 10.0.0.9\n    AAAA fd00::9\n");
        write(&d, "sub/mail.inc", "mx1 A 10.0.0.25\n");
        let zone = write(
            &d,
            "corp.zone",
            "$ORIGIN corp.example.\n$TTL 1h\n@ IN SOA ns1 hostmaster ( 7 7200 900\n  1209600 300 )\n  NS ns1\nns1 A 10.0.0.2\n\
             $INCLUDE hosts.inc apps\n$INCLUDE sub/mail.inc\n  A 10.0.0.26\nwww 30 CNAME web.apps\n",
        );
        let read = ZoneFile::load(&zone, None).unwrap();
        assert_eq!(read.origin.to_string(), "corp.example.");
        assert_eq!(
            lines(&read),
            [
                "0:3 corp.example. 3600 SOA ns1.corp.example. hostmaster.corp.example. 7 7200 900 1209600 300",
                "0:5 corp.example. 3600 NS ns1.corp.example.",
                "0:6 ns1.corp.example. 3600 A 10.0.0.2",
                "1:3 web.apps.corp.example. 60 A 10.0.0.9",
                "1:4 web.apps.corp.example. 60 AAAA fd00::9",
                "2:1 mx1.corp.example. 60 A 10.0.0.25",
                // After an $INCLUDE the owner is the including file's last one (§5.1).
                "0:9 ns1.corp.example. 60 A 10.0.0.26",
                "0:10 www.corp.example. 30 CNAME web.apps.corp.example.",
            ]
        );
        assert_eq!(read.files.len(), 3);
        let provenance: Vec<String> = read.records().map(|r| r.provenance.where_from().to_string()).collect();
        assert!(provenance[3].ends_with("hosts.inc:3") && provenance[3].starts_with("zone "), "{provenance:?}");
        assert!(read.delegations.is_empty());
    }

    /// What BIND 9.18's `named-checkzone -D` reads from the same two files (its output, sorted
    /// the same way, is in the comment): a blank owner at the top of an included file is the
    /// including file's last owner, and an SOA without a TTL before any makes its MINIMUM the
    /// default, even after a record with a TTL of its own.
    #[test]
    fn an_include_starts_with_the_owner_before_it_and_an_soa_without_a_ttl_sets_the_default() {
        let d = dir("bindlike");
        write(&d, "inc.zone", "  TXT \"blank at top\"\nmail 600 A 192.0.2.3\n  AAAA 2001:db8::4\n");
        let zone = write(&d, "p.zone", "$ORIGIN r.example.\n@ SOA ns1 h 1 2 3 4 5\n  NS ns1\nns1 A 127.0.0.2\nwww 300 A 192.0.2.1\n$INCLUDE inc.zone\n  TXT \"after the include\"\n");
        // r.example.       5   IN SOA  ns1.r.example. h.r.example. 1 2 3 4 5
        // r.example.       5   IN NS   ns1.r.example.
        // mail.r.example.  600 IN A    192.0.2.3
        // mail.r.example.  5   IN AAAA 2001:db8::4
        // ns1.r.example.   5   IN A    127.0.0.2
        // www.r.example.   300 IN A    192.0.2.1
        // www.r.example.   5   IN TXT  "blank at top"
        // www.r.example.   5   IN TXT  "after the include"
        let read = ZoneFile::load(&zone, None).unwrap();
        assert_eq!(
            lines(&read),
            [
                "0:2 r.example. 5 SOA ns1.r.example. h.r.example. 1 2 3 4 5",
                "0:3 r.example. 5 NS ns1.r.example.",
                "0:4 ns1.r.example. 5 A 127.0.0.2",
                "0:5 www.r.example. 300 A 192.0.2.1",
                "1:1 www.r.example. 5 TXT blank at top",
                "1:2 mail.r.example. 600 A 192.0.2.3",
                "1:3 mail.r.example. 5 AAAA 2001:db8::4",
                "0:7 www.r.example. 5 TXT after the include",
            ]
        );
    }

    #[test]
    fn without_ttl_the_last_one_is_the_default_and_the_configured_origin_wins() {
        let d = dir("ttl");
        let zone = write(&d, "z", "@ 600 SOA ns hm 1 2 3 4 5\n@ NS ns\nns 30 A 10.0.0.1\nx A 10.0.0.3\n");
        let read = ZoneFile::load(&zone, Some(&Name::from_ascii("z.example.").unwrap())).unwrap();
        assert_eq!(lines(&read)[1], "0:2 z.example. 600 NS ns.z.example.");
        assert_eq!(lines(&read)[3], "0:4 x.z.example. 30 A 10.0.0.3");
    }

    #[test]
    fn decimal_escapes_the_origin_in_data_and_ttls_read_as_bind_reads_them() {
        let d = dir("bind");
        let zone = write(
            &d,
            "z",
            "$ORIGIN z.example.\n@ IN SOA @ hostmaster 1 2 3 4 300\n@ 60 NS ns\n@ MX 10 @\nns A 10.0.0.1\n\\065BC A 10.0.0.2\n\
             t1 CNAME \\065BC\nx\\046y A 10.0.0.3\nhinfo HINFO \"PC\\033\" \"a\\034b\"\nbig 4294967295 A 10.0.0.4\n",
        );
        let read = ZoneFile::load(&zone, None).unwrap();
        assert_eq!(
            lines(&read),
            [
                // No TTL before it: the SOA takes its MINIMUM, and the records after it without
                // a TTL too, even after the NS's own 60 — as BIND 9.18 reads this file ("using
                // SOA MINTTL instead"; `named-checkzone -D` gives these TTLs).
                "0:2 z.example. 300 SOA z.example. hostmaster.z.example. 1 2 3 4 300",
                "0:3 z.example. 60 NS ns.z.example.",
                "0:4 z.example. 300 MX 10 z.example.",
                "0:5 ns.z.example. 300 A 10.0.0.1",
                // RFC 1035 §5.1: \DDD is decimal: \065 is `A`.
                "0:6 abc.z.example. 300 A 10.0.0.2",
                "0:7 t1.z.example. 300 CNAME abc.z.example.",
                "0:8 x\\.y.z.example. 300 A 10.0.0.3",
                "0:9 hinfo.z.example. 300 HINFO PC! a\"b",
                // RFC 2181 §8: a TTL with the top bit set is 0.
                "0:10 big.z.example. 0 A 10.0.0.4",
            ]
        );
    }

    #[test]
    fn a_large_zone_parsed_on_two_threads_keeps_order_lines_and_the_first_fault() {
        let d = dir("large");
        let mut text = String::from("$ORIGIN big.example.\n$TTL 300\n@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 10.0.0.1\n");
        for i in 0..5000 {
            text.push_str(&format!("h{i} A 10.1.{}.{}\n  TXT \"n{i}\"\n", i / 256, i % 256));
        }
        let read = ZoneFile::load(&write(&d, "big.zone", &text), None).unwrap();
        let all = lines(&read);
        assert_eq!(all.len(), 3 + 10_000);
        assert_eq!(all[3 + 2 * 4321], "0:8648 h4321.big.example. 300 A 10.1.16.225");
        assert_eq!(all[3 + 2 * 4321 + 1], "0:8649 h4321.big.example. 300 TXT n4321");
        // Two faults: the first in the file is the one reported, whichever thread saw it.
        let bad = text.replace("h100 A 10.1.0.100", "h100 A 10.1.0.300").replace("h4000 A", "h4000 AAAA");
        let err = ZoneFile::load(&write(&d, "bad.zone", &bad), None).unwrap_err();
        assert_eq!(err.line, 206, "{err}");
    }

    #[test]
    fn batches_parsed_while_the_next_is_read_keep_order_owners_ttls_and_the_first_fault() {
        let d = dir("batches");
        // No $TTL: each record without a TTL takes the last one written (RFC 1035 §5.1), and a
        // blank owner the last owner — across the batches parsed on their own threads.
        let mut text = String::from("$ORIGIN big.example.\n@ 100 SOA ns hm 1 2 3 4 5\n@ 100 NS ns\nns 100 A 10.0.0.1\n");
        let mut expected = vec!["0:2 big.example. 100 SOA ns.big.example. hm.big.example. 1 2 3 4 5".to_owned()];
        let mut line = 4;
        for i in 0..2 * BATCH + 1000 {
            let ttl = 1000 + i / 1000;
            let address = format!("10.{}.{}.{}", i / 65536, i / 256 % 256, i % 256);
            line += 1;
            match i % 1000 {
                0 => text.push_str(&format!("h{i} {ttl} A {address}\n")),
                _ => text.push_str(&format!("h{i} A {address}\n")),
            }
            expected.push(format!("0:{line} h{i}.big.example. {ttl} A {address}"));
            if i % 7 == 0 {
                line += 1;
                text.push_str(&format!("  TXT \"n{i}\"\n"));
                expected.push(format!("0:{line} h{i}.big.example. {ttl} TXT n{i}"));
            }
        }
        let read = ZoneFile::load(&write(&d, "big.zone", &text), None).unwrap();
        let mut all = lines(&read);
        // The apex's NS and its server's address (lines 3 and 4) are not in `expected`.
        all.retain(|l| !l.starts_with("0:3 ") && !l.starts_with("0:4 "));
        assert_eq!(all.len(), expected.len());
        assert_eq!(all, expected);
        // Two faults, in the second and the third batch: the first in the file is reported.
        let bad = text.replace("h20001 A 10.0.78.33", "h20001 A 10.0.78.330").replace("h33000 1033 A", "h33000 1033 AAAA");
        let err = ZoneFile::load(&write(&d, "bad.zone", &bad), None).unwrap_err();
        let want = text.lines().position(|l| l.starts_with("h20001 ")).unwrap() + 1;
        assert_eq!(err.line, want, "{err}");
    }

    #[test]
    fn delegations_carry_their_glue() {
        let d = dir("cut");
        let zone = write(
            &d,
            "z",
            "$ORIGIN z.example.\n$TTL 300\n@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 10.0.0.1\n\
             sub NS ns1.sub\nsub NS ns2.sub\nsub NS ns.elsewhere.example.\nns1.sub A 127.0.0.9\nns2.sub AAAA ::1\n\
             out NS ns.elsewhere.example.\n",
        );
        let read = ZoneFile::load(&zone, None).unwrap();
        let cuts: Vec<(String, Vec<String>)> =
            read.delegations.iter().map(|c| (c.name.to_string(), c.servers.iter().map(ToString::to_string).collect())).collect();
        assert_eq!(
            cuts,
            [
                ("out.z.example.".to_owned(), vec![]),
                ("sub.z.example.".to_owned(), vec!["127.0.0.9:53".to_owned(), "[::1]:53".to_owned()])
            ]
        );
    }

    #[test]
    fn a_bad_zone_is_refused_with_file_and_line() {
        let d = dir("bad");
        let refused = |text: &str| ZoneFile::load(&write(&d, "bad.zone", text), None).unwrap_err().to_string();
        let head = "$ORIGIN z.example.\n$TTL 300\n@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 10.0.0.1\n";
        let err = refused(&format!("{head}www A 10.0.0.300\n"));
        assert!(err.contains("bad.zone:6: "), "{err}");
        let err = refused(&format!("{head}www.other.example. A 10.0.0.3\n"));
        assert!(err.contains("bad.zone:6: ") && err.contains("outside the zone"), "{err}");
        // A line repeated word for word is one record (BIND merges it); a different one is not.
        let twice = ZoneFile::load(&write(&d, "twice.zone", &format!("{head}@ SOA ns hm 1 2 3 4 5\nw CNAME a\nw CNAME a\n")), None).unwrap();
        assert_eq!(twice.len(), 4, "{:?}", lines(&twice));
        let err = refused(&format!("{head}w CNAME a\nw CNAME b\n"));
        assert!(err.contains("bad.zone:6: ") && err.contains("CNAME"), "{err}");
        let err = refused(&format!("{head}www CNAME a\nwww TXT x\n"));
        assert!(err.contains("bad.zone:6: ") && err.contains("CNAME"), "{err}");
        let err = refused(&format!("{head}sub NS ns.sub\n"));
        assert!(err.contains("bad.zone:6: ") && err.contains("glue"), "{err}");
        let err = refused(&format!("{head}$GENERATE 1-3 h$ A 10.0.0.$\n"));
        assert!(err.contains("bad.zone:6: ") && err.contains("$INCLUDE <file> [<origin>]"), "{err}");
        let err = refused(&format!("{head}x CH TXT hi\n"));
        assert!(err.contains("bad.zone:6: ") && err.contains("only IN"), "{err}");
        let err = refused("$ORIGIN z.example.\n$TTL 300\n@ NS ns\nns A 10.0.0.1\n");
        assert!(err.contains("no SOA"), "{err}");
        let err = refused("$ORIGIN z.example.\n$TTL 300\n@ SOA ns hm 1 2 3 4 5\nns A 10.0.0.1\n");
        assert!(err.contains("no NS"), "{err}");
        let err = refused("$ORIGIN z.example.\nns A 10.0.0.1\n@ SOA ns hm 1 2 3 4 5\n");
        assert!(err.contains("bad.zone:2: ") && err.contains("no TTL"), "no TTL anywhere: {err}");
        // More data than the type has: BIND says "extra input text"; hickory would drop it.
        for extra in ["www A 10.0.0.1 10.0.0.2", "m MX 10 mail.z.example. 99", "s SRV 0 5 443 t.z.example. x", "c CNAME a b"] {
            let err = refused(&format!("{head}{extra}\n"));
            assert!(err.contains("bad.zone:6: ") && err.contains("the rest would be lost"), "{extra}: {err}");
        }
        assert_eq!(field_count(r#"0 issue "ca.example; account=1""#), 3, "a quoted value is one field");
        assert_eq!(field_count(r"a\ b.z.example."), 1, "an escaped blank is inside a name");
        assert_eq!(field_count("  ns hm 1 2 3 4 5 "), 7);
        // One TXT string of 256 bytes: BIND refuses it too (RFC 1035 §3.3: at most 255).
        let err = refused(&format!("{head}long TXT \"{}\"\n", "x".repeat(256)));
        assert!(err.contains("bad.zone:6: ") && err.contains("at most 255"), "{err}");
        let err = refused(&format!("{head}hinfo HINFO \"caf\\195\\169\" x\n"));
        assert!(err.contains("bad.zone:6: ") && err.contains("only TXT"), "{err}");
        // Bytes that are not UTF-8 are read as BIND reads them: as the bytes they are.
        std::fs::write(d.join("latin1.zone"), b"$ORIGIN z.example.\n$TTL 300\n; J\xfcrgen\n@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 10.0.0.1\nt TXT \"J\xfcrgen\"\n").unwrap();
        let read = ZoneFile::load(&d.join("latin1.zone"), None).expect("loads");
        let txt = read.records().find_map(|r| match r.data {
            RData::TXT(txt) => Some(txt.txt_data[0].to_vec()),
            _ => None,
        });
        assert_eq!(txt.as_deref(), Some(&b"J\xfcrgen"[..]));
        // After a backslash, a raw byte is that byte (BIND: "a\252b").
        let t = escape_non_utf8(b"t TXT \"a\\\xfcb\" \\\\\xfc".to_vec());
        assert_eq!(t, "t TXT \"a\\252b\" \\\\\\252");
        // The zone's name is the first `$ORIGIN` entry, not one inside a quoted string.
        assert_eq!(first_origin("\u{feff}$ORIGIN b.example.\n").map(|n| n.to_string()).as_deref(), Some("b.example."));
        assert_eq!(first_origin("t TXT \"x\n$ORIGIN evil.example.\n\"\n$ORIGIN q.example.\n").map(|n| n.to_string()).as_deref(), Some("q.example."));
        assert_eq!(first_origin("; \"\n$ORIGIN c.example.\n").map(|n| n.to_string()).as_deref(), Some("c.example."), "a quote in a comment");
        // A file that cannot be split into entries still names its zone, for SERVFAIL.
        std::fs::write(d.join("paren.zone"), "$ORIGIN p.example.\n$TTL 300\n@ SOA ns hm ( 1 2 3 4 5\n").unwrap();
        let err = ZoneFile::load(&d.join("paren.zone"), None).unwrap_err();
        assert_eq!(err.apex.as_ref().map(|a| a.to_string()).as_deref(), Some("p.example."), "{err}");
        let err = ZoneFile::load(&d, None).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        let err = refused(&format!("{head}  $TTL 60\n"));
        assert!(err.contains("bad.zone:6: ") && err.contains("beginning of its line"), "an indented control entry: {err}");
        let err = refused(&format!("{head}$INCLUDE missing.inc\n"));
        assert!(err.contains("bad.zone:") && err.contains(": $INCLUDE missing.inc: cannot read"), "named where it is included: {err}");
        write(&d, "loop.inc", "$INCLUDE loop.inc\n");
        let err = refused(&format!("{head}$INCLUDE loop.inc\n"));
        assert!(err.contains("nested more than"), "{err}");
    }
}
