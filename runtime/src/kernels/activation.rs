//! Branch-free float32 `exp` and `tanh` that compilers vectorize, accurate to a few ulp.
//! They serve the hot elementwise paths (Softmax, Sigmoid, GELU's Tanh); float64 keeps libm.
//! Also the activations fused into linear layers ([`Activation`]).

use super::isa::{multiversion, Isa};

const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split into a part with trailing zero bits (so `n·LN2_HI` is exact) and the rest.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Adding and subtracting 1.5·2^23 rounds an f32 of magnitude below 2^22 to an integer.
const ROUND: f32 = 12_582_912.0;

/// `2^n` for integral `n` in [-126, 127], built from its exponent bits.
#[inline(always)]
fn pow2(n: i32) -> f32 {
    f32::from_bits((n.wrapping_add(127) as u32) << 23)
}

/// `e^x`. Inputs are clamped to where the result is neither 0 nor infinite in f32, the power
/// of two is split in halves so that subnormal and near-overflow results stay right, and
/// `e^r` for the reduced `|r| <= ln2/2` is its Taylor series to degree 7 (truncation < 1e-8).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-104.0, 89.0);
    let shifted = x * LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // The integer sits in the low mantissa bits of `shifted`: no float-to-int conversion.
    let n = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let half = n >> 1;
    p * pow2(half) * pow2(n.wrapping_sub(half))
}

/// `tanh(x)/x` as a polynomial in `x²` for `|x| < 0.625` (our Chebyshev fit, highest degree
/// first; relative error 1.5e-10).
const TANH_SMALL: [f32; 7] = [
    0.002_127_435_4,
    -0.008_157_854,
    0.021_691_265,
    -0.053_944_585,
    0.133_331_82,
    -0.333_333_3,
    1.0,
];

/// `tanh(x)`: the odd polynomial near zero, `1 - 2/(e^{2|x|} + 1)` with the sign restored
/// elsewhere. NaN stays NaN.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let a = x.abs();
    let u = x * x;
    let small = x * TANH_SMALL.iter().fold(0.0, |acc, &c| acc * u + c);
    let large = (1.0 - 2.0 / (exp(2.0 * a) + 1.0)).copysign(x);
    if a < 0.625 {
        small
    } else {
        large
    }
}

/// `√(2/π)`, the scale inside GELU's tanh approximation.
pub const GELU_TANH_SCALE: f32 = 0.797_884_6;
/// The cubic coefficient of GELU's tanh approximation.
pub const GELU_TANH_CUBIC: f32 = 0.044_715;

/// An activation applied to a linear layer's output, right after its bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// The identity.
    None,
    /// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
    GeluTanh,
    /// `0.5·x·(1 + erf(x/√2))`.
    GeluErf,
}

impl Activation {
    /// Parses the `activation` attribute of fused ops: "" (none), "gelu_tanh", "gelu_erf".
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "" => Some(Self::None),
            "gelu_tanh" => Some(Self::GeluTanh),
            "gelu_erf" => Some(Self::GeluErf),
            _ => None,
        }
    }

    /// The attribute spelling of [`Activation::from_name`].
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "",
            Self::GeluTanh => "gelu_tanh",
            Self::GeluErf => "gelu_erf",
        }
    }

    /// Applies the activation to one value, with the operation order of the exported graphs.
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Self::None => x,
            Self::GeluTanh => gelu_tanh(x),
            Self::GeluErf => gelu_erf(x),
        }
    }

    /// `x = act(x + bias)` over a row (`bias` as long as the row), compiled for
    /// [`Isa::current`]. The activation is chosen once, so the loop over the row is
    /// straight-line code the compiler vectorizes.
    pub fn apply_row(self, row: &mut [f32], bias: Option<&[f32]>) {
        apply_row_for(Isa::current(), self, row, bias)
    }
}

multiversion! {
    /// [`Activation::apply_row`] compiled for `isa`.
    fn apply_row_for(act: Activation, row: &mut [f32], bias: Option<&[f32]>) => apply_row_body
}

/// The body of [`apply_row_for`].
#[inline(always)]
fn apply_row_body(act: Activation, row: &mut [f32], bias: Option<&[f32]>) {
    match act {
        Activation::None => map_row(row, bias, |x| x),
        Activation::GeluTanh => map_row(row, bias, gelu_tanh),
        Activation::GeluErf => map_row(row, bias, gelu_erf),
    }
}

#[inline(always)]
fn map_row(row: &mut [f32], bias: Option<&[f32]>, f: impl Fn(f32) -> f32) {
    // Plain loops, not `for_each`: an outlined iterator fold would lose the caller's
    // target features.
    match bias {
        Some(bias) => {
            for (o, b) in row.iter_mut().zip(bias) {
                *o = f(*o + b);
            }
        }
        None => {
            for o in row.iter_mut() {
                *o = f(*o);
            }
        }
    }
}

