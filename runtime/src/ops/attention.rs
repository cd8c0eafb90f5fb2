//! The standard `Attention` op (opsets 23, 24, 25): Q, K, V as `[B, S, heads·D]` (with
//! `q_num_heads`, `kv_num_heads`) or `[B, heads, S, D]`; grouped key/value heads; a boolean or
//! additive `attn_mask`, causal (offset by the past or by `nonpad_kv_seqlen`), sliding-window
//! (25) and padding (24) masks folded into one bias; a KV cache in `past_*` / `present_*`;
//! `scale`, `softcap` and the optional `qk_matmul_output`. Computed in float32 by
//! [`crate::kernels::sdpa`], returned in the input's type. The semantics follow the onnx
//! reference implementation, which wrote the conformance outputs: there
//! `qk_matmul_output_mode` 0 and 1 both give the (softcapped) scores.

use half::{bf16, f16};
use ndarray::{Axis, Ix4, IxDyn};

use super::cast::cast;
use super::common::{checked_len, contiguous, from_shape_vec, kernel, model_err};
use super::{input, optional_input, Kernel, OpContext, Registry};
use crate::error::{op_err, Result};
use crate::kernels::sdpa::{sdpa, Capture, Sdpa};
use crate::tensor::{Array, DType, Element, Tensor};
use crate::with_array;

/// The attributes of one node, checked at load.
struct Config {
    opset: i64,
    is_causal: bool,
    scale: Option<f32>,
    softcap: f32,
    capture: Capture,
    q_heads: Option<usize>,
    kv_heads: Option<usize>,
    /// Sliding window bounds (opset 25), `-1` for unbounded.
    window: [i64; 2],
    outputs: usize,
}

/// The sizes the masks are built for, and what offsets the causal frontier.
struct Frame {
    dims: [usize; 4],
    past: Option<usize>,
    nonpad: Option<Vec<i64>>,
}

impl Frame {
    /// The count of valid keys before batch `b`'s queries: the past length, or
    /// `nonpad_kv_seqlen[b] - T`, or 0 (not clamped: a negative one masks leading rows).
    fn offset(&self, b: usize) -> i64 {
        match (&self.past, &self.nonpad) {
            (Some(p), _) => *p as i64,
            (None, Some(n)) => n[b] - self.dims[2] as i64,
            (None, None) => 0,
        }
    }
}

fn attention_factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let positive = |name: &str| -> Result<Option<usize>> {
        match ctx.attrs.int(name) {
            None => Ok(None),
            Some(n) if n > 0 => usize::try_from(n).map(Some).map_err(|_| model_err(ctx, format!("{name} = {n} is too large"))),
            Some(n) => Err(model_err(ctx, format!("{name} must be positive, got {n}"))),
        }
    };
    let mode = ctx.attrs.int_or("qk_matmul_output_mode", 0);
    let wants_scores = ctx.node.output.get(3).is_some_and(|n| !n.is_empty());
    let capture = match (wants_scores, mode) {
        (_, m) if !(0..=3).contains(&m) => return Err(model_err(ctx, format!("qk_matmul_output_mode must be 0..3, got {m}"))),
        (false, _) => Capture::Nothing,
        (true, 0 | 1) => Capture::Scores,
        (true, 2) => Capture::Biased,
        (true, _) => Capture::Probs,
    };
    let window = [ctx.attrs.int_or("left_window_size", -1), ctx.attrs.int_or("right_window_size", -1)];
    if window.iter().any(|&w| w < -1) {
        return Err(model_err(ctx, format!("window sizes must be -1 or nonnegative, got {window:?}")));
    }
    if ctx.num_outputs() > 4 {
        return Err(model_err(ctx, format!("declares {} outputs, Attention has 4", ctx.num_outputs())));
    }
    let config = Config {
        opset: ctx.opset,
        is_causal: ctx.attrs.int_or("is_causal", 0) != 0,
        scale: ctx.attrs.has("scale").then(|| ctx.attrs.float_or("scale", 1.0)),
        softcap: ctx.attrs.float_or("softcap", 0.0),
        capture,
        q_heads: positive("q_num_heads")?,
        kv_heads: positive("kv_num_heads")?,
        window,
        outputs: ctx.num_outputs().max(1),
    };
    kernel(move |inputs| run(&config, inputs))
}

