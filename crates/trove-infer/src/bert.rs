//! The BERT encoder's forward pass (the backbone of the three encoder layouts), written for
//! the CPU's short inputs rather than taken from `candle-transformers`: profiling a
//! 12-token sentence through a MiniLM-shaped model showed most of the time in the matrix
//! kernel re-packing each `[out, in]` weight, read through its transpose as the right side
//! of `x · Wᵀ`, on every call, then in a scalar `erf` for GELU. Here each dense product is
//! computed as `(W · xᵀ)ᵀ`: the weight is the left side, read row after row as stored
//! (memory order, which the prefetcher follows), and the few tokens the small right side
//! that stays in cache; the query, key and value projections are one product, and GELU's
//! `erf` is a closed-form approximation (Abramowitz and Stegun 7.1.26, absolute error
//! below 1.5e-7).

//!
//! On the CPU (f32) the pass runs in `bert/cpu.rs` instead: plain loops over slices and the
//! matrix kernel called directly, without candle's per-operation bookkeeping, which the
//! profile of a small encoder showed to weigh more than its arithmetic. This file's tensor
//! code runs it on other devices (CUDA); the unit tests check both against
//! candle-transformers' `bert`.

mod cpu;

use crate::cpu::erf;
use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder, embedding, layer_norm};
use candle_transformers::models::bert::{Config, HiddenAct};

/// Up to this many rows, a dense layer multiplies with the weight on the left (see
/// [`Dense::forward`]); measured on the MiniLM-shaped model (docs/inference.md).
const FEW_TOKENS: usize = 32;

/// A dense layer (weight `[out, in]`, as stored).
struct Dense {
    weight: Tensor,
    bias: Tensor,
}

impl Dense {
    fn load(vb: &VarBuilder, name: &str, inputs: usize, outputs: usize) -> Result<Dense> {
        Dense::stacked(vb, &[name], inputs, outputs)
    }

    /// Several layers with the same input as one `[Σ out, in]` layer.
    fn stacked(vb: &VarBuilder, names: &[&str], inputs: usize, outputs: usize) -> Result<Dense> {
        let mut weights = Vec::with_capacity(names.len());
        let mut biases = Vec::with_capacity(names.len());
        for name in names {
            weights.push(vb.get((outputs, inputs), &format!("{name}.weight"))?);
            biases.push(vb.get(outputs, &format!("{name}.bias"))?);
        }
        Ok(Dense {
            weight: Tensor::cat(&weights, 0)?.contiguous()?,
            bias: Tensor::cat(&biases, 0)?,
        })
    }

    /// `x · Wᵀ + b` for `x`: `[tokens, in]`. For a few tokens, computed as `(W · xᵀ)ᵀ` so
    /// that the weight is the product's left side, read row after row, and the few tokens the
    /// right side; for many (a batch), as `x · Wᵀ`: the kernel's packing of the weight is then
    /// shared by many rows, and the result is laid out in rows, so adding the bias is a
    /// contiguous pass rather than one through a transposed view.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.dim(0)? <= FEW_TOKENS {
            self.weight.matmul(&x.t()?)?.t()?.broadcast_add(&self.bias)
        } else {
            x.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)
        }
    }
}

struct Layer {
    qkv: Dense,
    attention_out: Dense,
    attention_norm: LayerNorm,
    inner: Dense,
    out: Dense,
    out_norm: LayerNorm,
}

/// A BERT encoder: embeddings and the layers, no pooler.
pub(crate) struct Bert {
    net: Net,
    hidden: usize,
}

enum Net {
    /// Plain loops on f32 slices (`bert/cpu.rs`).
    Cpu(cpu::CpuBert),
    /// candle's tensor operations, for other devices.
    Tensors(TensorBert),
}

/// Token ids and type ids of a batch padded to its longest input (`n`), with each input's
/// length.
struct Padded {
    ids: Vec<u32>,
    types: Vec<u32>,
    lens: Vec<usize>,
    n: usize,
}

