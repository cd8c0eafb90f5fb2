//! `out = x · Wᵀ` straight from the compressed tensor: bands of rows are decoded into a small
//! per-thread buffer and multiplied there, in parallel over bands; the f32 weight is never
//! materialised.

use rayon::prelude::*;

use super::RbeTensor;
use crate::error::{Error, Result};

/// Target size of one decoded band, in f32 values (~128 KiB: stays in L2).
const BAND_VALUES: usize = 32 * 1024;

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
        // outT[rows x m], filled band by band, then transposed into out.
        let mut out_t = vec![0f32; rows * m];
        out_t.par_chunks_mut(band * m).enumerate().for_each_init(
            || vec![0f32; band * cols],
            |w, (b, o)| {
                let n = o.len() / m;
                let w = &mut w[..n * cols];
                self.decode_rows_into(b * band, w);
                for (wr, or) in w.chunks_exact(cols).zip(o.chunks_exact_mut(m)) {
                    for (xi, oi) in x.chunks_exact(cols).zip(or.iter_mut()) {
                        *oi = dot(xi, wr);
                    }
                }
            },
        );
        for (r, col) in out_t.chunks_exact(m).enumerate() {
            for (i, v) in col.iter().enumerate() {
                out[i * rows + r] = *v;
            }
        }
        Ok(())
    }
}
