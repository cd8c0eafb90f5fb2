//! Dense layers: MatMul, Gemm and LayerNormalization. The products run in
//! [`crate::kernels::gemm`]; float16 computes through float32.

use ndarray::{ArrayD, ArrayView2, ArrayViewD, ArrayViewMut2, Axis, Dimension, Ix2, IxDyn};
use rayon::prelude::*;

use super::broadcast::{broadcast_shape, broadcast_to};
use super::cast::cast;
use super::common::{checked_len, contiguous, from_shape_vec, kernel, normalize_axis};
use super::numeric::{not_float, pair_err, Float};
use super::{input, optional_input, Kernel, OpContext, Registry};
use crate::error::{op_err, Result};
use crate::kernels::gemm::{gemm, gemm_batch, GemmScalar, GemmTask};
use crate::kernels::isa::{multiversion, Isa};
use crate::kernels::lanes::lanes_fold;
use crate::tensor::{Array, DType, Element, Tensor};

/// The matrix at batch position `index` of a view whose leading dims are the batch.
fn matrix_at<'a, T>(view: &ArrayViewD<'a, T>, index: &[usize]) -> Result<ArrayView2<'a, T>> {
    let mut m = view.clone();
    for &i in index {
        m = m.index_axis_move(Axis(0), i);
    }
    m.into_dimensionality::<Ix2>().map_err(|e| op_err(format!("MatMul: {e}")))
}

/// numpy `matmul`: 1-D operands are promoted to matrices (and the added dim dropped after),
/// leading dims broadcast as batches.
fn matmul_typed<T: GemmScalar + Element>(a: &Array<T>, b: &Array<T>) -> Result<ArrayD<T>> {
    if a.ndim() == 0 || b.ndim() == 0 {
        return Err(op_err(format!("MatMul needs operands of rank >= 1, got {:?} and {:?}", a.shape(), b.shape())));
    }
    let a2 = if a.ndim() == 1 { a.view().insert_axis(Axis(0)) } else { a.view() };
    let b2 = if b.ndim() == 1 { b.view().insert_axis(Axis(1)) } else { b.view() };
    let (ra, rb) = (a2.ndim(), b2.ndim());
    let (m, k, n) = (a2.shape()[ra - 2], a2.shape()[ra - 1], b2.shape()[rb - 1]);
    if b2.shape()[rb - 2] != k {
        return Err(op_err(format!("MatMul of {:?} by {:?}: inner dimensions differ", a.shape(), b.shape())));
    }
    let batch = broadcast_shape(&a2.shape()[..ra - 2], &b2.shape()[..rb - 2])?;
    let batch_len = checked_len(&batch)?;
    let out_shape = [batch.as_slice(), &[m, n]].concat();
    checked_len(&out_shape)?;
    let mut out = ArrayD::from_elem(IxDyn(&out_shape), T::ZERO);
    let b_batch: usize = b2.shape()[..rb - 2].iter().product();
    let out_data = out.as_slice_mut().ok_or_else(|| op_err("MatMul: output is not contiguous"))?;
    if m * n > 0 {
        // A weight without batch dims: one product with all of `a`'s rows, when they are contiguous.
        let flat_a = a2.view().into_shape_with_order(IxDyn(&[batch_len * m, k])).ok().filter(|_| b_batch == 1);
        if let Some(flat_a) = flat_a {
            let b_mat = matrix_at(&b2, &vec![0; rb - 2])?;
            let a_mat = flat_a.into_dimensionality::<Ix2>().map_err(|e| op_err(format!("MatMul: {e}")))?;
            let c = ArrayViewMut2::from_shape((batch_len * m, n), out_data).map_err(|e| op_err(e.to_string()))?;
            gemm(T::ONE, a_mat, b_mat, T::ZERO, c)?;
        } else {
            let a_full = a2.broadcast(IxDyn(&[batch.as_slice(), &[m, k]].concat()));
            let b_full = b2.broadcast(IxDyn(&[batch.as_slice(), &[k, n]].concat()));
            let (a_full, b_full) = a_full.zip(b_full).ok_or_else(|| op_err("MatMul: batch broadcast failed"))?;
            let mut tasks = Vec::with_capacity(batch_len);
            for (index, chunk) in ndarray::indices(IxDyn(&batch)).into_iter().zip(out_data.chunks_exact_mut(m * n)) {
                tasks.push(GemmTask {
                    a: matrix_at(&a_full, index.slice())?,
                    b: matrix_at(&b_full, index.slice())?,
                    c: ArrayViewMut2::from_shape((m, n), chunk).map_err(|e| op_err(e.to_string()))?,
                });
            }
            gemm_batch(tasks)?;
        }
    }
    // Drop the dims that 1-D promotion added.
    let mut final_shape = batch;
    if a.ndim() > 1 {
        final_shape.push(m);
    }
    if b.ndim() > 1 {
        final_shape.push(n);
    }
    out.into_shape_with_order(IxDyn(&final_shape)).map_err(|e| op_err(format!("MatMul: {e}")))
}

fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(match (a, b) {
        (Tensor::F32(x), Tensor::F32(y)) => matmul_typed(x, y)?.into(),
        (Tensor::F64(x), Tensor::F64(y)) => matmul_typed(x, y)?.into(),
        _ if a.dtype().is_half() && b.dtype() == a.dtype() => {
            cast(&matmul(&cast(a, DType::F32), &cast(b, DType::F32))?, a.dtype())
        }
        _ => return Err(pair_err("float", a, b)),
    })
}

/// Gemm's attributes.
#[derive(Clone, Copy)]
struct GemmAttrs {
    trans_a: bool,
    trans_b: bool,
    alpha: f32,
    beta: f32,
}

/// A Gemm operand as a matrix view, transposed in place if asked.
fn gemm_operand<T>(x: &Array<T>, transpose: bool) -> Result<ArrayView2<'_, T>> {
    let m = x
        .view()
        .into_dimensionality::<Ix2>()
        .map_err(|_| op_err(format!("Gemm operands must be 2-D, got shape {:?}", x.shape())))?;
    Ok(if transpose { m.reversed_axes() } else { m })
}

fn gemm_typed<T: GemmScalar + Float>(a: &Array<T>, b: &Array<T>, c: Option<&Array<T>>, g: GemmAttrs) -> Result<Tensor> {
    let (a, b) = (gemm_operand(a, g.trans_a)?, gemm_operand(b, g.trans_b)?);
    let (m, n) = (a.nrows(), b.ncols());
    if b.nrows() != a.ncols() {
        return Err(op_err(format!("Gemm of {:?} by {:?}: inner dimensions differ", a.dim(), b.dim())));
    }
    let beta = T::from_f64(g.beta as f64);
    let (mut out, beta) = match c {
        Some(c) if beta != <T as GemmScalar>::ZERO => (broadcast_to(c, &[m, n])?.to_owned(), beta),
        _ => (ArrayD::from_elem(IxDyn(&[m, n]), <T as GemmScalar>::ZERO), <T as GemmScalar>::ZERO),
    };
    let view = out.view_mut().into_dimensionality::<Ix2>().map_err(|e| op_err(e.to_string()))?;
    gemm(T::from_f64(g.alpha as f64), a, b, beta, view)?;
    Ok(out.into())
}

fn gemm_op(a: &Tensor, b: &Tensor, c: Option<&Tensor>, g: GemmAttrs) -> Result<Tensor> {
    match (a, b) {
        (Tensor::F32(x), Tensor::F32(y)) => gemm_typed(x, y, c.map(|c| c.array::<f32>()).transpose()?, g),
        (Tensor::F64(x), Tensor::F64(y)) => gemm_typed(x, y, c.map(|c| c.array::<f64>()).transpose()?, g),
        _ if a.dtype().is_half() && b.dtype() == a.dtype() => {
            let up = |t: &Tensor| cast(t, DType::F32);
            Ok(cast(&gemm_op(&up(a), &up(b), c.map(up).as_ref(), g)?, a.dtype()))
        }
        _ => Err(pair_err("float", a, b)),
    }
}

