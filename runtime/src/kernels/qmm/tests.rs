//! The fused kernels against an independent element-by-element decode and an f64 product.

use half::bf16;

use super::*;

/// A deterministic stream of pseudo-random words.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// Roughly N(0, 1) (sum of uniforms), with a few large outliers like LM activations.
    fn normal(&mut self) -> f32 {
        let s: f32 = (0..4).map(|_| self.next() as f32 / u32::MAX as f32).sum();
        let v = (s - 2.0) * 1.7;
        if self.next().is_multiple_of(97) {
            v * 20.0
        } else {
            v
        }
    }
}

/// Owned parts of a random matrix.
struct Owned {
    rows: usize,
    cols: usize,
    group: usize,
    bits: u8,
    scale_bits: u8,
    asymmetric: bool,
    row_scale: Vec<bf16>,
    row_min: Vec<bf16>,
    group_scale: Vec<u8>,
    group_min: Vec<u8>,
    codes: Vec<u8>,
}

fn random(
    rows: usize,
    cols: usize,
    group: usize,
    bits: u8,
    scale_bits: u8,
    asymmetric: bool,
    seed: u64,
) -> Owned {
    let mut g = Lcg(seed);
    let gpr = cols.div_ceil(group);
    let srb = (gpr * scale_bits as usize).div_ceil(8);
    let row_bytes = cols / group * (group * bits as usize).div_ceil(8)
        + ((cols % group) * bits as usize).div_ceil(8);
    let side = |n: usize| if asymmetric { n } else { 0 };
    Owned {
        rows,
        cols,
        group,
        bits,
        scale_bits,
        asymmetric,
        row_scale: (0..rows)
            .map(|r| bf16::from_f32(0.01 * (1.0 + (r % 7) as f32)))
            .collect(),
        row_min: (0..side(rows))
            .map(|r| bf16::from_f32(0.02 / (1.0 + (r % 5) as f32)))
            .collect(),
        group_scale: g.bytes(rows * srb),
        group_min: g.bytes(side(rows * srb)),
        codes: g.bytes(rows * row_bytes),
    }
}

impl Owned {
    fn view(&self) -> QuantMatrix<'_> {
        QuantMatrix::new(QuantParts {
            rows: self.rows,
            cols: self.cols,
            group: self.group,
            bits: self.bits,
            scale_bits: self.scale_bits,
            asymmetric: self.asymmetric,
            row_scale: &self.row_scale,
            row_min: &self.row_min,
            group_scale: &self.group_scale,
            group_min: &self.group_min,
            codes: &self.codes,
        })
        .unwrap()
    }

    /// Bit `i` of a packed stream.
    fn bit(packed: &[u8], i: usize) -> u32 {
        (packed[i / 8] >> (i % 8)) as u32 & 1
    }

    /// Code `j` (of `bits` bits) of a stream starting at byte `at`.
    fn code(packed: &[u8], at: usize, bits: u8, j: usize) -> i32 {
        (0..bits as usize)
            .map(|i| Self::bit(packed, at * 8 + j * bits as usize + i) << i)
            .sum::<u32>() as i32
    }

    /// Element (r, c) straight from the definition in `QuantMatrix`'s doc.
    fn value(&self, r: usize, c: usize) -> f32 {
        let (g, j) = (c / self.group, c % self.group);
        let gb = (self.group * self.bits as usize).div_ceil(8);
        let srb = (self.cols.div_ceil(self.group) * self.scale_bits as usize).div_ceil(8);
        let row_bytes = self.codes.len() / self.rows;
        let q = Self::code(&self.codes, r * row_bytes + g * gb, self.bits, j);
        let sc = Self::code(&self.group_scale, r * srb, self.scale_bits, g);
        let (zp, bias) = if self.asymmetric {
            (0, 0)
        } else {
            (1 << (self.bits - 1), 1 << (self.scale_bits - 1))
        };
        let step = self.row_scale[r].to_f32() * (sc - bias) as f32;
        let offset = if self.asymmetric {
            -(self.row_min[r].to_f32()
                * Self::code(&self.group_min, r * srb, self.scale_bits, g) as f32)
        } else {
            0.0
        };
        step * (q - zp) as f32 + offset
    }

    fn dense(&self) -> Vec<f32> {
        (0..self.rows * self.cols)
            .map(|i| self.value(i / self.cols, i % self.cols))
            .collect()
    }
}

