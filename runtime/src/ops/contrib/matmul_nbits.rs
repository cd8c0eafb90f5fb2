//! `MatMulNBits`: `Y = A · dequant(B)ᵀ (+ bias)` with `B` block-quantized along `K` (see
//! [`crate::kernels::blockq`]): `B` is `[N, ceil(K / block_size), block_size * bits / 8]`,
//! scales and zero points `[N, blocks]` (or flat). Constant weights are checked and taken over
//! at load (the codes stay shared with the initializer); the product decodes them panel by
//! panel. Inputs and checks follow onnxruntime's CPU kernel; `accuracy_level` is ignored
//! (float32 math), a `g_idx` other than the natural block order is refused.

use std::borrow::Cow;

use bytes::Bytes;

use super::blocks::{block_rows, check_block_bits, constant_tensor, u8_constant, u8_parts};
use super::{f32_values, DOMAIN};
use crate::error::{op_err, Result};
use crate::kernels::activation::Activation;
use crate::kernels::blockq::{BlockRows, BlockShape};
use crate::kernels::epilogue::bias_activation;
use crate::ops::cast::cast;
use crate::ops::common::model_err;
use crate::ops::rbe::linear_rows;
use crate::ops::{input, optional_input, Kernel, OpContext, Registry};
use crate::tensor::{DType, Tensor};

pub(super) fn register(reg: &mut Registry) {
    reg.register(DOMAIN, "MatMulNBits", 1, factory);
}

/// Input positions.
const B: usize = 1;
const SCALES: usize = 2;
const ZERO_POINTS: usize = 3;
const G_IDX: usize = 4;
const BIAS: usize = 5;

/// The node's attributes.
#[derive(Clone, Copy)]
struct Params {
    k: usize,
    n: usize,
    block: usize,
    bits: u8,
}

/// The dequantized weight: blocks, or the empty `B` onnxruntime accepts for an omitted
/// projection (`Y` is then the bias, or zeros).
#[derive(Clone)]
enum Weight {
    Blocks(BlockRows),
    Empty,
}

/// A weight with the dtype of its scales (which `A` must have).
#[derive(Clone)]
struct Prepared {
    weight: Weight,
    dtype: DType,
}

impl Params {
    fn k_blocks(&self) -> usize {
        self.k.div_ceil(self.block)
    }

    fn blob(&self) -> usize {
        self.block * self.bits as usize / 8
    }

    /// The weight from `B`'s shape and bytes, the scales and the zero points, each checked
    /// against the attributes.
    fn prepare(&self, b_shape: &[usize], b: Bytes, scales: &Tensor, zp: Option<&Tensor>) -> Result<Prepared> {
        let (n, kb) = (self.n, self.k_blocks());
        let packed = [n, kb, self.blob()];
        let dtype = scales.dtype();
        let dims_fit = b_shape.len() == 3 && b_shape.iter().zip(&packed).all(|(&d, &p)| d == p || d == 0);
        if !dims_fit || (b_shape != packed && !b.is_empty()) {
            return Err(op_err(format!("B has shape {b_shape:?}, expected {packed:?}")));
        }
        if b_shape != packed {
            return Ok(Prepared { weight: Weight::Empty, dtype });
        }
        if !matches!(dtype, DType::F32 | DType::F16) {
            return Err(op_err(format!("scales must be float32 or float16, got {dtype}")));
        }
        check_shape(scales, n, kb, "scales")?;
        if let Some(zp) = zp {
            if zp.dtype() == DType::U8 {
                check_shape(zp, n, (kb * self.bits as usize).div_ceil(8), "packed zero_points")?;
            } else if zp.dtype() != dtype {
                return Err(op_err(format!("zero_points are {} but scales {dtype}", zp.dtype())));
            } else {
                check_shape(zp, n, kb, "zero_points")?;
            }
        }
        let shape = BlockShape { rows: n, cols: self.k, block: self.block, bits: self.bits, row_bytes: kb * self.blob() };
        Ok(Prepared { weight: Weight::Blocks(block_rows(shape, b, scales, zp)?), dtype })
    }

