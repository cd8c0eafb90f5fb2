//! Layer kernels of the design guide's table, one token at a time (m = 1): dense f32 against
//! the q8 / q4 / q3 presets (exact f32 activations and int8 activations), next to this
//! machine's copy bandwidth. `benches/layers_table.py` turns the results into the table of
//! BENCHMARKS.md ("Layer kernels").
//!
//! ```text
//! cargo bench --bench layers -- --warm-up-time 1 --measurement-time 2
//! ```
//!
//! Ids: `copy/{1,2}thread` (64 MiB memcpy; throughput counts bytes read + written),
//! `gemv/{shape}/{format}` (weights hot in cache: the same layer every iteration),
//! `gemv_cold/{shape}/{format}` (a ring of copies of the layer bigger than the L3 cache, the
//! next one every iteration: what a decode step sees), `gather/32000x768/{format}` (one
//! embedding row per token) and `gemm_m128/{shape}/{format}` (a 128-token prompt; f32 through
//! the `gemm` crate and through the weight packed at load, `kernels::packed`; q4 with exact
//! and with int8 activations), `attention/prompt{128,512}` (GPT-2 small's causal attention
//! core over a 128- and a 512-token prompt, throughput in multiply-adds).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rayon::prelude::*;
use rbe::codec::{encode, EncodeParams};
use rbe_runtime::kernels::activation::Activation;
use rbe_runtime::kernels::qmm::Activations;
use rbe_runtime::rbe::RbeTensor;
use std::hint::black_box;

/// Linear layers of GPT-2 small: (rows = outputs, cols = inputs).
const LINEAR: [(&str, usize, usize); 3] = [
    ("768x768", 768, 768),
    ("768x3072", 3072, 768),
    ("3072x768", 768, 3072),
];
/// Bytes of layer copies in a cold ring: twice a 32 MiB L3.
const COLD_BYTES: usize = 64 << 20;

/// Gaussian N(0, 0.02²) weights (Box–Muller over a fixed LCG): GPT-2's init scale.
fn gaussian(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    let mut uniform = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u, v) = (uniform(), uniform());
            (0.02 * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect()
}

fn encoded(w: &[f32], rows: usize, cols: usize, preset: &str) -> RbeTensor {
    let params = EncodeParams::preset(preset).expect("known preset");
    encode(w, rows, cols, &params)
        .expect("encodable weights")
        .tensor
}

/// The plain f32 GEMV: rows split over rayon's threads like the fused kernels, a dot product
/// with 8 accumulators per row (vectorised by the compiler).
fn dense_gemv(w: &[f32], cols: usize, x: &[f32], out: &mut [f32]) {
    let chunk = out.len().div_ceil(8).max(1);
    out.par_chunks_mut(chunk).enumerate().for_each(|(c, o)| {
        for (k, y) in o.iter_mut().enumerate() {
            let row = &w[(c * chunk + k) * cols..][..cols];
            let mut acc = [0f32; 8];
            for (a, b) in row.chunks_exact(8).zip(x.chunks_exact(8)) {
                for i in 0..8 {
                    acc[i] += a[i] * b[i];
                }
            }
            *y = acc.iter().sum();
        }
    });
}

fn copy_bandwidth(c: &mut Criterion) {
    let n = 64 << 20;
    let src = vec![1u8; n];
    let mut dst = vec![0u8; n];
    let mut g = c.benchmark_group("copy");
    g.throughput(Throughput::Bytes(2 * n as u64));
    g.bench_function("1thread", |b| {
        b.iter(|| dst.copy_from_slice(black_box(&src)))
    });
    g.bench_function("2thread", |b| {
        b.iter(|| {
            dst.par_chunks_mut(n / 2)
                .zip(src.par_chunks(n / 2))
                .for_each(|(d, s)| d.copy_from_slice(black_box(s)))
        })
    });
    g.finish();
}

/// One case: `setup()` (run only when the filter selects the case) makes the inputs, then
/// every iteration calls `run(inputs, i)` with the iteration number `i`.
fn case<T>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: BenchmarkId,
    bytes: usize,
    setup: impl FnOnce() -> T,
    mut run: impl FnMut(&mut T, usize),
) {
    g.throughput(Throughput::Bytes(bytes as u64));
    let mut setup = Some(setup);
    let mut inputs = None;
    g.bench_function(id, |b| {
        if let Some(f) = setup.take() {
            inputs = Some(f());
        }
        let Some(t) = inputs.as_mut() else { return };
        let mut i = 0;
        b.iter(|| {
            run(t, i);
            i += 1;
        })
    });
}

