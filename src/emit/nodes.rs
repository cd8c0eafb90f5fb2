//! Standard ONNX for each `ai.rbe` op: `RbeMatMul` as `MatMulNBits`, `RbeGather` as
//! `GatherBlockQuantized`, both with the asymmetric offsets added by plain ops; `RbeLayerNorm`
//! as `LayerNormalization`. A weight without a block form is written as the f32 values our
//! decoder gives, and the report says why.

use rbe_runtime::onnx::attributes::{float_attr, int_attr, ints_attr};
use rbe_runtime::rbe::RbeTensor;
use rbe_runtime::Tensor;

use super::blocks::Blocks;
use super::builder::{Builder, MS_DOMAIN};

/// How one weight was written.
pub struct Form {
    /// The ops that carry it, e.g. `MatMulNBits 4-bit + offsets`.
    pub name: String,
    /// Bytes of the initializers written for it (0 when an earlier node wrote them).
    pub bytes: usize,
    /// Why it is not in block form, when it is not.
    pub note: Option<String>,
}

fn bytes_of(values: usize, added: bool) -> usize {
    if added {
        values
    } else {
        0
    }
}

/// The block parts of `tensor` as initializers `{tensor}.q{bits}.{codes_r<rank>,scales,zero_points}`
/// (codes shaped `codes_shape`: the two ops want them in different ranks), written once however
/// many nodes read them.
fn block_parts(b: &mut Builder, tensor: &str, q: &Blocks, codes_shape: &[usize]) -> Result<([String; 3], usize), String> {
    let base = format!("{tensor}.q{}", q.bits);
    let codes = format!("{base}.codes_r{}", codes_shape.len());
    let names = [codes, format!("{base}.scales"), format!("{base}.zero_points")];
    let per_row = q.blocks_per_row();
    let zp_row = q.zero_points.len() / q.rows.max(1);
    let codes = b.shared(&names[0], || Tensor::from_vec(codes_shape, q.codes.clone()))?;
    let scales = b.shared(&names[1], || Tensor::from_vec(&[q.rows, per_row], q.scales.clone()))?;
    let zps = b.shared(&names[2], || Tensor::from_vec(&[q.rows, zp_row], q.zero_points.clone()))?;
    let bytes = bytes_of(q.codes.len(), codes) + bytes_of(4 * q.scales.len(), scales) + bytes_of(q.zero_points.len(), zps);
    Ok((names, bytes))
}

/// The per-block offsets of `tensor` as a `[rows, blocks]` initializer, written once.
fn offsets(b: &mut Builder, tensor: &str, q: &Blocks, offsets: &[f32], transposed: bool) -> Result<(String, usize), String> {
    let (rows, per_row) = (q.rows, q.blocks_per_row());
    let (name, shape, values) = if transposed {
        (format!("{tensor}.offsets_t"), [per_row, rows], crate::convert::transpose(offsets, rows, per_row))
    } else {
        (format!("{tensor}.offsets"), [rows, per_row], offsets.to_vec())
    };
    let added = b.shared(&name, || Tensor::from_vec(&shape, values))?;
    Ok((name, bytes_of(4 * offsets.len(), added)))
}

/// `Y = X · Wᵀ (+ bias)` for `W` encoded as `N` rows of length `K`, writing `output`.
pub fn matmul(b: &mut Builder, x: &str, tensor: &str, w: &RbeTensor, bias: Option<&str>, output: &str) -> Result<Form, String> {
    let q = match Blocks::of(w) {
        Ok(q) => q,
        Err(why) => return dense_matmul(b, x, tensor, w, bias, output, why),
    };
    let (n, k, per_row) = (q.rows, q.cols, q.blocks_per_row());
    let blob = q.block * q.bits as usize / 8;
    let ([codes, scales, zps], mut bytes) = block_parts(b, tensor, &q, &[n, per_row, blob])?;
    let mut inputs = vec![x, codes.as_str(), scales.as_str(), zps.as_str()];
    if let Some(bias) = bias {
        inputs.extend(["", bias]);
    }
    let attrs = vec![
        int_attr("K", k as i64),
        int_attr("N", n as i64),
        int_attr("bits", q.bits as i64),
        int_attr("block_size", q.block as i64),
    ];
    let Some(offs) = &q.offsets else {
        b.node("MatMulNBits", MS_DOMAIN, &inputs, output, attrs);
        return Ok(Form { name: format!("MatMulNBits {}-bit", q.bits), bytes, note: None });
    };
    // X · (step·q + offset)ᵀ = MatMulNBits(X) + (X summed per block) · offsetsᵀ.
    let yq = b.name("quantized");
    b.node("MatMulNBits", MS_DOMAIN, &inputs, &yq, attrs);
    let (off_t, off_bytes) = offsets(b, tensor, &q, offs, true)?;
    bytes += off_bytes;
    let blocks_shape = b.ints("x_blocks_shape", &[-1, per_row as i64, q.block as i64])?;
    let xb = b.op("Reshape", &[x, &blocks_shape], "x_blocks", vec![]);
    let sums = b.sum_last_axis(&xb, "x_block_sums")?;
    let corr = b.op("MatMul", &[&sums, &off_t], "offset_term", vec![]);
    let y_shape = b.op("Shape", &[&yq], "y_shape", vec![]);
    let corr = b.op("Reshape", &[&corr, &y_shape], "offset_term_shaped", vec![]);
    b.node("Add", "", &[&yq, &corr], output, vec![]);
    Ok(Form { name: format!("MatMulNBits {}-bit + offsets", q.bits), bytes, note: None })
}

