//! AVX2 building blocks of the fused kernels: unpacking 32 codes of any width into one
//! register, the per-sub-block dot products (f32 and int8 activations), and sub-block decode.
//! Every function needs AVX2 and FMA; callers check both at run time before calling.

use std::arch::x86_64::*;

use super::matrix::SUB;

/// Shuffle and shift tables of the generic unpacker for width `B` (2, 3, 5, 6, 7): each 16-bit lane
/// picks the two bytes holding one code (codes 0..8 of its 128-bit half in `a`, codes 8..16
/// in `b`), and a multiply by `2^(16 - shift - B)` moves that code to the top bits.
struct Tables<const B: u8>;

impl<const B: u8> Tables<B> {
    const PICK_A: [u8; 32] = pick(B, 0);
    const PICK_B: [u8; 32] = pick(B, 8);
    const MUL_A: [u16; 16] = mul(B, 0);
    const MUL_B: [u16; 16] = mul(B, 8);
}

const fn pick(b: u8, first: usize) -> [u8; 32] {
    let mut t = [0u8; 32];
    let mut k = 0;
    while k < 16 {
        let j = first + k % 8;
        let byte = (j * b as usize / 8) as u8;
        t[2 * k] = byte;
        t[2 * k + 1] = byte + 1;
        k += 1;
    }
    t
}

const fn mul(b: u8, first: usize) -> [u16; 16] {
    let mut t = [0u16; 16];
    let mut k = 0;
    while k < 16 {
        let j = first + k % 8;
        let shift = (j * b as usize % 8) as u32;
        t[k] = 1 << (16 - shift - b as u32);
        k += 1;
    }
    t
}

/// Each byte twice, low half for codes 0..16 and high half for codes 16..32 of a 4-bit block.
const DUP4: [u8; 32] = {
    let mut t = [0u8; 32];
    let mut k = 0;
    while k < 16 {
        t[k] = (k / 2) as u8;
        t[16 + k] = (8 + k / 2) as u8;
        k += 1;
    }
    t
};

