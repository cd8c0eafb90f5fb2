//! GGUF import: llama.cpp's GGUF file of a Llama-family model to an ONNX graph in our IR (then
//! encoded like any ONNX model) and a `tokenizer.json`.
//!
//! One job per file: [`reader`] parses and checks the file, [`dequant`] decodes ggml blocks,
//! [`config`] reads the hyperparameters, [`llama_graph`] builds the graph, [`tokenizer`] the
//! tokenizer.

pub mod config;
pub mod convert;
pub mod dequant;
pub mod error;
pub mod ggml_type;
pub mod llama_graph;
mod onnx_builder;
pub mod reader;
pub mod tokenizer;
pub mod value;
pub mod weights;

use std::io::Read;
use std::path::Path;

pub use error::GgufError;
pub use llama_graph::LlamaGraph;
pub use reader::GgufFile;
use weights::SourceTensor;

/// Whether `path` is a GGUF file: its extension is `.gguf` or it starts with the GGUF magic.
pub fn is_gguf(path: &Path) -> bool {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
        return true;
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && &magic == b"GGUF"
}

/// Opens `path` and builds its graph.
pub fn import(path: &Path) -> Result<(GgufFile, LlamaGraph), GgufError> {
    let file = GgufFile::open(path)?;
    let graph = llama_graph::build(&file)?;
    Ok((file, graph))
}

/// A table of the imported tensors with their GGUF source types, and a count per type.
pub fn sources_table(sources: &[SourceTensor]) -> String {
    let mut out = String::from("GGUF tensor                                  source  shape\n");
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for s in sources {
        out.push_str(&format!("{:<44} {:<7} {:?}\n", s.name, s.source_type, s.shape));
        *counts.entry(s.source_type).or_default() += 1;
    }
    let counts: Vec<String> = counts.iter().map(|(t, n)| format!("{n} {t}")).collect();
    out.push_str(&format!("{} tensors dequantized exactly to f32: {}\n", sources.len(), counts.join(", ")));
    out
}
