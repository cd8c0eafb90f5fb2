//! [`Session`]: load a model once, run it many times, from many threads.

use std::path::Path;

use crate::container;
use crate::error::Result;
use crate::graph::{self, Graph, InputSpec};
use crate::onnx::{self, proto::ModelProto, ExternalData};
use crate::ops::Registry;
use crate::tensor::Tensor;

/// A loaded model. `Send + Sync`: one session can serve concurrent `run` calls.
pub struct Session {
    graph: Graph,
}

impl Session {
    /// Loads an `.rbeonnx` container or an `.onnx` file (whose external data is read
    /// relative to its folder), telling them apart by the container's magic (or extension).
    pub fn load(path: &Path) -> Result<Self> {
        let named_container = path.extension().is_some_and(|e| e == "rbeonnx");
        if named_container || container::is_container(path)? {
            let c = container::read_container(path)?;
            return Self::from_model(&c.model, ExternalData::Sections(&c.sections));
        }
        let model = onnx::read_model(path)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::from_model(&model, ExternalData::Folder(dir))
    }

    /// Builds a session from a decoded model with the standard op registry.
    pub fn from_model(model: &ModelProto, data: ExternalData) -> Result<Self> {
        let registry = Registry::standard();
        Ok(Self { graph: graph::build(model, data, &registry)? })
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
        self.graph.run(inputs)
    }
}
