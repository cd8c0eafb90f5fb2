//! Parameterized float activations: Elu, Selu, LeakyRelu, HardSigmoid, HardSwish, Softplus,
//! Softsign, Mish, Swish. Their attributes are read at load.

use ndarray::{ArrayD, ArrayViewD};

use super::common::kernel;
use super::numeric::{on_float, Float, FloatFn, Num};
use super::{input, Kernel, OpContext, Registry};
use crate::error::Result;

/// One activation with its attributes.
#[derive(Clone, Copy)]
enum Activation {
    /// `x < 0 ? alpha * (e^x - 1) : x`.
    Elu { alpha: f64 },
    /// `gamma * (x > 0 ? x : alpha * (e^x - 1))`.
    Selu { alpha: f64, gamma: f64 },
    /// `x < 0 ? alpha * x : x`.
    LeakyRelu { alpha: f64 },
    /// `clamp(alpha * x + beta, 0, 1)`.
    HardSigmoid { alpha: f64, beta: f64 },
    /// `x * HardSigmoid(x)` with alpha 1/6, beta 1/2.
    HardSwish,
    /// `ln(1 + e^x)`, written so that large `x` does not overflow.
    Softplus,
    /// `x / (1 + |x|)`.
    Softsign,
    /// `x * tanh(softplus(x))`.
    Mish,
    /// `x * sigmoid(alpha * x)`.
    Swish { alpha: f64 },
}

fn sigmoid<F: Float>(v: F) -> F {
    F::ONE / (F::ONE + (-v).exp())
}

fn softplus<F: Float>(v: F) -> F {
    // max(v, 0) + ln(1 + e^-|v|): exact for large |v| too.
    let pos = if v > F::ZERO { v } else { F::ZERO };
    pos + (F::ONE + (-v.abs()).exp()).ln()
}

fn hard_sigmoid<F: Float>(v: F, alpha: F, beta: F) -> F {
    let y = alpha * v + beta;
    Num::min(Num::max(y, F::ZERO), F::ONE)
}

impl Activation {
    fn apply<F: Float>(self, v: F) -> F {
        let f = F::from_f64;
        match self {
            Activation::Elu { alpha } => {
                if v < F::ZERO {
                    f(alpha) * (v.exp() - F::ONE)
                } else {
                    v
                }
            }
            Activation::Selu { alpha, gamma } => {
                f(gamma) * if v > F::ZERO { v } else { f(alpha) * (v.exp() - F::ONE) }
            }
            Activation::LeakyRelu { alpha } => {
                if v < F::ZERO {
                    f(alpha) * v
                } else {
                    v
                }
            }
            Activation::HardSigmoid { alpha, beta } => hard_sigmoid(v, f(alpha), f(beta)),
            Activation::HardSwish => v * hard_sigmoid(v, f(1.0 / 6.0), f(0.5)),
            Activation::Softplus => softplus(v),
            Activation::Softsign => v / (F::ONE + v.abs()),
            Activation::Mish => v * softplus(v).tanh(),
            Activation::Swish { alpha } => v * sigmoid(f(alpha) * v),
        }
    }
}

impl FloatFn for Activation {
    fn call<F: Float>(&self, x: ArrayViewD<'_, F>) -> Result<ArrayD<F>> {
        let op = *self;
        Ok(x.mapv(|v| op.apply(v)))
    }
}

fn activation_kernel(op: Activation) -> Result<Box<dyn Kernel>> {
    kernel(move |inputs| Ok(vec![on_float(input(inputs, 0)?, &op)?]))
}

fn alpha(ctx: &OpContext, default: f32) -> f64 {
    ctx.attrs.float_or("alpha", default) as f64
}

/// Registers the activations.
pub(super) fn register(reg: &mut Registry) {
    reg.register("", "Elu", 6, |ctx| activation_kernel(Activation::Elu { alpha: alpha(ctx, 1.0) }));
    reg.register("", "Selu", 6, |ctx| {
        let gamma = ctx.attrs.float_or("gamma", 1.050_701) as f64;
        activation_kernel(Activation::Selu { alpha: alpha(ctx, 1.673_263_2), gamma })
    });
    reg.register("", "LeakyRelu", 6, |ctx| activation_kernel(Activation::LeakyRelu { alpha: alpha(ctx, 0.01) }));
    reg.register("", "HardSigmoid", 6, |ctx| {
        let beta = ctx.attrs.float_or("beta", 0.5) as f64;
        activation_kernel(Activation::HardSigmoid { alpha: alpha(ctx, 0.2), beta })
    });
    reg.register("", "HardSwish", 14, |_| activation_kernel(Activation::HardSwish));
    reg.register("", "Softplus", 1, |_| activation_kernel(Activation::Softplus));
    reg.register("", "Softsign", 1, |_| activation_kernel(Activation::Softsign));
    reg.register("", "Mish", 18, |_| activation_kernel(Activation::Mish));
    reg.register("", "Swish", 24, |ctx| activation_kernel(Activation::Swish { alpha: alpha(ctx, 1.0) }));
}

#[cfg(test)]
mod tests {
    use crate::ops::testutil::{assert_close, assert_err, node, t};

    fn run(spec: crate::ops::testutil::NodeSpec, x: &[f32]) -> crate::Tensor {
        spec.run1(&[&t(&[x.len()], x)]).unwrap()
    }

    #[test]
    fn piecewise_activations() {
        let x = [-1.0f32, 0.0, 2.0];
        let e = (-1.0f32).exp() - 1.0;
        assert_close(&run(node("Elu").float("alpha", 2.0), &x), &[3], &[2.0 * e, 0.0, 2.0]);
        assert_close(&run(node("LeakyRelu"), &x), &[3], &[-0.01, 0.0, 2.0]);
        assert_close(&run(node("Selu").float("alpha", 2.0).float("gamma", 3.0), &x), &[3], &[6.0 * e, 0.0, 6.0]);
        assert_close(&run(node("HardSigmoid"), &[-5.0, 0.0, 1.0, 5.0]), &[4], &[0.0, 0.5, 0.7, 1.0]);
        assert_close(&run(node("HardSwish"), &[-4.0, 1.0, 4.0]), &[3], &[0.0, 1.0 * (1.0 / 6.0 + 0.5), 4.0]);
    }

    #[test]
    fn smooth_activations_stay_finite_for_large_inputs() {
        let sp = |v: f32| (1.0 + v.exp()).ln();
        assert_close(&run(node("Softplus"), &[-1.0, 0.5, 200.0]), &[3], &[sp(-1.0), sp(0.5), 200.0]);
        assert_close(&run(node("Softsign"), &[-1.0, 3.0]), &[2], &[-0.5, 0.75]);
        assert_close(&run(node("Mish").opset(18), &[1.0, 200.0]), &[2], &[sp(1.0).tanh(), 200.0]);
        let sig = |v: f32| 1.0 / (1.0 + (-v).exp());
        assert_close(&run(node("Swish").opset(24).float("alpha", 2.0), &[1.0, -1.0]), &[2], &[sig(2.0), -sig(-2.0)]);
    }

    #[test]
    fn activations_reject_integers() {
        assert_err(node("Elu").run1(&[&t(&[1], &[1i64])]), "expected a float tensor");
    }
}