fn gemm_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let g = GemmAttrs {
        trans_a: ctx.attrs.int_or("transA", 0) != 0,
        trans_b: ctx.attrs.int_or("transB", 0) != 0,
        alpha: ctx.attrs.float_or("alpha", 1.0),
        beta: ctx.attrs.float_or("beta", 1.0),
    };
    kernel(move |inputs| Ok(vec![gemm_op(input(inputs, 0)?, input(inputs, 1)?, optional_input(inputs, 2), g)?]))
}

/// `scale` or `bias` broadcast to the normalized shape, as one contiguous row.
fn per_row<T: Element>(p: &Array<T>, shape: &[usize]) -> Result<Vec<T>> {
    Ok(contiguous(&broadcast_to(p, shape)?).into_owned())
}

/// Tensors with fewer elements than this are normalized on the calling thread.
const PARALLEL_MIN_LEN: usize = 1 << 15;

/// Normalizes one row into `y`; returns its mean and `1/√(var + eps)`.
#[inline(always)]
fn normalize_row<T: Float>(row: &[T], y: &mut [T], scale: &[T], bias: Option<&[T]>, eps: T) -> (T, T) {
    let count = T::from_usize(row.len());
    let mean = lanes_fold(row, T::ZERO, |a, v| a + v, |a, b| a + b) / count;
    let var = lanes_fold(row, T::ZERO, |a, v| a + (v - mean) * (v - mean), |a, b| a + b) / count;
    let inv_std = T::ONE / (var + eps).sqrt();
    match bias {
        Some(bias) => {
            for (((o, &v), &s), &b) in y.iter_mut().zip(row).zip(scale).zip(bias) {
                *o = (v - mean) * inv_std * s + b;
            }
        }
        None => {
            for ((o, &v), &s) in y.iter_mut().zip(row).zip(scale) {
                *o = (v - mean) * inv_std * s;
            }
        }
    }
    (mean, inv_std)
}

multiversion! {
    /// [`normalize_row`] on float32, compiled for `isa` (the rows of transformer LayerNorms
    /// run at the current level's vector width).
    fn normalize_row_f32(row: &[f32], y: &mut [f32], scale: &[f32], bias: Option<&[f32]>, eps: f32) -> (f32, f32) => normalize_row::<f32>
}

/// LayerNormalization over the dims from `axis` on with `normalize` for each row; returns Y,
/// Mean and InvStdDev. Large tensors split their rows over rayon's threads.
fn layer_norm_typed<T: Float>(
    x: &Array<T>,
    scale: &Array<T>,
    bias: Option<&Array<T>>,
    axis: usize,
    epsilon: f32,
    normalize: impl Fn(&[T], &mut [T], &[T], Option<&[T]>, T) -> (T, T) + Sync,
) -> Result<[Tensor; 3]> {
    let shape = x.shape();
    let normalized = &shape[axis..];
    let n: usize = normalized.iter().product();
    let scale = per_row(scale, normalized)?;
    let bias = bias.map(|b| per_row(b, normalized)).transpose()?;
    let eps = T::from_f64(epsilon as f64);
    let data = contiguous(x);
    let mut y = vec![T::ZERO; data.len()];
    let stats: Vec<(T, T)> = if n == 0 {
        Vec::new()
    } else {
        let row = |(x, y): (&[T], &mut [T])| normalize(x, y, &scale, bias.as_deref(), eps);
        if data.len() >= PARALLEL_MIN_LEN {
            data.par_chunks_exact(n).zip(y.par_chunks_exact_mut(n)).map(row).collect()
        } else {
            data.chunks_exact(n).zip(y.chunks_exact_mut(n)).map(row).collect()
        }
    };
    let (means, inv_stds): (Vec<T>, Vec<T>) = stats.into_iter().unzip();
    let stat_shape: Vec<usize> = shape.iter().enumerate().map(|(d, &s)| if d < axis { s } else { 1 }).collect();
    Ok([
        from_shape_vec(shape, y)?.into(),
        from_shape_vec(&stat_shape, means)?.into(),
        from_shape_vec(&stat_shape, inv_stds)?.into(),
    ])
}

