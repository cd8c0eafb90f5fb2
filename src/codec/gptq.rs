//! Error-feedback quantization with calibration statistics (GPTQ): each row of a weight is
//! quantized one value at a time along its reduction axis, and the error of every value is
//! pushed onto the values not quantized yet, weighted by the inverse Hessian `H = E[x xᵀ]` of
//! the layer's inputs, so the layer's *output* error `E|x·(w - q)|²` is what gets minimised.
//!
//! The result keeps the codec's dense layout (bf16 row units, group scale codes, packed codes),
//! so it decodes with the runtime's kernels unchanged. In the natural order a group's scale is
//! chosen, like the round-to-nearest encoder does, from the group's values as the feedback has
//! left them when its first value comes up. With act-order (GPTQ's `act_order`) the values are
//! quantized in decreasing order of their input's second moment, so the inputs that matter
//! most are quantized first and the others absorb their error; groups then keep their place
//! along the row, and their scales are chosen from the original values before any feedback
//! (GPTQ's `static_groups`).

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;
use rbe_runtime::kernels::gemm::gemm;
use rbe_runtime::rbe::{dequant, zero_point, Geometry};

use super::dense::encode_rows;
use super::params::EncodeParams;
use super::quantize::{search, write_row, Grid, GroupCode, RowOut, RowUnits};
use super::Candidate;

/// The default damping added to the Hessian's diagonal, as a share of its mean (GPTQ's
/// `percdamp`). GPTQ's 0.01 suits hundreds of thousands of calibration tokens; with the
/// thousand or so of a short text it overfits, so the default damps more (all-MiniLM-L6-v2 q4
/// calibrated on tools/texts/calibration.txt, mean sentence cosine to fp32 on the eval
/// sentences: 0.9815 at 0.03, 0.9822 at 0.1, 0.9836 at 0.3, 0.9833 at 1.0).
pub const DEFAULT_DAMP: f64 = 0.1;
/// Times the damping is multiplied by 10 when the damped Hessian is still not positive definite.
const DAMP_RETRIES: usize = 4;

/// A layer's input statistics prepared for error feedback: the order the inputs are quantized
/// in, the upper Cholesky factor `U` of `H⁻¹` (`H⁻¹ = UᵀU`) in that order, and the inputs that
/// were never active.
#[derive(Clone, Debug)]
pub struct Hessian {
    cols: usize,
    /// The inputs in the order they are quantized: `order[i]` is the column quantized `i`-th.
    order: Vec<usize>,
    /// Act-order: group scales are chosen from the original values, before any feedback.
    static_groups: bool,
    /// `cols x cols`, row-major, upper triangle used, indexed by position in `order`.
    u: Vec<f32>,
    /// Inputs whose second moment is zero: their weights can be anything, and are set to 0.
    dead: Vec<bool>,
    /// Each input's second moment relative to their mean: how much an error on its weight
    /// costs in the output, for choosing group scales.
    importance: Vec<f32>,
    /// The undamped second moments, `cols x cols`, divided by their mean diagonal: what
    /// [`Hessian::output_error`] weighs a change of the weights with.
    moments: Vec<f32>,
}

impl Hessian {
    /// Prepares `xtx` (`cols x cols`, the sum of `x xᵀ` over the calibration rows): drops dead
    /// inputs, adds `damp` times the mean diagonal to the diagonal, and factors the inverse,
    /// for quantizing the inputs in their natural order. Errors on a wrong size or a non-finite
    /// value.
    pub fn new(xtx: &[f64], cols: usize, damp: f64) -> Result<Self, String> {
        Self::with_order(xtx, cols, damp, false)
    }

