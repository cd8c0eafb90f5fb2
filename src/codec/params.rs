//! Encoder knobs and the named presets.

use rbe_runtime::rbe::Geometry;
use serde::Serialize;

/// How to encode a tensor.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EncodeParams {
    /// Residual code width, 2..=8.
    pub bits: u8,
    /// Quantization group length along a row, 16..=256, a multiple of 8, dividing `block`.
    pub group: usize,
    /// Tile side, 32..=256.
    pub block: usize,
    /// Let tiles carry the smooth basis where it lowers their rate–distortion cost.
    pub allow_basis: bool,
    /// Try sparse (DCT) mode on smooth tensors; kept only if smaller at equal quality.
    pub allow_sparse: bool,
    /// Sparse mode: at most this many coefficients per tile (`None`: no cap).
    pub k: Option<usize>,
    /// Sparse mode: never keep a coefficient of magnitude <= `threshold * sigma` of the tensor.
    pub threshold: f32,
    /// Per-group offset (asymmetric codes) instead of a symmetric signed grid.
    pub asymmetric: bool,
}

/// Code width of sparse-mode values: the kept coefficients are few, so they get precision.
pub const SPARSE_BITS: u8 = 8;

impl Default for EncodeParams {
    /// The "q4" preset.
    fn default() -> Self {
        EncodeParams {
            bits: 4,
            group: 32,
            block: 128,
            allow_basis: true,
            allow_sparse: true,
            k: None,
            threshold: 0.05,
            asymmetric: false,
        }
    }
}

impl EncodeParams {
    /// Names accepted by [`preset`](Self::preset).
    pub const PRESETS: [&'static str; 3] = ["q8", "q4", "q3"];

    /// A named preset: "q8" (near-lossless, <= 8.5 bpw), "q4" (default, <= 4.5 bpw), "q3".
    pub fn preset(name: &str) -> Result<Self, String> {
        let q4 = EncodeParams::default();
        match name {
            "q8" => Ok(EncodeParams { bits: 8, ..q4 }),
            "q4" => Ok(q4),
            "q3" => Ok(EncodeParams { bits: 3, ..q4 }),
            other => Err(format!("unknown preset '{other}' (known: {})", Self::PRESETS.join(", "))),
        }
    }

    /// Rejects knobs outside their ranges with a message naming the knob.
    pub fn validate(&self) -> Result<(), String> {
        Geometry::new(1, 1, self.block, self.group, self.bits)?;
        if !(self.threshold.is_finite() && self.threshold >= 0.0) {
            return Err(format!("threshold must be finite and >= 0, got {}", self.threshold));
        }
        if self.k == Some(0) {
            return Err("k must be at least 1".into());
        }
        Ok(())
    }
}