#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn load256(a: &[u8; 32]) -> __m256i {
    // SAFETY: 32 readable bytes; loadu has no alignment requirement; AVX2 is enabled here.
    unsafe { _mm256_loadu_si256(a.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn load128(a: &[u8; 16]) -> __m128i {
    // SAFETY: 16 readable bytes; unaligned load; SSE2 is implied by AVX2 (enabled here).
    unsafe { _mm_loadu_si128(a.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn load_i8(a: &[i8; 32]) -> __m256i {
    // SAFETY: 32 readable bytes; unaligned load; AVX2 is enabled on this function.
    unsafe { _mm256_loadu_si256(a.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn load128_i8(a: &[i8; 16]) -> __m128i {
    // SAFETY: 16 readable bytes; unaligned load; SSE2 is implied by AVX2 (enabled here).
    unsafe { _mm_loadu_si128(a.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn load_ps(a: &[f32; 8]) -> __m256 {
    // SAFETY: 32 readable bytes; unaligned load; AVX is implied by AVX2 (enabled here).
    unsafe { _mm256_loadu_ps(a.as_ptr()) }
}

#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn store_ps(a: &mut [f32; 8], v: __m256) {
    // SAFETY: 32 writable bytes behind a unique reference; unaligned store.
    unsafe { _mm256_storeu_ps(a.as_mut_ptr(), v) }
}

/// The 8 bytes of `c` from offset `o` as a little-endian word, zeros past the end of `c`
/// (`N` >= 8). With `N` and `o` known at compile time this is one load and at most one shift.
#[inline(always)]
fn le64<const N: usize>(c: &[u8; N], o: usize) -> u64 {
    if o >= N {
        return 0;
    }
    let end = (o + 8).min(N);
    let w = c
        .get(end.saturating_sub(8)..end)
        .and_then(|w| w.first_chunk::<8>())
        .copied();
    w.map_or(0, |w| u64::from_le_bytes(w) >> (8 * (o + 8 - end)))
}

/// `src` (at most `N` bytes of it) at the start of a zeroed array of `N` bytes.
#[inline]
pub(super) fn padded<const N: usize>(src: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (o, &b) in out.iter_mut().zip(src) {
        *o = b;
    }
    out
}

/// The 32 `B`-bit codes of one sub-block (`c`: its `N = 4 * B` bytes), in order, one per byte.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn unpack<const B: u8, const N: usize>(c: &[u8; N]) -> __m256i {
    const { assert!(N == 4 * B as usize && B >= 2 && B <= 8) };
    match B {
        8 => load256(&padded::<32>(c)),
        4 => {
            let v = load128(&padded::<16>(c));
            let t = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(v), load256(&DUP4));
            let lo = _mm256_and_si256(t, _mm256_set1_epi16(0x000f));
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(t), _mm256_set1_epi16(0x0f00));
            _mm256_or_si256(lo, hi)
        }
        _ => {
            // Codes 0..16 live in bytes 0..2B, codes 16..32 in bytes 2B..4B: one per lane.
            let half = 2 * B as usize;
            let word = |o: usize| le64(c, o) as i64;
            let v = _mm256_set_epi64x(word(half + 8), word(half), word(8), word(0));
            let a = _mm256_shuffle_epi8(v, load256(&Tables::<B>::PICK_A));
            let b = _mm256_shuffle_epi8(v, load256(&Tables::<B>::PICK_B));
            let a = _mm256_mullo_epi16(a, load256_u16(&Tables::<B>::MUL_A));
            let b = _mm256_mullo_epi16(b, load256_u16(&Tables::<B>::MUL_B));
            let a = _mm256_srl_epi16(a, _mm_cvtsi32_si128(16 - B as i32));
            let b = _mm256_srl_epi16(b, _mm_cvtsi32_si128(16 - B as i32));
            _mm256_packus_epi16(a, b)
        }
    }
}

/// The 32 4-bit codes of one sub-block (`c`: 16 bytes), even codes then odd codes (the low
/// then the high nibbles).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn unpack_even_odd4(c: &[u8; 16]) -> __m256i {
    let v = load128(c);
    let w = _mm256_set_m128i(_mm_srli_epi16::<4>(v), v);
    _mm256_and_si256(w, _mm256_set1_epi8(0x0f))
}

#[inline]
#[target_feature(enable = "avx2")]
fn load256_u16(a: &[u16; 16]) -> __m256i {
    // SAFETY: 32 readable bytes; unaligned load; AVX2 is enabled on this function.
    unsafe { _mm256_loadu_si256(a.as_ptr().cast()) }
}

/// The four groups of 8 bytes of `w` as f32: read as i8 when `SIGNED`, else as u8.
#[inline]
#[target_feature(enable = "avx2")]
fn widen<const SIGNED: bool>(w: __m256i) -> [__m256; 4] {
    let lo = _mm256_castsi256_si128(w);
    let hi = _mm256_extracti128_si256::<1>(w);
    let f = |h: __m128i| {
        _mm256_cvtepi32_ps(if SIGNED {
            _mm256_cvtepi8_epi32(h)
        } else {
            _mm256_cvtepu8_epi32(h)
        })
    };
    [
        f(lo),
        f(_mm_srli_si128::<8>(lo)),
        f(hi),
        f(_mm_srli_si128::<8>(hi)),
    ]
}

/// Unpacked codes minus `zp` (0..=128; the result must fit in i8 when `zp` > 0, so `SIGNED`
/// must be `zp > 0`).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn centre(w: __m256i, zp: i32) -> __m256i {
    _mm256_sub_epi8(w, _mm256_set1_epi8(zp as u8 as i8))
}

/// `acc + x * codes` lane-wise over one sub-block of centred codes (see [`centre`]).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn dot_f32<const SIGNED: bool>(w: __m256i, x: &[f32; SUB], acc: __m256) -> __m256 {
    let (x8, _) = x.as_chunks::<8>();
    let mut acc = acc;
    for (q, xk) in widen::<SIGNED>(w).into_iter().zip(x8) {
        acc = _mm256_fmadd_ps(q, load_ps(xk), acc);
    }
    acc
}

/// `x * (codes - zp)` lane-wise over one sub-block of 4-bit codes (`c`: 16 bytes; `x` in
/// [`Order::NibbleByte`](super::act::Order::NibbleByte)): each half of the bytes spread to
/// dword lanes by a shuffle, then each byte's low nibble and the whole byte converted and
/// multiplied, so no lane is shifted (on Zen 1 a ymm shift, like the widening load and the
/// convert, takes its one pipe two cycles). `zp` is subtracted only when `SIGNED`: from the
/// low nibble, and `17 * zp` from the byte (`(lo - zp) + 16 * (hi - zp)`).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn dot4_f32<const SIGNED: bool>(c: &[u8; 16], x: &[f32; SUB], zp: i32) -> __m256 {
    let (x8, _) = x.as_chunks::<8>();
    let v = _mm256_broadcastsi128_si256(load128(c));
    let (a, b) = (_mm256_shuffle_epi8(v, load256(&SPREAD4[0])), _mm256_shuffle_epi8(v, load256(&SPREAD4[1])));
    let value = |q: __m256i, zp: i32| _mm256_cvtepi32_ps(if SIGNED { _mm256_sub_epi32(q, _mm256_set1_epi32(zp)) } else { q });
    let nibble = _mm256_set1_epi32(0x0f);
    let acc = _mm256_mul_ps(value(_mm256_and_si256(a, nibble), zp), load_ps(&x8[0]));
    let acc = _mm256_fmadd_ps(value(_mm256_and_si256(b, nibble), zp), load_ps(&x8[1]), acc);
    let acc = _mm256_fmadd_ps(value(a, 17 * zp), load_ps(&x8[2]), acc);
    _mm256_fmadd_ps(value(b, 17 * zp), load_ps(&x8[3]), acc)
}

/// A pair of 4-bit sub-blocks' 16 i16 sums of two products each (`c`: their 32 code bytes;
/// low lanes: the first sub-block): the low nibbles against `x_even`, the high ones against
/// `x_odd` ([`Order::EvenOdd2`](super::act::Order::EvenOdd2)).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn pair_sums4(c: &[u8; 32], x_even: &[i8; 32], x_odd: &[i8; 32]) -> __m256i {
    let nibble = _mm256_set1_epi8(0x0f);
    let v = load256(c);
    let lo = _mm256_and_si256(v, nibble);
    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), nibble);
    _mm256_add_epi16(_mm256_maddubs_epi16(lo, load_i8(x_even)), _mm256_maddubs_epi16(hi, load_i8(x_odd)))
}

