//! GPT-2 (candle-transformers has none): learned positions, pre-norm blocks with fused
//! query/key/value projections stored as `Conv1D` (`[in, out]` weights), the tanh GELU, and
//! the language-model head tied to the token embeddings; a key/value cache per layer.

use crate::error::{InferError, Result};
use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder, embedding, layer_norm};
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Gpt2Config {
    pub vocab_size: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_positions: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default)]
    pub n_inner: Option<usize>,
    #[serde(default = "default_activation")]
    pub activation_function: String,
}

fn default_eps() -> f64 {
    1e-5
}

fn default_activation() -> String {
    "gelu_new".into()
}

/// A `Conv1D`: `x @ weight + bias`, weight `[in, out]`.
struct Conv1d {
    weight: Tensor,
    bias: Tensor,
}

impl Conv1d {
    fn load(vb: VarBuilder, inputs: usize, outputs: usize) -> candle_core::Result<Conv1d> {
        Ok(Conv1d {
            weight: vb.get((inputs, outputs), "weight")?,
            bias: vb.get(outputs, "bias")?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.matmul(&self.weight)?.broadcast_add(&self.bias)
    }
}

struct Block {
    ln_1: LayerNorm,
    c_attn: Conv1d,
    attn_proj: Conv1d,
    ln_2: LayerNorm,
    c_fc: Conv1d,
    mlp_proj: Conv1d,
}

pub(crate) struct Gpt2 {
    wte: Embedding,
    wpe: Embedding,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    heads: usize,
    exact_gelu: bool,
    pub max_positions: usize,
}

/// Keys and values seen so far, per layer: `[heads, tokens, head_dim]`.
pub(crate) struct Gpt2Cache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl Gpt2 {
    pub fn load(vb: VarBuilder, config: &Gpt2Config) -> candle_core::Result<Gpt2> {
        let vb = if vb.contains_tensor("transformer.wte.weight") {
            vb.pp("transformer")
        } else {
            vb
        };
        let e = config.n_embd;
        let inner = config.n_inner.unwrap_or(4 * e);
        let eps = config.layer_norm_epsilon;
        let mut blocks = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let b = vb.pp("h").pp(i);
            blocks.push(Block {
                ln_1: layer_norm(e, eps, b.pp("ln_1"))?,
                c_attn: Conv1d::load(b.pp("attn").pp("c_attn"), e, 3 * e)?,
                attn_proj: Conv1d::load(b.pp("attn").pp("c_proj"), e, e)?,
                ln_2: layer_norm(e, eps, b.pp("ln_2"))?,
                c_fc: Conv1d::load(b.pp("mlp").pp("c_fc"), e, inner)?,
                mlp_proj: Conv1d::load(b.pp("mlp").pp("c_proj"), inner, e)?,
            });
        }
        Ok(Gpt2 {
            wte: embedding(config.vocab_size, e, vb.pp("wte"))?,
            wpe: embedding(config.n_positions, e, vb.pp("wpe"))?,
            blocks,
            ln_f: layer_norm(e, eps, vb.pp("ln_f"))?,
            heads: config.n_head,
            exact_gelu: config.activation_function == "gelu",
            max_positions: config.n_positions,
        })
    }

    pub fn cache(&self) -> Gpt2Cache {
        Gpt2Cache {
            layers: (0..self.blocks.len()).map(|_| None).collect(),
        }
    }

    /// The next-token logits after `ids`, which follow `position` tokens already in `cache`.
    pub fn forward(&self, ids: &[u32], position: usize, cache: &mut Gpt2Cache) -> Result<Tensor> {
        let n = ids.len();
        if position + n > self.max_positions {
            return Err(InferError::BadInput(format!(
                "Input validation error: `inputs` tokens + `max_new_tokens` must be <= {}",
                self.max_positions
            )));
        }
        let device = self.wte.embeddings().device().clone();
        let ids = Tensor::new(ids, &device)?;
        let positions: Vec<u32> = (position as u32..(position + n) as u32).collect();
        let positions = Tensor::new(positions.as_slice(), &device)?;
        let mut x = (self.wte.forward(&ids)? + self.wpe.forward(&positions)?)?;
        let e = x.dim(1)?;
        let d = e / self.heads;
        let mask = causal_mask(n, position, &device)?;
        for (block, slot) in self.blocks.iter().zip(cache.layers.iter_mut()) {
            let h = block.ln_1.forward(&x)?;
            let qkv = block.c_attn.forward(&h)?;
            let split = |i: usize| -> candle_core::Result<Tensor> {
                qkv.narrow(1, i * e, e)?
                    .reshape((n, self.heads, d))?
                    .transpose(0, 1)?
                    .contiguous()
            };
            let (q, k, v) = (split(0)?, split(1)?, split(2)?);
            let (k, v) = match slot.take() {
                Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 1)?, Tensor::cat(&[&pv, &v], 1)?),
                None => (k, v),
            };
            let scores = (q.matmul(&k.t()?)? / (d as f64).sqrt())?.broadcast_add(&mask)?;
            let weights = candle_nn::ops::softmax(&scores, D::Minus1)?;
            let context = weights.matmul(&v)?.transpose(0, 1)?.reshape((n, e))?;
            *slot = Some((k, v));
            x = (x + block.attn_proj.forward(&context)?)?;
            let h = block.c_fc.forward(&block.ln_2.forward(&x)?)?;
            let h = if self.exact_gelu {
                h.gelu_erf()?
            } else {
                h.gelu()?
            };
            x = (x + block.mlp_proj.forward(&h)?)?;
        }
        let last = self.ln_f.forward(&x.get(n - 1)?.unsqueeze(0)?)?;
        Ok(last.matmul(&self.wte.embeddings().t()?)?.squeeze(0)?)
    }
}

/// `[n, position + n]`: 0 where a token may look, -inf at later tokens.
fn causal_mask(n: usize, position: usize, device: &Device) -> candle_core::Result<Tensor> {
    let total = position + n;
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j > position + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Tensor::from_vec(mask, (n, total), device)?.to_dtype(DType::F32)
}
