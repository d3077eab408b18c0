//! Times a decoder's greedy generation in process (no HTTP): what the hub's text-generation
//! request costs without the round trip — the prompt "the cat" tokenized, run, then NEW
//! tokens one at a time with the key/value cache. Runs as the hub runs a model: on the one
//! worker of a rayon pool of THREADS threads. Used by bench/inference.sh and to profile
//! (docs/inference.md, Benchmark).
//!
//!     cargo run --release -p trove-infer --example gen_bench -- MODEL_DIR [NEW] [CALLS] [THREADS]
//!
//! MODEL_DIR holds `config.json`, `tokenizer.json` and `model.safetensors`, or a `.gguf` file
//! and `tokenizer.json`. The model should have no EOS token (the bench's have none) so that
//! every call generates NEW tokens. Prints a line to read and, last, a JSON line: `rate`
//! (generated tokens/s over CALLS calls after one warm-up call), `cpu_rate` (the same per
//! second of the process's CPU time, which a busy machine disturbs less) and `ids` (the
//! tokens).

use std::path::Path;
use std::time::Instant;
use trove_infer::{Device, GenerationParams, Model, ModelFiles};

mod bench_clock;

fn json(path: &Path) -> Option<serde_json::Value> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: gen_bench MODEL_DIR [NEW] [CALLS] [THREADS]";
    let dir = std::path::PathBuf::from(args.next().ok_or(usage)?);
    let new: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(32);
    let calls: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(3);
    let threads: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(1);
    let gguf = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "gguf"));
    let files = ModelFiles {
        config: json(&dir.join("config.json")).unwrap_or(serde_json::json!({})),
        tokenizer: std::fs::read(dir.join("tokenizer.json"))?,
        tokenizer_config: json(&dir.join("tokenizer_config.json")),
        st_modules: None,
        st_pooling: None,
        weights: match &gguf {
            Some(_) => Vec::new(),
            None => vec![std::fs::read(dir.join("model.safetensors"))?],
        },
        gguf: gguf.map(std::fs::read).transpose()?,
    };
    let Model::Decoder(decoder) = Model::load(files, &Device::Cpu)? else {
        return Err("not a decoder".into());
    };
    let params = GenerationParams {
        max_new_tokens: new,
        temperature: None,
        top_k: None,
        top_p: None,
        do_sample: false,
        seed: 0,
        stop: Vec::new(),
        logprobs: false,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()?;
    let (ids, tokens, seconds, cpu) = pool.install(|| -> trove_infer::Result<_> {
        let first = decoder.generate("the cat", &params, true, &mut |_, _| true)?;
        let (start, cpu) = (Instant::now(), bench_clock::process_cpu_seconds());
        let mut tokens = 0;
        for _ in 0..calls {
            tokens += decoder
                .generate("the cat", &params, true, &mut |_, _| true)?
                .token_ids()
                .len();
        }
        let cpu = cpu.zip(bench_clock::process_cpu_seconds());
        Ok((
            first.token_ids(),
            tokens,
            start.elapsed().as_secs_f64(),
            cpu.map(|(a, b)| b - a),
        ))
    })?;
    let rate = tokens as f64 / seconds;
    let cpu_rate = cpu.map(|cpu| tokens as f64 / cpu);
    println!(
        "{} tokens per call; {threads} thread(s); {:.3} ms per token, {rate:.1} tokens/s",
        ids.len(),
        1e3 / rate
    );
    println!(
        "{}",
        serde_json::json!({"rate": rate, "cpu_rate": cpu_rate, "ids": ids})
    );
    Ok(())
}
