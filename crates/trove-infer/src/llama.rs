//! The Llama decoder's forward pass on the CPU in plain loops over `f32` slices (the matrix
//! products by `cpu.rs`), used instead of candle-transformers' `llama` when the model runs
//! on the CPU: a generated token is one row through every layer, where candle's ~30 tensor
//! operations per layer (each allocating, dispatching, and the key/value cache concatenated
//! into a new tensor at every step) cost more than the arithmetic of a small model. Here the
//! query, key and value projections are one product and so are the gate and up projections,
//! the residuals are written into the products' outputs, the rotary angles are computed as
//! candle computes its table (`position · inv_freq` in f32), and each generation's cache is
//! two growing buffers per layer. Checked against candle-transformers' `llama` by the unit
//! tests below and against the numpy reference by the e2e tests.
//!
//! Llama 3's rope scaling (`rope_scaling` in `config.json`) is not written here: such a
//! model runs on candle-transformers' `llama` (`decoder.rs`).

use crate::cpu::{Dense, dot, exp_non_positive, rms_norm, silu, values};
use candle_core::Result;
use candle_nn::VarBuilder;
use candle_transformers::models::llama::Config;

struct Layer {
    attention_norm: Vec<f32>,
    /// `[q; k; v]` stacked: `(heads + 2 · kv heads) · head size` outputs.
    qkv: Dense,
    out: Dense,
    mlp_norm: Vec<f32>,
    /// `[gate; up]` stacked: `2 · intermediate` outputs.
    gate_up: Dense,
    down: Dense,
}

pub(crate) struct CpuLlama {
    embeddings: Vec<f32>,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    /// `None`: the head is tied to the embeddings.
    head: Option<Dense>,
    hidden: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    intermediate: usize,
    vocab: usize,
    max_positions: usize,
    eps: f32,
    inv_freq: Vec<f32>,
}

/// One generation's keys and values: per layer, `positions × kv heads × head size` each,
/// rotated keys as they are stored.
pub(crate) struct LlamaCache {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    len: usize,
}

/// Buffers of one step, reused from layer to layer.
struct Scratch {
    normed: Vec<f32>,
    qkv: Vec<f32>,
    context: Vec<f32>,
    residual: Vec<f32>,
    inner: Vec<f32>,
    act: Vec<f32>,
    scores: Vec<f32>,
}

impl CpuLlama {
    /// Whether this pass computes what candle-transformers' `llama` does for `config`.
    pub fn runs(config: &Config) -> bool {
        config.rope_scaling.is_none()
    }

    /// Loads `LlamaForCausalLM`'s tensors (`model.…`, `lm_head`) from `vb`.
    pub fn load(vb: VarBuilder, config: &Config) -> Result<CpuLlama> {
        let (h, heads, kv_heads) = (
            config.hidden_size,
            config.num_attention_heads,
            config.num_key_value_heads,
        );
        if heads == 0
            || kv_heads == 0
            || !h.is_multiple_of(heads)
            || !heads.is_multiple_of(kv_heads)
        {
            candle_core::bail!("attention heads do not divide the hidden size");
        }
        let d = h / heads;
        if !d.is_multiple_of(2) {
            candle_core::bail!("an odd head size {d}");
        }
        let i = config.intermediate_size;
        let stacked = |vb: &VarBuilder, parts: &[(&str, usize)], inputs: usize| -> Result<Dense> {
            let weights = parts
                .iter()
                .map(|(name, out)| vb.get((*out, inputs), &format!("{name}.weight")))
                .collect::<Result<Vec<_>>>()?;
            Dense::new(&candle_core::Tensor::cat(&weights, 0)?, None)
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let vb = vb.pp(format!("model.layers.{l}"));
            layers.push(Layer {
                attention_norm: values(&vb.get(h, "input_layernorm.weight")?)?,
                qkv: stacked(
                    &vb.pp("self_attn"),
                    &[
                        ("q_proj", h),
                        ("k_proj", kv_heads * d),
                        ("v_proj", kv_heads * d),
                    ],
                    h,
                )?,
                out: stacked(&vb.pp("self_attn"), &[("o_proj", h)], h)?,
                mlp_norm: values(&vb.get(h, "post_attention_layernorm.weight")?)?,
                gate_up: stacked(&vb.pp("mlp"), &[("gate_proj", i), ("up_proj", i)], h)?,
                down: stacked(&vb.pp("mlp"), &[("down_proj", h)], i)?,
            });
        }
        let embeddings = values(&vb.get((config.vocab_size, h), "model.embed_tokens.weight")?)?;
        let head = if config.tie_word_embeddings {
            None
        } else {
            Some(stacked(&vb, &[("lm_head", config.vocab_size)], h)?)
        };
        Ok(CpuLlama {
            embeddings,
            layers,
            norm: values(&vb.get(h, "model.norm.weight")?)?,
            head,
            hidden: h,
            heads,
            kv_heads,
            head_dim: d,
            intermediate: i,
            vocab: config.vocab_size,
            max_positions: config.max_position_embeddings,
            eps: config.rms_norm_eps as f32,
            inv_freq: (0..d)
                .step_by(2)
                .map(|k| 1f32 / config.rope_theta.powf(k as f32 / d as f32))
                .collect(),
        })
    }

