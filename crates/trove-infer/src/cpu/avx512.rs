//! The dense layers' matrix product on CPUs with AVX-512: the weight packed once at load
//! into panels of 32 output columns, and a register-blocked kernel that keeps a block of up
//! to 12 rows × 32 columns of the product in 24 of the 32 vector registers while it walks
//! the inner dimension — one 32-column row of the panel read (two loads) and one value of
//! each input row broadcast per step, 24 multiply-adds per 14 loads.
//!
//! One layout serves every row count. For a batch of rows the panels are walked in blocks
//! of [`KC`] steps, so that one panel's block stays in the first-level cache while every
//! block of [`MR`] rows goes through it; for one row (a decoder's generated token) the
//! product is a matrix-vector product bound by reading the weight from memory, and the
//! packed weight is then read once, front to back, as one sequential stream.
//!
//! The `gemm` crate's kernels stop at AVX2 on a stable compiler; onnxruntime's run
//! AVX-512 on the same CPU, which is where the realistic models' gap was
//! (docs/inference.md, Benchmark). Used only when the CPU has AVX-512F
//! ([`Packed::new`] checks it at run time); elsewhere [`super::Dense`] keeps the weight as
//! stored and calls `gemm`.

use std::arch::x86_64::{
    __m512, _MM_HINT_T1, _mm_prefetch, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps,
    _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
};

/// Output columns per panel: two 16-lane registers.
pub(crate) const NR: usize = 32;
/// Rows per kernel call: 12 × 2 accumulators, 2 panel registers and a broadcast fit the 32
/// registers.
const MR: usize = 12;
/// Inner-dimension steps per pass over a panel when there are more rows than one kernel
/// call takes: 256 × 32 × 4 bytes = 32 KiB of the panel, kept in the first-level cache.
const KC: usize = 256;
/// Rows per pass over the panels when there are many: 96 rows × [`KC`] steps × 4 bytes =
/// 96 KiB of the input, kept in the second-level cache while every panel goes by.
const MC: usize = 96;
/// How far ahead of the step being multiplied the panel is prefetched into the second-level
/// cache, in values (8 KiB): for one row the product streams the weight from memory, and
/// asking for it this early kept more of it in flight than the hardware's own prefetching
/// (decoder-100m: 31 → 34 tokens per CPU-second; 2 KiB ahead into the first level gained
/// less).
const PREFETCH: usize = 2048;

/// A weight `[n, k]` (`[out, in]`, as stored) packed for [`matmul_add`]: panel `p` holds,
/// for `l` in `0..k`, the 32 values `W[p·32 + c, l]` for `c < 32` (zeros past `n`).
/// A value of this type exists only on a CPU with AVX-512F: that is what makes calling the
/// kernels through it sound.
pub(crate) struct Packed {
    /// The values, from `start`: the allocation is larger, so that they can start at a
    /// [`HUGE_PAGE`] boundary.
    buffer: Vec<f32>,
    start: usize,
    n: usize,
    k: usize,
}

/// The size of a transparent huge page on x86-64.
const HUGE_PAGE: usize = 2 << 20;

impl Packed {
    /// Packs `w` (`[n, k]` row-major), or `None` when the CPU lacks AVX-512F or the sizes
    /// disagree or are zero.
    pub fn new(w: &[f32], n: usize, k: usize) -> Option<Packed> {
        if !std::arch::is_x86_feature_detected!("avx512f")
            || n == 0
            || k == 0
            || n.checked_mul(k) != Some(w.len())
        {
            return None;
        }
        let panels = n.div_ceil(NR);
        let len = panels * k * NR;
        let (mut buffer, start) = huge_paged(len);
        let data = &mut buffer[start..start + len];
        for (p, panel) in data.chunks_exact_mut(k * NR).enumerate() {
            let columns = NR.min(n - p * NR);
            for c in 0..columns {
                let row = &w[(p * NR + c) * k..][..k];
                for (l, v) in row.iter().enumerate() {
                    panel[l * NR + c] = *v;
                }
            }
        }
        Some(Packed {
            buffer,
            start,
            n,
            k,
        })
    }

