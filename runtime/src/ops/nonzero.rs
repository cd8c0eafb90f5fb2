//! NonZero: the indices of the non-zero elements, one row per dimension (int64 `[rank, n]`).

use super::common::{contiguous, from_shape_vec, kernel};
use super::{input, Registry};
use crate::error::Result;
use crate::tensor::{Array, Element, Tensor};
use crate::with_array;

fn nonzero_typed<T: Element>(a: &Array<T>) -> Result<Tensor> {
    let shape = a.shape();
    let data = contiguous(a);
    let hits: Vec<usize> = data.iter().enumerate().filter(|(_, v)| **v != T::default()).map(|(i, _)| i).collect();
    let mut out = vec![0i64; shape.len() * hits.len()];
    for (k, &flat) in hits.iter().enumerate() {
        let mut rest = flat;
        for d in (0..shape.len()).rev() {
            out[d * hits.len() + k] = (rest % shape[d]) as i64;
            rest /= shape[d];
        }
    }
    Ok(from_shape_vec(&[shape.len(), hits.len()], out)?.into())
}

/// Registers NonZero.
pub(super) fn register(reg: &mut Registry) {
    reg.register("", "NonZero", 9, |_| {
        kernel(|inputs| Ok(vec![with_array!(input(inputs, 0)?, a => nonzero_typed(a))?]))
    });
}

#[cfg(test)]
mod tests {
    use crate::ops::testutil::{node, t, values};

    #[test]
    fn nonzero_lists_coordinates_by_dimension() {
        let x = t(&[2, 2], &[1.0f32, 0.0, 0.0, 3.0]);
        assert_eq!(values::<i64>(&node("NonZero").run1(&[&x]).unwrap()), (vec![2, 2], vec![0, 1, 0, 1]));
        let b = t(&[3], &[false, true, true]);
        assert_eq!(values::<i64>(&node("NonZero").run1(&[&b]).unwrap()), (vec![1, 2], vec![1, 2]));
        let none = t(&[2], &[0i64, 0]);
        assert_eq!(values::<i64>(&node("NonZero").run1(&[&none]).unwrap()).0, vec![1, 0]);
    }
}
