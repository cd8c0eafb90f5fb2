//! What the conversion report says about an encoded tensor.

use serde::Serialize;

/// Standard deviation (population) and RMS of a tensor, in f64.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Moments {
    pub std: f64,
    pub rms: f64,
}

impl Moments {
    pub(crate) fn of(data: &[f32]) -> Self {
        let n = data.len().max(1) as f64;
        let mean = data.iter().map(|&v| v as f64).sum::<f64>() / n;
        let ms = data.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / n;
        let var = data.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        Moments { std: var.sqrt(), rms: ms.sqrt() }
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
    a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum()
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