/// Encodes a layer once, on first use.
struct Lazy<'w> {
    w: &'w [f32],
    rows: usize,
    cols: usize,
    done: std::cell::OnceCell<Vec<(String, RbeTensor)>>,
}

impl Lazy<'_> {
    fn get(&self, preset: &str) -> &RbeTensor {
        let all = self.done.get_or_init(|| {
            EncodeParams::PRESETS
                .iter()
                .map(|p| (p.to_string(), encoded(self.w, self.rows, self.cols, p)))
                .collect()
        });
        let t = &all.iter().find(|(p, _)| p == preset).expect("a preset").1;
        if t.stored_bytes() != lazy_bytes(self.rows, self.cols, preset) || t.mode_name() != "dense"
        {
            eprintln!(
                "warning: {preset} {}x{} is {} in {} bytes: the throughput line is off",
                self.rows,
                self.cols,
                t.mode_name(),
                t.stored_bytes()
            );
        }
        t
    }
}

/// Copies of a layer that fill a ring of at least [`COLD_BYTES`] (one copy when hot).
fn ring<T: Clone>(t: &T, bytes: usize, cold: bool) -> Vec<T> {
    vec![
        t.clone();
        if cold {
            COLD_BYTES.div_ceil(bytes).max(1)
        } else {
            1
        }
    ]
}

fn gemv(c: &mut Criterion, cold: bool) {
    let mut g = c.benchmark_group(if cold { "gemv_cold" } else { "gemv" });
    for &(name, rows, cols) in &LINEAR {
        let w = gaussian(rows * cols, rows as u64 * 31 + cols as u64);
        let x: Vec<f32> = gaussian(cols, 7).iter().map(|v| v * 50.0).collect();
        let mut out = vec![0f32; rows];
        let f32_bytes = rows * cols * 4;
        let dense = || ring(&w, f32_bytes, cold);
        case(
            &mut g,
            BenchmarkId::new(name, "f32"),
            f32_bytes,
            dense,
            |d, i| dense_gemv(&d[i % d.len()], cols, black_box(&x), &mut out),
        );
        let lazy = Lazy {
            w: &w,
            rows,
            cols,
            done: Default::default(),
        };
        for preset in EncodeParams::PRESETS {
            for (mode, label) in [(Activations::Exact, ""), (Activations::Int8, "-int8")] {
                let id = BenchmarkId::new(name, format!("{preset}{label}"));
                let setup = || {
                    let t = lazy.get(preset);
                    ring(t, t.stored_bytes(), cold)
                };
                case(&mut g, id, lazy_bytes(rows, cols, preset), setup, |t, i| {
                    t[i % t.len()]
                        .matmul_with(black_box(&x), 1, (&mut out[..]).into(), mode)
                        .expect("shapes match");
                });
            }
        }
    }
    g.finish();
}

/// Stored bytes of a preset's encoding of a Gaussian `rows x cols` layer, for the throughput
/// line, without encoding it (every layer here is dense with no basis tiles: code bits plus
/// 6-bit scale and offset codes per group of 32 plus two bf16 units per row, 21-byte header).
fn lazy_bytes(rows: usize, cols: usize, preset: &str) -> usize {
    let bits = match preset {
        "q8" => 8,
        "q3" => 3,
        _ => 4,
    };
    let groups = cols.div_ceil(32);
    21 + rows * (4 + 2 * (groups * 6).div_ceil(8) + groups * (32 * bits / 8))
}

fn gemv_hot(c: &mut Criterion) {
    gemv(c, false)
}

fn gemv_cold(c: &mut Criterion) {
    gemv(c, true)
}

