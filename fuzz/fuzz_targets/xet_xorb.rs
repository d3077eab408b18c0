//! Uploaded Xet xorbs (chunk headers, compressed chunks, footer) and stored xorb indexes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trove_xet::XetHash;
use trove_xet::xorb::{self, XorbIndex};

fuzz_target!(|data: &[u8]| {
    let _ = xorb::validate(data, &XetHash::from_bytes([0; 32]));
    if let Ok(index) = XorbIndex::decode(data) {
        assert_eq!(XorbIndex::decode(&index.encode()).ok(), Some(index));
    }
});
