//! A README.md read as the index reads it: front matter within the parse budget, typed
//! metadata and tags. Never panics; a refused card is a warning and no data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trove_card::{FileFacts, derive_tags, hidden_facets, read_card};
use trove_types::RepoType;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let repo_type = match kind % 3 {
        0 => RepoType::Model,
        1 => RepoType::Dataset,
        _ => RepoType::Space,
    };
    // Wrapped in front matter fences half of the time, so the YAML itself gets explored.
    let readme = if kind & 4 == 0 {
        format!("---\n{text}\n---\n")
    } else {
        text.to_owned()
    };
    let card = read_card(repo_type, &readme);
    if card.data.is_none() {
        assert!(
            card.warnings.is_empty() || card.warnings[0].starts_with("README.md metadata ignored")
        );
    }
    let tags = derive_tags(&card, &FileFacts::default());
    assert!(tags.iter().all(|t| !t.is_empty()));
    let _ = hidden_facets(&card);
});
