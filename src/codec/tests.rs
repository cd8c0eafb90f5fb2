//! Codec tests: round trips, kernels, quality against plain RTN, mode choices, robustness.

use std::time::Instant;

use rbe_runtime::rbe::RbeTensor;

use super::*;

/// SplitMix64: a tiny seeded generator, so tests need no extra crate.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn gauss(&mut self) -> f64 {
        (-2.0 * self.uniform().ln()).sqrt() * (2.0 * std::f64::consts::PI * self.uniform()).cos()
    }
    fn gaussian(&mut self, n: usize, sigma: f64) -> Vec<f32> {
        (0..n).map(|_| (sigma * self.gauss()) as f32).collect()
    }
    /// Student-t with 3 degrees of freedom, scaled by `s`.
    fn student_t3(&mut self, n: usize, s: f64) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let chi2: f64 = (0..3).map(|_| self.gauss().powi(2)).sum();
                (s * self.gauss() / (chi2 / 3.0).sqrt()) as f32
            })
            .collect()
    }
    fn laplace(&mut self, n: usize, b: f64) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let u = self.uniform() - 0.5;
                (-b * u.signum() * (1.0 - 2.0 * u.abs()).ln()) as f32
            })
            .collect()
    }
}

/// A smooth field: a few low-frequency waves over the whole matrix, amplitude ~0.05.
fn smooth(rows: usize, cols: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            let (y, x) = (r as f64 / rows as f64, c as f64 / cols as f64);
            let s = 0.03 * (2.0 * std::f64::consts::PI * (0.7 * x + 0.3 * y) + 0.4).sin()
                + 0.02 * (3.1 * y).cos() * (1.7 * x + 0.2).cos()
                + 0.01;
            v.push(s as f32);
        }
    }
    v
}

/// Smooth per-tile surfaces of the basis family (tile-local coordinates, random coefficients
/// of size ~`amp`), written out here independently of the runtime's evaluation.
fn tile_surfaces(rows: usize, cols: usize, block: usize, amp: f64, rng: &mut Rng) -> Vec<f32> {
    use std::f64::consts::PI;
    let (tr, tc) = (rows.div_ceil(block), cols.div_ceil(block));
    let coeffs: Vec<Vec<f64>> = (0..tr * tc)
        .map(|_| (0..8).map(|_| amp * rng.gauss()).collect())
        .collect();
    let mut v = vec![0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            let (ti, tj) = (r / block, c / block);
            let h = block.min(rows - ti * block) as f64;
            let w = block.min(cols - tj * block) as f64;
            let y = (2.0 * (r % block) as f64 + 1.0) / h - 1.0;
            let x = (2.0 * (c % block) as f64 + 1.0) / w - 1.0;
            let d = (x * x + y * y).sqrt();
            let f = [
                1.0,
                d,
                d * d,
                (PI * x).cos(),
                (PI * y).cos(),
                (2.0 * PI * x).cos(),
                (2.0 * PI * y).cos(),
                (PI * x).cos() * (PI * y).cos(),
            ];
            v[r * cols + c] = f
                .iter()
                .zip(&coeffs[ti * tc + tj])
                .map(|(a, b)| a * b)
                .sum::<f64>() as f32;
        }
    }
    v
}

fn rel_rmse(a: &[f32], b: &[f32]) -> f64 {
    Moments::of(a).relative((sse(a, b) / a.len() as f64).sqrt())
}

