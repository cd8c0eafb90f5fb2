//! The graph IR: values numbered densely, nodes with built kernels in execution order,
//! constants (initializers and everything folded from them), and the plan that frees
//! each intermediate value right after its last reader ran.

mod build;
pub mod fuse;
mod half;
mod inputs;
mod run;
mod scope;
mod shape_memo;

pub use build::{build, build_nested, OuterValue};
pub use half::widen;
pub use inputs::{Dim, InputSpec};
pub use run::Observer;
pub use scope::{nested_graphs, node_reads, outer_names, with_implicit_inputs, Scope};

use crate::ops::Kernel;
use crate::tensor::{DType, Tensor};

/// A value's index in the graph's value table.
pub type ValueId = usize;

/// One node of the execution plan.
pub struct Node {
    /// The node's name (or a generated one if the model left it empty).
    pub name: String,
    /// Operator type.
    pub op_type: String,
    /// Operator domain ("" for the default ONNX domain).
    pub domain: String,
    kernel: Box<dyn Kernel>,
    inputs: Vec<Option<ValueId>>,
    outputs: Vec<Option<ValueId>>,
}

impl Node {
    /// The planned graphs this node runs (the branches of an `If`), for inspection.
    pub fn nested_graphs(&self) -> Vec<&Graph> {
        self.kernel.nested_graphs()
    }
}

/// A loaded, planned graph, ready to run any number of times from any number of threads.
pub struct Graph {
    names: Vec<String>,
    constants: Vec<Option<Tensor>>,
    inputs: Vec<InputSpec>,
    input_ids: Vec<ValueId>,
    outputs: Vec<(String, ValueId)>,
    nodes: Vec<Node>,
    /// For each node of the plan, the values whose last reader it is.
    frees: Vec<Vec<ValueId>>,
    /// When the model's half-precision values are computed in f32 ([`half`]): per output, the
    /// half type it is declared as (its value is rounded to it); half feeds are widened then.
    half_outputs: Option<Vec<Option<DType>>>,
    /// The shape-only nodes, and their outputs kept from the last run.
    shape_memo: shape_memo::ShapeMemo,
}

impl Graph {
    /// The inputs the caller must feed, in graph order.
    pub fn inputs(&self) -> &[InputSpec] {
        &self.inputs
    }

    /// The output names, in graph order.
    pub fn output_names(&self) -> impl Iterator<Item = &str> {
        self.outputs.iter().map(|(n, _)| n.as_str())
    }

    /// The nodes that run at each call (constant subgraphs were folded at load).
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Looks up a constant (initializer or folded value) by name.
    pub fn constant(&self, name: &str) -> Option<&Tensor> {
        let id = self.names.iter().position(|n| n == name)?;
        self.constants[id].as_ref()
    }
}
