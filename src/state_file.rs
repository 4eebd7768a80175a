//! The state file: every source's last good answer, written after each change (temporary file
//! + fsync + rename) and read back at start, so a restart serves endpoint names at once even
//! when AWS is unreachable. A corrupt or foreign file is reported and ignored, never fatal.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::{Deserialize, Serialize};

use crate::sources::{SourceOutput, aws::now_rfc3339};

/// Identifies the state file's layout; a file with another value is ignored.
const STATE_FORMAT: &str = "hubdns-state/2";

/// Layouts read as well: `/1` wrote each source's records one by one (a
/// [`crate::record_list::RecordList`] reads either).
const READABLE_FORMATS: [&str; 2] = [STATE_FORMAT, "hubdns-state/1"];

#[derive(Serialize, Deserialize)]
struct StateFile {
    format: String,
    written_at: String,
    sources: BTreeMap<String, Arc<SourceOutput>>,
}

/// Reads the state file; anything wrong with it is logged and yields nothing.
pub fn read(path: &Path) -> BTreeMap<String, Arc<SourceOutput>> {
    read_checked(path).0
}

/// [`read`], and whether the file may be written over before any source answers: yes when it
/// is missing or was read, no when it is another version's, unreadable or corrupt (it may be
/// the only copy of the last good answers; fresh answers replace it).
pub fn read_checked(path: &Path) -> (BTreeMap<String, Arc<SourceOutput>>, bool) {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return (BTreeMap::new(), true),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "state file unreadable; ignored");
            return (BTreeMap::new(), false);
        }
    };
    match serde_json::from_str::<StateFile>(&text) {
        Ok(state) if READABLE_FORMATS.contains(&state.format.as_str()) => (state.sources, true),
        Ok(state) => {
            tracing::warn!(path = %path.display(), format = %state.format, expected = STATE_FORMAT, "state file of another format; ignored, and kept until a source answers");
            (BTreeMap::new(), false)
        }
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "state file corrupt; ignored, and kept until a source answers");
            (BTreeMap::new(), false)
        }
    }
}

/// Whether the state file could be written where it is: its temporary file is created beside
/// it and removed, and nothing else is touched.
pub fn check_writable(path: &Path) -> std::io::Result<()> {
    let tmp: PathBuf = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::File::create(&tmp)?;
    std::fs::remove_file(&tmp)
}