    /// The packed values.
    fn data(&self) -> &[f32] {
        &self.buffer[self.start..self.start + self.n.div_ceil(NR) * self.k * NR]
    }
}

/// A zeroed buffer of at least `len` values, and where in it `len` values start on a
/// [`HUGE_PAGE`] boundary, the kernel asked to back it with huge pages (Linux's
/// transparent huge pages, `MADV_HUGEPAGE`; this machine's setting is `madvise`, so nothing
/// is huge unless asked). A packed weight is read front to back once per product, and a
/// MiniLM-shaped sentence reads 42 MB of them: in 4 KiB pages that is over 10,000 pages,
/// each a translation the CPU walks the page tables for (the second-level TLB holds
/// 1,536-2,048); in 2 MiB pages, 21. The values do not change, only how the memory under
/// them is mapped. Where the kernel says no (no huge page free, another OS), nothing
/// changes either.
fn huge_paged(len: usize) -> (Vec<f32>, usize) {
    let per_page = HUGE_PAGE / size_of::<f32>();
    // The values' whole huge pages, and their last part when it fills at least half of one
    // (at most 1 MiB of a page held and not used; a smaller last part stays in small
    // pages).
    let rest = len % per_page;
    let whole = if rest >= per_page / 2 {
        len.next_multiple_of(per_page)
    } else {
        len - rest
    };
    if whole == 0 {
        return (vec![0.0; len], 0);
    }
    // From a boundary inside the buffer, under `per_page` values from its start. Zeroed
    // and untouched until packed, so that the advice comes before the pages are made.
    let buffer = vec![0.0f32; whole.max(len) + per_page];
    let start = buffer.as_ptr().align_offset(HUGE_PAGE).min(per_page);
    #[cfg(target_os = "linux")]
    {
        let range = &buffer[start..start + whole];
        #[expect(
            unsafe_code,
            reason = "madvise is a system call on a raw address range"
        )]
        // SAFETY: MADV_HUGEPAGE changes only how the kernel backs the range with pages,
        // never what it holds, and the range is a part of `buffer` (`start` < `per_page`,
        // so `start + whole` < its length), memory this process owns and keeps mapped
        // while the call runs. A refusal (no huge pages on this kernel) is ignored: the advice is
        // a hint.
        unsafe {
            libc::madvise(
                range.as_ptr().cast_mut().cast(),
                size_of_val(range),
                libc::MADV_HUGEPAGE,
            );
        }
    }
    (buffer, start)
}

/// `dst += a · Wᵀ` for `a`: `[m, k]` row-major and `dst`: `[m, n]` row-major, on the
/// current rayon pool's threads (rows split among them, or, for one row, the panels).
/// `m` is `a.len() / k`; the lengths must agree (checked: `false` when they do not, and
/// nothing is written).
pub(crate) fn matmul_add(dst: &mut [f32], a: &[f32], w: &Packed) -> bool {
    let (n, k) = (w.n, w.k);
    let m = a.len() / k;
    if a.len() != m * k || dst.len() != m * n {
        return false;
    }
    if m == 0 {
        return true;
    }
    let threads = rayon::current_num_threads();
    if threads > 1 && m == 1 && n > NR {
        // One row: each thread takes whole panels, i.e. a run of the row's columns.
        let per = n.div_ceil(NR).div_ceil(threads) * NR;
        rayon::scope(|s| {
            for (t, part) in dst.chunks_mut(per).enumerate() {
                s.spawn(move |_| {
                    // `part` is columns t·per.. of the one row.
                    product(part, a, w, 1, (t * per, part.len()));
                });
            }
        });
    } else if threads > 1 && m > MR {
        let rows = m.div_ceil(threads).div_ceil(MR) * MR;
        rayon::scope(|s| {
            for (part, a) in dst.chunks_mut(rows * n).zip(a.chunks(rows * k)) {
                s.spawn(move |_| product(part, a, w, part.len() / n, (0, n)));
            }
        });
    } else {
        product(dst, a, w, m, (0, n));
    }
    true
}

