//! MatMulInteger: int8/uint8 matrix product with zero points, accumulated in int32.

use super::broadcast::broadcast_shape;
use super::cast::cast;
use super::common::{checked_len, contiguous, from_shape_vec, kernel};
use super::{input, optional_input, Registry};
use crate::error::{op_err, Result};
use crate::tensor::{DType, Tensor};

/// The values of an int8/uint8 tensor as i32.
fn int_values(t: &Tensor, what: &str) -> Result<Vec<i32>> {
    match t.dtype() {
        DType::I8 | DType::U8 => Ok(contiguous(cast(t, DType::I32).array::<i32>()?).into_owned()),
        other => Err(op_err(format!("MatMulInteger: {what} must be int8 or uint8, got {other}"))),
    }
}

/// A zero point: a scalar, or one value per row (A) or column (B) of length `n`.
fn zero_points(zp: Option<&Tensor>, data: &Tensor, n: usize, what: &str) -> Result<Vec<i32>> {
    let Some(zp) = zp else { return Ok(vec![0; n]) };
    if zp.dtype() != data.dtype() {
        return Err(op_err(format!("MatMulInteger: {what} zero point is {}, data is {}", zp.dtype(), data.dtype())));
    }
    let v = int_values(zp, what)?;
    match (zp.rank(), v.len()) {
        (_, 1) => Ok(vec![v[0]; n]),
        (1, len) if len == n => Ok(v),
        _ => Err(op_err(format!("MatMulInteger: {what} zero point of shape {:?} needs 1 or {n} values", zp.shape()))),
    }
}

/// The row-major offset in a batch of shape `dims` (broadcast against `out`) of batch `b`.
fn batch_offset(b: usize, out: &[usize], dims: &[usize]) -> usize {
    let (mut rest, mut offset, mut stride) = (b, 0, 1);
    for (&o, &d) in out.iter().rev().zip(dims.iter().rev().chain(std::iter::repeat(&1))) {
        let i = rest % o;
        rest /= o;
        offset += (i % d) * stride;
        stride *= d;
    }
    offset
}

fn matmul_integer(a: &Tensor, b: &Tensor, a_zp: Option<&Tensor>, b_zp: Option<&Tensor>) -> Result<Tensor> {
    if a.rank() < 2 || b.rank() < 2 {
        return Err(op_err(format!("MatMulInteger needs rank >= 2 operands, got {:?} and {:?}", a.shape(), b.shape())));
    }
    let (m, k) = (a.shape()[a.rank() - 2], a.shape()[a.rank() - 1]);
    let (k2, n) = (b.shape()[b.rank() - 2], b.shape()[b.rank() - 1]);
    if k != k2 {
        return Err(op_err(format!("MatMulInteger: inner dims differ in {:?} x {:?}", a.shape(), b.shape())));
    }
    let (a_batch, b_batch) = (&a.shape()[..a.rank() - 2], &b.shape()[..b.rank() - 2]);
    let batch = broadcast_shape(a_batch, b_batch)?;
    let mut out_shape = batch.clone();
    out_shape.extend([m, n]);
    checked_len(&out_shape)?;
    let (av, bv) = (int_values(a, "A")?, int_values(b, "B")?);
    let (azp, bzp) = (zero_points(a_zp, a, m, "A")?, zero_points(b_zp, b, n, "B")?);
    let batches: usize = batch.iter().product();
    let mut out = vec![0i32; batches * m * n];
    for (bi, y) in out.chunks_mut((m * n).max(1)).enumerate().take(batches) {
        let a0 = batch_offset(bi, &batch, a_batch) * m * k;
        let b0 = batch_offset(bi, &batch, b_batch) * k * n;
        for r in 0..m {
            for c in 0..n {
                let dot = (0..k).fold(0i32, |acc, j| {
                    acc.wrapping_add((av[a0 + r * k + j] - azp[r]) * (bv[b0 + j * n + c] - bzp[c]))
                });
                y[r * n + c] = dot;
            }
        }
    }
    Ok(from_shape_vec(&out_shape, out)?.into())
}

/// Registers MatMulInteger.
pub(super) fn register(reg: &mut Registry) {
    reg.register("", "MatMulInteger", 10, |_| {
        kernel(|inputs| {
            let (a, b) = (input(inputs, 0)?, input(inputs, 1)?);
            Ok(vec![matmul_integer(a, b, optional_input(inputs, 2), optional_input(inputs, 3))?])
        })
    });
}

#[cfg(test)]
mod tests {
    use crate::ops::testutil::{assert_err, node, t, values};

    #[test]
    fn zero_points_and_batch_broadcast() {
        let a = t(&[2, 2], &[11u8, 7, 3, 10]);
        let b = t(&[2, 1], &[1u8, 2]);
        let y = node("MatMulInteger").opset(10).run1(&[&a, &b, &t(&[], &[1u8]), &t(&[1], &[2u8])]).unwrap();
        assert_eq!(values::<i32>(&y), (vec![2, 1], vec![-10, -2]));
        let a = t(&[2, 1, 2], &[1i8, 2, -3, 4]);
        let b = t(&[2, 2], &[1i8, 0, 0, 1]);
        let y = node("MatMulInteger").opset(10).run1(&[&a, &b]).unwrap();
        assert_eq!(values::<i32>(&y), (vec![2, 1, 2], vec![1, 2, -3, 4]));
    }

    #[test]
    fn bad_operands_are_errors() {
        let a = t(&[2, 2], &[1u8; 4]);
        assert_err(node("MatMulInteger").opset(10).run1(&[&a, &t(&[3, 1], &[1u8; 3])]), "inner dims");
        assert_err(node("MatMulInteger").opset(10).run1(&[&a, &t(&[2, 1], &[1.0f32; 2])]), "int8 or uint8");
        assert_err(node("MatMulInteger").opset(10).run1(&[&a, &t(&[2], &[1u8; 2])]), "rank >= 2");
        assert_err(node("MatMulInteger").opset(10).run1(&[&a, &a, &t(&[3], &[1u8; 3])]), "needs 1 or 2");
        assert_err(node("MatMulInteger").opset(10).run1(&[&a, &a, &t(&[], &[1i8])]), "zero point is");
    }
}