/// GELU, tanh form: `0.5·x·(1 + tanh(u))` with `u = √(2/π)·(x + 0.044715·x³)`, computed as
/// the equal `x / (1 + e^(-2u))`: one exponential and one division, no branch.
#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    let inner = (x + x * x * x * GELU_TANH_CUBIC) * GELU_TANH_SCALE;
    x / (1.0 + exp(-2.0 * inner))
}

/// GELU, erf form: `0.5·x·(1 + erf(x/√2))`.
#[inline(always)]
fn gelu_erf(x: f32) -> f32 {
    let e = super::erf::erf((x / std::f32::consts::SQRT_2) as f64) as f32;
    x * 0.5 * (e + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between an f32 and the exact (f64) value.
    fn ulps(got: f32, want: f64) -> f64 {
        let w = want as f32;
        let spacing = (f32::from_bits(w.abs().to_bits() + 1) - w.abs()) as f64;
        (got as f64 - want).abs() / spacing
    }

    fn sweep(lo: f32, hi: f32, steps: usize) -> impl Iterator<Item = f32> {
        (0..=steps).map(move |i| lo + (hi - lo) * i as f32 / steps as f32)
    }

    #[test]
    fn exp_is_within_two_ulp_over_the_finite_range() {
        for x in sweep(-87.0, 88.7, 400_000).chain(sweep(-1.0, 1.0, 100_000)) {
            let e = ulps(exp(x), (x as f64).exp());
            assert!(e <= 2.0, "exp({x}): {e} ulp");
        }
    }

    #[test]
    fn exp_limits_subnormals_and_nan() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-200.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(89.0), f32::INFINITY);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        // Subnormal results are right to within one subnormal step.
        let (tiny, want) = (exp(-100.0), (-100.0f64).exp() as f32);
        assert!(tiny > 0.0 && (tiny - want).abs() <= f32::from_bits(1), "{tiny} vs {want}");
    }

    #[test]
    fn tanh_is_within_three_ulp() {
        for x in sweep(-10.0, 10.0, 400_000).chain(sweep(-0.7, 0.7, 100_000)).chain([1e-30, -3e-8]) {
            let e = ulps(tanh(x), (x as f64).tanh());
            assert!(e <= 3.0, "tanh({x}): {e} ulp");
        }
    }

    #[test]
    fn tanh_limits_and_nan() {
        assert_eq!(tanh(0.0), 0.0);
        assert_eq!(tanh(50.0), 1.0);
        assert_eq!(tanh(f32::NEG_INFINITY), -1.0);
        assert!(tanh(f32::NAN).is_nan());
    }

    #[test]
    fn gelu_forms_match_their_double_precision_definitions() {
        for x in sweep(-8.0, 8.0, 20_000) {
            let xd = x as f64;
            let tanh_form = 0.5 * xd * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (xd + 0.044715 * xd.powi(3))).tanh());
            let erf_form = 0.5 * xd * (1.0 + crate::kernels::erf::erf(xd / 2f64.sqrt()));
            for (got, want) in [(Activation::GeluTanh.apply(x), tanh_form), (Activation::GeluErf.apply(x), erf_form)] {
                assert!((got as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()), "gelu({x}) = {got}, want {want}");
            }
        }
        assert_eq!(Activation::None.apply(-3.5), -3.5);
        for a in [Activation::None, Activation::GeluTanh, Activation::GeluErf] {
            assert_eq!(Activation::from_name(a.name()), Some(a));
        }
        assert_eq!(Activation::from_name("relu"), None);
    }

    #[test]
    fn rows_match_the_scalar_form_at_every_level_and_length() {
        for len in [1usize, 7, 8, 9, 16, 33, 100] {
            let data: Vec<f32> = (0..len).map(|i| (i * 29 % 37) as f32 / 4.0 - 4.5).collect();
            let bias: Vec<f32> = (0..len).map(|i| i as f32 / 50.0 - 0.3).collect();
            for isa in Isa::ALL.into_iter().filter(|&isa| isa <= Isa::detected()) {
                for act in [Activation::None, Activation::GeluTanh, Activation::GeluErf] {
                    for b in [None, Some(&bias[..])] {
                        let mut row = data.clone();
                        apply_row_for(isa, act, &mut row, b);
                        for (i, (g, x)) in row.iter().zip(&data).enumerate() {
                            let want = act.apply(x + b.map_or(0.0, |b| b[i]));
                            // Within a few ulp rather than exact: each level compiles the row its own way.
                            assert!((g - want).abs() <= 4.0 * f32::EPSILON * (1.0 + want.abs()), "{isa} {act:?} at {i}: {g} vs {want}");
                        }
                    }
                }
            }
        }
    }
}
