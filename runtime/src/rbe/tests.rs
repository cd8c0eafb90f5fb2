//! Format tests that need no encoder: hand-built tensors against an independent decode.

use half::{bf16, f16};

use super::*;

/// A deterministic byte stream for filling parts.
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as u8
        })
        .collect()
}

/// A dense tensor over `g` with arbitrary codes and scales, a basis on every other tile.
fn hand_dense(g: Geometry, asymmetric: bool, scale_bits: u8) -> RbeTensor {
    let groups = g.rows * scale_row_bytes(&g, scale_bits);
    let side = |n: usize| if asymmetric { n } else { 0 };
    let mut codes = bytes(g.rows * g.row_bytes(), 1);
    // Keep codes inside each group's bits (the pad bits of a group's last byte stay zero).
    for r in 0..g.rows {
        let mut at = r * g.row_bytes();
        for gi in 0..g.groups_per_row() {
            let n = g.group_len(gi);
            let c: Vec<u8> = (0..n).map(|j| read_code(&codes[at..], g.bits, j)).collect();
            let nb = g.packed_bytes(n);
            pack_codes(&c, g.bits, &mut codes[at..at + nb]);
            at += nb;
        }
    }
    let parts = DenseParts {
        asymmetric,
        scale_bits,
        row_scale: (0..g.rows)
            .map(|r| bf16::from_f32(1e-3 * (1.0 + r as f32 / 7.0)))
            .collect(),
        row_min: (0..side(g.rows))
            .map(|r| bf16::from_f32(2e-3 / (1.0 + r as f32)))
            .collect(),
        group_scale: bytes(groups, 2).into(),
        group_min: bytes(side(groups), 3).into(),
        codes: codes.into(),
        basis: (0..g.tiles())
            .map(|t| {
                (t % 2 == 0)
                    .then(|| std::array::from_fn(|k| f16::from_f32(0.01 * (k as f32 - 3.5))))
            })
            .collect(),
    };
    RbeTensor::from_dense(g, parts).unwrap()
}

/// Decodes element (r, c) straight from the definition.
fn reference(t: &RbeTensor, parts: &DenseParts, r: usize, c: usize) -> f32 {
    let g = t.geometry();
    let (gi, j) = (c / g.group, c % g.group);
    let at = r * g.row_bytes() + gi * g.packed_bytes(g.group);
    let q = read_code(&parts.codes[at..], g.bits, j);
    let (sb, srb) = (parts.scale_bits, scale_row_bytes(g, parts.scale_bits));
    let sc = read_code(&parts.group_scale[r * srb..], sb, gi);
    let step = group_step(parts.row_scale[r].to_f32(), sc, parts.asymmetric, sb);
    let offset = if parts.asymmetric {
        group_offset(
            parts.row_min[r].to_f32(),
            read_code(&parts.group_min[r * srb..], sb, gi),
        )
    } else {
        0.0
    };
    let mut v = dequant(q, zero_point(g.bits, parts.asymmetric), step, offset);
    let (ti, tj) = (r / g.block, c / g.block);
    if let Some(Some(coef)) = parts.basis.get(ti * g.tile_cols() + tj) {
        let axes = BasisAxes::new(g.tile_height(ti), g.tile_width(tj));
        let mut s = vec![0f32; g.tile_width(tj)];
        axes.eval_row(coef, r % g.block, &mut s);
        v += s[c % g.block];
    }
    v
}

fn parts_of(t: &RbeTensor) -> DenseParts {
    match &t.body {
        Body::Dense(d) => d.parts.clone(),
        Body::Sparse(_) => unreachable!(),
    }
}

#[test]
fn hand_built_dense_decodes_by_definition_and_round_trips() {
    for (rows, cols, block, group, bits, asym, sb) in [
        (70, 100, 32, 16, 3, false, 5),
        (40, 72, 64, 32, 4, true, 6),
        (33, 260, 256, 256, 8, false, 8),
        (5, 50, 32, 16, 2, true, 4),
    ] {
        let g = Geometry::new(rows, cols, block, group, bits).unwrap();
        let t = hand_dense(g, asym, sb);
        let parts = parts_of(&t);
        let d = t.decode();
        for r in 0..rows {
            for c in 0..cols {
                assert_eq!(
                    d[r * cols + c].to_bits(),
                    reference(&t, &parts, r, c).to_bits(),
                    "({r},{c})"
                );
            }
        }
        let b = t.to_bytes();
        assert_eq!(b.len(), t.stored_bytes());
        let back = RbeTensor::from_bytes(&b).unwrap();
        assert_eq!(back.decode(), d);
        assert_eq!(back.to_bytes(), b);
        for n in 0..b.len() {
            assert!(RbeTensor::from_bytes(&b[..n]).is_err());
        }
    }
}

