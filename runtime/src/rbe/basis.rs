//! The smooth RBE basis of a tile: 8 functions of normalised coordinates, evaluated one way only
//! (the encoder fits with it and reconstructs with it, the decoder decodes with it).

use std::f64::consts::PI;

use half::f16;

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
            [(t * t) as f32, (PI * t).cos() as f32, (2.0 * PI * t).cos() as f32]
        })
        .collect()
}

impl BasisAxes {
    /// Tables for a tile of `h` rows and `w` columns.
    pub fn new(h: usize, w: usize) -> Self {
        BasisAxes { h, w, cols: axis(w), rows: axis(h) }
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
