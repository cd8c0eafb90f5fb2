//! The orthonormal DCT-II of sparse mode: one cosine table per size, used by the encoder's
//! forward transform and by the decoder's inverse.

use std::f64::consts::PI;

/// The `n x n` orthonormal DCT-II matrix, row `k` = frequency `k`:
/// `C[k][i] = a_k cos(pi (2i + 1) k / 2n)`, `a_0 = sqrt(1/n)`, `a_k = sqrt(2/n)`.
/// Computed in f64, stored in f32.
#[derive(Clone, Debug)]
pub struct DctTable {
    n: usize,
    c: Vec<f32>,
}

impl DctTable {
    /// The table for length `n`.
    pub fn new(n: usize) -> Self {
        let mut c = Vec::with_capacity(n * n);
        for k in 0..n {
            let a = if k == 0 {
                (1.0 / n as f64).sqrt()
            } else {
                (2.0 / n as f64).sqrt()
            };
            for i in 0..n {
                c.push((a * (PI * (2 * i + 1) as f64 * k as f64 / (2 * n) as f64).cos()) as f32);
            }
        }
        DctTable { n, c }
    }

    /// Transform length.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Always false for a built table (kept for the `len` convention).
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Basis vector of frequency `k` (length `n`); empty if `k >= n`.
    pub fn freq(&self, k: usize) -> &[f32] {
        self.c.get(k * self.n..(k + 1) * self.n).unwrap_or(&[])
    }

    /// `C[k][i]` (0 out of range).
    pub fn at(&self, k: usize, i: usize) -> f32 {
        if i < self.n {
            self.c.get(k * self.n + i).copied().unwrap_or(0.0)
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_orthonormal() {
        for n in [3usize, 32, 100] {
            let t = DctTable::new(n);
            for a in 0..n {
                for b in 0..n {
                    let dot: f64 = t
                        .freq(a)
                        .iter()
                        .zip(t.freq(b))
                        .map(|(x, y)| *x as f64 * *y as f64)
                        .sum();
                    let want = if a == b { 1.0 } else { 0.0 };
                    assert!((dot - want).abs() < 1e-5, "n {n} ({a},{b}) {dot}");
                }
            }
        }
    }
}
