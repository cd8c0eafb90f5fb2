//! Dropout at inference: the input unchanged and an all-true mask. Training mode with a
//! non-zero ratio is random and is refused.

use ndarray::{ArrayD, IxDyn};

use super::common::kernel;
use super::{input, optional_input, Kernel, OpContext, Registry};
use crate::error::{op_err, Result};

fn dropout_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let with_mask = ctx.num_outputs() > 1;
    kernel(move |inputs| {
        let x = input(inputs, 0)?;
        let training = optional_input(inputs, 2).map(|t| t.scalar_f64()).transpose()?.unwrap_or(0.0) != 0.0;
        let ratio = optional_input(inputs, 1).map(|t| t.scalar_f64()).transpose()?.unwrap_or(0.5);
        if training && ratio != 0.0 {
            return Err(op_err(format!("Dropout in training mode (ratio {ratio}) is random; only inference is supported")));
        }
        let mut out = vec![x.clone()];
        if with_mask {
            out.push(ArrayD::from_elem(IxDyn(x.shape()), true).into());
        }
        Ok(out)
    })
}

/// Registers Dropout (the ratio and training mode are inputs from opset 12; before, the
/// attribute `ratio` does not change inference).
pub(super) fn register(reg: &mut Registry) {
    reg.register("", "Dropout", 7, dropout_factory);
}

#[cfg(test)]
mod tests {
    use crate::ops::testutil::{assert_close, assert_err, node, t, values};
    use crate::Tensor;

    #[test]
    fn inference_passes_through_and_training_is_refused() {
        let x = t(&[2], &[1.0f32, -2.0]);
        let out = node("Dropout").outputs(2).run(&[&x]).unwrap();
        assert_close(&out[0], &[2], &[1.0, -2.0]);
        assert_eq!(values::<bool>(&out[1]).1, vec![true, true]);
        let ratio = Tensor::scalar(0.0f32);
        let y = node("Dropout").run1(&[&x, &ratio, &Tensor::scalar(true)]).unwrap();
        assert_close(&y, &[2], &[1.0, -2.0]);
        let ratio = Tensor::scalar(0.3f32);
        assert_err(node("Dropout").run1(&[&x, &ratio, &Tensor::scalar(true)]), "training mode");
    }
}
