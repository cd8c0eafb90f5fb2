//! Test helpers: describe a node, build it through the standard registry, run it.

use crate::error::{Error, Result};
use crate::onnx::proto::{attribute_proto::AttributeType, AttributeProto, NodeProto};
use crate::ops::{Kernel, OpContext, Registry};
use crate::tensor::{Element, Tensor};

/// A node under test: op type, attributes, output count and the opset it is built at.
pub(crate) struct NodeSpec {
    node: NodeProto,
    opset: i64,
}

/// A node of `op_type` at opset 17 with one output.
pub(crate) fn node(op_type: &str) -> NodeSpec {
    NodeSpec {
        node: NodeProto {
            name: format!("test_{op_type}"),
            op_type: op_type.to_string(),
            output: vec!["y".to_string()],
            ..Default::default()
        },
        opset: 17,
    }
}

impl NodeSpec {
    /// Builds at this opset.
    pub fn opset(mut self, opset: i64) -> Self {
        self.opset = opset;
        self
    }

    /// Puts the node in `domain`.
    pub fn domain(mut self, domain: &str) -> Self {
        self.node.domain = domain.to_string();
        self
    }

    /// Declares `n` outputs.
    pub fn outputs(mut self, n: usize) -> Self {
        self.node.output = (0..n).map(|i| format!("y{i}")).collect();
        self
    }

    /// Sets attribute `name`, replacing an earlier value.
    fn attr(mut self, name: &str, kind: AttributeType, fill: impl FnOnce(&mut AttributeProto)) -> Self {
        let mut a = AttributeProto { name: name.to_string(), r#type: kind as i32, ..Default::default() };
        fill(&mut a);
        self.node.attribute.retain(|old| old.name != name);
        self.node.attribute.push(a);
        self
    }

    /// An integer attribute.
    pub fn int(self, name: &str, v: i64) -> Self {
        self.attr(name, AttributeType::Int, |a| a.i = v)
    }

    /// An integer-list attribute.
    pub fn ints(self, name: &str, v: &[i64]) -> Self {
        self.attr(name, AttributeType::Ints, |a| a.ints = v.to_vec())
    }

    /// A float attribute.
    pub fn float(self, name: &str, v: f32) -> Self {
        self.attr(name, AttributeType::Float, |a| a.f = v)
    }

    /// A float-list attribute.
    pub fn floats(self, name: &str, v: &[f32]) -> Self {
        self.attr(name, AttributeType::Floats, |a| a.floats = v.to_vec())
    }

    /// A string attribute.
    pub fn string(self, name: &str, v: &str) -> Self {
        self.attr(name, AttributeType::String, |a| a.s = v.as_bytes().to_vec().into())
    }

    /// A tensor attribute.
    pub fn tensor(self, name: &str, v: &Tensor) -> Self {
        self.attr(name, AttributeType::Tensor, |a| a.t = Some(crate::onnx::tensor_to_proto(name, v)))
    }

    /// Resolves and builds the kernel.
    pub fn build(&self) -> Result<Box<dyn Kernel>> {
        self.build_with(Vec::new())
    }

    /// Resolves and builds the kernel with these inputs constant at load.
    pub fn build_with(&self, constants: Vec<Option<&Tensor>>) -> Result<Box<dyn Kernel>> {
        self.build_with_shared(constants, Vec::new())
    }

    /// Resolves and builds the kernel with these constant inputs, and these `uint8`
    /// initializers held as bytes (as the graph builder passes them).
    pub fn build_with_shared(&self, constants: Vec<Option<&Tensor>>, shared: Vec<Option<&crate::onnx::SharedBytes>>) -> Result<Box<dyn Kernel>> {
        let factory = Registry::standard().resolve(&self.node.domain, &self.node.op_type, self.opset).ok_or_else(|| {
            Error::UnknownOp {
                domain: self.node.domain.clone(),
                op_type: self.node.op_type.clone(),
                opset: self.opset,
                node: self.node.name.clone(),
            }
        })?;
        factory(&OpContext { constants, shared, ..OpContext::new(&self.node, self.opset) })
    }

    /// Builds and runs with optional inputs.
    pub fn run_opt(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        self.build()?.run(inputs)
    }

    /// Builds and runs with all inputs present.
    pub fn run(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        let inputs: Vec<Option<&Tensor>> = inputs.iter().copied().map(Some).collect();
        self.run_opt(&inputs)
    }

    /// Builds and runs, returning the first output.
    pub fn run1(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        self.run(inputs)?.into_iter().next().ok_or_else(|| Error::Op("no output".into()))
    }
}

/// A tensor of any element type from a shape and values.
pub(crate) fn t<T: Element>(shape: &[usize], data: &[T]) -> Tensor {
    Tensor::from_vec(shape, data.to_vec()).expect("test tensor shape matches data")
}

/// The elements of a tensor of type `T`, in row-major order, and its shape.
pub(crate) fn values<T: Element>(tensor: &Tensor) -> (Vec<usize>, Vec<T>) {
    let a = tensor.array::<T>().expect("tensor of the expected dtype");
    (a.shape().to_vec(), a.iter().copied().collect())
}

/// Asserts a float32 tensor has `shape` and values within 1e-5 (relative) of `want`.
pub(crate) fn assert_close(tensor: &Tensor, shape: &[usize], want: &[f32]) {
    let (got_shape, got) = values::<f32>(tensor);
    assert_eq!(got_shape, shape, "shape");
    assert_eq!(got.len(), want.len(), "length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = g == w || (g - w).abs() <= 1e-5 * (1.0 + w.abs()) || (g.is_nan() && w.is_nan());
        assert!(ok, "element {i}: got {g}, want {w} (all: {got:?})");
    }
}

/// Asserts the result is an error whose message contains `needle`.
pub(crate) fn assert_err<T: std::fmt::Debug>(result: Result<T>, needle: &str) {
    match result {
        Ok(v) => panic!("expected an error containing '{needle}', got {v:?}"),
        Err(e) => assert!(e.to_string().contains(needle), "error '{e}' lacks '{needle}'"),
    }
}

mod tests {
    use crate::ops::Registry;

