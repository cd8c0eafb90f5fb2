//! The dense candidate: basis where it pays, then every row's residual quantized.

use rayon::prelude::*;
use rbe_runtime::rbe::{DenseParts, Geometry, RbeTensor};

use super::basis_fit::{choose_basis, Fitter};
use super::params::EncodeParams;
use super::quantize::{quantize_row, Grid, RowOut};
use super::Candidate;

/// Encodes `data` (`g.rows x g.cols`) in dense mode.
pub(crate) fn encode_dense(data: &[f32], g: &Geometry, params: &EncodeParams) -> Result<Candidate, String> {
    let grid = Grid { bits: g.bits, asymmetric: params.asymmetric };
    let fitter = params.allow_basis.then(|| Fitter::new(g));
    let mut basis = match &fitter {
        Some(f) => choose_basis(data, g, grid, f),
        None => Vec::new(),
    };
    if basis.iter().all(Option::is_none) {
        basis.clear();
    }
    let (rows, cols, gpr, rb) = (g.rows, g.cols, g.groups_per_row(), g.row_bytes());
    let mut row_scale = vec![0f32; rows];
    let mut row_min = vec![0f32; rows];
    let mut group_scale = vec![0u8; rows * gpr];
    let mut group_min = vec![0u8; rows * gpr];
    let mut codes = vec![0u8; rows * rb];
    let mut recon = vec![0f32; rows * cols];
    row_scale
        .par_iter_mut()
        .zip(row_min.par_iter_mut())
        .zip(group_scale.par_chunks_mut(gpr).zip(group_min.par_chunks_mut(gpr)))
        .zip(codes.par_chunks_mut(rb).zip(recon.par_chunks_mut(cols)))
        .enumerate()
        .for_each(|(r, (((row_scale, row_min), (group_scale, group_min)), (codes, recon)))| {
            let x = &data[r * cols..(r + 1) * cols];
            let (ti, i) = (r / g.block, r % g.block);
            // The basis surface of this row, only over tiles that have one (as the decoder).
            let mut surface = vec![0f32; cols];
            let mut tiles_with = Vec::new();
            if let Some(f) = &fitter {
                for tj in 0..g.tile_cols() {
                    if let Some(Some(c)) = basis.get(ti * g.tile_cols() + tj) {
                        let w = g.tile_width(tj);
                        if let Some(axes) = f.axes(g.tile_height(ti), w) {
                            axes.eval_row(c, i, &mut surface[tj * g.block..tj * g.block + w]);
                            tiles_with.push(tj);
                        }
                    }
                }
            }
            let residual: Vec<f32> = x.iter().zip(&surface).map(|(v, s)| v - s).collect();
            let out = RowOut { row_scale, row_min, group_scale, group_min, codes };
            quantize_row(if tiles_with.is_empty() { x } else { &residual }, g, grid, out, recon);
            for tj in tiles_with {
                let span = tj * g.block..(tj * g.block + g.tile_width(tj));
                for (o, s) in recon[span.clone()].iter_mut().zip(&surface[span]) {
                    *o += *s;
                }
            }
        });
    if !params.asymmetric {
        row_min.clear();
        group_min.clear();
    }
    let parts = DenseParts { asymmetric: params.asymmetric, row_scale, row_min, group_scale, group_min, codes, basis };
    let tensor = RbeTensor::from_dense(*g, parts).map_err(|e| e.to_string())?;
    Ok(Candidate::new(tensor, recon, data))
}
