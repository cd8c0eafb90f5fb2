//! `out = x · Wᵀ` straight from the compressed tensor, by the fused kernels of
//! [`crate::kernels::qmm`]: dense tensors are read in place (GEMV fused, GEMM by decoded
//! panels), a tile basis added from a few activation sums per tile; sparse tensors are decoded
//! band by band and multiplied.
//! The f32 weight is never materialised.

use super::{Body, RbeTensor};
use crate::error::Result;
use crate::kernels::output::Output;
use crate::kernels::qmm::{self, Activations, QuantMatrix, QuantParts};

impl RbeTensor {
    /// `out[m x rows] = x[m x cols] · Wᵀ` (W is this `rows x cols` tensor), with f32
    /// activations ([`Activations::Exact`]). Errors if `x` or `out` have the wrong length.
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) -> Result<()> {
        self.matmul_with(x, m, out.into(), Activations::default()).map(drop)
    }

    /// [`matmul`](Self::matmul) with a choice of activation handling: int8 activations apply
    /// to the fused GEMV (`m == 1`) and, for 4-bit codes, to the GEMM (`m > 1`; see
    /// [`qmm::gemm`]). Writes every slot of `out` and returns the values.
    pub fn matmul_with<'o>(
        &self,
        x: &[f32],
        m: usize,
        out: Output<'o>,
        act: Activations,
    ) -> Result<&'o mut [f32]> {
        let (rows, cols) = (self.rows(), self.cols());
        let decode = |_: &mut (), first: usize, w: &mut [f32]| self.decode_rows_into(first, w);
        let out = match (self.quant_view(), m) {
            (Some((q, cache)), 1) => {
                let out = out.filled(0.0);
                qmm::gemv_cached(&q, cache, x, out, act)?;
                out
            }
            (Some((q, panels)), _) => qmm::gemm_cached(&q, panels, x, m, out, act)?,
            (None, 1) => {
                let out = out.filled(0.0);
                qmm::gemv_by(rows, cols, x, out, || (), decode)?;
                return Ok(out);
            }
            (None, _) => return qmm::gemm_by(rows, cols, x, m, out, || (), decode),
        };
        if let Body::Dense(d) = &self.body {
            // The kernels multiplied the residual codes; add what the basis contributes.
            for (xi, oi) in x.chunks_exact(cols).zip(out.chunks_exact_mut(rows)) {
                d.add_basis_gemv(&self.geom, xi, oi);
            }
        }
        Ok(out)
    }

    /// The kernels' view of the codes of a dense tensor (its residual, when tiles carry a
    /// basis) with the cache of its int8 GEMM layout; `None` for other modes.
    pub(crate) fn quant_view(&self) -> Option<(QuantMatrix<'_>, &qmm::PanelCache)> {
        let Body::Dense(d) = &self.body else {
            return None;
        };
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
        .map(|q| (q, &d.panels))
    }
}

#[cfg(test)]
mod tests {
    use half::{bf16, f16};

    use super::*;
    use crate::rbe::{pack_codes, read_code, scale_row_bytes, DenseParts, Geometry};

    /// A dense tensor with pseudo-random codes and scales; a basis on tile 0 when `basis`.
    fn tensor(rows: usize, cols: usize, bits: u8, asymmetric: bool, basis: bool) -> RbeTensor {
        let g = Geometry::new(rows, cols, 64, 32, bits).unwrap();
        let mut s = 0x9e3779b97f4a7c15u64;
        let mut byte = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as u8
        };
        let srb = rows * scale_row_bytes(&g, 6);
        let side = |n: usize| if asymmetric { n } else { 0 };
        let mut codes: Vec<u8> = (0..rows * g.row_bytes()).map(|_| byte()).collect();
        for r in 0..rows {
            let mut at = r * g.row_bytes();
            for gi in 0..g.groups_per_row() {
                let n = g.group_len(gi);
                let c: Vec<u8> = (0..n).map(|j| read_code(&codes[at..], bits, j)).collect();
                let nb = g.packed_bytes(n);
                pack_codes(&c, bits, &mut codes[at..at + nb]);
                at += nb;
            }
        }
        let parts = DenseParts {
            asymmetric,
            scale_bits: 6,
            row_scale: (0..rows)
                .map(|r| bf16::from_f32(0.01 + r as f32 * 1e-4))
                .collect(),
            row_min: (0..side(rows))
                .map(|r| bf16::from_f32(0.02 - r as f32 * 1e-5))
                .collect(),
            group_scale: (0..srb).map(|_| byte()).collect(),
            group_min: (0..side(srb)).map(|_| byte()).collect(),
            codes: codes.into(),
            basis: if basis {
                (0..g.tiles())
                    .map(|t| {
                        // Interior and cropped edge tiles (70 x 100 in 64-tiles: 4 tiles).
                        (t != 1).then(|| {
                            std::array::from_fn(|k| f16::from_f32(0.05 * k as f32 - 0.1 + 0.01 * t as f32))
                        })
                    })
                    .collect()
            } else {
                Vec::new()
            },
        };
        RbeTensor::from_dense(g, parts).unwrap()
    }

    #[test]
    fn every_path_matches_decode_then_multiply() {
        for (bits, asym, basis) in [
            (4, true, false),
            (3, false, false),
            (8, true, false),
            (4, true, true),
        ] {
            let t = tensor(70, 100, bits, asym, basis);
            let w = t.decode();
            for m in [1usize, 2, 7] {
                let x: Vec<f32> = (0..m * 100)
                    .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                    .collect();
                for act in [Activations::Exact, Activations::Int8] {
                    let mut out = vec![f32::NAN; m * 70];
                    t.matmul_with(&x, m, (&mut out[..]).into(), act).unwrap();
                    for i in 0..m {
                        for r in 0..70 {
                            let (xi, wr) = (&x[i * 100..(i + 1) * 100], &w[r * 100..(r + 1) * 100]);
                            let want: f64 =
                                xi.iter().zip(wr).map(|(a, b)| *a as f64 * *b as f64).sum();
                            let scale: f64 = xi
                                .iter()
                                .zip(wr)
                                .map(|(a, b)| (*a as f64 * *b as f64).abs())
                                .sum();
                            // Int8 (m == 1; 100 columns leave a short group, so m > 1 stays exact):
                            // within 1/127 of the terms.
                            let rel = if m == 1 && act == Activations::Int8 {
                                1.0 / 127.0
                            } else {
                                1e-5
                            };
                            let got = out[i * 70 + r] as f64;
                            assert!(
                                (got - want).abs() <= rel * scale + 1e-12,
                                "bits {bits} asym {asym} basis {basis} m {m} {act:?} row {r}: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn dense_tensors_with_and_without_basis_take_the_fused_path() {
        assert!(tensor(8, 64, 4, true, false).quant_view().is_some());
        assert!(tensor(8, 64, 4, true, true).quant_view().is_some());
    }
}