    /// Every op of the contract resolves at the opsets GPT-2/BERT/Llama exports use, and ops
    /// newer than an opset do not.
    #[test]
    fn standard_registry_covers_the_exported_ops() {
        let registry = Registry::standard();
        let ops = [
            "Neg", "Abs", "Sqrt", "Exp", "Log", "Erf", "Tanh", "Sigmoid", "Sin", "Cos", "Not", "IsNaN",
            "Reciprocal", "Relu", "Floor", "Ceil", "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum",
            "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor", "Where", "Cast",
            "CastLike", "Shape", "Size", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Concat", "Split",
            "Slice", "Transpose", "Expand", "Tile", "Identity", "Constant", "ConstantOfShape", "Range",
            "Trilu", "Gather", "GatherND", "GatherElements", "ScatterND", "ReduceMean", "ReduceSum",
            "ReduceMax", "CumSum", "Softmax", "ArgMax", "LayerNormalization", "MatMul", "Gemm",
        ];
        for opset in [17, 18, 21] {
            for op in ops {
                assert!(registry.resolve("", op, opset).is_some(), "{op} at opset {opset}");
                assert!(registry.resolve("ai.onnx", op, opset).is_some(), "ai.onnx {op}");
            }
        }
        assert!(registry.resolve("", "Gather", 11).is_some());
        assert!(registry.resolve("", "Trilu", 13).is_none());
        assert!(registry.resolve("", "LayerNormalization", 16).is_none());
        assert!(registry.resolve("", "Range", 10).is_none());
        assert!(registry.resolve("com.microsoft", "Gather", 17).is_none());
    }
}

/// A graph node `op(inputs) -> output`, named after its output (for hand-built test models).
pub(crate) fn graph_node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
    NodeProto {
        name: output.into(),
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    }
}
