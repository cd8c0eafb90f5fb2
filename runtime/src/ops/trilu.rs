//! Trilu: keeps the upper or lower triangle of the last two dims, zeroing the rest.

use super::common::{contiguous, from_shape_vec, input_int, kernel};
use super::{input, optional_input, Kernel, OpContext, Registry};
use crate::error::{op_err, Result};
use crate::tensor::{Array, Element, Tensor};
use crate::with_array;

fn trilu_typed<T: Element>(a: &Array<T>, upper: bool, k: i64) -> Result<Tensor> {
    let shape = a.shape();
    let (n, m) = (shape[shape.len() - 2], shape[shape.len() - 1]);
    let mut data = contiguous(a).into_owned();
    if m > 0 {
        for (r, row) in data.chunks_mut(m).enumerate() {
            let i = (r % n.max(1)) as i64;
            for (j, v) in row.iter_mut().enumerate() {
                let diagonal = j as i64 - i;
                if (upper && diagonal < k) || (!upper && diagonal > k) {
                    *v = T::default();
                }
            }
        }
    }
    Ok(from_shape_vec(shape, data)?.into())
}

fn trilu_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let upper = ctx.attrs.int_or("upper", 1) != 0;
    kernel(move |inputs| {
        let x = input(inputs, 0)?;
        if x.rank() < 2 {
            return Err(op_err(format!("Trilu needs rank >= 2, got shape {:?}", x.shape())));
        }
        let k = if optional_input(inputs, 1).is_some() { input_int(inputs, 1)? } else { 0 };
        Ok(vec![with_array!(x, a => trilu_typed(a, upper, k))?])
    })
}

/// Registers Trilu.
pub(super) fn register(reg: &mut Registry) {
    reg.register("", "Trilu", 14, trilu_factory);
}

#[cfg(test)]
mod tests {
    use crate::ops::testutil::{assert_err, node, t, values};

    #[test]
    fn upper_and_lower_with_offsets() {
        let x = t(&[3, 3], &[1i64, 2, 3, 4, 5, 6, 7, 8, 9]);
        let y = node("Trilu").run1(&[&x]).unwrap();
        assert_eq!(values::<i64>(&y).1, vec![1, 2, 3, 0, 5, 6, 0, 0, 9]);
        let y = node("Trilu").int("upper", 0).run1(&[&x]).unwrap();
        assert_eq!(values::<i64>(&y).1, vec![1, 0, 0, 4, 5, 0, 7, 8, 9]);
        let y = node("Trilu").run1(&[&x, &t(&[], &[1i64])]).unwrap();
        assert_eq!(values::<i64>(&y).1, vec![0, 2, 3, 0, 0, 6, 0, 0, 0]);
        let y = node("Trilu").int("upper", 0).run1(&[&x, &t(&[], &[-1i64])]).unwrap();
        assert_eq!(values::<i64>(&y).1, vec![0, 0, 0, 4, 0, 0, 7, 8, 0]);
    }

    #[test]
    fn batched_bool_mask_and_errors() {
        let x = t(&[2, 2, 2], &[true; 8]);
        let y = node("Trilu").int("upper", 0).run1(&[&x]).unwrap();
        assert_eq!(values::<bool>(&y), (vec![2, 2, 2], vec![true, false, true, true, true, false, true, true]));
        assert_err(node("Trilu").run1(&[&t(&[3], &[1.0f32, 2.0, 3.0])]), "rank >= 2");
        assert_err(node("Trilu").run1(&[&x, &t(&[2], &[1i64, 2])]), "must hold one integer");
    }
}