fn run(config: &Config, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
    let (q, k, v) = (input(inputs, 0)?, input(inputs, 1)?, input(inputs, 2)?);
    for (t, what) in [(q, "Q"), (k, "K"), (v, "V")] {
        if !t.dtype().is_float() {
            return Err(op_err(format!("Attention needs float {what}, got {}", t.dtype())));
        }
    }
    if q.rank() != k.rank() || q.rank() != v.rank() {
        return Err(op_err(format!(
            "Q, K and V must have the same rank, got shapes {:?}, {:?}, {:?}",
            q.shape(),
            k.shape(),
            v.shape()
        )));
    }
    if q.rank() == 4 {
        check_heads_attrs(config, q, k)?;
    }
    let q4 = split_heads(q, config.q_heads, "Q")?;
    let (k4, v4) = (split_heads(k, config.kv_heads, "K")?, split_heads(v, config.kv_heads, "V")?);
    let (past_key, past_value) = (optional_input(inputs, 4), optional_input(inputs, 5));
    let nonpad = if config.opset >= 24 { optional_input(inputs, 6) } else { None };
    let past = match (past_key, past_value) {
        (Some(pk), Some(pv)) if nonpad.is_none() => Some((pk, pv)),
        (None, None) => None,
        (Some(_), Some(_)) => return Err(op_err("nonpad_kv_seqlen cannot be combined with past_key/past_value")),
        _ => return Err(op_err("past_key and past_value must be given together")),
    };
    let present_key = append(past.map(|p| p.0), &k4, "past_key")?;
    let present_value = append(past.map(|p| p.1), &v4, "past_value")?;
    let up = |t: &Tensor| cast(t, DType::F32);
    let (qf, kf, vf) = (up(&q4), up(&present_key), up(&present_value));
    let (qv, kv, vv) = (rank4(&qf)?, rank4(&kf)?, rank4(&vf)?);
    let (b, h, t, d) = qv.dim();
    let s = kv.dim().2;
    let nonpad = match nonpad {
        Some(n) => {
            let lens = n.to_i64_vec()?;
            if n.rank() != 1 || lens.len() != b {
                return Err(op_err(format!("nonpad_kv_seqlen of shape {:?}, expected [{b}]", n.shape())));
            }
            Some(lens)
        }
        None => None,
    };
    let frame = Frame { dims: [b, h, t, s], past: past.map(|(pk, _)| pk.shape()[2]), nonpad };
    let bias = build_bias(config, optional_input(inputs, 3), &frame)?;
    let bias = match &bias {
        Some(m) => Some(
            m.broadcast(IxDyn(&frame.dims))
                .and_then(|m| m.into_dimensionality::<Ix4>().ok())
                .ok_or_else(|| op_err(format!("attention bias {:?} does not broadcast to {:?}", m.shape(), frame.dims)))?,
        ),
        None => None,
    };
    let out = sdpa(&Sdpa {
        q: qv,
        k: kv,
        v: vv,
        bias,
        scale: effective_scale(config.scale.unwrap_or(1.0 / (d as f32).sqrt()), q.dtype()),
        softcap: config.softcap,
        capture: config.capture,
    })?;
    let dv = vv.dim().3;
    let y = Tensor::from(from_shape_vec(&[b, h, t, dv], out.y)?);
    let y = if q.rank() == 3 { merge_heads(&y)? } else { y };
    let mut outputs = vec![cast(&y, q.dtype()), present_key, present_value];
    if let Some(scores) = out.scores {
        outputs.push(cast(&Tensor::from(from_shape_vec(&[b, h, t, s], scores)?), q.dtype()));
    }
    outputs.truncate(config.outputs);
    Ok(outputs)
}

