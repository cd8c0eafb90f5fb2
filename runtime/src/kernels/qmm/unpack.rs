//! Portable unpacking of bit-packed codes (least significant bits first): the reference the
//! SIMD unpackers are tested against, and the path for CPUs without them.

/// Writes the first `out.len()` codes of `packed` (`bits` wide, 1..=8) into `out`; codes past
/// the end of `packed` read as 0.
pub fn unpack_codes(packed: &[u8], bits: u8, out: &mut [u8]) {
    let b = bits as usize;
    let mask = (1u64 << b) - 1;
    // 8 codes fill exactly `b` bytes: read them as one little-endian word.
    for (k, o8) in out.chunks_mut(8).enumerate() {
        let src = packed.get(k * b..).unwrap_or(&[]);
        // The codes take only the word's low `8 b` bits, so a whole word may be read wherever
        // 8 bytes remain (no variable-length copy).
        let word = match src.first_chunk::<8>() {
            Some(w) => u64::from_le_bytes(*w),
            None => {
                let n = src.len().min(b);
                let mut word = [0u8; 8];
                word[..n].copy_from_slice(&src[..n]);
                u64::from_le_bytes(word)
            }
        };
        for (j, o) in o8.iter_mut().enumerate() {
            *o = ((word >> (j * b)) & mask) as u8;
        }
    }
}

/// Writes `code - bias` as f32 for the first `out.len()` codes of `packed`.
pub fn unpack_f32(packed: &[u8], bits: u8, bias: i32, out: &mut [f32]) {
    let mut codes = [0u8; 64];
    for (k, o) in out.chunks_mut(codes.len()).enumerate() {
        let at = k * codes.len() * bits as usize / 8;
        let c = &mut codes[..o.len()];
        unpack_codes(packed.get(at..).unwrap_or(&[]), bits, c);
        for (v, &q) in o.iter_mut().zip(c.iter()) {
            *v = (q as i32 - bias) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-by-bit packing, written independently of the word trick above.
    fn pack(codes: &[u8], bits: u8) -> Vec<u8> {
        let mut out = vec![0u8; (codes.len() * bits as usize).div_ceil(8)];
        for (j, &q) in codes.iter().enumerate() {
            for i in 0..bits as usize {
                let bit = j * bits as usize + i;
                out[bit / 8] |= ((q >> i) & 1) << (bit % 8);
            }
        }
        out
    }

    #[test]
    fn unpack_inverts_bitwise_packing_for_every_width_and_length() {
        for bits in 1..=8u8 {
            for n in [1usize, 7, 8, 9, 31, 32, 33, 100] {
                let codes: Vec<u8> = (0..n)
                    .map(|j| ((j * 37 + 11) % (1 << bits)) as u8)
                    .collect();
                let packed = pack(&codes, bits);
                let mut back = vec![0u8; n];
                unpack_codes(&packed, bits, &mut back);
                assert_eq!(back, codes, "bits {bits} n {n}");
                let mut f = vec![0f32; n];
                unpack_f32(&packed, bits, 3, &mut f);
                for (v, &q) in f.iter().zip(&codes) {
                    assert_eq!(*v, q as f32 - 3.0, "bits {bits} n {n}");
                }
            }
        }
    }

    #[test]
    fn codes_past_the_end_read_as_zero() {
        let mut out = [9u8; 4];
        unpack_codes(&[0xff], 4, &mut out);
        assert_eq!(out, [15, 15, 0, 0]);
    }
}
