//! Tile and group geometry of an RBE tensor: where every tile, group and code byte lives.

/// Smallest code width, in bits.
pub const MIN_BITS: u8 = 2;
/// Largest code width, in bits.
pub const MAX_BITS: u8 = 8;
/// Smallest quantization group.
pub const MIN_GROUP: usize = 16;
/// Largest quantization group.
pub const MAX_GROUP: usize = 256;
/// Smallest tile side.
pub const MIN_BLOCK: usize = 32;
/// Largest tile side.
pub const MAX_BLOCK: usize = 256;

/// Shape and cutting of a compressed matrix: `rows x cols`, tiles of `block x block` (edge tiles
/// cropped), quantization groups of `group` consecutive values along a row (the last group of a
/// row is shorter when `group` does not divide `cols`), codes of `bits` bits.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Number of output rows.
    pub rows: usize,
    /// Length of each row.
    pub cols: usize,
    /// Tile side.
    pub block: usize,
    /// Quantization group length along a row.
    pub group: usize,
    /// Code width in bits (2..=8).
    pub bits: u8,
}

impl Geometry {
    /// Validates the knobs: rows and cols >= 1 and < 2^32, bits in 2..=8, group in 16..=256 and a
    /// multiple of 8, block in 32..=256 and a multiple of group (so no group straddles a tile).
    pub fn new(
        rows: usize,
        cols: usize,
        block: usize,
        group: usize,
        bits: u8,
    ) -> std::result::Result<Self, String> {
        if !(MIN_BITS..=MAX_BITS).contains(&bits) {
            return Err(format!(
                "bits must be in {MIN_BITS}..={MAX_BITS}, got {bits}"
            ));
        }
        if !(MIN_GROUP..=MAX_GROUP).contains(&group) || !group.is_multiple_of(8) {
            return Err(format!(
                "group must be a multiple of 8 in {MIN_GROUP}..={MAX_GROUP}, got {group}"
            ));
        }
        if !(MIN_BLOCK..=MAX_BLOCK).contains(&block) {
            return Err(format!(
                "block must be in {MIN_BLOCK}..={MAX_BLOCK}, got {block}"
            ));
        }
        if !block.is_multiple_of(group) {
            return Err(format!("group {group} must divide block {block}"));
        }
        if rows == 0 || cols == 0 || rows > u32::MAX as usize || cols > u32::MAX as usize {
            return Err(format!("bad matrix shape {rows} x {cols}"));
        }
        Ok(Geometry {
            rows,
            cols,
            block,
            group,
            bits,
        })
    }

    /// Number of weights.
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// Always false: a geometry has at least one weight (kept for the `len` convention).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Number of tile rows.
    pub fn tile_rows(&self) -> usize {
        self.rows.div_ceil(self.block)
    }

    /// Number of tile columns.
    pub fn tile_cols(&self) -> usize {
        self.cols.div_ceil(self.block)
    }

    /// Number of tiles.
    pub fn tiles(&self) -> usize {
        self.tile_rows() * self.tile_cols()
    }

    /// Height of the tiles in tile row `ti` (cropped at the bottom edge).
    pub fn tile_height(&self, ti: usize) -> usize {
        self.block.min(self.rows - ti * self.block)
    }

    /// Width of the tiles in tile column `tj` (cropped at the right edge).
    pub fn tile_width(&self, tj: usize) -> usize {
        self.block.min(self.cols - tj * self.block)
    }

    /// Number of groups in a row.
    pub fn groups_per_row(&self) -> usize {
        self.cols.div_ceil(self.group)
    }

    /// Number of values in group `g` of a row.
    pub fn group_len(&self, g: usize) -> usize {
        self.group.min(self.cols - g * self.group)
    }

    /// Bytes of `n` codes packed (each group starts on a byte).
    pub fn packed_bytes(&self, n: usize) -> usize {
        super::packing::packed_len(n, self.bits)
    }

    /// Bytes of one row's packed codes.
    pub fn row_bytes(&self) -> usize {
        let full = self.cols / self.group;
        let tail = self.cols % self.group;
        full * self.packed_bytes(self.group) + self.packed_bytes(tail)
    }
}
