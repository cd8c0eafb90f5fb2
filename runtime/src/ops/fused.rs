//! The fused `ai.rbe` ops that the graph's fusion pass writes: `RbeLinear` (a float matmul
//! with its bias and activation) and `RbeAttention` (the core of scaled dot-product
//! attention); and the standard `Gelu`, which computes like their activation. The numeric
//! work is in [`crate::kernels`].

use ndarray::{ArrayView4, Ix2, Ix4, IxDyn};

use super::broadcast::zip_broadcast;
use super::cast::cast;
use super::common::{kernel, model_err};
use super::rbe::{absorbs_linear_input, activation_attr, add_residual, linear_rows, DOMAIN};
use super::{input, optional_input, Kernel, OpContext, Registry};
use crate::error::{op_err, Result};
use crate::kernels::activation::Activation;
use crate::kernels::attention::{attention, Attention};
use crate::kernels::packed::PackedMatrix;
use crate::tensor::{DType, Tensor};

pub(super) fn register(reg: &mut Registry) {
    reg.register(DOMAIN, "RbeLinear", 1, linear);
    reg.register(DOMAIN, "RbeAttention", 1, attention_factory);
    reg.register("", "Gelu", 20, gelu);
}

/// The standard `Gelu` (opset 20): `approximate` "none" (erf form) or "tanh".
fn gelu(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let activation = match ctx.attrs.string("approximate")?.as_deref() {
        None | Some("none") => Activation::GeluErf,
        Some("tanh") => Activation::GeluTanh,
        Some(other) => return Err(model_err(ctx, format!("unknown approximate '{other}'"))),
    };
    kernel(move |inputs| {
        let x = input(inputs, 0)?;
        let y: Tensor = cast(x, DType::F32).as_f32()?.mapv(|v| activation.apply(v)).into();
        Ok(vec![if x.dtype() == DType::F32 { y } else { cast(&y, x.dtype()) }])
    })
}

/// `Y = act(X · W + bias)` for a constant float32 or float16 `W` (`[K, N]`, or `[N, K]` with
/// `trans_b`), widened and packed once for the product kernel. A float16 `X` is widened per run
/// and `Y` rounded back to float16 (one rounding, where the unfused graph rounded after the
/// product and again after the bias). A residual folded in by fusion is added last
/// ([`add_residual`]).
struct RbeLinear {
    weight: PackedMatrix,
    bias: Option<Vec<f32>>,
    activation: Activation,
}

fn linear(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let w = ctx.constant(1).ok_or_else(|| model_err(ctx, "the weight must be a constant"))?;
    if !matches!(w.dtype(), DType::F32 | DType::F16) {
        return Err(model_err(ctx, format!("the weight must be float32 or float16, got {}", w.dtype())));
    }
    let wide = cast(w, DType::F32);
    let weight = wide.as_f32()?;
    let weight = weight
        .view()
        .into_dimensionality::<Ix2>()
        .map_err(|_| model_err(ctx, format!("the weight must be 2-D, got {:?}", w.shape())))?;
    let weight = if ctx.attrs.int_or("trans_b", 0) != 0 { weight.reversed_axes() } else { weight };
    let n = weight.ncols();
    let bias = match (ctx.constant(2), ctx.node.input.get(2).filter(|n| !n.is_empty())) {
        (Some(b), _) if b.len() == n && b.dtype() == w.dtype() => Some(cast(b, DType::F32).as_f32()?.iter().copied().collect()),
        (Some(b), _) if b.len() == n => return Err(model_err(ctx, format!("the bias is {}, the weight {}", b.dtype(), w.dtype()))),
        (Some(b), _) => return Err(model_err(ctx, format!("bias of shape {:?} for {n} outputs", b.shape()))),
        (None, Some(_)) => return Err(model_err(ctx, "the bias must be a constant")),
        (None, None) => None,
    };
    Ok(Box::new(RbeLinear { weight: PackedMatrix::new(weight), bias, activation: activation_attr(ctx)? }))
}

impl Kernel for RbeLinear {
    fn absorbs(&self, input: usize) -> bool {
        absorbs_linear_input(input)
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let (k, n) = (self.weight.rows(), self.weight.cols());
        let x = input(inputs, 0)?;
        let y = linear_rows(&cast(x, DType::F32), k, n, |x, m, out| {
            self.weight.matmul(x, m, out, self.bias.as_deref(), self.activation)
        })?;
        let y = if x.dtype() == DType::F16 { cast(&y, DType::F16) } else { y };
        Ok(vec![add_residual(y, inputs)?])
    }
}