impl Padded {
    fn new(inputs: &[(&[u32], &[u32])]) -> Result<Padded> {
        let b = inputs.len();
        let n = inputs.iter().map(|(ids, _)| ids.len()).max().unwrap_or(0);
        if b == 0 || n == 0 {
            candle_core::bail!("an encoder batch needs at least one token");
        }
        let mut ids = Vec::with_capacity(b * n);
        let mut types = Vec::with_capacity(b * n);
        let mut lens = Vec::with_capacity(b);
        for (input_ids, input_types) in inputs {
            if input_types.len() != input_ids.len() {
                candle_core::bail!("token ids and type ids differ in length");
            }
            ids.extend_from_slice(input_ids);
            types.extend_from_slice(input_types);
            ids.resize(ids.len() + n - input_ids.len(), 0);
            types.resize(types.len() + n - input_types.len(), 0);
            lens.push(input_ids.len());
        }
        Ok(Padded {
            ids,
            types,
            lens,
            n,
        })
    }
}

impl Bert {
    /// Loads the tensors of `BertModel` (`embeddings.…`, `encoder.layer.N.…`) from `vb`: on
    /// the CPU into `bert/cpu.rs`'s slices, elsewhere as candle tensors.
    pub fn load(vb: VarBuilder, config: &Config) -> Result<Bert> {
        if vb.device().is_cpu() {
            Bert::load_cpu(vb, config)
        } else {
            Bert::load_tensors(vb, config)
        }
    }

    fn load_tensors(vb: VarBuilder, config: &Config) -> Result<Bert> {
        Ok(Bert {
            net: Net::Tensors(TensorBert::load(vb, config)?),
            hidden: config.hidden_size,
        })
    }

