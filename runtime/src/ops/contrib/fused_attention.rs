//! onnxruntime's fused `Attention` (what its transformer optimizer writes for GPT-2 and BERT):
//! `input` `[B, S, D_in]` projected by `weights` `[D_in, Dq + Dk + Dv]` plus `bias`, split into
//! `num_heads` heads (sizes from `qkv_hidden_sizes`, else three equal parts), the keys and
//! values appended to `past` `[2, B, N, P, H]`, then [`super::attention_core`] with
//! `mask_index`, `attention_bias`, `unidirectional`, `scale` and `mask_filter_value`. Outputs
//! `[B, S, Dv]` and `present` `[2, B, N, P + S, H]`. A shared past/present buffer
//! (`past_sequence_length`) and `do_rotary` are refused.

use ndarray::{s, Array2, Axis};

use super::attention_core::{attend, Masking};
use super::mha::num_heads;
use super::{f32_values, DOMAIN};
use crate::error::{op_err, Result};
use crate::kernels::gemm::gemm;
use crate::ops::attention::split_heads;
use crate::ops::cast::cast;
use crate::ops::common::{checked_len, kernel, model_err};
use crate::ops::{input, optional_input, Kernel, OpContext, Registry};
use crate::tensor::Tensor;

pub(super) fn register(reg: &mut Registry) {
    reg.register(DOMAIN, "Attention", 1, factory);
}

fn factory(ctx: &OpContext) -> Result<Box<dyn Kernel>> {
    let heads = num_heads(ctx)?;
    for refused in ["past_present_share_buffer", "do_rotary"] {
        if ctx.attrs.int_or(refused, 0) != 0 {
            return Err(model_err(ctx, format!("{refused} = 1 is not supported")));
        }
    }
    let sizes = match ctx.attrs.ints("qkv_hidden_sizes") {
        Some(v) => match v.iter().map(|&x| usize::try_from(x).ok().filter(|&x| x > 0 && x % heads == 0)).collect::<Option<Vec<_>>>() {
            Some(v) if v.len() == 3 && v[0] == v[1] => Some([v[0], v[1], v[2]]),
            _ => return Err(model_err(ctx, format!("qkv_hidden_sizes {v:?} must be 3 positive multiples of num_heads {heads}, the first two equal"))),
        },
        None => None,
    };
    let causal = ctx.attrs.int_or("unidirectional", 0) != 0;
    let mask_filter_value = ctx.attrs.float_or("mask_filter_value", -10000.0);
    let scale = ctx.attrs.float_or("scale", 0.0);
    let declared = ctx.num_outputs();
    kernel(move |inputs| {
        if optional_input(inputs, 6).is_some() {
            return Err(op_err("past_sequence_length (a shared past/present buffer) is not supported"));
        }
        let (x, w) = (input(inputs, 0)?, input(inputs, 1)?);
        let (&[b, s, d_in], &[w_in, total]) = (x.shape(), w.shape()) else {
            return Err(op_err(format!("input must be 3-D and weights 2-D, got {:?} and {:?}", x.shape(), w.shape())));
        };
        let [dq, dk, dv] = match sizes {
            Some(sizes) => sizes,
            None if total % (3 * heads) == 0 => [total / 3; 3],
            None => return Err(op_err(format!("weights width {total} is not 3 parts of num_heads {heads} heads"))),
        };
        if w_in != d_in || dq + dk + dv != total {
            return Err(op_err(format!("weights of shape {:?}, expected [{d_in}, {}]", w.shape(), dq + dk + dv)));
        }
        let qkv = project(x, w, optional_input(inputs, 2), [b * s, d_in, total])?;
        let part = |from: usize, width: usize, what: &str| -> Result<Tensor> {
            let columns = qkv.slice(s![.., from..from + width]).to_owned();
            split_heads(&Tensor::from_vec(&[b, s, width], columns.into_raw_vec_and_offset().0)?, Some(heads), what)
        };
        let (q, k, v) = (part(0, dq, "query")?, part(dq, dk, "key")?, part(dq + dk, dv, "value")?);
        let past = optional_input(inputs, 4).map(|p| split_past(p, [b, heads, dk / heads], dv)).transpose()?;
        let masking = Masking {
            mask_index: optional_input(inputs, 3),
            attention_bias: optional_input(inputs, 5),
            causal,
            mask_filter_value,
            scale,
        };
        let out = attend(&q, &k, &v, past.as_ref().map(|(k, v)| (k, v)), &masking)?;
        let mut outputs = vec![cast(&out.y, x.dtype())];
        if dk == dv {
            let (pk, pv) = (out.present_key.as_f32()?, out.present_value.as_f32()?);
            let present = ndarray::stack(Axis(0), &[pk.view(), pv.view()]).map_err(|e| op_err(e.to_string()))?;
            outputs.push(cast(&Tensor::from(present), x.dtype()));
        }
        outputs.truncate(declared);
        Ok(outputs)
    })
}