/// [`dot4_f32`]'s shuffles: bytes 0..8, then bytes 8..16, of a 16-byte sub-block (in both
/// 128-bit halves) into the low byte of dword lanes 0..8, the other bytes zero.
const SPREAD4: [[u8; 32]; 2] = {
    let mut t = [[0x80u8; 32]; 2];
    let mut k = 0;
    while k < 8 {
        t[0][4 * k] = k as u8;
        t[1][4 * k] = 8 + k as u8;
        k += 1;
    }
    t
};

/// `Σ codes * xq` as 8 partial i32 sums. Exact for codes < 128 (`B` <= 7); for `B` == 8 it
/// returns `Σ (codes - 128) * xq` (see [`dot_i8_bias`]). `|xq|` must be <= 127.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn dot_i8<const B: u8>(w: __m256i, xq: &[i8; SUB]) -> __m256i {
    let x = load_i8(xq);
    let p = if B == 8 {
        // Signed codes: |c| * (sign(c) * x) keeps every pair sum inside i16.
        let c = _mm256_xor_si256(w, _mm256_set1_epi8(i8::MIN));
        _mm256_maddubs_epi16(_mm256_abs_epi8(c), _mm256_sign_epi8(x, c))
    } else {
        _mm256_maddubs_epi16(w, x)
    };
    _mm256_madd_epi16(p, _mm256_set1_epi16(1))
}

/// What [`dot_i8`] subtracts from every code (its result is `Σ (codes - bias) * xq`).
pub(super) const fn dot_i8_bias(b: u8) -> i32 {
    if b == 8 {
        128
    } else {
        0
    }
}

/// Writes `step * codes + offset` for one sub-block of centred codes: a multiply then an add,
/// rounded like the scalar reference decoder.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn decode_block<const SIGNED: bool>(
    w: __m256i,
    step: f32,
    offset: f32,
    out: &mut [f32; SUB],
) {
    let (s, o) = (_mm256_set1_ps(step), _mm256_set1_ps(offset));
    let (out8, _) = out.as_chunks_mut::<8>();
    for (q, dst) in widen::<SIGNED>(w).into_iter().zip(out8) {
        store_ps(dst, _mm256_add_ps(_mm256_mul_ps(q, s), o));
    }
}

/// The unpacker of runs of 8 codes of one width (1 to 8 bits, chosen at run time; 8 codes
/// fill `width` bytes) into f32: its shuffle, shift and mask, loaded once per use.
#[derive(Clone, Copy)]
pub(super) struct Codes8 {
    width: usize,
    pick: __m256i,
    shift: __m256i,
    mask: __m256i,
}

