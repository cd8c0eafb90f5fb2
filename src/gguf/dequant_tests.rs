//! Each block type against values worked out by hand from its layout.

use super::dequantize;
use crate::gguf::ggml_type::GgmlType;

const HALF: [u8; 2] = [0x00, 0x38]; // f16 0.5
const ONE: [u8; 2] = [0x00, 0x3c]; // f16 1.0
const TWO: [u8; 2] = [0x00, 0x40]; // f16 2.0

fn block(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn float_types() {
    assert_eq!(dequantize(GgmlType::F32, &1.5f32.to_le_bytes()).unwrap(), [1.5]);
    assert_eq!(dequantize(GgmlType::F16, &[0x00, 0x3c, 0x00, 0xc0]).unwrap(), [1.0, -2.0]);
    assert_eq!(dequantize(GgmlType::Bf16, &[0xc0, 0x3f]).unwrap(), [1.5]);
}

#[test]
fn q4_0_low_nibbles_first_then_high() {
    let mut qs = [0x88u8; 16];
    qs[0] = 0x1f;
    let v = dequantize(GgmlType::Q4_0, &block(&[&HALF, &qs])).unwrap();
    assert_eq!(v.len(), 32);
    assert_eq!(v[0], 3.5); // (15 - 8) * 0.5
    assert_eq!(v[16], -3.5); // (1 - 8) * 0.5
    assert!(v.iter().enumerate().all(|(i, &x)| i == 0 || i == 16 || x == 0.0));
}

#[test]
fn q4_1_scale_and_min() {
    let qs: Vec<u8> = (0..16u8).map(|j| j | ((15 - j) << 4)).collect();
    let v = dequantize(GgmlType::Q4_1, &block(&[&HALF, &ONE, &qs])).unwrap();
    for j in 0..16 {
        assert_eq!(v[j], j as f32 * 0.5 + 1.0);
        assert_eq!(v[16 + j], (15 - j) as f32 * 0.5 + 1.0);
    }
}

#[test]
fn q5_0_fifth_bit_per_value() {
    let qh = (1u32 | (1 << 16)).to_le_bytes();
    let mut qs = [0u8; 16];
    qs[0] = 0x31;
    let v = dequantize(GgmlType::Q5_0, &block(&[&TWO, &qh, &qs])).unwrap();
    assert_eq!(v[0], 2.0); // ((1 | 16) - 16) * 2
    assert_eq!(v[16], 6.0); // ((3 | 16) - 16) * 2
    assert_eq!(v[1], -32.0); // (0 - 16) * 2
    assert_eq!(v[17], -32.0);
}

#[test]
fn q5_1_all_bits_set() {
    let minus_eight = [0x00, 0xc8];
    let v = dequantize(GgmlType::Q5_1, &block(&[&ONE, &minus_eight, &[0xff; 4], &[0xff; 16]])).unwrap();
    assert!(v.iter().all(|&x| x == 23.0), "{v:?}"); // 31 * 1 - 8
}

#[test]
fn q8_0_signed_codes() {
    let qs: Vec<u8> = (0..32).map(|i| (i as i8 - 16) as u8).collect();
    let v = dequantize(GgmlType::Q8_0, &block(&[&[0x00, 0x34], &qs])).unwrap();
    for (i, x) in v.iter().enumerate() {
        assert_eq!(*x, (i as f32 - 16.0) * 0.25);
    }
}

/// Packed 6-bit scales/mins: sub-block 0 (1, 5), 1 (2, 6), 2 (3, 7), 4 (17, 2), 5 (0, 0).
const K_SCALES: [u8; 12] = [0x41, 2, 3, 4, 5, 6, 7, 8, 0x21, 0, 0, 0];

#[test]
fn q4_k_sub_block_scales_and_mins() {
    let v = dequantize(GgmlType::Q4K, &block(&[&ONE, &HALF, &K_SCALES, &[0x73; 128]])).unwrap();
    assert_eq!(v.len(), 256);
    assert_eq!(v[0], 0.5); // 1 * 3 - 0.5 * 5
    assert_eq!(v[31], 0.5);
    assert_eq!(v[32], 11.0); // 2 * 7 - 0.5 * 6
    assert_eq!(v[128], 50.0); // 17 * 3 - 0.5 * 2
    assert_eq!(v[160], 0.0); // 0 * 7 - 0
}

#[test]
fn q5_k_fifth_bit_from_qh() {
    let mut qh = [0u8; 32];
    qh[0] = 0b101;
    let v = dequantize(GgmlType::Q5K, &block(&[&ONE, &HALF, &K_SCALES, &qh, &[0x73; 128]])).unwrap();
    assert_eq!(v[0], 16.5); // 1 * (3 + 16) - 2.5
    assert_eq!(v[1], 0.5); // 1 * 3 - 2.5
    assert_eq!(v[32], 11.0); // 2 * 7 - 3 (bit 1 clear)
    assert_eq!(v[64], 53.5); // 3 * (3 + 16) - 3.5
    assert_eq!(v[65], 5.5); // 3 * 3 - 3.5
}

#[test]
fn q6_k_runs_and_signed_scales() {
    let mut scales = [0i8; 16];
    scales[..9].copy_from_slice(&[1, -2, 3, 0, 4, 0, 5, 0, 6]);
    let scales: Vec<u8> = scales.iter().map(|&s| s as u8).collect();
    let v = dequantize(GgmlType::Q6K, &block(&[&[0x21; 128], &[0xe4; 64], &scales, &HALF])).unwrap();
    assert_eq!(v.len(), 256);
    assert_eq!(v[0], -15.5); // 0.5 * 1 * (1 - 32)
    assert_eq!(v[16], 31.0); // 0.5 * -2 * (1 - 32)
    assert_eq!(v[32], -22.5); // 0.5 * 3 * ((1 | 16) - 32)
    assert_eq!(v[64], 4.0); // 0.5 * 4 * ((2 | 32) - 32)
    assert_eq!(v[96], 45.0); // 0.5 * 5 * ((2 | 48) - 32)
    assert_eq!(v[128], -93.0); // 0.5 * 6 * (1 - 32)
}

#[test]
fn partial_blocks_are_an_error() {
    assert!(dequantize(GgmlType::Q8_0, &[0u8; 33]).is_err());
}
