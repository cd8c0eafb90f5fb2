//! Sparse mode: per tile, a few quantized coefficients of the orthonormal 2-D DCT-II; decode is
//! the inverse DCT of the kept coefficients.
//!
//! Tile stream (tiles in tile-row-major order), per tile: varint `n` kept coefficients; if
//! `n > 0`: f32 step, `n` varint position gaps (position = `u * w + v` for frequency `u` along
//! rows and `v` along columns, ascending; the first gap is the position, later ones are
//! `pos - prev - 1`), then the `n` codes packed at `bits` bits (symmetric, value
//! `step * (q - 2^(bits-1))`).

use super::dct::DctTable;
use super::geometry::{Geometry, MAX_BLOCK};
use super::packing::{dequant, pack_codes, read_code, zero_point};
use super::reader::{put_varint, Reader};
use crate::error::{Error, Result};

/// One tile's kept coefficients, as the encoder produces them.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseTile {
    /// Quantization step of the tile's values.
    pub step: f32,
    /// Positions `u * w + v`, strictly ascending, each < `h * w`.
    pub positions: Vec<u32>,
    /// One code per position, each < `2^bits`.
    pub codes: Vec<u8>,
}

/// A validated sparse body.
#[derive(Clone, Debug)]
pub(crate) struct Sparse {
    pub(crate) stream: Vec<u8>,
    /// Byte offset of each tile in `stream`.
    offsets: Vec<usize>,
    /// Number of kept coefficients over all tiles.
    kept: usize,
    tables: Vec<DctTable>,
}

/// Serialises tiles into a stream (validating them).
pub(crate) fn write_stream(g: &Geometry, tiles: &[SparseTile]) -> Result<Vec<u8>> {
    if tiles.len() != g.tiles() {
        return Err(Error::Container(format!("sparse tensor: {} tiles, want {}", tiles.len(), g.tiles())));
    }
    let mut out = Vec::new();
    for t in tiles {
        if t.positions.len() != t.codes.len() || t.positions.len() > u32::MAX as usize {
            return Err(Error::Container("sparse tile: positions and codes differ".into()));
        }
        put_varint(&mut out, t.positions.len() as u32);
        if t.positions.is_empty() {
            continue;
        }
        out.extend_from_slice(&t.step.to_le_bytes());
        let mut prev: Option<u32> = None;
        for &p in &t.positions {
            let gap = match prev {
                None => p,
                Some(q) if p > q => p - q - 1,
                Some(_) => return Err(Error::Container("sparse tile: positions not ascending".into())),
            };
            put_varint(&mut out, gap);
            prev = Some(p);
        }
        let start = out.len();
        out.resize(start + g.packed_bytes(t.codes.len()), 0);
        pack_codes(&t.codes, g.bits, &mut out[start..]);
    }
    Ok(out)
}

/// One parsed tile header: where its codes are and how to read positions.
struct TileView<'a> {
    step: f32,
    gaps: Reader<'a>,
    codes: &'a [u8],
    n: usize,
}

/// Parses the tile at the reader's position, checking positions are ascending and < `area`.
/// Returns the tile with its gap reader positioned on the first gap.
fn parse_tile<'a>(r: &mut Reader<'a>, bytes: &'a [u8], bits: u8, area: usize) -> Result<TileView<'a>> {
    let n = r.varint("sparse count")? as usize;
    if n > area {
        return Err(Error::Container(format!("sparse tile keeps {n} of {area} coefficients")));
    }
    if n == 0 {
        return Ok(TileView { step: 0.0, gaps: Reader::new(&[]), codes: &[], n });
    }
    let step = r.f32("sparse step")?;
    if !step.is_finite() {
        return Err(Error::Container("sparse tile: non-finite step".into()));
    }
    let gaps_at = r.position();
    let mut pos: u64 = 0;
    for k in 0..n {
        let gap = r.varint("sparse position")? as u64;
        pos = if k == 0 { gap } else { pos + gap + 1 };
        if pos >= area as u64 {
            return Err(Error::Container("sparse tile: position out of the tile".into()));
        }
    }
    let gaps = Reader::new(bytes.get(gaps_at..r.position()).unwrap_or(&[]));
    let codes = r.take((n * bits as usize).div_ceil(8), "sparse codes")?;
    Ok(TileView { step, gaps, codes, n })
}

impl Sparse {
    /// Validates a whole stream against the geometry; the stream must end exactly at the end.
    pub(crate) fn new(g: &Geometry, stream: Vec<u8>) -> Result<Self> {
        if g.tiles() > stream.len() {
            return Err(Error::Container("sparse tensor: fewer bytes than tiles".into()));
        }
        let mut offsets = Vec::with_capacity(g.tiles());
        let mut kept = 0;
        {
            let mut r = Reader::new(&stream);
            for t in 0..g.tiles() {
                offsets.push(r.position());
                let area = g.tile_height(t / g.tile_cols()) * g.tile_width(t % g.tile_cols());
                kept += parse_tile(&mut r, &stream, g.bits, area)?.n;
            }
            if r.remaining() != 0 {
                return Err(Error::Container("sparse tensor: trailing bytes".into()));
            }
        }
        let mut tables: Vec<DctTable> = Vec::new();
        for n in [g.block, g.rows % g.block, g.cols % g.block] {
            if n > 0 && !tables.iter().any(|t| t.len() == n) {
                tables.push(DctTable::new(n));
            }
        }
        Ok(Sparse { stream, offsets, kept, tables })
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
        let zp = zero_point(g.bits, false);
        let (Some(th), mut t) = (self.table(h), [0f32; MAX_BLOCK]) else { return };
        for tj in 0..g.tile_cols() {
            let w = g.tile_width(tj);
            let (Some(tw), Some(&at)) = (self.table(w), self.offsets.get(ti * g.tile_cols() + tj)) else {
                continue;
            };
            let bytes = self.stream.get(at..).unwrap_or(&[]);
            let Ok(mut tile) = parse_tile(&mut Reader::new(bytes), bytes, g.bits, h * w) else {
                continue;
            };
            // t[v] = sum over kept (u, v) of value * C_h[u][i]
            t[..w].fill(0.0);
            let mut pos = 0usize;
            for k in 0..tile.n {
                let gap = tile.gaps.varint("gap").unwrap_or(0) as usize;
                pos = if k == 0 { gap } else { pos + gap + 1 };
                let (u, v) = (pos / w, pos % w);
                let value = dequant(read_code(tile.codes, g.bits, k), zp, tile.step, 0.0);
                t[v] += value * th.at(u, i);
            }
            // row[j] = sum_v t[v] * C_w[v][j]
            let Some(seg) = out.get_mut(tj * g.block..tj * g.block + w) else { continue };
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
