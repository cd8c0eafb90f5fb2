//! What the conversion report says about an encoded tensor.

use rayon::prelude::*;
use serde::Serialize;

/// Values per parallel work item of the whole-tensor sums.
const CHUNK: usize = 1 << 16;

/// `sum f(x)` in f64: chunks in parallel, then the chunk sums in order (deterministic).
fn par_sum(data: &[f32], f: impl Fn(f32) -> f64 + Sync) -> f64 {
    let parts: Vec<f64> = data
        .par_chunks(CHUNK)
        .map(|c| c.iter().map(|&v| f(v)).sum())
        .collect();
    parts.iter().sum()
}

/// Standard deviation (population) and RMS of a tensor, in f64.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Moments {
    pub std: f64,
    pub rms: f64,
}

impl Moments {
    pub(crate) fn of(data: &[f32]) -> Self {
        let n = data.len().max(1) as f64;
        let mean = par_sum(data, |v| v as f64) / n;
        let ms = par_sum(data, |v| v as f64 * v as f64) / n;
        let var = par_sum(data, |v| (v as f64 - mean).powi(2)) / n;
        Moments {
            std: var.sqrt(),
            rms: ms.sqrt(),
        }
    }

    /// RMSE over the standard deviation (over the RMS for a constant tensor; 0 if both are 0
    /// and the reconstruction is exact, infinite if not).
    pub(crate) fn relative(&self, rmse: f64) -> f64 {
        let unit = if self.std > 0.0 { self.std } else { self.rms };
        if rmse == 0.0 {
            0.0
        } else if unit > 0.0 {
            rmse / unit
        } else {
            f64::INFINITY
        }
    }
}

/// Sum of squared differences, in f64.
pub(crate) fn sse(a: &[f32], b: &[f32]) -> f64 {
    let parts: Vec<f64> = a
        .par_chunks(CHUNK)
        .zip(b.par_chunks(CHUNK))
        .map(|(x, y)| {
            x.iter()
                .zip(y)
                .map(|(&p, &q)| (p as f64 - q as f64).powi(2))
                .sum()
        })
        .collect();
    parts.iter().sum()
}

/// One candidate encoding the encoder measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CandidateStats {
    /// "dense", "dense+basis" or "sparse".
    pub mode: String,
    /// Stored bytes.
    pub bytes: usize,
    /// Relative RMSE (RMSE / std of the original).
    pub rel_rmse: f64,
}

/// Everything the report needs about one encoded tensor.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EncodeStats {
    /// Mode kept: "dense", "dense+basis" or "sparse".
    pub mode: String,
    /// Code width of the kept encoding.
    pub bits: u8,
    /// Stored bytes * 8 / weights: every byte counted (header, scales, basis, codes, indices).
    pub bits_per_weight: f64,
    /// RMSE / standard deviation of the original.
    pub rel_rmse: f64,
    /// RMSE, absolute.
    pub rmse: f64,
    /// Standard deviation of the original.
    pub std: f64,
    /// Stored bytes.
    pub bytes: usize,
    /// Weights (rows * cols).
    pub weights: usize,
    /// Tiles that carry a basis.
    pub basis_tiles: usize,
    /// Tiles in the tensor.
    pub total_tiles: usize,
    /// Kept DCT coefficients (sparse mode, else 0).
    pub sparse_coefficients: usize,
    /// Every candidate measured, the kept one included.
    pub candidates: Vec<CandidateStats>,
}
