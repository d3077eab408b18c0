//! The checks against hand-broken files, and each architecture generating.

use super::*;
use crate::tests::greedy;
use crate::{Model, ModelFiles};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device};

const TOKENIZER: &str = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
    "normalizer":null,"pre_tokenizer":{"type":"WhitespaceSplit"},"post_processor":null,
    "decoder":null,"model":{"type":"WordLevel","vocab":{"<unk>":0,"a":1,"b":2},"unk_token":"<unk>"}}"#;

const HIDDEN: usize = 32;
const VOCAB: usize = 3;

/// A file's parts, to be broken by a test before [`Parts::write`].
struct Parts {
    metadata: Vec<(String, Value)>,
    tensors: Vec<(String, QTensor)>,
}

impl Parts {
    /// A one-block model of `arch` written with candle's own writer: Q8_0 matrices, F32
    /// norms and biases, a tied head for Qwen2. Qwen3's heads are 32 wide against an
    /// embedding of 32 and two heads (its head size is its own key).
    fn new(arch: &str) -> Parts {
        let cpu = &Device::Cpu;
        let (heads, kv_heads, inner) = (2usize, 1usize, 64usize);
        let d = if arch == "qwen3" { 32 } else { HIDDEN / heads };
        let matrix = |rows: usize, cols: usize, seed: f64| {
            let t = Tensor::arange(0f32, (rows * cols) as f32, cpu)
                .and_then(|t| (t * seed)?.sin())
                .and_then(|t| t.reshape((rows, cols)))
                .expect("tensor");
            QTensor::quantize(&t, GgmlDType::Q8_0).expect("quantized")
        };
        let vector = |n: usize, value: f64| {
            let t = (Tensor::ones(n, DType::F32, cpu).expect("ones") * value).expect("scaled");
            QTensor::quantize(&t, GgmlDType::F32).expect("f32")
        };
        let mut tensors: Vec<(String, QTensor)> = vec![
            ("token_embd.weight".into(), matrix(VOCAB, HIDDEN, 0.37)),
            ("output_norm.weight".into(), vector(HIDDEN, 1.0)),
        ];
        if arch != "qwen2" {
            tensors.push(("output.weight".into(), matrix(VOCAB, HIDDEN, 0.11)));
        }
        let matrices = if arch == "phi3" {
            vec![
                ("attn_qkv", (heads + 2 * kv_heads) * d, HIDDEN),
                ("attn_output", HIDDEN, heads * d),
                ("ffn_up", 2 * inner, HIDDEN),
                ("ffn_down", HIDDEN, inner),
            ]
        } else {
            vec![
                ("attn_q", heads * d, HIDDEN),
                ("attn_k", kv_heads * d, HIDDEN),
                ("attn_v", kv_heads * d, HIDDEN),
                ("attn_output", HIDDEN, heads * d),
                ("ffn_gate", inner, HIDDEN),
                ("ffn_up", inner, HIDDEN),
                ("ffn_down", HIDDEN, inner),
            ]
        };
        for (name, rows, cols) in matrices {
            tensors.push((format!("blk.0.{name}.weight"), matrix(rows, cols, 0.05)));
        }
        tensors.push(("blk.0.attn_norm.weight".into(), vector(HIDDEN, 1.0)));
        tensors.push(("blk.0.ffn_norm.weight".into(), vector(HIDDEN, 1.0)));
        if arch == "qwen2" {
            tensors.push(("blk.0.attn_q.bias".into(), vector(heads * d, 0.1)));
            tensors.push(("blk.0.attn_k.bias".into(), vector(kv_heads * d, 0.2)));
            tensors.push(("blk.0.attn_v.bias".into(), vector(kv_heads * d, 0.3)));
        }
        if arch == "qwen3" {
            tensors.push(("blk.0.attn_q_norm.weight".into(), vector(d, 1.0)));
            tensors.push(("blk.0.attn_k_norm.weight".into(), vector(d, 1.0)));
        }
        let u = Value::U32;
        let mut metadata = vec![
            (
                "general.architecture".to_owned(),
                Value::String(arch.into()),
            ),
            (format!("{arch}.attention.head_count"), u(heads as u32)),
            (
                format!("{arch}.attention.head_count_kv"),
                u(kv_heads as u32),
            ),
            (format!("{arch}.block_count"), u(1)),
            (format!("{arch}.embedding_length"), u(HIDDEN as u32)),
            (format!("{arch}.rope.dimension_count"), u(d as u32)),
            (format!("{arch}.rope.freq_base"), Value::F32(10000.0)),
            (format!("{arch}.context_length"), u(16)),
            (format!("{arch}.feed_forward_length"), u(inner as u32)),
            (
                format!("{arch}.attention.layer_norm_rms_epsilon"),
                Value::F32(1e-5),
            ),
        ];
        if arch == "qwen3" {
            metadata.push(("qwen3.attention.key_length".into(), u(d as u32)));
            metadata.push(("qwen3.attention.value_length".into(), u(d as u32)));
        }
        Parts { metadata, tensors }
    }

