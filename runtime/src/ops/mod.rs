//! Operator kernels and the registry that maps (domain, op_type, since-version) to them.
//!
//! A node is turned into a [`Kernel`] once, at load: its attributes are parsed there, so a
//! malformed attribute fails at load, and running does no string look-ups.

mod activation;
mod attention;
mod attrs;
mod broadcast;
pub(crate) mod cast;
mod clip;
mod common;
mod contrib;
mod control_flow;
mod dropout;
mod dynamic_quantize;
mod einsum;
mod elementwise;
mod fused;
mod gather;
mod generate;
mod kv_append;
mod matmul_integer;
mod modulo;
mod movement;
mod nn;
mod nonzero;
mod numeric;
mod onehot;
mod pad;
mod quantize;
mod rbe;
mod reduce;
mod rms_norm;
mod rotary;
mod scatter;
mod shape;
#[cfg(test)]
pub(crate) mod testutil;
mod topk;
mod trilu;

pub use attrs::Attrs;
pub use rbe::DOMAIN as RBE_DOMAIN;

use std::collections::HashMap;

use crate::error::Result;
use crate::graph::Scope;
use crate::onnx::proto::NodeProto;
use crate::onnx::SharedBytes;
use crate::options::SessionOptions;
use crate::tensor::Tensor;

/// A node's computation, built once at load and run many times (from many threads at once).
pub trait Kernel: Send + Sync {
    /// Computes the node's outputs. `inputs[i]` is `None` for an omitted optional input.
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>>;

    /// True when the kernel took constant input `i` over at load (parsed or copied it) and no
    /// longer needs it: the graph then passes `None` for it and can free the constant.
    fn absorbs(&self, _input: usize) -> bool {
        false
    }

    /// True when the kernel can build its output in input 0's buffer: where the node is that
    /// value's last reader, the graph then hands it over through [`Kernel::run_taking_first`].
    fn takes_first_input(&self) -> bool {
        false
    }

    /// [`Kernel::run`] with input 0 given by value (`inputs[0]` is `None`).
    fn run_taking_first(&self, first: Tensor, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        let mut all = inputs.to_vec();
        if let Some(slot) = all.first_mut() {
            *slot = Some(&first);
        }
        self.run(&all)
    }

    /// The planned graphs the kernel runs (the branches of `If`), for inspection.
    fn nested_graphs(&self) -> Vec<&crate::graph::Graph> {
        Vec::new()
    }
}

/// What a kernel factory sees of the node it builds for.
pub struct OpContext<'a> {
    /// The node itself (name, inputs, outputs, attributes).
    pub node: &'a NodeProto,
    /// The opset version the model imports for the node's domain.
    pub opset: i64,
    /// Typed access to the node's attributes.
    pub attrs: Attrs<'a>,
    /// The value of each input that is a constant (initializer or folded), `None` otherwise.
    /// Lets a kernel prepare a weight once at load (parse a compressed tensor, pack a matrix).
    pub constants: Vec<Option<&'a Tensor>>,
    /// Each input that is a `uint8` initializer not materialised as a tensor (its entry in
    /// `constants` is `None`), as shape and bytes. A kernel that absorbs the input keeps the
    /// bytes without copying (encoded weights); any other input is materialised by the builder.
    pub shared: Vec<Option<&'a SharedBytes>>,
    /// The session's options (activation mode of compressed matmuls, ...).
    pub options: &'a SessionOptions,
    /// The model-wide context, for kernels that build nested graphs (`If`); `None` when a
    /// kernel is built on its own (tests).
    pub scope: Option<&'a Scope<'a>>,
}

impl<'a> OpContext<'a> {
    /// A context for a node with no constant inputs (tests, and ops that need none).
    pub fn new(node: &'a NodeProto, opset: i64) -> Self {
        Self {
            node,
            opset,
            attrs: Attrs::new(node),
            constants: Vec::new(),
            shared: Vec::new(),
            options: &SessionOptions::DEFAULT,
            scope: None,
        }
    }

