//! The dense candidate: basis where it pays, then every row's residual quantized.

use half::bf16;
use rayon::prelude::*;
use rbe_runtime::rbe::{
    add_basis_row, basis_axes, for_each_basis_segment, scale_row_bytes, BasisCoeffs, DenseParts,
    Geometry, RbeTensor,
};

use super::basis_fit::{choose_basis, Fitter};
use super::params::EncodeParams;
use super::quantize::{quantize_row, Grid, RowOut};
use super::Candidate;

/// Encodes `data` (`g.rows x g.cols`) in dense mode.
pub(crate) fn encode_dense(
    data: &[f32],
    g: &Geometry,
    params: &EncodeParams,
) -> Result<Candidate, String> {
    let grid = Grid {
        bits: g.bits,
        asymmetric: params.asymmetric,
    };
    let mut basis = if params.allow_basis {
        choose_basis(data, g, grid, &Fitter::new(g))
    } else {
        Vec::new()
    };
    if basis.iter().all(Option::is_none) {
        basis.clear();
    }
    let axes = basis_axes(g, &basis);
    let grid_rows = |r: usize, out: RowOut, recon: &mut [f32]| {
        let x = &data[r * g.cols..(r + 1) * g.cols];
        // Subtract the basis where a tile has one; reconstruct as the decoder does.
        let mut residual = x.to_vec();
        for_each_basis_segment(g, &basis, &axes, r, |c0, surface| {
            for (v, s) in residual.iter_mut().skip(c0).zip(surface) {
                *v -= *s;
            }
        });
        quantize_row(&residual, g, grid, params.scale_bits, out, recon);
        add_basis_row(g, &basis, &axes, r, recon);
    };
    encode_rows(data, g, params, grid_rows, basis.clone())
}

/// Encodes every row of `data` with `row(r, out, recon)` (in parallel), which writes row `r`'s
/// units, group codes and packed codes into `out` and its decoded values into `recon`; then
/// assembles the dense tensor (with `basis`, which the rows were encoded against).
pub(crate) fn encode_rows(
    data: &[f32],
    g: &Geometry,
    params: &EncodeParams,
    row: impl Fn(usize, RowOut, &mut [f32]) + Sync,
    basis: Vec<Option<BasisCoeffs>>,
) -> Result<Candidate, String> {
    let sb = params.scale_bits;
    let (rows, cols, srb, rb) = (g.rows, g.cols, scale_row_bytes(g, sb), g.row_bytes());
    let mut row_scale = vec![bf16::ZERO; rows];
    let mut row_min = vec![bf16::ZERO; rows];
    let mut group_scale = vec![0u8; rows * srb];
    let mut group_min = vec![0u8; rows * srb];
    let mut codes = vec![0u8; rows * rb];
    let mut recon = vec![0f32; rows * cols];
    row_scale
        .par_iter_mut()
        .zip(row_min.par_iter_mut())
        .zip(group_scale.par_chunks_mut(srb).zip(group_min.par_chunks_mut(srb)))
        .zip(codes.par_chunks_mut(rb).zip(recon.par_chunks_mut(cols)))
        .enumerate()
        .for_each(|(r, (((row_scale, row_min), (group_scale, group_min)), (codes, recon)))| {
            row(r, RowOut { row_scale, row_min, group_scale, group_min, codes }, recon);
        });
    if !params.asymmetric {
        row_min.clear();
        group_min.clear();
    }
    let parts = DenseParts {
        asymmetric: params.asymmetric,
        scale_bits: sb,
        row_scale,
        row_min,
        group_scale: group_scale.into(),
        group_min: group_min.into(),
        codes: codes.into(),
        basis,
    };
    let tensor = RbeTensor::from_dense(*g, parts).map_err(|e| e.to_string())?;
    Ok(Candidate::new(tensor, recon, data))
}
