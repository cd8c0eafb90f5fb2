//! The activation row, prepared once per call: per-group sums, and for the int8 path the row
//! quantized to int8 per sub-block (ggml's Q8 style: one f32 scale per 32 values).

use super::matrix::{QuantMatrix, SUB};

/// How the fused GEMV treats the activation row.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Activations {
    /// f32 activations: the result equals decode-then-multiply up to f32 rounding.
    #[default]
    Exact,
    /// Activations quantized to int8 per 32 values (symmetric, round to nearest), integer dot
    /// products per sub-block: faster; each activation moves by at most `max|x| / 254` of its
    /// 32-value block (see BENCHMARKS.md for the effect on a model's outputs).
    Int8,
}

/// Where each activation goes in the order the main loop reads them: the natural order, or
/// the even positions then the odd ones (what the 4-bit unpackers produce: low nibbles, then
/// high nibbles), per sub-block (the exact loops), per 2 (AVX2 int8) or 4 sub-blocks (AVX-512
/// int8).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum Order {
    /// Code order.
    Natural,
    /// Even codes, then odd codes, per sub-block.
    EvenOdd,
    /// [`Order::EvenOdd`] with the values changed (exact mode, 4-bit codes) so that a byte's
    /// low nibble and the whole byte can be multiplied in place of its two nibbles: each even
    /// value `x_e` becomes `x_e - x_o / 16` and each odd value `x_o` becomes `x_o / 16`, as
    /// `lo * (x_e - x_o / 16) + (lo + 16 * hi) * x_o / 16 = lo * x_e + hi * x_o`.
    NibbleByte,
    /// The even codes of 2 sub-blocks (16 each, sub-block after sub-block), then their odd
    /// codes.
    EvenOdd2,
    /// The even codes of 4 sub-blocks (16 each, sub-block after sub-block), then their odd
    /// codes.
    EvenOdd4,
}

/// Values per span the orders rearrange within.
const SPAN: usize = 4 * SUB;

/// Writes sub-block `s` (`block`, in code order) to its place in `out` (the whole row in
/// `order`, long enough for every span it has a value in).
pub(super) fn place<T: Copy>(block: &[T; SUB], order: Order, s: usize, out: &mut [T]) {
    let half = SUB / 2;
    let (even, odd) = match order {
        Order::Natural => {
            if let Some(o) = out
                .get_mut(s * SUB..)
                .and_then(|o| o.first_chunk_mut::<SUB>())
            {
                *o = *block;
            }
            return;
        }
        Order::EvenOdd | Order::NibbleByte => (s * SUB, s * SUB + half),
        Order::EvenOdd2 => {
            let at = s / 2 * 2 * SUB + s % 2 * half;
            (at, at + SUB)
        }
        Order::EvenOdd4 => {
            let at = s / 4 * SPAN + s % 4 * half;
            (at, at + SPAN / 2)
        }
    };
    let (head, tail) = out.split_at_mut(odd.min(out.len()));
    let e = head.get_mut(even..).and_then(|e| e.first_chunk_mut::<16>());
    if let (Some(e), Some(o)) = (e, tail.first_chunk_mut::<16>()) {
        for (t, (e, o)) in e.iter_mut().zip(o.iter_mut()).enumerate() {
            *e = block[2 * t];
            *o = block[2 * t + 1];
        }
    }
}

/// Sub-blocks the int8 values and scales are zero-padded to a multiple of (the AVX-512 loop's
/// step: its loads need no tail).
pub(super) const XQ_STEP: usize = 16;

/// The activation row of one GEMV call. Per-group vectors are zero-padded to a whole number of
/// [`SUB`] groups, so SIMD loops over a row's group codes need no tail.
pub(super) struct Prepared<'x> {
    /// The row as given.
    pub x: &'x [f32],
    /// Exact mode: the full groups of the row in the main loop's order (see [`Order`]).
    pub xk: std::borrow::Cow<'x, [f32]>,
    /// Per group (short last group included): the activation sum the offsets multiply:
    /// `Σ x` (exact mode), `Σ dx * xq` over the sub-blocks of a full group (int8 mode).
    pub sums: Vec<f32>,
    /// Int8 mode: `sums` over the full groups only (0 elsewhere), what the zero point
    /// multiplies; exact mode: all 0 (the zero point is subtracted before the products).
    pub zsums: Vec<f32>,
    /// Int8 mode: the quantized values of every full group, in the main loop's order,
    /// zero-padded past the short last group to whole [`XQ_STEP`]s of sub-blocks (else empty).
    pub xq: Vec<i8>,
    /// Int8 mode: the scale of each sub-block of `xq` (padded likewise with zeros).
    pub dx: Vec<f32>,
}