/// A float32 tensor as a rank-4 view.
fn rank4<'a>(t: &'a Tensor, what: &str) -> Result<ArrayView4<'a, f32>> {
    let a = t.as_f32()?.view();
    let shape = a.shape().to_vec();
    a.into_dimensionality::<Ix4>().map_err(|_| op_err(format!("{what} must have rank 4, got shape {shape:?}")))
}

/// A rank-4 float32 tensor with its axes permuted (a view: no copy).
fn permuted(t: &Tensor, perm: [usize; 4], what: &str) -> Result<Tensor> {
    rank4(t, what)?;
    Ok(Tensor::F32(t.as_f32()?.clone().permuted_axes(IxDyn(&perm))))
}

/// `x` times the optional scale input `s`: a one-element scale joins `scale` (applied to the
/// scores), any other shape multiplies `x` elementwise, as the Mul it replaces did.
fn scaled(x: Tensor, s: Option<&Tensor>, scale: &mut f32) -> Result<Tensor> {
    match s {
        None => Ok(x),
        Some(s) if s.len() == 1 => {
            *scale *= s.scalar_f64()? as f32;
            Ok(x)
        }
        Some(s) => Ok(zip_broadcast(x.as_f32()?, cast(s, DType::F32).as_f32()?, |a, b| a * b)?.into()),
    }
}

/// `softmax(q_scale·k_scale·Q·Kᵀ + mask)·V`. Inputs: Q `[B,H,T,D]`, K (permuted by
/// `key_perm` to `[B,H,S,D]`), V `[B,H,S,Dv]`, then optional: an additive mask broadcastable
/// to `[B,H,T,S]`, and the factors the graph multiplied Q and Kᵀ by. `zero_nan` turns NaN
/// probabilities into 0.
fn attention_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let perm = ctx.attrs.ints("key_perm").unwrap_or(vec![0, 1, 2, 3]);
    let mut sorted = perm.clone();
    sorted.sort_unstable();
    if sorted != [0, 1, 2, 3] {
        return Err(model_err(ctx, format!("key_perm {perm:?} is not a permutation of 4 axes")));
    }
    let key_perm = [perm[0] as usize, perm[1] as usize, perm[2] as usize, perm[3] as usize];
    let zero_nan = ctx.attrs.int_or("zero_nan", 0) != 0;
    kernel(move |inputs| {
        let q = input(inputs, 0)?;
        let dtype = q.dtype();
        let up = |t: &Tensor| if t.dtype() == DType::F32 { t.clone() } else { cast(t, DType::F32) };
        let [q, k, v] = [q, input(inputs, 1)?, input(inputs, 2)?].map(up);
        let mask = optional_input(inputs, 3).map(up);
        let mut scale = 1.0;
        let q = scaled(q, optional_input(inputs, 4), &mut scale)?;
        let kt = permuted(&permuted(&k, key_perm, "K")?, [0, 1, 3, 2], "K")?;
        let k = permuted(&scaled(kt, optional_input(inputs, 5), &mut scale)?, [0, 1, 3, 2], "K")?;
        let (q4, k4, v4) = (rank4(&q, "Q")?, rank4(&k, "K")?, rank4(&v, "V")?);
        let (b, h, t, _) = q4.dim();
        let s = k4.dim().2;
        let mask4 = match &mask {
            Some(m) => {
                let full = m.as_f32()?.broadcast(IxDyn(&[b, h, t, s])).ok_or_else(|| {
                    op_err(format!("attention mask of shape {:?} does not broadcast to {:?}", m.shape(), [b, h, t, s]))
                })?;
                Some(full.into_dimensionality::<Ix4>().map_err(|e| op_err(e.to_string()))?)
            }
            None => None,
        };
        let out = attention(&Attention { q: q4, k: k4, v: v4, mask: mask4, scale, zero_nan })?;
        // The kernel wrote [B, T, H, Dv]; the value is [B, H, T, Dv], a view of that.
        let y = permuted(&Tensor::from_vec(&[b, t, h, v4.dim().3], out)?, [0, 2, 1, 3], "attention output")?;
        Ok(vec![if dtype == DType::F32 { y } else { cast(&y, dtype) }])
    })
}
