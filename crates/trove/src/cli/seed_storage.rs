//! `trove bench-seed-storage`: fills a data dir's chunk store with real, valid xorbs that no
//! file names (what deleting their repositories leaves for garbage collection): each xorb
//! packed by the server's own packer from small random chunks, published and recorded with
//! its chunks in the dedup index exactly as an upload records them. For the GC benchmark
//! (a million chunks in minutes, where uploading them would take an hour) and the kill -9
//! test of a GC run; never on a data dir that matters.

use crate::cli::progress::Progress;
use crate::clock::now_ms;
use crate::state::AppState;
use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::BufWriter;
use trove_db::XorbRecord;
use trove_xet::pack::XorbPacker;

/// Writes `xorbs` xorbs of `chunks_per_xorb` random chunks of `chunk_bytes` each.
pub async fn run(
    state: &AppState,
    xorbs: usize,
    chunks_per_xorb: usize,
    chunk_bytes: usize,
    seed: u64,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=8192).contains(&chunks_per_xorb) && (1..=128 * 1024).contains(&chunk_bytes),
        "chunks per xorb must be 1..=8192 and chunk bytes 1..=131072"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let mut progress = Progress::new("seed");
    for i in 0..xorbs {
        let chunks: Vec<Vec<u8>> = (0..chunks_per_xorb)
            .map(|_| (0..chunk_bytes).map(|_| rng.random()).collect())
            .collect();
        let store = (*state.store).clone();
        let (staged, xorb, index) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let (mut staged, out) = store.create_staged_xorb()?;
            let mut packer = XorbPacker::new(BufWriter::new(out));
            for c in &chunks {
                packer.push(c)?;
            }
            let (xorb, index, out) = packer.finish()?;
            out.into_inner().map_err(|e| e.into_error())?;
            staged.set_len(index.stored_len());
            Ok((staged, xorb, index))
        })
        .await??;
        state
            .store
            .publish_xorb(staged, &xorb.hex(), index.stored_len())
            .await
            .context("publishing a xorb")?;
        let record = XorbRecord {
            stored_bytes: index.stored_len(),
            raw_bytes: index.raw_len(),
            num_chunks: index.num_chunks(),
            chunk_index: index.encode(),
        };
        let hashes: Vec<[u8; 32]> = index.chunks.iter().map(|c| c.hash.to_bytes()).collect();
        state
            .db
            .record_xorb(&xorb.to_bytes(), &record, &hashes, now_ms())
            .await?;
        progress.update(|| format!("{} of {xorbs} xorbs", i + 1));
    }
    progress.finish();
    Ok(())
}
