//! Elementwise ops: unary math, broadcasting arithmetic, comparisons and logic, Pow, Where.

use half::{bf16, f16};
use ndarray::{ArrayD, ArrayViewD};

use super::broadcast::{select_broadcast, zip_broadcast};
use super::cast::cast;
use super::common::kernel;
use super::numeric::{not_float, numeric, numeric_pair, on_float, same_pair, Float, FloatFn, Num};
use super::{input, Kernel, Registry};
use crate::error::{op_err, Result};
use crate::tensor::{Array, DType, Element, Tensor};

/// Unary functions defined on floats only.
#[derive(Clone, Copy)]
enum FloatUnary {
    Sqrt,
    Exp,
    Log,
    Erf,
    Tanh,
    Sigmoid,
    Sin,
    Cos,
    Reciprocal,
    Floor,
    Ceil,
    Round,
}

impl FloatFn for FloatUnary {
    fn call<F: Float>(&self, x: ArrayViewD<'_, F>) -> Result<ArrayD<F>> {
        Ok(match self {
            FloatUnary::Sqrt => x.mapv(F::sqrt),
            FloatUnary::Exp => x.mapv(F::exp),
            FloatUnary::Log => x.mapv(F::ln),
            FloatUnary::Erf => x.mapv(F::erf),
            FloatUnary::Tanh => x.mapv(F::tanh),
            FloatUnary::Sigmoid => x.mapv(|v| F::ONE / (F::ONE + (-v).exp())),
            FloatUnary::Sin => x.mapv(F::sin),
            FloatUnary::Cos => x.mapv(F::cos),
            FloatUnary::Reciprocal => x.mapv(|v| F::ONE / v),
            FloatUnary::Floor => x.mapv(F::floor),
            FloatUnary::Ceil => x.mapv(F::ceil),
            FloatUnary::Round => x.mapv(F::round_even),
        })
    }
}

/// Unary functions defined on every numeric type.
#[derive(Clone, Copy)]
enum NumUnary {
    Neg,
    Abs,
    Relu,
    Sign,
}

fn num_unary<T: Num>(op: NumUnary, a: &Array<T>) -> ArrayD<T> {
    match op {
        NumUnary::Neg => a.mapv(T::neg),
        NumUnary::Abs => a.mapv(T::abs),
        // `x < 0` keeps NaN as NaN.
        NumUnary::Relu => a.mapv(|v| if v < T::default() { T::default() } else { v }),
        // Zero and NaN map to themselves.
        NumUnary::Sign => a.mapv(|v| {
            if v > T::default() {
                T::from_usize(1)
            } else if v < T::default() {
                T::from_usize(1).neg()
            } else {
                v
            }
        }),
    }
}

fn is_nan(t: &Tensor) -> Result<Tensor> {
    Ok(match t {
        Tensor::F32(a) => a.mapv(f32::is_nan).into(),
        Tensor::F64(a) => a.mapv(f64::is_nan).into(),
        Tensor::F16(a) => a.mapv(f16::is_nan).into(),
        Tensor::BF16(a) => a.mapv(bf16::is_nan).into(),
        other => return Err(not_float(other)),
    })
}

/// IsInf: which infinities count is read at load.
#[derive(Clone, Copy)]
struct IsInf {
    negative: bool,
    positive: bool,
}

impl IsInf {
    fn test<F: Float>(self, v: F) -> bool {
        v.is_infinite() && if v > F::ZERO { self.positive } else { self.negative }
    }

    fn apply(self, t: &Tensor) -> Result<Tensor> {
        Ok(match t {
            Tensor::F32(a) => a.mapv(|v| self.test(v)).into(),
            Tensor::F64(a) => a.mapv(|v| self.test(v)).into(),
            Tensor::F16(a) => a.mapv(|v| self.test(v.to_f32())).into(),
            other => return Err(not_float(other)),
        })
    }
}

/// Mean: the variadic sum divided by the input count (floats only).
struct DivideBy(usize);

