//! The plain round-to-nearest baseline the codec must beat.

use half::f16;

/// Symmetric absmax round-to-nearest: per group of `group` consecutive values along each row
/// (the last group of a row may be shorter), scale = f16(absmax / (2^(bits-1) - 1)), codes
/// clamped to `±(2^(bits-1) - 1)`. Returns the reconstruction (`rows * cols` values); it costs
/// `bits + 16 / group` bits per weight. `bits` must be in 2..=8 and `group >= 1`.
pub fn rtn_absmax(data: &[f32], rows: usize, cols: usize, bits: u8, group: usize) -> Vec<f32> {
    let qmax = ((1i32 << (bits.clamp(2, 8) - 1)) - 1) as f32;
    let mut out = vec![0f32; rows * cols];
    for (xr, or) in data.chunks(cols).zip(out.chunks_mut(cols)) {
        for (xg, og) in xr.chunks(group.max(1)).zip(or.chunks_mut(group.max(1))) {
            let amax = xg.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = f16::from_f32(amax / qmax).to_f32();
            for (x, o) in xg.iter().zip(og.iter_mut()) {
                *o = if scale > 0.0 {
                    (x / scale).round().clamp(-qmax, qmax) * scale
                } else {
                    0.0
                };
            }
        }
    }
    out
}