fn activations(n: usize, seed: u64) -> Vec<f32> {
    let mut g = Lcg(seed);
    (0..n).map(|_| g.normal()).collect()
}

/// Σ x·w in f64, and Σ |x·w| (the scale of f32 rounding in any summation order).
fn reference_dot(x: &[f32], w: &[f32]) -> (f64, f64) {
    x.iter().zip(w).fold((0.0, 0.0), |(s, a), (&x, &w)| {
        let p = x as f64 * w as f64;
        (s + p, a + p.abs())
    })
}

/// Bound on the int8 path's error for one row: each activation moves by at most half its
/// sub-block's step `max|x| / 127`, weighted by |w|; only full groups are quantized.
fn int8_bound(q: &QuantMatrix, x: &[f32], w: &[f32]) -> f64 {
    let full = q.full_groups() * q.group();
    x[..full]
        .chunks(SUB)
        .zip(w[..full].chunks(SUB))
        .map(|(xs, ws)| {
            let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
            amax / 254.0 * ws.iter().map(|v| v.abs() as f64).sum::<f64>()
        })
        .sum()
}

const SHAPES: [(usize, usize, usize); 5] = [
    (1, 32, 32),    // one row, one group
    (37, 96, 32),   // rows not a multiple of any chunk
    (70, 200, 32),  // short last group (200 = 6 * 32 + 8)
    (33, 256, 64),  // two sub-blocks per group
    (300, 131, 64), // short last group of 3 values, parallel chunks
];

/// Every (bits, asymmetric, scale_bits) case of the tests.
fn cases() -> Vec<(u8, bool, u8)> {
    let mut v = Vec::new();
    for bits in 2..=8u8 {
        for asym in [false, true] {
            let sb = match bits {
                2 => 1,
                b if b % 2 == 0 => 6,
                b => 4 + b % 5,
            };
            v.push((bits, asym, sb));
        }
    }
    // 4-bit codes have their own AVX-512 exact loop, which unpacks scale codes of any width.
    v.extend([(4, false, 8), (4, true, 3)]);
    v
}

/// Checks `got` against the f64 product, within `rel` of Σ|x·w| plus `extra(row)`.
fn assert_rows(
    o: &Owned,
    x: &[f32],
    m: usize,
    got: &[f32],
    rel: f64,
    extra: impl Fn(usize, &[f32], &[f32]) -> f64,
    what: &str,
) {
    let w = o.dense();
    for i in 0..m {
        let xi = &x[i * o.cols..(i + 1) * o.cols];
        for r in 0..o.rows {
            let wr = &w[r * o.cols..(r + 1) * o.cols];
            let (want, scale) = reference_dot(xi, wr);
            let tol = rel * scale + extra(r, xi, wr) + 1e-30;
            let g = got[i * o.rows + r] as f64;
            assert!(
                (g - want).abs() <= tol,
                "{what}: m {i} row {r}: got {g}, want {want}, tol {tol}"
            );
        }
    }
}

/// Calls `check(matrix, activations, label)` for every case of [`cases`] and every shape of
/// [`SHAPES`], the random matrix and row seeded by `seeds(shape index, bits)`.
fn for_each_matrix(seeds: impl Fn(u64, u64) -> (u64, u64), mut check: impl FnMut(&Owned, &[f32], &str)) {
    for (bits, asym, sb) in cases() {
        for (k, &(rows, cols, group)) in SHAPES.iter().enumerate() {
            let (matrix_seed, row_seed) = seeds(k as u64, bits as u64);
            let o = random(rows, cols, group, bits, sb, asym, matrix_seed);
            let x = activations(cols, row_seed);
            check(&o, &x, &format!("bits {bits} asym {asym} {rows}x{cols}/{group}"));
        }
    }
}

