//! Times an encoder's embeddings in process (no HTTP): what the hub's feature-extraction
//! request costs without the round trip, for one sentence per call or a list of BATCH
//! sentences of different lengths per call. Runs as the hub runs a model: on the one worker
//! of a rayon pool of THREADS threads (the hub's inference threads have one each), so
//! candle's parallel kernels run on that thread. Used by bench/inference.sh and to profile
//! (docs/inference.md, Benchmark).
//!
//!     cargo run --release -p trove-infer --example embed_bench -- MODEL_DIR [CALLS] [BATCH] [THREADS]
//!
//! MODEL_DIR holds `config.json`, `tokenizer.json`, `model.safetensors` and, for
//! sentence-transformers pooling, `modules.json` and `1_Pooling/config.json`. The sentences
//! are the bench's: one of 10 words when BATCH is 1, else BATCH sentences of 4 to 16 words.
//! Prints a line to read and, last, a JSON line: `rate` (embeddings/s over CALLS calls after
//! one warm-up call), `cpu_rate` (the same per second of the process's CPU time, which a
//! busy machine disturbs less) and `first` (the first sentence's embedding, for the bench to
//! compare).

use std::path::Path;
use std::time::Instant;
use trove_infer::{Device, Model, ModelFiles};

mod bench_clock;

fn json(path: &Path) -> Option<serde_json::Value> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: embed_bench MODEL_DIR [CALLS] [BATCH] [THREADS]";
    let dir = std::path::PathBuf::from(args.next().ok_or(usage)?);
    let calls: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(200);
    let batch: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(1);
    let threads: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(1);
    let files = ModelFiles {
        config: json(&dir.join("config.json")).ok_or("config.json")?,
        tokenizer: std::fs::read(dir.join("tokenizer.json"))?,
        tokenizer_config: json(&dir.join("tokenizer_config.json")),
        st_modules: json(&dir.join("modules.json")),
        st_pooling: json(&dir.join("1_Pooling/config.json")),
        weights: vec![std::fs::read(dir.join("model.safetensors"))?],
        gguf: None,
    };
    let Model::Encoder(encoder) = Model::load(files, &Device::Cpu)? else {
        return Err("not an encoder".into());
    };
    let words = "the cat sleeps and the dog runs in the rain while a bird sings on the roof";
    let words: Vec<&str> = words.split(' ').collect();
    let sentences: Vec<String> = if batch == 1 {
        vec![words[..10].join(" ")]
    } else {
        (0..batch).map(|i| words[..4 + i % 13].join(" ")).collect()
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()?;
    let (first, seconds, cpu) = pool.install(|| -> trove_infer::Result<_> {
        let first = encoder.embed(&sentences, false)?;
        let (start, cpu) = (Instant::now(), bench_clock::process_cpu_seconds());
        for _ in 0..calls {
            encoder.embed(&sentences, false)?;
        }
        let cpu = cpu.zip(bench_clock::process_cpu_seconds());
        Ok((
            first,
            start.elapsed().as_secs_f64(),
            cpu.map(|(a, b)| b - a),
        ))
    })?;
    let per = seconds / (calls * batch).max(1) as f64;
    let cpu_rate = cpu.map(|cpu| (calls * batch) as f64 / cpu);
    let first = first.into_iter().next().and_then(|v| v.into_iter().next());
    println!(
        "{} values; {batch} per call; {threads} thread(s); {:.4} ms per embedding, {:.1} embeddings/s",
        first.as_ref().map_or(0, Vec::len),
        per * 1e3,
        1.0 / per
    );
    println!(
        "{}",
        serde_json::json!({"rate": 1.0 / per, "cpu_rate": cpu_rate, "first": first})
    );
    Ok(())
}
