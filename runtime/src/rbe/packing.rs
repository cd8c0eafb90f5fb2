//! Bit packing of codes (LSB first, each group starting on a byte) and dequantization.

/// Packs `codes` (each < 2^bits) into `out`, least significant bits first.
/// `out` must hold `ceil(codes.len() * bits / 8)` bytes; it is overwritten.
pub fn pack_codes(codes: &[u8], bits: u8, out: &mut [u8]) {
    out.fill(0);
    let mask = ((1u16 << bits) - 1) as u8;
    let bits = bits as usize;
    for (j, &q) in codes.iter().enumerate() {
        let bit = j * bits;
        let (byte, shift) = (bit / 8, bit % 8);
        let v = ((q & mask) as u16) << shift;
        if let Some(b) = out.get_mut(byte) {
            *b |= v as u8;
        }
        if shift + bits > 8 {
            if let Some(b) = out.get_mut(byte + 1) {
                *b |= (v >> 8) as u8;
            }
        }
    }
}

/// The `j`-th code of a packed group (0 past the end of `packed`).
pub fn read_code(packed: &[u8], bits: u8, j: usize) -> u8 {
    let bit = j * bits as usize;
    let (byte, shift) = (bit / 8, bit % 8);
    let lo = packed.get(byte).copied().unwrap_or(0) as u16;
    let hi = packed.get(byte + 1).copied().unwrap_or(0) as u16;
    (((lo | (hi << 8)) >> shift) & ((1u16 << bits) - 1)) as u8
}

/// The value a code stands for: `step * (q - zero_point) + offset`. Every reconstruction, in the
/// decoder and in the encoder, goes through this one expression.
#[inline(always)]
pub fn dequant(q: u8, zero_point: i32, step: f32, offset: f32) -> f32 {
    step * (q as i32 - zero_point) as f32 + offset
}

/// Dequantizes `out.len()` packed codes into `out` (see [`dequant`]).
pub fn dequant_group(
    packed: &[u8],
    bits: u8,
    zero_point: i32,
    step: f32,
    offset: f32,
    out: &mut [f32],
) {
    match bits {
        8 => {
            for (o, &q) in out.iter_mut().zip(packed) {
                *o = dequant(q, zero_point, step, offset);
            }
        }
        4 => {
            for (pair, &b) in out.chunks_mut(2).zip(packed) {
                pair[0] = dequant(b & 15, zero_point, step, offset);
                if let Some(o) = pair.get_mut(1) {
                    *o = dequant(b >> 4, zero_point, step, offset);
                }
            }
        }
        2 => {
            for (quad, &b) in out.chunks_mut(4).zip(packed) {
                for (k, o) in quad.iter_mut().enumerate() {
                    *o = dequant((b >> (2 * k)) & 3, zero_point, step, offset);
                }
            }
        }
        _ => {
            // 8 codes fill exactly `bits` bytes: read them as one little-endian word.
            let b = bits as usize;
            let mask = (1u64 << b) - 1;
            let done = out.len() / 8 * 8;
            let mut eights = out.chunks_exact_mut(8);
            for (o8, p) in (&mut eights).zip(packed.chunks_exact(b)) {
                let mut word = [0u8; 8];
                word[..b].copy_from_slice(p);
                let word = u64::from_le_bytes(word);
                for (k, o) in o8.iter_mut().enumerate() {
                    *o = dequant(((word >> (k * b)) & mask) as u8, zero_point, step, offset);
                }
            }
            for (j, o) in eights.into_remainder().iter_mut().enumerate() {
                *o = dequant(read_code(packed, bits, done + j), zero_point, step, offset);
            }
        }
    }
}

/// Zero point of the codes: `2^(bits-1)` for a symmetric grid (codes stand for
/// `-2^(bits-1) ..= 2^(bits-1) - 1` steps), 0 for an asymmetric one (offset carries the minimum).
pub fn zero_point(bits: u8, asymmetric: bool) -> i32 {
    if asymmetric {
        0
    } else {
        1 << (bits - 1)
    }
}

/// Bytes of `n` codes of `bits` bits packed.
pub fn packed_len(n: usize, bits: u8) -> usize {
    (n * bits as usize).div_ceil(8)
}

/// Step of a group: the row scale times the group's `scale_bits`-bit scale code, read as
/// unsigned in asymmetric mode and as signed (offset by `2^(scale_bits-1)`) in symmetric mode.
#[inline(always)]
pub fn group_step(row_scale: f32, code: u8, asymmetric: bool, scale_bits: u8) -> f32 {
    if asymmetric {
        row_scale * code as f32
    } else {
        row_scale * (code as i32 - (1 << (scale_bits - 1))) as f32
    }
}

/// Offset of a group in asymmetric mode: minus the row's minimum scale times the group's code.
#[inline(always)]
pub fn group_offset(row_min: f32, code: u8) -> f32 {
    -(row_min * code as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_then_read_every_width() {
        for bits in 2..=8u8 {
            let codes: Vec<u8> = (0..37u32)
                .map(|j| ((j * 7 + 3) % (1 << bits)) as u8)
                .collect();
            let mut packed = vec![0u8; (codes.len() * bits as usize).div_ceil(8)];
            pack_codes(&codes, bits, &mut packed);
            let back: Vec<u8> = (0..codes.len())
                .map(|j| read_code(&packed, bits, j))
                .collect();
            assert_eq!(back, codes, "bits {bits}");
            let mut out = vec![0f32; codes.len()];
            dequant_group(&packed, bits, 1, 0.5, 0.25, &mut out);
            for (o, &q) in out.iter().zip(&codes) {
                assert_eq!(*o, dequant(q, 1, 0.5, 0.25), "bits {bits}");
            }
        }
    }
}
