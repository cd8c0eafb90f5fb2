//! Einsum: sums of products over labelled axes, as numpy's `einsum` computes them (explicit
//! `->` output or the implicit one, `...` broadcast dims, repeated labels for diagonals).

use super::common::{checked_len, contiguous, from_shape_vec, kernel};
use super::numeric::{numeric, Num};
use super::{input, Kernel, OpContext, Registry};
use crate::error::{op_err, Result};
use crate::tensor::{Array, Tensor};

/// One operand's axes, a label per axis; the axes `...` stands for get labels above `b'z'`
/// ([`broadcast_labels`]).
type Term = Vec<u8>;

/// A parsed equation: the operands' labels (`...` as [`ELLIPSIS`]) and the output's.
struct Equation {
    inputs: Vec<Vec<u8>>,
    output: Vec<u8>,
}

/// Stands for `...` in a parsed term.
const ELLIPSIS: u8 = b'.';

fn parse_term(term: &str) -> Result<Vec<u8>> {
    let rest = term.replacen("...", ".", 1);
    if rest.contains("..") || rest.matches('.').count() > 1 || rest.bytes().any(|c| c != b'.' && !c.is_ascii_alphabetic()) {
        return Err(op_err(format!("Einsum: bad term '{term}' (letters and at most one '...')")));
    }
    Ok(rest.into_bytes())
}

impl Equation {
    fn parse(equation: &str) -> Result<Self> {
        let text: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
        let (lhs, rhs) = match text.split_once("->") {
            Some((l, r)) => (l, Some(r)),
            None => (text.as_str(), None),
        };
        let inputs = lhs.split(',').map(parse_term).collect::<Result<Vec<_>>>()?;
        let output = match rhs {
            Some(r) => parse_term(r)?,
            None => {
                // numpy's implicit output: `...` first, then the labels used once, sorted.
                let all: Vec<u8> = inputs.concat();
                let mut once: Vec<u8> = all.iter().copied().filter(|&c| c != ELLIPSIS && all.iter().filter(|&&d| d == c).count() == 1).collect();
                once.sort_unstable();
                let ellipsis = all.contains(&ELLIPSIS).then_some(ELLIPSIS);
                ellipsis.into_iter().chain(once).collect()
            }
        };
        for &c in output.iter().filter(|&&c| c != ELLIPSIS) {
            if output.iter().filter(|&&d| d == c).count() > 1 || !inputs.iter().any(|t| t.contains(&c)) {
                return Err(op_err(format!("Einsum: output label '{}' must appear once, and in an input", c as char)));
            }
        }
        Ok(Equation { inputs, output })
    }
}

/// Labels for `n` axes of `...`, numbered from the right so that broadcast dims line up.
fn broadcast_labels(n: usize) -> impl Iterator<Item = u8> {
    (0..n).map(move |i| u8::MAX - (n - 1 - i) as u8)
}

/// Expands `...` of a term to as many broadcast axes as the operand's rank leaves.
fn expand(term: &[u8], rank: usize) -> Result<Term> {
    let letters = term.iter().filter(|&&c| c != ELLIPSIS).count();
    if rank < letters || (!term.contains(&ELLIPSIS) && rank != letters) || rank - letters > 64 {
        return Err(op_err(format!("Einsum: term '{}' does not fit an operand of rank {rank}", String::from_utf8_lossy(term))));
    }
    Ok(term.iter().flat_map(|&c| if c == ELLIPSIS { broadcast_labels(rank - letters).collect() } else { vec![c] }).collect())
}

/// The size of every label (broadcast dims of `...` take the largest; 1 broadcasts).
fn label_sizes(terms: &[Term], shapes: &[&[usize]]) -> Result<Vec<(u8, usize)>> {
    let mut sizes: Vec<(u8, usize)> = Vec::new();
    for (term, shape) in terms.iter().zip(shapes) {
        for (label, &dim) in term.iter().zip(shape.iter()) {
            let broadcast = *label > b'z';
            match sizes.iter_mut().find(|(l, _)| l == label) {
                None => sizes.push((*label, dim)),
                Some((_, size)) if *size == dim => {}
                Some((_, size)) if broadcast && (*size == 1 || dim == 1) => *size = (*size).max(dim),
                Some((_, size)) => {
                    return Err(op_err(format!("Einsum: axis '{}' is {size} in one place and {dim} in another", *label as char)))
                }
            }
        }
    }
    Ok(sizes)
}