    /// [`Hessian::new`], with `act_order`: the inputs quantized in decreasing order of their
    /// second moment (ties and dead inputs in their natural order, dead ones last), with
    /// static group scales.
    pub fn with_order(xtx: &[f64], cols: usize, damp: f64, act_order: bool) -> Result<Self, String> {
        if !(damp > 0.0 && damp.is_finite()) {
            return Err(format!("damping {damp} is not a positive number"));
        }
        if cols == 0 || xtx.len() != cols * cols {
            return Err(format!("{} second moments for {cols} inputs", xtx.len()));
        }
        if xtx.iter().any(|v| !v.is_finite()) {
            return Err("non-finite input statistics".into());
        }
        let diag: Vec<f64> = (0..cols).map(|i| xtx[i * cols + i]).collect();
        let dead: Vec<bool> = diag.iter().map(|&d| d <= 0.0).collect();
        let live = dead.iter().filter(|d| !**d).count().max(1);
        let mean = diag.iter().zip(&dead).filter(|(_, d)| !**d).map(|(v, _)| v).sum::<f64>() / live as f64;
        let mut damp = damp * if mean > 0.0 { mean } else { 1.0 };
        let mut order: Vec<usize> = (0..cols).collect();
        if act_order {
            let key = |c: usize| if dead[c] { f64::NEG_INFINITY } else { diag[c] };
            order.sort_by(|&a, &b| key(b).total_cmp(&key(a)));
        }
        for _ in 0..=DAMP_RETRIES {
            let mut h = xtx.to_vec();
            for i in 0..cols {
                if dead[i] {
                    for j in 0..cols {
                        h[i * cols + j] = 0.0;
                        h[j * cols + i] = 0.0;
                    }
                    h[i * cols + i] = 1.0;
                }
                h[i * cols + i] += damp;
            }
            let permuted: Vec<f64> = order.iter().flat_map(|&i| order.iter().map(move |&j| (i, j))).map(|(i, j)| h[i * cols + j]).collect();
            if let Some(r) = upper_cholesky(&permuted, cols) {
                let u = invert_upper(&r, cols).into_iter().map(|v| v as f32).collect();
                let unit = mean.max(f64::MIN_POSITIVE);
                let importance = diag.iter().map(|&d| (d / unit) as f32).collect();
                let moments = xtx.iter().map(|&v| (v / unit) as f32).collect();
                return Ok(Hessian { cols, order, static_groups: act_order, u, dead, importance, moments });
            }
            damp *= 10.0;
        }
        Err("the input statistics are not positive definite, even damped".into())
    }

    /// Number of inputs.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The layer's output energy that the weight change `delta` (`rows x cols`, row-major)
    /// causes on the calibration inputs, `Σ_r δ_r M δ_rᵀ` with `M` the second moments in units
    /// of their mean diagonal; with `delta` = the weights themselves, the output's own energy.
    pub fn output_error(&self, delta: &[f32], rows: usize) -> Result<f64, String> {
        let n = self.cols;
        if rows.checked_mul(n) != Some(delta.len()) {
            return Err(format!("{} values for {rows} rows of {n}", delta.len()));
        }
        let d = ArrayView2::from_shape((rows, n), delta).map_err(|e| e.to_string())?;
        let m = ArrayView2::from_shape((n, n), &self.moments[..]).map_err(|e| e.to_string())?;
        let mut dm = Array2::<f32>::zeros((rows, n));
        gemm(1.0, d, m, 0.0, dm.view_mut()).map_err(|e| e.to_string())?;
        Ok(dm.iter().zip(d.iter()).map(|(&a, &b)| a as f64 * b as f64).sum())
    }
}

/// Factors a symmetric positive definite `a` (`n x n`, row-major) as `a = R Rᵀ` with `R` upper
/// triangular (a Cholesky factorisation in reversed index order), in place; `None` when `a`
/// is not positive definite. Then `a⁻¹ = (R⁻¹)ᵀ R⁻¹`, with `R⁻¹` upper: the factor GPTQ needs.
fn upper_cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    // Reversed indices: with i' = n-1-i the matrix becomes L Lᵀ with L lower, and L read
    // back in the original order is R. Column j of R is found from the last column down.
    let mut r = vec![0f64; n * n];
    for j in (0..n).rev() {
        // r[i][j] for i <= j: a[i][j] = sum_{k >= j} r[i][k] r[j][k].
        let row_j = &r[j * n + j + 1..(j + 1) * n];
        let d = a[j * n + j] - dot(row_j, row_j);
        if !(d > 0.0 && d.is_finite()) {
            return None;
        }
        let rjj = d.sqrt();
        r[j * n + j] = rjj;
        let (above, rest) = r.split_at_mut(j * n);
        let row_j = &rest[j + 1..n];
        above.par_chunks_mut(n).enumerate().for_each(|(i, ri)| {
            ri[j] = (a[i * n + j] - dot(&ri[j + 1..], row_j)) / rjj;
        });
    }
    Some(r)
}

/// `a · b` over the shorter length, in independent lanes so the compiler keeps it in vectors.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    const LANES: usize = 8;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f64; LANES];
    for (ca, cb) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += ca[l] * cb[l];
        }
    }
    let tail = n / LANES * LANES;
    let rest: f64 = a[tail..].iter().zip(&b[tail..]).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f64>() + rest
}

