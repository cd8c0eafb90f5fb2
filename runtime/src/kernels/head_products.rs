//! The two products of one attention head, `Q·Kᵀ` and `P·V`: the left operand read in place a
//! tile of [`TILE_ROWS`] rows at a time, the right one packed in panels of [`LANES`] columns,
//! so that a tile's sums stay in vector registers (a zmm a row with AVX-512, two ymm with
//! AVX2) while the depth runs. Each tile has its own depth and width, so a causal head
//! multiplies only the keys its rows can see.

use ndarray::{s, ArrayView2};

use super::buffers::{recycle, take};
use super::isa::Isa;
use crate::error::{op_err, Result};

/// Rows of a tile.
pub const TILE_ROWS: usize = 4;
/// Columns of a panel: one zmm register, two ymm.
const LANES: usize = 16;

/// A right operand, `depth × cols`, as panels of [`LANES`] columns: panel `p` holds `depth`
/// lines of columns `p·LANES ..`, zero past the last column.
pub struct Panels {
    data: Vec<f32>,
    depth: usize,
    cols: usize,
}

impl Panels {
    /// Packs `b` (`depth × cols`, any strides; `Kᵀ` is read a key at a time, `V` a row at a
    /// time).
    pub fn pack(b: ArrayView2<f32>) -> Self {
        let (depth, cols) = b.dim();
        let panel_len = depth * LANES;
        let mut data = take(cols.div_ceil(LANES) * panel_len);
        if cols % LANES != 0 {
            data[cols / LANES * panel_len..].fill(0.0);
        }
        let zeros = vec![0.0; depth];
        for (panel, first) in data.chunks_exact_mut(panel_len.max(1)).zip((0..cols).step_by(LANES)) {
            let lines = panel.as_chunks_mut::<LANES>().0;
            let part = b.slice(s![.., first..cols.min(first + LANES)]);
            let columns: Option<Vec<&[f32]>> = part.columns().into_iter().map(|c| c.to_slice()).collect();
            match columns {
                Some(columns) if depth > 1 => {
                    // Missing columns (past the last) read zeros.
                    let columns: [&[f32]; LANES] = std::array::from_fn(|l| columns.get(l).map_or(&zeros[..], |c| &c[..depth]));
                    for (x, line) in lines.iter_mut().enumerate() {
                        *line = std::array::from_fn(|l| columns[l][x]);
                    }
                }
                _ => {
                    for (line, row) in lines.iter_mut().zip(part.rows()) {
                        match row.to_slice() {
                            Some(row) => line[..row.len()].copy_from_slice(row),
                            None => line.iter_mut().zip(row).for_each(|(slot, v)| *slot = *v),
                        }
                    }
                }
            }
        }
        Panels { data, depth, cols }
    }

    /// The first `depth` lines of panel `p`.
    fn panel(&self, p: usize, depth: usize) -> &[[f32; LANES]] {
        self.data[p * self.depth * LANES..][..depth * LANES].as_chunks::<LANES>().0
    }
}

impl Drop for Panels {
    fn drop(&mut self) {
        recycle(std::mem::take(&mut self.data));
    }
}

/// The rows of a product, row-major, each padded to whole panels, and padded to whole tiles.
pub struct Rows {
    data: Vec<f32>,
    rows: usize,
    cols: usize,
    stride: usize,
}

impl Rows {
    /// Room for `rows × cols` values (unspecified until a product writes them).
    pub fn new(rows: usize, cols: usize) -> Self {
        let stride = cols.next_multiple_of(LANES);
        Rows { data: take(rows.next_multiple_of(TILE_ROWS) * stride), rows, cols, stride }
    }

    /// Row `i`'s values.
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        &mut self.data[i * self.stride..][..self.cols]
    }

    /// Row `i`'s values.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.stride..][..self.cols]
    }

    /// Every row's values.
    pub fn rows(&self) -> Vec<&[f32]> {
        (0..self.rows).map(|i| self.row(i)).collect()
    }
}

impl Drop for Rows {
    fn drop(&mut self) {
        recycle(std::mem::take(&mut self.data));
    }
}