impl<'x> Prepared<'x> {
    /// Prepares `x` (`q.cols()` values) for `mode`, sub-blocks in `order`.
    pub fn new(q: &QuantMatrix, x: &'x [f32], mode: Activations, order: Order) -> Self {
        let full = q.full_groups() * q.group();
        let padded = q.groups_per_row().next_multiple_of(SUB);
        let int8 = mode == Activations::Int8 && q.has_sub_blocks();
        // Int8 mode replaces the full groups' sums below.
        let skip = if int8 { q.full_groups() } else { 0 };
        let mut sums = vec![0.0; padded];
        for (o, g) in sums.iter_mut().zip(x.chunks(q.group())).skip(skip) {
            *o = sum(g);
        }
        let mut zsums = vec![0.0; padded];
        let (mut xq, mut dx) = (Vec::new(), Vec::new());
        if int8 {
            let len = (q.groups_per_row() * q.group()).next_multiple_of(XQ_STEP * SUB);
            xq = vec![0i8; len];
            dx = vec![0.0; len / SUB];
            let per_group = q.group() / SUB;
            let (blocks, _) = x.get(..full).unwrap_or(&[]).as_chunks::<SUB>();
            for (s, (xs, d)) in blocks.iter().zip(dx.iter_mut()).enumerate() {
                let (qs, isum);
                (*d, qs, isum) = quantize_fast(xs);
                place(&qs, order, s, &mut xq);
                if let Some(z) = zsums.get_mut(s / per_group) {
                    *z += *d * isum as f32;
                }
            }
            sums[..q.full_groups()].copy_from_slice(&zsums[..q.full_groups()]);
        }
        let mut xk = std::borrow::Cow::Borrowed(x);
        if mode == Activations::Exact && order != Order::Natural {
            let mut v = vec![0.0; full.next_multiple_of(SPAN)];
            let (blocks, _) = x.get(..full).unwrap_or(&[]).as_chunks::<SUB>();
            for (s, b) in blocks.iter().enumerate() {
                place(b, order, s, &mut v);
            }
            if order == Order::NibbleByte {
                v.as_chunks_mut::<SUB>().0.iter_mut().for_each(nibble_byte);
            }
            xk = v.into();
        }
        Prepared {
            x,
            xk,
            sums,
            zsums,
            xq,
            dx,
        }
    }
}

/// One sub-block in [`Order::EvenOdd`] rewritten in place to [`Order::NibbleByte`]'s values.
fn nibble_byte(block: &mut [f32; SUB]) {
    let (even, odd) = block.split_at_mut(SUB / 2);
    for (e, o) in even.iter_mut().zip(odd) {
        *o /= 16.0;
        *e -= *o;
    }
}

/// `Σ v` with 8 independent partial sums (vectorises).
fn sum(v: &[f32]) -> f32 {
    let (c8, rest) = v.as_chunks::<8>();
    let mut acc = [0f32; 8];
    for c in c8 {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// `max |x|` over a sub-block.
fn amax(x: &[f32; SUB]) -> f32 {
    let (c8, _) = x.as_chunks::<8>();
    let mut m = [0f32; 8];
    for c in c8 {
        for (a, v) in m.iter_mut().zip(c) {
            *a = a.max(v.abs());
        }
    }
    m.iter().fold(0f32, |a, &v| a.max(v))
}

/// [`quantize`], with AVX2 when the CPU has it.
pub(super) fn quantize_fast(x: &[f32; SUB]) -> (f32, [i8; SUB], i32) {
    #[cfg(target_arch = "x86_64")]
    if super::rows_x86::available() {
        // SAFETY: AVX2 and FMA are present (checked just above).
        return unsafe { super::x86::quantize(x) };
    }
    quantize(x)
}

/// Quantizes `x` to `q = round(x / d)` with `d = max|x| / 127`; returns `d`, `q` and `Σ q`.
fn quantize(x: &[f32; SUB]) -> (f32, [i8; SUB], i32) {
    let amax = amax(x);
    let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
    let mut q = [0i8; SUB];
    // Adding and removing 1.5 * 2^23 rounds to the nearest integer (ties to even) without a
    // libm call; |v * inv| <= 127, far inside the trick's range.
    const ROUND: f32 = 12_582_912.0;
    for (o, v) in q.iter_mut().zip(x) {
        *o = ((v * inv + ROUND) - ROUND).clamp(-127.0, 127.0) as i8;
    }
    let sum = q.iter().map(|&v| v as i32).sum();
    (amax / 127.0, q, sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nibble_byte_weights_give_the_two_nibbles_products() {
        let mut seed = 3u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            seed >> 33
        };
        let x: [f32; SUB] = std::array::from_fn(|_| (next() % 2001) as f32 / 100.0 - 10.0);
        let bytes: [u8; SUB / 2] = std::array::from_fn(|_| next() as u8);
        let mut placed = [0f32; SUB];
        place(&x, Order::NibbleByte, 0, &mut placed);
        nibble_byte(&mut placed);
        let (lo_w, byte_w) = placed.split_at(SUB / 2);
        let mut got = 0f64;
        let mut want = 0f64;
        for (j, &b) in bytes.iter().enumerate() {
            got += f64::from(b & 15) * f64::from(lo_w[j]) + f64::from(b) * f64::from(byte_w[j]);
            // Code 2j is the low nibble, code 2j + 1 the high one.
            want += f64::from(b & 15) * f64::from(x[2 * j]) + f64::from(b >> 4) * f64::from(x[2 * j + 1]);
        }
        assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "{got} vs {want}");
    }

    #[test]
    fn simd_quantize_matches_portable() {
        let mut seed = 7u64;
        for k in 0..200 {
            let x: [f32; SUB] = std::array::from_fn(|i| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                let v = ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * (1 + k % 7) as f32;
                // Every 5th block: max 127 (scale 1) and halves: ties to even.
                match (k % 5, i) {
                    (0, 0) => 127.0,
                    (0, _) => (v * 8.0).round() + 0.5,
                    _ => v,
                }
            });
            assert_eq!(quantize_fast(&x), quantize(&x), "block {k}");
        }
        assert_eq!(quantize_fast(&[0.0; SUB]), quantize(&[0.0; SUB]));
    }
}