fn bits_of(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Encodes, serialises, parses, decodes: the decode must equal the encoder's reconstruction
/// bit for bit, row by row too. Returns the encoding.
fn round_trip(data: &[f32], rows: usize, cols: usize, params: &EncodeParams) -> Encoded {
    let (enc, recon) = encode_with_reconstruction(data, rows, cols, params).unwrap();
    let bytes = enc.tensor.to_bytes();
    assert_eq!(bytes.len(), enc.tensor.stored_bytes());
    assert_eq!(enc.stats.bytes, bytes.len());
    assert_eq!(
        enc.stats.bits_per_weight,
        bytes.len() as f64 * 8.0 / (rows * cols) as f64
    );
    let back = RbeTensor::from_bytes(&bytes).unwrap();
    assert_eq!(back.to_bytes(), bytes);
    let decoded = back.decode();
    assert_eq!(
        bits_of(&decoded),
        bits_of(&recon),
        "decode != encoder reconstruction"
    );
    let mut row = vec![0f32; cols];
    for r in [0, rows / 2, rows - 1] {
        back.decode_row(r, &mut row).unwrap();
        assert_eq!(bits_of(&row), bits_of(&recon[r * cols..(r + 1) * cols]));
    }
    assert!((enc.stats.rel_rmse - rel_rmse(data, &recon)).abs() < 1e-12);
    enc
}

#[test]
fn dense_round_trip_odd_shapes_every_grid() {
    let mut rng = Rng(1);
    for (rows, cols) in [(100, 72), (33, 200), (1, 16), (129, 131)] {
        let data = rng.gaussian(rows * cols, 0.02);
        for preset in EncodeParams::PRESETS {
            for asymmetric in [false, true] {
                let p = EncodeParams {
                    asymmetric,
                    allow_sparse: false,
                    ..EncodeParams::preset(preset).unwrap()
                };
                let enc = round_trip(&data, rows, cols, &p);
                assert_eq!(enc.tensor.mode_name(), "dense", "{rows}x{cols} {preset}");
                assert!(
                    enc.stats.rel_rmse < 0.5,
                    "{rows}x{cols} {preset} {}",
                    enc.stats.rel_rmse
                );
            }
        }
    }
    for bits in 2..=8 {
        let data = rng.laplace(100 * 72, 0.01);
        let p = EncodeParams {
            bits,
            group: 16,
            block: 32,
            ..EncodeParams::default()
        };
        round_trip(&data, 100, 72, &p);
    }
}

#[test]
fn basis_round_trip_and_kept_on_smooth_plus_noise() {
    let (rows, cols) = (256, 200);
    let mut rng = Rng(2);
    let noise = rng.gaussian(rows * cols, 0.002);
    let surfaces = tile_surfaces(rows, cols, 128, 0.01, &mut rng);
    let data: Vec<f32> = surfaces.iter().zip(&noise).map(|(s, n)| s + n).collect();
    for asymmetric in [false, true] {
        let p = EncodeParams {
            asymmetric,
            allow_sparse: false,
            ..EncodeParams::default()
        };
        let enc = round_trip(&data, rows, cols, &p);
        assert_eq!(enc.tensor.mode_name(), "dense+basis");
        assert_eq!(enc.stats.total_tiles, 4);
        assert_eq!(enc.stats.basis_tiles, 4, "{:?}", enc.stats);
        // The basis must have bought accuracy, not just bytes.
        let plain = encode(
            &data,
            rows,
            cols,
            &EncodeParams {
                allow_basis: false,
                ..p.clone()
            },
        )
        .unwrap();
        assert!(
            enc.stats.rel_rmse < plain.stats.rel_rmse,
            "{:?} vs {:?}",
            enc.stats,
            plain.stats
        );
    }
}

#[test]
fn basis_not_kept_on_pure_noise() {
    let mut rng = Rng(3);
    for data in [
        rng.gaussian(128 * 128, 0.02),
        rng.student_t3(128 * 128, 0.02),
    ] {
        let enc = round_trip(&data, 128, 128, &EncodeParams::default());
        assert_eq!(enc.stats.basis_tiles, 0);
        assert_eq!(enc.tensor.mode_name(), "dense");
    }
}

#[test]
fn basis_kept_on_one_smooth_tile_only() {
    // One 128x128 tile: smooth-plus-small-noise; the next tile: pure noise.
    let (rows, cols) = (128, 256);
    let mut rng = Rng(4);
    let s = smooth(rows, cols);
    let mut data = rng.gaussian(rows * cols, 0.02);
    for r in 0..rows {
        for c in 0..128 {
            data[r * cols + c] = s[r * cols + c] + data[r * cols + c] / 10.0;
        }
    }
    let enc = round_trip(
        &data,
        rows,
        cols,
        &EncodeParams {
            allow_sparse: false,
            ..EncodeParams::default()
        },
    );
    assert_eq!(enc.stats.basis_tiles, 1);
    assert_eq!(enc.stats.total_tiles, 2);
}

#[test]
fn sparse_chosen_for_smooth_not_for_noise() {
    let (rows, cols) = (200, 150);
    let data = smooth(rows, cols);
    let enc = round_trip(&data, rows, cols, &EncodeParams::default());
    assert_eq!(enc.tensor.mode_name(), "sparse", "{:?}", enc.stats);
    let dense = &enc.stats.candidates[0];
    assert!(
        enc.stats.bytes < dense.bytes && enc.stats.rel_rmse <= dense.rel_rmse,
        "{:?}",
        enc.stats
    );
    assert!(enc.stats.sparse_coefficients > 0);
    // q8 too: the target moves with the dense candidate's quality.
    let enc8 = round_trip(&data, rows, cols, &EncodeParams::preset("q8").unwrap());
    assert!(enc8.stats.rel_rmse <= enc8.stats.candidates[0].rel_rmse);

    let noise = Rng(5).gaussian(rows * cols, 0.02);
    let enc = round_trip(&noise, rows, cols, &EncodeParams::default());
    assert_ne!(enc.tensor.mode_name(), "sparse");
    // Forcing the sparse candidate on noise with no floor: it must lose on bytes.
    let (t, _) = (enc.stats.candidates.len(), ());
    assert_eq!(t, 1, "noise should not even look smooth");
}

#[test]
fn sparse_round_trip_with_cap_and_edges() {
    let (rows, cols) = (70, 300);
    let data = smooth(rows, cols);
    let p = EncodeParams {
        k: Some(40),
        block: 64,
        ..EncodeParams::default()
    };
    let enc = round_trip(&data, rows, cols, &p);
    if enc.tensor.mode_name() == "sparse" {
        assert!(enc.stats.sparse_coefficients <= 40 * enc.stats.total_tiles);
    }
}

/// decode() + a naive f64 matmul, against the fused kernel, within 1e-5 relative to the
/// magnitude sum of each dot product.
fn check_matmul(t: &RbeTensor, m: usize, rng: &mut Rng) {
    let (rows, cols) = (t.rows(), t.cols());
    let w = t.decode();
    let x = rng.gaussian(m * cols, 1.0);
    let mut out = vec![0f32; m * rows];
    t.matmul(&x, m, &mut out).unwrap();
    for i in 0..m {
        for r in 0..rows {
            let terms = x[i * cols..(i + 1) * cols]
                .iter()
                .zip(&w[r * cols..(r + 1) * cols]);
            let (dot, mag) = terms.fold((0f64, 0f64), |(d, a), (&p, &q)| {
                (d + p as f64 * q as f64, a + (p as f64 * q as f64).abs())
            });
            let got = out[i * rows + r] as f64;
            assert!(
                (got - dot).abs() <= 1e-5 * mag.max(f64::MIN_POSITIVE),
                "m {m} ({i},{r}): {got} vs {dot}"
            );
        }
    }
}

#[test]
fn matmul_matches_decode_then_naive() {
    let mut rng = Rng(6);
    let noise = rng.gaussian(300 * 520, 0.02);
    let smooth_noisy: Vec<f32> = smooth(256, 200)
        .iter()
        .zip(rng.gaussian(256 * 200, 0.002))
        .map(|(s, n)| s + n)
        .collect();
    let tensors = [
        encode(&noise, 300, 520, &EncodeParams::default())
            .unwrap()
            .tensor,
        encode(
            &noise,
            300,
            520,
            &EncodeParams {
                asymmetric: true,
                ..EncodeParams::preset("q3").unwrap()
            },
        )
        .unwrap()
        .tensor,
        encode(
            &smooth_noisy,
            256,
            200,
            &EncodeParams {
                allow_sparse: false,
                ..EncodeParams::default()
            },
        )
        .unwrap()
        .tensor,
        encode(&smooth(200, 150), 200, 150, &EncodeParams::default())
            .unwrap()
            .tensor,
    ];
    assert_eq!(
        tensors.iter().map(|t| t.mode_name()).collect::<Vec<_>>(),
        ["dense", "dense", "dense+basis", "sparse"]
    );
    for t in &tensors {
        for m in [1, 7] {
            check_matmul(t, m, &mut rng);
        }
    }
    let mut out = vec![0f32; 3];
    assert!(tensors[0].matmul(&[0.0; 5], 1, &mut out).is_err());
    assert!(tensors[0].decode_row(300, &mut vec![0f32; 520]).is_err());
}

/// q4 against symmetric absmax RTN int4 with an f16 scale per 32 (4.5 bpw), q8 against int8.
#[test]
fn presets_beat_rtn_at_budget() {
    let (rows, cols) = (256, 512);
    let mut rng = Rng(7);
    let sets = [
        ("gaussian", rng.gaussian(rows * cols, 0.02)),
        ("student-t3", rng.student_t3(rows * cols, 0.02)),
        ("laplace", rng.laplace(rows * cols, 0.014)),
    ];
    for (name, data) in &sets {
        let q4 = encode(data, rows, cols, &EncodeParams::preset("q4").unwrap())
            .unwrap()
            .stats;
        let rtn4 = rel_rmse(data, &rtn_absmax(data, rows, cols, 4, 32));
        assert!(
            q4.bits_per_weight <= 4.5,
            "{name}: q4 {} bpw",
            q4.bits_per_weight
        );
        assert!(
            q4.rel_rmse <= rtn4,
            "{name}: q4 {} vs rtn4 {rtn4}",
            q4.rel_rmse
        );
        let q8 = encode(data, rows, cols, &EncodeParams::preset("q8").unwrap())
            .unwrap()
            .stats;
        let rtn8 = rel_rmse(data, &rtn_absmax(data, rows, cols, 8, 32));
        assert!(
            q8.bits_per_weight <= 8.5,
            "{name}: q8 {} bpw",
            q8.bits_per_weight
        );
        assert!(
            q8.rel_rmse <= 1.1 * rtn8,
            "{name}: q8 {} vs rtn8 {rtn8}",
            q8.rel_rmse
        );
    }
}

#[test]
fn rtn_baseline_is_what_it_says() {
    // absmax maps to ±7 exactly; a value at half a step rounds away from zero.
    let data = [0.7f32, -0.35, 0.1, 0.0];
    let out = rtn_absmax(&data, 1, 4, 4, 4);
    assert_eq!(out[0], half::f16::from_f32(0.1).to_f32() * 7.0);
    assert_eq!(out[3], 0.0);
    assert!((rel_rmse(&data, &out)) < 0.1);
}

#[test]
fn bad_inputs_and_knobs_are_rejected() {
    let data = vec![0.5f32; 64];
    assert!(encode(&data, 8, 7, &EncodeParams::default()).is_err());
    let mut nan = data.clone();
    nan[3] = f32::NAN;
    assert!(encode(&nan, 8, 8, &EncodeParams::default()).is_err());
    nan[3] = f32::INFINITY;
    assert!(encode(&nan, 8, 8, &EncodeParams::default()).is_err());
    assert!(EncodeParams::preset("q5").is_err());
    let q4 = EncodeParams::default();
    for bad in [
        EncodeParams {
            bits: 1,
            ..q4.clone()
        },
        EncodeParams {
            bits: 9,
            ..q4.clone()
        },
        EncodeParams {
            group: 8,
            ..q4.clone()
        },
        EncodeParams {
            group: 20,
            block: 100,
            ..q4.clone()
        },
        EncodeParams {
            group: 512,
            ..q4.clone()
        },
        EncodeParams {
            block: 16,
            group: 16,
            ..q4.clone()
        },
        EncodeParams {
            block: 512,
            ..q4.clone()
        },
        EncodeParams {
            block: 128,
            group: 48,
            ..q4.clone()
        },
        EncodeParams {
            k: Some(0),
            ..q4.clone()
        },
        EncodeParams {
            threshold: -1.0,
            ..q4.clone()
        },
        EncodeParams {
            table_bits: Some(9),
            ..q4.clone()
        },
    ] {
        let err = bad.validate().unwrap_err();
        assert!(encode(&data, 8, 8, &bad).is_err(), "{err}");
    }
    // A constant tensor is exact or nearly so, and does not divide by zero.
    let enc = encode(&data, 8, 8, &EncodeParams::default()).unwrap();
    assert!(enc.stats.rel_rmse < 1e-2, "{:?}", enc.stats);
    // Values past f16's range: no basis can be stored, the tensor still encodes.
    let huge: Vec<f32> = smooth(64, 64).iter().map(|v| v * 1e8).collect();
    let enc = encode(
        &huge,
        64,
        64,
        &EncodeParams {
            allow_sparse: false,
            block: 64,
            ..EncodeParams::default()
        },
    )
    .unwrap();
    assert_eq!(enc.tensor.mode_name(), "dense");
    assert!(enc.stats.rel_rmse < 0.1, "{:?}", enc.stats);
    let zeros = encode(&[0.0; 64], 8, 8, &EncodeParams::default()).unwrap();
    assert_eq!(zeros.stats.rel_rmse, 0.0);
}

/// Every truncation, many single-byte flips and random bytes: Err or a tensor that decodes,
/// never a panic.
#[test]
fn from_bytes_never_panics() {
    let mut rng = Rng(8);
    let noisy: Vec<f32> = smooth(70, 96)
        .iter()
        .zip(rng.gaussian(70 * 96, 0.002))
        .map(|(s, n)| s + n)
        .collect();
    let samples = [
        encode(
            &noisy,
            70,
            96,
            &EncodeParams {
                block: 32,
                group: 16,
                allow_sparse: false,
                asymmetric: true,
                ..EncodeParams::default()
            },
        )
        .unwrap()
        .tensor,
        encode(
            &rng.gaussian(40 * 72, 0.02),
            40,
            72,
            &EncodeParams::preset("q3").unwrap(),
        )
        .unwrap()
        .tensor,
        encode(
            &smooth(70, 96),
            70,
            96,
            &EncodeParams {
                block: 32,
                group: 16,
                ..EncodeParams::default()
            },
        )
        .unwrap()
        .tensor,
    ];
    assert_eq!(
        samples.iter().map(|t| t.mode_name()).collect::<Vec<_>>(),
        ["dense+basis", "dense", "sparse"]
    );
    let exercise = |b: &[u8]| {
        if let Ok(t) = RbeTensor::from_bytes(b) {
            if t.rows() * t.cols() <= 1 << 20 {
                let d = t.decode();
                assert_eq!(d.len(), t.rows() * t.cols());
                let mut out = vec![0f32; 2 * t.rows()];
                t.matmul(&vec![1.0; 2 * t.cols()], 2, &mut out).unwrap();
            }
        }
    };
    for t in &samples {
        let bytes = t.to_bytes();
        for n in 0..bytes.len() {
            assert!(
                RbeTensor::from_bytes(&bytes[..n]).is_err(),
                "truncated to {n} parsed"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(RbeTensor::from_bytes(&longer).is_err());
        for pos in 0..bytes.len() {
            for mask in [0x01u8, 0x80, 0xff, (rng.next_u64() as u8) | 1] {
                let mut b = bytes.clone();
                b[pos] ^= mask;
                exercise(&b);
            }
        }
        for _ in 0..200 {
            let mut b = bytes.clone();
            for _ in 0..4 {
                let pos = (rng.next_u64() % b.len() as u64) as usize;
                b[pos] = rng.next_u64() as u8;
            }
            exercise(&b);
        }
    }
    for len in 0..300 {
        let mut b: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        exercise(&b);
        if len >= 4 {
            b[..4].copy_from_slice(b"RBET");
            exercise(&b);
        }
    }
    // A header that claims a huge matrix is refused before allocating.
    let mut huge = samples[1].to_bytes();
    huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(RbeTensor::from_bytes(&huge).is_err());
    huge[5] = 1; // sparse
    huge[7] = 0;
    assert!(RbeTensor::from_bytes(&huge).is_err());
}

/// CPU seconds used by this process so far (user + system, Linux `/proc`; 0 elsewhere), to
/// report encode cost independently of how loaded the shared machine is.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// The measurement behind the report: `cargo test -p rbe --lib --release measure -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_presets_768x3072() {
    let (rows, cols) = (768, 3072);
    let sets = [
        ("gaussian", Rng(9).gaussian(rows * cols, 0.02)),
        ("student-t3", Rng(11).student_t3(rows * cols, 0.02)),
    ];
    for (name, data) in &sets {
        for (preset, bits) in [("q4", 4), ("q8", 8), ("q3", 3)] {
            let p = EncodeParams::preset(preset).unwrap();
            let (t0, c0) = (Instant::now(), cpu_seconds());
            let enc = encode(data, rows, cols, &p).unwrap();
            let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
            let rtn = rel_rmse(data, &rtn_absmax(data, rows, cols, bits, 32));
            println!(
                "{name} {preset}: {} {:.4} bpw, rel RMSE {:.5} | RTN int{bits} g32 (f16 scale, {} bpw) {:.5} | encode {secs:.3} s wall, {cpu:.2} CPU-s",
                enc.stats.mode,
                enc.stats.bits_per_weight,
                enc.stats.rel_rmse,
                bits as f64 + 0.5,
                rtn,
            );
            let x = Rng(10).gaussian(cols, 1.0);
            let mut out = vec![0f32; rows];
            let t0 = Instant::now();
            for _ in 0..20 {
                enc.tensor.matmul(&x, 1, &mut out).unwrap();
            }
            println!("  gemv {:.3} ms", t0.elapsed().as_secs_f64() / 20.0 * 1e3);
        }
    }
}

/// GPT-2 small's weight shapes (124M weights, Gaussian stand-ins) at q4, tensor after tensor:
/// `cargo test -p rbe --lib --release gpt2 -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_gpt2_small_shapes_q4() {
    let mut shapes = vec![(50257, 768), (1024, 768)];
    for _ in 0..12 {
        shapes.extend([(2304, 768), (768, 768), (3072, 768), (768, 3072)]);
    }
    let pool = Rng(12).gaussian(50257 * 768, 0.02);
    let p = EncodeParams::preset("q4").unwrap();
    let (mut weights, mut bytes) = (0usize, 0usize);
    let (t0, c0) = (Instant::now(), cpu_seconds());
    for (rows, cols) in shapes {
        let enc = encode(&pool[..rows * cols], rows, cols, &p).unwrap();
        weights += rows * cols;
        bytes += enc.stats.bytes;
    }
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    println!(
        "gpt2-small shapes: {weights} weights, q4 {:.4} bpw, encode {secs:.2} s wall, {cpu:.1} CPU-s",
        bytes as f64 * 8.0 / weights as f64
    );
}
