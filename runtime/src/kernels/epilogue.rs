//! The epilogue of a fused linear layer: bias, then activation, in one pass over the output.

use rayon::prelude::*;

use super::activation::Activation;

/// Outputs with fewer elements than this are finished on the calling thread.
const PARALLEL_MIN_LEN: usize = 1 << 15;

/// Adds `bias` (one value per column, `n` columns) to each row of `out`, then applies `act`.
pub fn bias_activation(out: &mut [f32], n: usize, bias: Option<&[f32]>, act: Activation) {
    if n == 0 || (bias.is_none() && act == Activation::None) {
        return;
    }
    let row = |row: &mut [f32]| act.apply_row(row, bias);
    if out.len() < PARALLEL_MIN_LEN {
        out.chunks_mut(n).for_each(row);
    } else {
        let rows_per_task = (PARALLEL_MIN_LEN / 4 / n).max(1);
        out.par_chunks_mut(rows_per_task * n).for_each(|chunk| chunk.chunks_mut(n).for_each(row));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bias_then_activation_on_every_row_small_and_large() {
        for rows in [3, 4096] {
            let n = 16;
            let data: Vec<f32> = (0..rows * n).map(|i| (i % 37) as f32 / 9.0 - 2.0).collect();
            let bias: Vec<f32> = (0..n).map(|j| j as f32 / 10.0 - 0.5).collect();
            for act in [Activation::None, Activation::GeluTanh, Activation::GeluErf] {
                let mut got = data.clone();
                bias_activation(&mut got, n, Some(&bias), act);
                for (i, (g, x)) in got.iter().zip(&data).enumerate() {
                    assert_eq!(*g, act.apply(x + bias[i % n]), "{act:?} at {i}");
                }
                let mut no_bias = data.clone();
                bias_activation(&mut no_bias, n, None, act);
                assert!(no_bias.iter().zip(&data).all(|(g, x)| *g == act.apply(*x)));
            }
        }
    }
}
