//! Git LFS pointer files: any blob may be read as one. What parses prints back to text that
//! parses to the same pointer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trove_types::LfsPointer;

fuzz_target!(|data: &[u8]| {
    if let Some(pointer) = LfsPointer::parse(data) {
        assert_eq!(
            LfsPointer::parse(pointer.to_text().as_bytes()),
            Some(pointer)
        );
    }
});