    pub fn start(&self) -> LlamaCache {
        LlamaCache {
            keys: vec![Vec::new(); self.layers.len()],
            values: vec![Vec::new(); self.layers.len()],
            len: 0,
        }
    }

    /// The next-token logits (`[vocab]`) after `ids`, which follow the `cache.len` tokens the
    /// cache holds (`position`, checked to be that).
    pub fn forward(
        &self,
        ids: &[u32],
        position: usize,
        cache: &mut LlamaCache,
    ) -> Result<Vec<f32>> {
        let h = self.hidden;
        if position != cache.len {
            candle_core::bail!("position {position} after {} cached tokens", cache.len);
        }
        if ids.is_empty() || position + ids.len() > self.max_positions {
            candle_core::bail!(
                "{} tokens after {position} do not fit the model's positions",
                ids.len()
            );
        }
        let mut x = Vec::with_capacity(ids.len() * h);
        for &id in ids {
            let start = id as usize * h;
            let Some(row) = self.embeddings.get(start..start + h) else {
                candle_core::bail!("token id {id} is past the vocabulary of {}", self.vocab);
            };
            x.extend_from_slice(row);
        }
        let mut s = Scratch {
            normed: Vec::new(),
            qkv: Vec::new(),
            context: Vec::new(),
            residual: Vec::new(),
            inner: Vec::new(),
            act: Vec::new(),
            scores: vec![0.0; position + ids.len()],
        };
        for (l, layer) in self.layers.iter().enumerate() {
            self.layer(
                layer,
                &mut x,
                position,
                &mut cache.keys[l],
                &mut cache.values[l],
                &mut s,
            )?;
        }
        cache.len += ids.len();
        let last = &x[(ids.len() - 1) * h..];
        rms_norm(last, &self.norm, self.eps, &mut s.normed);
        let mut logits = Vec::new();
        match &self.head {
            Some(head) => head.forward(&s.normed, None, &mut logits)?,
            None => {
                logits.resize(self.vocab, 0.0);
                crate::cpu::matmul_add_bt(
                    &mut logits,
                    &s.normed,
                    &self.embeddings,
                    (1, self.vocab, h),
                    true,
                )?;
            }
        }
        Ok(logits)
    }

    fn layer(
        &self,
        layer: &Layer,
        x: &mut Vec<f32>,
        position: usize,
        keys: &mut Vec<f32>,
        values: &mut Vec<f32>,
        s: &mut Scratch,
    ) -> Result<()> {
        let (h, d) = (self.hidden, self.head_dim);
        let kv = self.kv_heads * d;
        let width = h + 2 * kv;
        let rows = x.len() / h;
        rms_norm(x, &layer.attention_norm, self.eps, &mut s.normed);
        layer.qkv.forward(&s.normed, None, &mut s.qkv)?;
        for (r, row) in s.qkv.chunks_exact_mut(width).enumerate() {
            let p = (position + r) as f32;
            // The queries' and the keys' heads, rotated; the values stay as they are.
            for head in row[..h + kv].chunks_exact_mut(d) {
                self.rotate(head, p);
            }
            keys.extend_from_slice(&row[h..h + kv]);
            values.extend_from_slice(&row[h + kv..]);
        }
        let scale = 1.0 / (d as f32).sqrt();
        let group = self.heads / self.kv_heads;
        s.context.clear();
        s.context.resize(rows * h, 0.0);
        for r in 0..rows {
            // Causal: the query at position + r sees the keys up to and including its own.
            let seen = position + r + 1;
            for head in 0..self.heads {
                let q = &s.qkv[r * width + head * d..][..d];
                let at = (head / group) * d;
                let scores = &mut s.scores[..seen];
                let mut max = f32::NEG_INFINITY;
                for (j, score) in scores.iter_mut().enumerate() {
                    *score = dot(q, &keys[j * kv + at..][..d]) * scale;
                    max = max.max(*score);
                }
                let mut total = 0.0;
                for score in scores.iter_mut() {
                    *score = exp_non_positive(*score - max);
                    total += *score;
                }
                let context = &mut s.context[r * h + head * d..][..d];
                for (j, p) in scores.iter().enumerate() {
                    let p = p / total;
                    for (c, v) in context.iter_mut().zip(&values[j * kv + at..][..d]) {
                        *c += p * v;
                    }
                }
            }
        }
        layer
            .out
            .forward(&s.context, Some(x.as_slice()), &mut s.residual)?;
        rms_norm(&s.residual, &layer.mlp_norm, self.eps, &mut s.normed);
        layer.gate_up.forward(&s.normed, None, &mut s.inner)?;
        let i = self.intermediate;
        s.act.clear();
        for row in s.inner.chunks_exact(2 * i) {
            let (gate, up) = row.split_at(i);
            s.act.extend(gate.iter().zip(up).map(|(g, u)| silu(*g) * u));
        }
        layer.down.forward(&s.act, Some(s.residual.as_slice()), x)
    }