    /// The shared bytes of input `i`, if it is a `uint8` initializer kept as bytes.
    pub fn shared_bytes(&self, i: usize) -> Option<&'a bytes::Bytes> {
        self.shared_u8(i).map(|s| &s.bytes)
    }

    /// The shape and shared bytes of input `i`, if it is a `uint8` initializer kept as bytes.
    pub fn shared_u8(&self, i: usize) -> Option<&'a SharedBytes> {
        self.shared.get(i).copied().flatten()
    }

    /// The constant value of input `i`, if that input is a constant.
    pub fn constant(&self, i: usize) -> Option<&'a Tensor> {
        self.constants.get(i).copied().flatten()
    }

    /// Number of outputs the node declares (Split and friends need it).
    pub fn num_outputs(&self) -> usize {
        self.node.output.len()
    }
}

/// Builds a kernel for one node.
pub type Factory = fn(&OpContext) -> Result<Box<dyn Kernel>>;

/// The op registry, keyed by domain and op type, each with versions ordered by since-version.
#[derive(Default)]
pub struct Registry {
    entries: HashMap<(String, String), Vec<(i64, Factory)>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every op this runtime knows: the default ONNX domain, `ai.rbe` and onnxruntime's
    /// `com.microsoft` contrib ops.
    pub fn standard() -> Self {
        let mut registry = Self::new();
        registry.register_standard();
        registry
    }

    /// Registers `factory` for `domain::op_type` from opset `since` on.
    pub fn register(&mut self, domain: &str, op_type: &str, since: i64, factory: Factory) {
        let versions = self
            .entries
            .entry((normalize_domain(domain).to_string(), op_type.to_string()))
            .or_default();
        versions.push((since, factory));
        versions.sort_by_key(|(v, _)| *v);
    }

    /// The factory for the newest version whose since-version is at most `opset`.
    pub fn resolve(&self, domain: &str, op_type: &str, opset: i64) -> Option<Factory> {
        let versions = self
            .entries
            .get(&(normalize_domain(domain).to_string(), op_type.to_string()))?;
        versions
            .iter()
            .rev()
            .find(|(since, _)| *since <= opset)
            .map(|(_, f)| *f)
    }

    fn register_standard(&mut self) {
        // Each op family registers its own ops; see the files of this module.
        activation::register(self);
        attention::register(self);
        cast::register(self);
        clip::register(self);
        contrib::register(self);
        control_flow::register(self);
        dropout::register(self);
        dynamic_quantize::register(self);
        elementwise::register(self);
        fused::register(self);
        gather::register(self);
        generate::register(self);
        kv_append::register(self);
        matmul_integer::register(self);
        modulo::register(self);
        movement::register(self);
        nn::register(self);
        nonzero::register(self);
        onehot::register(self);
        pad::register(self);
        quantize::register(self);
        rbe::register(self);
        reduce::register(self);
        rms_norm::register(self);
        rotary::register(self);
        scatter::register(self);
        shape::register(self);
        topk::register(self);
        trilu::register(self);
        einsum::register(self);
    }
}

/// `ai.onnx` and `""` name the same default domain.
pub fn normalize_domain(domain: &str) -> &str {
    if domain == "ai.onnx" {
        ""
    } else {
        domain
    }
}

/// A helper for kernels that are plain functions of their inputs.
pub struct FnKernel<F>(pub F);

impl<F> Kernel for FnKernel<F>
where
    F: Fn(&[Option<&Tensor>]) -> Result<Vec<Tensor>> + Send + Sync,
{
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>> {
        (self.0)(inputs)
    }
}

/// Fetches required input `i`, failing with a clear message if it is absent.
pub fn input<'a>(inputs: &[Option<&'a Tensor>], i: usize) -> Result<&'a Tensor> {
    inputs
        .get(i)
        .copied()
        .flatten()
        .ok_or_else(|| crate::error::op_err(format!("missing required input #{i}")))
}

/// Fetches optional input `i` (absent, or named "" in the graph).
pub fn optional_input<'a>(inputs: &[Option<&'a Tensor>], i: usize) -> Option<&'a Tensor> {
    inputs.get(i).copied().flatten()
}
