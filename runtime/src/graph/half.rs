//! Half-precision graphs computed in single precision. float16 and bfloat16 values are held
//! and computed as f32 from load to output, and rounded only where the model itself casts to a
//! half type and at its declared outputs — as onnxruntime's CPU provider computes every op it
//! has no half kernel for (it drops the casts it inserts between such ops). Rounding every
//! intermediate (norm statistics, softmax sums, the residual stream) to f16 is what makes a
//! half model drift from its f32 original; computing through them keeps the drift at the half
//! weights' own rounding.

use std::borrow::Cow;

use crate::error::Result;
use crate::onnx::proto::attribute_proto::AttributeType;
use crate::onnx::proto::tensor_proto::DataType;
use crate::onnx::proto::type_proto::Value as TypeValue;
use crate::onnx::proto::{GraphProto, NodeProto, TensorProto, ValueInfoProto};
use crate::onnx::{tensor_from_proto, tensor_to_proto, ExternalData};
use crate::ops::cast::cast;
use crate::tensor::{DType, Tensor};

/// Ops whose `dtype` attribute names the element type they produce.
const DTYPE_PRODUCERS: [&str; 7] =
    ["EyeLike", "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Bernoulli", "Multinomial"];

/// Whether an ONNX element type code is float16 or bfloat16.
fn is_half_code(code: i32) -> bool {
    code == DataType::Float16 as i32 || code == DataType::Bfloat16 as i32
}

/// Whether a tensor is float16 or bfloat16.
pub fn is_half(dtype: DType) -> bool {
    matches!(dtype, DType::F16 | DType::BF16)
}

/// `t` as f32 when it is a half-precision tensor, unchanged otherwise.
pub fn widen(t: Tensor) -> Tensor {
    if is_half(t.dtype()) {
        cast(&t, DType::F32)
    } else {
        t
    }
}

/// Whether `graph`, or a graph nested in it, holds or produces a half-precision value.
pub fn has_half(graph: &GraphProto) -> bool {
    let declared = graph.input.iter().chain(&graph.output).chain(&graph.value_info).any(|v| {
        matches!(&v.r#type.as_ref().and_then(|t| t.value.as_ref()), Some(TypeValue::TensorType(t)) if is_half_code(t.elem_type))
    });
    declared
        || graph.initializer.iter().any(|t| is_half_code(t.data_type))
        || graph.node.iter().any(|n| {
            n.attribute.iter().any(|a| {
                a.t.as_ref().is_some_and(|t| is_half_code(t.data_type))
                    || ((a.name == "to" || a.name == "dtype") && is_half_code(a.i as i32))
                    || a.g.as_ref().is_some_and(has_half)
                    || a.graphs.iter().any(has_half)
            })
        })
}

/// `graph` (and the graphs nested in it) computing in f32: every cast to a half type becomes a
/// round trip through it (the cast, then a cast to f32), half constants in attributes are
/// widened, and ops told to produce a half type produce f32. Initializers are widened as they
/// are decoded ([`widen`]); inputs and outputs keep their declarations (feeds are widened,
/// outputs rounded, by the plan).
pub fn widened(graph: &GraphProto) -> Result<Cow<'_, GraphProto>> {
    if !has_half(graph) {
        return Ok(Cow::Borrowed(graph));
    }
    let mut g = graph.clone();
    g.node = Vec::with_capacity(graph.node.len());
    for node in &graph.node {
        let mut node = node.clone();
        for a in &mut node.attribute {
            if let Some(t) = a.t.as_mut().filter(|t| is_half_code(t.data_type)) {
                *t = widened_tensor(t)?;
            }
            if a.name == "dtype" && DTYPE_PRODUCERS.contains(&node.op_type.as_str()) && is_half_code(a.i as i32) {
                a.i = DataType::Float as i64;
            }
            if let Some(sub) = a.g.as_mut() {
                *sub = widened(sub)?.into_owned();
            }
            for sub in &mut a.graphs {
                *sub = widened(sub)?.into_owned();
            }
        }
        let to_half = node.op_type == "Cast"
            && node.domain.is_empty()
            && node.attribute.iter().any(|a| a.name == "to" && is_half_code(a.i as i32));
        match (to_half, node.output.first().cloned()) {
            (true, Some(out)) if !out.is_empty() => g.node.extend(round_trip(node, out)),
            _ => g.node.push(node),
        }
    }
    Ok(Cow::Owned(g))
}

