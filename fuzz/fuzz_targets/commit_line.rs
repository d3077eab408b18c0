//! One line of the NDJSON commit body. The endpoint's line reader writes blobs as it goes
//! and is not a library function, so this drives the parsers it is made of, in its order:
//! the JSON object, then the path (`RepoPath`, folders with `parse_folder`), base64 content
//! and the LFS object id.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use trove_types::{RepoPath, Sha256Hex};

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Object(line)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let (Some(Value::String(key)), Some(Value::Object(value))) =
        (line.get("key"), line.get("value"))
    else {
        return;
    };
    let text = |field: &str| value.get(field).and_then(Value::as_str);
    if let Some(path) = text("path") {
        let parsed = if key == "deletedFolder" {
            RepoPath::parse_folder(path)
        } else {
            RepoPath::parse(path)
        };
        if let Ok(p) = parsed {
            // What was accepted is what is stored, and parses again to itself.
            assert_eq!(RepoPath::parse(p.as_str()).as_ref(), Ok(&p));
            assert!(
                p.as_str()
                    .split('/')
                    .all(|s| !s.is_empty() && s.len() <= 255)
            );
        }
    }
    if let Some(content) = text("content") {
        let _ = base64::engine::general_purpose::STANDARD.decode(content.as_bytes());
    }
    if let Some(oid) = text("oid") {
        if let Ok(oid) = Sha256Hex::parse(oid) {
            assert_eq!(oid.to_string().len(), 64);
        }
    }
});
