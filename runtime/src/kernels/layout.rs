//! Copying strided arrays (transposed, sliced, broadcast views) into row-major order.

use ndarray::{ArrayViewD, Ix1, Ix2};

/// The elements of `view` in row-major order. Works matrix by matrix over the leading dims,
/// copying each contiguous row as one slice, so a transposed view costs a strided pass rather
/// than an index computation per element.
pub fn to_row_major<T: Copy>(view: ArrayViewD<'_, T>) -> Vec<T> {
    let mut out = Vec::with_capacity(view.len());
    append_row_major(view, &mut out);
    out
}

fn append_row_major<T: Copy>(view: ArrayViewD<'_, T>, out: &mut Vec<T>) {
    if let Some(s) = view.as_slice() {
        return out.extend_from_slice(s);
    }
    if let Ok(v) = view.view().into_dimensionality::<Ix1>() {
        return out.extend(v.iter().copied());
    }
    if let Ok(m) = view.view().into_dimensionality::<Ix2>() {
        for row in m.rows() {
            match row.as_slice() {
                Some(s) => out.extend_from_slice(s),
                None => out.extend(row.iter().copied()),
            }
        }
        return;
    }
    // Rank 3 and up (rank 0 is always contiguous).
    view.outer_iter().for_each(|sub| append_row_major(sub, out));
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, ArrayD, IxDyn};

    #[test]
    fn permuted_sliced_and_broadcast_views_come_out_row_major() {
        let a = ArrayD::from_shape_vec(IxDyn(&[2, 3, 4]), (0..24).collect::<Vec<i32>>()).unwrap();
        let perm = a.view().permuted_axes(IxDyn(&[2, 0, 1]));
        assert_eq!(to_row_major(perm.view()), perm.iter().copied().collect::<Vec<_>>());
        let sliced = a.slice(s![.., 1.., ..;-2]).into_dyn();
        assert_eq!(to_row_major(sliced.view()), sliced.iter().copied().collect::<Vec<_>>());
        let row = a.slice(s![0, 0, ..]).into_dyn();
        let wide = row.broadcast(IxDyn(&[3, 4])).unwrap();
        assert_eq!(to_row_major(wide.view()), wide.iter().copied().collect::<Vec<_>>());
        let scalar = ArrayD::from_elem(IxDyn(&[]), 5);
        assert_eq!(to_row_major(scalar.view()), vec![5]);
        let column = a.slice(s![.., 0, 0]).into_dyn();
        assert_eq!(to_row_major(column.view()), vec![0, 12]);
    }
}
