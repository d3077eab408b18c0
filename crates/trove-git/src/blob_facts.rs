//! What listing a tree learns of a blob — its size and, for a blob small enough to be one,
//! whether it is a Git LFS pointer — remembered across requests and repositories.
//!
//! A blob's id names its content, so these facts never change and hold in every repository
//! that has the blob: nothing here is ever invalidated, only forgotten when the table is full.
//! Only listings of trees a repository holds ask, and git guarantees that every blob such a
//! tree names is in that repository (pushes pass receive-pack's connectivity check, API
//! commits write the blobs they name), so a remembered fact never tells a repository about a
//! blob it does not hold.
//!
//! Bounded: two generations of at most [`GENERATION`] entries each. A hit in the older one
//! moves the entry to the newer; when the newer is full the older is dropped and the newer
//! takes its place — blobs listed recently stay, the rest go, at most 2 × [`GENERATION`]
//! entries (about 100 bytes each) at any time.

use git2::Oid;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};
use trove_types::LfsPointer;

/// Entries per generation.
const GENERATION: usize = 32 * 1024;

/// A blob's size (of the blob itself) and the LFS pointer it holds, if it is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BlobFacts {
    pub size: u64,
    pub pointer: Option<LfsPointer>,
}

#[derive(Default)]
struct Generations {
    newer: HashMap<Oid, BlobFacts>,
    older: HashMap<Oid, BlobFacts>,
}

impl Generations {
    fn get(&mut self, oid: &Oid) -> Option<BlobFacts> {
        if let Some(facts) = self.newer.get(oid) {
            return Some(facts.clone());
        }
        let facts = self.older.remove(oid)?;
        self.insert(*oid, facts.clone());
        Some(facts)
    }

    fn insert(&mut self, oid: Oid, facts: BlobFacts) {
        if self.newer.len() >= GENERATION {
            self.older = std::mem::take(&mut self.newer);
        }
        self.newer.insert(oid, facts);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.newer.len() + self.older.len()
    }
}

static FACTS: LazyLock<Mutex<Generations>> = LazyLock::new(Mutex::default);

/// The facts remembered of blob `oid`, if any.
pub(crate) fn remembered(oid: &Oid) -> Option<BlobFacts> {
    // A panic while the lock was held cannot leave a half-written entry: every entry is
    // inserted whole, so a poisoned table is still sound.
    FACTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(oid)
}

/// Remembers the facts of blob `oid`.
pub(crate) fn remember(oid: Oid, facts: BlobFacts) {
    FACTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(oid, facts);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(n: u32) -> Oid {
        let mut bytes = [0u8; 20];
        bytes[..4].copy_from_slice(&n.to_be_bytes());
        Oid::from_bytes(&bytes).expect("20 bytes make an oid")
    }

    fn facts(size: u64) -> BlobFacts {
        BlobFacts {
            size,
            pointer: None,
        }
    }

    #[test]
    fn the_table_stays_within_two_generations_and_keeps_what_was_read_recently() {
        let mut g = Generations::default();
        g.insert(oid(0), facts(0));
        for n in 1..(3 * GENERATION as u32) {
            g.insert(oid(n), facts(u64::from(n)));
            // Blob 0 is read all along: it never falls out.
            assert_eq!(g.get(&oid(0)), Some(facts(0)));
            assert!(g.len() <= 2 * GENERATION);
        }
        // The oldest of the others are gone, the newest are there.
        assert_eq!(g.get(&oid(1)), None);
        let last = 3 * GENERATION as u32 - 1;
        assert_eq!(g.get(&oid(last)), Some(facts(u64::from(last))));
    }

    #[test]
    fn a_hit_in_the_older_generation_survives_the_next_turn() {
        let mut g = Generations::default();
        for n in 0..GENERATION as u32 {
            g.insert(oid(n), facts(u64::from(n)));
        }
        // The next insert turns the generations: 0..GENERATION become the older one.
        g.insert(oid(u32::MAX), facts(1));
        assert_eq!(g.get(&oid(7)), Some(facts(7)));
        for n in 0..GENERATION as u32 {
            g.insert(oid(1_000_000 + n), facts(2));
        }
        assert_eq!(
            g.get(&oid(7)),
            Some(facts(7)),
            "moved to the newer generation on its hit"
        );
        assert_eq!(g.get(&oid(8)), None);
    }
}