/// `dst += a · W[j0..j0 + width]ᵀ` for `dst`: `[m, width]` (row stride `width`), `a`:
/// `[m, k]`; `j0` is a multiple of [`NR`]. Lengths as [`matmul_add`] checked them (a part
/// of its split keeps them: `m·width` and `m·k`).
fn product(dst: &mut [f32], a: &[f32], w: &Packed, m: usize, (j0, width): (usize, usize)) {
    let k = w.k;
    assert!(
        dst.len() == m * width
            && a.len() == m * k
            && j0.is_multiple_of(NR)
            && j0 + width <= w.n
            && w.data().len() == w.n.div_ceil(NR) * k * NR,
        "the product's parts are cut along rows or whole panels"
    );
    #[expect(
        unsafe_code,
        reason = "AVX-512 intrinsics: raw-pointer loads and stores, a target-feature function"
    )]
    // SAFETY: `w` is a `Packed`, made only after `is_x86_feature_detected!("avx512f")` said
    // yes, so the CPU runs `product_avx512`'s instructions. Its bounds are the lengths just
    // asserted: see its own comment for each access.
    unsafe {
        product_avx512(dst, a, w, m, (j0, width));
    }
}

/// [`product`] with the sizes it asserted.
#[target_feature(enable = "avx512f")]
#[expect(unsafe_code, reason = "raw-pointer AVX-512 loads and stores")]
unsafe fn product_avx512(
    dst: &mut [f32],
    a: &[f32],
    w: &Packed,
    m: usize,
    (j0, width): (usize, usize),
) {
    let k = w.k;
    // A few rows: one pass over all of k, so the weight is read once, front to back.
    let kc = if m <= MR { k } else { KC };
    let first = j0 / NR;
    let panels = width.div_ceil(NR);
    for l0 in (0..k).step_by(kc) {
        let steps = kc.min(k - l0);
        for i0 in (0..m).step_by(MC) {
            let rows = MC.min(m - i0);
            // SAFETY: AVX-512F is enabled here; i0 + rows ≤ m, l0 + steps ≤ k, and the
            // sizes are those `product` asserted.
            unsafe { product_rows(dst, a, w, (i0, rows), (l0, steps), (first, panels, width)) };
        }
    }
}

/// Rows `i0..i0 + m` of [`product_avx512`]'s product, steps `l0..l0 + steps`, panels
/// `first..first + panels` (the columns `width`).
///
/// # Safety
/// AVX-512F is available; the sizes are those [`product`] asserted, `i0 + m` is at most
/// the product's rows and `l0 + steps` at most `k`.
#[target_feature(enable = "avx512f")]
#[expect(unsafe_code, reason = "raw-pointer AVX-512 loads and stores")]
#[inline]
unsafe fn product_rows(
    dst: &mut [f32],
    a: &[f32],
    w: &Packed,
    (i0, m): (usize, usize),
    (l0, steps): (usize, usize),
    (first, panels, width): (usize, usize, usize),
) {
    let k = w.k;
    for p in 0..panels {
        let columns = NR.min(width - p * NR);
        // SAFETY (this block, the pointers): panel `first + p` exists, since
        // j0 + width ≤ n: (first + p)·NR < n ≤ panels of w · NR; its values for steps
        // l0.. start at (first + p)·k·NR + l0·NR and the kernel reads `steps`·NR values
        // from there, ending at (first + p)·k·NR + (l0 + steps)·NR ≤ (first + p + 1)·k·NR
        // ≤ w.data().len() (asserted by `product`).
        let b = unsafe { w.data().as_ptr().add((first + p) * k * NR + l0 * NR) };
        let mut i = i0;
        while i < i0 + m {
            let rows = MR.min(i0 + m - i);
            // SAFETY: rows i..i + rows ≤ i0 + m ≤ the product's rows (M, the caller's
            // `m`): `a` from a[i·k + l0], the kernel reading a[(i + r)·k + l0 + s] for
            // r < rows, s < steps (l0 + steps ≤ k), the largest (M − 1)·k + k − 1 <
            // a.len() = M·k; `c` from dst[i·width + p·NR], the kernel reading and writing
            // dst[(i + r)·width + p·NR + c] for c < columns (p·NR + columns ≤ width), the
            // largest (M − 1)·width + width − 1 < dst.len() = M·width. `dst` is a `&mut`
            // slice, so it overlaps neither `a` nor the weight.
            unsafe {
                let c = dst.as_mut_ptr().add(i * width + p * NR);
                let a = a.as_ptr().add(i * k + l0);
                let call = Block {
                    c,
                    ldc: width,
                    a,
                    lda: k,
                    b,
                    steps,
                    columns,
                };
                match rows {
                    1 => call.run::<1>(),
                    2 => call.run::<2>(),
                    3 => call.run::<3>(),
                    4 => call.run::<4>(),
                    5 => call.run::<5>(),
                    6 => call.run::<6>(),
                    7 => call.run::<7>(),
                    8 => call.run::<8>(),
                    9 => call.run::<9>(),
                    10 => call.run::<10>(),
                    11 => call.run::<11>(),
                    _ => call.run::<MR>(),
                }
            }
            i += rows;
        }
    }
}