    /// Errors unless `g_idx` maps every position of `K` to its own block (the order the
    /// weight is stored in; onnxruntime's reordering is not supported).
    fn check_g_idx(&self, g_idx: &Tensor) -> Result<()> {
        let ids = g_idx.array::<i32>().map_err(|_| op_err(format!("g_idx must be int32, got {}", g_idx.dtype())))?;
        if ids.ndim() != 1 || (ids.len() != self.k && ids.len() != self.k_blocks() * self.block) {
            return Err(op_err(format!("g_idx has shape {:?}, expected [{}]", ids.shape(), self.k)));
        }
        match ids.iter().enumerate().find(|&(i, &g)| g as i64 != (i / self.block) as i64) {
            None => Ok(()),
            Some((i, g)) => Err(op_err(format!(
                "g_idx[{i}] = {g}: only the natural block order (position / block_size) is supported"
            ))),
        }
    }
}

/// Errors unless `t` is `[rows * cols]` or `[rows, cols]`.
fn check_shape(t: &Tensor, rows: usize, cols: usize, what: &str) -> Result<()> {
    if t.shape() == [rows * cols] || t.shape() == [rows, cols] {
        return Ok(());
    }
    Err(op_err(format!("{what} has shape {:?}, expected [{rows}, {cols}]", t.shape())))
}

struct MatMulNBits {
    params: Params,
    /// The weight, when `B`, scales and zero points are constants.
    prepared: Option<Prepared>,
    /// Whether a constant `g_idx` was checked at load.
    g_idx_checked: bool,
}

fn factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let attr = |name: &str| {
        let v = ctx.attrs.require_int(name)?;
        usize::try_from(v).ok().filter(|&v| v > 0).ok_or_else(|| model_err(ctx, format!("{name} = {v} must be positive")))
    };
    let (k, n) = (attr("K")?, attr("N")?);
    let (block, bits) = check_block_bits(ctx.attrs.require_int("block_size")?, ctx.attrs.int_or("bits", 4))
        .map_err(|e| model_err(ctx, e))?;
    let params = Params { k, n, block, bits };
    let named = |i: usize| ctx.node.input.get(i).is_some_and(|name| !name.is_empty());
    let b = u8_constant(ctx, B, "B").map_err(|e| model_err(ctx, e))?;
    let zp = constant_tensor(ctx, ZERO_POINTS)?;
    let prepared = match (b, ctx.constant(SCALES)) {
        (Some((shape, bytes)), Some(scales)) if !named(ZERO_POINTS) || zp.is_some() => {
            Some(params.prepare(&shape, bytes, scales, zp.as_ref()).map_err(|e| model_err(ctx, e))?)
        }
        _ => None,
    };
    let g_idx = ctx.constant(G_IDX);
    if let Some(g) = g_idx {
        params.check_g_idx(g).map_err(|e| model_err(ctx, e))?;
    }
    Ok(Box::new(MatMulNBits { params, prepared, g_idx_checked: g_idx.is_some() }))
}

impl MatMulNBits {
    /// The prepared weight, or one built from this run's inputs.
    fn weight<'a>(&'a self, inputs: &[Option<&Tensor>]) -> Result<Cow<'a, Prepared>> {
        if let Some(p) = &self.prepared {
            return Ok(Cow::Borrowed(p));
        }
        let (shape, bytes) = u8_parts(input(inputs, B)?, "B")?;
        let scales = input(inputs, SCALES).map_err(|_| op_err("missing scales (input #2)"))?;
        self.params.prepare(&shape, bytes, scales, optional_input(inputs, ZERO_POINTS)).map(Cow::Owned)
    }
}