/// The inverse of an upper triangular `r` (`n x n`, row-major, non-zero diagonal), itself upper
/// triangular: column by column back substitution, in parallel over columns.
fn invert_upper(r: &[f64], n: usize) -> Vec<f64> {
    let columns: Vec<Vec<f64>> = (0..n)
        .into_par_iter()
        .map(|j| {
            // Solve R x = e_j: x[i] = 0 for i > j.
            let mut x = vec![0f64; j + 1];
            x[j] = 1.0 / r[j * n + j];
            for i in (0..j).rev() {
                x[i] = -dot(&r[i * n + i + 1..i * n + j + 1], &x[i + 1..]) / r[i * n + i];
            }
            x
        })
        .collect();
    let mut inv = vec![0f64; n * n];
    for (j, x) in columns.iter().enumerate() {
        for (i, v) in x.iter().enumerate() {
            inv[i * n + j] = *v;
        }
    }
    inv
}

/// Encodes `data` (`g.rows x g.cols`) in dense mode (no basis) with error feedback under
/// `hessian`, in the layout of `params`.
pub(crate) fn encode_gptq(data: &[f32], g: &Geometry, params: &EncodeParams, hessian: &Hessian) -> Result<Candidate, String> {
    if hessian.cols != g.cols {
        return Err(format!("input statistics for {} inputs, the weight has {}", hessian.cols, g.cols));
    }
    let grid = Grid { bits: g.bits, asymmetric: params.asymmetric };
    let cols = g.cols;
    let fed: Vec<FedRow> = data
        .par_chunks(ROW_BLOCK * cols)
        .flat_map_iter(|block| feedback_rows(block, g, grid, params.scale_bits, hessian))
        .collect();
    let row = |r: usize, out: RowOut, recon: &mut [f32]| {
        let f = &fed[r];
        write_row(g, f.units, &f.groups, &f.codes, out, recon);
    };
    encode_rows(data, g, params, row, Vec::new())
}

/// Rows quantized together: each step of the feedback reads one row of the factor for all
/// of them, so the factor streams from memory once per block instead of once per row.
const ROW_BLOCK: usize = 8;

/// One row's codes as the feedback chose them.
struct FedRow {
    units: RowUnits,
    groups: Vec<GroupCode>,
    codes: Vec<u8>,
}

