//! The sparse candidate: per tile, the orthonormal 2-D DCT-II, the largest coefficients kept
//! (above `threshold * sigma`, at most `k` per tile, and no more than the quality target needs),
//! their values quantized.

use rayon::prelude::*;
use rbe_runtime::rbe::{DctTable, Geometry, RbeTensor, SparseTile};

use super::params::EncodeParams;
use super::quantize::{quantize_fixed, search, Grid};
use super::Candidate;

/// Fraction of the target error the coefficient-domain estimate may use (the rest is slack for
/// f32 rounding of the inverse transform).
const TARGET_MARGIN: f64 = 0.98;

/// Whether the tensor is smooth enough along rows or columns for the DCT to possibly pay: the
/// mean squared difference of neighbours is below the variance (white noise gives 2x it).
pub(crate) fn looks_smooth(data: &[f32], cols: usize, variance: f64) -> bool {
    let mean_sq = |pairs: &mut dyn Iterator<Item = (f32, f32)>| {
        let (mut s, mut n) = (0f64, 0usize);
        for (a, b) in pairs {
            s += (a as f64 - b as f64).powi(2);
            n += 1;
        }
        if n == 0 {
            f64::INFINITY
        } else {
            s / n as f64
        }
    };
    let along_cols = mean_sq(&mut data.chunks(cols).flat_map(|r| r.iter().zip(&r[1..]).map(|(a, b)| (*a, *b))));
    let along_rows = mean_sq(&mut data.iter().zip(&data[cols.min(data.len())..]).map(|(a, b)| (*a, *b)));
    variance > 0.0 && along_cols.min(along_rows) < variance
}

/// The tables for every tile side of `g`.
fn tables(g: &Geometry) -> Vec<DctTable> {
    let mut t: Vec<DctTable> = Vec::new();
    for n in [g.block, g.rows % g.block, g.cols % g.block] {
        if n > 0 && !t.iter().any(|x| x.len() == n) {
            t.push(DctTable::new(n));
        }
    }
    t
}

/// Forward 2-D DCT of tile `(ti, tj)`: `C = C_h · T · C_wᵀ`, `h * w` values (u-major).
fn forward(data: &[f32], g: &Geometry, tables: &[DctTable], ti: usize, tj: usize) -> Vec<f32> {
    let (h, w) = (g.tile_height(ti), g.tile_width(tj));
    let (r0, c0) = (ti * g.block, tj * g.block);
    let (Some(th), Some(tw)) = (tables.iter().find(|t| t.len() == h), tables.iter().find(|t| t.len() == w)) else {
        return vec![0.0; h * w];
    };
    // rows first: tmp[i][v] = sum_j T[i][j] C_w[v][j]
    let mut tmp = vec![0f32; h * w];
    for i in 0..h {
        let row = &data[(r0 + i) * g.cols + c0..][..w];
        for v in 0..w {
            tmp[i * w + v] = row.iter().zip(tw.freq(v)).map(|(a, b)| a * b).sum();
        }
    }
    // then columns: C[u][v] = sum_i C_h[u][i] tmp[i][v]
    let mut c = vec![0f32; h * w];
    for u in 0..h {
        let out = &mut c[u * w..(u + 1) * w];
        for (i, &k) in th.freq(u).iter().enumerate() {
            for (o, t) in out.iter_mut().zip(&tmp[i * w..(i + 1) * w]) {
                *o += k * t;
            }
        }
    }
    c
}

/// Quantizes the first `n` (largest) of a tile's eligible coefficients; returns the tile and
/// the squared error of those kept values.
fn quantize_tile(eligible: &[(u32, f32)], n: usize, bits: u8) -> (SparseTile, f64) {
    let mut kept: Vec<(u32, f32)> = eligible[..n].to_vec();
    kept.sort_unstable_by_key(|e| e.0);
    let values: Vec<f32> = kept.iter().map(|e| e.1).collect();
    let grid = Grid { bits, asymmetric: false };
    let (step, _, _) = search(&values, grid);
    let mut codes = vec![0u8; n];
    let sse = quantize_fixed(&values, grid, step, 0.0, &mut codes);
    (SparseTile { step, positions: kept.iter().map(|e| e.0).collect(), codes }, sse)
}

/// Builds the sparse candidate whose squared error is at most `target_sse` with as few
/// coefficients as possible; `None` if even every eligible coefficient misses the target.
pub(crate) fn encode_sparse(
    data: &[f32],
    g: &Geometry,
    params: &EncodeParams,
    sigma: f64,
    target_sse: f64,
) -> Result<Option<Candidate>, String> {
    let tables = tables(g);
    let floor = params.threshold as f64 * sigma;
    let cap = params.k.unwrap_or(usize::MAX);
    // Per tile: eligible coefficients, largest first; and the total coefficient energy.
    let per_tile: Vec<(Vec<(u32, f32)>, f64)> = (0..g.tiles())
        .into_par_iter()
        .map(|t| {
            let c = forward(data, g, &tables, t / g.tile_cols(), t % g.tile_cols());
            let energy = c.iter().map(|&v| v as f64 * v as f64).sum();
            let mut e: Vec<(u32, f32)> =
                c.iter().enumerate().filter(|(_, v)| v.abs() as f64 > floor).map(|(p, &v)| (p as u32, v)).collect();
            e.sort_unstable_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
            e.truncate(cap);
            (e, energy)
        })
        .collect();
    let total: f64 = per_tile.iter().map(|t| t.1).sum();
    let mut mags: Vec<f32> = per_tile.iter().flat_map(|t| t.0.iter().map(|e| e.1.abs())).collect();
    mags.sort_unstable_by(|a, b| b.total_cmp(a));
    // Keeping every coefficient of magnitude >= cut: the tiles, and the coefficient-domain
    // error (dropped energy + quantization error; the DCT is orthonormal).
    let build = |cut: f32| -> (Vec<SparseTile>, f64) {
        let (tiles, kept_sse): (Vec<SparseTile>, Vec<f64>) = per_tile
            .par_iter()
            .map(|(e, _)| {
                let n = e.iter().take_while(|x| x.1.abs() >= cut).count();
                let kept_energy: f64 = e[..n].iter().map(|x| x.1 as f64 * x.1 as f64).sum();
                let (tile, sse) = quantize_tile(e, n, g.bits);
                (tile, sse - kept_energy)
            })
            .unzip();
        let sse = total + kept_sse.iter().sum::<f64>();
        (tiles, sse)
    };
    let target = target_sse * TARGET_MARGIN;
    let Some(&smallest) = mags.last() else { return Ok(None) };
    let (mut tiles, sse) = build(smallest);
    if sse > target {
        return Ok(None);
    }
    // Smallest count of largest coefficients that still meets the target.
    let (mut lo, mut hi) = (0usize, mags.len()); // mags[..hi] is known to be enough
    while lo + 1 < hi {
        let mid = (lo + hi) / 2;
        let (t, s) = build(mags[mid - 1]);
        if s <= target {
            hi = mid;
            tiles = t;
        } else {
            lo = mid;
        }
    }
    let tensor = RbeTensor::from_sparse(*g, &tiles).map_err(|e| e.to_string())?;
    let recon = tensor.decode();
    Ok(Some(Candidate::new(tensor, recon, data)))
}
