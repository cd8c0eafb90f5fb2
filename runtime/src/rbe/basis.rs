//! The smooth RBE basis of a tile: 8 functions of normalised coordinates, evaluated one way only
//! (the encoder fits with it and reconstructs with it, the decoder decodes with it).

use std::f64::consts::PI;

use half::f16;

use super::geometry::{Geometry, MAX_BLOCK};

/// Number of basis functions (and of f16 coefficients stored per tile that has a basis).
pub const BASIS_LEN: usize = 8;

/// Basis coefficients of one tile, as stored.
pub type BasisCoeffs = [f16; BASIS_LEN];

/// Per-axis tables of one tile shape `h x w`: for each column x (and each row y) in [-1, 1]
/// at cell centres, `[x^2, cos(pi x), cos(2 pi x)]`. Tables are computed in f64 and rounded to
/// f32, so they do not depend on the platform's f32 `cos`.
#[derive(Clone, Debug)]
pub struct BasisAxes {
    h: usize,
    w: usize,
    cols: Vec<[f32; 3]>,
    rows: Vec<[f32; 3]>,
}

fn axis(n: usize) -> Vec<[f32; 3]> {
    (0..n)
        .map(|i| {
            let t = (2 * i + 1) as f64 / n as f64 - 1.0;
            [
                (t * t) as f32,
                (PI * t).cos() as f32,
                (2.0 * PI * t).cos() as f32,
            ]
        })
        .collect()
}

impl BasisAxes {
    /// Tables for a tile of `h` rows and `w` columns.
    pub fn new(h: usize, w: usize) -> Self {
        BasisAxes {
            h,
            w,
            cols: axis(w),
            rows: axis(h),
        }
    }

    /// Tile shape `(h, w)` these tables are for.
    pub fn shape(&self) -> (usize, usize) {
        (self.h, self.w)
    }

    /// The 8 basis functions at cell `(i, j)` of the tile:
    /// `[1, d, d^2, cos(pi x), cos(pi y), cos(2 pi x), cos(2 pi y), cos(pi x) cos(pi y)]`,
    /// `d = sqrt(x^2 + y^2)`. Panics-free for `i < h`, `j < w`; other cells read as the centre.
    #[inline(always)]
    pub fn functions(&self, i: usize, j: usize) -> [f32; BASIS_LEN] {
        let [y2, cy, c2y] = self.rows.get(i).copied().unwrap_or([0.0, 1.0, 1.0]);
        let [x2, cx, c2x] = self.cols.get(j).copied().unwrap_or([0.0, 1.0, 1.0]);
        let d2 = x2 + y2;
        [1.0, d2.sqrt(), d2, cx, cy, c2x, c2y, cx * cy]
    }

    /// Writes the basis surface of row `i` of the tile, for coefficients `c`, into `out[..w]`.
    pub fn eval_row(&self, c: &BasisCoeffs, i: usize, out: &mut [f32]) {
        let c = c.map(f16::to_f32);
        for (j, o) in out.iter_mut().take(self.w).enumerate() {
            let f = self.functions(i, j);
            let mut v = c[0] * f[0];
            for k in 1..BASIS_LEN {
                v += c[k] * f[k];
            }
            *o = v;
        }
    }
}

/// Tables for every tile shape of `g` that carries a basis (`basis`: per tile, tile-row-major).
pub fn basis_axes(g: &Geometry, basis: &[Option<BasisCoeffs>]) -> Vec<BasisAxes> {
    let mut axes: Vec<BasisAxes> = Vec::new();
    for (t, c) in basis.iter().enumerate() {
        let shape = (
            g.tile_height(t / g.tile_cols()),
            g.tile_width(t % g.tile_cols()),
        );
        if c.is_some() && !axes.iter().any(|a| a.shape() == shape) {
            axes.push(BasisAxes::new(shape.0, shape.1));
        }
    }
    axes
}

/// Calls `each(first_col, surface)` for every tile crossed by row `r` that carries a basis, with
/// that tile's basis surface on the row (`axes` from [`basis_axes`]).
pub fn for_each_basis_segment(
    g: &Geometry,
    basis: &[Option<BasisCoeffs>],
    axes: &[BasisAxes],
    r: usize,
    mut each: impl FnMut(usize, &[f32]),
) {
    if basis.is_empty() {
        return;
    }
    let (ti, i) = (r / g.block, r % g.block);
    let mut surface = [0f32; MAX_BLOCK];
    for (tj, c, a) in tiles_with_basis(g, basis, axes, ti) {
        a.eval_row(c, i, &mut surface);
        each(tj * g.block, &surface[..a.w]);
    }
}