/// One kernel call: `R` rows × up to 32 columns of the product.
struct Block {
    /// The product's first element of the block; rows `ldc` apart.
    c: *mut f32,
    ldc: usize,
    /// The block's first row of `a` at step 0; rows `lda` apart.
    a: *const f32,
    lda: usize,
    /// The panel at step 0: `NR` values per step.
    b: *const f32,
    steps: usize,
    /// Columns of the block that exist (1 to 32); the rest of the panel is zeros, computed
    /// and not stored.
    columns: usize,
}

impl Block {
    /// `c[r·ldc + j] += Σ_s a[r·lda + s] · b[s·NR + j]` for r < R, j < columns, s < steps.
    ///
    /// # Safety
    /// AVX-512F is available; `a[r·lda + s]`, `b[s·NR .. s·NR + NR]` are readable and
    /// `c[r·ldc + j]` readable and writable for those r, s, j; `c` overlaps neither.
    #[target_feature(enable = "avx512f")]
    #[expect(unsafe_code, reason = "raw-pointer AVX-512 loads and stores")]
    #[inline]
    unsafe fn run<const R: usize>(&self) {
        let mut acc: [[__m512; 2]; R] = [[_mm512_setzero_ps(); 2]; R];
        for s in 0..self.steps {
            // SAFETY: b[s·NR .. s·NR + 32] and a[r·lda + s] for s < steps, r < R: readable
            // by the function's contract; unaligned loads take any address.
            unsafe {
                // A hint only: an address past the panel is not read, nor faults.
                _mm_prefetch::<_MM_HINT_T1>(self.b.wrapping_add(s * NR + PREFETCH).cast());
                let b0 = _mm512_loadu_ps(self.b.add(s * NR));
                let b1 = _mm512_loadu_ps(self.b.add(s * NR + 16));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let x = _mm512_set1_ps(*self.a.add(r * self.lda + s));
                    acc[0] = _mm512_fmadd_ps(x, b0, acc[0]);
                    acc[1] = _mm512_fmadd_ps(x, b1, acc[1]);
                }
            }
        }
        let low = if self.columns >= 16 {
            u16::MAX
        } else {
            ((1u32 << self.columns) - 1) as u16
        };
        let high = ((1u32 << self.columns.saturating_sub(16)) - 1) as u16;
        for (r, acc) in acc.iter().enumerate() {
            // SAFETY: the lanes the masks keep are c[r·ldc + j] for j < columns (low: j < 16,
            // high: 16 ≤ j < columns), readable and writable by the contract; masked-off
            // lanes are neither read nor written, and the high half's address is formed
            // only when some of its lanes exist.
            unsafe {
                let c = self.c.add(r * self.ldc);
                let v = _mm512_maskz_loadu_ps(low, c);
                _mm512_mask_storeu_ps(c, low, _mm512_add_ps(v, acc[0]));
                if high != 0 {
                    let c = c.add(16);
                    let v = _mm512_maskz_loadu_ps(high, c);
                    _mm512_mask_storeu_ps(c, high, _mm512_add_ps(v, acc[1]));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The product by the plain path (`gemm` on the weight as stored), what the kernel must
    /// agree with.
    fn plain(dst: &mut [f32], a: &[f32], w: &[f32], (m, n, k): (usize, usize, usize)) {
        super::super::matmul_add_bt(dst, a, w, (m, n, k), false).expect("sizes agree");
    }

    fn random(rng: &mut rand::rngs::StdRng, len: usize) -> Vec<f32> {
        (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    fn check(m: usize, n: usize, k: usize, rng: &mut rand::rngs::StdRng) {
        let (a, w, start) = (random(rng, m * k), random(rng, n * k), random(rng, m * n));
        let Some(packed) = Packed::new(&w, n, k) else {
            return;
        };
        let mut want = start.clone();
        plain(&mut want, &a, &w, (m, n, k));
        let mut got = start.clone();
        assert!(matmul_add(&mut got, &a, &packed), "sizes agree");
        for i in 0..m {
            for j in 0..n {
                // The sums differ only in their order of additions: bounded by k·ε·Σ|a·w|.
                let bound: f32 = a[i * k..][..k]
                    .iter()
                    .zip(&w[j * k..][..k])
                    .map(|(x, y)| (x * y).abs())
                    .sum::<f32>()
                    * k as f32
                    * f32::EPSILON
                    + 1e-6;
                let (g, e) = (got[i * n + j], want[i * n + j]);
                assert!(
                    (g - e).abs() <= bound,
                    "[{m}×{k}]·[{n}×{k}]ᵀ at ({i}, {j}): {g} vs {e}"
                );
            }
        }
    }

    const EDGES: [usize; 11] = [1, 2, 11, 12, 13, 15, 16, 17, 31, 33, 65];

    #[test]
    fn the_kernel_agrees_with_gemm_on_odd_shapes() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            eprintln!("no AVX-512F on this CPU: the kernel is not used here, nothing to check");
            return;
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for &m in &EDGES {
            for &n in &EDGES {
                for &k in &[1, 15, 17, 33] {
                    check(m, n, k, &mut rng);
                }
            }
        }
        // Past one pass over k (KC) and over rows (MC), several panels, ragged.
        for (m, n, k) in [
            (25, 70, 300),
            (13, 97, 513),
            (40, 33, 257),
            (1, 1000, 768),
            (200, 45, 260),
        ] {
            check(m, n, k, &mut rng);
        }
    }

    #[test]
    fn the_kernel_agrees_with_gemm_on_several_threads() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            eprintln!("no AVX-512F on this CPU: the kernel is not used here, nothing to check");
            return;
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .expect("a pool");
        pool.install(|| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(8);
            for (m, n, k) in [
                (1, 1, 17),
                (1, 33, 16),
                (1, 95, 40),
                (1, 300, 64),
                (13, 40, 20),
                (37, 65, 33),
                (100, 17, 300),
            ] {
                check(m, n, k, &mut rng);
            }
        });
    }

    #[test]
    fn sizes_that_disagree_write_nothing() {
        let Some(packed) = Packed::new(&[1.0; 6], 2, 3) else {
            return;
        };
        let mut dst = vec![0.5; 4];
        assert!(!matmul_add(&mut dst, &[1.0; 5], &packed), "a is not [m, 3]");
        assert!(
            !matmul_add(&mut dst, &[1.0; 3], &packed),
            "dst is not [1, 2]"
        );
        assert_eq!(dst, vec![0.5; 4]);
        assert!(
            Packed::new(&[1.0; 5], 2, 3).is_none(),
            "the weight is not [2, 3]"
        );
    }
}