/// `out = a·b` a tile at a time, into the first rows of `out`: tile `i` takes rows
/// `i·TILE_ROWS ..` of `a` (the last row repeats into the padding), their first `depths[i]`
/// values against the first `depths[i]` lines of `b`, and writes the panels that cover its
/// first `widths[i]` columns (the rest of its rows stay as they were). Computed at the level
/// `isa`.
pub fn tile_products(isa: Isa, a: &[&[f32]], depths: &[usize], widths: &[usize], b: &Panels, out: &mut Rows) -> Result<()> {
    let tiles = a.len().div_ceil(TILE_ROWS);
    let fits = a.len() <= out.rows
        && depths.len() == tiles
        && widths.len() == tiles
        && depths.iter().zip(a.chunks(TILE_ROWS)).all(|(&depth, rows)| depth <= b.depth && rows.iter().all(|row| depth <= row.len()))
        && widths.iter().all(|&width| width <= b.cols.min(out.cols));
    if !fits {
        return Err(op_err(format!(
            "head product of {} rows by {}x{} into {}x{}: tile depths or widths out of range",
            a.len(),
            b.depth,
            b.cols,
            out.rows,
            out.cols
        )));
    }
    let (stride, sums) = (out.stride, tile_kernel(isa));
    let tiles = out.data.chunks_exact_mut((TILE_ROWS * stride).max(1)).zip(depths.iter().zip(widths));
    for (i, (out, (&depth, &width))) in tiles.enumerate() {
        let tile: [&[f32]; TILE_ROWS] = std::array::from_fn(|r| &a[(i * TILE_ROWS + r).min(a.len() - 1)][..depth]);
        for p in 0..width.div_ceil(LANES) {
            for (r, sums) in sums(&tile, b.panel(p, depth)).iter().enumerate() {
                out[r * stride + p * LANES..][..LANES].copy_from_slice(sums);
            }
        }
    }
    Ok(())
}

/// A tile's sums against one panel: `TILE_ROWS` rows of `LANES` columns.
type Sums = [[f32; LANES]; TILE_ROWS];
/// The kernel of one tile and panel: the rows' first `panel.len()` values against the panel's
/// lines.
type TileKernel = fn(&[&[f32]; TILE_ROWS], &[[f32; LANES]]) -> Sums;

/// The tile kernel of the level `isa`, lowered to what the CPU supports.
fn tile_kernel(isa: Isa) -> TileKernel {
    #[cfg(target_arch = "x86_64")]
    match isa.supported() {
        // SAFETY: `supported` never exceeds what the CPU has.
        Isa::Avx512 => return |rows, panel| unsafe { x86::tile_sums_avx512(rows, panel) },
        Isa::Avx2 => return |rows, panel| unsafe { x86::tile_sums_avx2(rows, panel) },
        Isa::Portable => {}
    }
    let _ = isa;
    tile_sums
}

/// The portable tile kernel (a multiply and an add a step, as the compiler vectorizes it).
fn tile_sums(rows: &[&[f32]; TILE_ROWS], panel: &[[f32; LANES]]) -> Sums {
    let rows = rows.map(|row| &row[..panel.len()]);
    let mut acc = [[0.0; LANES]; TILE_ROWS];
    for (x, line) in panel.iter().enumerate() {
        for (acc, row) in acc.iter_mut().zip(&rows) {
            let v = row[x];
            for (acc, &y) in acc.iter_mut().zip(line) {
                *acc += v * y;
            }
        }
    }
    acc
}

/// The tile kernels with FMA: a row's sums in one zmm register or two ymm.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Sums, LANES, TILE_ROWS};

    /// [`super::tile_sums`] with AVX-512.
    ///
    /// # Safety
    /// The CPU has AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile_sums_avx512(rows: &[&[f32]; TILE_ROWS], panel: &[[f32; LANES]]) -> Sums {
        let rows = rows.map(|row| &row[..panel.len()]);
        let mut acc = [_mm512_setzero_ps(); TILE_ROWS];
        for (x, line) in panel.iter().enumerate() {
            let line = _mm512_loadu_ps(line.as_ptr());
            for (acc, row) in acc.iter_mut().zip(&rows) {
                *acc = _mm512_fmadd_ps(_mm512_set1_ps(row[x]), line, *acc);
            }
        }
        let mut sums = [[0.0; LANES]; TILE_ROWS];
        for (sums, acc) in sums.iter_mut().zip(acc) {
            _mm512_storeu_ps(sums.as_mut_ptr(), acc);
        }
        sums
    }

    /// [`super::tile_sums`] with AVX2 and FMA.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile_sums_avx2(rows: &[&[f32]; TILE_ROWS], panel: &[[f32; LANES]]) -> Sums {
        let rows = rows.map(|row| &row[..panel.len()]);
        let mut acc = [[_mm256_setzero_ps(); 2]; TILE_ROWS];
        for (x, line) in panel.iter().enumerate() {
            let (lo, hi) = (_mm256_loadu_ps(line.as_ptr()), _mm256_loadu_ps(line.as_ptr().add(8)));
            for (acc, row) in acc.iter_mut().zip(&rows) {
                let v = _mm256_set1_ps(row[x]);
                acc[0] = _mm256_fmadd_ps(v, lo, acc[0]);
                acc[1] = _mm256_fmadd_ps(v, hi, acc[1]);
            }
        }
        let mut sums = [[0.0; LANES]; TILE_ROWS];
        for (sums, acc) in sums.iter_mut().zip(acc) {
            _mm256_storeu_ps(sums.as_mut_ptr(), acc[0]);
            _mm256_storeu_ps(sums.as_mut_ptr().add(8), acc[1]);
        }
        sums
    }
}

