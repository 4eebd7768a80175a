//! Lowercase wire-format name keys: the one name representation every hot-path lookup uses.
//!
//! A DNS name in wire format (`\x03foo\x07example\x03com\x00`) has a useful property: each
//! ancestor of the name is a suffix of its bytes that starts at a label boundary. Keying the
//! snapshot's tables and the forwarding rules by the lowercased wire form lets a query walk from
//! its own name up to the root with slices of one buffer, comparing and hashing plain bytes
//! (case-insensitively, because the key is lowercased once), with no allocation per step.

use std::fmt::Write as _;

use hickory_proto::{rr::Name, serialize::binary::BinDecodable};

/// Longest wire-format name (RFC 1035 §3.1), so the key buffer never grows.
const MAX_NAME_LEN: usize = 255;

/// The lowercase, uncompressed wire form of `name`, always ending in the root label.
pub fn name_key(name: &Name) -> Box<[u8]> {
    let mut key = Vec::with_capacity(MAX_NAME_LEN.min(name.len() + 2));
    for label in name.iter() {
        // A label is at most 63 bytes (hickory enforces it when the name is built).
        key.push(label.len() as u8);
        key.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    key.push(0);
    key.into_boxed_slice()
}

/// Appends `name` in uncompressed wire format, spelled as it is (not lowercased, unlike its
/// key): labels after their lengths, then the root's 0.
pub fn write_spelled(name: &Name, out: &mut Vec<u8>) {
    for label in name.iter() {
        // A label is at most 63 bytes (hickory enforces it when the name is built).
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
}

/// The name whose uncompressed wire form (a key, or a name as [`write_spelled`] wrote it) is
/// `wire`, absolute.
pub fn name_from_wire(wire: &[u8]) -> Name {
    // hickory's wire decoder: it copies the labels as they are, where `Name::from_labels`
    // checked each one again (a fifth of a restart with 20,000 records, perf). The bytes were
    // written from a valid name, so they decode.
    Name::from_bytes(wire).unwrap_or_else(|_| Name::root())
}

/// `name` as the state file spells it: letters, digits, `-` and `_` as they are, a wildcard
/// label as `*`, every other octet as `\DDD` in decimal (RFC 1035 §5.1); always absolute.
/// [`wire_from_text`] reads it back exactly. (hickory's `to_ascii` writes octal escapes —
/// a space is `\040` — which no reader of RFC 1035 text reads back as written.)
pub fn text_of(name: &Name) -> String {
    let mut text = String::with_capacity(name.len() + 1);
    for label in name.iter() {
        if label == b"*" {
            text.push('*');
        } else {
            for &octet in label {
                if octet.is_ascii_alphanumeric() || matches!(octet, b'-' | b'_') {
                    text.push(char::from(octet));
                } else {
                    let _ = write!(text, "\\{octet:03}");
                }
            }
        }
        text.push('.');
    }
    if text.is_empty() {
        text.push('.');
    }
    text
}

/// A name as the state file spells it ([`text_of`]), read exactly ([`wire_from_text`]);
/// text beyond ASCII — a Unicode name, as `hubdns-state/1` wrote it — goes through hickory's
/// parsers, as that version read it.
pub fn name_from_text(text: &str) -> Result<Name, hickory_proto::ProtoError> {
    if let Some(name) = wire_from_text(text).and_then(|wire| Name::from_bytes(&wire).ok()) {
        return Ok(name);
    }
    Name::from_ascii(text).or_else(|_| text.parse())
}

/// The wire form of `text`, an absolute name in presentation format (RFC 1035 §5.1: `\X` is
/// the character X, `\DDD` the octet of decimal value DDD), byte for byte and spelling kept;
/// `None` for a relative name, an empty or overlong label, a bad escape, or text beyond ASCII.
/// hickory's text parsers refuse labels a name may hold (`0/25` of an RFC 2317 name, which
/// made a whole state file unreadable) and took 1.6 µs a name (perf, a restart reading
/// 25,000).
pub fn wire_from_text(text: &str) -> Option<Vec<u8>> {
    if !text.is_ascii() {
        return None;
    }
    if text == "." {
        return Some(vec![0]);
    }
    let mut bytes = text.bytes();
    // Each label's length byte is written when its dot is reached.
    let mut wire = Vec::with_capacity(text.len() + 1);
    let mut start = 0;
    wire.push(0);
    loop {
        match bytes.next()? {
            b'.' => {
                let len = wire.len() - start - 1;
                wire[start] = u8::try_from(len).ok().filter(|len| (1..=63).contains(len))?;
                if bytes.len() == 0 {
                    break;
                }
                start = wire.len();
                wire.push(0);
            }
            b'\\' => match bytes.next()? {
                first @ b'0'..=b'9' => {
                    let digit = |b: u8| b.is_ascii_digit().then(|| u16::from(b - b'0'));
                    let value = u16::from(first - b'0') * 100 + digit(bytes.next()?)? * 10 + digit(bytes.next()?)?;
                    wire.push(u8::try_from(value).ok()?);
                }
                other => wire.push(other),
            },
            other => wire.push(other),
        }
    }
    wire.push(0);
    (wire.len() <= MAX_NAME_LEN).then_some(wire)
}

/// The key of the first name in `wire` (a question section as the client sent it), lowercased
/// while copied. `None` if the name is compressed or truncated; the caller then falls back to
/// [`name_key`] on the parsed name. Saves walking the labels of a name hickory already parsed.
pub fn key_from_wire(wire: &[u8]) -> Option<Box<[u8]>> {
    WireKey::read(wire).map(|key| key.as_bytes().into())
}

/// A key read straight from a packet into a fixed buffer, for the hot path: no allocation.
pub struct WireKey {
    bytes: [u8; MAX_NAME_LEN],
    len: usize,
}

impl WireKey {
    /// Reads the uncompressed name at the start of `wire`, lowercasing it. `None` if the name
    /// is compressed, truncated, uses a reserved label type, or is longer than 255 bytes.
    pub fn read(wire: &[u8]) -> Option<Self> {
        let mut key = Self { bytes: [0; MAX_NAME_LEN], len: 0 };
        loop {
            let len = usize::from(*wire.get(key.len)?);
            if len & 0xC0 != 0 {
                return None; // a compression pointer or a reserved label type
            }
            let end = key.len + 1 + len;
            if end > MAX_NAME_LEN {
                return None;
            }
            let label = wire.get(key.len..end)?;
            for (to, from) in key.bytes[key.len..end].iter_mut().zip(label) {
                *to = from.to_ascii_lowercase();
            }
            key.len = end;
            if len == 0 {
                return Some(key);
            }
        }
    }

    /// The key bytes, root label included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// How many bytes the name took in the packet (the same as the key's length).
    pub fn wire_len(&self) -> usize {
        self.len
    }
}

/// The name itself, then each ancestor, ending with the root (`[0]`).
pub fn self_and_ancestors(key: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut next = Some(0usize);
    std::iter::from_fn(move || {
        let at = next?;
        let rest = key.get(at..)?;
        next = match rest.first() {
            Some(&0) | None => None,
            Some(&len) => Some(at + 1 + usize::from(len)),
        };
        Some(rest)
    })
}

/// The key of the parent name, or `None` for the root.
pub fn parent(key: &[u8]) -> Option<&[u8]> {
    match key.first() {
        Some(&0) | None => None,
        Some(&len) => key.get(1 + usize::from(len)..),
    }
}

/// Whether the first label of `key` is the wildcard label `*`.
pub fn is_wildcard(key: &[u8]) -> bool {
    key.starts_with(b"\x01*")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Box<[u8]> {
        name_key(&Name::from_ascii(s).unwrap())
    }

    #[test]
    fn keys_are_lowercase_wire_format() {
        assert_eq!(&*key("Foo.EXAMPLE.com."), b"\x03foo\x07example\x03com\x00");
        assert_eq!(&*key("."), b"\x00");
        // The key does not depend on whether the text had a trailing dot.
        assert_eq!(key("a.b"), key("a.b."));
    }

    #[test]
    fn ancestors_walk_up_to_the_root() {
        let k = key("a.b.c.");
        let walked: Vec<&[u8]> = self_and_ancestors(&k).collect();
        assert_eq!(
            walked,
            vec![&b"\x01a\x01b\x01c\x00"[..], b"\x01b\x01c\x00", b"\x01c\x00", b"\x00"]
        );
        assert_eq!(self_and_ancestors(b"\x00").count(), 1);
    }

    #[test]
    fn keys_from_wire_match_keys_from_names() {
        let wire = b"\x0eSecretsManager\x09US-East-1\x09amazonaws\x03com\x00\x00\x01\x00\x01";
        assert_eq!(key_from_wire(wire), Some(key("secretsmanager.us-east-1.amazonaws.com.")));
        assert_eq!(key_from_wire(b"\x00\x00\x01"), Some(key(".")));
        assert_eq!(key_from_wire(b"\x03abc\xc0\x0c"), None, "compressed: fall back");
        assert_eq!(key_from_wire(b"\x03ab"), None, "truncated");
        // Upper-case bytes outside ASCII letters are kept as they are, as in name_key.
        assert_eq!(key_from_wire(b"\x02A\xc3\x00"), Some(Box::from(&b"\x02a\xc3\x00"[..])));
    }

    #[test]
    fn parent_and_wildcard() {
        let k = key("*.s3.us-east-1.amazonaws.com.");
        assert!(is_wildcard(&k));
        assert_eq!(parent(&k), Some(&*key("s3.us-east-1.amazonaws.com.")));
        assert!(!is_wildcard(&key("x.s3.amazonaws.com.")));
        assert_eq!(parent(b"\x00"), None);
    }

    /// Any name [`text_of`] writes reads back as the same name, spelled the same —
    /// including labels hickory's own text parsers refuse (break-it review: an RFC 2317 name
    /// `0/25.1.168.192.in-addr.arpa.`, which Route 53 may hold, made the whole state file
    /// unreadable).
    #[test]
    fn names_read_back_from_text_exactly() {
        let labels: [&[&[u8]]; 10] = [
            &[b"Api", b"Corp", b"Example"],
            &[b"*", b"s3", b"us-east-1", b"amazonaws", b"com"],
            &[b"_sip", b"_tcp", b"corp", b"example"],
            &[b"xn--bcher-kva", b"example"],
            &[b"0/25", b"1", b"168", b"192", b"in-addr", b"arpa"],
            &[b"a.b", b"corp", b"example"],
            &[b"a b", b"a!b", b"a@b", b"x(y", b"-lead", b"a*b", b"back\\slash"],
            &[b"\x00\xff", b"bytes"],
            &[b"x" as &[u8]; 127],
            &[],
        ];
        for labels in labels {
            let name = Name::from_labels(labels.iter().copied()).unwrap();
            let text = text_of(&name);
            let back = name_from_text(&text).unwrap();
            assert_eq!(text_of(&back), text);
            assert_eq!(back.iter().collect::<Vec<_>>(), labels, "{text}: the same bytes, spelling included");
            assert!(back.is_fqdn());
            let mut spelled = Vec::new();
            write_spelled(&name, &mut spelled);
            assert_eq!(wire_from_text(&text), Some(spelled), "{text}");
        }
        for text in ["a..b.", "", "x.corp.example", "a\\1.b.", "a\\256.b.", "bücher.example.", &format!("{}.x.", "y".repeat(64))] {
            assert_eq!(wire_from_text(text), None, "{text:?}");
        }
        assert_eq!(text_of(&Name::from_labels([&b"a b"[..], b"0/25", b"Ex"]).unwrap()), "a\\032b.0\\04725.Ex.");
        assert_eq!(wire_from_text("a\\032b.\\.."), Some(b"\x03a b\x01.\x00".to_vec()));
        // A Unicode spelling (what `hubdns-state/1` wrote) is read as that version read it.
        assert_eq!(name_from_text("bücher.example.").unwrap().to_ascii(), "xn--bcher-kva.example.");
        assert!(!name_from_text("relative.corp").unwrap().is_fqdn());
    }
}