    fn set(mut self, key: &str, value: Option<Value>) -> Parts {
        self.metadata.retain(|(k, _)| k != key);
        if let Some(value) = value {
            self.metadata.push((key.to_owned(), value));
        }
        self
    }

    fn replace(mut self, name: &str, tensor: Option<QTensor>) -> Parts {
        self.tensors.retain(|(n, _)| n != name);
        if let Some(tensor) = tensor {
            self.tensors.push((name.to_owned(), tensor));
        }
        self
    }

    fn write(&self) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        let md: Vec<(&str, &Value)> = self.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let ts: Vec<(&str, &QTensor)> = self.tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        gguf_file::write(&mut out, &md, &ts).expect("written");
        out.into_inner()
    }

    /// What [`check`] makes of the file, after the header walk.
    fn check(&self) -> Result<Shape> {
        let bytes = self.write();
        let facts = crate::gguf::inspect(&bytes, bytes.len() as u64)?.expect("complete");
        let arch = Arch::run(&facts.architecture)?;
        let mut content =
            Content::read(&mut std::io::Cursor::new(&bytes)).expect("candle reads it");
        check(&mut content, facts.tensors, arch)
    }
}

fn load(bytes: Vec<u8>) -> Result<Model> {
    let files = ModelFiles {
        config: serde_json::json!({}),
        tokenizer: TOKENIZER.as_bytes().to_vec(),
        tokenizer_config: None,
        st_modules: None,
        st_pooling: None,
        weights: Vec::new(),
        gguf: Some(bytes),
    };
    Model::load(files, &Device::Cpu)
}

#[test]
fn a_tiny_model_of_each_architecture_generates_the_same_tokens_each_time() {
    for arch in ["llama", "qwen2", "qwen3", "phi3"] {
        let Ok(Model::Decoder(decoder)) = load(Parts::new(arch).write()) else {
            panic!("{arch}: a decoder");
        };
        let run = || {
            decoder
                .generate("a b a", &greedy(5), true, &mut |_, _| true)
                .expect("generates")
                .token_ids()
        };
        let first = run();
        assert_eq!(first.len(), 5, "{arch}");
        assert_eq!(run(), first, "{arch}: each generation starts afresh");
        // Generations at once (Qwen2's take turns on one model) answer the same.
        let together: Vec<Vec<u32>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..3).map(|_| s.spawn(run)).collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("joined"))
                .collect()
        });
        assert!(together.iter().all(|t| *t == first), "{arch}");
        let too_long = decoder.generate(&"a ".repeat(20), &greedy(2), true, &mut |_, _| true);
        assert!(
            matches!(too_long, Err(InferError::BadInput(_))),
            "{arch}: context_length 16"
        );
    }
}

#[test]
fn the_context_is_bounded_before_candle_sizes_its_rotary_table_by_it() {
    for (arch, most) in [
        ("qwen2", MAX_CONTEXT),
        ("qwen3", MAX_CONTEXT),
        ("phi3", MAX_PHI3_CONTEXT),
    ] {
        let parts = Parts::new(arch).set(
            &format!("{arch}.context_length"),
            Some(Value::U32(u32::MAX)),
        );
        assert_eq!(parts.check().expect("valid").context, most);
        assert!(
            load(parts.write()).is_ok(),
            "{arch}: loads without 4G positions"
        );
    }
    assert_eq!(Parts::new("qwen2").check().expect("valid").context, 16);
}