/// `a·b'`, where `b'` is the first `a.ncols()` rows and `cols` columns of `b`, computed at
/// the level `isa`.
pub fn product(isa: Isa, a: ArrayView2<f32>, b: &Panels, cols: usize) -> Result<Rows> {
    let (rows, depth) = a.dim();
    let tiles = rows.div_ceil(TILE_ROWS);
    let mut out = Rows::new(rows, cols);
    with_rows(a, |a| tile_products(isa, a, &vec![depth; tiles], &vec![cols; tiles], b, &mut out))?;
    Ok(out)
}

/// Runs `f` on the rows of `a` as slices: in place when each row is contiguous, else of a
/// copy.
pub fn with_rows<R>(a: ArrayView2<f32>, f: impl FnOnce(&[&[f32]]) -> R) -> R {
    if let Some(rows) = a.into_outer_iter().map(|row| row.to_slice()).collect::<Option<Vec<_>>>() {
        return f(&rows);
    }
    let cols = a.ncols();
    let copy: Vec<f32> = a.iter().copied().collect();
    let rows: Vec<&[f32]> = (0..a.nrows()).map(|i| &copy[i * cols..(i + 1) * cols]).collect();
    f(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn filled(rows: usize, cols: usize, seed: usize) -> Array2<f32> {
        Array2::from_shape_fn((rows, cols), |(i, j)| ((i * 37 + j * 11 + seed * 5) % 23) as f32 / 7.0 - 1.6)
    }

    #[test]
    fn products_of_every_shape_match_the_plain_sums_at_every_level() {
        // Rows and columns around the tile and panel sizes; `b` larger than used, strided.
        for (rows, depth, cols) in [(1, 1, 1), (3, 5, 17), (4, 64, 16), (9, 7, 33), (32, 64, 128), (5, 130, 64)] {
            let a = filled(rows, depth, 1);
            let b_stored = filled(cols + 3, depth + 2, 2);
            let b = b_stored.t();
            let packed = Panels::pack(b);
            for isa in Isa::ALL.into_iter().filter(|&isa| isa <= Isa::detected()) {
                let c = product(isa, a.view(), &packed, cols).unwrap();
                assert_eq!(c.rows().len(), rows);
                for (i, row) in c.rows().into_iter().enumerate() {
                    assert_eq!(row.len(), cols);
                    for (j, got) in row.iter().enumerate() {
                        let want: f64 = (0..depth).map(|x| a[[i, x]] as f64 * b[[x, j]] as f64).sum();
                        assert!((*got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()), "{isa} {rows}x{depth}x{cols} ({i},{j}): {got} vs {want}");
                    }
                }
            }
        }
    }

    #[test]
    fn tiles_of_their_own_depth_and_width() {
        // 10 rows (3 tiles), each tile cut to its own depth and width, like a causal head.
        let a = filled(10, 40, 3);
        let b = filled(40, 37, 4);
        let packed = Panels::pack(b.view());
        let a_rows: Vec<&[f32]> = a.rows().into_iter().map(|r| r.to_slice().unwrap()).collect();
        let (depths, widths) = ([5, 40, 17], [3, 37, 20]);
        for isa in Isa::ALL.into_iter().filter(|&isa| isa <= Isa::detected()) {
            let mut out = Rows::new(10, 37);
            tile_products(isa, &a_rows, &depths, &widths, &packed, &mut out).unwrap();
            for (i, row) in out.rows().into_iter().enumerate() {
                let (depth, width) = (depths[i / TILE_ROWS], widths[i / TILE_ROWS]);
                for (j, got) in row.iter().enumerate().take(width) {
                    let want: f64 = (0..depth).map(|x| a[[i, x]] as f64 * b[[x, j]] as f64).sum();
                    assert!((*got as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()), "{isa} ({i},{j}): {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn an_empty_depth_gives_zeros_and_out_of_range_tiles_are_errors() {
        let packed = Panels::pack(filled(3, 20, 1).view());
        let c = product(Isa::current(), Array2::zeros((2, 0)).view(), &packed, 20).unwrap();
        assert!(c.rows().iter().all(|row| row.iter().all(|&v| v == 0.0)));
        assert!(product(Isa::current(), filled(2, 4, 2).view(), &packed, 20).is_err());
        assert!(product(Isa::current(), filled(2, 3, 2).view(), &packed, 21).is_err());
        let a = filled(2, 3, 2);
        let short: Vec<&[f32]> = a.rows().into_iter().map(|r| &r.to_slice().unwrap()[..2]).collect();
        assert!(tile_products(Isa::current(), &short, &[3], &[20], &packed, &mut Rows::new(2, 20)).is_err());
        assert!(tile_products(Isa::current(), &short, &[2, 2], &[20, 20], &packed, &mut Rows::new(2, 20)).is_err());
        assert!(tile_products(Isa::current(), &short, &[2], &[20], &packed, &mut Rows::new(1, 20)).is_err());
    }
}