impl FloatFn for DivideBy {
    fn call<F: Float>(&self, x: ArrayViewD<'_, F>) -> Result<ArrayD<F>> {
        let n = F::from_usize(self.0);
        Ok(x.mapv(|v| v / n))
    }
}

fn mean_kernel() -> Result<Box<dyn Kernel>> {
    kernel(|inputs| {
        let mut acc = input(inputs, 0)?.clone();
        for i in 1..inputs.len() {
            acc = arith_tensors(Arith::Add, &acc, input(inputs, i)?)?;
        }
        Ok(vec![on_float(&acc, &DivideBy(inputs.len()))?])
    })
}

/// Broadcasting arithmetic on one numeric dtype.
#[derive(Clone, Copy, PartialEq)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
}

fn arith<T: Num>(op: Arith, a: &Array<T>, b: &Array<T>) -> Result<ArrayD<T>> {
    match op {
        Arith::Add => zip_broadcast(a, b, T::add),
        Arith::Sub => zip_broadcast(a, b, T::sub),
        Arith::Mul => zip_broadcast(a, b, T::mul),
        Arith::Div => {
            if T::INTEGER && b.iter().any(|v| v.is_zero()) {
                return Err(op_err("integer division by zero"));
            }
            zip_broadcast(a, b, T::div)
        }
        Arith::Max => zip_broadcast(a, b, T::max),
        Arith::Min => zip_broadcast(a, b, T::min),
    }
}

fn arith_tensors(op: Arith, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    numeric_pair!(a, b, x, y => arith(op, x, y).map(Tensor::from))
}

/// `a + b` as the Add op computes it (numpy broadcasting, matching types).
pub(super) fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    arith_tensors(Arith::Add, a, b)
}

/// A binary op, or with `variadic` a fold over all inputs (Sum, Max, Min).
fn arith_kernel(op: Arith, variadic: bool) -> Result<Box<dyn Kernel>> {
    kernel(move |inputs| {
        let count = if variadic { inputs.len() } else { 2 };
        let mut acc = input(inputs, 0)?.clone();
        for i in 1..count {
            acc = arith_tensors(op, &acc, input(inputs, i)?)?;
        }
        Ok(vec![acc])
    })
}

