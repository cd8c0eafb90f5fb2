//! The sparse candidate: per tile, the orthonormal 2-D DCT-II; coefficients above
//! `threshold * sigma` (at most `k` per tile, largest first) are quantized with one uniform step,
//! the largest step that still meets the quality target; zero levels are dropped.

use rayon::prelude::*;
use rbe_runtime::rbe::{level_value, DctTable, Geometry, RbeTensor, SparseTile};

use super::params::EncodeParams;
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
    let along_cols = mean_sq(
        &mut data
            .chunks(cols)
            .flat_map(|r| r.iter().zip(&r[1..]).map(|(a, b)| (*a, *b))),
    );
    let along_rows = mean_sq(
        &mut data
            .iter()
            .zip(&data[cols.min(data.len())..])
            .map(|(a, b)| (*a, *b)),
    );
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
    let (Some(th), Some(tw)) = (
        tables.iter().find(|t| t.len() == h),
        tables.iter().find(|t| t.len() == w),
    ) else {
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

/// The tiles kept at uniform step `step` (every eligible coefficient whose level is nonzero),
/// and the coefficient-domain squared error: dropped energy plus rounding error of the kept.
fn quantize(per_tile: &[(Vec<(u32, f32)>, f64)], total: f64, step: f32) -> (Vec<SparseTile>, f64) {
    let (tiles, kept_sse): (Vec<SparseTile>, Vec<f64>) = per_tile
        .par_iter()
        .map(|(eligible, _)| {
            let mut kept: Vec<(u32, i32, f32)> = eligible
                .iter()
                .map(|&(p, c)| (p, (c / step).round() as i32, c))
                .take_while(|e| e.1 != 0)
                .collect();
            // error of the kept minus their energy (their energy is in `total`)
            let delta: f64 = kept
                .iter()
                .map(|&(_, l, c)| {
                    let e = (level_value(step, l) - c) as f64;
                    e * e - c as f64 * c as f64
                })
                .sum();
            kept.sort_unstable_by_key(|e| e.0);
            let tile = SparseTile {
                positions: kept.iter().map(|e| e.0).collect(),
                levels: kept.iter().map(|e| e.1).collect(),
            };
            (tile, delta)
        })
        .unzip();
    (tiles, total + kept_sse.iter().sum::<f64>())
}

/// Builds the sparse candidate with the largest uniform step whose squared error is at most
/// `target_sse` (fewest, smallest levels); `None` if even the finest step misses the target
/// (the `threshold` floor or the `k` cap dropped too much).
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
    // Per tile: eligible coefficients, largest first; and the tile's coefficient energy.
    let per_tile: Vec<(Vec<(u32, f32)>, f64)> = (0..g.tiles())
        .into_par_iter()
        .map(|t| {
            let c = forward(data, g, &tables, t / g.tile_cols(), t % g.tile_cols());
            let energy = c.iter().map(|&v| v as f64 * v as f64).sum();
            let mut e: Vec<(u32, f32)> = c
                .iter()
                .enumerate()
                .filter(|(_, v)| v.abs() as f64 > floor)
                .map(|(p, &v)| (p as u32, v))
                .collect();
            e.sort_unstable_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
            e.truncate(cap);
            (e, energy)
        })
        .collect();
    let total: f64 = per_tile.iter().map(|t| t.1).sum();
    let cmax = per_tile
        .iter()
        .flat_map(|t| t.0.first())
        .fold(0f32, |m, e| m.max(e.1.abs()));
    if cmax == 0.0 {
        return Ok(None);
    }
    let target = target_sse * TARGET_MARGIN;
    // Levels stay below 2^20, far inside the format's 2^24.
    let mut lo = cmax / (1 << 20) as f32;
    let (mut best, sse) = quantize(&per_tile, total, lo);
    if sse > target {
        return Ok(None);
    }
    // Bisect the step on a log scale: `lo` meets the target, `hi` keeps nothing.
    let mut hi = 2.0 * cmax;
    for _ in 0..40 {
        let mid = (lo * hi).sqrt();
        let (tiles, sse) = quantize(&per_tile, total, mid);
        if sse <= target {
            (lo, best) = (mid, tiles);
        } else {
            hi = mid;
        }
        if hi / lo < 1.001 {
            break;
        }
    }
    let tensor = RbeTensor::from_sparse(*g, lo, &best).map_err(|e| e.to_string())?;
    let recon = tensor.decode();
    Ok(Some(Candidate::new(tensor, recon, data)))
}
