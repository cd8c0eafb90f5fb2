//! A small builder for ONNX graphs: nodes with fresh value names, initializers, declared
//! inputs and outputs, then a `ModelProto`.

use rbe_runtime::onnx::proto::tensor_shape_proto::{dimension, Dimension};
use rbe_runtime::onnx::proto::{
    attribute_proto::AttributeType, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use rbe_runtime::onnx::tensor_to_proto;
use rbe_runtime::{DType, Element, Tensor};

/// The opset the built graphs use.
pub const OPSET: i64 = 17;

/// One declared dimension of a graph input or output.
pub enum Dim<'a> {
    /// A fixed size.
    Fixed(usize),
    /// A named symbolic size.
    Named(&'a str),
}

/// A node attribute.
pub enum Attr<'a> {
    /// An integer.
    Int(&'a str, i64),
    /// An integer list.
    Ints(&'a str, &'a [i64]),
}

/// Accumulates a graph.
#[derive(Default)]
pub struct OnnxBuilder {
    graph: GraphProto,
    counter: usize,
}

impl OnnxBuilder {
    /// Adds a node named after `name` and returns its (single) output value.
    pub fn op(&mut self, op_type: &str, name: &str, inputs: &[&str], attrs: &[Attr]) -> String {
        let output = format!("{name}/{op_type}_{}", self.counter);
        self.op_into(op_type, name, inputs, attrs, &output);
        output
    }

    /// Adds a node writing the value `output`.
    pub fn op_into(&mut self, op_type: &str, name: &str, inputs: &[&str], attrs: &[Attr], output: &str) {
        self.counter += 1;
        let attribute = attrs
            .iter()
            .map(|a| match a {
                Attr::Int(n, v) => AttributeProto { name: n.to_string(), r#type: AttributeType::Int as i32, i: *v, ..Default::default() },
                Attr::Ints(n, v) => AttributeProto { name: n.to_string(), r#type: AttributeType::Ints as i32, ints: v.to_vec(), ..Default::default() },
            })
            .collect();
        self.graph.node.push(NodeProto {
            name: format!("{name}/{op_type}_{}", self.counter),
            op_type: op_type.to_string(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            attribute,
            ..Default::default()
        });
    }

    /// Adds an initializer and returns its name.
    pub fn initializer(&mut self, name: &str, tensor: &Tensor) -> String {
        self.graph.initializer.push(tensor_to_proto(name, tensor));
        name.to_string()
    }

    /// An int64 vector constant.
    pub fn ints(&mut self, name: &str, values: &[i64]) -> String {
        let t = <i64 as Element>::wrap(ndarray::Array1::from(values.to_vec()).into_dyn().into_shared());
        self.initializer(name, &t)
    }

    /// A one-element f32 constant.
    pub fn scalar(&mut self, name: &str, value: f32) -> String {
        self.initializer(name, &Tensor::scalar(value))
    }

    /// Declares a graph input.
    pub fn input(&mut self, name: &str, dtype: DType, dims: &[Dim]) {
        self.graph.input.push(value_info(name, dtype, dims));
    }

    /// Declares a graph output.
    pub fn output(&mut self, name: &str, dtype: DType, dims: &[Dim]) {
        self.graph.output.push(value_info(name, dtype, dims));
    }

    /// The finished model (IR version 8, default domain at [`OPSET`]).
    pub fn finish(mut self, graph_name: &str, producer: &str) -> ModelProto {
        self.graph.name = graph_name.to_string();
        ModelProto {
            ir_version: 8,
            producer_name: producer.to_string(),
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
            graph: Some(self.graph),
            ..Default::default()
        }
    }
}

fn value_info(name: &str, dtype: DType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(n) => dimension::Value::DimValue(*n as i64),
                Dim::Named(s) => dimension::Value::DimParam(s.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: dtype.to_onnx(),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}
