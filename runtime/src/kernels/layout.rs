//! Copying strided arrays (transposed, sliced, broadcast views) into row-major order, and
//! concatenating row-major slabs.

use ndarray::{ArrayViewD, Ix1, Ix2};
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
    }
}