impl super::Graph {
    /// Computes this plan's half values in f32 ([`widened`]): feeds of a half type are
    /// widened, and each of `outputs` declared as a half type is rounded to it.
    pub(super) fn round_half_outputs(&mut self, outputs: &[ValueInfoProto]) -> Result<()> {
        let declared = |v: &ValueInfoProto| match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(TypeValue::TensorType(t)) if is_half_code(t.elem_type) => DType::from_onnx(t.elem_type).map(Some),
            _ => Ok(None),
        };
        self.half_outputs = Some(outputs.iter().map(declared).collect::<Result<_>>()?);
        Ok(())
    }

    /// A feed as the plan computes it: widened when half values are computed in f32.
    pub(super) fn feed(&self, t: Tensor) -> Tensor {
        if self.half_outputs.is_some() {
            widen(t)
        } else {
            t
        }
    }

    /// Output `k` as declared: rounded to its half type when half values are computed in f32.
    pub(super) fn output(&self, k: usize, t: &Tensor) -> Tensor {
        match self.half_outputs.as_ref().and_then(|h| h.get(k).copied().flatten()) {
            Some(half) if t.dtype() == DType::F32 => cast(t, half),
            _ => t.clone(),
        }
    }
}

/// A cast to a half type as that cast into a new value, then a cast of it to f32 into `out`.
fn round_trip(mut cast_node: NodeProto, out: String) -> [NodeProto; 2] {
    let rounded = format!("{out}/rbe_half_rounded");
    cast_node.output = vec![rounded.clone()];
    let widen = NodeProto {
        name: format!("{}/rbe_widen", cast_node.name),
        op_type: "Cast".into(),
        input: vec![rounded],
        output: vec![out],
        attribute: vec![crate::onnx::proto::AttributeProto {
            name: "to".into(),
            r#type: AttributeType::Int as i32,
            i: DataType::Float as i64,
            ..Default::default()
        }],
        ..Default::default()
    };
    [cast_node, widen]
}

/// A half constant of an attribute as an f32 one.
fn widened_tensor(t: &TensorProto) -> Result<TensorProto> {
    Ok(tensor_to_proto(&t.name, &widen(tensor_from_proto(t, ExternalData::Refused)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::AttributeProto;

    fn cast_node(to: DataType, input: &str, output: &str) -> NodeProto {
        NodeProto {
            name: format!("cast_{output}"),
            op_type: "Cast".into(),
            input: vec![input.into()],
            output: vec![output.into()],
            attribute: vec![AttributeProto { name: "to".into(), r#type: AttributeType::Int as i32, i: to as i64, ..Default::default() }],
            ..Default::default()
        }
    }

    #[test]
    fn graphs_without_half_values_are_left_as_they_are() {
        let g = GraphProto { node: vec![cast_node(DataType::Float, "x", "y")], ..Default::default() };
        assert!(matches!(widened(&g).unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn casts_to_half_round_then_widen_and_half_constants_widen() {
        let half = tensor_to_proto("c", &Tensor::F16(ndarray::arr1(&[half::f16::from_f32(1.5)]).into_dyn().into_shared()));
        let constant = NodeProto {
            op_type: "Constant".into(),
            output: vec!["c".into()],
            attribute: vec![AttributeProto { name: "value".into(), r#type: AttributeType::Tensor as i32, t: Some(half), ..Default::default() }],
            ..Default::default()
        };
        let g = GraphProto { node: vec![constant, cast_node(DataType::Float16, "x", "y")], ..Default::default() };
        assert!(has_half(&g));
        let w = widened(&g).unwrap();
        let ops: Vec<(&str, &[String], &[String])> = w.node.iter().map(|n| (n.op_type.as_str(), &n.input[..], &n.output[..])).collect();
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[1], ("Cast", &["x".to_string()][..], &["y/rbe_half_rounded".to_string()][..]));
        assert_eq!(ops[2], ("Cast", &["y/rbe_half_rounded".to_string()][..], &["y".to_string()][..]));
        assert_eq!(w.node[2].attribute[0].i, DataType::Float as i64);
        let c = tensor_from_proto(w.node[0].attribute[0].t.as_ref().unwrap(), ExternalData::Refused).unwrap();
        assert_eq!(c.dtype(), DType::F32);
        assert!(!has_half(&GraphProto { node: w.node[..1].to_vec(), ..Default::default() }));
    }
}