    /// Rotates one head at position `p` as transformers' `rotate_half` does: the first half
    /// of the head with the second, by the angles `p · inv_freq`.
    fn rotate(&self, head: &mut [f32], p: f32) {
        let half = self.head_dim / 2;
        let (a, b) = head.split_at_mut(half);
        for ((x1, x2), f) in a.iter_mut().zip(b.iter_mut()).zip(&self.inv_freq) {
            let angle = p * f;
            let (sin, cos) = angle.sin_cos();
            let (u, v) = (*x1, *x2);
            *x1 = u * cos - v * sin;
            *x2 = v * cos + u * sin;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Tensor};
    use candle_transformers::models::llama::{Cache, Llama, LlamaConfig};
    use std::collections::HashMap;

    fn config(tied: bool, kv_heads: usize) -> Config {
        let c: LlamaConfig = serde_json::from_value(serde_json::json!({
            "hidden_size": 32, "intermediate_size": 48, "vocab_size": 40,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": kv_heads,
            "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 64,
            "tie_word_embeddings": tied,
        }))
        .expect("config");
        c.into_config(false)
    }

    fn weights(c: &Config) -> HashMap<String, Tensor> {
        let (h, i, v) = (c.hidden_size, c.intermediate_size, c.vocab_size);
        let kv = c.num_key_value_heads * h / c.num_attention_heads;
        let mut shapes: Vec<(String, Vec<usize>)> = vec![
            ("model.embed_tokens.weight".into(), vec![v, h]),
            ("model.norm.weight".into(), vec![h]),
            ("lm_head.weight".into(), vec![v, h]),
        ];
        for l in 0..c.num_hidden_layers {
            let p = format!("model.layers.{l}.");
            for (name, shape) in [
                ("input_layernorm.weight", vec![h]),
                ("post_attention_layernorm.weight", vec![h]),
                ("self_attn.q_proj.weight", vec![h, h]),
                ("self_attn.k_proj.weight", vec![kv, h]),
                ("self_attn.v_proj.weight", vec![kv, h]),
                ("self_attn.o_proj.weight", vec![h, h]),
                ("mlp.gate_proj.weight", vec![i, h]),
                ("mlp.up_proj.weight", vec![i, h]),
                ("mlp.down_proj.weight", vec![h, i]),
            ] {
                shapes.push((format!("{p}{name}"), shape));
            }
        }
        shapes
            .into_iter()
            .map(|(name, shape)| {
                let t = Tensor::randn(0f32, 0.3, shape, &Device::Cpu).expect("random");
                (name, t)
            })
            .collect()
    }

    /// A prompt of several tokens, then single tokens with the cache, compared step by step
    /// with candle-transformers' model (grouped-query and plain attention; tied and separate
    /// heads).
    #[test]
    fn steps_match_candle_transformers_llama() {
        for (tied, kv_heads) in [(false, 2), (true, 4), (false, 1)] {
            let c = config(tied, kv_heads);
            let vb = VarBuilder::from_tensors(weights(&c), DType::F32, &Device::Cpu);
            let ours = CpuLlama::load(vb.clone(), &c).expect("ours");
            let theirs = Llama::load(vb, &c).expect("theirs");
            let mut our_cache = ours.start();
            let mut their_cache = Cache::new(true, DType::F32, &c, &Device::Cpu).expect("cache");
            let steps: [&[u32]; 4] = [&[1, 7, 30, 2, 2], &[9], &[39], &[0]];
            let mut position = 0;
            for ids in steps {
                let a = ours.forward(ids, position, &mut our_cache).expect("ours");
                let x = Tensor::new(ids, &Device::Cpu)
                    .and_then(|t| t.unsqueeze(0))
                    .expect("ids");
                let b = theirs
                    .forward(&x, position, &mut their_cache)
                    .and_then(|t| t.squeeze(0))
                    .and_then(|t| t.to_vec1::<f32>())
                    .expect("theirs");
                assert_eq!(a.len(), b.len());
                for (x, y) in a.iter().zip(&b) {
                    assert!(
                        (x - y).abs() < 1e-4,
                        "tied {tied}, {kv_heads} kv heads, position {position}: {x} vs {y}"
                    );
                }
                position += ids.len();
            }
        }
    }

    #[test]
    fn bad_ids_and_positions_are_errors() {
        let c = config(false, 2);
        let vb = VarBuilder::from_tensors(weights(&c), DType::F32, &Device::Cpu);
        let model = CpuLlama::load(vb, &c).expect("loads");
        let mut cache = model.start();
        assert!(
            model.forward(&[40], 0, &mut cache).is_err(),
            "past the vocabulary"
        );
        assert!(
            model.forward(&[1], 3, &mut cache).is_err(),
            "not after the cache"
        );
        assert!(
            model.forward(&[1; 65], 0, &mut cache).is_err(),
            "past the positions"
        );
        assert!(model.forward(&[], 0, &mut cache).is_err(), "no tokens");
    }
}
