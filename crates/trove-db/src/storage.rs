//! The chunk store seen as a whole: where chunks are (the chunk index), and what the store
//! holds against what repositories reference (storage statistics).

use crate::Db;
use crate::error::Result;
use sqlx::{QueryBuilder, Row, Sqlite};
use std::collections::HashMap;

/// Hashes per lookup query, well under SQLite's bound-parameter limit.
const HASHES_PER_QUERY: usize = 500;

/// Where a chunk can be read: its xorb and its index in that xorb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLocation {
    pub xorb: [u8; 32],
    pub index: u32,
}

impl Db {
    /// The locations of those of `hashes` the chunk index holds.
    pub async fn chunk_locations(
        &self,
        hashes: &[[u8; 32]],
    ) -> Result<HashMap<[u8; 32], ChunkLocation>> {
        let mut out = HashMap::new();
        for batch in hashes.chunks(HASHES_PER_QUERY) {
            let mut q: QueryBuilder<Sqlite> =
                QueryBuilder::new("SELECT hash, xorb, idx FROM xet_chunks WHERE hash IN (");
            let mut sep = q.separated(", ");
            for h in batch {
                sep.push_bind(h.as_slice());
            }
            q.push(")");
            for row in q.build().fetch_all(&self.pool).await? {
                let (hash, xorb, idx): (Vec<u8>, Vec<u8>, i64) =
                    (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
                if let (Ok(hash), Ok(xorb), Ok(index)) = (
                    <[u8; 32]>::try_from(hash.as_slice()),
                    <[u8; 32]>::try_from(xorb.as_slice()),
                    u32::try_from(idx),
                ) {
                    out.insert(hash, ChunkLocation { xorb, index });
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Db, XorbRecord};

    #[tokio::test]
    async fn recording_a_xorb_indexes_its_chunks_once() {
        let db = Db::open_in_memory().await.expect("db");
        let rec = XorbRecord {
            stored_bytes: 10,
            raw_bytes: 10,
            num_chunks: 2,
            chunk_index: vec![1; 80],
        };
        db.record_xorb(&[1; 32], &rec, &[[7; 32], [8; 32]], 1)
            .await
            .expect("first");
        // A second xorb holding chunk 8 again does not move its location.
        db.record_xorb(&[2; 32], &rec, &[[8; 32], [9; 32]], 2)
            .await
            .expect("second");
        let found = db
            .chunk_locations(&[[7; 32], [8; 32], [9; 32], [6; 32]])
            .await
            .expect("lookup");
        assert_eq!(found.len(), 3);
        assert_eq!(found[&[8; 32]].xorb, [1; 32]);
        assert_eq!(found[&[8; 32]].index, 1);
        assert_eq!(found[&[9; 32]].xorb, [2; 32]);
        assert_eq!(found[&[9; 32]].index, 1);
    }
}