fn einsum_typed<T: Num>(eq: &Equation, operands: &[&Array<T>]) -> Result<Tensor> {
    let shapes: Vec<&[usize]> = operands.iter().map(|a| a.shape()).collect();
    let terms = eq.inputs.iter().zip(&shapes).map(|(t, s)| expand(t, s.len())).collect::<Result<Vec<_>>>()?;
    let sizes = label_sizes(&terms, &shapes)?;
    let widest = terms.iter().map(|t| t.iter().filter(|&&l| l > b'z').count()).max().unwrap_or(0);
    let output: Vec<u8> = eq
        .output
        .iter()
        .flat_map(|&c| if c == ELLIPSIS { broadcast_labels(widest).collect() } else { vec![c] })
        .collect();
    // Loop order: output labels, then the summed ones.
    let summed: Vec<u8> = sizes.iter().map(|&(l, _)| l).filter(|l| !output.contains(l)).collect();
    let order: Vec<u8> = output.iter().chain(&summed).copied().collect();
    let size_of = |l: u8| sizes.iter().find(|(m, _)| *m == l).map_or(1, |&(_, s)| s);
    let dims: Vec<usize> = order.iter().map(|&l| size_of(l)).collect();
    let out_shape: Vec<usize> = dims[..output.len()].to_vec();
    let out_len = checked_len(&out_shape)?;
    let inner = checked_len(&dims[output.len()..])?;
    checked_len(&[out_len.max(1), inner.max(1)])?;
    let data: Vec<std::borrow::Cow<[T]>> = operands.iter().map(|a| contiguous(a)).collect();
    // strides[o][j]: how far operand o moves when loop index j steps (0 for a broadcast axis).
    let strides: Vec<Vec<usize>> = terms
        .iter()
        .zip(&shapes)
        .map(|(term, shape)| {
            let mut axis_strides = vec![1usize; shape.len()];
            for i in (0..shape.len().saturating_sub(1)).rev() {
                axis_strides[i] = axis_strides[i + 1] * shape[i + 1];
            }
            order
                .iter()
                .map(|l| term.iter().zip(shape.iter()).zip(&axis_strides).filter(|((t, &d), _)| *t == l && d > 1).map(|(_, s)| s).sum())
                .collect()
        })
        .collect();
    let mut result = vec![T::default(); out_len];
    let mut index = vec![0usize; order.len()];
    let mut offsets = vec![0usize; operands.len()];
    for value in result.iter_mut() {
        let mut acc = T::default();
        for _ in 0..inner {
            let product = data.iter().zip(&offsets).fold(None, |p: Option<T>, (d, &o)| Some(p.map_or(d[o], |p| p.mul(d[o]))));
            acc = acc.add(product.unwrap_or_default());
            step(&mut index, &dims, output.len(), &strides, &mut offsets);
        }
        *value = acc;
        step(&mut index, &dims[..output.len()], 0, &strides, &mut offsets);
    }
    Ok(from_shape_vec(&out_shape, result)?.into())
}

/// Advances the odometer over loop indices `from..dims.len()`, updating every operand's offset.
fn step(index: &mut [usize], dims: &[usize], from: usize, strides: &[Vec<usize>], offsets: &mut [usize]) {
    for j in (from..dims.len()).rev() {
        index[j] += 1;
        for (o, s) in offsets.iter_mut().zip(strides) {
            *o += s[j];
        }
        if index[j] < dims[j] {
            return;
        }
        for (o, s) in offsets.iter_mut().zip(strides) {
            *o -= s[j] * dims[j];
        }
        index[j] = 0;
    }
}