fn gather(c: &mut Criterion) {
    let (rows, cols) = (32000, 768);
    let w = gaussian(rows * cols, 5);
    let mut g = c.benchmark_group("gather");
    let mut row = vec![0f32; cols];
    // A different row every token, spread over the table.
    let pick = |i: usize| (i * 7919 + 12345) % rows;
    case(
        &mut g,
        BenchmarkId::new("32000x768", "f32"),
        cols * 4,
        || (),
        |_, i| {
            let r = pick(i);
            row.copy_from_slice(black_box(&w[r * cols..(r + 1) * cols]))
        },
    );
    let lazy = Lazy {
        w: &w,
        rows,
        cols,
        done: Default::default(),
    };
    for preset in EncodeParams::PRESETS {
        let bytes = lazy_bytes(rows, cols, preset) / rows;
        case(
            &mut g,
            BenchmarkId::new("32000x768", preset),
            bytes,
            || lazy.get(preset),
            |t, i| {
                t.decode_row(pick(i), black_box(&mut row))
                    .expect("row in range")
            },
        );
    }
    g.finish();
}

fn gemm_m128(c: &mut Criterion) {
    let m = 128;
    let mut g = c.benchmark_group("gemm_m128");
    for &(name, rows, cols) in &LINEAR {
        let w = gaussian(rows * cols, rows as u64 + cols as u64);
        let x = gaussian(m * cols, 9);
        let mut out = vec![0f32; m * rows];
        let (a, b) = (
            ndarray::ArrayView2::from_shape((m, cols), &x).expect("shape"),
            ndarray::ArrayView2::from_shape((rows, cols), &w).expect("shape"),
        );
        case(
            &mut g,
            BenchmarkId::new(name, "f32"),
            rows * cols * 4,
            || (),
            |_, _| {
                let c = ndarray::ArrayViewMut2::from_shape((m, rows), &mut out).expect("shape");
                rbe_runtime::kernels::gemm::gemm(1.0, a, b.t(), 0.0, c).expect("shapes match")
            },
        );
        let packed = rbe_runtime::kernels::packed::PackedMatrix::new(b.t());
        case(
            &mut g,
            BenchmarkId::new(name, "f32 packed"),
            rows * cols * 4,
            || (),
            |_, _| {
                packed.matmul(black_box(&x), m, (&mut out[..]).into(), None, Activation::None).expect("shapes match");
            },
        );
        for (mode, label) in [(Activations::Exact, "q4"), (Activations::Int8, "q4-int8")] {
            case(
                &mut g,
                BenchmarkId::new(name, label),
                lazy_bytes(rows, cols, "q4"),
                || encoded(&w, rows, cols, "q4"),
                |t, _| {
                    t.matmul_with(black_box(&x), m, (&mut out[..]).into(), mode).expect("shapes match");
                },
            );
        }
    }
    g.finish();
}

/// GPT-2 small's causal self-attention over a prompt of 128 and of 512 tokens (12 heads of
/// 64), the queries, keys and values read in place from the fused QKV projection `[1, T,
/// 2304]` as the exports' head split leaves them.
fn attention_prompt(c: &mut Criterion) {
    use ndarray::{Array4, ArrayView4, ShapeBuilder};
    use rbe_runtime::kernels::attention::{attention, Attention};
    let mut g = c.benchmark_group("attention");
    for t in [128, 512] {
        let (heads, d) = (12, 64);
        let width = 3 * heads * d;
        let qkv = gaussian(t * width, 5);
        // Part `i` of each row, as [B, H, T, D]: heads d apart, positions a row apart.
        let part = |i: usize| ArrayView4::from_shape((1, heads, t, d).strides((t * width, d, width, 1)), &qkv[i * heads * d..]).expect("in bounds");
        let (q, k, v) = (part(0), part(1), part(2));
        let mask = Array4::from_shape_fn((1, 1, t, t), |(_, _, i, j)| if j <= i { 0.0 } else { f32::MIN });
        let mask = mask.broadcast((1, heads, t, t)).expect("broadcast");
        g.throughput(Throughput::Elements((heads * t * (t + 1) / 2 * 2 * d) as u64));
        g.bench_function(format!("prompt{t}"), |b| {
            b.iter(|| {
                let out = attention(&Attention { q, k, v, mask: Some(mask), scale: 0.125, zero_nan: false }).expect("shapes agree");
                black_box(out)
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    attention_prompt,
    copy_bandwidth,
    gemv_hot,
    gemv_cold,
    gather,
    gemm_m128
);
criterion_main!(benches);