/// `q_num_heads` / `kv_num_heads` with 4-D inputs: refused from opset 25, else they must
/// agree with the shapes.
fn check_heads_attrs(config: &Config, q: &Tensor, k: &Tensor) -> Result<()> {
    let given = config.q_heads.is_some() || config.kv_heads.is_some();
    if given && config.opset >= 25 {
        return Err(op_err("q_num_heads and kv_num_heads must not be given for 4-D inputs"));
    }
    for (heads, t, what) in [(config.q_heads, q, "q_num_heads"), (config.kv_heads, k, "kv_num_heads")] {
        if heads.is_some_and(|n| n != t.shape()[1]) {
            return Err(op_err(format!("{what} disagrees with the 4-D input of shape {:?}", t.shape())));
        }
    }
    Ok(())
}

/// The factor the scores get: the reference scales Q and K each by `sqrt(scale)` rounded to
/// the input type, so this is that rounded root squared.
fn effective_scale(scale: f32, dtype: DType) -> f32 {
    let root = (scale as f64).sqrt();
    let root = match dtype {
        DType::F16 => f16::from_f64(root).to_f64(),
        DType::BF16 => bf16::from_f32(root as f32).to_f64(),
        DType::F32 => root as f32 as f64,
        _ => root,
    };
    (root * root) as f32
}

/// `t` as `[B, heads, S, D]`: a 4-D tensor as it is, a 3-D `[B, S, heads·D]` one split into
/// `heads` (a view when `t` is row-major).
pub(super) fn split_heads(t: &Tensor, heads: Option<usize>, what: &str) -> Result<Tensor> {
    match (t.shape(), heads) {
        ([_, _, _, _], _) => Ok(t.clone()),
        (&[b, s, hidden], Some(n)) => {
            if hidden % n != 0 {
                return Err(op_err(format!("{what} hidden size {hidden} is not a multiple of its {n} heads")));
            }
            let split = t.reshape(&[b, s, n, hidden / n])?;
            Ok(with_array!(&split, a => Tensor::from(a.clone().permuted_axes(IxDyn(&[0, 2, 1, 3])))))
        }
        ([_, _, _], None) => Err(op_err(format!("3-D {what} needs the q_num_heads and kv_num_heads attributes"))),
        (shape, _) => Err(op_err(format!("{what} must be 3-D or 4-D, got shape {shape:?}"))),
    }
}

/// `[B, heads, S, D]` as `[B, S, heads·D]`.
pub(super) fn merge_heads(t: &Tensor) -> Result<Tensor> {
    let &[b, h, s, d] = t.shape() else {
        return Err(op_err(format!("expected a 4-D tensor, got shape {:?}", t.shape())));
    };
    with_array!(t, a => Tensor::from(a.clone().permuted_axes(IxDyn(&[0, 2, 1, 3])))).reshape(&[b, s, h * d])
}

/// The cache after this step: `past` and `new` joined along the sequence axis (axis 2), in
/// their own type; `new` alone without a past.
pub(super) fn append(past: Option<&Tensor>, new: &Tensor, what: &str) -> Result<Tensor> {
    let Some(past) = past else { return Ok(new.clone()) };
    let (p, n) = (past.shape(), new.shape());
    if past.dtype() != new.dtype() || p.len() != 4 || (p[0], p[1], p[3]) != (n[0], n[1], n[3]) {
        return Err(op_err(format!(
            "{what} ({} {p:?}) does not match the new entries ({} {n:?}) outside the sequence axis",
            past.dtype(),
            new.dtype()
        )));
    }
    checked_len(&[p[0], p[1], p[2] + n[2], p[3]])?;
    with_array!(past, a => concat_seq(a, new))
}

