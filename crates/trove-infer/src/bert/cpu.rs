//! BERT's forward pass on the CPU in plain loops over `f32` slices, the matrix products by
//! the `gemm` crate (the kernel candle itself calls). Profiling the in-process bench showed
//! a small encoder's time in candle's bookkeeping rather than arithmetic: each of the ~25
//! tensor operations of a layer allocates its result, checks layouts and dispatches, and the
//! attention's reshapes and transposes copy. Here a layer is four products writing into
//! buffers reused across layers, with the bias and the residual written into the output
//! before the product adds to it; attention reads the query, key and value rows in place
//! from the fused projection's output (no transposes), skips padding keys rather than
//! masking them, and layer norm and GELU run in place. The arithmetic is BERT's, checked
//! against candle-transformers' `bert` by the unit tests of `bert.rs`.

use crate::cpu::{Dense, LANES, dot, erf, exp_non_positive, sum, values};
use candle_core::{Result, Tensor};
use candle_transformers::models::bert::HiddenAct;

/// A layer norm's weight and bias.
pub(super) struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl Norm {
    pub fn new(weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Norm> {
        let (weight, bias) = (values(weight)?, values(bias)?);
        if weight.len() != bias.len() {
            candle_core::bail!("a layer norm's weight and bias differ in size");
        }
        Ok(Norm {
            weight,
            bias,
            eps: eps as f32,
        })
    }

    /// Normalizes each row of `x` (rows of the norm's width) in place.
    #[inline(always)]
    fn apply(&self, x: &mut [f32]) {
        let h = self.weight.len();
        for row in x.chunks_exact_mut(h) {
            let mean = sum(row) / h as f32;
            let mut var = [0f32; LANES];
            let mut chunks = row.chunks_exact(LANES);
            for c in &mut chunks {
                for l in 0..LANES {
                    let d = c[l] - mean;
                    var[l] += d * d;
                }
            }
            let tail: f32 = chunks
                .remainder()
                .iter()
                .map(|v| (v - mean) * (v - mean))
                .sum();
            let var = (var.iter().sum::<f32>() + tail) / h as f32;
            let inv = 1.0 / (var + self.eps).sqrt();
            for ((v, w), b) in row.iter_mut().zip(&self.weight).zip(&self.bias) {
                *v = (*v - mean) * inv * w + b;
            }
        }
    }
}

pub(super) struct Layer {
    pub qkv: Dense,
    pub attention_out: Dense,
    pub attention_norm: Norm,
    pub inner: Dense,
    pub out: Dense,
    pub out_norm: Norm,
}

/// The embedding tables and the layers, as f32 on the CPU.
pub(super) struct CpuBert {
    pub words: Vec<f32>,
    pub positions: Vec<f32>,
    pub token_types: Vec<f32>,
    pub embeddings_norm: Norm,
    pub layers: Vec<Layer>,
    pub hidden: usize,
    pub heads: usize,
    pub act: HiddenAct,
}

/// The buffers of one forward pass, reused from layer to layer.
struct Scratch {
    qkv: Vec<f32>,
    context: Vec<f32>,
    attended: Vec<f32>,
    inner: Vec<f32>,
    scores: Vec<f32>,
    transposed: Vec<f32>,
}

impl CpuBert {
    /// The last hidden states of a padded batch, `[inputs × longest × hidden]` row-major
    /// (as [`super::Bert::forward_batch`]; padding rows are meaningless, here zeros). `lens`
    /// are the inputs' lengths; `ids`, `types` are padded to `n` each.
    ///
    /// The layers run on the inputs' real tokens only, one after the other without their
    /// padding (`starts` gives each input's first row): a product's cost is its row count,
    /// and a list of sentences of different lengths is about a third padding.
    ///
    /// On a CPU with AVX-512 the whole pass is compiled a second time for it, so that the
    /// loops around the products (attention, layer norm, GELU) run 16 lanes wide rather than
    /// SSE's 4: the same operations in the same order, so the same values.
    pub fn forward(
        &self,
        ids: &[u32],
        types: &[u32],
        lens: &[usize],
        n: usize,
    ) -> Result<Vec<f32>> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
        {
            #[expect(unsafe_code, reason = "calling a function compiled for AVX-512")]
            // SAFETY: the CPU has every feature `forward_avx512` is compiled for (AVX-512F,
            // VL, BW and DQ, detected just above; they imply AVX2, AVX and SSE).
            return unsafe { self.forward_avx512(ids, types, lens, n) };
        }
        self.forward_here(ids, types, lens, n)
    }

    /// [`CpuBert::forward`] compiled for AVX-512.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq")]
    fn forward_avx512(
        &self,
        ids: &[u32],
        types: &[u32],
        lens: &[usize],
        n: usize,
    ) -> Result<Vec<f32>> {
        self.forward_here(ids, types, lens, n)
    }

    /// [`CpuBert::forward`] for the target it is inlined into.
    #[inline(always)]
    fn forward_here(
        &self,
        ids: &[u32],
        types: &[u32],
        lens: &[usize],
        n: usize,
    ) -> Result<Vec<f32>> {
        let h = self.hidden;
        if ids.len() != lens.len() * n || types.len() != ids.len() || lens.iter().any(|&l| l > n) {
            candle_core::bail!("a padded batch of another size");
        }
        let table = |t: &[f32], i: u32, what: &str| -> Result<std::ops::Range<usize>> {
            let start = i as usize * h;
            if start + h > t.len() {
                candle_core::bail!("{what} {i} is past the model's table of {}", t.len() / h);
            }
            Ok(start..start + h)
        };
        let mut starts = Vec::with_capacity(lens.len());
        let rows: usize = lens.iter().sum();
        let mut x = Vec::with_capacity(rows * h);
        for (b, &len) in lens.iter().enumerate() {
            starts.push(x.len() / h);
            for p in 0..len {
                let (id, ty) = (ids[b * n + p], types[b * n + p]);
                let w = &self.words[table(&self.words, id, "token id")?];
                let t = &self.token_types[table(&self.token_types, ty, "token type")?];
                let p = &self.positions[table(&self.positions, p as u32, "position")?];
                x.extend(w.iter().zip(t).zip(p).map(|((w, t), p)| (w + t) + p));
            }
        }
        self.embeddings_norm.apply(&mut x);
        let mut s = Scratch {
            qkv: Vec::new(),
            context: vec![0.0; rows * h],
            attended: Vec::new(),
            inner: Vec::new(),
            scores: vec![0.0; n],
            transposed: Vec::new(),
        };
        for layer in &self.layers {
            self.layer(layer, &mut x, lens, &starts, &mut s)?;
        }
        let mut padded = vec![0.0; ids.len() * h];
        for ((b, &len), &start) in lens.iter().enumerate().zip(&starts) {
            padded[b * n * h..][..len * h].copy_from_slice(&x[start * h..][..len * h]);
        }
        Ok(padded)
    }

    /// One layer on `x` (`[rows, hidden]`, input `b`'s tokens from row `starts[b]`) in place.
    #[inline(always)]
    fn layer(
        &self,
        layer: &Layer,
        x: &mut Vec<f32>,
        lens: &[usize],
        starts: &[usize],
        s: &mut Scratch,
    ) -> Result<()> {
        let h = self.hidden;
        let d = h / self.heads;
        let scale = 1.0 / (d as f32).sqrt();
        layer
            .qkv
            .forward_with(x, None, &mut s.qkv, &mut s.transposed)?;
        // Each input's query rows attend over its key rows.
        s.context.fill(0.0);
        for (&len, &base) in lens.iter().zip(starts) {
            for head in 0..self.heads {
                let at = head * d;
                for i in 0..len {
                    let q = &s.qkv[(base + i) * 3 * h + at..][..d];
                    let scores = &mut s.scores[..len];
                    let mut max = f32::NEG_INFINITY;
                    for (j, score) in scores.iter_mut().enumerate() {
                        let k = &s.qkv[(base + j) * 3 * h + h + at..][..d];
                        *score = dot(q, k) * scale;
                        max = max.max(*score);
                    }
                    let mut total = 0.0;
                    for score in scores.iter_mut() {
                        *score = exp_non_positive(*score - max);
                        total += *score;
                    }
                    let context = &mut s.context[(base + i) * h + at..][..d];
                    for (j, p) in scores.iter().enumerate() {
                        let v = &s.qkv[(base + j) * 3 * h + 2 * h + at..][..d];
                        let p = p / total;
                        for (c, v) in context.iter_mut().zip(v) {
                            *c += p * v;
                        }
                    }
                }
            }
        }
        layer.attention_out.forward_with(
            &s.context,
            Some(x),
            &mut s.attended,
            &mut s.transposed,
        )?;
        layer.attention_norm.apply(&mut s.attended);
        layer
            .inner
            .forward_with(&s.attended, None, &mut s.inner, &mut s.transposed)?;
        activate(self.act, &mut s.inner);
        layer
            .out
            .forward_with(&s.inner, Some(s.attended.as_slice()), x, &mut s.transposed)?;
        layer.out_norm.apply(x);
        Ok(())
    }
}

/// The configuration's activation, in place.
#[inline(always)]
fn activate(act: HiddenAct, x: &mut [f32]) {
    match act {
        HiddenAct::Gelu => {
            for v in x {
                *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
            }
        }
        HiddenAct::GeluApproximate => {
            // candle's `gelu`: the tanh form, in f32.
            const C: f32 = 0.797_884_6; // √(2/π)
            for v in x {
                *v = 0.5 * *v * (1.0 + (C * (*v + 0.044_715 * *v * *v * *v)).tanh());
            }
        }
        HiddenAct::Relu => {
            for v in x {
                *v = v.max(0.0);
            }
        }
    }
}