/// LayerNormalization of any float tensor; returns Y, Mean and InvStdDev.
pub(super) fn layer_norm(x: &Tensor, scale: &Tensor, bias: Option<&Tensor>, axis: i64, epsilon: f32) -> Result<[Tensor; 3]> {
    let axis = normalize_axis(axis, x.rank())?;
    match x {
        Tensor::F32(a) => {
            let isa = Isa::current();
            let normalize = |x: &[f32], y: &mut [f32], s: &[f32], b: Option<&[f32]>, eps| normalize_row_f32(isa, x, y, s, b, eps);
            layer_norm_typed(a, scale.as_f32()?, bias.map(Tensor::as_f32).transpose()?, axis, epsilon, normalize)
        }
        Tensor::F64(a) => layer_norm_typed(a, scale.array()?, bias.map(Tensor::array).transpose()?, axis, epsilon, normalize_row),
        _ if x.dtype().is_half() => {
            let up = |t: &Tensor| cast(t, DType::F32);
            let [y, mean, inv_std] = layer_norm(&up(x), &up(scale), bias.map(up).as_ref(), axis as i64, epsilon)?;
            Ok([cast(&y, x.dtype()), mean, inv_std])
        }
        other => Err(not_float(other)),
    }
}

fn layer_norm_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let axis = ctx.attrs.int_or("axis", -1);
    let epsilon = ctx.attrs.float_or("epsilon", 1e-5);
    let outputs = ctx.num_outputs().clamp(1, 3);
    kernel(move |inputs| {
        let out = layer_norm(input(inputs, 0)?, input(inputs, 1)?, optional_input(inputs, 2), axis, epsilon)?;
        Ok(out.into_iter().take(outputs).collect())
    })
}

