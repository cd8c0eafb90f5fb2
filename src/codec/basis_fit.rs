//! Fitting the smooth per-tile basis (least squares through a pseudo-inverse cached per tile
//! shape) and deciding, tile by tile, whether it pays for its 128 bits.

use half::f16;
use rayon::prelude::*;
use rbe_runtime::rbe::{BasisAxes, BasisCoeffs, Geometry, BASIS_LEN};

use super::quantize::{search, Grid};

/// Bits a tile pays for its basis: 8 f16 coefficients.
const BASIS_BITS: f64 = (BASIS_LEN * 16) as f64;

/// Eigen-decomposition of a symmetric 8x8 matrix by cyclic Jacobi rotations:
/// returns (eigenvalues, eigenvectors as columns).
fn jacobi_eigen(
    mut a: [[f64; BASIS_LEN]; BASIS_LEN],
) -> ([f64; BASIS_LEN], [[f64; BASIS_LEN]; BASIS_LEN]) {
    let n = BASIS_LEN;
    let mut v = [[0f64; BASIS_LEN]; BASIS_LEN];
    for (i, row) in v.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for _sweep in 0..64 {
        let off: f64 = (0..n)
            .flat_map(|p| (0..n).filter(move |&q| q != p).map(move |q| (p, q)))
            .map(|(p, q)| a[p][q] * a[p][q])
            .sum();
        if off < 1e-30 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for row in a.iter_mut() {
                    let (akp, akq) = (row[p], row[q]);
                    row[p] = c * akp - s * akq;
                    row[q] = s * akp + c * akq;
                }
                let (rp, rq) = (a[p], a[q]);
                for k in 0..n {
                    a[p][k] = c * rp[k] - s * rq[k];
                    a[q][k] = s * rp[k] + c * rq[k];
                }
                for row in v.iter_mut() {
                    let (vp, vq) = (row[p], row[q]);
                    row[p] = c * vp - s * vq;
                    row[q] = s * vp + c * vq;
                }
            }
        }
    }
    (std::array::from_fn(|i| a[i][i]), v)
}

/// Basis tables and least-squares pseudo-inverse (8 x h*w, row-major) of one tile shape.
struct Shape {
    axes: BasisAxes,
    pinv: Vec<f64>,
}

impl Shape {
    fn new(h: usize, w: usize) -> Self {
        let axes = BasisAxes::new(h, w);
        let cells = || (0..h).flat_map(|i| (0..w).map(move |j| (i, j)));
        // Gram matrix G = A^T A, then pinv(A) = pinv(G) A^T with pinv(G) from its eigenvalues
        // (small ones dropped: e.g. a 1-row tile makes cos(pi y) collinear with the constant).
        let mut gram = [[0f64; BASIS_LEN]; BASIS_LEN];
        for (i, j) in cells() {
            let f = axes.functions(i, j).map(f64::from);
            for p in 0..BASIS_LEN {
                for q in 0..BASIS_LEN {
                    gram[p][q] += f[p] * f[q];
                }
            }
        }
        let (lambda, vecs) = jacobi_eigen(gram);
        let lmax = lambda.iter().fold(0f64, |m, &l| m.max(l));
        let mut ginv = [[0f64; BASIS_LEN]; BASIS_LEN];
        for (k, &l) in lambda.iter().enumerate() {
            if l > lmax * 1e-9 {
                for p in 0..BASIS_LEN {
                    for q in 0..BASIS_LEN {
                        ginv[p][q] += vecs[p][k] * vecs[q][k] / l;
                    }
                }
            }
        }
        let n = h * w;
        let mut pinv = vec![0f64; BASIS_LEN * n];
        for (c, (i, j)) in cells().enumerate() {
            let f = axes.functions(i, j).map(f64::from);
            for p in 0..BASIS_LEN {
                pinv[p * n + c] = (0..BASIS_LEN).map(|q| ginv[p][q] * f[q]).sum();
            }
        }
        Shape { axes, pinv }
    }
}

/// The pseudo-inverses of every tile shape of a geometry (at most 4), computed once.
pub(crate) struct Fitter {
    shapes: Vec<Shape>,
}

