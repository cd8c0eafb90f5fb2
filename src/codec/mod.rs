//! The RBE encoder: chooses, per tensor, how to encode it in the runtime's
//! [`RbeTensor`] format, and reports what it cost.
//!
//! Candidates: dense (group quantization of every value, with the smooth basis on the tiles
//! where it lowers the rate–distortion cost) and, for smooth tensors, sparse (a few DCT
//! coefficients per tile). The cheapest candidate at the dense candidate's quality is kept.

mod basis_fit;
mod dense;
mod gptq;
mod params;
mod quantize;
mod rtn;
mod sparse;
mod stats;
#[cfg(test)]
mod tests;

pub use gptq::{Hessian, DEFAULT_DAMP};
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

/// Symmetric scale layouts tried, most accurate first, when the preset's layout is over budget.
const FALLBACK_SCALE_BITS: [u8; 4] = [8, 6, 5, 4];

/// The dense candidate in the params' layout or, if that exceeds `max_bpw`, the most accurate
/// fallback layout within it (the cheapest one if none is); with the params of its layout.
fn encode_dense_within_budget(data: &[f32], geom: &Geometry, params: &EncodeParams) -> Result<(Candidate, EncodeParams), String> {
    let mut best = (dense::encode_dense(data, geom, params)?, params.clone());
    let Some(budget) = params.max_bpw else { return Ok(best) };
    let fits = |c: &Candidate| c.tensor.stored_bytes() as f64 * 8.0 <= budget * data.len() as f64;
    for scale_bits in FALLBACK_SCALE_BITS {
        if fits(&best.0) {
            break;
        }
        let p = EncodeParams { asymmetric: false, scale_bits, ..params.clone() };
        let c = dense::encode_dense(data, geom, &p)?;
        if c.tensor.stored_bytes() < best.0.tensor.stored_bytes() {
            best = (c, p);
        }
    }
    Ok(best)
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
    let (geom, moments) = check_input(data, rows, cols, params)?;
    let (mut best, _) = encode_dense_within_budget(data, &geom, params)?;
    let mut candidates = vec![best.stats(&moments, data.len())];
    if params.allow_sparse && sparse::looks_smooth(data, cols, moments.std * moments.std) {
        let sgeom = Geometry {
            bits: SPARSE_BITS,
            ..geom
        };
        if let Some(s) = sparse::encode_sparse(data, &sgeom, params, moments.std, best.sse)? {
            candidates.push(s.stats(&moments, data.len()));
            if s.sse <= best.sse && s.tensor.stored_bytes() < best.tensor.stored_bytes() {
                best = s;
            }
        }
    }
    Ok(finish(best, candidates, &moments, &geom))
}

/// Encodes with error feedback under a layer's input statistics ([`Hessian`], GPTQ): dense
/// codes in the layout round-to-nearest would use within the budget (no basis, no sparse
/// mode), chosen to minimise the layer's output error rather than the weights' own. Returns
/// the encoder's reconstruction too.
pub fn encode_calibrated(
    data: &[f32],
    rows: usize,
    cols: usize,
    params: &EncodeParams,
    hessian: &Hessian,
) -> Result<(Encoded, Vec<f32>), String> {
    let plain = EncodeParams { allow_basis: false, allow_sparse: false, ..params.clone() };
    let (geom, moments) = check_input(data, rows, cols, &plain)?;
    let (rtn, layout) = encode_dense_within_budget(data, &geom, &plain)?;
    let fed = gptq::encode_gptq(data, &geom, &layout, hessian)?;
    let mut candidates = vec![rtn.stats(&moments, data.len()), fed.stats(&moments, data.len())];
    candidates[1].mode.push_str("+gptq");
    let (mut encoded, recon) = finish(fed, candidates, &moments, &geom);
    encoded.stats.mode.push_str("+gptq");
    Ok((encoded, recon))
}

/// Validates the knobs and the data; returns the geometry and the data's moments.
fn check_input(data: &[f32], rows: usize, cols: usize, params: &EncodeParams) -> Result<(Geometry, Moments), String> {
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
    Ok((geom, Moments::of(data)))
}

/// The chosen candidate with its report.
fn finish(best: Candidate, candidates: Vec<CandidateStats>, moments: &Moments, geom: &Geometry) -> (Encoded, Vec<f32>) {
    let weights = geom.rows * geom.cols;
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
    (Encoded { tensor: best.tensor, stats }, best.recon)
}