impl Kernel for MatMulNBits {
    fn absorbs(&self, i: usize) -> bool {
        (self.prepared.is_some() && (B..=ZERO_POINTS).contains(&i)) || (self.g_idx_checked && i == G_IDX)
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let a = input(inputs, 0)?;
        let prepared = self.weight(inputs)?;
        if a.dtype() != prepared.dtype {
            return Err(op_err(format!("A is {} but the scales are {}", a.dtype(), prepared.dtype)));
        }
        if let Some(g) = optional_input(inputs, G_IDX) {
            self.params.check_g_idx(g)?;
        }
        let n = self.params.n;
        let bias = match optional_input(inputs, BIAS) {
            Some(b) if b.dtype() != a.dtype() || b.shape() != [n] => {
                return Err(op_err(format!("bias is {} {:?}, expected {} [{n}]", b.dtype(), b.shape(), a.dtype())))
            }
            Some(b) => Some(f32_values(b, "bias")?),
            None => None,
        };
        let y = linear_rows(&cast(a, DType::F32), self.params.k, n, |x, m, out| {
            let out = match &prepared.weight {
                Weight::Blocks(w) => w.matmul(x, m, out)?,
                Weight::Empty => out.filled(0.0),
            };
            bias_activation(out, n, bias.as_deref(), Activation::None);
            Ok(out)
        })?;
        Ok(vec![cast(&y, a.dtype())])
    }
}

#[cfg(test)]
mod tests {
    use half::f16;

    use crate::ops::testutil::{assert_close, assert_err, node, t, NodeSpec};
    use crate::tensor::Tensor;

    /// A 4-bit MatMulNBits node with K = 40, N = 2, blocks of 32 (two blocks a row, one short).
    fn q4(bits: i64) -> NodeSpec {
        node("MatMulNBits").domain("com.microsoft").opset(1).int("K", 40).int("N", 2).int("bits", bits).int("block_size", 32)
    }

    /// Row 0: codes 9 (block 0) and 10 (block 1); row 1: codes 8 and 0.
    fn weight() -> (Tensor, Tensor) {
        let mut b = vec![0x99u8; 16];
        b.extend([0xaa; 16]);
        b.extend([0x88; 16]);
        b.extend([0x00; 16]);
        (t(&[2, 2, 16], &b), t(&[4], &[0.5f32, 0.25, 1.0, 2.0]))
    }

    #[test]
    fn decodes_with_the_default_zero_point_and_adds_the_bias() {
        let (b, scales) = weight();
        let a = t(&[1, 40], &[1.0f32; 40]);
        // Row 0: 32 x (9-8)·0.5 + 8 x (10-8)·0.25 = 20; row 1: 0 + 8 x (0-8)·2 = -128.
        let y = q4(4).run1(&[&a, &b, &scales]).unwrap();
        assert_close(&y, &[1, 2], &[20.0, -128.0]);
        let bias = t(&[2], &[1.0f32, -1.0]);
        let y = q4(4).run_opt(&[Some(&a), Some(&b), Some(&scales), None, None, Some(&bias)]).unwrap();
        assert_close(&y[0], &[1, 2], &[21.0, -129.0]);
        // Packed zero points: row 0 blocks (9, 10), row 1 (8, 0).
        let zp = t(&[2, 1], &[0xa9u8, 0x08]);
        let y = q4(4).run1(&[&a, &b, &scales, &zp]).unwrap();
        assert_close(&y, &[1, 2], &[0.0, 0.0]);
    }

    #[test]
    fn constant_weights_are_taken_over_at_load() {
        let (b, scales) = weight();
        let spec = q4(4);
        let kernel = spec.build_with(vec![None, Some(&b), Some(&scales)]).unwrap();
        assert!(kernel.absorbs(1) && kernel.absorbs(2) && !kernel.absorbs(0) && !kernel.absorbs(5));
        let a = t(&[2, 40], &[1.0f32; 80]);
        let y = kernel.run(&[Some(&a), None, None]).unwrap();
        assert_close(&y[0], &[2, 2], &[20.0, -128.0, 20.0, -128.0]);
        let bad = t(&[2, 2, 15], &[0u8; 60]);
        assert_err(spec.build_with(vec![None, Some(&bad), Some(&scales)]).map(|_| ()), "B has shape");
    }

