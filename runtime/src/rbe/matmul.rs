//! `out = x · Wᵀ` straight from the compressed tensor, by the fused kernels of
//! [`crate::kernels::qmm`]: dense tensors without a basis are read in place (GEMV fused,
//! GEMM by decoded panels); basis and sparse tensors are decoded band by band and multiplied.
//! The f32 weight is never materialised.

use super::{Body, RbeTensor};
use crate::error::Result;
use crate::kernels::qmm::{self, Activations, QuantMatrix, QuantParts};

impl RbeTensor {
    /// `out[m x rows] = x[m x cols] · Wᵀ` (W is this `rows x cols` tensor), with f32
    /// activations ([`Activations::Exact`]). Errors if `x` or `out` have the wrong length.
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) -> Result<()> {
        self.matmul_with(x, m, out, Activations::default())
    }

    /// [`matmul`](Self::matmul) with a choice of activation handling for `m == 1` (the fused
    /// GEMV); `m > 1` is always exact f32.
    pub fn matmul_with(&self, x: &[f32], m: usize, out: &mut [f32], act: Activations) -> Result<()> {
        let (rows, cols) = (self.rows(), self.cols());
        let decode = |_: &mut (), first: usize, w: &mut [f32]| self.decode_rows_into(first, w);
        match (self.quant_view(), m) {
            (Some(q), 1) => qmm::gemv(&q, x, out, act),
            (Some(q), _) => qmm::gemm(&q, x, m, out),
            (None, 1) => qmm::gemv_by(rows, cols, x, out, || (), decode),
            (None, _) => qmm::gemm_by(rows, cols, x, m, out, || (), decode),
        }
    }

    /// The kernels' view of a dense tensor without a basis (`None` for other modes).
    pub(crate) fn quant_view(&self) -> Option<QuantMatrix<'_>> {
        let Body::Dense(d) = &self.body else {
            return None;
        };
        if d.has_basis() {
            return None;
        }
        let (g, p) = (&self.geom, &d.parts);
        QuantMatrix::new(QuantParts {
            rows: g.rows,
            cols: g.cols,
            group: g.group,
            bits: g.bits,
            scale_bits: p.scale_bits,
            asymmetric: p.asymmetric,
            row_scale: &p.row_scale,
            row_min: &p.row_min,
            group_scale: &p.group_scale,
            group_min: &p.group_min,
            codes: &p.codes,
        })
        .ok()
    }
}