#[test]
fn exact_gemv_matches_reference_for_every_width_and_mode() {
    for_each_matrix(|k, bits| (1 + k + 10 * bits, 7 + k), |o, x, label| {
        let mut out = vec![f32::NAN; o.rows];
        gemv(&o.view(), x, &mut out, Activations::Exact).unwrap();
        assert_rows(o, x, 1, &out, 1e-5, |_, _, _| 0.0, &format!("exact gemv {label}"));
    });
}

#[test]
fn portable_kernels_match_reference() {
    for_each_matrix(|k, bits| (40 + k + bits, 41 + k), |o, x, label| {
        let q = o.view();
        for mode in [Activations::Exact, Activations::Int8] {
            let mut out = vec![f32::NAN; o.rows];
            gemv_using(&q, None, x, &mut out, mode, rows::rows_portable, act::Order::Natural).unwrap();
            let extra = |_: usize, xi: &[f32], wr: &[f32]| match mode {
                Activations::Exact => 0.0,
                Activations::Int8 => int8_bound(&q, xi, wr),
            };
            assert_rows(o, x, 1, &out, 1e-5, extra, &format!("portable {mode:?} {label}"));
        }
        let mut got = vec![f32::NAN; o.rows * o.cols];
        decode::decode_portable(&q, &mut rows::Scratch::new(&q), 0, &mut got);
        assert!(got.iter().zip(o.dense()).all(|(a, b)| a.to_bits() == b.to_bits()));
    });
}

