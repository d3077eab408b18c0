//! The building blocks of the forward passes written for the CPU (`bert/cpu.rs`,
//! `llama.rs`): the matrix product through the `gemm` crate (the kernel candle's CPU backend
//! calls) on plain `f32` slices, and loops written so that the compiler vectorizes them —
//! several running sums rather than one (float additions are not reordered for it), and
//! `exp` as plain arithmetic rather than a library call. On a CPU with AVX-512 the dense
//! layers' products run this crate's own kernel instead (`cpu/avx512.rs`).

use candle_core::{Result, Tensor};

#[cfg(target_arch = "x86_64")]
mod avx512;

/// Up to this many rows, a dense layer's product is written transposed (see
/// [`Dense::forward`]); measured on the MiniLM-shaped model (docs/inference.md).
const FEW_ROWS: usize = 32;

/// `dst += a · bᵀ` for row-major `a`: `[m, k]`, `b`: `[n, k]` (so `b` is a weight as stored,
/// `[out, in]`), and `dst`: `[m, n]` row-major, or `[n, m]` row-major — the product
/// transposed — when `dst_transposed`; on the current rayon pool's threads.
pub(crate) fn matmul_add_bt(
    dst: &mut [f32],
    a: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
    dst_transposed: bool,
) -> Result<()> {
    if m * n == 0 {
        return Ok(());
    }
    if dst.len() != m * n || a.len() != m * k || b.len() != n * k || k == 0 {
        candle_core::bail!("a matrix product's sizes disagree: [{m}, {k}] · [{n}, {k}]ᵀ");
    }
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // dst's element (i, j) at i·n + j, or j·m + i when transposed.
    let (dst_cs, dst_rs) = if dst_transposed {
        (m as isize, 1)
    } else {
        (1, n as isize)
    };
    #[expect(
        unsafe_code,
        reason = "gemm takes raw pointers and strides; the sizes are checked above"
    )]
    // SAFETY: gemm reads and writes dst's element (i, j) at i·dst_rs + j·dst_cs, and reads
    // a[i·k + l] and b[j·k + l], for i < m, j < n, l < k (the strides passed: a rows k apart,
    // columns 1; bᵀ's row l, column j at j·k + l). The largest indices are m·n − 1 (either
    // layout of dst: (m−1)·n + n−1 or (n−1)·m + m−1), m·k − 1 and n·k − 1, inside the slices,
    // whose lengths are checked to be exactly m·n, m·k and n·k above; each (i, j) is a
    // different index of dst. dst is a `&mut` slice, so it overlaps neither `a` nor `b`; it
    // is written only inside the call, which returns after all its threads are done.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs,
            dst_rs,
            true,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            k as isize,
            1,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

/// A dense layer: weight `[out, in]`, optional bias `[out]`.
pub(crate) struct Dense {
    weight: Weight,
    bias: Option<Vec<f32>>,
    inputs: usize,
    outputs: usize,
}

/// The weight as the product reads it.
enum Weight {
    /// As stored, `[out, in]`, for `gemm`.
    Plain(Vec<f32>),
    /// Packed for the AVX-512 kernel (only made on a CPU that has it).
    #[cfg(target_arch = "x86_64")]
    Packed(avx512::Packed),
}

impl Weight {
    /// The packed form when the CPU runs the AVX-512 kernel, else the values as stored.
    fn new(values: Vec<f32>, outputs: usize, inputs: usize) -> Weight {
        #[cfg(target_arch = "x86_64")]
        if let Some(packed) = avx512::Packed::new(&values, outputs, inputs) {
            return Weight::Packed(packed);
        }
        Weight::Plain(values)
    }
}

impl Dense {
    /// From the weight `[out, in]` and bias `[out]` tensors (any device and dtype: copied to
    /// the CPU as f32).
    pub fn new(weight: &Tensor, bias: Option<&Tensor>) -> Result<Dense> {
        let (outputs, inputs) = weight.dims2()?;
        let bias = bias.map(values).transpose()?;
        if let Some(bias) = &bias
            && bias.len() != outputs
        {
            candle_core::bail!("a bias of {} for {outputs} outputs", bias.len());
        }
        Ok(Dense {
            weight: Weight::new(values(weight)?, outputs, inputs),
            bias,
            inputs,
            outputs,
        })
    }

    /// `out = x · Wᵀ + b (+ residual)` for `x`: `[rows, in]` into `out`: `[rows, out]`.
    ///
    /// With the AVX-512 kernel the product is written in place whatever the row count (the
    /// weight was packed once). With `gemm`, for a few rows the product is written
    /// transposed, `[out, rows]`, then copied into place: the matrix kernel then takes the
    /// weight as the side it reads as stored rather than packing all of it again on every
    /// call, which for a 12-token sentence through a MiniLM-shaped model cost more than the
    /// product itself. For many rows the packing is shared by all of them and the product
    /// is written in place.
    pub fn forward(&self, x: &[f32], residual: Option<&[f32]>, out: &mut Vec<f32>) -> Result<()> {
        self.forward_with(x, residual, out, &mut Vec::new())
    }