fn run_typed<T: Num>(eq: &Equation, first: &Array<T>, inputs: &[&Tensor]) -> Result<Tensor> {
    let mut operands = vec![first];
    for t in &inputs[1..] {
        operands.push(T::unwrap(t).ok_or_else(|| op_err(format!("Einsum: operands of one dtype expected, got {} and {}", T::DTYPE, t.dtype())))?);
    }
    einsum_typed(eq, &operands)
}

fn einsum_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let equation = ctx.attrs.string("equation")?.ok_or_else(|| op_err("Einsum needs an 'equation' attribute"))?;
    let eq = Equation::parse(&equation)?;
    kernel(move |inputs| {
        if inputs.len() != eq.inputs.len() {
            return Err(op_err(format!("Einsum: '{equation}' has {} operands, the node {} inputs", eq.inputs.len(), inputs.len())));
        }
        let tensors = (0..inputs.len()).map(|i| input(inputs, i)).collect::<Result<Vec<_>>>()?;
        let first = tensors.first().ok_or_else(|| op_err("Einsum needs at least one input"))?;
        Ok(vec![numeric!(first, a => run_typed(&eq, a, &tensors))?])
    })
}

/// Registers Einsum.
pub(super) fn register(reg: &mut Registry) {
    reg.register("", "Einsum", 12, einsum_factory);
}

#[cfg(test)]
mod tests {
    use crate::ops::testutil::{assert_err, node, t, values};

    fn einsum(eq: &str, inputs: &[&crate::Tensor]) -> crate::Result<crate::Tensor> {
        node("Einsum").string("equation", eq).run1(inputs)
    }

    #[test]
    fn matmul_transpose_trace_and_implicit_output() {
        let a = t(&[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let b = t(&[3, 2], &[1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0]);
        assert_eq!(values::<f32>(&einsum("ij,jk->ik", &[&a, &b]).unwrap()), (vec![2, 2], vec![4.0, 5.0, 10.0, 11.0]));
        assert_eq!(values::<f32>(&einsum("ij->ji", &[&a]).unwrap()), (vec![3, 2], vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]));
        // Implicit: labels used once, sorted ("ba" -> "ab" is a transpose).
        assert_eq!(values::<f32>(&einsum("ba", &[&a]).unwrap()).1, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        let sq = t(&[2, 2], &[1i64, 2, 3, 4]);
        assert_eq!(values::<i64>(&einsum("ii", &[&sq]).unwrap()), (vec![], vec![5]));
        assert_eq!(values::<i64>(&einsum("ii->i", &[&sq]).unwrap()).1, vec![1, 4]);
        assert_eq!(values::<i64>(&einsum("ij->", &[&sq]).unwrap()).1, vec![10]);
    }

    #[test]
    fn ellipsis_broadcasts_batch_dims() {
        let a = t(&[2, 1, 2], &[1.0f32, 2.0, 3.0, 4.0]);
        let b = t(&[3, 2], &[1.0f32, 1.0, 2.0, 2.0, 3.0, 3.0]);
        // "...j,...j->..." : [2,1] x [3] broadcast to [2,3] dot products.
        let y = einsum("...j,...j->...", &[&a, &b]).unwrap();
        assert_eq!(values::<f32>(&y), (vec![2, 3], vec![3.0, 6.0, 9.0, 7.0, 14.0, 21.0]));
        let d = t(&[2, 2, 2], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        assert_eq!(values::<f32>(&einsum("...ii->...i", &[&d]).unwrap()), (vec![2, 2], vec![1.0, 4.0, 5.0, 8.0]));
    }

    #[test]
    fn bad_equations_and_shapes_are_errors() {
        let a = t(&[2, 3], &[0.0f32; 6]);
        assert_err(einsum("ij,jk->ik", &[&a]), "operands");
        assert_err(einsum("ij,jk->ik", &[&a, &a]), "axis 'j'");
        assert_err(einsum("ijk->i", &[&a]), "rank 2");
        assert_err(einsum("ij->iz", &[&a]), "output label 'z'");
        assert_err(einsum("i1->i", &[&a]), "bad term");
        assert_err(einsum("ij,ij->ij", &[&a, &t(&[2, 3], &[0i64; 6])]), "one dtype");
    }
}
