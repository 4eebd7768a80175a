//! The text of a record's provenance ([`crate::snapshot::Provenance`]): [`Origin`], one of
//! many texts a source's answer keeps together, compressed.
//!
//! Every record says where it came from, for `explain` and `/records`: a config file, a
//! Route 53 zone and record set, or an endpoint and its ENI (`vpc_endpoints vpce-… eni=… az=…
//! vpc=… account=… region=… service=…`). At 5,000 endpoints that is 10,000 texts of about 200
//! bytes. Each its own allocation, they took 2.9 MiB of anonymous memory (measured by leaving
//! them out), in 256-byte blocks among pages the fetch's scratch also used; in one buffer,
//! 2.0 MB. Nothing reads them on the query path, so a source's answer keeps them sealed
//! ([`pack`], called by [`crate::record_list::RecordList`] when a fetch or a state file is
//! read in): each distinct text once, up to [`PER_BLOCK`] texts to an LZ4 block, about 0.3 MB in
//! all, since an endpoint's texts differ from the next one's in a few characters. Reading one
//! ([`Origin::text`]) decompresses its block, a few microseconds; the last block read is
//! kept per thread, so views that read records in order decompress each block once.

use std::{
    borrow::Cow,
    cell::RefCell,
    collections::HashMap,
    fmt,
    sync::{Arc, Weak},
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How many texts a sealed block holds at most: enough for LZ4 to find what neighbouring texts
/// share (64 endpoint origins are about 13 KB), few enough that reading one is quick.
pub const PER_BLOCK: usize = 64;

/// How many bytes of text a sealed block holds at most, so that the block each thread keeps
/// stays small whatever the texts (a longer text has a block of its own).
pub const BLOCK_BYTES: usize = 16 * 1024;

/// Origin text: a text of its own, or one of a sealed set's. It compares and serializes as
/// its text, and costs one pointer and an index however many records share it.
#[derive(Clone)]
pub struct Origin {
    texts: Arc<Texts>,
    /// Which of a sealed set's texts; 0 for a text of its own.
    at: u32,
}

/// The text behind an [`Origin`].
enum Texts {
    /// One text, as a source wrote it.
    One(String),
    /// Texts packed by [`pack`]: block `b`, LZ4-compressed, holds the texts from `firsts[b]`
    /// up to the next block's first, and text `i` ends at `ends[i]` of its block's plain text.
    Sealed { ends: Box<[u32]>, firsts: Box<[u32]>, blocks: Box<[Box<[u8]>]> },
}

// One of these sits in every provenance: a record set holds one per record.
const _: () = assert!(std::mem::size_of::<Origin>() <= 16);

thread_local! {
    /// The block last read on this thread: which set (weakly: it does not keep a replaced
    /// answer's texts, yet no other set can take its place while it is held), which block,
    /// and its plain text.
    static LAST_BLOCK: RefCell<Option<(Weak<Texts>, usize, Arc<str>)>> = const { RefCell::new(None) };
}

impl Origin {
    /// The origin's text.
    pub fn text(&self) -> Cow<'_, str> {
        match &*self.texts {
            Texts::One(text) => Cow::Borrowed(text),
            Texts::Sealed { ends, firsts, blocks } => {
                let at = self.at as usize;
                let block = firsts.partition_point(|&first| first <= self.at).saturating_sub(1);
                let plain = self.block(block, blocks);
                // Text `at` ends at `ends[at]`; the first of a block starts at 0.
                let first = firsts.get(block).is_some_and(|&first| first == self.at);
                let start = if first { 0 } else { ends.get(at.wrapping_sub(1)).copied().unwrap_or(0) as usize };
                let end = ends.get(at).copied().unwrap_or(0) as usize;
                // `ends` were counted in this block's text when it was sealed; `get` keeps a
                // damaged range from panicking.
                Cow::Owned(plain.get(start..end).unwrap_or_default().to_owned())
            }
        }
    }

    /// Block `block` of `blocks`, decompressed (or kept from the last read on this thread).
    fn block(&self, block: usize, blocks: &[Box<[u8]>]) -> Arc<str> {
        LAST_BLOCK.with_borrow_mut(|last| {
            if let Some((set, b, plain)) = last.as_ref()
                && *b == block
                && std::ptr::eq(set.as_ptr(), Arc::as_ptr(&self.texts))
            {
                return plain.clone();
            }
            let sealed = blocks.get(block).map_or(&[][..], |b| &b[..]);
            // Sealed by `pack` from UTF-8 text, so it decompresses; a block that did not would
            // be a bug here, and reads as empty texts rather than as wrong ones.
            let plain = lz4_flex::block::decompress_size_prepended(sealed).ok().and_then(|p| String::from_utf8(p).ok()).unwrap_or_default();
            let plain: Arc<str> = Arc::from(plain);
            *last = Some((Arc::downgrade(&self.texts), block, plain.clone()));
            plain
        })
    }
}

