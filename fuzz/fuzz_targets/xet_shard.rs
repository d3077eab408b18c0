//! Uploaded Xet shards (the file section a client sends) and the stored term lists.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trove_xet::shard;

fuzz_target!(|data: &[u8]| {
    let _ = shard::parse(data);
    if let Some(terms) = shard::decode_terms(data) {
        assert_eq!(
            shard::decode_terms(&shard::encode_terms(&terms)),
            Some(terms)
        );
    }
});