/// [`matmul`] for a weight without a block form: its decoded values as the `[N, K]`
/// initializer [`gather`]'s fallback also uses (a tied table is stored once), transposed by a
/// node (onnxruntime folds it at load).
fn dense_matmul(b: &mut Builder, x: &str, tensor: &str, w: &RbeTensor, bias: Option<&str>, output: &str, why: String) -> Result<Form, String> {
    let (n, k) = (w.rows(), w.cols());
    let (name, added) = decoded(b, tensor, w)?;
    let wt = b.op("Transpose", &[&name], "weight_t", vec![ints_attr("perm", &[1, 0])]);
    match bias {
        Some(bias) => {
            let y = b.op("MatMul", &[x, &wt], "product", vec![]);
            b.node("Add", "", &[&y, bias], output, vec![]);
        }
        None => {
            b.node("MatMul", "", &[x, &wt], output, vec![]);
        }
    }
    Ok(Form { name: "MatMul f32".into(), bytes: bytes_of(4 * n * k, added), note: Some(why) })
}

/// A tensor's decoded values, rows as encoded, as one shared initializer: its name, and
/// whether this call added it.
fn decoded(b: &mut Builder, tensor: &str, t: &RbeTensor) -> Result<(String, bool), String> {
    let name = format!("{tensor}.f32");
    let added = b.shared(&name, || Tensor::from_vec(&[t.rows(), t.cols()], t.decode()))?;
    Ok((name, added))
}

/// Rows `ids` of a table encoded as `V` rows, writing `output` (shape `ids.shape + [D]`).
pub fn gather(b: &mut Builder, table: &str, t: &RbeTensor, ids: &str, output: &str) -> Result<Form, String> {
    let q = match Blocks::of(t) {
        Ok(q) => q,
        Err(why) => {
            let (name, added) = decoded(b, table, t)?;
            b.node("Gather", "", &[&name, ids], output, vec![int_attr("axis", 0)]);
            return Ok(Form { name: "Gather f32".into(), bytes: bytes_of(4 * t.rows() * t.cols(), added), note: Some(why) });
        }
    };
    let row_bytes = q.cols * q.bits as usize / 8;
    let ([codes, scales, zps], mut bytes) = block_parts(b, table, &q, &[q.rows, row_bytes])?;
    let attrs = vec![
        int_attr("gather_axis", 0),
        int_attr("quantize_axis", 1),
        int_attr("block_size", q.block as i64),
        int_attr("bits", q.bits as i64),
    ];
    let inputs = [codes.as_str(), ids, scales.as_str(), zps.as_str()];
    let Some(offs) = &q.offsets else {
        b.node("GatherBlockQuantized", MS_DOMAIN, &inputs, output, attrs);
        return Ok(Form { name: format!("GatherBlockQuantized {}-bit", q.bits), bytes, note: None });
    };
    // Each gathered row's blocks get their offsets added: (q - zp)·step + offset, as we decode.
    let yq = b.name("quantized");
    b.node("GatherBlockQuantized", MS_DOMAIN, &inputs, &yq, attrs);
    let (off, off_bytes) = offsets(b, table, &q, offs, false)?;
    bytes += off_bytes;
    let per_row = q.blocks_per_row() as i64;
    let blocks_shape = b.ints("blocks_shape", &[-1, per_row, q.block as i64])?;
    let offsets_shape = b.ints("offsets_shape", &[-1, per_row, 1])?;
    let y3 = b.op("Reshape", &[&yq, &blocks_shape], "blocks", vec![]);
    let o = b.op("Gather", &[&off, ids], "row_offsets", vec![int_attr("axis", 0)]);
    let o3 = b.op("Reshape", &[&o, &offsets_shape], "row_offsets_shaped", vec![]);
    let sum = b.op("Add", &[&y3, &o3], "rows", vec![]);
    let shape = b.op("Shape", &[&yq], "shape", vec![]);
    b.node("Reshape", "", &[&sum, &shape], output, vec![]);
    Ok(Form { name: format!("GatherBlockQuantized {}-bit + offsets", q.bits), bytes, note: None })
}

/// LayerNormalization of `x` over the axes from `axis` on, with `scale` and `bias`: the op
/// itself from opset 17, its decomposition before (over one last axis, as `RbeLayerNorm`
/// normalizes).
pub fn layer_norm(b: &mut Builder, x: &str, scale: &str, bias: Option<&str>, axis: i64, epsilon: f32, output: &str) -> Result<(), String> {
    if b.opset >= 17 {
        let inputs: Vec<&str> = [x, scale].into_iter().chain(bias).collect();
        b.node("LayerNormalization", "", &inputs, output, vec![int_attr("axis", axis), float_attr("epsilon", epsilon)]);
        return Ok(());
    }
    if axis != -1 {
        return Err(format!("LayerNormalization over axes from {axis} before opset 17 is not written here (only the last axis)"));
    }
    let mean = b.mean_keep(x, -1, "ln_mean")?;
    let centered = b.op("Sub", &[x, &mean], "ln_centered", vec![]);
    let squares = b.op("Mul", &[&centered, &centered], "ln_squares", vec![]);
    let variance = b.mean_keep(&squares, -1, "ln_variance")?;
    let eps = b.constant("ln_epsilon", Tensor::from_vec(&[], vec![epsilon]))?;
    let shifted = b.op("Add", &[&variance, &eps], "ln_shifted", vec![]);
    let std = b.op("Sqrt", &[&shifted], "ln_std", vec![]);
    let normalized = b.op("Div", &[&centered, &std], "ln_normalized", vec![]);
    match bias {
        Some(bias) => {
            let scaled = b.op("Mul", &[&normalized, scale], "ln_scaled", vec![]);
            b.node("Add", "", &[&scaled, bias], output, vec![]);
        }
        None => {
            b.node("Mul", "", &[&normalized, scale], output, vec![]);
        }
    }
    Ok(())
}
