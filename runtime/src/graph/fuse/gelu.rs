//! GELU, as the `Gelu` op or spelled out in elementwise ops:
//! tanh form `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, erf form `0.5·x·(1 + erf(x/√2))`.

use super::index::{is_op, GraphIndex};
use crate::kernels::activation::{Activation, GELU_TANH_CUBIC, GELU_TANH_SCALE};
use crate::ops::Attrs;

/// A matched GELU.
pub struct Gelu<'g> {
    /// Its input.
    pub x: &'g str,
    /// Its output.
    pub output: &'g str,
    /// The nodes it is spelled with.
    pub nodes: Vec<usize>,
    /// Which form.
    pub activation: Activation,
}

/// Matches a GELU from its `Gelu`, `Tanh` or `Erf` node.
pub fn match_gelu<'g>(ix: &GraphIndex<'g>, i: usize) -> Option<Gelu<'g>> {
    let node = ix.node(i);
    if is_op(node, "Gelu") {
        let tanh = Attrs::new(node).string("approximate").ok().flatten().is_some_and(|a| a == "tanh");
        let activation = if tanh { Activation::GeluTanh } else { Activation::GeluErf };
        return Some(Gelu { x: node.input.first()?, output: ix.output(i), nodes: vec![i], activation });
    }
    let (x, mut nodes, activation) = if is_op(node, "Tanh") {
        let (x, nodes) = tanh_argument(ix, node.input.first()?)?;
        (x, nodes, Activation::GeluTanh)
    } else if is_op(node, "Erf") {
        let scaled = ix.producer(node.input.first()?)?;
        let x = match ix.node(scaled).op_type.as_str() {
            "Div" => ix.input_besides_scalar(scaled, std::f64::consts::SQRT_2)?,
            "Mul" => ix.input_besides_scalar(scaled, std::f64::consts::FRAC_1_SQRT_2)?,
            _ => return None,
        };
        (x, vec![scaled], Activation::GeluErf)
    } else {
        return None;
    };
    nodes.push(i);
    let (output, tail) = half_x_times_one_plus(ix, x, ix.output(i))?;
    nodes.extend(tail);
    Some(Gelu { x, output, nodes, activation })
}

/// `√(2/π)·(x + 0.044715·Pow(x, 3))`: returns `x` and the nodes.
fn tanh_argument<'g>(ix: &GraphIndex<'g>, value: &str) -> Option<(&'g str, Vec<usize>)> {
    let scale = ix.producer_of_type(value, "Mul")?;
    let sum_value = ix.input_besides_scalar(scale, GELU_TANH_SCALE as f64)?;
    let sum = ix.producer_of_type(sum_value, "Add")?;
    let [a, b] = ix.node(sum).input.as_slice() else { return None };
    for (x, cubic_value) in [(a, b), (b, a)] {
        let Some(cubic) = ix.producer_of_type(cubic_value, "Mul") else { continue };
        let Some(pow_value) = ix.input_besides_scalar(cubic, GELU_TANH_CUBIC as f64) else { continue };
        let Some(pow) = ix.producer_of_type(pow_value, "Pow") else { continue };
        if ix.input_besides_scalar(pow, 3.0) == Some(x.as_str()) && ix.node(pow).input.first() == Some(x) {
            return Some((x, vec![pow, cubic, sum, scale]));
        }
    }
    None
}

/// From `t` (tanh or erf of the argument): `Mul(Mul(x, 0.5), Add(t, 1))` or
/// `Mul(Mul(x, Add(t, 1)), 0.5)`. Returns the output and the nodes.
fn half_x_times_one_plus<'g>(ix: &GraphIndex<'g>, x: &str, t: &str) -> Option<(&'g str, Vec<usize>)> {
    let plus = ix.sole_consumer(t).filter(|&n| is_op(ix.node(n), "Add"))?;
    let one_plus = ix.output(plus);
    if ix.input_besides_scalar(plus, 1.0) != Some(t) {
        return None;
    }
    let product = ix.sole_consumer(one_plus).filter(|&n| is_op(ix.node(n), "Mul"))?;
    let other = ix.node(product).input.iter().find(|v| *v != one_plus)?;
    if other == x {
        let half = ix.sole_consumer(ix.output(product)).filter(|&n| is_op(ix.node(n), "Mul"))?;
        ix.input_besides_scalar(half, 0.5).filter(|v| *v == ix.output(product))?;
        return Some((ix.output(half), vec![plus, product, half]));
    }
    let half = ix.producer_of_type(other, "Mul")?;
    (ix.input_besides_scalar(half, 0.5)? == x).then(|| (ix.output(product), vec![half, plus, product]))
}
