//! Runs of 16 packed codes of 1 to 8 bits (a row's group scale or offset codes) unpacked to
//! the 16 f32 lanes of a zmm register, in natural order or in the lane order of the VNNI dot
//! products ([`TRANSPOSE`]): one masked load, one shuffle, one shift, one and, one convert.
//! Needs AVX-512F and BW; callers check them at run time before calling.

use std::arch::x86_64::*;

use super::vnni::TRANSPOSE;

/// Which code each lane of [`Codes16::get`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lanes {
    /// Lane `l` holds code `l`.
    Natural,
    /// Lane `l` holds code `TRANSPOSE[l]`, as the VNNI dot products lay out their sums.
    Transposed,
}

/// The unpacker of one code width and lane order: its shuffle, shift and mask, loaded once.
pub(super) struct Codes16 {
    width: usize,
    pick: __m512i,
    shift: __m512i,
    mask: __m512i,
}

impl Codes16 {
    /// The unpacker of `width`-bit codes (clamped to 1..=8) into `lanes`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) fn new(width: u8, lanes: Lanes) -> Self {
        let width = width.clamp(1, 8);
        let (w, o) = (width as usize - 1, lanes as usize);
        // SAFETY: 64 readable bytes each; unaligned loads.
        let (pick, shift) = unsafe {
            (_mm512_loadu_si512(PICK[o][w].as_ptr().cast()), _mm512_loadu_si512(SHIFT[o][w].as_ptr().cast()))
        };
        Codes16 { width: width as usize, pick, shift, mask: _mm512_set1_epi32((1 << width) - 1) }
    }

    /// Codes `16k..16k + 16` of `src` (they fill bytes `2k·width..2(k + 1)·width`) minus
    /// `bias` (in every lane), as f32; bytes past the end of `src` read as 0. One masked load:
    /// no bound to branch on, no copy at the end of `src`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) fn get(&self, src: &[u8], k: usize, bias: __m512i) -> __m512 {
        let at = 2 * k * self.width;
        let n = src.len().saturating_sub(at).min(16);
        // SAFETY: the mask selects only bytes at..at + n, inside `src`; masked-off bytes are
        // neither read nor able to fault.
        let v = unsafe { _mm512_maskz_loadu_epi8((1u64 << n) - 1, src.as_ptr().wrapping_add(at).cast()) };
        let t = _mm512_shuffle_epi8(_mm512_broadcast_i32x4(_mm512_castsi512_si128(v)), self.pick);
        let q = _mm512_and_si512(_mm512_srlv_epi32(t, self.shift), self.mask);
        _mm512_cvtepi32_ps(_mm512_sub_epi32(q, bias))
    }
}

/// The code lane `l` holds in `lanes` order.
const fn code_of(lanes: usize, l: usize) -> usize {
    if lanes == Lanes::Natural as usize {
        l
    } else {
        TRANSPOSE[l] as usize
    }
}

/// Shuffles by lane order and width (1..=8): 32-bit lane `l` takes the two bytes holding its
/// code (of the 16 bytes every 128-bit lane holds a copy of; the rest zero).
const PICK: Pick = TABLES.0;
/// Shifts by lane order and width (1..=8): lane `l` moves its code down to bit 0.
const SHIFT: Shift = TABLES.1;

/// Shuffle bytes by lane order, then width.
type Pick = [[[u8; 64]; 8]; 2];
/// Shift counts by lane order, then width.
type Shift = [[[u32; 16]; 8]; 2];

/// [`PICK`] and [`SHIFT`], filled together.
const TABLES: (Pick, Shift) = {
    let (mut pick, mut shift) = ([[[0x80u8; 64]; 8]; 2], [[[0u32; 16]; 8]; 2]);
    let mut o = 0;
    while o < 2 {
        let mut b = 1;
        while b <= 8 {
            let mut l = 0;
            while l < 16 {
                let bit = code_of(o, l) * b;
                pick[o][b - 1][4 * l] = (bit / 8) as u8;
                if bit / 8 + 1 < 16 {
                    pick[o][b - 1][4 * l + 1] = (bit / 8 + 1) as u8;
                }
                shift[o][b - 1][l] = (bit % 8) as u32;
                l += 1;
            }
            b += 1;
        }
        o += 1;
    }
    (pick, shift)
};

#[cfg(test)]
mod tests {
    use super::super::unpack::unpack_codes;
    use super::*;

    #[test]
    fn matches_portable_for_every_width_order_and_tail() {
        if !crate::kernels::isa::avx512() {
            return;
        }
        let bytes: Vec<u8> = (0..64u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        for width in 1..=8u8 {
            for lanes in [Lanes::Natural, Lanes::Transposed] {
                for (at, k) in [(0usize, 0usize), (3, 1), (bytes.len() - 2 * width as usize, 0), (60, 0), (64, 0), (0, 5)] {
                    let mut want = [0u8; 16];
                    unpack_codes(bytes.get(at + 2 * k * width as usize..).unwrap_or(&[]), width, &mut want);
                    // SAFETY: AVX-512F and BW were detected at the top of the test.
                    let got: [f32; 16] = unsafe {
                        std::mem::transmute(Codes16::new(width, lanes).get(&bytes[at..], k, _mm512_set1_epi32(2)))
                    };
                    let want: Vec<f32> = (0..16).map(|l| want[code_of(lanes as usize, l)] as f32 - 2.0).collect();
                    assert_eq!(got.to_vec(), want, "width {width} {lanes:?} at {at} step {k}");
                }
            }
        }
    }
}