/// `input · weights + bias` as float32 `[rows, total]`.
fn project(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, [rows, d_in, total]: [usize; 3]) -> Result<Array2<f32>> {
    let shaped = |values: Vec<f32>, r: usize, c: usize| Array2::from_shape_vec((r, c), values).map_err(|e| op_err(e.to_string()));
    let a = shaped(f32_values(x, "input")?, rows, d_in)?;
    let wm = shaped(f32_values(w, "weights")?, d_in, total)?;
    let mut out = match bias {
        Some(bias) if bias.shape() == [total] => {
            let row = shaped(f32_values(bias, "bias")?, 1, total)?;
            row.broadcast((rows, total)).ok_or_else(|| op_err("bias does not broadcast"))?.to_owned()
        }
        Some(bias) => return Err(op_err(format!("bias of shape {:?}, expected [{total}]", bias.shape()))),
        None => {
            checked_len(&[rows, total])?;
            Array2::zeros((rows, total))
        }
    };
    gemm(1.0, a.view(), wm.view(), 1.0, out.view_mut())?;
    Ok(out)
}

/// `past` `[2, B, N, P, H]` as float32 key and value caches `[B, N, P, H]`.
fn split_past(past: &Tensor, [b, n, h]: [usize; 3], dv: usize) -> Result<(Tensor, Tensor)> {
    let shape = past.shape();
    if shape.len() != 5 || (shape[0], shape[1], shape[2], shape[4]) != (2, b, n, h) || h * n != dv {
        return Err(op_err(format!("past of shape {shape:?}, expected [2, {b}, {n}, past length, {h}] (and equal key and value sizes)")));
    }
    let values = Tensor::from_vec(shape, f32_values(past, "past")?)?;
    let a = values.as_f32()?;
    let half = |i: usize| Tensor::from(a.index_axis(Axis(0), i).to_owned());
    Ok((half(0), half(1)))
}

#[cfg(test)]
mod tests {
    use super::super::filled;
    use crate::ops::testutil::{assert_err, node, t};

    #[test]
    fn wrong_shapes_are_errors() {
        let att = || node("Attention").domain("com.microsoft").opset(1).int("num_heads", 2).outputs(2);
        let (x, w, bias) = (filled(&[1, 3, 4]), filled(&[4, 12]), filled(&[12]));
        assert_eq!(att().run(&[&x, &w, &bias]).unwrap()[0].shape(), &[1, 3, 4]);
        assert_err(att().run(&[&filled(&[3, 4]), &w, &bias]), "input must be 3-D");
        assert_err(att().run(&[&x, &filled(&[5, 12]), &bias]), "weights of shape");
        assert_err(att().run(&[&x, &filled(&[4, 10]), &bias]), "3 parts");
        assert_err(att().run(&[&x, &w, &filled(&[11])]), "bias of shape");
        assert_err(att().run(&[&x, &w, &bias, &t(&[3], &[3i32, 3, 3])]), "mask_index of shape");
        assert_err(att().run_opt(&[Some(&x), Some(&w), Some(&bias), None, Some(&filled(&[2, 1, 2, 2, 3]))]), "past of shape");
        assert_err(att().ints("qkv_hidden_sizes", &[4, 2, 6]).build().map(|_| ()), "qkv_hidden_sizes");
        assert_err(att().int("do_rotary", 1).build().map(|_| ()), "do_rotary");
    }
}