impl Codes8 {
    /// The unpacker of `width`-bit codes (clamped to 1..=8).
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) fn new(width: u8) -> Self {
        let width = width.clamp(1, 8);
        let k = width as usize - 1;
        Codes8 {
            width: width as usize,
            pick: load256(&PICK8[k]),
            shift: load256_u32(&SHIFT8[k]),
            mask: _mm256_set1_epi32((1 << width) - 1),
        }
    }

    /// Codes `8k..8k + 8` of `src` minus `bias` (in every lane), as f32; codes past the end
    /// of `src` read as 0.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) fn get(&self, src: &[u8], k: usize, bias: __m256i) -> __m256 {
        let rest = src.get(k * self.width..).unwrap_or(&[]);
        let v = match rest.first_chunk::<16>() {
            Some(c) => load128(c),
            None => load128(&padded::<16>(rest)),
        };
        self.convert(v, bias)
    }

    /// Chunks `0..chunks` of `src` ([`get`](Self::get)) into `dst` as far as it reaches;
    /// returns their dot product with `w` as far as it reaches. Chunks whose 16-byte load
    /// stays inside `src` run first, in a loop with no other branch but the reach of `dst` and
    /// `w`; the rest after it.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn unpack_dot(&self, src: &[u8], bias: i32, chunks: usize, w: &[f32], dst: &mut [f32]) -> f32 {
        let bias = _mm256_set1_epi32(bias);
        let (dst8, _) = dst.as_chunks_mut::<8>();
        let (w8, _) = w.as_chunks::<8>();
        let fits = |k: usize| k * self.width + 16 <= src.len();
        let inside = if chunks == 0 || fits(chunks - 1) { chunks } else { (0..chunks).take_while(|&k| fits(k)).count() };
        let mut acc = _mm256_setzero_ps();
        let mut step = |k: usize, v: __m256| {
            if let Some(d) = dst8.get_mut(k) {
                store_ps(d, v);
            }
            if let Some(x) = w8.get(k) {
                acc = _mm256_fmadd_ps(v, load_ps(x), acc);
            }
        };
        for k in 0..chunks.min(inside) {
            // SAFETY: k < inside, so bytes k·width..k·width + 16 lie inside `src`; unaligned load.
            let v = unsafe { _mm_loadu_si128(src.as_ptr().add(k * self.width).cast()) };
            step(k, self.convert(v, bias));
        }
        for k in inside..chunks {
            step(k, self.get(src, k, bias));
        }
        hsum(acc)
    }

    /// The 8 codes at the start of `v`, minus `bias`, as f32.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn convert(&self, v: __m128i, bias: __m256i) -> __m256 {
        let t = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(v), self.pick);
        let q = _mm256_and_si256(_mm256_srlv_epi32(t, self.shift), self.mask);
        _mm256_cvtepi32_ps(_mm256_sub_epi32(q, bias))
    }
}

/// [`Codes8`]'s shuffles, widths 1..=8: 32-bit lane `j` takes the two bytes holding code `j`
/// (the rest zero).
const PICK8: [[u8; 32]; 8] = TABLES8.0;
/// [`Codes8`]'s shifts, widths 1..=8: lane `j` moves code `j` down to bit 0.
const SHIFT8: [[u32; 8]; 8] = TABLES8.1;

/// [`PICK8`] and [`SHIFT8`], filled together.
const TABLES8: ([[u8; 32]; 8], [[u32; 8]; 8]) = {
    let (mut pick, mut shift) = ([[0x80u8; 32]; 8], [[0u32; 8]; 8]);
    let mut b = 1;
    while b <= 8 {
        let mut j = 0;
        while j < 8 {
            let bit = j * b;
            pick[b - 1][4 * j] = (bit / 8) as u8;
            pick[b - 1][4 * j + 1] = (bit / 8 + 1) as u8;
            shift[b - 1][j] = (bit % 8) as u32;
            j += 1;
        }
        b += 1;
    }
    (pick, shift)
};

#[inline]
#[target_feature(enable = "avx2")]
fn load256_u32(a: &[u32; 8]) -> __m256i {
    // SAFETY: 32 readable bytes; unaligned load; AVX2 is enabled on this function.
    unsafe { _mm256_loadu_si256(a.as_ptr().cast()) }
}