    /// [`Dense::forward`] with a buffer for the transposed product, reused from call to call.
    pub fn forward_with(
        &self,
        x: &[f32],
        residual: Option<&[f32]>,
        out: &mut Vec<f32>,
        transposed: &mut Vec<f32>,
    ) -> Result<()> {
        let rows = x.len() / self.inputs.max(1);
        if x.len() != rows * self.inputs {
            candle_core::bail!("an input of {} values for {} inputs", x.len(), self.inputs);
        }
        let weight = match &self.weight {
            Weight::Plain(weight) => weight,
            #[cfg(target_arch = "x86_64")]
            Weight::Packed(packed) => {
                self.start(rows, residual, out)?;
                if !avx512::matmul_add(out, x, packed) {
                    candle_core::bail!("a matrix product's sizes disagree");
                }
                return Ok(());
            }
        };
        if rows > 1 && rows <= FEW_ROWS {
            if residual.is_some_and(|r| r.len() != rows * self.outputs) {
                candle_core::bail!("a residual of another size");
            }
            transposed.clear();
            transposed.resize(rows * self.outputs, 0.0);
            for (j, column) in transposed.chunks_exact_mut(rows).enumerate() {
                let bias = self.bias.as_ref().map_or(0.0, |b| b[j]);
                for (i, v) in column.iter_mut().enumerate() {
                    *v = bias + residual.map_or(0.0, |r| r[i * self.outputs + j]);
                }
            }
            matmul_add_bt(
                transposed,
                x,
                weight,
                (rows, self.outputs, self.inputs),
                true,
            )?;
            out.clear();
            out.resize(rows * self.outputs, 0.0);
            for (j, column) in transposed.chunks_exact(rows).enumerate() {
                for (i, v) in column.iter().enumerate() {
                    out[i * self.outputs + j] = *v;
                }
            }
            return Ok(());
        }
        self.start(rows, residual, out)?;
        // One row is the same in either layout: written as the few rows' product is.
        matmul_add_bt(out, x, weight, (rows, self.outputs, self.inputs), rows == 1)
    }

    /// `out` (`[rows, out]`) set to the bias plus the residual, for the product to add to.
    fn start(&self, rows: usize, residual: Option<&[f32]>, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        match residual {
            Some(residual) => {
                if residual.len() != rows * self.outputs {
                    candle_core::bail!("a residual of another size");
                }
                out.extend_from_slice(residual);
                if let Some(bias) = &self.bias {
                    for row in out.chunks_exact_mut(self.outputs) {
                        for (o, b) in row.iter_mut().zip(bias) {
                            *o += b;
                        }
                    }
                }
            }
            None => match &self.bias {
                Some(bias) => {
                    for _ in 0..rows {
                        out.extend_from_slice(bias);
                    }
                }
                None => out.resize(rows * self.outputs, 0.0),
            },
        }
        Ok(())
    }
}

pub(crate) const LANES: usize = 8;