#[test]
fn bad_files_are_refused_naming_the_problem() {
    let f32s = |n: usize| {
        QTensor::quantize(
            &Tensor::zeros(n, DType::F32, &Device::Cpu).expect("zeros"),
            GgmlDType::F32,
        )
        .expect("f32")
    };
    let u = |v| Some(Value::U32(v));
    let cases: Vec<(&str, Parts, &str)> = vec![
        (
            "a missing key",
            Parts::new("qwen2").set("qwen2.attention.head_count", None),
            "no `qwen2.attention.head_count` (u32)",
        ),
        (
            "a key of another type",
            Parts::new("qwen3").set("qwen3.block_count", Some(Value::U64(1))),
            "no `qwen3.block_count` (u32)",
        ),
        (
            "qwen3 without rope.freq_base",
            Parts::new("qwen3").set("qwen3.rope.freq_base", None),
            "no `qwen3.rope.freq_base`",
        ),
        (
            "a NaN epsilon",
            Parts::new("qwen2").set(
                "qwen2.attention.layer_norm_rms_epsilon",
                Some(Value::F32(f32::NAN)),
            ),
            "layer_norm_rms_epsilon` is NaN",
        ),
        (
            "zero heads",
            Parts::new("qwen2").set("qwen2.attention.head_count", u(0)),
            "does not divide",
        ),
        (
            "an absurd head size",
            Parts::new("qwen3")
                .set("qwen3.attention.key_length", u(u32::MAX))
                .set("qwen3.attention.value_length", None),
            "the head size 4294967295",
        ),
        (
            "value_length unlike key_length",
            Parts::new("qwen3").set("qwen3.attention.value_length", u(16)),
            "value_length differs",
        ),
        (
            "an absurd block count",
            Parts::new("qwen2").set("qwen2.block_count", u(u32::MAX)),
            "larger than the tensors",
        ),
        (
            "a zero context",
            Parts::new("qwen3").set("qwen3.context_length", u(0)),
            "context_length` is 0",
        ),
        (
            "a missing bias",
            Parts::new("qwen2").replace("blk.0.attn_k.bias", None),
            "no tensor blk.0.attn_k.bias",
        ),
        (
            "a bias of the wrong size",
            Parts::new("qwen2").replace("blk.0.attn_q.bias", Some(f32s(8))),
            "blk.0.attn_q.bias is [8], not [32]",
        ),
        (
            "a q norm of the wrong size",
            Parts::new("qwen3").replace("blk.0.attn_q_norm.weight", Some(f32s(16))),
            "blk.0.attn_q_norm.weight is [16], not [32]",
        ),
        (
            "a norm of the wrong size",
            Parts::new("llama").replace("blk.0.ffn_norm.weight", Some(f32s(31))),
            "blk.0.ffn_norm.weight is [31], not [32]",
        ),
        (
            "key_length unlike the tensors",
            Parts::new("qwen3")
                .set("qwen3.attention.key_length", u(16))
                .set("qwen3.attention.value_length", u(16)),
            "blk.0.attn_q.weight is [64, 32], not [32, 32]",
        ),
        (
            "a phi3 qkv of the wrong size",
            Parts::new("phi3").set("phi3.attention.head_count_kv", u(2)),
            "blk.0.attn_qkv.weight is [64, 32], not [96, 32]",
        ),
        (
            "a phi3 feed-forward narrower than the file's",
            Parts::new("phi3").set("phi3.feed_forward_length", u(32)),
            "blk.0.ffn_up.weight is [128, 32], not [64, 32]",
        ),
        (
            "a phi3 without its head",
            Parts::new("phi3").replace("output.weight", None),
            "no tensor output.weight",
        ),
        (
            "a llama rotary smaller than the head",
            Parts::new("llama").set("llama.rope.dimension_count", u(8)),
            "rope.dimension_count is not the head size",
        ),
    ];
    for (what, parts, message) in cases {
        let got = match parts.check() {
            Err(InferError::BadModel(m)) => m,
            other => panic!("{what}: not refused: {:?}", other.map(|s| s.context)),
        };
        assert!(got.contains(message), "{what}: {got}");
        // And the whole load says the same, without a panic.
        let err = load(parts.write()).err().expect("refused");
        assert!(err.to_string().contains(message), "{what}: {err}");
    }
    // What candle's Phi-3 would silently compute otherwise.
    let ones = QTensor::quantize(
        &Tensor::ones(8, DType::F32, &Device::Cpu).expect("ones"),
        GgmlDType::F32,
    )
    .expect("f32");
    for (what, parts, message) in [
        (
            "another rotary base",
            Parts::new("phi3").set("phi3.rope.freq_base", Some(Value::F32(500000.0))),
            "base 10000 only",
        ),
        (
            "LongRoPE factors",
            Parts::new("phi3").replace("rope_factors_long.weight", Some(ones)),
            "LongRoPE factors",
        ),
    ] {
        match load(parts.write()) {
            Err(InferError::Unsupported(m)) => assert!(m.contains(message), "{what}: {m}"),
            other => panic!("{what}: not refused: {}", other.is_ok()),
        }
    }
    let other =
        Parts::new("qwen2").set("general.architecture", Some(Value::String("gemma3".into())));
    match load(other.write()) {
        Err(InferError::Unsupported(m)) => {
            assert!(
                m.contains("`gemma3`") && m.contains("qwen2, qwen3, phi3"),
                "{m}"
            )
        }
        other => panic!("not refused: {}", other.is_ok()),
    }
}

#[test]
fn a_tied_qwen2_head_is_counted_twice_in_the_memory_estimate() {
    let tied = Parts::new("qwen2").write();
    let facts = crate::gguf::inspect(&tied, tied.len() as u64)
        .expect("valid")
        .expect("complete");
    let untied = Parts::new("qwen2")
        .set("general.architecture", Some(Value::String("llama".into())))
        .write();
    let llama = crate::gguf::inspect(&untied, untied.len() as u64)
        .expect("valid")
        .expect("complete");
    // 3 × 32 values of Q8_0: 3 blocks of 34 bytes.
    assert_eq!(facts.memory_bytes, llama.memory_bytes + 3 * 34);
}