/// The tiles of tile row `ti` that carry a basis: `(tile column, coefficients, tables)`.
fn tiles_with_basis<'a>(
    g: &'a Geometry,
    basis: &'a [Option<BasisCoeffs>],
    axes: &'a [BasisAxes],
    ti: usize,
) -> impl Iterator<Item = (usize, &'a BasisCoeffs, &'a BasisAxes)> + 'a {
    let h = g.tile_height(ti);
    (0..g.tile_cols()).filter_map(move |tj| {
        let c = basis.get(ti * g.tile_cols() + tj)?.as_ref()?;
        let a = axes.iter().find(|a| a.shape() == (h, g.tile_width(tj)))?;
        Some((tj, c, a))
    })
}

/// Adds the basis surfaces of row `r` to `out` (a decoded row of residuals): the last step of
/// decoding, and of the encoder's reconstruction.
pub fn add_basis_row(
    g: &Geometry,
    basis: &[Option<BasisCoeffs>],
    axes: &[BasisAxes],
    r: usize,
    out: &mut [f32],
) {
    for_each_basis_segment(g, basis, axes, r, |c0, s| {
        for (o, v) in out.iter_mut().skip(c0).zip(s) {
            *o += *v;
        }
    });
}

/// `out[r] += Σ_c x[c] · basis(r, c)` for every row `r`: the basis part of `x · Wᵀ`, added after
/// the kernels multiplied the residual codes. The functions are separable except `d`, so per
/// tile it needs only four sums of `x` against the column tables, plus, per tile height, one
/// `x · d` table per tile column: O(cols · block + rows · tile_cols) instead of O(rows · cols).
pub fn add_basis_gemv(
    g: &Geometry,
    basis: &[Option<BasisCoeffs>],
    axes: &[BasisAxes],
    x: &[f32],
    out: &mut [f32],
) {
    if basis.is_empty() {
        return;
    }
    // Per (tile height, tile column): Σ_j x_j·sqrt(x²_j + y²_i) for each row i of the tile.
    let mut d_tables: Vec<((usize, usize), Vec<f32>)> = Vec::new();
    for ti in 0..g.tile_rows() {
        let h = g.tile_height(ti);
        for (tj, c, a) in tiles_with_basis(g, basis, axes, ti) {
            let xs = x.get(tj * g.block..tj * g.block + a.w).unwrap_or(&[]);
            let d = match d_tables.iter().position(|(key, _)| *key == (h, tj)) {
                Some(at) => &d_tables[at].1,
                None => {
                    d_tables.push(((h, tj), a.distance_sums(xs)));
                    &d_tables[d_tables.len() - 1].1
                }
            };
            let rows = out.get_mut(ti * g.block..ti * g.block + h).unwrap_or(&mut []);
            a.add_tile_gemv(c, xs, d, rows);
        }
    }
}

impl BasisAxes {
    /// For each row `i` of the tile: `Σ_j xs[j] · d(i, j)`.
    fn distance_sums(&self, xs: &[f32]) -> Vec<f32> {
        self.rows
            .iter()
            .map(|[y2, _, _]| xs.iter().zip(&self.cols).map(|(x, [x2, _, _])| x * (x2 + y2).sqrt()).sum())
            .collect()
    }

    /// `rows[i] += Σ_j xs[j] · Σ_k c_k f_k(i, j)` for the tile's rows, with `d` from
    /// [`distance_sums`](Self::distance_sums).
    fn add_tile_gemv(&self, c: &BasisCoeffs, xs: &[f32], d: &[f32], rows: &mut [f32]) {
        let c = c.map(f16::to_f32);
        let (mut s1, mut sx2, mut scx, mut sc2x) = (0f32, 0f32, 0f32, 0f32);
        for (x, [x2, cx, c2x]) in xs.iter().zip(&self.cols) {
            s1 += x;
            sx2 += x * x2;
            scx += x * cx;
            sc2x += x * c2x;
        }
        // f = [1, d, x² + y², cx, cy, c2x, c2y, cx·cy], grouped by what varies with the row.
        let fixed = c[0] * s1 + c[2] * sx2 + c[3] * scx + c[5] * sc2x;
        let (per_y2, per_cy, per_c2y) = (c[2] * s1, c[4] * s1 + c[7] * scx, c[6] * s1);
        for ((o, [y2, cy, c2y]), d) in rows.iter_mut().zip(&self.rows).zip(d) {
            *o += fixed + c[1] * d + per_y2 * y2 + per_cy * cy + per_c2y * c2y;
        }
    }
}
