//! Exact dequantization of ggml tensor data to f32 (portable code, block by block, following
//! the block layouts of ggml's `ggml-common.h`).

use half::{bf16, f16};

use super::error::GgufError;
use super::ggml_type::GgmlType;

/// Dequantizes `bytes` of type `ty` into f32 values (as many as the blocks hold).
pub fn dequantize(ty: GgmlType, bytes: &[u8]) -> Result<Vec<f32>, GgufError> {
    let block = ty.block_bytes();
    if !bytes.len().is_multiple_of(block) {
        return Err(GgufError::Malformed(format!("{} data of {} bytes is not whole blocks of {block}", ty.name(), bytes.len())));
    }
    let mut out = Vec::with_capacity(bytes.len() / block * ty.block_len());
    let decode: fn(&[u8], &mut Vec<f32>) = match ty {
        GgmlType::F32 => |b, o| o.push(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        GgmlType::F16 => |b, o| o.push(half16(b, 0)),
        GgmlType::Bf16 => |b, o| o.push(bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()),
        GgmlType::Q4_0 => q4_0,
        GgmlType::Q4_1 => q4_1,
        GgmlType::Q5_0 => q5_0,
        GgmlType::Q5_1 => q5_1,
        GgmlType::Q8_0 => q8_0,
        GgmlType::Q4K => q4_k,
        GgmlType::Q5K => q5_k,
        GgmlType::Q6K => q6_k,
    };
    bytes.chunks_exact(block).for_each(|b| decode(b, &mut out));
    Ok(out)
}

/// The little-endian f16 at `at`, as f32.
fn half16(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// The 4-bit codes of 16 bytes: low nibbles are values 0..16, high nibbles 16..32.
fn nibbles(qs: &[u8]) -> impl Iterator<Item = u8> + '_ {
    qs.iter().map(|q| q & 0x0f).chain(qs.iter().map(|q| q >> 4))
}

/// The fifth bits of a 32-value block (`qh`, bit j for value j) added to its nibbles.
fn five_bit<'a>(qh: &[u8], qs: &'a [u8]) -> impl Iterator<Item = u8> + 'a {
    let high = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    nibbles(qs).enumerate().map(move |(j, q)| q | ((((high >> j) & 1) as u8) << 4))
}

/// `{f16 d; u8 qs[16]}`: (q - 8) * d.
fn q4_0(b: &[u8], out: &mut Vec<f32>) {
    let d = half16(b, 0);
    out.extend(nibbles(&b[2..18]).map(|q| (q as i32 - 8) as f32 * d));
}

/// `{f16 d, m; u8 qs[16]}`: q * d + m.
fn q4_1(b: &[u8], out: &mut Vec<f32>) {
    let (d, m) = (half16(b, 0), half16(b, 2));
    out.extend(nibbles(&b[4..20]).map(|q| q as f32 * d + m));
}

/// `{f16 d; u8 qh[4]; u8 qs[16]}`: (q - 16) * d.
fn q5_0(b: &[u8], out: &mut Vec<f32>) {
    let d = half16(b, 0);
    out.extend(five_bit(&b[2..6], &b[6..22]).map(|q| (q as i32 - 16) as f32 * d));
}

/// `{f16 d, m; u8 qh[4]; u8 qs[16]}`: q * d + m.
fn q5_1(b: &[u8], out: &mut Vec<f32>) {
    let (d, m) = (half16(b, 0), half16(b, 2));
    out.extend(five_bit(&b[4..8], &b[8..24]).map(|q| q as f32 * d + m));
}

/// `{f16 d; i8 qs[32]}`: q * d.
fn q8_0(b: &[u8], out: &mut Vec<f32>) {
    let d = half16(b, 0);
    out.extend(b[2..34].iter().map(|&q| q as i8 as f32 * d));
}

/// Sub-block `j`'s 6-bit scale and min from the 12 packed bytes of Q4_K / Q5_K.
fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

/// The 8 (scale, min) pairs of a Q4_K / Q5_K block, as f32 multipliers of d and dmin.
fn k4_scales(b: &[u8]) -> [(f32, f32); 8] {
    let (d, dmin) = (half16(b, 0), half16(b, 2));
    std::array::from_fn(|j| {
        let (sc, m) = scale_min_k4(j, &b[4..16]);
        (d * sc as f32, dmin * m as f32)
    })
}

/// `{f16 d, dmin; u8 scales[12]; u8 qs[128]}`: per 32-value sub-block, d·sc·q − dmin·m; each
/// 32 bytes of qs hold two sub-blocks (low nibbles, then high).
fn q4_k(b: &[u8], out: &mut Vec<f32>) {
    let scales = k4_scales(b);
    for (pair, qs) in b[16..144].chunks_exact(32).enumerate() {
        let (d1, m1) = scales[2 * pair];
        let (d2, m2) = scales[2 * pair + 1];
        out.extend(qs.iter().map(|q| d1 * (q & 0x0f) as f32 - m1));
        out.extend(qs.iter().map(|q| d2 * (q >> 4) as f32 - m2));
    }
}

/// `{f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}`: as Q4_K, plus a fifth bit per value
/// from qh (bit 2·pair for the low-nibble sub-block, 2·pair+1 for the high one).
fn q5_k(b: &[u8], out: &mut Vec<f32>) {
    let scales = k4_scales(b);
    let qh = &b[16..48];
    for (pair, qs) in b[48..176].chunks_exact(32).enumerate() {
        let (d1, m1) = scales[2 * pair];
        let (d2, m2) = scales[2 * pair + 1];
        let bit = |l: usize, shift: usize| (((qh[l] >> shift) & 1) << 4) as f32;
        out.extend(qs.iter().enumerate().map(|(l, q)| d1 * ((q & 0x0f) as f32 + bit(l, 2 * pair)) - m1));
        out.extend(qs.iter().enumerate().map(|(l, q)| d2 * ((q >> 4) as f32 + bit(l, 2 * pair + 1)) - m2));
    }
}

/// `{u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}`: d·scale·(q − 32), q = 4 low bits from ql
/// and 2 high bits from qh; two halves of 128 values, each four runs of 32.
fn q6_k(b: &[u8], out: &mut Vec<f32>) {
    let d = half16(b, 208);
    for half in 0..2 {
        let ql = &b[64 * half..64 * half + 64];
        let qh = &b[128 + 32 * half..128 + 32 * half + 32];
        let sc = &b[192 + 8 * half..192 + 8 * half + 8];
        for run in 0..4 {
            // The four runs take ql[l] low, ql[l+32] low, ql[l] high, ql[l+32] high nibbles.
            let low = |l: usize| {
                let byte = ql[l + 32 * (run % 2)];
                if run < 2 { byte & 0x0f } else { byte >> 4 }
            };
            out.extend((0..32).map(|l| {
                let q = (low(l) | (((qh[l] >> (2 * run)) & 3) << 4)) as i32 - 32;
                d * (sc[l / 16 + 2 * run] as i8) as f32 * q as f32
            }));
        }
    }
}

#[cfg(test)]
#[path = "dequant_tests.rs"]
mod tests;
