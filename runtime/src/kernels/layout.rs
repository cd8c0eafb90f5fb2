//! Copying strided arrays (transposed, sliced, broadcast views) into row-major order, and
//! concatenating row-major slabs.

use std::mem::MaybeUninit;

use ndarray::{ArrayViewD, Axis, Ix1, Ix2, IxDyn};
use rayon::prelude::*;

/// Below this many bytes a concatenation is copied on the calling thread.
const PARALLEL_COPY_BYTES: usize = 1 << 18;

/// Row-major concatenation: for each `o in 0..outer`, slab `o` of every part in turn, a part
/// being `(slab length, row-major data of outer slabs)`. Large copies (a KV cache growing by one
/// token) are split over rayon's threads by outer index.
pub fn concat_slabs<T: Copy + Send + Sync>(outer: usize, parts: &[(usize, &[T])]) -> Vec<T> {
    let row: usize = parts.iter().map(|(len, _)| len).sum();
    let total = outer * row;
    let mut out = Vec::with_capacity(total);
    if total == 0 {
        return out;
    }
    let fill = |(o, dst): (usize, &mut [std::mem::MaybeUninit<T>])| {
        let mut at = 0;
        for &(len, data) in parts {
            dst[at..at + len].write_copy_of_slice(&data[o * len..(o + 1) * len]);
            at += len;
        }
    };
    let spare = &mut out.spare_capacity_mut()[..total];
    if total * std::mem::size_of::<T>() < PARALLEL_COPY_BYTES {
        spare.chunks_mut(row).enumerate().for_each(fill);
    } else {
        spare.par_chunks_mut(row).enumerate().for_each(fill);
    }
    // SAFETY: the `outer` chunks of `row` elements cover `..total`, and `fill` wrote every
    // element of each chunk (the parts' lengths add up to `row`).
    unsafe { out.set_len(total) };
    out
}

/// The elements of `view` in row-major order. Works matrix by matrix over the leading dims,
/// copying each contiguous row as one slice, so a transposed view costs a strided pass rather
/// than an index computation per element. Large views (the Q, K, V column slices of a fused
/// projection) are split over rayon's threads along their first axis longer than one.
pub fn to_row_major<T: Copy + Send + Sync>(view: ArrayViewD<'_, T>) -> Vec<T> {
    let total = view.len();
    let mut out = Vec::with_capacity(total);
    let dst = &mut out.spare_capacity_mut()[..total];
    let split = (0..view.ndim()).find(|&d| view.len_of(Axis(d)) > 1);
    match split {
        Some(axis) if total * std::mem::size_of::<T>() >= PARALLEL_COPY_BYTES => {
            let outer: usize = view.shape()[..=axis].iter().product();
            let flat = view.to_shape(IxDyn(&[&[outer], &view.shape()[axis + 1..]].concat()));
            if let Ok(flat) = flat.as_ref().map(|f| f.view()) {
                dst.par_chunks_mut(total / outer).enumerate().for_each(|(i, d)| {
                    fill_row_major(flat.index_axis(Axis(0), i), d);
                });
            } else {
                fill_row_major(view, dst);
            }
        }
        _ => {
            fill_row_major(view, dst);
        }
    }
    // SAFETY: `fill_row_major` writes one value per element of the view it is given, in order,
    // and the chunks above cover `..total` with the views of the leading index each.
    unsafe { out.set_len(total) };
    out
}

/// Writes the elements of `view` in row-major order to the front of `dst` (at least
/// `view.len()` long); returns how many.
fn fill_row_major<T: Copy>(view: ArrayViewD<'_, T>, dst: &mut [MaybeUninit<T>]) -> usize {
    if let Some(s) = view.as_slice() {
        dst[..s.len()].write_copy_of_slice(s);
        return s.len();
    }
    if let Ok(v) = view.view().into_dimensionality::<Ix1>() {
        dst.iter_mut().zip(v.iter()).for_each(|(d, &x)| {
            d.write(x);
        });
        return v.len();
    }
    if let Ok(m) = view.view().into_dimensionality::<Ix2>() {
        let mut at = 0;
        for row in m.rows() {
            let d = &mut dst[at..at + row.len()];
            match row.as_slice() {
                Some(s) => {
                    d.write_copy_of_slice(s);
                }
                None => d.iter_mut().zip(row.iter()).for_each(|(d, &x)| {
                    d.write(x);
                }),
            }
            at += row.len();
        }
        return at;
    }
    // Rank 3 and up (rank 0 is always contiguous).
    view.outer_iter().fold(0, |at, sub| at + fill_row_major(sub, &mut dst[at..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, ArrayD, IxDyn};

    #[test]
    fn concatenated_slabs_match_a_naive_copy_serial_and_parallel() {
        for (outer, a_len, b_len) in [(3, 4, 2), (12, 128 * 64, 64), (2, 0, 5)] {
            let a: Vec<u32> = (0..outer * a_len).map(|v| v as u32).collect();
            let b: Vec<u32> = (0..outer * b_len).map(|v| 1_000_000 + v as u32).collect();
            let mut want = Vec::new();
            for o in 0..outer {
                want.extend_from_slice(&a[o * a_len..(o + 1) * a_len]);
                want.extend_from_slice(&b[o * b_len..(o + 1) * b_len]);
            }
            assert_eq!(concat_slabs(outer, &[(a_len, &a), (b_len, &b)]), want);
        }
        assert!(concat_slabs::<u8>(0, &[(3, &[])]).is_empty());
    }

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
        // Large enough to split over threads: a column slice, after a unit axis.
        let wide = ArrayD::from_shape_vec(IxDyn(&[1, 300, 900]), (0..270_000).collect::<Vec<i32>>()).unwrap();
        let third = wide.slice(s![.., .., 300..600]).into_dyn();
        assert_eq!(to_row_major(third.view()), third.iter().copied().collect::<Vec<_>>());
        let turned = wide.view().permuted_axes(IxDyn(&[2, 0, 1]));
        assert_eq!(to_row_major(turned.view()), turned.iter().copied().collect::<Vec<_>>());
    }
}