/// A block of rows (`x`, whole rows) with error feedback, value by value in the Hessian's
/// order: each row's units come from its original values; each group's codes from its
/// original values (static groups) or from its values as updated when its first value comes
/// up; each value's code by rounding; its error then moves onto the row's later values.
fn feedback_rows(x: &[f32], g: &Geometry, grid: Grid, sb: u8, h: &Hessian) -> Vec<FedRow> {
    let cols = g.cols;
    let zp = zero_point(grid.bits, grid.asymmetric);
    let qmax = ((1u32 << grid.bits) - 1) as f32;
    let live = |row: &[f32]| -> Vec<f32> { row.iter().zip(&h.dead).map(|(&v, &dead)| if dead { 0.0 } else { v }).collect() };
    let groups = cols.div_ceil(g.group);
    let span = |gi: usize| gi * g.group..((gi + 1) * g.group).min(cols);
    let mut fed: Vec<FedRow> = x
        .chunks(cols)
        .map(|row| {
            let row = live(row);
            let opt: Vec<(f32, f32, f64)> =
                row.chunks(g.group).zip(h.importance.chunks(g.group)).map(|(xg, ig)| search(xg, grid, Some(ig))).collect();
            let units = RowUnits::new(&opt, grid, sb);
            let mut codes = vec![0u8; cols];
            let chosen = if h.static_groups {
                (0..groups).map(|gi| units.choose(&row[span(gi)], opt[gi], &mut codes[span(gi)], Some(&h.importance[span(gi)]))).collect()
            } else {
                Vec::new()
            };
            FedRow { units, groups: chosen, codes }
        })
        .collect();
    // The rows' values in the order they are quantized, updated by the feedback.
    let mut w: Vec<Vec<f32>> = x.chunks(cols).map(|row| h.order.iter().map(|&c| if h.dead[c] { 0.0 } else { row[c] }).collect()).collect();
    let mut position = vec![0usize; cols];
    h.order.iter().enumerate().for_each(|(i, &c)| position[c] = i);
    let mut ready = vec![h.static_groups; groups];
    if !h.static_groups {
        fed.iter_mut().for_each(|f| f.groups = vec![GroupCode { scale: 0, min: 0, step: 0.0, offset: 0.0 }; groups]);
    }
    let mut errors = vec![0f32; w.len()];
    for (i, &k) in h.order.iter().enumerate() {
        let gi = k / g.group;
        if !ready[gi] {
            let importance = Some(&h.importance[span(gi)]);
            for (row, f) in w.iter().zip(&mut fed) {
                let xg: Vec<f32> = span(gi).map(|c| row[position[c]]).collect();
                f.groups[gi] = f.units.choose(&xg, search(&xg, grid, importance), &mut f.codes[span(gi)], importance);
            }
            ready[gi] = true;
        }
        let u = &h.u[i * cols..(i + 1) * cols];
        for ((row, f), err) in w.iter().zip(&mut fed).zip(&mut errors) {
            let gc = f.groups[gi];
            let inv = if gc.step != 0.0 { 1.0 / gc.step } else { 0.0 };
            let q = ((row[i] - gc.offset) * inv + zp as f32).round().clamp(0.0, qmax) as u8;
            f.codes[k] = q;
            *err = (row[i] - dequant(q, zp, gc.step, gc.offset)) / u[i];
        }
        for (row, &err) in w.iter_mut().zip(&errors) {
            for (v, &ui) in row[i + 1..].iter_mut().zip(&u[i + 1..]) {
                *v -= err * ui;
            }
        }
    }
    fed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A symmetric positive definite matrix with strongly correlated inputs, as real layer
    /// inputs have: `x = mix · z` for a few latent factors plus noise.
    fn correlated_inputs(samples: usize, cols: usize) -> Vec<f32> {
        let mut s = 12345u64;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        let factors = 4;
        let mix: Vec<f32> = (0..factors * cols).map(|_| next() * 2.0).collect();
        let scale: Vec<f32> = (0..cols).map(|c| if c % 7 == 0 { 6.0 } else { 1.0 }).collect();
        let mut x = Vec::with_capacity(samples * cols);
        for _ in 0..samples {
            let z: Vec<f32> = (0..factors).map(|_| next()).collect();
            for c in 0..cols {
                let latent: f32 = (0..factors).map(|f| z[f] * mix[f * cols + c]).sum();
                x.push(scale[c] * (latent + next() * 0.1));
            }
        }
        x
    }

    fn xtx(x: &[f32], cols: usize) -> Vec<f64> {
        let mut h = vec![0f64; cols * cols];
        for row in x.chunks(cols) {
            for i in 0..cols {
                for j in 0..cols {
                    h[i * cols + j] += row[i] as f64 * row[j] as f64;
                }
            }
        }
        h
    }

    fn output_error(x: &[f32], w: &[f32], q: &[f32], cols: usize) -> f64 {
        let rows = w.len() / cols;
        x.chunks(cols)
            .map(|xs| {
                (0..rows)
                    .map(|r| {
                        let d: f32 = (0..cols).map(|c| xs[c] * (w[r * cols + c] - q[r * cols + c])).sum();
                        (d as f64).powi(2)
                    })
                    .sum::<f64>()
            })
            .sum()
    }

    #[test]
    fn the_factor_inverts_the_hessian() {
        let cols = 24;
        let x = correlated_inputs(200, cols);
        let h = xtx(&x, cols);
        let prepared = Hessian::new(&h, cols, DEFAULT_DAMP).unwrap();
        // Uᵀ U must equal (H + damp I)⁻¹: check (H + damp I) · UᵀU ≈ I.
        let mean = (0..cols).map(|i| h[i * cols + i]).sum::<f64>() / cols as f64;
        let u = &prepared.u;
        for i in 0..cols {
            for j in 0..cols {
                let mut v = 0f64;
                for k in 0..cols {
                    let hk = h[i * cols + k] + if i == k { DEFAULT_DAMP * mean } else { 0.0 };
                    let inv_kj: f64 = (0..cols).map(|l| u[l * cols + k] as f64 * u[l * cols + j] as f64).sum();
                    v += hk * inv_kj;
                }
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((v - want).abs() < 1e-3, "({i},{j}): {v}");
            }
        }
    }

    #[test]
    fn output_error_is_the_layer_output_energy_in_units_of_the_mean_moment() {
        let (rows, cols) = (5, 24);
        let x = correlated_inputs(100, cols);
        let h = xtx(&x, cols);
        let mean = (0..cols).map(|i| h[i * cols + i]).sum::<f64>() / cols as f64;
        let w: Vec<f32> = correlated_inputs(rows, cols);
        let q: Vec<f32> = w.iter().map(|v| (v * 4.0).round() / 4.0).collect();
        let delta: Vec<f32> = w.iter().zip(&q).map(|(a, b)| a - b).collect();
        let got = Hessian::new(&h, cols, DEFAULT_DAMP).unwrap().output_error(&delta, rows).unwrap();
        let want = output_error(&x, &w, &q, cols) / mean;
        assert!((got - want).abs() <= 1e-3 * want, "{got} vs {want}");
        assert!(Hessian::new(&h, cols, DEFAULT_DAMP).unwrap().output_error(&delta[1..], rows).is_err());
    }

    /// A 16 x 128 q3 layer (no basis, no sparse mode) and 512 correlated inputs to it: the
    /// number of inputs, the inputs, the weights, the knobs and the geometry.
    fn q3_layer() -> (usize, Vec<f32>, Vec<f32>, EncodeParams, Geometry) {
        let (rows, cols) = (16, 128);
        let x = correlated_inputs(512, cols);
        let w: Vec<f32> = correlated_inputs(rows, cols).iter().map(|v| v * 0.02).collect();
        let params = EncodeParams { allow_basis: false, allow_sparse: false, ..EncodeParams::preset("q3").unwrap() };
        let g = Geometry::new(rows, cols, params.block, params.group, params.bits).unwrap();
        (cols, x, w, params, g)
    }

    #[test]
    fn feedback_lowers_the_output_error_of_round_to_nearest() {
        let (cols, x, w, params, g) = q3_layer();
        let rtn = super::super::dense::encode_dense(&w, &g, &params).unwrap();
        let hessian = Hessian::new(&xtx(&x, cols), cols, DEFAULT_DAMP).unwrap();
        let fed = encode_gptq(&w, &g, &params, &hessian).unwrap();
        let (e_rtn, e_fed) = (output_error(&x, &w, &rtn.recon, cols), output_error(&x, &w, &fed.recon, cols));
        assert!(e_fed < 0.7 * e_rtn, "output error: feedback {e_fed:.4e} vs round-to-nearest {e_rtn:.4e}");
        // Decoding the tensor gives the encoder's reconstruction.
        assert_eq!(fed.tensor.decode(), fed.recon);
    }

    #[test]
    fn act_order_keeps_the_layout_and_lowers_the_output_error() {
        let (cols, x, w, params, g) = q3_layer();
        let h = xtx(&x, cols);
        let natural = encode_gptq(&w, &g, &params, &Hessian::new(&h, cols, DEFAULT_DAMP).unwrap()).unwrap();
        let ordered = Hessian::with_order(&h, cols, DEFAULT_DAMP, true).unwrap();
        // The largest inputs (every 7th column is 6x wider) come first.
        assert!(ordered.order[..cols.div_ceil(7)].iter().all(|c| c % 7 == 0), "{:?}", &ordered.order[..20]);
        let acted = encode_gptq(&w, &g, &params, &ordered).unwrap();
        let (e_nat, e_act) = (output_error(&x, &w, &natural.recon, cols), output_error(&x, &w, &acted.recon, cols));
        assert!(e_act < 0.9 * e_nat, "output error: act-order {e_act:.4e} vs natural order {e_nat:.4e}");
        // Same layout: same size, and the tensor decodes to the encoder's reconstruction.
        assert_eq!(acted.tensor.stored_bytes(), natural.tensor.stored_bytes());
        assert_eq!(acted.tensor.decode(), acted.recon);
    }

    #[test]
    fn act_order_of_sorted_inputs_keeps_the_natural_factor() {
        // Inputs already in decreasing order of their second moment: act-order only makes the
        // group scales static, and the factor is the natural order's.
        let cols = 64;
        let mut h = vec![0f64; cols * cols];
        for i in 0..cols {
            for j in 0..cols {
                h[i * cols + j] = if i == j { 2.0 + (cols - i) as f64 } else { 0.5 };
            }
        }
        let (a, b) = (Hessian::new(&h, cols, DEFAULT_DAMP).unwrap(), Hessian::with_order(&h, cols, DEFAULT_DAMP, true).unwrap());
        assert_eq!(b.order, (0..cols).collect::<Vec<_>>());
        assert!(a.u.iter().zip(&b.u).all(|(x, y)| (x - y).abs() <= 1e-6 * x.abs().max(1.0)));
        assert!(b.static_groups && !a.static_groups);
    }

    #[test]
    fn dead_inputs_and_bad_statistics() {
        let cols = 8;
        let mut h = vec![0f64; cols * cols];
        for i in 0..cols {
            h[i * cols + i] = if i == 3 { 0.0 } else { 1.0 + i as f64 };
        }
        let prepared = Hessian::new(&h, cols, DEFAULT_DAMP).unwrap();
        assert!(prepared.dead[3] && !prepared.dead[2]);
        assert!(Hessian::new(&h[1..], cols, DEFAULT_DAMP).is_err());
        assert!(Hessian::new(&h, cols, 0.0).is_err());
        h[5] = f64::NAN;
        assert!(Hessian::new(&h, cols, DEFAULT_DAMP).is_err());
    }
}
