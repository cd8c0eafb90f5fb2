//! The converter's view of a graph for pattern matching: the runtime's fusion index
//! ([`rbe_runtime::graph::fuse::index::GraphIndex`]) over the decoded initializers.

use std::collections::HashMap;

use rbe_runtime::graph::{nested_graphs, widen};
use rbe_runtime::onnx::proto::{GraphProto, TensorProto};
use rbe_runtime::onnx::{tensor_from_proto, ExternalData, FileMap};
use rbe_runtime::Tensor;

pub use rbe_runtime::graph::fuse::index::GraphIndex;

use super::plan::Weight;

/// The initializers of a graph and of the graphs nested in it, decoded when asked for (each
/// lookup decodes again), so the converter never holds a decoded copy of every weight at once.
/// When their inline data lies in a mapped file, the pages of each one decoded are given back
/// to the file at once, so the resident set stays at the tensors in use.
pub struct Initializers<'g> {
    protos: HashMap<&'g str, &'g TensorProto>,
    data: ExternalData<'g>,
    pages: Option<&'g FileMap>,
}

impl<'g> Initializers<'g> {
    /// Indexes the initializers of `graph` and its nested graphs (an outer name first),
    /// whose external data comes from `data` and inline data, maybe, from `pages`.
    pub fn new(graph: &'g GraphProto, data: ExternalData<'g>, pages: Option<&'g FileMap>) -> Self {
        let mut protos = HashMap::new();
        collect(graph, &mut protos);
        Self { protos, data, pages }
    }

    /// The decoded value of an initializer, in its own element type; an error when it does not
    /// decode.
    pub fn decode(&self, name: &str) -> Result<Option<Tensor>, String> {
        let Some(t) = self.protos.get(name) else { return Ok(None) };
        let value = tensor_from_proto(t, self.data).map_err(|e| e.to_string());
        if let Some(pages) = self.pages {
            pages.release(&t.raw_data);
        }
        value.map(Some)
    }

    /// The value of an initializer as the patterns see it, or `None` when there is none or it
    /// does not decode (the pattern then does not match; [`Initializers::decode`] reports the
    /// error). float16 and bfloat16 values come widened to f32 (exactly), so a half-precision
    /// model's weights are planned and encoded like an f32 model's (the runtime computes half
    /// graphs in f32); initializers that stay are written back in their own type.
    pub fn get(&self, name: &str) -> Option<Tensor> {
        self.decode(name).ok().flatten().map(widen)
    }

    /// The values of a planned weight, read from its initializer.
    pub fn weight_values(&self, w: &Weight) -> Result<Vec<f32>, String> {
        let changed = || format!("initializer '{}' is not the weight planned from it", w.source);
        let Some(Tensor::F32(a)) = self.decode(&w.source)?.map(widen) else { return Err(changed()) };
        // A freshly decoded tensor owns its buffer in row-major order: taken, not copied.
        let stored = match a.try_into_owned_nocopy() {
            Ok(owned) if owned.is_standard_layout() => {
                let n = owned.len();
                match owned.into_raw_vec_and_offset() {
                    (v, Some(0) | None) if v.len() == n => v,
                    (v, offset) => v[offset.unwrap_or(0)..][..n].to_vec(),
                }
            }
            Ok(owned) => owned.iter().copied().collect(),
            Err(shared) => shared.iter().copied().collect(),
        };
        w.values(stored).ok_or_else(changed)
    }
}

fn collect<'g>(graph: &'g GraphProto, protos: &mut HashMap<&'g str, &'g TensorProto>) {
    for t in &graph.initializer {
        protos.entry(t.name.as_str()).or_insert(t);
    }
    for node in &graph.node {
        nested_graphs(node).for_each(|g| collect(g, protos));
    }
}