    #[test]
    fn uint8_initializers_held_as_shared_bytes_are_taken_over_too() {
        use crate::onnx::SharedBytes;
        use crate::ops::testutil::values;
        let (b, scales) = weight();
        let shared = |t: &Tensor| { let (shape, v) = values::<u8>(t); SharedBytes { shape, bytes: v.into() } };
        let zp = t(&[2, 1], &[0xa9u8, 0x08]);
        let (b_bytes, zp_bytes) = (shared(&b), shared(&zp));
        let kernel = q4(4)
            .build_with_shared(vec![None, None, Some(&scales), None], vec![None, Some(&b_bytes), None, Some(&zp_bytes)])
            .unwrap();
        assert!((1..=3).all(|i| kernel.absorbs(i)), "B, scales and zero points must be taken over at load");
        let a = t(&[1, 40], &[1.0f32; 40]);
        assert_close(&kernel.run(&[Some(&a), None, None, None]).unwrap()[0], &[1, 2], &[0.0, 0.0]);
    }

    #[test]
    fn float16_inputs_give_float16() {
        let (b, _) = weight();
        let scales = t(&[2, 2], &[0.5f32, 0.25, 1.0, 2.0].map(f16::from_f32));
        let a = t(&[40], &[f16::from_f32(1.0); 40]);
        let y = q4(4).run1(&[&a, &b, &scales]).unwrap();
        assert_eq!(y, t(&[2], &[f16::from_f32(20.0), f16::from_f32(-128.0)]));
        assert_err(q4(4).run1(&[&t(&[40], &[1.0f32; 40]), &b, &scales]), "A is float32 but the scales are float16");
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let (b, scales) = weight();
        let a = t(&[1, 40], &[1.0f32; 40]);
        assert_err(q4(3).build().map(|_| ()), "bits must be 2, 4 or 8");
        assert_err(q4(4).int("block_size", 24).build().map(|_| ()), "block_size");
        assert_err(q4(4).run1(&[&a, &t(&[2, 2, 17], &[0u8; 68]), &scales]), "B has shape [2, 2, 17], expected [2, 2, 16]");
        assert_err(q4(4).run_opt(&[Some(&a), Some(&b), None]), "missing scales");
        assert_err(q4(4).run1(&[&a, &b, &t(&[3], &[1.0f32; 3])]), "scales has shape");
        assert_err(q4(4).run1(&[&a, &b, &scales, &t(&[2, 2], &[0u8; 4])]), "packed zero_points");
        assert_err(q4(4).run1(&[&t(&[1, 39], &[1.0f32; 39]), &b, &scales]), "must end in 40");
        let bias = t(&[3], &[0.0f32; 3]);
        assert_err(q4(4).run_opt(&[Some(&a), Some(&b), Some(&scales), None, None, Some(&bias)]), "bias");
    }

    #[test]
    fn only_the_natural_g_idx_is_accepted() {
        let (b, scales) = weight();
        let a = t(&[1, 40], &[1.0f32; 40]);
        let natural: Vec<i32> = (0..40).map(|i| i / 32).collect();
        let y = q4(4).run_opt(&[Some(&a), Some(&b), Some(&scales), None, Some(&t(&[40], &natural))]).unwrap();
        assert_close(&y[0], &[1, 2], &[20.0, -128.0]);
        let mut shuffled = natural.clone();
        shuffled.swap(0, 39);
        assert_err(q4(4).run_opt(&[Some(&a), Some(&b), Some(&scales), None, Some(&t(&[40], &shuffled))]), "g_idx[0] = 1");
    }

    #[test]
    fn an_empty_weight_gives_the_bias() {
        let a = t(&[2, 40], &[1.0f32; 80]);
        let y = q4(4)
            .run_opt(&[Some(&a), Some(&t(&[2, 0, 16], &[0u8; 0])), Some(&t(&[0], &[0f32; 0])), None, None, Some(&t(&[2], &[3.0f32, 4.0]))])
            .unwrap();
        assert_close(&y[0], &[2, 2], &[3.0, 4.0, 3.0, 4.0]);
    }
}