/// The int8 quantization of one sub-block (see `act::quantize`: the same scale and the same
/// rounding, to nearest with ties to even): `max|x| / 127`, the values and their sum.
#[target_feature(enable = "avx2,fma")]
pub(super) fn quantize(x: &[f32; SUB]) -> (f32, [i8; SUB], i32) {
    let (x8, _) = x.as_chunks::<8>();
    let abs = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX));
    let mut v = [_mm256_setzero_ps(); 4];
    let mut m = _mm256_setzero_ps();
    for (v, x) in v.iter_mut().zip(x8) {
        *v = load_ps(x);
        m = _mm256_max_ps(m, _mm256_and_ps(*v, abs));
    }
    let m = _mm256_max_ps(m, _mm256_permute2f128_ps::<1>(m, m));
    let m = _mm256_max_ps(m, _mm256_shuffle_ps::<0b01_00_11_10>(m, m));
    let m = _mm256_max_ps(m, _mm256_shuffle_ps::<0b10_11_00_01>(m, m));
    let amax = _mm256_cvtss_f32(m);
    let inv = _mm256_set1_ps(if amax > 0.0 { 127.0 / amax } else { 0.0 });
    let [a, b, c, d] = v.map(|v| _mm256_cvtps_epi32(_mm256_mul_ps(v, inv)));
    // packs interleave 128-bit lanes: 32-bit groups come out as a0 b0 c0 d0 a1 b1 c1 d1.
    let packed = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let mut q = [0i8; SUB];
    // SAFETY: 32 writable bytes behind a unique reference; unaligned store.
    unsafe {
        _mm256_storeu_si256(
            q.as_mut_ptr().cast(),
            _mm256_permutevar8x32_epi32(packed, order),
        )
    };
    let s = _mm256_add_epi32(_mm256_add_epi32(a, b), _mm256_add_epi32(c, d));
    let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
    let s = _mm_hadd_epi32(s, s);
    let s = _mm_hadd_epi32(s, s);
    (amax / 127.0, q, _mm_cvtsi128_si32(s))
}

/// Sums of the 8 lanes of `a` and of `b`.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn hsum2(a: __m256, b: __m256) -> [f32; 2] {
    // Lanes a01 a23 b01 b23 | a45 a67 b45 b67; the halves added, then one more horizontal
    // add: a b a b.
    let h = _mm256_hadd_ps(a, b);
    let s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
    let s = _mm_hadd_ps(s, s);
    [_mm_cvtss_f32(s), _mm_cvtss_f32(_mm_movehdup_ps(s))]
}

/// Sum of the 8 lanes.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[cfg(test)]
mod tests {
    use super::super::unpack::unpack_codes;
    use super::*;

    #[test]
    fn simd_unpack_matches_portable_for_every_width_and_offset() {
        if !crate::kernels::isa::avx2() {
            return;
        }
        let bytes: Vec<u8> = (0..200u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        fn check<const B: u8, const N: usize>(bytes: &[u8]) {
            for at in [0usize, 1, 5, bytes.len() - 40, bytes.len() - N] {
                let mut want = [0u8; SUB];
                unpack_codes(&bytes[at..], B, &mut want);
                let c: &[u8; N] = bytes[at..].first_chunk().unwrap();
                // SAFETY: AVX2 and FMA were detected at the top of the test.
                let got: [u8; SUB] = unsafe { std::mem::transmute(unpack::<B, N>(c)) };
                assert_eq!(got, want, "bits {B} at {at}");
            }
            for at in [0usize, 7, bytes.len() - 16, bytes.len() - 5] {
                let mut want = [0u8; 8];
                unpack_codes(&bytes[at..], B, &mut want);
                // SAFETY: AVX2 and FMA were detected at the top of the test.
                let got: [f32; 8] = unsafe {
                    std::mem::transmute(Codes8::new(B).get(&bytes[at..], 0, _mm256_set1_epi32(1)))
                };
                let want: Vec<f32> = want.iter().map(|&q| q as f32 - 1.0).collect();
                assert_eq!(got.to_vec(), want, "codes8 bits {B} at {at}");
            }
        }
        check::<2, 8>(&bytes);
        check::<3, 12>(&bytes);
        check::<4, 16>(&bytes);
        check::<5, 20>(&bytes);
        check::<6, 24>(&bytes);
        check::<7, 28>(&bytes);
        check::<8, 32>(&bytes);
        for at in [0usize, 3, bytes.len() - 16] {
            let mut natural = [0u8; SUB];
            unpack_codes(&bytes[at..], 4, &mut natural);
            let want: Vec<u8> = (0..SUB).map(|k| natural[(2 * k) % SUB + k / 16]).collect();
            // SAFETY: AVX2 and FMA were detected at the top of the test.
            let got: [u8; SUB] = unsafe {
                std::mem::transmute(unpack_even_odd4(bytes[at..].first_chunk().unwrap()))
            };
            assert_eq!(got.to_vec(), want, "even-odd at {at}");
        }
    }
}
