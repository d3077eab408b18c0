//! The raw rate of the Xet chunker plus the chunk hash (keyed BLAKE3) on this machine: the
//! file is read into memory first, then cut and hashed `--rounds` times; the best round is
//! printed as JSON. `bench/storage_bench.py` compares the server's LFS ingestion with it.
//!
//!     cargo run --release -p trove-xet --example chunk_rate -- FILE [ROUNDS]

use std::time::Instant;
use trove_xet::chunk::Chunker;
use trove_xet::hash::chunk_hash;

/// Cuts and hashes `data` once; returns the number of chunks (so the work is not optimised away).
fn chunk_and_hash(data: &[u8]) -> (usize, u8) {
    let mut chunker = Chunker::default();
    let mut rest = data;
    let mut chunks = 0;
    let mut fold = 0u8;
    while let Some(n) = chunker.next_boundary(rest) {
        fold ^= chunk_hash(&rest[..n]).to_bytes()[0];
        chunks += 1;
        rest = &rest[n..];
    }
    if !rest.is_empty() {
        fold ^= chunk_hash(rest).to_bytes()[0];
        chunks += 1;
    }
    (chunks, fold)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: chunk_rate FILE [ROUNDS]")?;
    let rounds: u32 = match args.next() {
        Some(r) => r.parse()?,
        None => 3,
    };
    let data = std::fs::read(&path)?;
    let mut best = f64::INFINITY;
    let mut chunks = 0;
    let mut fold = 0u8;
    for _ in 0..rounds.max(1) {
        let start = Instant::now();
        let (n, f) = chunk_and_hash(&data);
        best = best.min(start.elapsed().as_secs_f64());
        chunks = n;
        fold ^= f;
    }
    println!(
        "{{\"bytes\": {}, \"chunks\": {}, \"best_seconds\": {:.6}, \"mib_per_s\": {:.1}, \"fold\": {}}}",
        data.len(),
        chunks,
        best,
        data.len() as f64 / (1 << 20) as f64 / best,
        fold
    );
    Ok(())
}
