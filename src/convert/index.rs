//! The converter's view of a graph for pattern matching: the runtime's fusion index
//! ([`rbe_runtime::graph::fuse::index::GraphIndex`]) over the decoded initializers.

use std::collections::HashMap;

use rbe_runtime::onnx::proto::GraphProto;
use rbe_runtime::onnx::{tensor_from_proto, ExternalData};
use rbe_runtime::Tensor;

pub use rbe_runtime::graph::fuse::index::GraphIndex;

/// Every initializer of a graph, decoded.
pub struct Initializers(HashMap<String, Tensor>);

impl Initializers {
    /// Decodes the initializers of `graph`.
    pub fn decode(graph: &GraphProto, data: ExternalData) -> Result<Self, String> {
        let mut map = HashMap::new();
        for init in &graph.initializer {
            map.insert(init.name.clone(), tensor_from_proto(init, data).map_err(|e| e.to_string())?);
        }
        Ok(Self(map))
    }

    /// The value of an initializer (a cheap shared copy).
    pub fn get(&self, name: &str) -> Option<Tensor> {
        self.0.get(name).cloned()
    }
}
