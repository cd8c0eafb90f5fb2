//! The RBE encoder: chooses, per tensor, how to encode it in the runtime's
//! [`RbeTensor`] format, and reports what it cost.
//!
//! Candidates: dense (group quantization of every value, with the smooth basis on the tiles
//! where it lowers the rate–distortion cost) and, for smooth tensors, sparse (a few DCT
//! coefficients per tile). The cheapest candidate at the dense candidate's quality is kept.

mod basis_fit;
mod dense;
mod params;
mod quantize;
mod rtn;
mod sparse;
mod stats;
#[cfg(test)]
mod tests;

pub use params::EncodeParams;
pub use rtn::rtn_absmax;
pub use stats::{CandidateStats, EncodeStats};

use rbe_runtime::rbe::{Geometry, RbeTensor, SPARSE_BITS};
use stats::{sse, Moments};

/// An encoded tensor and its report.
#[derive(Clone, Debug)]
pub struct Encoded {
    /// The compressed tensor.
    pub tensor: RbeTensor,
    /// Its cost and error.
    pub stats: EncodeStats,
}

/// One measured candidate: the tensor, the encoder's reconstruction, its squared error.
pub(crate) struct Candidate {
    tensor: RbeTensor,
    recon: Vec<f32>,
    sse: f64,
}

impl Candidate {
    fn new(tensor: RbeTensor, recon: Vec<f32>, data: &[f32]) -> Self {
        let sse = sse(data, &recon);
        Candidate { tensor, recon, sse }
    }

    fn stats(&self, m: &Moments, weights: usize) -> CandidateStats {
        CandidateStats {
            mode: self.tensor.mode_name().to_string(),
            bytes: self.tensor.stored_bytes(),
            rel_rmse: m.relative((self.sse / weights as f64).sqrt()),
        }
    }
}

/// Encodes a `rows x cols` matrix (row-major, one row per output; transpose a MatMul weight
/// `B[K, N]` to `N x K` first). Errors on invalid knobs, a length mismatch or a non-finite value.
pub fn encode(
    data: &[f32],
    rows: usize,
    cols: usize,
    params: &EncodeParams,
) -> Result<Encoded, String> {
    encode_with_reconstruction(data, rows, cols, params).map(|(e, _)| e)
}

/// [`encode`], also returning the encoder's own reconstruction (`rows * cols` values), which
/// decoding the tensor reproduces bit for bit.
pub fn encode_with_reconstruction(
    data: &[f32],
    rows: usize,
    cols: usize,
    params: &EncodeParams,
) -> Result<(Encoded, Vec<f32>), String> {
    params.validate()?;
    if rows.checked_mul(cols) != Some(data.len()) {
        return Err(format!(
            "{} values for a {rows} x {cols} matrix",
            data.len()
        ));
    }
    if let Some(k) = data.iter().position(|v| !v.is_finite()) {
        return Err(format!("non-finite value {} at index {k}", data[k]));
    }
    let geom = Geometry::new(rows, cols, params.block, params.group, params.bits)?;
    let moments = Moments::of(data);
    let weights = rows * cols;
    let mut best = dense::encode_dense(data, &geom, params)?;
    let mut candidates = vec![best.stats(&moments, weights)];
    if params.allow_sparse && sparse::looks_smooth(data, cols, moments.std * moments.std) {
        let sgeom = Geometry {
            bits: SPARSE_BITS,
            ..geom
        };
        if let Some(s) = sparse::encode_sparse(data, &sgeom, params, moments.std, best.sse)? {
            candidates.push(s.stats(&moments, weights));
            if s.sse <= best.sse && s.tensor.stored_bytes() < best.tensor.stored_bytes() {
                best = s;
            }
        }
    }
    let bytes = best.tensor.stored_bytes();
    let rmse = (best.sse / weights as f64).sqrt();
    let stats = EncodeStats {
        mode: best.tensor.mode_name().to_string(),
        bits: best.tensor.bits(),
        bits_per_weight: bytes as f64 * 8.0 / weights as f64,
        rel_rmse: moments.relative(rmse),
        rmse,
        std: moments.std,
        bytes,
        weights,
        basis_tiles: best.tensor.basis_tiles(),
        total_tiles: geom.tiles(),
        sparse_coefficients: best.tensor.sparse_coefficients(),
        candidates,
    };
    Ok((
        Encoded {
            tensor: best.tensor,
            stats,
        },
        best.recon,
    ))
}