/// The GEMV with a kept cache (where the AVX2 row prologue reads the group codes widened to
/// bytes, and the AVX2 int8 GEMV of 4-bit codes in groups of 32 takes 8 sub-blocks a step,
/// `octets`) against the GEMV without one: rows of 8, 16 and 24 groups (widened) and of 3
/// (not), every width and mode, twice on one cache.
#[test]
fn cached_gemv_matches_the_uncached_one() {
    for (bits, asym, sb) in cases() {
        for (k, &(rows, cols, group)) in [(37, 256, 32), (20, 1024, 64), (9, 768, 32), (37, 96, 32)].iter().enumerate() {
            let o = random(rows, cols, group, bits, sb, asym, 90 + k as u64 + 10 * bits as u64);
            let (q, w) = (o.view(), o.dense());
            let x = activations(cols, 5 + k as u64);
            let cache = PanelCache::default();
            for mode in [Activations::Exact, Activations::Int8] {
                let mut want = vec![f32::NAN; rows];
                gemv(&q, &x, &mut want, mode).unwrap();
                for call in 0..2 {
                    let mut got = vec![f32::NAN; rows];
                    gemv_cached(&q, &cache, &x, &mut got, mode).unwrap();
                    for (r, (g, v)) in got.iter().zip(&want).enumerate() {
                        let (_, scale) = reference_dot(&x, &w[r * cols..(r + 1) * cols]);
                        assert!(
                            ((g - v) as f64).abs() <= 1e-6 * scale,
                            "bits {bits} asym {asym} {rows}x{cols}/{group} {mode:?} call {call}: row {r}: cached {g}, uncached {v}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn int8_gemv_stays_within_its_quantization_bound() {
    for_each_matrix(|k, bits| (100 + k + 10 * bits, 70 + k), |o, x, label| {
        let mut out = vec![f32::NAN; o.rows];
        let q = o.view();
        gemv(&q, x, &mut out, Activations::Int8).unwrap();
        assert_rows(o, x, 1, &out, 1e-5, |_, xi, wr| int8_bound(&q, xi, wr), &format!("int8 gemv {label}"));
    });
}

/// The int8 GEMM (m > 1) against the int8 GEMV row by row: the same quantized activations
/// and integer sums, so they differ only by the order of the float operations; m covers the
/// kernels' blocks of 8 (AVX2) and 6 (VNNI) rows and their tails, the shapes a last panel
/// short of its 8 (AVX2) or 32 (VNNI) rows and groups of 1 and 2 sub-blocks.
#[test]
fn int8_gemm_matches_the_int8_gemv_row_by_row() {
    for asym in [false, true] {
        for (k, &(rows, cols, group)) in [(37, 96, 32), (33, 256, 64), (8, 3072, 32), (70, 64, 32)].iter().enumerate() {
            let o = random(rows, cols, group, 4, 6, asym, 40 + k as u64);
            let q = o.view();
            for m in [2usize, 3, 5, 13, 128] {
                let x = activations(m * cols, 11 + m as u64);
                let mut got = vec![f32::NAN; m * rows];
                gemm(&q, &x, m, (&mut got[..]).into(), Activations::Int8).unwrap();
                let w = o.dense();
                for (i, (xi, gi)) in x.chunks_exact(cols).zip(got.chunks_exact(rows)).enumerate() {
                    let mut want = vec![f32::NAN; rows];
                    gemv(&q, xi, &mut want, Activations::Int8).unwrap();
                    for (r, (g, v)) in gi.iter().zip(&want).enumerate() {
                        let (_, scale) = reference_dot(xi, &w[r * cols..(r + 1) * cols]);
                        assert!(
                            ((g - v) as f64).abs() <= 1e-5 * scale,
                            "asym {asym} {rows}x{cols}/{group} m {m}: row {i} col {r}: gemm {g}, gemv {v}"
                        );
                    }
                }
                assert_rows(&o, &x, m, &got, 1e-5, |_, xi, wr| int8_bound(&q, xi, wr), "int8 gemm");
            }
        }
    }
}

/// Rows whose scale unit is 0, or so small beside their offsets that the AVX2 kernel drops
/// their scale codes (their offsets over the unit overflow f32), still give what the int8
/// GEMV gives.
#[test]
fn int8_gemm_takes_rows_with_a_zero_or_vanishing_scale_unit() {
    for asym in [false, true] {
        let (rows, cols, m) = (11, 64, 9);
        let mut o = random(rows, cols, 32, 4, 6, asym, 9);
        o.row_scale[2] = bf16::ZERO;
        if asym {
            (o.row_scale[5], o.row_min[5]) = (bf16::from_f32(1e-40), bf16::from_f32(1e3));
        }
        let q = o.view();
        let x = activations(m * cols, 4);
        let mut got = vec![f32::NAN; m * rows];
        gemm(&q, &x, m, (&mut got[..]).into(), Activations::Int8).unwrap();
        let w = o.dense();
        for (xi, gi) in x.chunks_exact(cols).zip(got.chunks_exact(rows)) {
            let mut want = vec![f32::NAN; rows];
            gemv(&q, xi, &mut want, Activations::Int8).unwrap();
            for (r, (g, v)) in gi.iter().zip(&want).enumerate() {
                let (_, scale) = reference_dot(xi, &w[r * cols..(r + 1) * cols]);
                assert!(((g - v) as f64).abs() <= 1e-5 * scale, "asym {asym} col {r}: gemm {g}, gemv {v}");
            }
        }
    }
}

/// The int8 GEMM with its panels laid out once and kept (from a matrix's second call on)
/// gives, bit for bit, what it gives laying each panel out as it goes.
#[test]
fn kept_int8_panels_give_the_same_products() {
    for asym in [false, true] {
        let o = random(70, 96, 32, 4, 6, asym, 3);
        let (q, cache) = (o.view(), PanelCache::default());
        let x = activations(13 * 96, 5);
        let mut fresh = vec![f32::NAN; 13 * 70];
        gemm(&q, &x, 13, (&mut fresh[..]).into(), Activations::Int8).unwrap();
        for call in 0..3 {
            let mut got = vec![f32::NAN; 13 * 70];
            gemm_cached(&q, &cache, &x, 13, (&mut got[..]).into(), Activations::Int8).unwrap();
            assert_eq!(got, fresh, "asym {asym}, call {call}");
        }
        assert!(format!("{cache:?}").contains("built: true") || !rows_x86_available());
    }
}

/// Whether the int8 GEMM's SIMD kernels run here (else no panels are ever kept).
fn rows_x86_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return super::rows_x86::available();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Layouts the int8 GEMM does not take (other widths, a short last group) stay exact.
#[test]
fn int8_gemm_keeps_other_layouts_exact() {
    for (bits, rows, cols) in [(4, 20, 200), (3, 20, 96), (8, 9, 64)] {
        let o = random(rows, cols, 32, bits, 6, false, 5);
        let x = activations(4 * cols, 6);
        let mut out = vec![f32::NAN; 4 * rows];
        gemm(&o.view(), &x, 4, (&mut out[..]).into(), Activations::Int8).unwrap();
        assert_rows(&o, &x, 4, &out, 1e-5, |_, _, _| 0.0, &format!("bits {bits} {rows}x{cols}"));
    }
}

/// Shapes for the AVX-512 blocks of 4 rows and steps of 16 groups: one group, a step with
/// one group over, whole steps plus a part, short last groups (one starting a step), rows not
/// a multiple of 4.
const STEP_SHAPES: [(usize, usize, usize); 7] = [
    (3, 32, 32),
    (37, 200, 32),
    (20, 17 * 32 + 3, 32),
    (9, 36 * 32, 32),
    (11, 3072, 32),
    (6, 32 * 32 + 5, 32),
    (1, 16 * 32 + 31, 32),
];

#[test]
fn int8_gemv_picks_avx512_vnni_when_the_cpu_has_it() {
    #[cfg(target_arch = "x86_64")]
    if vnni::available() {
        let o = random(4, 64, 32, 4, 6, true, 1);
        assert_eq!(
            row_kernel(&o.view(), Activations::Int8).1,
            act::Order::EvenOdd4
        );
        assert_ne!(
            row_kernel(&o.view(), Activations::Exact).1,
            act::Order::EvenOdd4
        );
    }
}

#[test]
fn avx512_int8_gemv_stays_within_its_quantization_bound() {
    #[cfg(target_arch = "x86_64")]
    for bits in [4u8, 8] {
        for (asym, sb) in [(true, 6), (false, 6), (false, 1), (true, 8)] {
            for (k, &(rows, cols, group)) in STEP_SHAPES.iter().enumerate() {
                let o = random(
                    rows,
                    cols,
                    group,
                    bits,
                    sb,
                    asym,
                    200 + k as u64 + bits as u64,
                );
                let (q, x) = (o.view(), activations(cols, 90 + k as u64));
                let Some((kernel, order)) = rows_vnni::gemv_rows(&q) else {
                    continue;
                };
                let mut out = vec![f32::NAN; rows];
                gemv_using(&q, None, &x, &mut out, Activations::Int8, kernel, order).unwrap();
                let what =
                    format!("avx512 int8 bits {bits} asym {asym}/{sb} {rows}x{cols}/{group}");
                let bound = |_: usize, xi: &[f32], wr: &[f32]| int8_bound(&q, xi, wr);
                assert_rows(&o, &x, 1, &out, 1e-5, bound, &what);
            }
        }
    }
}

#[test]
fn gemm_matches_reference_for_several_rows() {
    for (bits, asym, sb) in [
        (4, true, 6),
        (8, false, 6),
        (3, true, 6),
        (5, false, 4),
        (2, true, 8),
    ] {
        for m in [2usize, 7, 128] {
            for &(rows, cols, group) in &SHAPES[1..] {
                let o = random(rows, cols, group, bits, sb, asym, m as u64 + bits as u64);
                let x = activations(m * cols, 3 + m as u64);
                let mut out = vec![f32::NAN; m * rows];
                gemm(&o.view(), &x, m, (&mut out[..]).into(), Activations::Exact).unwrap();
                let what = format!("gemm m {m} bits {bits} asym {asym} {rows}x{cols}/{group}");
                assert_rows(&o, &x, m, &out, 1e-5, |_, _, _| 0.0, &what);
            }
        }
    }
}

#[test]
fn decode_is_bit_exact_including_groups_without_sub_blocks() {
    for (bits, asym, sb) in cases() {
        for &(rows, cols, group) in SHAPES.iter().chain(&[(9, 100, 16), (5, 77, 48)]) {
            let o = random(rows, cols, group, bits, sb, asym, 5 + bits as u64);
            let mut got = vec![f32::NAN; (rows - 1) * cols];
            decode_rows(&o.view(), 1, &mut got);
            let want = o.dense();
            assert!(
                got.iter()
                    .zip(&want[cols..])
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "bits {bits} asym {asym} {rows}x{cols}/{group}"
            );
        }
    }
}

#[test]
fn groups_without_sub_blocks_take_the_decode_path() {
    for &(rows, cols, group) in &[(9usize, 100usize, 16usize), (40, 77, 48)] {
        let o = random(rows, cols, group, 4, 6, true, 9);
        let x = activations(cols, 9);
        for mode in [Activations::Exact, Activations::Int8] {
            let mut out = vec![f32::NAN; rows];
            gemv(&o.view(), &x, &mut out, mode).unwrap();
            assert_rows(&o, &x, 1, &out, 1e-5, |_, _, _| 0.0, "decode path");
        }
    }
}

#[test]
fn the_checker_sees_a_single_wrong_code() {
    // The comparisons above can fail: one flipped code bit moves a row far past the tolerance.
    let mut o = random(8, 64, 32, 4, 6, true, 3);
    let x = vec![1.0f32; 64];
    let mut out = vec![0f32; 8];
    gemv(&o.view(), &x, &mut out, Activations::Exact).unwrap();
    o.codes[0] ^= 1;
    let w = o.dense();
    let (want, scale) = reference_dot(&x, &w[..64]);
    assert!((out[0] as f64 - want).abs() > 1e-5 * scale);
}

#[test]
fn wrong_lengths_are_errors_not_panics() {
    let o = random(4, 64, 32, 4, 6, false, 1);
    let q = o.view();
    assert!(gemv(&q, &[0.0; 63], &mut [0.0; 4], Activations::Exact).is_err());
    assert!(gemv(&q, &[0.0; 64], &mut [0.0; 3], Activations::Int8).is_err());
    assert!(gemm(&q, &[0.0; 128], 2, (&mut [0.0; 7][..]).into(), Activations::Exact).is_err());
    assert!(gemm(&q, &[0.0; 128], 2, (&mut [0.0; 7][..]).into(), Activations::Int8).is_err());
    let mut bad = random(4, 64, 32, 4, 6, false, 1);
    bad.codes.pop();
    assert!(QuantMatrix::new(QuantParts {
        codes: &bad.codes,
        ..parts(&o)
    })
    .is_err());
}

fn parts(o: &Owned) -> QuantParts<'_> {
    QuantParts {
        rows: o.rows,
        cols: o.cols,
        group: o.group,
        bits: o.bits,
        scale_bits: o.scale_bits,
        asymmetric: o.asymmetric,
        row_scale: &o.row_scale,
        row_min: &o.row_min,
        group_scale: &o.group_scale,
        group_min: &o.group_min,
        codes: &o.codes,
    }
}
