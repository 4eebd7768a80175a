//! The text of a record's provenance ([`crate::snapshot::Provenance`]): [`Origin`], a range of a
//! buffer that many origins may share.
//!
//! Every record says where it came from, for `explain` and `/records`: a config file, a
//! Route 53 zone and record set, or an endpoint and its ENI (`vpc_endpoints vpce-… eni=… az=…
//! vpc=… account=… region=… service=…`). At 5,000 endpoints that is 10,000 strings of about 200
//! bytes, each its own allocation in a 256-byte block among pages the fetch's scratch also
//! used: 2.9 MiB of the process's anonymous memory, measured by leaving them out. A source's
//! answer therefore keeps its origins in one buffer ([`pack`], called by
//! [`crate::record_list::RecordList`] when a fetch or a state file is read in), each origin
//! a range of it, and the table's records share that buffer.

use std::{collections::HashMap, fmt, ops::Deref, sync::Arc};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Origin text: a range of a shared buffer. It reads as a `&str` ([`Deref`]), compares and
/// serializes as one, and costs one pointer and two offsets however many records share it.
#[derive(Clone)]
pub struct Origin {
    /// The buffer, shared by every origin packed with this one (an `Arc<String>` rather than
    /// an `Arc<str>`: a thin pointer keeps a provenance at 24 bytes).
    text: Arc<String>,
    start: u32,
    end: u32,
}

impl Origin {
    /// The origin's text.
    pub fn as_str(&self) -> &str {
        // `start..end` was a range of `text` at char boundaries when it was made; `get` keeps
        // a damaged range from panicking.
        self.text.get(self.start as usize..self.end as usize).unwrap_or_default()
    }
}

impl Deref for Origin {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for Origin {
    fn from(text: String) -> Self {
        // An origin is a line of text a source wrote; one of 4 GiB would not have been read.
        let end = u32::try_from(text.len()).unwrap_or(0);
        Self { text: Arc::new(text), start: 0, end }
    }
}

impl From<&str> for Origin {
    fn from(text: &str) -> Self {
        Self::from(text.to_owned())
    }
}

impl PartialEq for Origin {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Origin {}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Origin {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self)
    }
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::from)
    }
}

/// Moves `origins` into one buffer, each distinct text once, and points each at its range
/// there; the buffers they held are freed as their last user lets go. Equal origins end up
/// sharing one range.
pub fn pack<'a>(origins: impl IntoIterator<Item = &'a mut Origin>) {
    let origins: Vec<&mut Origin> = origins.into_iter().collect();
    let mut buffer = String::with_capacity(origins.iter().map(|o| o.len()).sum());
    let mut ranges: Vec<(u32, u32)> = Vec::with_capacity(origins.len());
    let mut seen: HashMap<&str, (u32, u32)> = HashMap::with_capacity(origins.len());
    for origin in &origins {
        let range = *seen.entry(origin.as_str()).or_insert_with(|| {
            let start = buffer.len();
            buffer.push_str(origin);
            (offset(start), offset(buffer.len()))
        });
        ranges.push(range);
    }
    drop(seen);
    let text = Arc::new(buffer);
    for (origin, (start, end)) in origins.into_iter().zip(ranges) {
        *origin = Origin { text: text.clone(), start, end };
    }
}

/// An offset into a packed buffer. Origins of 4 GiB in all are far past anything a source
/// returns; a larger one would read as empty rather than as another origin's text.
fn offset(at: usize) -> u32 {
    u32::try_from(at).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_origins_read_as_before_and_share_one_buffer() {
        let mut origins: Vec<Origin> = ["vpc_endpoints vpce-1 eni=a", "route53 zone=Z1", "vpc_endpoints vpce-1 eni=a", "é"].map(Origin::from).to_vec();
        let before = origins.clone();
        pack(origins.iter_mut());
        assert_eq!(origins, before);
        assert_eq!(origins.iter().map(|o| o.to_string()).collect::<Vec<_>>(), ["vpc_endpoints vpce-1 eni=a", "route53 zone=Z1", "vpc_endpoints vpce-1 eni=a", "é"]);
        assert!(origins.iter().all(|o| Arc::ptr_eq(&o.text, &origins[0].text)), "one buffer");
        assert_eq!(origins[0].text.len(), "vpc_endpoints vpce-1 eni=a".len() + "route53 zone=Z1".len() + "é".len(), "each text once");
        assert_eq!(serde_json::to_string(&origins[3]).unwrap(), r#""é""#);
        assert_eq!(serde_json::from_str::<Origin>(r#""route53 zone=Z1""#).unwrap(), origins[1]);
        assert_eq!(format!("{:?}", origins[1]), r#""route53 zone=Z1""#);
        pack(std::iter::empty());
    }
}