fn concat_seq<T: Element>(past: &Array<T>, new: &Tensor) -> Result<Tensor> {
    ndarray::concatenate(Axis(2), &[past.view(), new.array::<T>()?.view()])
        .map(Tensor::from)
        .map_err(|e| op_err(format!("cannot append to the cache: {e}")))
}

/// A float32 tensor as a 4-D view.
pub(super) fn rank4(t: &Tensor) -> Result<ndarray::ArrayView4<'_, f32>> {
    t.as_f32()?.view().into_dimensionality::<Ix4>().map_err(|e| op_err(e.to_string()))
}

/// The additive bias `[B or 1, H or 1, T, S]` of the mask, the causal frontier, the window
/// and the padding, or `None` when there is none of them.
fn build_bias(config: &Config, mask: Option<&Tensor>, frame: &Frame) -> Result<Option<ndarray::ArrayD<f32>>> {
    let [b, _, t, s] = frame.dims;
    let windowed = config.window.iter().any(|&w| w >= 0);
    if mask.is_none() && !config.is_causal && !windowed && frame.nonpad.is_none() {
        return Ok(None);
    }
    let (mask, m) = match mask {
        Some(mask) => {
            let m = mask_dims(mask.shape(), frame.dims)?;
            let values = match mask {
                Tensor::Bool(a) => a.mapv(|keep| if keep { 0.0 } else { f32::NEG_INFINITY }).into_shared(),
                other if other.dtype().is_float() => cast(other, DType::F32).as_f32()?.clone(),
                other => return Err(op_err(format!("attn_mask must be bool or float, got {}", other.dtype()))),
            };
            (Some(contiguous(&values).into_owned()), m)
        }
        None => (None, [1, 1, 1, s]),
    };
    let per_batch = m[0] > 1 || frame.nonpad.is_some();
    let (bb, bh) = (if per_batch { b } else { 1 }, m[1]);
    let shape = [bb, bh, t, s];
    checked_len(&shape)?;
    let mut bias = Vec::with_capacity(bb * bh * t * s);
    for bi in 0..bb {
        let offset = frame.offset(bi);
        let open = |ti: usize, j: usize| {
            let diff = ti as i64 + offset - j as i64;
            let causal = !config.is_causal || diff >= 0;
            let left = config.window[0] < 0 || diff <= config.window[0];
            let right = config.window[1] < 0 || -diff <= config.window[1];
            let unpadded = frame.nonpad.as_ref().is_none_or(|n| (j as i64) < n[bi]);
            causal && left && right && unpadded
        };
        for hi in 0..bh {
            for ti in 0..t {
                for j in 0..s {
                    let value = match &mask {
                        // Keys past the mask's last column are masked (the reference pads with -inf).
                        Some(values) if j < m[3] => {
                            let at = |dim: usize, i: usize| if dim == 1 { 0 } else { i };
                            values[((at(m[0], bi) * m[1] + at(m[1], hi)) * m[2] + at(m[2], ti)) * m[3] + j]
                        }
                        Some(_) => f32::NEG_INFINITY,
                        None => 0.0,
                    };
                    bias.push(if open(ti, j) { value } else { value + f32::NEG_INFINITY });
                }
            }
        }
    }
    Ok(Some(from_shape_vec(&shape, bias)?))
}

/// The mask's shape right-aligned to `[B, H, T, S']`, checked to broadcast to `[B, H, T, S]`
/// with `S' <= S` (shorter masks are padded).
fn mask_dims(shape: &[usize], [b, h, t, s]: [usize; 4]) -> Result<[usize; 4]> {
    if shape.is_empty() || shape.len() > 4 {
        return Err(op_err(format!("attn_mask must have rank 1 to 4, got shape {shape:?}")));
    }
    let mut m = [1; 4];
    m[4 - shape.len()..].copy_from_slice(shape);
    let fits = |dim: usize, full: usize| dim == 1 || dim == full;
    if !(fits(m[0], b) && fits(m[1], h) && fits(m[2], t) && m[3] <= s) {
        return Err(op_err(format!("attn_mask of shape {shape:?} does not broadcast to {:?}", [b, h, t, s])));
    }
    Ok(m)
}

