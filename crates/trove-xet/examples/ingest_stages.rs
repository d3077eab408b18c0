//! Where the CPU time of an LFS ingestion goes, stage by stage, on this machine: each
//! in-memory stage the server runs over an upload's bytes, timed alone over FILE (best of
//! `ROUNDS`), printed as one JSON object of MiB/s. I/O (disk, fsync, the database) is not
//! here: the server's `storage.lfs_ingested` log line times those.
//!
//!     cargo run --release -p trove-xet --example ingest_stages -- FILE [ROUNDS]

use sha2::{Digest, Sha256};
use std::time::Instant;
use trove_xet::chunk::{Chunker, StreamChunker};
use trove_xet::hash::chunk_hash;
use trove_xet::pack::{self, XorbPacker};

/// Best time of `rounds` runs of `f`, in seconds, and the last value it returned.
fn best<T>(rounds: u32, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::INFINITY;
    let mut last = None;
    for _ in 0..rounds.max(1) {
        let start = Instant::now();
        let v = f();
        best = best.min(start.elapsed().as_secs_f64());
        last = Some(v);
    }
    (best, last.expect("at least one round"))
}

/// Chunk lengths of `data` (gear hash only).
fn cut(data: &[u8]) -> Vec<usize> {
    let mut chunker = Chunker::default();
    let mut rest = data;
    let mut lens = Vec::new();
    while let Some(n) = chunker.next_boundary(rest) {
        lens.push(n);
        rest = &rest[n..];
    }
    if !rest.is_empty() {
        lens.push(rest.len());
    }
    lens
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: ingest_stages FILE [ROUNDS]")?;
    let rounds: u32 = match args.next() {
        Some(r) => r.parse()?,
        None => 3,
    };
    let data = std::fs::read(&path)?;
    let mib = data.len() as f64 / f64::from(1u32 << 20);
    let lens = cut(&data);
    let chunks: Vec<&[u8]> = {
        let mut out = Vec::with_capacity(lens.len());
        let mut at = 0;
        for &n in &lens {
            out.push(&data[at..at + n]);
            at += n;
        }
        out
    };

    let (sha, _) = best(rounds, || Sha256::digest(&data));
    let (gear, _) = best(rounds, || cut(&data).len());
    let (blake, _) = best(rounds, || {
        chunks
            .iter()
            .fold(0u8, |f, c| f ^ chunk_hash(c).to_bytes()[0])
    });
    // The raw rate and the server's chunking stage (the same work fed in the pieces an HTTP
    // body arrives in), timed in alternation so that both see the same load; the ratio of
    // each pair is kept too.
    let raw_once = || {
        // What the chunk_rate example measures: cut, then hash each chunk in place.
        let mut chunker = Chunker::default();
        let mut rest = data.as_slice();
        let mut fold = 0u8;
        while let Some(n) = chunker.next_boundary(rest) {
            fold ^= chunk_hash(&rest[..n]).to_bytes()[0];
            rest = &rest[n..];
        }
        fold ^ chunk_hash(rest).to_bytes()[0]
    };
    let stream_once = || {
        let mut s = StreamChunker::default();
        let mut out = Vec::new();
        for piece in data.chunks(16 * 1024) {
            s.feed(piece, &mut out);
        }
        s.finish(&mut out);
        out.len()
    };
    let (mut raw, mut stream) = (f64::INFINITY, f64::INFINITY);
    let mut ratios = Vec::new();
    for _ in 0..rounds.max(1) {
        let (r, _) = best(1, raw_once);
        let (s, _) = best(1, stream_once);
        raw = raw.min(r);
        stream = stream.min(s);
        ratios.push(r / s);
    }
    ratios.sort_by(f64::total_cmp);
    let stream_over_raw_median = ratios[ratios.len() / 2];
    let (choose, _) = best(rounds, || {
        // Once per xorb on its first chunk; timed here over every chunk to show its price.
        chunks
            .iter()
            .map(|c| format!("{:?}", pack::choose_compression(c)).len())
            .sum::<usize>()
    });
    let (packing, scheme) = best(rounds, || {
        // Packing every chunk as new: hash check, compression as chosen, records written.
        let mut packer = XorbPacker::new(std::io::sink());
        let mut scheme = None;
        let (mut n, mut bytes) = (0usize, 0u64);
        for c in &chunks {
            if !pack::fits(n, bytes, c.len() as u64) {
                scheme = packer.compression().or(scheme);
                let _ = packer.finish();
                packer = XorbPacker::new(std::io::sink());
                (n, bytes) = (0, 0);
            }
            packer.push(c).expect("push");
            n += 1;
            bytes += 8 + c.len() as u64;
        }
        let scheme = packer.compression().or(scheme);
        let _ = packer.finish();
        scheme
    });
    let rate = |s: f64| mib / s;
    println!(
        "{{\"bytes\": {}, \"chunks\": {}, \"sha256\": {:.1}, \"gear\": {:.1}, \"blake3\": {:.1}, \
         \"raw_gear_blake3\": {:.1}, \"stream_chunker_16k_pieces\": {:.1}, \
         \"stream_over_raw_median\": {:.2}, \"choose_compression_every_chunk\": {:.1}, \"pack\": {:.1}, \"scheme\": \"{:?}\"}}",
        data.len(),
        chunks.len(),
        rate(sha),
        rate(gear),
        rate(blake),
        rate(raw),
        rate(stream),
        stream_over_raw_median,
        rate(choose),
        rate(packing),
        scheme
    );
    Ok(())
}
