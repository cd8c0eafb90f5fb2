//! Encoder knobs and the named presets.

use rbe_runtime::rbe::{Geometry, MAX_SCALE_BITS, MIN_SCALE_BITS};
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
    /// Sparse mode: never keep a coefficient of magnitude <= `threshold * sigma` of the tensor
    /// (dropping them adds at most `threshold` to the relative RMSE; presets use about a
    /// seventh of their typical relative RMSE).
    pub threshold: f32,
    /// Per-group offset (asymmetric codes) instead of a symmetric signed grid.
    pub asymmetric: bool,
    /// Width of the per-group scale (and offset) codes, 4..=8; they count in the bits per weight.
    pub scale_bits: u8,
    /// Bit budget per weight, all bytes counted. When the layout above exceeds it (short rows
    /// make per-row units expensive), cheaper symmetric scale layouts are tried, most accurate
    /// first. `None`: no budget.
    pub max_bpw: Option<f64>,
    /// Code width of embedding tables (weights that only Gather nodes read, not also a linear
    /// layer's), overriding `bits` for them, with no bit budget; `None`: as every other weight.
    pub table_bits: Option<u8>,
}

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
            threshold: 0.01,
            asymmetric: true,
            scale_bits: 6,
            max_bpw: Some(4.5),
            table_bits: None,
        }
    }
}

impl EncodeParams {
    /// Names accepted by [`preset`](Self::preset).
    pub const PRESETS: [&'static str; 3] = ["q8", "q4", "q3"];

    /// A named preset: "q8" (near-lossless), "q4" (default) or "q3": 8, 4 or 3-bit codes, groups
    /// of 32 with 6-bit scale and offset codes under bf16 per-row units, tiles of 128, basis and
    /// sparse allowed. Bits per weight = code bits + 0.375 + 32/cols (+ 21 header bytes and 16
    /// bytes per basis tile); each preset has a budget (q8 8.5, q4 4.5, q3 3.5 bits per weight)
    /// that short rows meet with a cheaper symmetric scale layout.
    pub fn preset(name: &str) -> Result<Self, String> {
        let q4 = EncodeParams::default();
        match name {
            "q8" => Ok(EncodeParams {
                bits: 8,
                threshold: 0.001,
                max_bpw: Some(8.5),
                ..q4
            }),
            "q4" => Ok(q4),
            "q3" => Ok(EncodeParams {
                bits: 3,
                threshold: 0.03,
                max_bpw: Some(3.5),
                ..q4
            }),
            other => Err(format!(
                "unknown preset '{other}' (known: {})",
                Self::PRESETS.join(", ")
            )),
        }
    }

    /// The knobs an embedding table is encoded with: `table_bits` wide without a budget when
    /// set, else these.
    pub fn for_table(&self) -> EncodeParams {
        match self.table_bits {
            Some(bits) => EncodeParams { bits, max_bpw: None, ..self.clone() },
            None => self.clone(),
        }
    }

    /// Rejects knobs outside their ranges with a message naming the knob.
    pub fn validate(&self) -> Result<(), String> {
        Geometry::new(1, 1, self.block, self.group, self.bits)?;
        if !(self.threshold.is_finite() && self.threshold >= 0.0) {
            return Err(format!(
                "threshold must be finite and >= 0, got {}",
                self.threshold
            ));
        }
        if !(MIN_SCALE_BITS..=MAX_SCALE_BITS).contains(&self.scale_bits) {
            return Err(format!(
                "scale_bits must be in {MIN_SCALE_BITS}..={MAX_SCALE_BITS}, got {}",
                self.scale_bits
            ));
        }
        if self.max_bpw.is_some_and(|b| !(b.is_finite() && b > 0.0)) {
            return Err(format!("max_bpw must be a positive number, got {:?}", self.max_bpw));
        }
        if let Some(bits) = self.table_bits {
            Geometry::new(1, 1, self.block, self.group, bits).map_err(|e| format!("table_bits: {e}"))?;
        }
        if self.k == Some(0) {
            return Err("k must be at least 1".into());
        }
        Ok(())
    }
}