/// Registers Attention.
pub(super) fn register(reg: &mut Registry) {
    for since in [23, 24, 25] {
        reg.register("", "Attention", since, attention_factory);
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::testutil::{assert_close, assert_err, node, t, values};
    use crate::tensor::Tensor;

    fn seq(shape: &[usize], seed: usize) -> Tensor {
        let n: usize = shape.iter().product();
        t(shape, &(0..n).map(|i| ((i * 7 + seed * 5) % 11) as f32 / 4.0 - 1.2).collect::<Vec<_>>())
    }

    #[test]
    fn one_query_over_two_keys() {
        // scores [1, 0] at scale 1: probabilities e/(e+1), 1/(e+1).
        let q = t(&[1, 1, 1, 2], &[1.0f32, 0.0]);
        let k = t(&[1, 1, 2, 2], &[1.0f32, 0.0, 0.0, 1.0]);
        let v = t(&[1, 1, 2, 2], &[1.0f32, 2.0, 3.0, 4.0]);
        let y = node("Attention").opset(23).float("scale", 1.0).run1(&[&q, &k, &v]).unwrap();
        let p = std::f32::consts::E / (std::f32::consts::E + 1.0);
        assert_close(&y, &[1, 1, 1, 2], &[p + 3.0 * (1.0 - p), 2.0 * p + 4.0 * (1.0 - p)]);
        // A boolean mask hiding every key gives a zero row, and mode 3 zero probabilities.
        let none = t(&[1, 2], &[false, false]);
        let out = node("Attention").opset(23).outputs(4).int("qk_matmul_output_mode", 3).run_opt(&[Some(&q), Some(&k), Some(&v), Some(&none), None, None]).unwrap();
        assert_close(&out[0], &[1, 1, 1, 2], &[0.0, 0.0]);
        assert_close(&out[3], &[1, 1, 1, 2], &[0.0, 0.0]);
    }

    #[test]
    fn causal_with_past_matches_the_explicit_mask_and_3d_matches_4d() {
        // 4 query heads over 2 kv heads, 2 new positions after 3 past ones.
        let (q, k, v) = (seq(&[1, 4, 2, 3], 1), seq(&[1, 2, 2, 3], 2), seq(&[1, 2, 2, 3], 3));
        let (pk, pv) = (seq(&[1, 2, 3, 3], 4), seq(&[1, 2, 3, 3], 5));
        let causal = node("Attention").opset(23).outputs(3).int("is_causal", 1).run(&[&q, &k, &v, &t(&[0, 5], &[] as &[f32])]);
        assert_err(causal, "broadcast");
        let inputs = |mask: Option<&Tensor>| -> Vec<Option<Tensor>> { vec![Some(q.clone()), Some(k.clone()), Some(v.clone()), mask.cloned(), Some(pk.clone()), Some(pv.clone())] };
        let run = |spec: crate::ops::testutil::NodeSpec, ins: &[Option<Tensor>]| spec.run_opt(&ins.iter().map(Option::as_ref).collect::<Vec<_>>()).unwrap();
        let causal = run(node("Attention").opset(23).outputs(3).int("is_causal", 1), &inputs(None));
        let mask = t(&[2, 5], &[true, true, true, true, false, true, true, true, true, true]);
        let masked = run(node("Attention").opset(23).outputs(3), &inputs(Some(&mask)));
        let (shape, want) = values::<f32>(&masked[0]);
        assert_close(&causal[0], &shape, &want);
        assert_eq!(causal[1].shape(), &[1, 2, 5, 3]);
        assert_eq!(values::<f32>(&causal[1]).1[..9], values::<f32>(&pk).1[..9]);
        // The same in 3-D [B, S, heads·D] form.
        let to3 = |x: &Tensor| {
            let (s, d) = (x.shape()[2], x.shape()[3]);
            crate::ops::testutil::node("Transpose").ints("perm", &[0, 2, 1, 3]).run1(&[x]).unwrap().reshape(&[1, s, x.shape()[1] * d]).unwrap()
        };
        let spec = node("Attention").opset(23).outputs(3).int("is_causal", 1).int("q_num_heads", 4).int("kv_num_heads", 2);
        let y3 = spec.run_opt(&[Some(&to3(&q)), Some(&to3(&k)), Some(&to3(&v)), None, Some(&pk), Some(&pv)]).unwrap();
        let (_, want) = values::<f32>(&to3(&causal[0]));
        assert_close(&y3[0], &[1, 2, 12], &want);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let (q, k, v) = (seq(&[1, 3, 2, 4], 1), seq(&[1, 2, 5, 4], 2), seq(&[1, 2, 5, 4], 3));
        let at = |opset: i64| node("Attention").opset(opset);
        assert_err(at(23).run1(&[&q, &k, &v]), "dividing");
        let q = seq(&[1, 2, 2, 4], 1);
        assert_err(at(23).run1(&[&seq(&[2, 4], 1), &seq(&[2, 4], 2), &seq(&[2, 4], 3)]), "3-D or 4-D");
        assert_err(at(23).run1(&[&seq(&[1, 2, 8], 1), &k, &v]), "same rank");
        assert_err(at(23).run1(&[&seq(&[1, 2, 8], 1), &seq(&[1, 5, 8], 2), &seq(&[1, 5, 8], 3)]), "q_num_heads");
        let heads = at(23).int("q_num_heads", 3).int("kv_num_heads", 2);
        assert_err(heads.run1(&[&seq(&[1, 2, 8], 1), &seq(&[1, 5, 8], 2), &seq(&[1, 5, 8], 3)]), "not a multiple");
        assert_err(at(25).int("q_num_heads", 2).run1(&[&q, &k, &v]), "must not be given");
        assert_err(at(23).run1(&[&q, &seq(&[1, 2, 5, 3], 2), &v]), "disagree");
        assert_err(at(23).run1(&[&q, &k, &seq(&[1, 2, 4, 4], 3)]), "disagree");
        assert_err(at(23).run1(&[&q, &k, &v, &seq(&[3, 5], 4)]), "attn_mask");
        assert_err(at(23).run1(&[&q, &k, &v, &seq(&[2, 6], 4)]), "attn_mask");
        assert_err(at(23).run1(&[&q, &k, &v, &seq(&[1, 1, 1, 2, 5], 4)]), "rank 1 to 4");
        assert_err(at(23).run1(&[&q, &k, &v, &t(&[5], &[1i64; 5])]), "bool or float");
        assert_err(at(23).run_opt(&[Some(&q), Some(&k), Some(&v), None, Some(&seq(&[1, 2, 1, 4], 5)), None]), "together");
        assert_err(at(23).run(&[&q, &k, &v, &seq(&[2, 5], 4), &seq(&[1, 3, 1, 4], 5), &seq(&[1, 3, 1, 4], 5)]), "past_key");
        let lens = t(&[1], &[3i64]);
        let past = seq(&[1, 2, 1, 4], 5);
        assert_err(at(24).run(&[&q, &k, &v, &seq(&[2, 6], 4), &past, &past, &lens]), "nonpad_kv_seqlen cannot");
        assert_err(at(24).run_opt(&[Some(&q), Some(&k), Some(&v), None, None, None, Some(&t(&[2], &[3i64, 3]))]), "nonpad_kv_seqlen of shape");
        assert_err(at(23).run1(&[&t(&[1, 1, 1, 1], &[1i64]), &k, &v]), "float");
        assert_err(at(23).int("qk_matmul_output_mode", 4).build().map(|_| ()), "0..3");
        assert_err(at(23).int("kv_num_heads", -2).build().map(|_| ()), "positive");
        assert_err(at(25).int("left_window_size", -3).build().map(|_| ()), "window");
    }
}