/// Broadcasting comparisons, producing bool.
#[derive(Clone, Copy)]
enum Compare {
    Equal,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

fn compare<T: Element>(op: Compare, a: &Array<T>, b: &Array<T>) -> Result<ArrayD<bool>> {
    match op {
        Compare::Equal => zip_broadcast(a, b, |x, y| x == y),
        Compare::Less => zip_broadcast(a, b, |x, y| x < y),
        Compare::LessOrEqual => zip_broadcast(a, b, |x, y| x <= y),
        Compare::Greater => zip_broadcast(a, b, |x, y| x > y),
        Compare::GreaterOrEqual => zip_broadcast(a, b, |x, y| x >= y),
    }
}

/// Broadcasting logic on bool tensors.
#[derive(Clone, Copy)]
enum Logic {
    And,
    Or,
    Xor,
}

fn logic(op: Logic, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (x, y) = (a.array::<bool>()?, b.array::<bool>()?);
    let out = match op {
        Logic::And => zip_broadcast(x, y, |p, q| p && q),
        Logic::Or => zip_broadcast(x, y, |p, q| p || q),
        Logic::Xor => zip_broadcast(x, y, |p, q| p != q),
    }?;
    Ok(out.into())
}

/// `x^e` for one exponent; the squares and cubes of GPT-style GELU take plain multiplies.
struct PowScalar(f64);

impl FloatFn for PowScalar {
    fn call<F: Float>(&self, x: ArrayViewD<'_, F>) -> Result<ArrayD<F>> {
        let e = F::from_f64(self.0);
        Ok(match self.0 {
            1.0 => x.to_owned(),
            2.0 => x.mapv(|v| v * v),
            3.0 => x.mapv(|v| v * v * v),
            _ => x.mapv(|v| v.powf(e)),
        })
    }
}

/// Pow: a float base with an exponent of any numeric dtype; integer bases compute in float64
/// and convert back.
fn pow(base: &Tensor, exponent: &Tensor) -> Result<Tensor> {
    let dtype = base.dtype();
    match dtype {
        DType::F32 | DType::F64 => {}
        DType::F16 | DType::BF16 => return Ok(cast(&pow(&cast(base, DType::F32), exponent)?, dtype)),
        DType::Bool => return Err(op_err("Pow needs a numeric base, got bool")),
        _ => return Ok(cast(&pow(&cast(base, DType::F64), exponent)?, dtype)),
    }
    if exponent.len() == 1 && exponent.rank() <= base.rank() {
        return on_float(base, &PowScalar(exponent.scalar_f64()?));
    }
    let exponent = cast(exponent, dtype);
    Ok(match (base, &exponent) {
        (Tensor::F32(x), Tensor::F32(e)) => zip_broadcast(x, e, f32::powf)?.into(),
        (Tensor::F64(x), Tensor::F64(e)) => zip_broadcast(x, e, f64::powf)?.into(),
        _ => return Err(not_float(base)),
    })
}

fn where_op(cond: &Tensor, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let c = cond.array::<bool>()?;
    same_pair!(x, y, a, b => select_broadcast(c, a, b).map(Tensor::from))
}

fn float_unary(op: FloatUnary) -> Result<Box<dyn Kernel>> {
    kernel(move |inputs| Ok(vec![on_float(input(inputs, 0)?, &op)?]))
}

fn numeric_unary(op: NumUnary) -> Result<Box<dyn Kernel>> {
    kernel(move |inputs| {
        let x = input(inputs, 0)?;
        Ok(vec![numeric!(x, a => Ok(Tensor::from(num_unary(op, a))))?])
    })
}

fn compare_kernel(op: Compare) -> Result<Box<dyn Kernel>> {
    kernel(move |inputs| {
        let (a, b) = (input(inputs, 0)?, input(inputs, 1)?);
        Ok(vec![same_pair!(a, b, x, y => compare(op, x, y).map(Tensor::from))?])
    })
}

fn logic_kernel(op: Logic) -> Result<Box<dyn Kernel>> {
    kernel(move |inputs| Ok(vec![logic(op, input(inputs, 0)?, input(inputs, 1)?)?]))
}

/// Registers the elementwise ops.
pub(super) fn register(reg: &mut Registry) {
    use FloatUnary as F;
    reg.register("", "Sqrt", 6, |_| float_unary(F::Sqrt));
    reg.register("", "Exp", 6, |_| float_unary(F::Exp));
    reg.register("", "Log", 6, |_| float_unary(F::Log));
    reg.register("", "Erf", 9, |_| float_unary(F::Erf));
    reg.register("", "Tanh", 6, |_| float_unary(F::Tanh));
    reg.register("", "Sigmoid", 6, |_| float_unary(F::Sigmoid));
    reg.register("", "Sin", 7, |_| float_unary(F::Sin));
    reg.register("", "Cos", 7, |_| float_unary(F::Cos));
    reg.register("", "Reciprocal", 6, |_| float_unary(F::Reciprocal));
    reg.register("", "Floor", 6, |_| float_unary(F::Floor));
    reg.register("", "Ceil", 6, |_| float_unary(F::Ceil));
    reg.register("", "Round", 11, |_| float_unary(F::Round));
    reg.register("", "Sign", 9, |_| numeric_unary(NumUnary::Sign));
    reg.register("", "IsInf", 10, |ctx| {
        let negative = ctx.attrs.int_or("detect_negative", 1) != 0;
        let positive = ctx.attrs.int_or("detect_positive", 1) != 0;
        let op = IsInf { negative, positive };
        kernel(move |inputs| Ok(vec![op.apply(input(inputs, 0)?)?]))
    });
    reg.register("", "Mean", 6, |_| mean_kernel());
    reg.register("", "Neg", 6, |_| numeric_unary(NumUnary::Neg));
    reg.register("", "Abs", 6, |_| numeric_unary(NumUnary::Abs));
    reg.register("", "Relu", 6, |_| numeric_unary(NumUnary::Relu));
    reg.register("", "IsNaN", 9, |_| kernel(|inputs| Ok(vec![is_nan(input(inputs, 0)?)?])));
    reg.register("", "Not", 1, |_| {
        kernel(|inputs| Ok(vec![input(inputs, 0)?.array::<bool>()?.mapv(|v| !v).into()]))
    });

    reg.register("", "Add", 7, |_| arith_kernel(Arith::Add, false));
    reg.register("", "Sub", 7, |_| arith_kernel(Arith::Sub, false));
    reg.register("", "Mul", 7, |_| arith_kernel(Arith::Mul, false));
    reg.register("", "Div", 7, |_| arith_kernel(Arith::Div, false));
    reg.register("", "Sum", 6, |_| arith_kernel(Arith::Add, true));
    reg.register("", "Max", 6, |_| arith_kernel(Arith::Max, true));
    reg.register("", "Min", 6, |_| arith_kernel(Arith::Min, true));
    reg.register("", "Pow", 7, |_| kernel(|inputs| Ok(vec![pow(input(inputs, 0)?, input(inputs, 1)?)?])));

    reg.register("", "Equal", 7, |_| compare_kernel(Compare::Equal));
    reg.register("", "Less", 7, |_| compare_kernel(Compare::Less));
    reg.register("", "LessOrEqual", 12, |_| compare_kernel(Compare::LessOrEqual));
    reg.register("", "Greater", 7, |_| compare_kernel(Compare::Greater));
    reg.register("", "GreaterOrEqual", 12, |_| compare_kernel(Compare::GreaterOrEqual));
    reg.register("", "And", 7, |_| logic_kernel(Logic::And));
    reg.register("", "Or", 7, |_| logic_kernel(Logic::Or));
    reg.register("", "Xor", 7, |_| logic_kernel(Logic::Xor));
    reg.register("", "Where", 9, |_| {
        kernel(|inputs| Ok(vec![where_op(input(inputs, 0)?, input(inputs, 1)?, input(inputs, 2)?)?]))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::{assert_close, assert_err, node, t, values};

    fn unary(op: &str, x: &[f32]) -> Tensor {
        node(op).run1(&[&t(&[x.len()], x)]).unwrap()
    }

    #[test]
    fn unsigned_sixteen_bit_and_bfloat16_inputs_take_the_shared_dispatch() {
        let a = t(&[3], &[1u32, 5, u32::MAX]);
        let b = t(&[1], &[2u32]);
        assert_eq!(values::<u32>(&node("Add").run1(&[&a, &b]).unwrap()).1, vec![3, 7, 1]);
        assert_eq!(values::<bool>(&node("Less").run1(&[&a, &b]).unwrap()).1, vec![true, false, false]);
        let big = t(&[2], &[u64::MAX, 9]);
        assert_eq!(values::<u64>(&node("Div").run1(&[&big, &t(&[1], &[3u64])]).unwrap()).1, vec![u64::MAX / 3, 3]);
        let s = t(&[2], &[-7i16, 4]);
        assert_eq!(values::<i16>(&node("Abs").run1(&[&s]).unwrap()).1, vec![7, 4]);
        let h = t(&[3], &[bf16::from_f32(1.5), bf16::from_f32(-2.0), bf16::NAN]);
        let sq = node("Mul").run1(&[&h, &h]).unwrap();
        assert_eq!(values::<bf16>(&sq).1[..2], [bf16::from_f32(2.25), bf16::from_f32(4.0)]);
        assert_eq!(values::<bool>(&node("IsNaN").run1(&[&h]).unwrap()).1, vec![false, false, true]);
        let root = node("Sqrt").run1(&[&t(&[1], &[bf16::from_f32(6.25)])]).unwrap();
        assert_eq!(values::<bf16>(&root).1, vec![bf16::from_f32(2.5)]);
        let p = node("Pow").run1(&[&t(&[1], &[bf16::from_f32(3.0)]), &t(&[1], &[2u16])]).unwrap();
        assert_eq!(values::<bf16>(&p).1, vec![bf16::from_f32(9.0)]);
        assert_err(node("Add").run1(&[&a, &t(&[1], &[2u64])]), "uint32 and uint64");
    }

    #[test]
    fn float_unary_values() {
        assert_close(&unary("Sqrt", &[4.0, 2.0]), &[2], &[2.0, std::f32::consts::SQRT_2]);
        assert_close(&unary("Exp", &[0.0, 1.0]), &[2], &[1.0, std::f32::consts::E]);
        assert_close(&unary("Log", &[1.0, std::f32::consts::E]), &[2], &[0.0, 1.0]);
        assert_close(&unary("Erf", &[0.5, -1.5]), &[2], &[0.520_499_9, -0.966_105_1]);
        assert_close(&unary("Tanh", &[0.5]), &[1], &[0.462_117_16]);
        assert_close(&unary("Sigmoid", &[0.0, 2.0, -200.0]), &[3], &[0.5, 0.880_797_1, 0.0]);
        assert_close(&unary("Sin", &[std::f32::consts::FRAC_PI_2]), &[1], &[1.0]);
        assert_close(&unary("Cos", &[0.0]), &[1], &[1.0]);
        assert_close(&unary("Reciprocal", &[4.0, -0.5]), &[2], &[0.25, -2.0]);
        assert_close(&unary("Floor", &[-1.5, 1.5]), &[2], &[-2.0, 1.0]);
        assert_close(&unary("Ceil", &[-1.5, 1.5]), &[2], &[-1.0, 2.0]);
    }

    #[test]
    fn numeric_unary_on_floats_and_ints() {
        assert_close(&unary("Neg", &[1.5, -2.0]), &[2], &[-1.5, 2.0]);
        assert_close(&unary("Relu", &[-1.0, 3.0, f32::NAN]), &[3], &[0.0, 3.0, f32::NAN]);
        let x = t(&[3], &[-3i64, 0, 4]);
        assert_eq!(values::<i64>(&node("Abs").run1(&[&x]).unwrap()).1, vec![3, 0, 4]);
        assert_eq!(values::<i64>(&node("Neg").run1(&[&x]).unwrap()).1, vec![3, 0, -4]);
        assert_eq!(values::<i64>(&node("Relu").run1(&[&x]).unwrap()).1, vec![0, 0, 4]);
    }

    #[test]
    fn float16_computes_through_float32() {
        let x = t(&[2], &[f16::from_f32(4.0), f16::from_f32(0.25)]);
        let y = node("Sqrt").run1(&[&x]).unwrap();
        assert_eq!(values::<f16>(&y).1, vec![f16::from_f32(2.0), f16::from_f32(0.5)]);
    }

    #[test]
    fn float_only_ops_reject_ints_and_not_rejects_floats() {
        assert_err(node("Exp").run1(&[&t(&[1], &[1i64])]), "expected a float tensor");
        assert_err(node("Not").run1(&[&t(&[1], &[1.0f32])]), "expected a bool tensor");
        assert_err(node("Neg").run1(&[&t(&[1], &[true])]), "expected a numeric tensor");
    }

    #[test]
    fn round_sign_isinf_mean() {
        assert_close(&unary("Round", &[0.5, 1.5, -2.5, 2.6]), &[4], &[0.0, 2.0, -2.0, 3.0]);
        assert_close(&unary("Sign", &[-3.0, 0.0, 2.0, f32::NAN]), &[4], &[-1.0, 0.0, 1.0, f32::NAN]);
        assert_eq!(values::<i64>(&node("Sign").run1(&[&t(&[2], &[-5i64, 7])]).unwrap()).1, vec![-1, 1]);
        let x = t(&[3], &[f32::INFINITY, f32::NEG_INFINITY, 1.0]);
        assert_eq!(values::<bool>(&node("IsInf").run1(&[&x]).unwrap()).1, vec![true, true, false]);
        let y = node("IsInf").int("detect_negative", 0).run1(&[&x]).unwrap();
        assert_eq!(values::<bool>(&y).1, vec![true, false, false]);
        let (a, b) = (t(&[2], &[1.0f32, 2.0]), t(&[1], &[4.0f32]));
        assert_close(&node("Mean").run1(&[&a, &b]).unwrap(), &[2], &[2.5, 3.0]);
        assert_err(node("Mean").run1(&[&t(&[1], &[1i64])]), "expected a float tensor");
    }

    #[test]
    fn is_nan_and_not() {
        let y = node("IsNaN").run1(&[&t(&[3], &[1.0f32, f32::NAN, f32::INFINITY])]).unwrap();
        assert_eq!(values::<bool>(&y).1, vec![false, true, false]);
        let y = node("Not").run1(&[&t(&[2], &[true, false])]).unwrap();
        assert_eq!(values::<bool>(&y).1, vec![false, true]);
    }

    #[test]
    fn arithmetic_broadcasts_bias_and_scalar() {
        let x = t(&[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let bias = t(&[3], &[10.0f32, 20.0, 30.0]);
        let y = node("Add").run1(&[&x, &bias]).unwrap();
        assert_close(&y, &[2, 3], &[11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
        let y = node("Sub").run1(&[&bias, &x]).unwrap();
        assert_close(&y, &[2, 3], &[9.0, 18.0, 27.0, 6.0, 15.0, 24.0]);
        let y = node("Mul").run1(&[&Tensor::scalar(2.0f32), &x]).unwrap();
        assert_close(&y, &[2, 3], &[2.0, 4.0, 6.0, 8.0, 10.0, 12.0]);
        let col = t(&[2, 1], &[1.0f32, 2.0]);
        let y = node("Div").run1(&[&x, &col]).unwrap();
        assert_close(&y, &[2, 3], &[1.0, 2.0, 3.0, 2.0, 2.5, 3.0]);
    }

    #[test]
    fn integer_division_truncates_and_rejects_zero() {
        let a = t(&[4], &[7i64, -7, 7, -7]);
        let b = t(&[4], &[2i64, 2, -2, -2]);
        assert_eq!(values::<i64>(&node("Div").run1(&[&a, &b]).unwrap()).1, vec![3, -3, -3, 3]);
        let zero = t(&[1], &[0i64]);
        assert_err(node("Div").run1(&[&a, &zero]), "division by zero");
    }

    #[test]
    fn int64_shape_arithmetic() {
        let shape = t(&[3], &[1i64, 128, 768]);
        let y = node("Mul").run1(&[&shape, &Tensor::scalar(2i64)]).unwrap();
        assert_eq!(values::<i64>(&y), (vec![3], vec![2, 256, 1536]));
        let y = node("Equal").run1(&[&shape, &Tensor::scalar(128i64)]).unwrap();
        assert_eq!(values::<bool>(&y).1, vec![false, true, false]);
    }

    #[test]
    fn binary_errors() {
        let f = t(&[2], &[1.0f32, 2.0]);
        let i = t(&[2], &[1i64, 2]);
        assert_err(node("Add").run1(&[&f, &i]), "got float32 and int64");
        assert_err(node("Add").run1(&[&f, &t(&[3], &[1.0f32, 2.0, 3.0])]), "cannot be broadcast");
        assert_err(node("Add").run1(&[&f]), "missing required input #1");
        assert_err(node("Add").run1(&[&t(&[1], &[true]), &t(&[1], &[true])]), "numeric");
    }

    #[test]
    fn variadic_sum_max_min() {
        let a = t(&[2], &[1.0f32, 5.0]);
        let b = t(&[2], &[4.0f32, 2.0]);
        let c = t(&[1], &[3.0f32]);
        assert_close(&node("Sum").run1(&[&a, &b, &c]).unwrap(), &[2], &[8.0, 10.0]);
        assert_close(&node("Max").run1(&[&a, &b, &c]).unwrap(), &[2], &[4.0, 5.0]);
        assert_close(&node("Min").run1(&[&a, &b, &c]).unwrap(), &[2], &[1.0, 2.0]);
        assert_close(&node("Max").run1(&[&a]).unwrap(), &[2], &[1.0, 5.0]);
        let ints = node("Max").run1(&[&t(&[2], &[3i64, -1]), &t(&[], &[0i64])]).unwrap();
        assert_eq!(values::<i64>(&ints).1, vec![3, 0]);
    }

    #[test]
    fn comparisons_and_logic() {
        let a = t(&[3], &[1.0f32, 2.0, 3.0]);
        let b = Tensor::scalar(2.0f32);
        let cmp = |op: &str| values::<bool>(&node(op).run1(&[&a, &b]).unwrap()).1;
        assert_eq!(cmp("Less"), vec![true, false, false]);
        assert_eq!(cmp("LessOrEqual"), vec![true, true, false]);
        assert_eq!(cmp("Greater"), vec![false, false, true]);
        assert_eq!(cmp("GreaterOrEqual"), vec![false, true, true]);
        assert_eq!(cmp("Equal"), vec![false, true, false]);
        let p = t(&[2, 2], &[true, true, false, false]);
        let q = t(&[2], &[true, false]);
        let logic = |op: &str| values::<bool>(&node(op).run1(&[&p, &q]).unwrap()).1;
        assert_eq!(logic("And"), vec![true, false, false, false]);
        assert_eq!(logic("Or"), vec![true, true, true, false]);
        assert_eq!(logic("Xor"), vec![false, true, true, false]);
        assert_err(node("And").run1(&[&a, &a]), "expected a bool tensor");
    }

    #[test]
    fn pow_fast_paths_tensor_exponent_and_int_base() {
        let x = t(&[3], &[2.0f32, -3.0, 0.5]);
        assert_close(&node("Pow").run1(&[&x, &Tensor::scalar(3.0f32)]).unwrap(), &[3], &[8.0, -27.0, 0.125]);
        assert_close(&node("Pow").run1(&[&x, &t(&[1], &[2i64])]).unwrap(), &[3], &[4.0, 9.0, 0.25]);
        assert_close(&node("Pow").run1(&[&x, &Tensor::scalar(-1.0f32)]).unwrap(), &[3], &[0.5, -1.0 / 3.0, 2.0]);
        let e = t(&[2, 1], &[1.0f32, 0.5]);
        let y = node("Pow").run1(&[&t(&[2], &[4.0f32, 9.0]), &e]).unwrap();
        assert_close(&y, &[2, 2], &[4.0, 9.0, 2.0, 3.0]);
        let y = node("Pow").run1(&[&t(&[2], &[3i64, -2]), &Tensor::scalar(3i64)]).unwrap();
        assert_eq!(values::<i64>(&y).1, vec![27, -8]);
        // A one-element exponent of higher rank still broadcasts the output shape.
        let y = node("Pow").run1(&[&t(&[2], &[3.0f32, 2.0]), &t(&[1, 1], &[2.0f32])]).unwrap();
        assert_close(&y, &[1, 2], &[9.0, 4.0]);
    }

    #[test]
    fn where_broadcasts_three_ways() {
        let cond = t(&[2, 1], &[true, false]);
        let x = t(&[2], &[1i64, 2]);
        let y = Tensor::scalar(-1i64);
        let out = node("Where").run1(&[&cond, &x, &y]).unwrap();
        assert_eq!(values::<i64>(&out), (vec![2, 2], vec![1, 2, -1, -1]));
        assert_err(node("Where").run1(&[&x, &x, &y]), "expected a bool tensor");
        assert_err(node("Where").run1(&[&cond, &x, &Tensor::scalar(1.0f32)]), "got int64 and float32");
    }
}
