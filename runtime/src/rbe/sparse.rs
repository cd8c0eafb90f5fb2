//! Sparse mode: per tile, a few quantized coefficients of the orthonormal 2-D DCT-II; decode is
//! the inverse DCT of the kept coefficients.
//!
//! Body: f32 `step` (one uniform step for every coefficient of the tensor, the rate–distortion
//! optimum for squared error), then per tile, in tile-row-major order: varint `n` kept
//! coefficients, then `n` pairs (varint position gap, varint zigzag level). Position =
//! `u * w + v` for frequency `u` along rows and `v` along columns, ascending; the first gap is
//! the position, later ones are `pos - prev - 1`. Value = `step * level` ([`level_value`]).

use bytes::Bytes;

use super::dct::DctTable;
use super::geometry::{Geometry, MAX_BLOCK};
use super::reader::{put_varint, Reader};
use crate::error::{Error, Result};

/// The header's `bits` field of a sparse tensor (levels are varints; this is fixed).
pub const SPARSE_BITS: u8 = 8;

/// Largest |level| (levels stay exact in f32).
const MAX_LEVEL: u32 = 1 << 24;

/// One tile's kept coefficients, as the encoder produces them.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseTile {
    /// Positions `u * w + v`, strictly ascending, each < `h * w`.
    pub positions: Vec<u32>,
    /// One nonzero level per position, |level| <= 2^24.
    pub levels: Vec<i32>,
}

/// The value of a quantized coefficient (the one expression the encoder and decoder share).
#[inline(always)]
pub fn level_value(step: f32, level: i32) -> f32 {
    step * level as f32
}

fn zigzag(l: i32) -> u32 {
    ((l << 1) ^ (l >> 31)) as u32
}

fn unzigzag(z: u32) -> i32 {
    (z >> 1) as i32 ^ -((z & 1) as i32)
}

/// A validated sparse body.
#[derive(Clone, Debug)]
pub(crate) struct Sparse {
    pub(crate) stream: Bytes,
    step: f32,
    /// Byte offset of each tile in `stream`.
    offsets: Vec<usize>,
    /// Number of kept coefficients over all tiles.
    kept: usize,
    tables: Vec<DctTable>,
}

/// Serialises a step and tiles into a body (validated afterwards by [`Sparse::new`]).
pub(crate) fn write_stream(g: &Geometry, step: f32, tiles: &[SparseTile]) -> Result<Vec<u8>> {
    if tiles.len() != g.tiles() {
        return Err(Error::Container(format!(
            "sparse tensor: {} tiles, want {}",
            tiles.len(),
            g.tiles()
        )));
    }
    let mut out = step.to_le_bytes().to_vec();
    for t in tiles {
        if t.positions.len() != t.levels.len() || t.positions.len() > u32::MAX as usize {
            return Err(Error::Container(
                "sparse tile: positions and levels differ".into(),
            ));
        }
        put_varint(&mut out, t.positions.len() as u32);
        let mut prev: Option<u32> = None;
        for (&p, &l) in t.positions.iter().zip(&t.levels) {
            let gap = match prev {
                None => p,
                Some(q) if p > q => p - q - 1,
                Some(_) => {
                    return Err(Error::Container(
                        "sparse tile: positions not ascending".into(),
                    ))
                }
            };
            put_varint(&mut out, gap);
            put_varint(&mut out, zigzag(l));
            prev = Some(p);
        }
    }
    Ok(out)
}

/// Reads one tile at the reader's position, calling `each(position, level)` per coefficient;
/// checks positions are ascending and < `area`, and levels nonzero and in range.
fn read_tile(r: &mut Reader, area: usize, mut each: impl FnMut(usize, i32)) -> Result<usize> {
    let n = r.varint("sparse count")? as usize;
    if n > area {
        return Err(Error::Container(format!(
            "sparse tile keeps {n} of {area} coefficients"
        )));
    }
    let mut pos = 0usize;
    for k in 0..n {
        let gap = r.varint("sparse position")? as usize;
        pos = if k == 0 { gap } else { pos + gap + 1 };
        let z = r.varint("sparse level")?;
        if pos >= area || z == 0 || z > 2 * MAX_LEVEL {
            return Err(Error::Container(
                "sparse tile: position or level out of range".into(),
            ));
        }
        each(pos, unzigzag(z));
    }
    Ok(n)
}

