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

/// Where each activation of a sub-block goes in the order the main loop reads them: the
/// natural order, or the even positions then the odd ones (what the AVX2 4-bit unpacker
/// produces: low nibbles, then high nibbles).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum Order {
    /// Code order.
    Natural,
    /// Even codes, then odd codes, per sub-block.
    EvenOdd,
}

/// `block` (one sub-block) rearranged in `order`.
fn arrange<T: Copy + Default>(block: &[T], order: Order) -> [T; SUB] {
    let mut out = [T::default(); SUB];
    for (k, o) in out.iter_mut().enumerate() {
        let from = match order {
            Order::Natural => k,
            Order::EvenOdd => (2 * k) % SUB + k / (SUB / 2),
        };
        *o = block.get(from).copied().unwrap_or_default();
    }
    out
}

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
    /// Int8 mode: the quantized values of every full group (else empty).
    pub xq: Vec<i8>,
    /// Int8 mode: the scale of each sub-block of `xq`.
    pub dx: Vec<f32>,
}

impl<'x> Prepared<'x> {
    /// Prepares `x` (`q.cols()` values) for `mode`, sub-blocks in `order`.
    pub fn new(q: &QuantMatrix, x: &'x [f32], mode: Activations, order: Order) -> Self {
        let full = q.full_groups() * q.group();
        let padded = q.groups_per_row().next_multiple_of(SUB);
        let mut sums: Vec<f32> = x.chunks(q.group()).map(|g| g.iter().sum()).collect();
        sums.resize(padded, 0.0);
        let mut zsums = vec![0.0; padded];
        let (mut xq, mut dx) = (Vec::new(), Vec::new());
        if mode == Activations::Int8 && q.has_sub_blocks() {
            xq = vec![0i8; full];
            dx = Vec::with_capacity(full / SUB);
            let per_group = q.group() / SUB;
            let blocks = x
                .get(..full)
                .unwrap_or(&[])
                .chunks_exact(SUB)
                .zip(xq.chunks_exact_mut(SUB));
            for (s, (xs, qs)) in blocks.enumerate() {
                let (d, isum) = quantize(xs, qs);
                if order != Order::Natural {
                    let a = arrange(qs, order);
                    qs.copy_from_slice(&a);
                }
                dx.push(d);
                let g = s / per_group;
                if s % per_group == 0 {
                    zsums[g] = 0.0;
                }
                zsums[g] += d * isum as f32;
            }
            sums[..q.full_groups()].copy_from_slice(&zsums[..q.full_groups()]);
        }
        let mut xk = std::borrow::Cow::Borrowed(x);
        if mode == Activations::Exact && order != Order::Natural {
            let blocks = x.get(..full).unwrap_or(&[]).chunks_exact(SUB);
            xk = blocks
                .flat_map(|b| arrange(b, order))
                .collect::<Vec<f32>>()
                .into();
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

/// Quantizes `x` to `q = round(x / d)` with `d = max|x| / 127`; returns `d` and `Σ q`.
fn quantize(x: &[f32], q: &mut [i8]) -> (f32, i32) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0;
    // Adding and removing 1.5 * 2^23 rounds to the nearest integer (ties to even) without a
    // libm call; |v * inv| <= 127, far inside the trick's range.
    const ROUND: f32 = 12_582_912.0;
    for (o, v) in q.iter_mut().zip(x) {
        let r = ((v * inv + ROUND) - ROUND).clamp(-127.0, 127.0) as i8;
        sum += r as i32;
        *o = r;
    }
    (d, sum)
}