impl Fitter {
    /// Prepares every distinct tile shape of `g`.
    pub(crate) fn new(g: &Geometry) -> Self {
        let mut dims: Vec<(usize, usize)> = Vec::new();
        for ti in 0..g.tile_rows() {
            for tj in 0..g.tile_cols() {
                let d = (g.tile_height(ti), g.tile_width(tj));
                if !dims.contains(&d) {
                    dims.push(d);
                }
            }
        }
        Fitter {
            shapes: dims
                .into_par_iter()
                .map(|(h, w)| Shape::new(h, w))
                .collect(),
        }
    }

    fn shape(&self, h: usize, w: usize) -> Option<&Shape> {
        self.shapes.iter().find(|s| s.axes.shape() == (h, w))
    }

    /// Basis tables of tile shape `h x w` (None if the geometry has no such tile).
    pub(crate) fn axes(&self, h: usize, w: usize) -> Option<&BasisAxes> {
        self.shape(h, w).map(|s| &s.axes)
    }

    /// Least-squares coefficients of a tile (`h * w` values, row-major), rounded to f16.
    fn fit(&self, tile: &[f32], h: usize, w: usize) -> Option<BasisCoeffs> {
        let s = self.shape(h, w)?;
        let n = h * w;
        Some(std::array::from_fn(|p| {
            let row = &s.pinv[p * n..(p + 1) * n];
            f16::from_f64(row.iter().zip(tile).map(|(a, &b)| a * b as f64).sum())
        }))
    }
}

/// Squared error of quantizing a tile's rows group by group with searched (unquantized) scales.
fn tile_sse(tile: &[f32], w: usize, group: usize, grid: Grid) -> f64 {
    tile.chunks(w)
        .flat_map(|row| row.chunks(group))
        .map(|xg| search(xg, grid, None).2)
        .sum()
}

/// Decides the basis of tile `(ti, tj)`: fitted, rounded to f16, and kept only if the residual
/// quantizes with squared error below `SSE_without * 2^(-2 * 128 / n)` (the 128 extra bits
/// bought at 6 dB per bit). Tiles whose basis removes too little energy to possibly pass are
/// skipped without quantizing.
fn decide_tile(
    data: &[f32],
    g: &Geometry,
    grid: Grid,
    fitter: &Fitter,
    ti: usize,
    tj: usize,
) -> Option<BasisCoeffs> {
    let (h, w) = (g.tile_height(ti), g.tile_width(tj));
    let (r0, c0) = (ti * g.block, tj * g.block);
    let tile: Vec<f32> = (0..h)
        .flat_map(|i| &data[(r0 + i) * g.cols + c0..][..w])
        .copied()
        .collect();
    let coeffs = fitter.fit(&tile, h, w)?;
    if coeffs.iter().any(|c| !c.is_finite()) {
        return None; // beyond f16's range: such a tile keeps no basis
    }
    let axes = fitter.axes(h, w)?;
    let mut residual = tile.clone();
    let mut surface = vec![0f32; w];
    for (i, row) in residual.chunks_mut(w).enumerate() {
        axes.eval_row(&coeffs, i, &mut surface);
        for (v, s) in row.iter_mut().zip(&surface) {
            *v -= *s;
        }
    }
    let gain = (-2.0 * BASIS_BITS / (h * w) as f64).exp2();
    let energy = |v: &[f32]| v.iter().map(|&x| x as f64 * x as f64).sum::<f64>();
    let (e0, e1) = (energy(&tile), energy(&residual));
    if e0 == 0.0 || e1 > e0 * (1.0 - 0.5 * (1.0 - gain)) {
        return None;
    }
    let without = tile_sse(&tile, w, g.group, grid);
    let with = tile_sse(&residual, w, g.group, grid);
    (with < without * gain).then_some(coeffs)
}

/// The basis decision of every tile (tile-row-major), in parallel.
pub(crate) fn choose_basis(
    data: &[f32],
    g: &Geometry,
    grid: Grid,
    fitter: &Fitter,
) -> Vec<Option<BasisCoeffs>> {
    (0..g.tiles())
        .into_par_iter()
        .map(|t| decide_tile(data, g, grid, fitter, t / g.tile_cols(), t % g.tile_cols()))
        .collect()
}