impl From<String> for Origin {
    fn from(text: String) -> Self {
        Self { texts: Arc::new(Texts::One(text)), at: 0 }
    }
}

impl From<&str> for Origin {
    fn from(text: &str) -> Self {
        Self::from(text.to_owned())
    }
}

impl PartialEq for Origin {
    fn eq(&self, other: &Self) -> bool {
        match Arc::ptr_eq(&self.texts, &other.texts) {
            // A set holds each text once, so within one the index is the text.
            true => self.at == other.at,
            false => self.text() == other.text(),
        }
    }
}

/// The sealed set all of `origins` point into, if they share one.
fn one_set<'a>(mut origins: impl Iterator<Item = &'a Origin>) -> Option<&'a Arc<Texts>> {
    let first = &origins.next()?.texts;
    (matches!(**first, Texts::Sealed { .. }) && origins.all(|o| Arc::ptr_eq(&o.texts, first))).then_some(first)
}

/// Whether `a` and `b` hold the same texts, in order. Two lists each packed into one set
/// (two fetches of the same answer) compare their sets once and then their indexes, rather
/// than decompressing every text of both.
pub fn same_texts<'a>(a: impl ExactSizeIterator<Item = &'a Origin> + Clone, b: impl ExactSizeIterator<Item = &'a Origin> + Clone) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if let (Some(one), Some(two)) = (one_set(a.clone()), one_set(b.clone()))
        && let (Texts::Sealed { ends: e1, firsts: f1, blocks: b1 }, Texts::Sealed { ends: e2, firsts: f2, blocks: b2 }) = (&**one, &**two)
        && (e1, f1, b1) == (e2, f2, b2)
    {
        return a.zip(b).all(|(x, y)| x.at == y.at);
    }
    a.zip(b).all(|(x, y)| x == y)
}

impl Eq for Origin {}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text(), f)
    }
}

impl Serialize for Origin {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text())
    }
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::from)
    }
}

/// Seals `origins` together: each distinct text once, in LZ4 blocks of up to [`PER_BLOCK`]
/// texts and [`BLOCK_BYTES`] bytes, and
/// points each at its text there; what they held is freed as its last user lets go. Equal
/// origins end up as one.
pub fn pack<'a>(origins: impl IntoIterator<Item = &'a mut Origin>) {
    let mut origins: Vec<&mut Origin> = origins.into_iter().collect();
    let texts: Vec<String> = origins.iter().map(|o| o.text().into_owned()).collect();
    let mut distinct: Vec<&str> = Vec::new();
    let mut index: Vec<u32> = Vec::with_capacity(texts.len());
    let mut seen: HashMap<&str, u32> = HashMap::with_capacity(texts.len());
    for text in &texts {
        index.push(*seen.entry(text).or_insert_with(|| {
            distinct.push(text);
            offset(distinct.len() - 1)
        }));
    }
    let (mut ends, mut firsts, mut blocks) = (Vec::with_capacity(distinct.len()), Vec::new(), Vec::new());
    let mut plain = String::new();
    for (at, text) in distinct.iter().enumerate() {
        let full = firsts.last().is_some_and(|&first| at - first as usize == PER_BLOCK || plain.len() + text.len() > BLOCK_BYTES);
        if full {
            blocks.push(seal(&plain));
            plain.clear();
        }
        if full || firsts.is_empty() {
            firsts.push(offset(at));
        }
        plain.push_str(text);
        ends.push(offset(plain.len()));
    }
    if !firsts.is_empty() {
        blocks.push(seal(&plain));
    }
    let texts = Arc::new(Texts::Sealed { ends: ends.into_boxed_slice(), firsts: firsts.into_boxed_slice(), blocks: blocks.into_boxed_slice() });
    for (origin, at) in origins.iter_mut().zip(index) {
        **origin = Origin { texts: texts.clone(), at };
    }
}

