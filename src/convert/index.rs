//! The converter's view of a graph for pattern matching: the runtime's fusion index
//! ([`rbe_runtime::graph::fuse::index::GraphIndex`]) over the decoded initializers.

use std::collections::HashMap;

use rbe_runtime::onnx::proto::{GraphProto, TensorProto};
use rbe_runtime::onnx::{tensor_from_proto, ExternalData};
use rbe_runtime::Tensor;

pub use rbe_runtime::graph::fuse::index::GraphIndex;

/// The initializers of a graph, decoded when asked for (each lookup decodes again), so the
/// converter never holds a decoded copy of every weight at once.
pub struct Initializers<'g> {
    protos: HashMap<&'g str, &'g TensorProto>,
    data: ExternalData<'g>,
}

impl<'g> Initializers<'g> {
    /// Indexes the initializers of `graph`, whose external data comes from `data`.
    pub fn new(graph: &'g GraphProto, data: ExternalData<'g>) -> Self {
        let protos = graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
        Self { protos, data }
    }

    /// The decoded value of an initializer; an error when it does not decode.
    pub fn decode(&self, name: &str) -> Result<Option<Tensor>, String> {
        self.protos
            .get(name)
            .map(|t| tensor_from_proto(t, self.data).map_err(|e| e.to_string()))
            .transpose()
    }

    /// The value of an initializer, or `None` when there is none or it does not decode (the
    /// pattern then does not match; [`Initializers::decode`] reports the error).
    pub fn get(&self, name: &str) -> Option<Tensor> {
        self.decode(name).ok().flatten()
    }
}