/// Writes the state file atomically: a temporary file beside it, fsync, rename, fsync the dir.
pub fn write(path: &Path, sources: BTreeMap<String, Arc<SourceOutput>>) -> std::io::Result<()> {
    let state = StateFile { format: STATE_FORMAT.into(), written_at: now_rfc3339(), sources };
    let tmp: PathBuf = path.with_extension(format!("tmp.{}", std::process::id()));
    let result = (|| {
        // Streamed: thousands of endpoints make megabytes of JSON, never held whole.
        let mut file = std::io::BufWriter::with_capacity(64 * 1024, std::fs::File::create(&tmp)?);
        serde_json::to_writer(&mut file, &state).map_err(std::io::Error::other)?;
        file.flush()?;
        file.get_ref().sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_file_round_trips_and_bad_files_are_ignored() {
        let dir = std::env::temp_dir().join(format!("hubdns-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        write(&path, [("vpc_endpoints/us-east-1".to_owned(), Arc::new(crate::sources::output::sample_output()))].into()).unwrap();
        let back = read(&path);
        assert_eq!(back["vpc_endpoints/us-east-1"].records, crate::sources::output::sample_output().records);

        assert!(read_checked(&path).1, "a state file read may be replaced");
        // A file of the layout before, each record written whole, is read the same.
        let old = r#"{"format":"hubdns-state/1","written_at":"","sources":{"vpc_endpoints/us-east-1":{"records":[{"name":"vpce-1.svc.us-east-1.vpce.amazonaws.com.","ttl":60,"data":{"A":"10.0.0.1"},"provenance":{"source":"endpoint-dns","origin":"vpc_endpoints vpce-1"}}],"handles":{"vpce-1":"vpce-1.svc.us-east-1.vpce.amazonaws.com."},"fetched_at":"2026-11-21T15:00:00Z"}}}"#;
        std::fs::write(&path, old).unwrap();
        // Its handles are kept for config aliases until the source answers (`handles_of`), and
        // never written again.
        let mut legacy = crate::sources::output::sample_output();
        legacy.legacy_handles = [("vpce-1".to_owned(), "vpce-1.svc.us-east-1.vpce.amazonaws.com.".to_owned())].into();
        assert_eq!(read_checked(&path), ([("vpc_endpoints/us-east-1".to_owned(), Arc::new(legacy.clone()))].into(), true));
        write(&path, [("vpc_endpoints/us-east-1".to_owned(), Arc::new(legacy))].into()).unwrap();
        assert!(!std::fs::read_to_string(&path).unwrap().contains("handles"));
        // A `handles` that is not a map of names is ignored, as before.
        std::fs::write(&path, old.replace(r#"{"vpce-1":"vpce-1.svc.us-east-1.vpce.amazonaws.com."}"#, "[1, null]")).unwrap();
        assert_eq!(read_checked(&path), ([("vpc_endpoints/us-east-1".to_owned(), Arc::new(crate::sources::output::sample_output()))].into(), true));
        std::fs::write(&path, b"{\"format\": \"hubdns-state/1\", \"sources\": {").unwrap();
        assert_eq!(read_checked(&path), (BTreeMap::new(), false), "corrupt: ignored, and not to be written over before an answer");
        std::fs::write(&path, br#"{"format":"hubdns-state/99","written_at":"","sources":{}}"#).unwrap();
        assert_eq!(read_checked(&path), (BTreeMap::new(), false), "other format: ignored, and kept");
        assert_eq!(read_checked(&dir.join("missing.json")), (BTreeMap::new(), true));
        assert!(write(&dir.join("no/such/dir/state.json"), BTreeMap::new()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Endpoint summaries are written in the JSON shape they always had, and read back with one
    /// copy of what endpoints repeat (VPC, type, AZ, AZ ID), as a conversion makes them.
    #[test]
    fn endpoint_summaries_keep_their_shape_and_are_read_back_compact() {
        let dir = std::env::temp_dir().join(format!("hubdns-state-share-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        let interface = |id: &str, az: &str, az_id: &str, ip: &str| crate::sources::output::InterfaceSummary {
            id: id.into(),
            az: az.into(),
            az_id: az_id.into(),
            addresses: [ip.parse().unwrap()].into(),
        };
        let endpoint = |id: &str, eni: &str| crate::sources::output::EndpointSummary {
            id: id.into(),
            service: "com.amazonaws.us-east-1.secretsmanager".into(),
            vpc: "vpc-0a1b2c3d4e5f60718".into(),
            names: [format!("{id}-8m2kq4xz.secretsmanager.us-east-1.vpce.amazonaws.com.").into_boxed_str()].into(),
            interfaces: [interface(eni, "us-east-1a", "use1-az1", "10.10.1.25"), interface("eni-b", "us-east-1b", "", "10.10.2.41")].into(),
            kind: "Interface".into(),
            domains: Vec::new(),
        };
        let mut output = crate::sources::output::sample_output();
        output.endpoints = Arc::new(vec![endpoint("vpce-1", "eni-a"), endpoint("vpce-2", "eni-c")].into());
        write(&path, [("vpc_endpoints/us-east-1".to_owned(), Arc::new(output.clone()))].into()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            json["sources"]["vpc_endpoints/us-east-1"]["endpoints"][0],
            serde_json::json!({
                "id": "vpce-1", "service": "com.amazonaws.us-east-1.secretsmanager", "vpc": "vpc-0a1b2c3d4e5f60718",
                "names": ["vpce-1-8m2kq4xz.secretsmanager.us-east-1.vpce.amazonaws.com."],
                "interfaces": [
                    {"id": "eni-a", "az": "us-east-1a", "az_id": "use1-az1", "addresses": ["10.10.1.25"]},
                    {"id": "eni-b", "az": "us-east-1b", "addresses": ["10.10.2.41"]}
                ],
                "kind": "Interface", "domains": []
            })
        );
        let back = read(&path);
        let back = &back["vpc_endpoints/us-east-1"];
        assert_eq!(**back, output);
        // VPC, type, the two AZs, the AZ ID and the empty AZ ID: each kept once for both.
        assert_eq!(back.endpoints.distinct_shared(), 6);
        std::fs::remove_dir_all(&dir).unwrap();
    }

}