/// A dot product in eight running sums, so that it vectorizes.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// A sum in eight running sums.
#[inline(always)]
pub(crate) fn sum(a: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = a.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for x in chunks {
        for l in 0..LANES {
            acc[l] += x[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// A tensor's values as f32, flattened, copied to the CPU.
pub(crate) fn values(t: &Tensor) -> Result<Vec<f32>> {
    t.to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()
}

/// The error function by Abramowitz and Stegun's formula 7.1.26 (absolute error below
/// 1.5e-7, under f32's own rounding at the values GELU needs).
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152_1,
        1.061_405_4,
    ];
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let y = 1.0 - poly * exp_non_positive(-a * a);
    y.copysign(x)
}

/// `e^x` for `x ≤ 0` (below -87, as e^-87: the result is then under f32's smallest normal
/// anyway), without a library call so that loops over it vectorize: `x = k·ln 2 + r` with
/// `k` rounded by adding 1.5·2²³, `e^r` by Cephes' `expf` polynomial (relative error about
/// 1e-7 for |r| ≤ ln 2 / 2), and `2^k` made from its exponent bits.
#[inline(always)]
pub(crate) fn exp_non_positive(x: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0; // 1.5 · 2²³
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.max(-87.0);
    let t = x * std::f32::consts::LOG2_E + SHIFT;
    let k = t - SHIFT;
    let r = x - k * LN2_HI - k * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 0.166_666_65;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // t's bits are SHIFT's plus k (an integer from -126 to 0): 2^k has exponent k + 127.
    let k = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    e * f32::from_bits(((k + 127) as u32) << 23)
}

/// `x / (1 + e^-x)` (SiLU), vectorizable: `e^-|x|` through [`exp_non_positive`].
#[inline(always)]
pub(crate) fn silu(x: f32) -> f32 {
    let e = exp_non_positive(-x.abs());
    let sigmoid = if x >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    };
    x * sigmoid
}

/// RMS norm of each row of `x` (rows of `weight`'s width) into `out`:
/// `x / √(mean(x²) + eps) · weight`.
pub(crate) fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut Vec<f32>) {
    out.clear();
    let h = weight.len();
    for row in x.chunks_exact(h) {
        let squares = dot(row, row) / h as f32;
        let inv = 1.0 / (squares + eps).sqrt();
        out.extend(row.iter().zip(weight).map(|(v, w)| v * inv * w));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_agrees_with_the_library_one() {
        let mut x = 0.0f32;
        while x > -100.0 {
            let (ours, theirs) = (exp_non_positive(x), x.exp());
            assert!(
                (ours - theirs).abs() <= 3e-7 * theirs + 1e-37,
                "exp({x}): {ours} vs {theirs}"
            );
            x -= 0.013;
        }
    }

    #[test]
    fn erf_matches_known_values() {
        // erf(x) to 10 digits (tables of the error function).
        for (x, want) in [
            (0.0f32, 0.0f64),
            (0.1, 0.112_462_916_0),
            (0.5, 0.520_499_877_8),
            (1.0, 0.842_700_792_9),
            (1.5, 0.966_105_146_5),
            (2.0, 0.995_322_265_0),
            (3.0, 0.999_977_909_5),
            (6.0, 1.0),
        ] {
            assert!((f64::from(erf(x)) - want).abs() < 5e-7, "erf({x})");
            assert!((f64::from(erf(-x)) + want).abs() < 5e-7, "erf(-{x})");
        }
    }

    #[test]
    fn silu_agrees_with_the_definition() {
        let mut x = -30.0f32;
        while x < 30.0 {
            let want = x / (1.0 + (-x).exp());
            assert!(
                (silu(x) - want).abs() <= 1e-6 * want.abs().max(1.0),
                "silu({x})"
            );
            x += 0.037;
        }
    }

    #[test]
    fn a_product_adds_to_what_the_output_holds() {
        // [2, 3] · [2, 3]ᵀ added to [[1, 1], [1, 1]].
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.0, 0.0, -1.0, 0.5, 0.5, 0.5];
        let mut dst = vec![1.0; 4];
        matmul_add_bt(&mut dst, &a, &b, (2, 2, 3), false).expect("sizes agree");
        assert_eq!(dst, vec![1.0 - 2.0, 1.0 + 3.0, 1.0 - 2.0, 1.0 + 7.5]);
        let mut transposed = vec![1.0; 4];
        matmul_add_bt(&mut transposed, &a, &b, (2, 2, 3), true).expect("sizes agree");
        assert_eq!(transposed, vec![1.0 - 2.0, 1.0 - 2.0, 1.0 + 3.0, 1.0 + 7.5]);
        let few = Dense {
            weight: Weight::Plain(b.to_vec()),
            bias: Some(vec![10.0, 20.0]),
            inputs: 3,
            outputs: 2,
        };
        let mut out = Vec::new();
        few.forward(&a, Some(&[1.0, 1.0, 1.0, 1.0]), &mut out)
            .expect("sizes agree");
        assert_eq!(out, vec![11.0 - 2.0, 21.0 + 3.0, 11.0 - 2.0, 21.0 + 7.5]);
        assert!(
            matmul_add_bt(&mut dst, &a, &b, (2, 2, 2), false).is_err(),
            "sizes disagree"
        );
    }

    /// Both forms of a dense layer — the AVX-512 kernel's packed weight when this CPU has
    /// it, `gemm`'s as stored — give the same outputs, bias and residual included, for row
    /// counts on both sides of the few-rows threshold and odd widths.
    #[test]
    fn a_packed_dense_layer_agrees_with_the_plain_one() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut random =
            |len: usize| -> Vec<f32> { (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect() };
        let mut packed_seen = false;
        for (inputs, outputs) in [(1, 1), (15, 17), (33, 15), (64, 97), (17, 33)] {
            let (w, bias) = (random(outputs * inputs), random(outputs));
            let tensor = Tensor::from_vec(w.clone(), (outputs, inputs), &candle_core::Device::Cpu)
                .expect("a tensor");
            let bias_t = Tensor::from_vec(bias.clone(), outputs, &candle_core::Device::Cpu)
                .expect("a tensor");
            let dense = Dense::new(&tensor, Some(&bias_t)).expect("sizes agree");
            packed_seen |= !matches!(dense.weight, Weight::Plain(_));
            let plain = Dense {
                weight: Weight::Plain(w),
                bias: Some(bias),
                inputs,
                outputs,
            };
            for rows in [1, 2, 15, 17, 32, 33, 70] {
                let x = random(rows * inputs);
                let residual = random(rows * outputs);
                for residual in [None, Some(residual.as_slice())] {
                    let (mut got, mut want) = (Vec::new(), Vec::new());
                    dense.forward(&x, residual, &mut got).expect("sizes agree");
                    plain.forward(&x, residual, &mut want).expect("sizes agree");
                    assert_eq!(got.len(), want.len());
                    for (g, e) in got.iter().zip(&want) {
                        assert!(
                            (g - e).abs() <= 1e-5 * (inputs as f32 + 1.0),
                            "{rows} rows, {inputs} → {outputs}: {g} vs {e}"
                        );
                    }
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            packed_seen,
            std::arch::is_x86_feature_detected!("avx512f"),
            "the kernel is used exactly when the CPU has AVX-512F"
        );
    }
}
