//! `out = x · Wᵀ` straight from the compressed tensor: bands of rows are decoded into a small
//! per-thread buffer and multiplied there, in parallel over bands; the f32 weight is never
//! materialised.

use rayon::prelude::*;

use super::RbeTensor;
use crate::error::{Error, Result};

/// Target size of one decoded band, in f32 values (~128 KiB: stays in L2).
const BAND_VALUES: usize = 32 * 1024;
/// Fewest rows in a panel on the GEMM path (fewer makes the GEMM kernel inefficient).
const PANEL_MIN_ROWS: usize = 256;

/// Dot product with 8 independent accumulators (vectorises).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

impl RbeTensor {
    /// `out[m x rows] = x[m x cols] · Wᵀ` (W is this `rows x cols` tensor). `m == 1` takes a
    /// GEMV path that decodes one row at a time. Errors if `x` or `out` have the wrong length.
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) -> Result<()> {
        let (rows, cols) = (self.rows(), self.cols());
        if x.len() != m * cols || out.len() != m * rows {
            return Err(Error::Input(format!(
                "RBE matmul: x has {} values and out {}, want {m} x {cols} and {m} x {rows}",
                x.len(),
                out.len()
            )));
        }
        if m == 0 {
            return Ok(());
        }
        let band = (BAND_VALUES / cols).clamp(1, 64);
        if m == 1 {
            out.par_chunks_mut(band).enumerate().for_each_init(
                || vec![0f32; cols],
                |w, (b, o)| {
                    for (k, ok) in o.iter_mut().enumerate() {
                        self.decode_rows_into(b * band + k, w);
                        *ok = dot(x, w);
                    }
                },
            );
            return Ok(());
        }
        // outT[rows x m], band by band: a decoded panel W[band x cols] times xᵀ, by the GEMM kernel.
        let xt = ndarray::ArrayView2::from_shape((m, cols), x)
            .map_err(|e| Error::Input(e.to_string()))?
            .reversed_axes();
        let band = band.max(PANEL_MIN_ROWS.min(rows));
        let mut out_t = vec![0f32; rows * m];
        out_t
            .par_chunks_mut(band * m)
            .enumerate()
            .try_for_each_init(
                || vec![0f32; band * cols],
                |w, (b, o)| {
                    let n = o.len() / m;
                    let w = &mut w[..n * cols];
                    self.decode_rows_into(b * band, w);
                    let panel = ndarray::ArrayView2::from_shape((n, cols), &*w)
                        .map_err(|e| Error::Input(e.to_string()))?;
                    let c = ndarray::ArrayViewMut2::from_shape((n, m), o)
                        .map_err(|e| Error::Input(e.to_string()))?;
                    crate::kernels::gemm::gemm_serial(panel, xt, c)
                },
            )?;
        for (r, col) in out_t.chunks_exact(m).enumerate() {
            for (i, v) in col.iter().enumerate() {
                out[i * rows + r] = *v;
            }
        }
        Ok(())
    }
}
