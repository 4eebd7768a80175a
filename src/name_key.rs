//! Lowercase wire-format name keys: the one name representation every hot-path lookup uses.
//!
//! A DNS name in wire format (`\x03foo\x07example\x03com\x00`) has a useful property: each
//! ancestor of the name is a suffix of its bytes that starts at a label boundary. Keying the
//! snapshot's tables and the forwarding rules by the lowercased wire form lets a query walk from
//! its own name up to the root with slices of one buffer, comparing and hashing plain bytes
//! (case-insensitively, because the key is lowercased once), with no allocation per step.

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

/// A name as the state file spells it (`Name::to_ascii`), read exactly: `Name::from_ascii`
/// keeps the spelling and skips the IDNA processing of hickory's `FromStr`, which was most of
/// reading a state file of 20,000 records. Text it refuses (a Unicode spelling, as
/// `hubdns-state/1` wrote) is read the way that version read it.
pub fn name_from_text(text: &str) -> Result<Name, hickory_proto::ProtoError> {
    if let Some(name) = wire_from_plain_text(text).and_then(|wire| Name::from_bytes(&wire).ok()) {
        return Ok(name);
    }
    Name::from_ascii(text).or_else(|_| text.parse())
}

/// The wire form of `text` when it is a plain absolute name — labels of letters, digits, `-`,
/// `_` and `*`, then the root's dot — byte for byte what `Name::from_ascii` would make of it;
/// `None` for anything else (escapes, relative names), for hickory's parser to read. Almost
/// every name `Name::to_ascii` writes is plain, and hickory's text parser took 1.6 µs each
/// (perf, a restart reading 25,000 names).
pub fn wire_from_plain_text(text: &str) -> Option<Vec<u8>> {
    let body = text.strip_suffix('.')?;
    let mut wire = Vec::with_capacity(text.len() + 1);
    if !body.is_empty() {
        for label in body.split('.') {
            let plain = (1..=63).contains(&label.len()) && label.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*'));
            if !plain {
                return None;
            }
            // At most 63, checked above.
            wire.push(label.len() as u8);
            wire.extend_from_slice(label.as_bytes());
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

    /// A name written by `Name::to_ascii` reads back as the same name, spelled the same:
    /// plain ones by the fast path (the same bytes `Name::from_ascii` makes), the rest by
    /// hickory's parser.
    #[test]
    fn names_read_back_from_text_exactly() {
        let plain = ["Api.Corp.Example.", "*.s3.us-east-1.amazonaws.com.", "_sip._tcp.corp.example.", "xn--bcher-kva.example.", "."];
        let escaped = ["a\\.b.corp.example.", "relative.corp"];
        for text in plain.iter().chain(&escaped) {
            let name = Name::from_ascii(text).unwrap();
            let back = name_from_text(&name.to_ascii()).unwrap();
            assert_eq!((back.to_ascii(), back.is_fqdn()), (name.to_ascii(), name.is_fqdn()), "{text}");
        }
        for text in plain {
            let mut spelled = Vec::new();
            write_spelled(&Name::from_ascii(text).unwrap(), &mut spelled);
            assert_eq!(wire_from_plain_text(text), Some(spelled), "{text}");
        }
        for text in escaped.iter().chain(&["a..b.", "", "x.corp.example"]) {
            assert_eq!(wire_from_plain_text(text), None, "{text}: hickory's parser reads it");
        }
        // A Unicode spelling (what `hubdns-state/1` wrote) still reads.
        assert_eq!(name_from_text("bücher.example.").unwrap().to_ascii(), "xn--bcher-kva.example.");
    }
}