/// Registers MatMul, Gemm and LayerNormalization.
pub(super) fn register(reg: &mut Registry) {
    reg.register("", "MatMul", 1, |_| kernel(|inputs| Ok(vec![matmul(input(inputs, 0)?, input(inputs, 1)?)?])));
    reg.register("", "Gemm", 7, gemm_factory);
    reg.register("", "LayerNormalization", 17, layer_norm_factory);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gemm::reference_gemm;
    use crate::ops::testutil::{assert_close, assert_err, node, t, values};
    use half::f16;
    use ndarray::Array2;

    fn seq(shape: &[usize], scale: f32) -> Tensor {
        let n: usize = shape.iter().product();
        t(shape, &(0..n).map(|i| ((i * 7 % 11) as f32 - 5.0) * scale).collect::<Vec<_>>())
    }

    /// MatMul of [batch.., m, k] by [k, n] through the reference kernel, matrix by matrix.
    fn reference_matmul(a: &Tensor, b: &Tensor) -> Vec<f32> {
        let (a, b) = (a.as_f32().unwrap(), b.as_f32().unwrap());
        let k = a.shape()[a.ndim() - 1];
        let a = a.to_shape((a.len() / k, k)).unwrap();
        let b = b.view().into_dimensionality::<Ix2>().unwrap();
        let mut c = Array2::zeros((a.nrows(), b.ncols()));
        reference_gemm(1.0, a.view(), b, 0.0, c.view_mut()).unwrap();
        c.iter().copied().collect()
    }

    #[test]
    fn matmul_2d_by_hand() {
        let a = t(&[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let b = t(&[3, 2], &[7.0f32, 8.0, 9.0, 10.0, 11.0, 12.0]);
        let y = node("MatMul").run1(&[&a, &b]).unwrap();
        assert_close(&y, &[2, 2], &[58.0, 64.0, 139.0, 154.0]);
    }

    #[test]
    fn matmul_one_d_promotions() {
        let a = t(&[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let v = t(&[3], &[1.0f32, 0.0, -1.0]);
        assert_close(&node("MatMul").run1(&[&a, &v]).unwrap(), &[2], &[-2.0, -2.0]);
        let w = t(&[2], &[1.0f32, 1.0]);
        assert_close(&node("MatMul").run1(&[&w, &a]).unwrap(), &[3], &[5.0, 7.0, 9.0]);
        assert_close(&node("MatMul").run1(&[&v, &v]).unwrap(), &[], &[2.0]);
    }

    #[test]
    fn matmul_weight_without_batch_matches_reference() {
        let x = seq(&[2, 5, 8], 0.5);
        let w = seq(&[8, 3], 0.25);
        let y = node("MatMul").run1(&[&x, &w]).unwrap();
        assert_close(&y, &[2, 5, 3], &reference_matmul(&x, &w));
    }

    #[test]
    fn matmul_batch_broadcast_and_transposed_views() {
        // [2,1,2,3] x [3,3,2] -> [2,3,2,2]; each output matrix checked against the reference.
        let a = seq(&[2, 1, 2, 3], 1.0);
        let b = seq(&[3, 3, 2], 0.5);
        let y = node("MatMul").run1(&[&a, &b]).unwrap();
        let (shape, got) = values::<f32>(&y);
        assert_eq!(shape, vec![2, 3, 2, 2]);
        let (av, bv) = (a.as_f32().unwrap(), b.as_f32().unwrap());
        for i in 0..2 {
            for j in 0..3 {
                let am = av.slice(ndarray::s![i, 0, .., ..]);
                let bm = bv.slice(ndarray::s![j, .., ..]);
                let mut want = Array2::zeros((2, 2));
                reference_gemm(1.0, am, bm, 0.0, want.view_mut()).unwrap();
                let start = (i * 3 + j) * 4;
                assert_eq!(&got[start..start + 4], want.as_slice().unwrap(), "batch {i},{j}");
            }
        }
        // A transposed (strided) operand, as Transpose produces.
        let kt = node("Transpose").ints("perm", &[0, 2, 1]).run1(&[&seq(&[3, 2, 3], 1.0)]).unwrap();
        let q = seq(&[3, 2, 3], 0.5);
        let scores = node("MatMul").run1(&[&q, &kt]).unwrap();
        let copied = kt.reshape(&[3, 3, 2]).unwrap();
        assert_eq!(scores, node("MatMul").run1(&[&q, &copied]).unwrap());
    }

    #[test]
    fn matmul_strided_input_with_a_plain_weight() {
        let a = node("Transpose").ints("perm", &[1, 0, 2]).run1(&[&seq(&[2, 3, 4], 1.0)]).unwrap();
        let w = seq(&[4, 2], 0.5);
        let y = node("MatMul").run1(&[&a, &w]).unwrap();
        let contiguous = a.reshape(&[3, 2, 4]).unwrap();
        assert_close(&y, &[3, 2, 2], &reference_matmul(&contiguous, &w));
    }

    #[test]
    fn matmul_float16_and_errors() {
        let h = |v: &[f32]| t(&[v.len()], &v.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>());
        let y = node("MatMul").run1(&[&h(&[1.0, 2.0]), &h(&[3.0, 4.0])]).unwrap();
        assert_eq!(values::<f16>(&y).1, vec![f16::from_f32(11.0)]);
        let a = seq(&[2, 3], 1.0);
        assert_err(node("MatMul").run1(&[&a, &a]), "inner dimensions differ");
        assert_err(node("MatMul").run1(&[&seq(&[2, 2, 3], 1.0), &seq(&[3, 3, 2], 1.0)]), "cannot be broadcast");
        assert_err(node("MatMul").run1(&[&a, &t(&[3], &[1i64, 2, 3])]), "got float32 and int64");
        assert_err(node("MatMul").run1(&[&Tensor::scalar(1.0f32), &a]), "rank >= 1");
    }

    #[test]
    fn gemm_transposes_scales_and_broadcasts_c() {
        let a = t(&[3, 2], &[1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0]); // [[1,2,3],[4,5,6]] transposed
        let b = t(&[2, 3], &[7.0f32, 9.0, 11.0, 8.0, 10.0, 12.0]); // [[7,8],[9,10],[11,12]] transposed
        let c = t(&[2], &[1.0f32, -1.0]);
        let y = node("Gemm").int("transA", 1).int("transB", 1).float("alpha", 0.5).float("beta", 2.0).run1(&[&a, &b, &c]).unwrap();
        assert_close(&y, &[2, 2], &[31.0, 30.0, 71.5, 75.0]);
        let a = t(&[1, 2], &[1.0f32, 2.0]);
        let b = t(&[2, 1], &[3.0f32, 4.0]);
        assert_close(&node("Gemm").run_opt(&[Some(&a), Some(&b), None]).unwrap()[0], &[1, 1], &[11.0]);
    }

    #[test]
    fn gemm_errors() {
        let a = seq(&[2, 3], 1.0);
        assert_err(node("Gemm").run1(&[&a, &a]), "inner dimensions differ");
        assert_err(node("Gemm").run1(&[&seq(&[3], 1.0), &a]), "must be 2-D");
        assert_err(node("Gemm").int("transB", 1).run1(&[&a, &a, &seq(&[3], 1.0)]), "cannot be broadcast");
    }

    #[test]
    fn layer_norm_with_and_without_bias() {
        let x = t(&[2, 2], &[1.0f32, 3.0, -1.0, 1.0]);
        let scale = t(&[2], &[1.0f32, 2.0]);
        let bias = t(&[2], &[0.5f32, 0.0]);
        let inv = 1.0 / (1.0f32 + 1e-5).sqrt();
        let y = node("LayerNormalization").run1(&[&x, &scale, &bias]).unwrap();
        assert_close(&y, &[2, 2], &[0.5 - inv, 2.0 * inv, 0.5 - inv, 2.0 * inv]);
        let out = node("LayerNormalization").outputs(3).float("epsilon", 0.0).run(&[&x, &scale]).unwrap();
        assert_eq!(out.len(), 3);
        assert_close(&out[0], &[2, 2], &[-1.0, 2.0, -1.0, 2.0]);
        assert_close(&out[1], &[2, 1], &[2.0, 0.0]);
        assert_close(&out[2], &[2, 1], &[1.0, 1.0]);
    }

    #[test]
    fn layer_norm_over_several_axes_and_errors() {
        let x = t(&[1, 2, 2], &[0.0f32, 2.0, 4.0, 6.0]);
        let scale = Tensor::scalar(1.0f32);
        let y = node("LayerNormalization").int("axis", 1).float("epsilon", 0.0).run1(&[&x, &scale]).unwrap();
        let s = 5.0f32.sqrt();
        assert_close(&y, &[1, 2, 2], &[-3.0 / s, -1.0 / s, 1.0 / s, 3.0 / s]);
        assert_err(node("LayerNormalization").int("axis", 3).run1(&[&x, &scale]), "out of range");
        assert_err(node("LayerNormalization").run1(&[&x, &t(&[3], &[1.0f32; 3])]), "cannot be broadcast");
        assert_err(node("LayerNormalization").run1(&[&x, &t(&[2], &[1i64, 1])]), "expected a float32 tensor");
    }
}