/// `plain`, LZ4-compressed, its length first.
fn seal(plain: &str) -> Box<[u8]> {
    lz4_flex::block::compress_prepend_size(plain.as_bytes()).into_boxed_slice()
}

/// An offset or index in a sealed set. Origins of 4 GiB in all are far past anything a
/// source returns; a larger one would read as empty rather than as another origin's text.
fn offset(at: usize) -> u32 {
    u32::try_from(at).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_origins_read_as_before_each_text_once_and_compressed() {
        let written: Vec<String> = (0..1_000)
            .map(|i| format!("vpc_endpoints vpce-{:017} eni=eni-{i:017} az=us-east-1a vpc=vpc-1 account=111122223333 region=us-east-1 service=com.amazonaws.vpce.us-east-1.vpce-svc-{:017}", i / 2, i / 2))
            .chain(["route53 zone=Z1".to_owned(), "é".to_owned(), String::new(), "x".repeat(40_000), "config a.toml".to_owned()])
            .collect();
        let mut origins: Vec<Origin> = written.iter().map(|t| Origin::from(t.as_str())).collect();
        origins.extend(origins[..10].to_vec());
        let before = origins.clone();
        pack(origins.iter_mut());
        assert_eq!(origins, before);
        // In order, out of order, and across blocks.
        for at in (0..origins.len()).chain((0..origins.len()).rev()).chain([5, 900, 64, 63, 1_000, 1_003, 1_004]) {
            assert_eq!(origins[at].text(), before[at].text(), "origin {at}");
        }
        let Texts::Sealed { ends, firsts, blocks } = &*origins[0].texts else { panic!("sealed") };
        assert_eq!(ends.len(), written.len(), "each text once");
        // Blocks of at most 64 texts and 16 KiB: a longer text is a block of its own.
        assert_eq!(blocks.len(), firsts.len());
        assert!(firsts.windows(2).all(|w| w[1] - w[0] <= PER_BLOCK as u32));
        assert!(firsts.contains(&1_003) && firsts.contains(&1_004), "{firsts:?}");
        let sealed: usize = blocks.iter().map(|b| b.len()).sum();
        let plain: usize = written.iter().map(String::len).sum();
        assert!(sealed * 4 < plain, "sealed {sealed} of {plain} bytes");
        assert!(origins.iter().all(|o| Arc::ptr_eq(&o.texts, &origins[0].texts)), "one set");

        // Two packs of the same texts compare by their sets; a changed text is seen.
        let mut again = before.clone();
        pack(again.iter_mut());
        assert!(same_texts(origins.iter(), again.iter()));
        assert!(same_texts(origins.iter(), before.iter()), "sealed against plain");
        again[700] = Origin::from("vpc_endpoints vpce-changed");
        pack(again.iter_mut());
        assert!(!same_texts(origins.iter(), again.iter()));
        let turned: Vec<Origin> = origins[1..].iter().chain(&origins[..1]).cloned().collect();
        assert!(!same_texts(origins.iter(), turned.iter()), "same texts, another order");

        assert_eq!(serde_json::to_string(&origins[1_001]).unwrap(), r#""é""#);
        assert_eq!(serde_json::from_str::<Origin>(r#""route53 zone=Z1""#).unwrap(), origins[1_000]);
        assert_eq!(format!("{:?} {}", origins[1_000], origins[1_000]), r#""route53 zone=Z1" route53 zone=Z1"#);
        pack(std::iter::empty());
    }
}
