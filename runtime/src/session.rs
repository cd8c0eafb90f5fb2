//! [`Session`]: load a model once, run it many times, from many threads.

use std::path::Path;

use crate::container;
use crate::error::Result;
use crate::graph::{self, Graph, InputSpec};
use crate::onnx::{self, proto::ModelProto, ExternalData};
use crate::ops::Registry;
use crate::options::SessionOptions;
use crate::tensor::Tensor;

/// A loaded model. `Send + Sync`: one session can serve concurrent `run` calls.
pub struct Session {
    graph: Graph,
}

impl Session {
    /// Loads an `.rbeonnx` container or an `.onnx` file (whose external data is read
    /// relative to its folder), telling them apart by the container's magic (or extension).
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with(path, &SessionOptions::default())
    }

    /// [`Session::load`] with explicit options.
    pub fn load_with(path: &Path, options: &SessionOptions) -> Result<Self> {
        let named_container = path.extension().is_some_and(|e| e == "rbeonnx");
        if named_container || container::is_container(path)? {
            let c = container::read_container(path)?;
            return Self::from_model_with(&c.model, ExternalData::Sections(&c.sections), options);
        }
        let (model, pages) = onnx::read_model_mapped(path)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let registry = Registry::standard();
        Ok(Self { graph: graph::build(&model, ExternalData::Folder(dir), Some(&pages), &registry, options)? })
    }

    /// Builds a session from a decoded model with the standard op registry.
    pub fn from_model(model: &ModelProto, data: ExternalData) -> Result<Self> {
        Self::from_model_with(model, data, &SessionOptions::default())
    }

    /// [`Session::from_model`] with explicit options.
    pub fn from_model_with(model: &ModelProto, data: ExternalData, options: &SessionOptions) -> Result<Self> {
        let registry = Registry::standard();
        Ok(Self { graph: graph::build(model, data, None, &registry, options)? })
    }

    /// The inputs the model takes.
    pub fn inputs(&self) -> &[InputSpec] {
        self.graph.inputs()
    }

    /// The names of the model's outputs, in order.
    pub fn output_names(&self) -> Vec<String> {
        self.graph.output_names().map(str::to_string).collect()
    }

    /// The planned graph (for inspection and tools).
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Runs the model on named inputs; returns the named outputs in graph order.
    pub fn run(&self, inputs: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>> {
        crate::kernels::pool::on_pool(|| self.graph.run(inputs))
    }

    /// [`Session::run`], adding each node's kernel wall time to `times` (indexed like
    /// [`Graph::nodes`]): a profile by node.
    pub fn run_profiled(
        &self,
        inputs: Vec<(String, Tensor)>,
        times: &mut Vec<std::time::Duration>,
    ) -> Result<Vec<(String, Tensor)>> {
        crate::kernels::pool::on_pool(|| self.graph.run_profiled(inputs, times))
    }

    /// [`Session::run`], showing `observer` each node's inputs before it runs.
    pub fn run_observed(
        &self,
        inputs: Vec<(String, Tensor)>,
        observer: &mut (dyn graph::Observer + Send),
    ) -> Result<Vec<(String, Tensor)>> {
        crate::kernels::pool::on_pool(|| self.graph.run_observed(inputs, observer))
    }
}