#[test]
fn hand_built_sparse_is_the_inverse_dct() {
    let g = Geometry::new(40, 70, 32, 16, 8).unwrap();
    let tiles: Vec<SparseTile> = (0..g.tiles())
        .map(|t| SparseTile {
            positions: vec![0, 3, 33 + t as u32],
            levels: vec![-700, 10, 1 + t as i32],
        })
        .collect();
    let step = 0.003;
    let t = RbeTensor::from_sparse(g, step, &tiles).unwrap();
    let d = t.decode();
    for r in 0..g.rows {
        for c in 0..g.cols {
            let (ti, tj) = (r / g.block, c / g.block);
            let (h, w) = (g.tile_height(ti), g.tile_width(tj));
            let (th, tw) = (DctTable::new(h), DctTable::new(w));
            let tile = &tiles[ti * g.tile_cols() + tj];
            let want: f64 = tile
                .positions
                .iter()
                .zip(&tile.levels)
                .map(|(&p, &l)| {
                    let (u, v) = (p as usize / w, p as usize % w);
                    step as f64
                        * l as f64
                        * th.at(u, r % g.block) as f64
                        * tw.at(v, c % g.block) as f64
                })
                .sum();
            assert!((d[r * g.cols + c] as f64 - want).abs() < 1e-5, "({r},{c})");
        }
    }
    let b = t.to_bytes();
    assert_eq!(RbeTensor::from_bytes(&b).unwrap().decode(), d);
    assert!(RbeTensor::from_sparse(g, step, &tiles[1..]).is_err());
    let mut bad = tiles.clone();
    bad[2].positions = vec![5, 5, 6];
    assert!(RbeTensor::from_sparse(g, step, &bad).is_err());
    bad[2].positions = vec![5, 6, 32 * 32];
    assert!(RbeTensor::from_sparse(g, step, &bad).is_err());
    bad[2].positions = vec![5, 6, 7];
    bad[2].levels[1] = 0;
    assert!(RbeTensor::from_sparse(g, step, &bad).is_err());
    let g4 = Geometry { bits: 4, ..g };
    assert!(RbeTensor::from_sparse(g4, step, &tiles).is_err());
}

#[test]
fn matmul_agrees_with_decode() {
    let g = Geometry::new(150, 100, 64, 32, 4).unwrap();
    let t = hand_dense(g, true, 7);
    let w = t.decode();
    for m in [1, 3] {
        let x: Vec<f32> = bytes(m * g.cols, 9)
            .iter()
            .map(|&b| b as f32 / 128.0 - 1.0)
            .collect();
        let mut out = vec![f32::NAN; m * g.rows]; // only written, never read
        t.matmul(&x, m, &mut out).unwrap();
        for i in 0..m {
            for r in 0..g.rows {
                let xr = &x[i * g.cols..(i + 1) * g.cols];
                let wr = &w[r * g.cols..(r + 1) * g.cols];
                let want: f64 = xr.iter().zip(wr).map(|(a, b)| *a as f64 * *b as f64).sum();
                let mag: f64 = xr
                    .iter()
                    .zip(wr)
                    .map(|(a, b)| (*a as f64 * *b as f64).abs())
                    .sum();
                assert!((out[i * g.rows + r] as f64 - want).abs() <= 1e-5 * mag);
            }
        }
    }
}

#[test]
fn shared_parse_keeps_the_codes_inside_the_input_buffer() {
    let t = hand_dense(Geometry::new(40, 72, 64, 32, 4).unwrap(), true, 6);
    let bytes = ::bytes::Bytes::from(t.to_bytes());
    let shared = RbeTensor::from_shared(&bytes).unwrap();
    let range = bytes.as_ptr_range();
    let parts = parts_of(&shared);
    for field in [&parts.codes, &parts.group_scale, &parts.group_min] {
        assert!(range.contains(&field.as_ptr()), "a byte field was copied");
    }
    assert_eq!(parts, parts_of(&t));
    assert_eq!(shared.decode(), t.decode());
}

#[test]
fn quantized_rows_are_the_decode_without_a_basis() {
    for (rows, cols, group, bits, asym, sb) in [(9, 100, 16, 3, false, 5), (7, 72, 32, 4, true, 6), (3, 260, 64, 8, false, 8)] {
        let g = Geometry::new(rows, cols, 64, group, bits).unwrap();
        let with_basis = hand_dense(g, asym, sb);
        assert_eq!(with_basis.quantized_row(0), None, "a basis has no plain quantized form");
        let plain = RbeTensor::from_dense(g, DenseParts { basis: Vec::new(), ..parts_of(&with_basis) }).unwrap();
        let d = plain.decode();
        for r in 0..rows {
            let q = plain.quantized_row(r).unwrap();
            assert_eq!((q.codes.len(), q.terms.len()), (cols, g.groups_per_row()));
            for c in 0..cols {
                let (step, offset) = q.terms[c / group];
                let v = dequant(q.codes[c], q.zero_point, step, offset);
                assert_eq!(v.to_bits(), d[r * cols + c].to_bits(), "({r},{c})");
            }
        }
        assert_eq!(plain.quantized_row(rows), None);
    }
}