    fn load_cpu(vb: VarBuilder, config: &Config) -> Result<Bert> {
        // The same tensors, read once through the tensor model's loader (names, shapes and
        // the fused query/key/value), then copied out of it.
        let t = TensorBert::load(vb, config)?;
        let dense = |d: &Dense| crate::cpu::Dense::new(&d.weight, Some(&d.bias));
        let norm = |n: &LayerNorm| match n.bias() {
            Some(bias) => cpu::Norm::new(n.weight(), bias, config.layer_norm_eps),
            None => candle_core::bail!("a layer norm without a bias"),
        };
        let layers = t
            .layers
            .iter()
            .map(|l| {
                Ok(cpu::Layer {
                    qkv: dense(&l.qkv)?,
                    attention_out: dense(&l.attention_out)?,
                    attention_norm: norm(&l.attention_norm)?,
                    inner: dense(&l.inner)?,
                    out: dense(&l.out)?,
                    out_norm: norm(&l.out_norm)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let net = cpu::CpuBert {
            words: crate::cpu::values(t.words.embeddings())?,
            positions: crate::cpu::values(t.positions.embeddings())?,
            token_types: crate::cpu::values(t.token_types.embeddings())?,
            embeddings_norm: norm(&t.embeddings_norm)?,
            layers,
            hidden: config.hidden_size,
            heads: t.heads,
            act: t.act,
        };
        Ok(Bert {
            net: Net::Cpu(net),
            hidden: config.hidden_size,
        })
    }

    /// The last hidden states of one input: `[tokens, hidden]`.
    #[cfg(test)]
    pub fn forward(&self, ids: &[u32], type_ids: &[u32]) -> Result<Tensor> {
        self.forward_batch(&[(ids, type_ids)])?.squeeze(0)
    }

    /// The last hidden states of several inputs run as one batch: `[inputs, longest,
    /// hidden]`. Shorter inputs are padded at the end and their padding is masked out of
    /// attention, so each input's first `len` rows are what it gives alone; the padding rows
    /// are meaningless. Positions count from 0 in every input (padding only follows).
    pub fn forward_batch(&self, inputs: &[(&[u32], &[u32])]) -> Result<Tensor> {
        let padded = Padded::new(inputs)?;
        match &self.net {
            Net::Cpu(net) => {
                let (b, n) = (padded.lens.len(), padded.n);
                let rows = net.forward(&padded.ids, &padded.types, &padded.lens, n)?;
                Tensor::from_vec(rows, (b, n, self.hidden), &candle_core::Device::Cpu)
            }
            Net::Tensors(net) => net.forward_batch(&padded),
        }
    }

    /// [`Bert::forward_batch`]'s values, row-major `[inputs × longest × hidden]`, and the
    /// longest input's length.
    pub fn forward_rows(&self, inputs: &[(&[u32], &[u32])]) -> Result<(Vec<f32>, usize)> {
        let padded = Padded::new(inputs)?;
        match &self.net {
            Net::Cpu(net) => Ok((
                net.forward(&padded.ids, &padded.types, &padded.lens, padded.n)?,
                padded.n,
            )),
            Net::Tensors(net) => Ok((
                net.forward_batch(&padded)?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
                padded.n,
            )),
        }
    }

    pub fn hidden_size(&self) -> usize {
        self.hidden
    }
}

/// The forward pass in candle's tensor operations.
struct TensorBert {
    words: Embedding,
    positions: Embedding,
    token_types: Embedding,
    embeddings_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    act: HiddenAct,
}

impl TensorBert {
    fn load(vb: VarBuilder, config: &Config) -> Result<TensorBert> {
        let h = config.hidden_size;
        let heads = config.num_attention_heads;
        if heads == 0 || !h.is_multiple_of(heads) {
            candle_core::bail!("hidden_size {h} is not a multiple of {heads} attention heads");
        }
        let eps = config.layer_norm_eps;
        let e = vb.pp("embeddings");
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let vb = vb.pp(format!("encoder.layer.{l}"));
            let names = [
                "attention.self.query",
                "attention.self.key",
                "attention.self.value",
            ];
            layers.push(Layer {
                qkv: Dense::stacked(&vb, &names, h, h)?,
                attention_out: Dense::load(&vb, "attention.output.dense", h, h)?,
                attention_norm: layer_norm(h, eps, vb.pp("attention.output.LayerNorm"))?,
                inner: Dense::load(&vb, "intermediate.dense", h, config.intermediate_size)?,
                out: Dense::load(&vb, "output.dense", config.intermediate_size, h)?,
                out_norm: layer_norm(h, eps, vb.pp("output.LayerNorm"))?,
            });
        }
        Ok(TensorBert {
            words: embedding(config.vocab_size, h, e.pp("word_embeddings"))?,
            positions: embedding(
                config.max_position_embeddings,
                h,
                e.pp("position_embeddings"),
            )?,
            token_types: embedding(config.type_vocab_size, h, e.pp("token_type_embeddings"))?,
            embeddings_norm: layer_norm(h, eps, e.pp("LayerNorm"))?,
            layers,
            heads,
            act: config.hidden_act,
        })
    }

    fn forward_batch(&self, padded: &Padded) -> Result<Tensor> {
        let device = self.words.embeddings().device();
        let (b, n) = (padded.lens.len(), padded.n);
        let ids = padded.ids.clone();
        let types = padded.types.clone();
        let positions: Vec<u32> = (0..b).flat_map(|_| 0..n as u32).collect();
        let padded_any = padded.lens.iter().any(|&len| len < n);
        // Added to the attention scores: 0 for a real key, -inf for padding (a row always
        // has a real key, the input's first token, so softmax stays finite).
        let mask = if padded_any {
            let mut mask = Vec::with_capacity(b * n);
            for &len in &padded.lens {
                mask.extend((0..n).map(|i| if i < len { 0f32 } else { f32::NEG_INFINITY }));
            }
            Some(Tensor::from_vec(mask, (b, 1, 1, n), device)?)
        } else {
            None
        };
        let x = (self.words.forward(&Tensor::from_vec(ids, b * n, device)?)?
            + self
                .token_types
                .forward(&Tensor::from_vec(types, b * n, device)?)?)?;
        let x = (x + self
            .positions
            .forward(&Tensor::from_vec(positions, b * n, device)?)?)?;
        let mut x = self.embeddings_norm.forward(&x)?;
        for layer in &self.layers {
            x = self.layer(layer, &x, b, mask.as_ref())?;
        }
        x.reshape((b, n, ()))
    }

    /// One layer on `x`: `[batch · tokens, hidden]`.
    fn layer(&self, layer: &Layer, x: &Tensor, b: usize, mask: Option<&Tensor>) -> Result<Tensor> {
        let (bn, h) = x.dims2()?;
        let n = bn / b;
        let d = h / self.heads;
        // [batch · tokens, 3·hidden] → three [batch, heads, tokens, d].
        let qkv = layer.qkv.forward(x)?;
        let split = |i: usize| -> Result<Tensor> {
            qkv.narrow(1, i * h, h)?
                .reshape((b, n, self.heads, d))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = (split(0)? * (1.0 / (d as f64).sqrt()))?;
        let k = split(1)?;
        let v = split(2)?;
        let scores = q.matmul(&k.t()?)?;
        let scores = match mask {
            Some(mask) => scores.broadcast_add(mask)?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((bn, h))?;
        let x = layer
            .attention_norm
            .forward(&(layer.attention_out.forward(&context)? + x)?)?;
        let inner = activate(self.act, &layer.inner.forward(&x)?)?;
        layer.out_norm.forward(&(layer.out.forward(&inner)? + x)?)
    }
}

/// An activation of the encoder's configuration.
pub(crate) fn activate(act: HiddenAct, x: &Tensor) -> Result<Tensor> {
    match act {
        HiddenAct::Gelu => gelu_erf(x),
        HiddenAct::GeluApproximate => x.gelu(),
        HiddenAct::Relu => x.relu(),
    }
}

/// GELU as BERT defines it, `x/2 · (1 + erf(x/√2))`, element by element on the CPU's f32,
/// in a loop of plain arithmetic (no calls) that the compiler turns into vector
/// instructions: on a batch it runs over millions of values per layer, on one thread.
fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if x.dtype() != DType::F32 || !x.device().is_cpu() {
        return x.gelu_erf();
    }
    let mut values = x.flatten_all()?.to_vec1::<f32>()?;
    for v in &mut values {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
    Tensor::from_vec(values, x.shape(), x.device())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Random weights for every tensor `BertModel` reads.
    pub(crate) fn random_bert(config: &Config) -> std::collections::HashMap<String, Tensor> {
        let device = candle_core::Device::Cpu;
        let (h, i) = (config.hidden_size, config.intermediate_size);
        let mut shapes: Vec<(String, Vec<usize>)> = vec![
            (
                "embeddings.word_embeddings.weight".into(),
                vec![config.vocab_size, h],
            ),
            (
                "embeddings.position_embeddings.weight".into(),
                vec![config.max_position_embeddings, h],
            ),
            (
                "embeddings.token_type_embeddings.weight".into(),
                vec![config.type_vocab_size, h],
            ),
            ("embeddings.LayerNorm.weight".into(), vec![h]),
            ("embeddings.LayerNorm.bias".into(), vec![h]),
        ];
        for l in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{l}.");
            for (name, out, inp) in [
                ("attention.self.query", h, h),
                ("attention.self.key", h, h),
                ("attention.self.value", h, h),
                ("attention.output.dense", h, h),
                ("intermediate.dense", i, h),
                ("output.dense", h, i),
            ] {
                shapes.push((format!("{p}{name}.weight"), vec![out, inp]));
                shapes.push((format!("{p}{name}.bias"), vec![out]));
            }
            for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
                shapes.push((format!("{p}{norm}.weight"), vec![h]));
                shapes.push((format!("{p}{norm}.bias"), vec![h]));
            }
        }
        shapes
            .into_iter()
            .map(|(name, shape)| {
                let t = Tensor::randn(0f32, 0.5, shape, &device).expect("random");
                (name, t)
            })
            .collect()
    }

    /// A two-layer BERT small enough to check by hand-made inputs.
    fn tiny_config() -> Config {
        config_with("gelu")
    }

    /// Both ways of running the pass: the CPU's loops and candle's tensor operations.
    type Loader = fn(VarBuilder, &Config) -> Result<Bert>;
    const LOADERS: [(&str, Loader); 2] = [("cpu", Bert::load_cpu), ("tensors", Bert::load_tensors)];

    fn config_with(act: &str) -> Config {
        serde_json::from_value(serde_json::json!({
            "vocab_size": 50, "hidden_size": 24, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 40, "hidden_act": act,
            "hidden_dropout_prob": 0.0, "max_position_embeddings": 16, "type_vocab_size": 2,
            "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0,
            "model_type": "bert"
        }))
        .expect("config")
    }

    #[test]
    fn forward_matches_candle_transformers_bert() {
        for act in ["gelu", "geluapproximate", "relu"] {
            for (name, load) in LOADERS {
                compare_with_candle_transformers(
                    &config_with(act),
                    load,
                    &format!("{name}, {act}"),
                );
            }
        }
    }

    fn compare_with_candle_transformers(config: &Config, load: Loader, what: &str) {
        let config = config.clone();
        let device = candle_core::Device::Cpu;
        let vb = VarBuilder::from_tensors(random_bert(&config), DType::F32, &device);
        let ours = load(vb.clone(), &config).expect("ours");
        let theirs =
            candle_transformers::models::bert::BertModel::load(vb, &config).expect("theirs");
        let ids = [2u32, 7, 49, 0, 13, 13, 5];
        let types = [0u32, 0, 0, 1, 1, 1, 1];
        let a = ours
            .forward(&ids, &types)
            .expect("ours")
            .to_vec2::<f32>()
            .expect("values");
        let b = theirs
            .forward(
                &Tensor::new(&ids[..], &device)
                    .expect("ids")
                    .unsqueeze(0)
                    .expect("batch"),
                &Tensor::new(&types[..], &device)
                    .expect("types")
                    .unsqueeze(0)
                    .expect("batch"),
                None,
            )
            .expect("theirs")
            .squeeze(0)
            .expect("one")
            .to_vec2::<f32>()
            .expect("values");
        assert_eq!(a.len(), ids.len());
        for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
            assert!((x - y).abs() < 1e-4, "{what}: {x} vs {y}");
        }
    }

    #[test]
    fn a_padded_batch_gives_each_input_what_it_gives_alone() {
        for (name, load) in LOADERS {
            padded_batch_rows(load, name);
        }
    }

    #[test]
    fn an_id_past_the_table_is_an_error_not_a_panic() {
        let config = tiny_config();
        let device = candle_core::Device::Cpu;
        let vb = VarBuilder::from_tensors(random_bert(&config), DType::F32, &device);
        let bert = Bert::load_cpu(vb, &config).expect("loads");
        assert!(bert.forward(&[1, 50], &[0, 0]).is_err(), "token id");
        assert!(bert.forward(&[1, 2], &[0, 2]).is_err(), "token type");
        assert!(bert.forward(&[1; 17], &[0; 17]).is_err(), "position");
    }

    fn padded_batch_rows(load: Loader, name: &str) {
        let config = tiny_config();
        let device = candle_core::Device::Cpu;
        let vb = VarBuilder::from_tensors(random_bert(&config), DType::F32, &device);
        let bert = load(vb, &config).expect("loads");
        let inputs: Vec<(Vec<u32>, Vec<u32>)> = vec![
            (vec![2, 7, 49, 0, 13], vec![0, 0, 0, 1, 1]),
            (vec![5], vec![0]),
            (
                vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16],
                vec![0; 16],
            ),
            (vec![9, 9, 9], vec![1, 1, 1]),
        ];
        let batch: Vec<(&[u32], &[u32])> = inputs
            .iter()
            .map(|(i, t)| (i.as_slice(), t.as_slice()))
            .collect();
        let together = bert.forward_batch(&batch).expect("batch");
        assert_eq!(together.dims(), &[4, 16, 24]);
        for (row, (ids, types)) in inputs.iter().enumerate() {
            let alone = bert.forward(ids, types).expect("alone");
            let batched = together
                .get(row)
                .and_then(|t| t.narrow(0, 0, ids.len()))
                .expect("rows");
            let diff = (alone - batched)
                .and_then(|d| d.abs())
                .and_then(|d| d.max_all())
                .and_then(|d| d.to_scalar::<f32>())
                .expect("difference");
            assert!(diff < 1e-4, "{name}, input {row}: {diff}");
        }
    }

    #[test]
    fn gelu_agrees_with_candles_exact_one() {
        let device = candle_core::Device::Cpu;
        let x = Tensor::new(&[[-4.0f32, -1.5, -0.3, 0.0], [0.2, 0.9, 2.5, 7.0]], &device)
            .expect("tensor");
        let ours = gelu_erf(&x)
            .expect("gelu")
            .to_vec2::<f32>()
            .expect("values");
        let theirs = x
            .gelu_erf()
            .expect("gelu")
            .to_vec2::<f32>()
            .expect("values");
        for (a, b) in ours.iter().flatten().zip(theirs.iter().flatten()) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