impl Sparse {
    /// Validates a whole body against the geometry; it must end exactly at the end.
    pub(crate) fn new(g: &Geometry, stream: Bytes) -> Result<Self> {
        if g.bits != SPARSE_BITS {
            return Err(Error::Container(format!(
                "sparse tensor: bits {} != 8",
                g.bits
            )));
        }
        let mut r = Reader::new(&stream);
        let step = r.f32("sparse step")?;
        if !step.is_finite() {
            return Err(Error::Container("sparse tensor: non-finite step".into()));
        }
        if g.tiles() > r.remaining() {
            return Err(Error::Container(
                "sparse tensor: fewer bytes than tiles".into(),
            ));
        }
        let mut offsets = Vec::with_capacity(g.tiles());
        let mut kept = 0;
        for t in 0..g.tiles() {
            offsets.push(r.position());
            let area = g.tile_height(t / g.tile_cols()) * g.tile_width(t % g.tile_cols());
            kept += read_tile(&mut r, area, |_, _| ())?;
        }
        if r.remaining() != 0 {
            return Err(Error::Container("sparse tensor: trailing bytes".into()));
        }
        let mut tables: Vec<DctTable> = Vec::new();
        for n in [g.block, g.rows % g.block, g.cols % g.block] {
            if n > 0 && !tables.iter().any(|t| t.len() == n) {
                tables.push(DctTable::new(n));
            }
        }
        Ok(Sparse {
            stream,
            step,
            offsets,
            kept,
            tables,
        })
    }

    /// Number of kept coefficients.
    pub(crate) fn kept(&self) -> usize {
        self.kept
    }

    fn table(&self, n: usize) -> Option<&DctTable> {
        self.tables.iter().find(|t| t.len() == n)
    }

    /// Decodes row `r` (< rows) into `out[..cols]`.
    pub(crate) fn decode_row(&self, g: &Geometry, r: usize, out: &mut [f32]) {
        out.fill(0.0);
        let ti = r / g.block;
        let i = r % g.block;
        let h = g.tile_height(ti);
        let Some(th) = self.table(h) else { return };
        let mut t = [0f32; MAX_BLOCK];
        for tj in 0..g.tile_cols() {
            let w = g.tile_width(tj);
            let (Some(tw), Some(&at)) = (self.table(w), self.offsets.get(ti * g.tile_cols() + tj))
            else {
                continue;
            };
            // t[v] = sum over kept (u, v) of value * C_h[u][i]
            t[..w].fill(0.0);
            let mut reader = Reader::new(self.stream.get(at..).unwrap_or(&[]));
            let parsed = read_tile(&mut reader, h * w, |pos, level| {
                t[pos % w] += level_value(self.step, level) * th.at(pos / w, i);
            });
            let Some(seg) = out.get_mut(tj * g.block..tj * g.block + w) else {
                continue;
            };
            if parsed.is_err() {
                continue; // cannot happen: the body was validated at construction
            }
            // row[j] = sum_v t[v] * C_w[v][j]
            for (v, &tv) in t[..w].iter().enumerate() {
                if tv != 0.0 {
                    for (o, c) in seg.iter_mut().zip(tw.freq(v)) {
                        *o += tv * c;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_round_trips() {
        for l in [
            0,
            1,
            -1,
            2,
            -2,
            63,
            -64,
            1 << 24,
            -(1 << 24),
            i32::MAX,
            i32::MIN,
        ] {
            assert_eq!(unzigzag(zigzag(l)), l);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
    }
}
